"""Event types, their xtquant sources and the fields each carries."""

from __future__ import annotations

from typing import Any, Final

ASSET_FIELDS: Final = (
    "account_type", "account_id", "cash", "frozen_cash", "market_value", "total_asset", "fetch_balance",
)
ORDER_FIELDS: Final = (
    "account_type", "account_id", "stock_code", "order_id", "order_sysid", "order_time", "order_type",
    "order_volume", "price_type", "price", "traded_volume", "traded_price", "order_status", "status_msg",
    "strategy_name", "order_remark", "direction", "offset_flag", "secu_account", "instrument_name",
    "client_order_id",
)
TRADE_FIELDS: Final = (
    "account_type", "account_id", "stock_code", "order_type", "traded_id", "traded_time", "traded_price",
    "traded_volume", "traded_amount", "order_id", "order_sysid", "strategy_name", "order_remark",
    "direction", "offset_flag", "commission", "secu_account", "instrument_name", "client_order_id",
)
POSITION_FIELDS: Final = (
    "account_type", "account_id", "stock_code", "volume", "can_use_volume", "open_price", "market_value",
    "frozen_volume", "on_road_volume", "yesterday_volume", "avg_price", "direction", "last_price",
    "profit_rate", "float_profit", "open_date", "position_profit", "secu_account", "instrument_name",
)
# xttrader matches error pushes to its requests by their ``seq``: xtquant's error objects carry it.
ORDER_ERROR_FIELDS: Final = (
    "account_type", "account_id", "order_id", "error_id", "error_msg", "strategy_name", "order_remark", "seq",
    "client_order_id",
)
CANCEL_ERROR_FIELDS: Final = (
    "account_type", "account_id", "order_id", "market", "order_sysid", "error_id", "error_msg", "seq",
)
ORDER_RESPONSE_FIELDS: Final = (
    "account_type", "account_id", "order_id", "strategy_name", "order_remark", "error_msg", "seq",
    "client_order_id",
)
OUTCOME_FIELDS: Final = (
    "client_order_id", "account_id", "state", "order_id", "strategy_name", "order_remark", "error_msg", "created_ns",
)
# Event types whose records the gateway maps back from the counter's remark tag.
ORDER_LINKED: Final = frozenset({"order", "trade", "order_error", "order_response"})
CANCEL_RESPONSE_FIELDS: Final = (
    "account_type", "account_id", "cancel_result", "order_id", "order_sysid", "seq", "error_msg",
)
ACCOUNT_STATUS_FIELDS: Final = ("account_type", "account_id", "status")
ACCOUNT_INFO_FIELDS: Final = (
    "account_type", "account_id", "broker_type", "platform_id", "account_classification", "login_status",
)
CONNECTION_FIELDS: Final = ("connected", "reason")

# XtQuantTraderCallback method -> (event type, fields of its data)
CALLBACK_EVENTS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "on_stock_order": ("order", ORDER_FIELDS),
    "on_stock_trade": ("trade", TRADE_FIELDS),
    "on_order_error": ("order_error", ORDER_ERROR_FIELDS),
    "on_cancel_error": ("cancel_error", CANCEL_ERROR_FIELDS),
    "on_stock_asset": ("asset", ASSET_FIELDS),
    "on_stock_position": ("position", POSITION_FIELDS),
    "on_account_status": ("account_status", ACCOUNT_STATUS_FIELDS),
    "on_order_stock_async_response": ("order_response", ORDER_RESPONSE_FIELDS),
    "on_cancel_order_stock_async_response": ("cancel_response", CANCEL_RESPONSE_FIELDS),
}
CONNECTION: Final = "gateway.connection"
# The kill switch: published (and journaled) whenever the trading state changes.
TRADING: Final = "gateway.trading"
TRADING_FIELDS: Final = ("state", "reason", "cancel_open")
# An order or cancel refused by a risk rule or the kill switch, on the account's topic.
RISK_DENIED: Final = "risk_denied"
RISK_DENIED_FIELDS: Final = (
    "rule", "message", "limit", "value", "op", "client_order_id", "stock_code", "order_type", "order_volume",
    "price", "order_id",
)
# Control events: not journaled, their envelope seq is nil.
# PONG answers ping(publish=true): lets a subscriber prove its subscription is live.
PONG: Final = "gateway.pong"
PONG_FIELDS: Final = ("id", "last_seq")  # last_seq: lets a stream with no position start here
# HEARTBEAT tells a quiet subscriber the stream is alive and how far it has got.
HEARTBEAT: Final = "gateway.heartbeat"
HEARTBEAT_FIELDS: Final = ("last_seq", "connected", "interval")
# STORAGE: a store (journal, ledger, trading-state) failed or recovered; order entry halts on failure.
STORAGE: Final = "gateway.storage"
STORAGE_FIELDS: Final = ("ok", "store", "error")
CONTROL_EVENTS: Final = frozenset({PONG, HEARTBEAT, STORAGE})
# Reserved: the client library's own notices (never published by the gateway).
CLIENT_NOTICES: Final = frozenset({"gateway.epoch", "gateway.gap", "gateway.liveness"})

EVENT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    **{etype: fields for etype, fields in CALLBACK_EVENTS.values()},
    CONNECTION: CONNECTION_FIELDS,
    TRADING: TRADING_FIELDS,
    RISK_DENIED: RISK_DENIED_FIELDS,
    PONG: PONG_FIELDS,
    HEARTBEAT: HEARTBEAT_FIELDS,
    STORAGE: STORAGE_FIELDS,
}

# Query op -> fields of each result record.
QUERY_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "query_stock_asset": ASSET_FIELDS,
    "query_stock_positions": POSITION_FIELDS,
    "query_stock_position": POSITION_FIELDS,
    "query_stock_orders": ORDER_FIELDS,
    "query_stock_order": ORDER_FIELDS,
    "query_stock_trades": TRADE_FIELDS,
    "query_account_infos": ACCOUNT_INFO_FIELDS,
    "query_account_status": ACCOUNT_STATUS_FIELDS,
}


def plain(value: Any) -> Any:
    """A value msgpack carries as-is; anything else becomes text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("gb18030", errors="replace")
    return str(value)


_PLAIN_TYPES: Final = frozenset({type(None), bool, int, float, str})


def to_map(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """The named attributes of an xttype object (nil where it has none); ``plain`` is called only
    for values not exactly of a plain type: the same map at half the cost, per push."""
    kept = _PLAIN_TYPES
    return {name: v if type(v := getattr(obj, name, None)) in kept else plain(v) for name in fields}
