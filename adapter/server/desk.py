"""The order desk: what happens to every command and every broker message, without I/O.

The desk owns the commands in flight, exactly-once by ``client_order_id`` (through the
ledger), time-outs, reconciliation with the counter's books, the sweep of orders whose
outcome is unknown, the kill switch and the storage alarm (docs/architecture.md §3). It
never touches a socket: each input (``on_command``, ``on_broker``, ``on_tick``) appends
actions (``Reply``, ``Refuse``, ``Publish``, ``Control``, ``Submit``, ``Reconnect``) that
the gateway's I/O thread carries out, in order, with ``drain``. Time comes from the
clocks it is given, so every outcome can be tested with a fake clock and no broker.
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable, Union

from ..broker.messages import Answered, Books, BrokerMessage, Connection, Failed, Pushed, Responded, Sent
from ..config import Config
from ..keys import ClientKey
from .ledger import ACKNOWLEDGED, IN_FLIGHT, NOT_PLACED, REJECTED, SENDING, UNKNOWN, Ledger, OrderRecord, fingerprint, new_client_order_id
from ..protocol import ProtocolError, errors, events, mapping, ops
from .risk import HALTED, Denial, RiskEngine
from . import access
from .killswitch import KillSwitch
from .metrics import Metrics
from .pending import Pending, PendingTable
from .view import BooksView

log = logging.getLogger(__name__)

GATEWAY_CLIENT = b"\x00gateway"  # the routing id the gateway's own queries are counted under
ORDER_JUNK = mapping.ORDER_JUNK
ORDER_RECORD_QUERIES = frozenset({"query_stock_orders", "query_stock_order", "query_stock_trades"})
RAW_QUERIES = frozenset({"query_stock_orders", "query_stock_trades"})  # a day long: converted off the callback thread
_ALL_ACCOUNT_QUERIES = frozenset({"query_account_infos", "query_account_status"})
_SYNC_KINDS = (ops.ORDER, ops.CANCEL)
# The stores whose failure halts order entry (ping's "storage", the gateway.storage event).
JOURNAL_STORE, LEDGER_STORE, TRADING_STATE_STORE = "journal", "ledger", "trading-state"
RISK_EVENTS_PER_SECOND = 10  # risk_denied events journaled per account; the rest only replied and counted
NOT_RECORDED = ("the order could not be recorded, so it was not sent; "
                "the same client_order_id may be sent again once storage works")


# -- actions: what the I/O thread is asked to do, in this order ---------------------------

@dataclass(slots=True)
class Reply:
    envelope: list[bytes]
    request_id: Any
    result: Any
    op: str = ""  # the query whose records get their client order ids linked on the way out


@dataclass(slots=True)
class Refuse:
    envelope: list[bytes]
    request_id: Any
    code: str
    message: str
    details: dict[str, Any] | None = None


@dataclass(slots=True)
class Publish:
    """A numbered, journaled event."""

    event_type: str
    account_id: str | None
    data: dict[str, Any]
    ts: int
    reconciled: bool = False


@dataclass(slots=True)
class Control:
    """An unnumbered control event (pong, storage), sent at once."""

    event_type: str
    data: dict[str, Any]


@dataclass(slots=True)
class Submit:
    """Hand a command to the broker thread, once the ledger has committed this batch."""

    token: int
    spec: ops.OpSpec
    args: dict[str, Any]
    record: OrderRecord | None = None
    raw: bool = False  # a client's list query: answered as ``Records``, converted where it is encoded


@dataclass(slots=True)
class Reconnect:
    """The counter connection was lost: let the broker reconnect."""


Action = Union[Reply, Refuse, Publish, Control, Submit, Reconnect]


class Desk:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        risk: RiskEngine,
        killswitch: KillSwitch,
        view: BooksView,
        *,
        curve: bool = False,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.risk = risk
        self.killswitch = killswitch
        self.view = view
        self.metrics = metrics
        if metrics is not None:  # every store's series from the start: a dashboard shows 0, not "no data"
            for store in (JOURNAL_STORE, LEDGER_STORE, TRADING_STATE_STORE):
                metrics.storage_failed.labels(store).set(0)
        self._curve = curve
        self._clock = clock
        self._wall = wall
        self._accounts = frozenset(config.accounts)
        self.pending = PendingTable()
        self._deadlines: list[tuple[float, int]] = []
        self._tokens = itertools.count(1)
        self._actions: list[Action] = []
        self._risk_events: dict[str, collections.deque[float]] = {}  # account -> times of journaled denials
        self.storage_problems: dict[str, str] = {}  # store -> the error that stopped it
        self.connected = False
        self.closing = False
        self.risk_events_dropped = 0
        self._next_sweep = 0.0

    # -- the I/O thread's side --------------------------------------------------------

    def drain(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    def next_wake(self) -> float | None:
        """When ``on_tick`` next has work (a time-out or the sweep)."""
        wake = self._next_sweep
        if self._deadlines:
            wake = min(wake, self._deadlines[0][0])
        return wake

    # -- commands -----------------------------------------------------------------------

    def admit(self, op: Any, raw_args: Any, key: ClientKey | None) -> tuple[ops.OpSpec, dict[str, Any]]:
        """The op, its arguments checked, the key's rights and the account; raises ProtocolError."""
        spec = ops.lookup(op)
        args = ops.validate_args(spec, raw_args)
        if key is None:
            raise ProtocolError(errors.PERMISSION_DENIED, f"{spec.name}: this key is no longer authorised")
        permission = access.permission_for(spec)
        if permission is not None and not access.has_permission(key, permission):
            raise ProtocolError(
                errors.PERMISSION_DENIED,
                f"{spec.name} needs the {permission!r} permission; key {key.name!r} has "
                f"{', '.join(sorted(key.permissions))}",
            )
        if spec.takes_account:
            if not access.may_use(key, args["account_id"]):
                raise ProtocolError(
                    errors.PERMISSION_DENIED, f"key {key.name!r} may not use account {args['account_id']!r}")
            if args["account_id"] not in self._accounts:
                raise ProtocolError(
                    errors.UNKNOWN_ACCOUNT,
                    f"account {args['account_id']!r} is not served by this gateway "
                    f"(serving {', '.join(sorted(self._accounts))})",
                )
        return spec, args

    def on_command(self, envelope: list[bytes], request_id: Any, spec: ops.OpSpec, args: dict[str, Any],
                   key: ClientKey) -> None:
        """An order, cancel or query, admitted: to the counter once, or answered here."""
        record = None
        if spec.kind in (ops.ORDER, ops.ORDER_ASYNC):
            args["client_order_id"] = args["client_order_id"] or new_client_order_id()
            try:
                record = self.ledger.get(args["account_id"], args["client_order_id"])
            except (sqlite3.Error, OSError) as exc:  # older orders are read from disk
                log.exception("%s: the ledger could not be read", spec.name)
                self.storage_failed(LEDGER_STORE, str(exc))
                self._refuse(envelope, request_id, errors.STORAGE_FAILED,
                             f"{spec.name}: the ledger could not be read, so the order was not sent; "
                             "the same client_order_id may be sent again once storage works")
                return
            if record is not None:  # the same id again: never to the counter twice
                self._repeat(envelope, request_id, spec, args, record)
                return
        if spec.kind not in (ops.QUERY, ops.CONTROL):  # the risk rules are for orders and cancels
            try:
                self._check_risk(spec, args, key)
            except Denial as denial:
                self._deny(envelope, request_id, spec, args, denial)
                return
        busy = self._busy(envelope[0])  # after the ledger: a settled repeat is answered regardless
        if busy:
            self._refuse(envelope, request_id, errors.TOO_MANY_REQUESTS, f"{spec.name}: {busy}; retry when answers arrive")
            return
        if self.closing or not self.connected:
            reason = "gateway is shutting down" if self.closing else "the counter is not connected"
            self._refuse(envelope, request_id, errors.BROKER_UNAVAILABLE, f"{spec.name}: {reason}; retry later")
            return
        broker_args = args
        if spec.kind in (ops.ORDER, ops.ORDER_ASYNC):
            try:
                record = self.ledger.create(args["account_id"], args["client_order_id"], args)  # durable first
            except (sqlite3.Error, OSError) as exc:
                log.exception("%s: the order could not be recorded", spec.name)
                self.storage_failed(LEDGER_STORE, str(exc))
                self._refuse(envelope, request_id, errors.STORAGE_FAILED, f"{spec.name}: {NOT_RECORDED}")
                return
            broker_args = {**args, "order_remark": record.tag}  # the user's remark stays in the ledger
        pending = self._wait(envelope, request_id, spec, args, record)
        pending.key = key
        self._actions.append(Submit(pending.token, spec, broker_args, record, raw=spec.name in RAW_QUERIES))

    def not_recorded(self, submit: Submit) -> None:
        """The batch holding this order's record failed to commit: it is refused, not sent."""
        pending = self.pending.pop(submit.token, None)
        if pending is not None:
            self._refuse(pending.envelope, pending.request_id, errors.STORAGE_FAILED,
                         f"{submit.spec.name}: {NOT_RECORDED}")

    def _check_risk(self, spec: ops.OpSpec, args: dict[str, Any], key: ClientKey) -> None:
        """Pre-trade checks of a new order or cancel; raises Denial."""
        key_name = key.name if self._curve else None
        account_id = args["account_id"]
        if spec.kind in (ops.ORDER, ops.ORDER_ASYNC):
            self.risk.check_order(account_id, key_name, args, self.view.books(account_id), self.killswitch.state,
                                  in_flight=self.ledger.sending(account_id))
        else:
            self.risk.check_cancel(account_id, key_name)

    def _deny(
        self, envelope: list[bytes], request_id: Any, spec: ops.OpSpec, args: dict[str, Any], denial: Denial
    ) -> None:
        """Answer risk_denied and publish it; nothing reaches the counter or the ledger."""
        log.warning(
            "%s id=%r account=%s client_order_id=%s denied by %s: %s", spec.name, request_id, args["account_id"],
            args.get("client_order_id"), denial.rule, denial.message,
            extra={**order_fields(args, request_id), "rule": denial.rule},
        )
        if self._risk_event_allowed(args["account_id"]):
            data = {name: args.get(name) for name in events.RISK_DENIED_FIELDS}
            data.update(rule=denial.rule, message=denial.message, limit=denial.limit, value=denial.value,
                        op=spec.name)
            self._publish(events.RISK_DENIED, args["account_id"], data, self._wall())
        else:
            self.risk_events_dropped += 1
        if self.metrics is not None:
            self.metrics.denials.labels(denial.rule).inc()
        self._refuse(envelope, request_id, errors.RISK_DENIED, f"{denial.rule}: {denial.message}", denial.details())

    def _risk_event_allowed(self, account_id: str) -> bool:
        """At most RISK_EVENTS_PER_SECOND journaled denials per account: a client hammering a
        rule cannot push real history out of retention (its replies and the metrics count all)."""
        now = self._clock()
        window = self._risk_events.setdefault(account_id, collections.deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= RISK_EVENTS_PER_SECOND:
            return False
        window.append(now)
        return True

    def _busy(self, client: bytes) -> str:
        """Why a new broker command from ``client`` must wait, or ''."""
        if self.pending.count_for(client) >= self.config.max_inflight_per_client:
            return f"this client has {self.config.max_inflight_per_client} commands in flight already"
        if len(self.pending) >= self.config.max_inflight:
            return f"the gateway has {self.config.max_inflight} commands in flight already"
        return ""

    def _wait(
        self, envelope: list[bytes], request_id: Any, spec: ops.OpSpec, args: dict[str, Any],
        record: OrderRecord | None,
    ) -> Pending:
        token = next(self._tokens)
        deadline = self._clock() + self.config.broker_timeout
        pending = Pending(token, envelope, request_id, spec, args, deadline, record=record, started=self._clock())
        self.pending.add(pending)
        heapq.heappush(self._deadlines, (deadline, token))
        if record is not None:
            record.waiters.append(pending)
        return pending

    def _repeat(
        self, envelope: list[bytes], request_id: Any, spec: ops.OpSpec, args: dict[str, Any], record: OrderRecord
    ) -> None:
        """A client order id seen before: the first outcome, or a wait for it."""
        cid = record.client_order_id
        if record.fingerprint != fingerprint(args):
            self._refuse(
                envelope, request_id, errors.DUPLICATE_CLIENT_ORDER_ID,
                f"client_order_id {cid!r} was already used for a different order on account {record.account_id}",
            )
        elif record.state in (ACKNOWLEDGED, REJECTED):
            self._reply(envelope, request_id, order_result(spec, record))
        elif record.state == UNKNOWN:
            self._refuse(envelope, request_id, errors.OUTCOME_UNKNOWN, unknown_message(record))
        elif record.state == NOT_PLACED:
            self._refuse(
                envelope, request_id, errors.ORDER_NOT_PLACED,
                f"order {cid!r} never reached the counter (reconciled: {record.error_msg}); "
                "send it again with a new client_order_id",
            )
        elif spec.kind == ops.ORDER_ASYNC and record.seq is not None:
            self._reply(envelope, request_id, order_result(spec, record))
        else:  # still on its way: this request gets the same answer as the first
            self._wait(envelope, request_id, spec, args, record)

    def _internal(self, spec: ops.OpSpec, args: dict[str, Any], on_result: Callable[[Any], None]) -> None:
        """A command of the gateway's own, answered to ``on_result`` instead of a client."""
        if not self.connected or self.closing:
            log.warning("%s for %s not sent: the counter is not connected", spec.name, args.get("account_id"))
            return
        token = next(self._tokens)
        deadline = self._clock() + self.config.broker_timeout
        self.pending.add(Pending(token, [GATEWAY_CLIENT], None, spec, args, deadline, on_result=on_result,
                                 started=self._clock()))
        heapq.heappush(self._deadlines, (deadline, token))
        self._actions.append(Submit(token, spec, args))

    # -- the kill switch and the storage alarm ------------------------------------------

    def set_trading(self, state: str, reason: str, cancel_open: bool = False) -> dict[str, Any]:
        """The kill switch: in force at once, saved, then announced; optionally cancel every
        open order. A state that cannot be saved stays in force and raises the storage alarm."""
        previous = self.killswitch.state
        if not self.killswitch.set(state, reason):
            self.storage_failed(TRADING_STATE_STORE, self.killswitch.save_error)
        self._publish(events.TRADING, None, {"state": state, "reason": reason, "cancel_open": cancel_open}, self._wall())
        log.warning("trading state %s -> %s%s%s", previous, state.upper(), f": {reason}" if reason else "",
                    " (cancelling every open order)" if cancel_open else "")
        if cancel_open:
            for account_id in self.config.accounts:
                args = {"account_id": account_id, "account_type": "STOCK", "cancelable_only": True}
                self._internal(ops.OPS["query_stock_orders"], args, functools.partial(self._cancel_all, account_id))
        return {**self.killswitch.as_map(), "previous": previous, "cancel_open": cancel_open}

    def _cancel_all(self, account_id: str, orders: list[dict[str, Any]] | None) -> None:
        spec = ops.OPS["cancel_order_stock_async"]
        for order in orders or ():
            log.info("halt: cancelling order %s of %s (%s)", order["order_id"], account_id, order.get("stock_code"))
            self._internal(spec, {"account_id": account_id, "account_type": "STOCK", "order_id": order["order_id"]},
                           lambda _result: None)

    def storage_failed(self, store: str, error: str) -> None:
        """A store could not be written: order entry stops at once (the kill switch, in memory
        first), and ping, metrics, the log and a ``gateway.storage`` event say so."""
        first = store not in self.storage_problems
        self.storage_problems[store] = error
        if first:
            log.critical("STORAGE FAILED: %s: %s; order entry is halted until 'qmt-adapter resume'", store, error)
            self._actions.append(Control(events.STORAGE, {"ok": False, "store": store, "error": error}))
        if self.killswitch.state != HALTED:
            self.set_trading(HALTED, f"storage failed: {store}: {error}")
        if self.metrics is not None:
            self.metrics.storage_failed.labels(store).set(1)

    def storage_recovered(self, store: str) -> None:
        if self.storage_problems.pop(store, None) is None:
            return
        log.warning("storage recovered: %s (trading stays %s until 'qmt-adapter resume')", store,
                    self.killswitch.state.upper())
        self._actions.append(Control(events.STORAGE, {"ok": True, "store": store, "error": ""}))
        if self.metrics is not None:
            self.metrics.storage_failed.labels(store).set(0)

    # -- broker messages ----------------------------------------------------------------

    def on_broker(self, message: BrokerMessage) -> None:
        if isinstance(message, Pushed):
            if message.event_type in events.ORDER_LINKED:
                self._learn(self.link(message.data), message.event_type, message.data)
            self._publish(message.event_type, message.account_id, message.data, message.ts)
        elif isinstance(message, Responded):
            self._on_response(message)
        elif isinstance(message, Sent):
            self._on_sent(message)
        elif isinstance(message, Answered):
            pending = self.pending.pop(message.token, None)
            if pending is not None:
                self._complete(pending, message.result)
        elif isinstance(message, Failed):
            self._on_failed(message)
        elif isinstance(message, Books):
            self._reconcile(message.account_id, message.books)
        elif isinstance(message, Connection):
            self._on_connection(message.connected, message.reason, message.ts)
        else:  # a type added to messages.py and not here: a bug, reported, not hidden
            raise TypeError(f"unknown broker message {message!r}")

    def _on_sent(self, message: Sent) -> None:
        pending = self.pending.get(message.token)
        if pending is None:
            return
        pending.seq = message.seq
        if pending.record is not None:
            pending.record.seq = message.seq
            self._answer(pending.record, ops.ORDER_ASYNC)
        elif message.kind not in _SYNC_KINDS:
            done = self.pending.pop(message.token)
            if done is not None:
                self._complete(done, {"seq": message.seq})

    def _on_failed(self, message: Failed) -> None:
        pending = self.pending.pop(message.token, None)
        if pending is None:
            return
        record = pending.record
        if record is None:
            self._refuse(pending.envelope, pending.request_id, message.code, message.message)
            return
        self._lost(record, message.message)  # the request may have left: only the counter's books can tell
        # The failed request is among the order's waiters; the others wait on the same outcome.
        for waiter in [pending, *(w for w in record.waiters if w is not pending)]:
            if waiter is pending or self.pending.pop(waiter.token, None) is not None:
                self._refuse(waiter.envelope, waiter.request_id, errors.OUTCOME_UNKNOWN, unknown_message(record))
        record.waiters.clear()

    def _on_response(self, message: Responded) -> None:
        token, kind, data = message.token, message.kind, message.data
        if message.event_type == "order_response":
            pending = self.pending.get(token) if token is not None else None
            record = self.link(data, pending.record if pending is not None else None)
            if record is not None:
                if record.state in IN_FLIGHT:
                    order_id = data.get("order_id") or 0
                    pushed = self.view.books(record.account_id)["orders"].get(order_id) or {}
                    refused = order_id <= 0 or pushed.get("order_status") == ORDER_JUNK  # pushes may come first
                    self.ledger.settle(
                        record, REJECTED if refused else ACKNOWLEDGED,
                        order_id=order_id if order_id > 0 else None, error_msg=data.get("error_msg") or "",
                        response=data,
                    )
                if self._answer(record, ops.ORDER) and kind == ops.ORDER:
                    return  # a sync op's response is its reply, not an event
        else:
            pending = self.pending.pop(token, None) if kind in _SYNC_KINDS and token is not None else None
            if pending is not None:
                self._complete(pending, data)
                return
        self._publish(message.event_type, message.account_id, data, message.ts)  # an async op's response, or a late one

    def _answer(self, record: OrderRecord, kind: str) -> bool:
        """Reply to the requests of ``kind`` waiting on this order; True if there were any."""
        answered = False
        for waiter in [w for w in record.waiters if w.spec.kind == kind]:
            record.waiters.remove(waiter)
            if self.pending.pop(waiter.token, None) is not None:
                self._complete(waiter, order_result(waiter.spec, record))
                answered = True
        return answered

    def link(self, data: dict[str, Any], record: OrderRecord | None = None) -> OrderRecord | None:
        """Map a counter record back to its order: client order id and the user's remark."""
        found = self.ledger.by_tag(data.get("order_remark"))
        if found is None and data.get("order_id"):
            found = self.ledger.by_order_id(data.get("account_id") or "", data.get("order_id"))
        record = found or record
        if record is not None:
            data["client_order_id"] = record.client_order_id
            data["order_remark"] = record.order_remark
        return record

    def link_all(self, records: list[dict[str, Any]]) -> None:
        """``link`` for a long answer (a day's orders or trades), reading the ledger in bulk."""
        names = self.ledger.names(data.get("order_remark") for data in records)
        for data in records:
            name = names.get(data.get("order_remark"))  # type: ignore[arg-type]
            if name is not None:
                data["client_order_id"], data["order_remark"] = name
            elif data.get("order_id"):
                self.link(data)

    def _learn(self, record: OrderRecord | None, event_type: str, data: dict[str, Any]) -> None:
        """An order event settles an order whose acknowledgement was lost, and a counter
        refusal after numbering (status 57) makes an acknowledged order rejected."""
        if record is None or event_type != "order" or not data.get("order_id"):
            return
        if record.state == ACKNOWLEDGED and data.get("order_status") == ORDER_JUNK:
            self.ledger.settle(record, REJECTED, error_msg=data.get("status_msg") or "refused by the counter")
            return
        if record.state != UNKNOWN:
            return
        state = REJECTED if data.get("order_status") == ORDER_JUNK else ACKNOWLEDGED
        self.ledger.settle(record, state, order_id=data["order_id"], error_msg=data.get("status_msg") or "",
                           response=response_from_order(data))
        log.info("order account=%s client_order_id=%s resolved from the counter's push: %s, order_id %s",
                 record.account_id, record.client_order_id, state, record.order_id,
                 extra={"account_id": record.account_id, "client_order_id": record.client_order_id,
                        "request_id": None})

    def _on_connection(self, connected: bool, reason: str, ts: int) -> None:
        self.connected = connected
        (log.info if connected else log.warning)("counter connection: %s", reason)
        self._publish(events.CONNECTION, None, {"connected": connected, "reason": reason}, ts)
        if connected or self.closing:
            return
        # What was with the counter now has an unknown outcome; reconciliation settles it.
        for pending in self.pending.values():
            self.pending.pop(pending.token)
            record = pending.record
            if record is not None:
                self._lost(record, "counter connection lost")
                record.waiters.clear()
                self._refuse(pending.envelope, pending.request_id, errors.OUTCOME_UNKNOWN, unknown_message(record))
            else:
                self._refuse(
                    pending.envelope, pending.request_id, errors.BROKER_UNAVAILABLE,
                    f"{pending.spec.name}: the counter connection was lost before it answered; retry later",
                )
        self._actions.append(Reconnect())

    def _reconcile(self, account_id: str, books: dict[str, Any]) -> None:
        """Compare the counter's books with what was published; publish what was missed.

        Runs at start-up and after every reconnection, before commands are served again.
        Differences go out as normal events marked ``reconciled``; orders whose outcome was
        unknown are settled from the counter's own order list (by remark tag), never guessed.
        """
        known = self.view.books(account_id)
        now = self._wall()
        orders = [dict(o) for o in books.get("orders", ())]
        trades = [dict(t) for t in books.get("trades", ())]
        for counter_records in (orders, trades):
            for data in counter_records:
                self.link(data)
        published = 0
        # One read of the view's store for the day, not one per counter record.
        seen_trades = set(known["trades"])
        seen_orders = {order["order_id"]: order for order in known["orders"].records()}
        for trade in trades:
            if trade["traded_id"] not in seen_trades:
                self._publish("trade", account_id, trade, now, reconciled=True)
                published += 1
        for order in orders:
            if seen_orders.get(order["order_id"]) != order:
                self._publish("order", account_id, order, now, reconciled=True)
                published += 1
        for position in books.get("positions", ()):
            if known["positions"].get(position["stock_code"]) != position:
                self._publish("position", account_id, dict(position), now, reconciled=True)
                published += 1
        asset = books.get("asset")
        if asset is not None and known["asset"] != asset:
            self._publish("asset", account_id, dict(asset), now, reconciled=True)
            published += 1
        by_tag = {o["client_order_id"]: o for o in orders if o.get("client_order_id")}
        for record in self.ledger.in_flight():
            if record.account_id != account_id or record.waiters:
                continue
            found = by_tag.get(record.client_order_id)
            if found is not None:
                state = REJECTED if found.get("order_status") == ORDER_JUNK else ACKNOWLEDGED
                self.ledger.settle(record, state, order_id=found["order_id"], response=response_from_order(found))
            else:
                self.ledger.settle(record, NOT_PLACED, error_msg="not in the counter's orders of the day")
                self._announce_not_placed(record, now)
            log.info("reconciled order account=%s client_order_id=%s: %s (order_id %s)", record.account_id,
                     record.client_order_id, record.state, record.order_id,
                     extra={"account_id": record.account_id, "client_order_id": record.client_order_id,
                            "request_id": None})
        self.view.load(account_id, {"asset": asset, "positions": books.get("positions", ()),
                                    "orders": orders, "trades": trades})  # the counter's books are the truth
        log.info("reconciled account %s: %d events published from the counter's books", account_id, published)

    def _announce_not_placed(self, record: OrderRecord, ts: int) -> None:
        """An accepted order found never placed reaches its final state in public: the
        order_response (order_id -1) and order_error an async sender waits for (PROTOCOL §3.4)."""
        message = f"order {record.client_order_id!r} was never placed: {record.error_msg}"
        values = {"account_type": mapping.ACCOUNT_TYPE_BY_NAME["STOCK"], "account_id": record.account_id, "order_id": -1, "error_id": -1,
                  "error_msg": message, "strategy_name": record.strategy_name, "order_remark": record.order_remark,
                  "seq": record.seq, "client_order_id": record.client_order_id}
        for event_type in ("order_response", "order_error"):
            fields = events.EVENT_FIELDS[event_type]
            self._publish(event_type, record.account_id, {f: values[f] for f in fields}, ts, reconciled=True)

    # -- time ---------------------------------------------------------------------------

    def on_tick(self, now: float) -> None:
        """Time-outs due by ``now``, and the sweep of unknown outcomes when it is time."""
        self._expire(now)
        if now >= self._next_sweep:
            self._sweep_unknown(now)

    def _sweep_unknown(self, now: float) -> None:
        """While an order's outcome is unknown, look at the counter's orders now and then.

        An order found there by its tag is settled. Absence proves nothing while the
        connection is up (the request may still be on its way), so only reconciliation
        after a reconnection or restart marks an order not placed.
        """
        self._next_sweep = now + self.config.unknown_sweep_interval
        accounts = {r.account_id for r in self.ledger.in_flight() if r.state == UNKNOWN}
        if not accounts or not self.connected or self.closing:
            return
        spec = ops.OPS["query_stock_orders"]
        for account_id in sorted(accounts):
            args = {"account_id": account_id, "account_type": "STOCK", "cancelable_only": False}
            self._internal(spec, args, self._settle_found)

    def _settle_found(self, orders: list[dict[str, Any]] | None) -> None:
        for order in orders or ():
            record = self.link(order)
            if record is not None and record.state == UNKNOWN:
                self._learn(record, "order", order)

    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, token = heapq.heappop(self._deadlines)
            pending = self.pending.pop(token, None)
            if pending is None:
                continue
            log.warning(
                "%s id=%r account=%s client_order_id=%s timed out (seq %s)", pending.spec.name, pending.request_id,
                pending.args.get("account_id"), pending.args.get("client_order_id"), pending.seq,
                extra=order_fields(pending.args, pending.request_id),
            )
            record = pending.record
            if record is not None:
                self._lost(record, "no answer from the counter in time")
                if pending in record.waiters:
                    record.waiters.remove(pending)
                self._refuse(pending.envelope, pending.request_id, errors.OUTCOME_UNKNOWN, unknown_message(record))
                continue
            self._refuse(
                pending.envelope,
                pending.request_id,
                errors.BROKER_TIMEOUT,
                f"{pending.spec.name}: no answer from the counter within "
                f"{self.config.broker_timeout:g} s{_cancel_unknown(pending)}",
            )

    def _lost(self, record: OrderRecord, why: str) -> None:
        """An order on its way got no answer: its outcome is unknown until the counter tells."""
        if record.state == SENDING:
            self.ledger.settle(record, UNKNOWN, error_msg=why)

    def on_stop(self) -> None:
        """The gateway stops: what reached the broker has an unknown outcome, as with a time-out."""
        for pending in self.pending.values():
            if pending.record is not None:
                self._lost(pending.record, "the gateway stopped before the counter answered")
                self._refuse(pending.envelope, pending.request_id, errors.OUTCOME_UNKNOWN,
                             unknown_message(pending.record))
                continue
            self._refuse(
                pending.envelope,
                pending.request_id,
                errors.BROKER_TIMEOUT,
                f"{pending.spec.name}: the gateway stopped before the counter answered{_cancel_unknown(pending)}",
            )
        self.pending.clear()

    # -- outcomes -----------------------------------------------------------------------

    def _complete(self, pending: Pending, result: Any) -> None:
        if pending.on_result is not None:
            pending.on_result(result)
            return
        if pending.spec.name in _ALL_ACCOUNT_QUERIES and isinstance(result, list) and pending.key is not None:
            result = access.filter_accounts(result, pending.key)
        if pending.spec.kind != ops.QUERY:
            args = pending.args
            log.info(
                "%s id=%r account=%s %s -> %s (%.1f ms)", pending.spec.name, pending.request_id,
                args.get("account_id"), describe_command(args), describe_result(result),
                (self._clock() - pending.started) * 1000, extra=order_fields(pending.args, pending.request_id),
            )
        op = pending.spec.name if pending.spec.name in ORDER_RECORD_QUERIES and result is not None else ""
        self._actions.append(Reply(pending.envelope, pending.request_id, result, op))

    def _reply(self, envelope: list[bytes], request_id: Any, result: Any) -> None:
        self._actions.append(Reply(envelope, request_id, result))

    def _refuse(self, envelope: list[bytes], request_id: Any, code: str, message: str,
                details: dict[str, Any] | None = None) -> None:
        self._actions.append(Refuse(envelope, request_id, code, message, details))

    def _publish(self, event_type: str, account_id: str | None, data: dict[str, Any], ts: int,
                 reconciled: bool = False) -> None:
        self.view.apply(event_type, account_id, data)
        self._actions.append(Publish(event_type, account_id, data, ts, reconciled))

    # -- what ping shows --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "pending": len(self.pending),
            "risk_events_dropped": self.risk_events_dropped,
            "unknown_orders": self.ledger.count(UNKNOWN),
            "trading_state": self.killswitch.state,
        }


def order_result(spec: ops.OpSpec, record: OrderRecord) -> dict[str, Any]:
    if spec.kind == ops.ORDER_ASYNC:
        return {"seq": record.seq, "client_order_id": record.client_order_id, "order_id": record.order_id}
    return dict(record.response or {})


def order_fields(args: dict[str, Any], request_id: Any) -> dict[str, Any]:
    """Structured fields of an order-related log line (JSON logs carry them as keys)."""
    return {"account_id": args.get("account_id"), "client_order_id": args.get("client_order_id"),
            "request_id": request_id}


def unknown_message(record: OrderRecord) -> str:
    return (
        f"order {record.client_order_id!r}: {record.error_msg or 'no answer from the counter'}; its outcome is "
        "unknown until reconciliation reads the counter's books. Retrying with the same client_order_id is safe: "
        "it returns the outcome once known and never orders twice"
    )


def response_from_order(order: dict[str, Any]) -> dict[str, Any]:
    """An order response rebuilt from the counter's order record (the original was lost)."""
    fields = ("account_type", "account_id", "order_id", "strategy_name", "order_remark")
    response = {name: order.get(name) for name in fields}
    response.update(error_msg=order.get("status_msg") or "" if order.get("order_status") == ORDER_JUNK else "",
                    seq=None, client_order_id=order.get("client_order_id"))
    return response


def _cancel_unknown(pending: Pending) -> str:
    """For a cancel that timed out (orders have ledger records and unknown_message)."""
    if pending.spec.kind not in (ops.CANCEL, ops.CANCEL_ASYNC):
        return ""
    seq = f" (xtquant seq {pending.seq})" if pending.seq is not None else ""
    return f"; its outcome is unknown until the counter reports it{seq}: check orders and events before resending"


def describe_command(args: dict[str, Any]) -> str:
    if "stock_code" in args and "order_volume" in args:
        side = mapping.ORDER_TYPE_NAMES.get(args["order_type"], args["order_type"])
        return (
            f"client_order_id={args.get('client_order_id')} "
            f"{side} {args['stock_code']} {args['order_volume']}@{args['price']:g} type={args['price_type']}"
        )
    if "order_id" in args:
        return f"order_id={args['order_id']}"
    if "sysid" in args:
        return f"market={args['market']} sysid={args['sysid']}"
    return ""


def describe_result(result: Any) -> str:
    if isinstance(result, dict):
        keys = ("order_id", "cancel_result", "seq", "error_msg")
        return " ".join(f"{k}={result[k]!r}" for k in keys if result.get(k) not in (None, ""))
    return repr(result)
