"""Records as xtquant objects: the genuine ``xttype`` classes when xtquant is installed.

An object is made with ``cls.__new__`` and given the record's fields as attributes, so it
is an instance of xtquant's own class (``isinstance(order, XtOrder)`` holds) without running
its constructor. Without xtquant, small look-alike classes of the same names are used.
"""

from __future__ import annotations

from typing import Any

EVENT_KINDS = {
    "order": "XtOrder",
    "trade": "XtTrade",
    "order_error": "XtOrderError",
    "cancel_error": "XtCancelError",
    "asset": "XtAsset",
    "position": "XtPosition",
    "account_status": "XtAccountStatus",
    "order_response": "XtOrderResponse",
    "cancel_response": "XtCancelOrderResponse",
}
# Fields the gateway adds that xtquant's objects do not have.
GATEWAY_FIELDS = frozenset({"client_order_id"})

# XtQuantTrader methods this class does not offer: calling one raises NotImplementedError.
UNSUPPORTED_METHODS = frozenset({
    "fund_transfer", "secu_transfer", "query_com_fund",
    "query_com_position", "smt_query_quoter", "smt_negotiate_order_async", "smt_appointment_order_async",
    "smt_appointment_cancel_async", "smt_query_order", "smt_query_compact", "smt_compact_renewal_async",
    "smt_compact_return_async", "query_position_statistics", "export_data", "query_data",
    "sync_transaction_from_external", "bank_transfer_in", "bank_transfer_in_async", "bank_transfer_out",
    "bank_transfer_out_async", "query_bank_info", "query_bank_amount", "query_bank_transfer_stream",
    "query_secu_account", "ctp_transfer_option_to_future", "ctp_transfer_option_to_future_async",
    "ctp_transfer_future_to_option", "ctp_transfer_future_to_option_async", "query_smart_algo_task",
    "cancel_smart_algo_task_async", "smart_algo_order_async", "get_smart_algo_param", "common_op_async_with_seq",
    "common_op_sync_with_seq",
})


class _LookAlike:
    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


_fallback: dict[str, type[Any]] = {}


def _class(kind: str) -> type[Any]:
    try:
        from adapter.xtimport import import_xtquant

        import_xtquant()
        from xtquant import xttype

        cls = getattr(xttype, kind, None)
        if isinstance(cls, type):
            return cls
    except ImportError:
        pass
    if kind not in _fallback:
        _fallback[kind] = type(kind, (_LookAlike,), {})
    return _fallback[kind]


def make(kind: str, data: dict[str, Any]) -> Any:
    cls = _class(kind)
    obj = object.__new__(cls)  # a bare instance: no __init__, whatever the class
    obj.__dict__.update(data)  # GATEWAY_FIELDS ride along: harmless to code written for xtquant
    return obj
