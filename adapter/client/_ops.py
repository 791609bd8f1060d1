"""The per-op methods, written once for the blocking and the asyncio client.

Each method has the ``XtQuantTrader`` method's name, parameter names and defaults, with the
account object replaced by ``account_id`` (plus keyword-only ``account_type``), and hands the
wire arguments to ``self._call``. :class:`~adapter.client.Client` implements ``_call`` as a
blocking call and :class:`~adapter.client.AsyncClient` as a coroutine, so the same method
returns a value on one and an awaitable on the other. The type parameters say which.

A method's parameters *are* its wire arguments: :func:`_wire_args` turns them into the request
map, so the signature is written once and cannot drift from what is sent. Ops that take exactly
the same arguments as another (``order_stock_async`` and ``order_stock``, ...) are made with
:func:`_twin`, which keeps the typed signature and changes only the op name and docstring.

Arguments go on the wire as given (the gateway validates them and names the field it refuses),
in signature order, with two exceptions: ``account_type`` only when it is not ``"STOCK"``, the
gateway's default, and an argument whose value is ``None`` not at all (nil is never a valid
argument value; leaving it out asks for the gateway's default). So the bytes match the request
vectors in ``proto/vectors``.
"""

from __future__ import annotations

import functools
import inspect
import secrets
from typing import Any, Callable, Generic, Sequence, TypeVar, cast

RecordT = TypeVar("RecordT")  # a Record (or an awaitable of one)
OptionalRecordT = TypeVar("OptionalRecordT")  # a Record or None (or an awaitable of one)
RecordListT = TypeVar("RecordListT")  # a list of Records (or an awaitable of one)
AnyT = TypeVar("AnyT")  # whatever the op returns (or an awaitable of it)
MethodT = TypeVar("MethodT", bound=Callable[..., Any])

DEFAULT_ACCOUNT_TYPE = "STOCK"
_NOT_WIRE = frozenset({"self", "timeout", "account_type"})  # parameters that are not sent as such


def _wire_args(arguments: dict[str, Any]) -> dict[str, Any]:
    """The request arguments from a method's bound parameters (``locals()`` of an op method)."""
    wire: dict[str, Any] = {}
    if "client_order_id" in arguments and arguments["client_order_id"] is None:
        arguments = {**arguments, "client_order_id": new_client_order_id()}
    for name, value in arguments.items():
        if name in _NOT_WIRE or value is None or (name == "intentional" and not value):
            continue
        wire[name] = value
        if name == "account_id" and arguments.get("account_type", DEFAULT_ACCOUNT_TYPE) != DEFAULT_ACCOUNT_TYPE:
            wire["account_type"] = arguments["account_type"]
    return wire


def new_client_order_id() -> str:
    """A short id unique enough to make an order idempotent at the gateway."""
    return secrets.token_hex(8)


def _twin(method: MethodT, op: str, doc: str) -> MethodT:
    """A method for ``op`` with exactly ``method``'s parameters (and type), documented by ``doc``."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def twin(self: OpMethods[Any, Any, Any, Any], /, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        return self._call(op, _wire_args(bound.arguments), bound.arguments["timeout"])

    twin.__name__ = op
    twin.__qualname__ = f"OpMethods.{op}"
    twin.__doc__ = doc
    return cast(MethodT, twin)


class OpMethods(Generic[RecordT, OptionalRecordT, RecordListT, AnyT]):
    """One method per protocol v1 op; every one takes a keyword-only ``timeout`` in seconds
    (None: the client's default)."""

    def _call(self, op: str, args: dict[str, Any], timeout: float | None, plain: bool = False) -> Any:
        raise NotImplementedError

    # -- generic --------------------------------------------------------------------------

    def call(self, op: str, timeout: float | None = None, **args: Any) -> AnyT:
        """Send any op with its wire arguments, e.g. ops the gateway gained after this client."""
        return cast(AnyT, self._call(op, args, timeout))

    # -- gateway --------------------------------------------------------------------------

    def ping(self, publish: bool = False, *, timeout: float | None = None) -> RecordT:
        """Gateway health and identity: server_version, protocol_version, backend, accounts,
        connected, last_seq, epoch.

        With ``publish`` the gateway also publishes a ``gateway.pong`` event carrying this
        request's id, which proves to a subscriber that its subscription is live.
        """
        return cast(RecordT, self._call("ping", _wire_args(locals()), timeout))

    def replay(
        self,
        from_seq: int,
        to_seq: int | None = None,
        prefixes: Sequence[str] = (),
        limit: int = 1000,
        *,
        timeout: float | None = None,
    ) -> RecordT:
        """One page of journaled events from ``from_seq`` (to ``to_seq``, default the newest),
        only those whose topic starts with one of ``prefixes`` (none: all), at most ``limit``.

        The result has ``epoch``, ``first_seq``, ``last_seq``, ``next_seq`` (ask from there for
        the next page), ``more`` and ``events``: ``[topic, payload]`` pairs, the PUB frames;
        :func:`~adapter.client.replayed_events` turns them into Events. A ``from_seq`` older
        than the journal keeps fails with ``seq_expired``: rebuild from :meth:`snapshot`.
        Event streams (``events()``, ``subscribe()``) call this by themselves to fill gaps.
        """
        return cast(RecordT, self._call("replay", _wire_args({**locals(), "prefixes": list(prefixes)}), timeout))

    def snapshot(self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None) -> RecordT:
        """The account's asset, positions, today's orders and trades as of event ``seq``
        (also ``epoch``): apply events from ``seq + 1`` on top, e.g. ``events(from_seq=s.seq + 1)``."""
        return cast(RecordT, self._call("snapshot", _wire_args(locals()), timeout))

    def order_outcomes(
        self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> RecordListT:
        """The gateway's record of each order it sent for the account: ``client_order_id``,
        ``state`` (sending, acknowledged, rejected, unknown, not_placed), ``order_id``, ..."""
        return cast(RecordListT, self._call("order_outcomes", _wire_args(locals()), timeout))

    def journal_info(self, *, timeout: float | None = None) -> RecordT:
        """The event journal: epoch, first_seq, last_seq, count, size_bytes, path, retention."""
        return cast(RecordT, self._call("journal_info", {}, timeout))

    def query_credit_detail(self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None) -> RecordListT:
        """Credit (margin) account details; [] for a cash account (records named as the counter names them)."""
        return cast(RecordListT, self._call("query_credit_detail", _wire_args(locals()), timeout))

    def query_stk_compacts(self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None) -> RecordListT:
        """Margin contracts (records named as the counter names them)."""
        return cast(RecordListT, self._call("query_stk_compacts", _wire_args(locals()), timeout))

    def query_credit_subjects(self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None) -> RecordListT:
        """Margin-eligible securities (records named as the counter names them)."""
        return cast(RecordListT, self._call("query_credit_subjects", _wire_args(locals()), timeout))

    def query_credit_slo_code(self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None) -> RecordListT:
        """Securities available to borrow (records named as the counter names them)."""
        return cast(RecordListT, self._call("query_credit_slo_code", _wire_args(locals()), timeout))

    def query_credit_assure(self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None) -> RecordListT:
        """Collateral securities (records named as the counter names them)."""
        return cast(RecordListT, self._call("query_credit_assure", _wire_args(locals()), timeout))

    def query_new_purchase_limit(
        self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> RecordT:
        """IPO subscription quota, as a record ``{key: shares}`` (e.g. ``SH``, ``SZ``)."""
        return cast(RecordT, self._call("query_new_purchase_limit", _wire_args(locals()), timeout))

    def query_ipo_data(self, *, timeout: float | None = None) -> RecordT:
        """Today's new issues, as a record ``{code: {name, type, maxPurchaseNum, ...}}``."""
        return cast(RecordT, self._call("query_ipo_data", {}, timeout))

    def risk(self, *, timeout: float | None = None) -> RecordT:
        """The trading state, the risk limits, usage per account and denials per rule."""
        return cast(RecordT, self._call("risk", {}, timeout))

    def halt(self, cancel_open: bool = False, reason: str = "", *, timeout: float | None = None) -> RecordT:
        """Admin kill switch: no new orders until :meth:`resume`; ``cancel_open`` also cancels
        every open order. Durable across gateway restarts."""
        return cast(RecordT, self._call("halt", {"cancel_open": cancel_open, "reason": reason}, timeout))

    def reduce_only(self, reason: str = "", *, timeout: float | None = None) -> RecordT:
        """Admin: only orders that shrink a position (sells up to the sellable volume)."""
        return cast(RecordT, self._call("reduce_only", {"reason": reason}, timeout))

    def resume(self, reason: str = "", *, timeout: float | None = None) -> RecordT:
        """Admin: lift halt or reduce-only."""
        return cast(RecordT, self._call("resume", {"reason": reason}, timeout))

    def reload(self, *, timeout: float | None = None) -> RecordT:
        """Admin: the gateway reads its client keys again; keys that lost rights are cut off.
        Result: ``admitted`` (key names), ``revoked``, ``dropping_connections``."""
        return cast(RecordT, self._call("reload", {}, timeout))

    def sim(
        self, action: str, stock_code: str | None = None, price: float | None = None, percent: float | None = None,
        account_id: str | None = None, amount: float | None = None, volume: int | None = None, *,
        timeout: float | None = None,
    ) -> RecordT:
        """The simulated counter's controls (admin right; backend sim only; PROTOCOL §17):
        ``"status"``, ``"reset"``, ``"next_day"``, ``"price"`` (stock_code, price), ``"move"``
        (stock_code, percent), ``"deposit"`` (account_id, amount; negative withdraws),
        ``"position"`` (account_id, stock_code, volume)."""
        return cast(RecordT, self._call("sim", _wire_args(locals()), timeout))

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
        client_order_id: str | None = None,
        intentional: bool = False,
        account_type: str | int = "STOCK",
        timeout: float | None = None,
    ) -> RecordT:
        """Place an order and wait for the counter's response (``order_id``, ``error_msg``,
        ``client_order_id``, ...).

        ``intentional=True`` tells the gateway's duplicate-order guard that the same order
        again within its window is meant. A refusal by a risk rule raises ``GatewayError``
        with code ``risk_denied`` and ``details`` ``rule``, ``limit``, ``value``.

        ``order_type`` 23 / ``"buy"`` or 24 / ``"sell"``; ``price_type`` 11 / ``"limit"`` or a
        market price type. ``client_order_id`` makes the order idempotent: sending the same id
        again (after a time-out, from another process, after a gateway restart) returns the
        first outcome and never orders twice. One is generated when not given; pass your own
        to be able to retry safely. A time-out leaves the outcome unknown: retry with the same id.
        """
        return cast(RecordT, self._call("order_stock", _wire_args(locals()), timeout))

    order_stock_async = _twin(
        order_stock,
        "order_stock_async",
        """Place an order; the reply carries ``seq`` at once, the order id comes as an
        ``order_response`` event with that seq.""",
    )

    def cancel_order_stock(
        self, account_id: str, order_id: int, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> RecordT:
        """Cancel by order id; ``cancel_result`` 0 only means the cancel was sent, the outcome
        arrives as an order or cancel_error event."""
        return cast(RecordT, self._call("cancel_order_stock", _wire_args(locals()), timeout))

    cancel_order_stock_async = _twin(
        cancel_order_stock,
        "cancel_order_stock_async",
        "Cancel by order id; the reply carries ``seq``, the result comes as a cancel_response event.",
    )

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
        return cast(RecordT, self._call("cancel_order_stock_sysid", _wire_args(locals()), timeout))

    cancel_order_stock_sysid_async = _twin(
        cancel_order_stock_sysid,
        "cancel_order_stock_sysid_async",
        "Cancel by contract number; the reply carries ``seq``, the result comes as a cancel_response event.",
    )

    # -- queries --------------------------------------------------------------------------

    def query_stock_asset(
        self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> OptionalRecordT:
        """The account's asset (cash, frozen_cash, market_value, total_asset), or None."""
        return cast(OptionalRecordT, self._call("query_stock_asset", _wire_args(locals()), timeout))

    def query_stock_positions(
        self, account_id: str, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> RecordListT:
        """All positions of the account."""
        return cast(RecordListT, self._call("query_stock_positions", _wire_args(locals()), timeout))

    query_stock_trades = _twin(query_stock_positions, "query_stock_trades", "Today's trades of the account.")

    def query_stock_position(
        self, account_id: str, stock_code: str, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> OptionalRecordT:
        """The position in one stock, or None when the account holds none."""
        return cast(OptionalRecordT, self._call("query_stock_position", _wire_args(locals()), timeout))

    def query_stock_orders(
        self,
        account_id: str,
        cancelable_only: bool = False,
        *,
        account_type: str | int = "STOCK",
        timeout: float | None = None,
    ) -> RecordListT:
        """Today's orders; only those that can still be cancelled when ``cancelable_only``."""
        return cast(RecordListT, self._call("query_stock_orders", _wire_args(locals()), timeout))

    def query_stock_order(
        self, account_id: str, order_id: int, *, account_type: str | int = "STOCK", timeout: float | None = None
    ) -> OptionalRecordT:
        """One order by id, or None."""
        return cast(OptionalRecordT, self._call("query_stock_order", _wire_args(locals()), timeout))

    def query_account_infos(self, *, timeout: float | None = None) -> RecordListT:
        """The accounts known to the terminal."""
        return cast(RecordListT, self._call("query_account_infos", {}, timeout))

    query_account_status = _twin(query_account_infos, "query_account_status", "The login status of each account.")
