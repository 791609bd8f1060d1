"""The per-op methods, written once for the blocking and the asyncio client.

Each method has the ``XtQuantTrader`` method's name, parameter names and defaults, with the
account object replaced by ``account_id`` (plus keyword-only ``account_type``), and hands the
wire arguments to ``self._call``. :class:`~adapter.client.Client` implements ``_call`` as a
blocking call and :class:`~adapter.client.AsyncClient` as a coroutine, so the same method
returns a value on one and an awaitable on the other. The type parameters say which.

Arguments go on the wire as given (the gateway validates them and names the field it refuses);
``account_type`` only when it is not ``"STOCK"``, the gateway's default, so the bytes match the
request vectors in ``proto/vectors``.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

RecordT = TypeVar("RecordT")  # a Record (or an awaitable of one)
OptionalRecordT = TypeVar("OptionalRecordT")  # a Record or None (or an awaitable of one)
RecordListT = TypeVar("RecordListT")  # a list of Records (or an awaitable of one)
AnyT = TypeVar("AnyT")  # whatever the op returns (or an awaitable of it)

DEFAULT_ACCOUNT_TYPE = "STOCK"


class OpMethods(Generic[RecordT, OptionalRecordT, RecordListT, AnyT]):
    """One method per protocol v1 op; every one takes a keyword-only ``timeout`` in seconds
    (None: the client's default)."""

    def _call(self, op: str, args: dict[str, Any], timeout: float | None) -> Any:
        raise NotImplementedError

    # -- generic --------------------------------------------------------------------------

    def call(self, op: str, timeout: float | None = None, **args: Any) -> AnyT:
        """Send any op with its wire arguments, e.g. ops the gateway gained after this client."""
        return cast(AnyT, self._call(op, args, timeout))

    def ping(self, publish: bool = False, *, timeout: float | None = None) -> RecordT:
        """Gateway health and identity: server_version, protocol_version, backend, accounts, connected.

        With ``publish`` the gateway also publishes a ``gateway.pong`` event carrying this
        request's id, which proves to a subscriber that its subscription is live.
        """
        return cast(RecordT, self._call("ping", {"publish": publish}, timeout))

    # -- orders ---------------------------------------------------------------------------

    def order_stock(
        self,
        account_id: str,
        stock_code: str,
        order_type: int | str,
        order_volume: int,
        price_type: int | str,
        price: float,
        strategy_name: str = "",
        order_remark: str = "",
        *,
        account_type: str | int = "STOCK",
        timeout: float | None = None,
    ) -> RecordT:
        """Place an order and wait for the counter's response (``order_id``, ``error_msg``, ...).

        ``order_type`` 23 / ``"buy"`` or 24 / ``"sell"``; ``price_type`` 11 / ``"limit"`` or a
        market price type. A time-out leaves the outcome unknown: see GatewayTimeout.sent.
        """
        return cast(
            RecordT,
            self._call(
                "order_stock",
                _order_args(
                    account_id, account_type, stock_code, order_type, order_volume, price_type, price,
                    strategy_name, order_remark,
                ),
                timeout,
            ),
        )

    def order_stock_async(
        self,
        account_id: str,
        stock_code: str,
        order_type: int | str,
        order_volume: int,
        price_type: int | str,
        price: float,
        strategy_name: str = "",
        order_remark: str = "",
        *,
        account_type: str | int = "STOCK",
        timeout: float | None = None,
    ) -> RecordT:
        """Place an order; the reply carries ``seq`` at once, the order id comes as an
        ``order_response`` event with that seq."""
        return cast(
            RecordT,
            self._call(
                "order_stock_async",
                _order_args(
                    account_id, account_type, stock_code, order_type, order_volume, price_type, price,
                    strategy_name, order_remark,
                ),
                timeout,
            ),
        )

    def cancel_order_stock(
        self, account_id: str, order_id: int, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> RecordT:
        """Cancel by order id; ``cancel_result`` 0 only means the cancel was sent, the outcome
        arrives as an order or cancel_error event."""
        args = {**_account(account_id, account_type), "order_id": order_id}
        return cast(RecordT, self._call("cancel_order_stock", args, timeout))

    def cancel_order_stock_async(
        self, account_id: str, order_id: int, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> RecordT:
        """Cancel by order id; the reply carries ``seq``, the result comes as a cancel_response event."""
        args = {**_account(account_id, account_type), "order_id": order_id}
        return cast(RecordT, self._call("cancel_order_stock_async", args, timeout))

    def cancel_order_stock_sysid(
        self,
        account_id: str,
        market: int | str,
        sysid: str,
        *,
        account_type: str | int = "STOCK",
        timeout: float | None = None,
    ) -> RecordT:
        """Cancel by the counter's contract number; ``market`` 0 / ``"SH"``, 1 / ``"SZ"``, 70 / ``"BJ"``."""
        args = {**_account(account_id, account_type), "market": market, "sysid": sysid}
        return cast(RecordT, self._call("cancel_order_stock_sysid", args, timeout))

    def cancel_order_stock_sysid_async(
        self,
        account_id: str,
        market: int | str,
        sysid: str,
        *,
        account_type: str | int = "STOCK",
        timeout: float | None = None,
    ) -> RecordT:
        """Cancel by contract number; the reply carries ``seq``, the result comes as a cancel_response event."""
        args = {**_account(account_id, account_type), "market": market, "sysid": sysid}
        return cast(RecordT, self._call("cancel_order_stock_sysid_async", args, timeout))

    # -- queries --------------------------------------------------------------------------

    def query_stock_asset(
        self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> OptionalRecordT:
        """The account's asset (cash, frozen_cash, market_value, total_asset), or None."""
        args = _account(account_id, account_type)
        return cast(OptionalRecordT, self._call("query_stock_asset", args, timeout))

    def query_stock_positions(
        self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> RecordListT:
        """All positions of the account."""
        args = _account(account_id, account_type)
        return cast(RecordListT, self._call("query_stock_positions", args, timeout))

    def query_stock_position(
        self, account_id: str, stock_code: str, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> OptionalRecordT:
        """The position in one stock, or None when the account holds none."""
        args = {**_account(account_id, account_type), "stock_code": stock_code}
        return cast(OptionalRecordT, self._call("query_stock_position", args, timeout))

    def query_stock_orders(
        self,
        account_id: str,
        cancelable_only: bool = False,
        *,
        account_type: str | int = "STOCK",
        timeout: float | None = None,
    ) -> RecordListT:
        """Today's orders; only those that can still be cancelled when ``cancelable_only``."""
        args = {**_account(account_id, account_type), "cancelable_only": cancelable_only}
        return cast(RecordListT, self._call("query_stock_orders", args, timeout))

    def query_stock_order(
        self, account_id: str, order_id: int, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> OptionalRecordT:
        """One order by id, or None."""
        args = {**_account(account_id, account_type), "order_id": order_id}
        return cast(OptionalRecordT, self._call("query_stock_order", args, timeout))

    def query_stock_trades(
        self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> RecordListT:
        """Today's trades of the account."""
        args = _account(account_id, account_type)
        return cast(RecordListT, self._call("query_stock_trades", args, timeout))

    def query_account_infos(self, *, timeout: float | None = None) -> RecordListT:
        """The accounts known to the terminal."""
        return cast(RecordListT, self._call("query_account_infos", {}, timeout))

    def query_account_status(self, *, timeout: float | None = None) -> RecordListT:
        """The login status of each account."""
        return cast(RecordListT, self._call("query_account_status", {}, timeout))


def _order_args(
    account_id: str,
    account_type: str | int,
    stock_code: str,
    order_type: int | str,
    order_volume: int,
    price_type: int | str,
    price: float,
    strategy_name: str,
    order_remark: str,
) -> dict[str, Any]:
    return {
        **_account(account_id, account_type),
        "stock_code": stock_code,
        "order_type": order_type,
        "order_volume": order_volume,
        "price_type": price_type,
        "price": price,
        "strategy_name": strategy_name,
        "order_remark": order_remark,
    }


def _account(account_id: str, account_type: str | int) -> dict[str, Any]:
    """The account arguments; ``account_type`` goes on the wire only when not the default."""
    if account_type == DEFAULT_ACCOUNT_TYPE:
        return {"account_id": account_id}
    return {"account_id": account_id, "account_type": account_type}
