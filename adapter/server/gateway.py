"""The gateway: one I/O thread owns the ROUTER and the PUB (docs/architecture.md §2).

Commands arrive on the ROUTER, are validated here, and are either answered at once
(``ping``, bad input) or handed to the broker thread. Everything the broker and xtquant's
callback thread produce comes back through the ``Inbox`` and is turned into replies or
events on this thread, which alone numbers the events.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import sqlite3
import threading
import time
from typing import Any, Iterator

import zmq

from .. import __version__
from ..broker import XtBroker
from ..config import Config
from ..config import ConfigError, load_risk
from ..keys import ClientKey, KeyFileError
from ..reference import reference_for
from ..risk import HALTED, NORMAL, REDUCE_ONLY, Denial, RiskEngine
from ..journal import Journal, SeqExpired
from ..ledger import ACKNOWLEDGED, IN_FLIGHT, NOT_PLACED, REJECTED, SENDING, UNKNOWN, Ledger, OrderRecord, fingerprint, new_client_order_id
from ..protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    RequestError,
    decode_request,
    encode_error,
    encode_event,
    encode_ok,
    encode_ok_packed,
    errors,
    events,
    mapping,
    ops,
    pack,
    unpack,
)
from . import access
from .access import Access
from .inbox import Inbox
from .killswitch import KillSwitch
from .metrics import Metrics
from .pending import Pending, PendingTable
from .view import BooksView

log = logging.getLogger(__name__)

# Commands read per wake-up before the inbox gets a turn, so neither side starves.
COMMAND_BATCH = 256

_SYNC_KINDS = (ops.ORDER, ops.CANCEL)
_GATEWAY_CLIENT = b"\x00gateway"  # the routing id the gateway's own queries are counted under
_ORDER_RECORD_QUERIES = frozenset({"query_stock_orders", "query_stock_order", "query_stock_trades"})
_ALL_ACCOUNT_QUERIES = frozenset({"query_account_infos", "query_account_status"})
ORDER_JUNK = mapping.ORDER_JUNK
DROP_DELAY = 0.2  # seconds between a reload's reply and dropping connections, so the reply leaves
# The stores whose failure halts order entry (ping's "storage", the gateway.storage event).
JOURNAL_STORE, LEDGER_STORE, TRADING_STATE_STORE = "journal", "ledger", "trading-state"
RISK_EVENTS_PER_SECOND = 10  # risk_denied events journaled per account; the rest only replied and counted
MAX_UNJOURNALED = 100_000  # events held while the journal fails; beyond, dropped (never published)
# A query answer this long (records) is linked and encoded on the encoder thread, not the I/O
# thread, so a day's orders do not stall everyone else; at most MAX_ENCODING wait there.
LARGE_RESULT = 500
MAX_REPLAY_BYTES = 1 << 20  # event payload bytes per replay page: a page of 10,000 large events stays small
MAX_ENCODING = 8


class Gateway:
    """ROUTER/PUB front of one ``XtQuantTrader``.

    ``start()`` binds, brings the counter up (start, connect, subscribe, query) and starts
    the I/O thread; ``stop()`` stops the broker, answers what is still pending, closes.
    """

    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        self._config_path = config_path  # re-read by reload for the [risk] limits
        self.router_endpoint = ""
        self.pub_endpoint = ""
        self._inbox = Inbox()
        self.broker = XtBroker(config, self._inbox.post)
        self._accounts = frozenset(config.accounts)
        self.access = Access(config)
        self._reference = reference_for(config)
        self.risk = RiskEngine(config.risk_config(), self._reference)
        self.killswitch = KillSwitch(config.data_dir)
        self._storage_problems: dict[str, str] = {}  # store -> the error that stopped it
        self._encoder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qmt-gateway-encode")
        self._encoding = 0  # large answers handed to the encoder, not yet sent
        self._risk_events: dict[str, collections.deque[float]] = {}  # account -> times of journaled denials
        self._backlog: list[tuple[int, int, bytes, bytes]] = []  # numbered, not yet journaled: not published
        self.metrics: Metrics | None = Metrics() if config.metrics_port else None
        self.metrics_port = 0
        self._asked: dict[tuple[bytes, Any], tuple[str, float]] = {}  # (client, request id) -> (op, read at)
        self._monitors: list[tuple[zmq.Socket, str]] = []
        self._peers = {"router": 0, "pub": 0}
        self.journal: Journal | None = None
        self.ledger: Ledger | None = None
        self._view = BooksView(config.accounts)
        self._batch: list[tuple[int, int, bytes, bytes]] = []  # (seq, ts, topic, payload) not yet journaled
        self._next_heartbeat = 0.0
        self._next_sweep = 0.0
        self._drop_at = 0.0  # when to drop every connection (a key lost rights); 0: not planned
        # A batch of commands or inbox items shares one ledger commit; what must follow the
        # commit (replies, orders to the counter) waits here until it is done.
        self._batching = False
        self._held_replies: list[tuple[int, list[bytes], bytes]] = []  # (events made before it, ...)
        self._held_submits: list[tuple[int, ops.OpSpec, dict[str, Any], OrderRecord | None]] = []
        self._context: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._closing = False
        self._started_at = 0.0
        # I/O-thread state
        self._pending = PendingTable()
        self._deadlines: list[tuple[float, int]] = []
        self._tokens = itertools.count(1)
        self._event_seq = 0
        self._connected = False
        self.stats: dict[str, int] = {
            "commands": 0,
            "errors": 0,
            "events": 0,
            "replies_dropped": 0,
            "journal_errors": 0,
            "risk_events_dropped": 0,
        }

    # -- control (any thread) ----------------------------------------------------------

    def start(self) -> None:
        context = zmq.Context()
        try:
            self.access.start(context)  # ZAP is up before any socket binds
        except BaseException:
            context.term()
            raise
        router = context.socket(zmq.ROUTER)
        # XPUB in manual mode: the I/O thread grants each subscription from the subscriber's key.
        pub = context.socket(zmq.XPUB)
        try:
            pub.setsockopt(zmq.XPUB_MANUAL, 1)
            self.access.secure(router)
            self.access.secure(pub)
            router.linger = 0
            router.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_size)
            router.sndhwm = self.config.router_hwm  # a client that stops reading loses replies, not our memory
            router.bind(self.config.router)
            pub.linger = 0
            pub.sndhwm = self.config.pub_hwm
            pub.bind(self.config.pub)
            self.router_endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            self.pub_endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
            if self.metrics is not None:
                events_mask = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                self._monitors = [(router.get_monitor_socket(events_mask), "router"),
                                  (pub.get_monitor_socket(events_mask), "pub")]
                self.metrics_port = self.metrics.serve(self.config.metrics_port)
            self.journal = Journal(
                self.config.data_dir,
                sync=self.config.journal_sync,
                retention_days=self.config.retention_days,
                retention_bytes=self.config.retention_bytes,
            )
            self._event_seq = self.journal.last_seq  # seq continues over the gateway's whole life
            self.ledger = Ledger(self.config.data_dir, sync=self.config.ledger_sync)
            self._view.rebuild(self.journal)
            self.killswitch.load()
            self.broker.start()
            from .stores import check_stores  # the ledger against the journal and the counter (PROTOCOL §9.6)

            try:
                check_stores(self.journal, self.ledger, self.broker.view)
            except BaseException:
                self.broker.stop()
                raise
        except BaseException:
            for monitor, _ in self._monitors:
                monitor.close(0)
            router.close()
            pub.close()
            if self.metrics is not None:
                self.metrics.close()
            self.access.stop()
            context.term()
            for store in (self.journal, self.ledger):
                if store is not None:
                    store.close()
            self.journal = self.ledger = None
            raise
        # Reconciled by the I/O thread before it reads any command (see _run).
        for account_id, books in self.broker.view.items():
            self._inbox.post(("reconcile", account_id, books))
        self._inbox.post(("connection", True, "connected and subscribed", time.time_ns()))
        self._context, self._router, self._pub = context, router, pub
        self._started_at = time.monotonic()
        # Thread start is the memory barrier that lets the I/O thread take the sockets over.
        self._thread = threading.Thread(target=self._run, name="qmt-gateway-io", daemon=True)
        self._thread.start()
        log.info(
            "serving: router %s, pub %s, backend %s, session %s, accounts %s",
            self.router_endpoint,
            self.pub_endpoint,
            self.config.backend,
            self.broker.session_id,
            ", ".join(self.config.accounts),
        )
        log.info(
            "journal %s: epoch %s, seq %d..%d", self.journal.path, self.journal.epoch,
            self.journal.first_seq, self.journal.last_seq,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker, then the I/O thread; idempotent."""
        if self._thread is None:
            return
        self._closing = True
        self.broker.stop(timeout)
        self._inbox.post(("stop",))
        self._thread.join(timeout)
        self._thread = None
        self._encoder.shutdown(wait=True)
        close_reference = getattr(self._reference, "close", None)
        if close_reference is not None:
            close_reference()
        self.access.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self._context is not None:
            self._context.term()
            self._context = None
        self._inbox.close()
        for store in (self.journal, self.ledger):
            if store is not None:
                store.close()
        self.journal = self.ledger = None
        log.info("stopped")

    def reload(self) -> None:
        """Read the client keys again (SIGHUP); the I/O thread does it."""
        self._inbox.post(("reload",))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the I/O thread has ended."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "Gateway":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- I/O thread --------------------------------------------------------------------

    def _run(self) -> None:
        router, pub = self._router, self._pub
        assert router is not None and pub is not None
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pub, zmq.POLLIN)
        for monitor, _ in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        inbox_fd = self._inbox.fileno()
        poller.register(inbox_fd, zmq.POLLIN)
        try:
            running = self._handle_inbox()  # start-up reconciliation comes before any command
            while running:
                ready = dict(poller.poll(self._poll_timeout_ms()))
                if router in ready:
                    with self._batched():
                        self._read_commands(router)
                    self._flush()  # events commands made (denials, kill switch), journaled then sent
                if pub in ready:
                    self._read_subscriptions(pub)
                for monitor, name in self._monitors:
                    if monitor in ready:
                        self._count_peers(monitor, name)
                if inbox_fd in ready:
                    with self._batched():
                        running = self._handle_inbox()
                now = time.monotonic()
                if self._deadlines:
                    self._expire(now)
                if self.config.heartbeat_interval and now >= self._next_heartbeat:
                    self._heartbeat(now)
                if now >= self._next_sweep:
                    self._sweep_unknown(now)
                if self._drop_at and now >= self._drop_at:
                    self._drop_connections()
        except Exception:
            log.exception("I/O loop failed")
        finally:
            # These commands reached the broker: their outcome is unknown, as with a time-out.
            for pending in list(self._pending.values()):
                if pending.record is not None:
                    if pending.record.state == SENDING and self.ledger is not None:
                        self.ledger.settle(pending.record, UNKNOWN, error_msg="the gateway stopped before the counter answered")
                    self._reply_error(pending.envelope, pending.request_id, errors.OUTCOME_UNKNOWN,
                                      _unknown_message(pending.record))
                    continue
                self._reply_error(
                    pending.envelope,
                    pending.request_id,
                    errors.BROKER_TIMEOUT,
                    f"{pending.spec.name}: the gateway stopped before the counter answered{_unknown(pending)}",
                )
            self._pending.clear()
            for monitor, _ in self._monitors:
                monitor.close(0)
            router.close(linger=500)  # let those last replies leave
            if self._pub is not None:
                self._pub.close()
            self._stopped.set()

    def _poll_timeout_ms(self) -> int:
        wake = time.monotonic() + 1.0
        if self._deadlines:
            wake = min(wake, self._deadlines[0][0])
        if self.config.heartbeat_interval:
            wake = min(wake, self._next_heartbeat)
        if self._drop_at:
            wake = min(wake, self._drop_at)
        return max(0, int((wake - time.monotonic()) * 1000) + 1)

    def _count_peers(self, monitor: zmq.Socket, name: str) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            self._peers[name] += 1 if event == zmq.EVENT_HANDSHAKE_SUCCEEDED else -1
            self._peers[name] = max(self._peers[name], 0)
        assert self.metrics is not None
        self.metrics.clients.labels(name).set(self._peers[name])

    def _refresh_metrics(self) -> None:
        """Gauges that read the journal and the ledger: refreshed here, on the I/O thread."""
        metrics = self.metrics
        if metrics is None or self.journal is None or self.ledger is None:
            return
        metrics.journal_bytes.set(float(self.journal.info()["size_bytes"]))  # type: ignore[arg-type]
        metrics.last_seq.set(self._published_seq())
        metrics.connected.set(1 if self._connected else 0)
        metrics.unknown_orders.set(self.ledger.count(UNKNOWN))
        for state in (NORMAL, HALTED, REDUCE_ONLY):
            metrics.trading_halted.labels(state).set(1 if self.killswitch.state == state else 0)

    def _heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self.config.heartbeat_interval
        if self._backlog and not self._batching:
            self._flush()  # the journal may take the waiting events now
        self._refresh_metrics()
        self._apply_retention()
        data = {"last_seq": self._published_seq(), "connected": self._connected,
                "interval": self.config.heartbeat_interval}
        self._publish_control(events.HEARTBEAT, data)

    def _read_commands(self, router: zmq.Socket) -> None:
        curve = self.access.curve
        for _ in range(COMMAND_BATCH):
            try:
                if curve:  # frames, for the key libzmq stamped on them
                    parts = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    key = self.access.identify(_user_id(parts[-1]))
                    frames = [part.bytes for part in parts]
                else:
                    frames = router.recv_multipart(zmq.NOBLOCK)
                    key = access.LOCAL
            except zmq.Again:
                return
            self.stats["commands"] += 1
            identity, body = frames[0], frames[1:]
            # A REQ client's empty delimiter frame is accepted and mirrored in the reply.
            if body and body[0] == b"":
                envelope, body = [identity, b""], body[1:]
            else:
                envelope = [identity]
            try:
                self._on_command(envelope, body, key)
            except Exception:
                log.exception("command handling failed")
                self._reply_error(envelope, None, errors.INTERNAL_ERROR, "internal error; see the gateway log")

    def _read_subscriptions(self, pub: zmq.Socket) -> None:
        """Grant each (un)subscription what the subscriber's key may see (XPUB manual mode)."""
        for _ in range(COMMAND_BATCH):
            try:
                frame = pub.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            data = frame.bytes
            if not data or data[0] not in (0, 1):
                continue
            user_id = _user_id(frame)
            if self.access.curve and user_id is None:
                continue  # libzmq's own notice that a subscriber left; its subscriptions are gone already
            key = self.access.identify(user_id)
            allowed = access.allowed_prefixes(key) if key is not None else []
            prefix = data[1:].decode("utf-8", "replace")
            option = zmq.SUBSCRIBE if data[0] == 1 else zmq.UNSUBSCRIBE
            for granted in access.narrow(prefix, allowed):
                pub.setsockopt(option, granted.encode())
            if key is not access.LOCAL:
                log.debug("subscription %r from %s", prefix, key.name if key else "an unknown key")

    def _authorise(self, key: ClientKey | None, spec: ops.OpSpec, args: dict[str, Any]) -> None:
        """Raise permission_denied unless ``key`` may run this op on this account."""
        if key is None:
            raise ProtocolError(errors.PERMISSION_DENIED, f"{spec.name}: this key is no longer authorised")
        permission = access.permission_for(spec)
        if permission is not None and permission not in key.permissions:
            raise ProtocolError(
                errors.PERMISSION_DENIED,
                f"{spec.name} needs the {permission!r} permission; key {key.name!r} has "
                f"{', '.join(sorted(key.permissions))}",
            )
        if spec.takes_account and not access.may_use(key, args["account_id"]):
            raise ProtocolError(
                errors.PERMISSION_DENIED, f"key {key.name!r} may not use account {args['account_id']!r}"
            )

    def _on_command(self, envelope: list[bytes], body: list[bytes], key: ClientKey | None = access.LOCAL) -> None:
        if len(body) != 1:
            self._reply_error(
                envelope,
                None,
                errors.INVALID_MESSAGE,
                f"expected exactly one payload frame after the routing id, got {len(body)}",
            )
            return
        try:
            request = decode_request(body[0], self.config.max_message_size)
        except RequestError as exc:
            self._reply_error(envelope, exc.request_id, exc.code, exc.message)
            return
        if self.metrics is not None:
            # Only known op names become labels: a client cannot grow the label set.
            op = request.op if isinstance(request.op, str) and request.op in ops.OPS else "unknown"
            if len(self._asked) > 100_000:
                self._asked.clear()
            self._asked[(envelope[0], request.id)] = (op, time.perf_counter())
        try:
            self._on_request(envelope, request, key)
        except Exception:
            log.exception("command handling failed: %r", request.op)
            self._reply_error(envelope, request.id, errors.INTERNAL_ERROR, "internal error; see the gateway log")

    def _on_request(self, envelope: list[bytes], request: Any, key: ClientKey | None) -> None:
        try:
            spec = ops.lookup(request.op)
            args = ops.validate_args(spec, request.args)
            self._authorise(key, spec, args)
            if spec.takes_account and args["account_id"] not in self._accounts:
                raise ProtocolError(
                    errors.UNKNOWN_ACCOUNT,
                    f"account {args['account_id']!r} is not served by this gateway "
                    f"(serving {', '.join(sorted(self._accounts))})",
                )
        except ProtocolError as exc:
            self._reply_error(envelope, request.id, exc.code, exc.message)
            return
        assert key is not None
        if spec.kind == ops.GATEWAY:
            self._gateway_op(envelope, request.id, spec.name, args, key)
            return
        record = None
        if spec.kind in (ops.ORDER, ops.ORDER_ASYNC):
            args["client_order_id"] = args["client_order_id"] or new_client_order_id()
            assert self.ledger is not None
            record = self.ledger.get(args["account_id"], args["client_order_id"])
            if record is not None:  # the same id again: never to the counter twice
                self._repeat(envelope, request.id, spec, args, record)
                return
        if spec.kind != ops.QUERY:
            try:
                self._check_risk(spec, args, key)
            except Denial as denial:
                self._deny(envelope, request.id, spec, args, denial)
                return
        busy = self._busy(envelope[0])  # after the ledger: a settled repeat is answered regardless
        if busy:
            self._reply_error(envelope, request.id, errors.TOO_MANY_REQUESTS, f"{spec.name}: {busy}; retry when answers arrive")
            return
        if self._closing or not self._connected:
            reason = "gateway is shutting down" if self._closing else "the counter is not connected"
            self._reply_error(envelope, request.id, errors.BROKER_UNAVAILABLE, f"{spec.name}: {reason}; retry later")
            return
        broker_args = args
        if spec.kind in (ops.ORDER, ops.ORDER_ASYNC):
            assert self.ledger is not None
            try:
                record = self.ledger.create(args["account_id"], args["client_order_id"], args)  # durable first
            except (sqlite3.Error, OSError) as exc:
                log.exception("%s: the order could not be recorded", spec.name)
                self._storage_failed(LEDGER_STORE, str(exc))
                self._reply_error(envelope, request.id, errors.STORAGE_FAILED,
                                  f"{spec.name}: the order could not be recorded, so it was not sent; "
                                  "the same client_order_id may be sent again once storage works")
                return
            broker_args = {**args, "order_remark": record.tag}  # the user's remark stays in the ledger
        pending = self._wait(envelope, request.id, spec, args, record)
        pending.key = key
        self._submit(pending.token, spec, broker_args, record)

    def _check_risk(self, spec: ops.OpSpec, args: dict[str, Any], key: ClientKey) -> None:
        """Pre-trade checks of a new order or cancel; raises Denial."""
        key_name = key.name if self.access.curve else None
        account_id = args["account_id"]
        if spec.kind in (ops.ORDER, ops.ORDER_ASYNC):
            assert self.ledger is not None
            sending = sum(1 for r in self.ledger.in_flight() if r.account_id == account_id and r.state == SENDING)
            self.risk.check_order(account_id, key_name, args, self._view.books(account_id), self.killswitch.state,
                                  in_flight=sending)
        else:
            self.risk.check_cancel(account_id, key_name)

    def _deny(
        self, envelope: list[bytes], request_id: Any, spec: ops.OpSpec, args: dict[str, Any], denial: Denial
    ) -> None:
        """Answer risk_denied and publish it; nothing reaches the counter or the ledger."""
        log.warning(
            "%s id=%r account=%s client_order_id=%s denied by %s: %s", spec.name, request_id, args["account_id"],
            args.get("client_order_id"), denial.rule, denial.message,
            extra={**_order_fields(args, request_id), "rule": denial.rule},
        )
        if self._risk_event_allowed(args["account_id"]):
            data = {name: args.get(name) for name in events.RISK_DENIED_FIELDS}
            data.update(rule=denial.rule, message=denial.message, limit=denial.limit, value=denial.value,
                        op=spec.name)
            self._publish(events.RISK_DENIED, args["account_id"], data, time.time_ns())
        else:
            self.stats["risk_events_dropped"] += 1
        if self.metrics is not None:
            self.metrics.denials.labels(denial.rule).inc()
        self._reply_error(envelope, request_id, errors.RISK_DENIED, f"{denial.rule}: {denial.message}",
                          denial.details())

    def _risk_event_allowed(self, account_id: str) -> bool:
        """At most RISK_EVENTS_PER_SECOND journaled denials per account: a client hammering a
        rule cannot push real history out of retention (its replies and the metrics count all)."""
        now = time.monotonic()
        window = self._risk_events.setdefault(account_id, collections.deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= RISK_EVENTS_PER_SECOND:
            return False
        window.append(now)
        return True

    def _set_trading(self, state: str, reason: str, cancel_open: bool = False) -> dict[str, Any]:
        """The kill switch: in force at once, saved, then announced; optionally cancel every
        open order. A state that cannot be saved stays in force and raises the storage alarm."""
        previous = self.killswitch.state
        if not self.killswitch.set(state, reason):
            self._storage_failed(TRADING_STATE_STORE, self.killswitch.save_error)
        self._publish(events.TRADING, None, {"state": state, "reason": reason, "cancel_open": cancel_open},
                      time.time_ns())
        log.warning("trading state %s -> %s%s%s", previous, state.upper(), f": {reason}" if reason else "",
                    " (cancelling every open order)" if cancel_open else "")
        if cancel_open:
            for account_id in self.config.accounts:
                args = {"account_id": account_id, "account_type": "STOCK", "cancelable_only": True}
                self._internal(ops.OPS["query_stock_orders"], args,
                               lambda orders, a=account_id: self._cancel_all(a, orders))
        return {**self.killswitch.as_map(), "previous": previous, "cancel_open": cancel_open}

    def _storage_failed(self, store: str, error: str) -> None:
        """A store could not be written: order entry stops at once (the kill switch, in memory
        first), and ping, metrics, the log and a ``gateway.storage`` event say so."""
        first = store not in self._storage_problems
        self._storage_problems[store] = error
        if first:
            log.critical("STORAGE FAILED: %s: %s; order entry is halted until 'qmt-adapter resume'", store, error)
            self._publish_control(events.STORAGE, {"ok": False, "store": store, "error": error})
        if self.killswitch.state != HALTED:
            self._set_trading(HALTED, f"storage failed: {store}: {error}")
        if self.metrics is not None:
            self.metrics.storage_failed.labels(store).set(1)

    def _storage_recovered(self, store: str) -> None:
        if self._storage_problems.pop(store, None) is None:
            return
        log.warning("storage recovered: %s (trading stays %s until 'qmt-adapter resume')", store,
                    self.killswitch.state.upper())
        self._publish_control(events.STORAGE, {"ok": True, "store": store, "error": ""})
        if self.metrics is not None:
            self.metrics.storage_failed.labels(store).set(0)

    def _cancel_all(self, account_id: str, orders: list[dict[str, Any]] | None) -> None:
        spec = ops.OPS["cancel_order_stock_async"]
        for order in orders or ():
            log.info("halt: cancelling order %s of %s (%s)", order["order_id"], account_id, order.get("stock_code"))
            self._internal(spec, {"account_id": account_id, "account_type": "STOCK", "order_id": order["order_id"]},
                           lambda _result: None)

    def _internal(self, spec: ops.OpSpec, args: dict[str, Any], on_result: Any) -> None:
        """A command of the gateway's own, answered to ``on_result`` instead of a client."""
        if not self._connected or self._closing:
            log.warning("%s for %s not sent: the counter is not connected", spec.name, args.get("account_id"))
            return
        token = next(self._tokens)
        deadline = time.monotonic() + self.config.broker_timeout
        self._pending.add(Pending(token, [_GATEWAY_CLIENT], None, spec, args, deadline, on_result=on_result))
        heapq.heappush(self._deadlines, (deadline, token))
        self._submit(token, spec, args, None)

    def _submit(self, token: int, spec: ops.OpSpec, args: dict[str, Any], record: OrderRecord | None) -> None:
        """Hand a command to the broker; in a batch, only once the ledger has committed."""
        if self._batching:
            self._held_submits.append((token, spec, args, record))
        else:
            self.broker.submit(token, spec, args)

    @contextlib.contextmanager
    def _batched(self) -> Iterator[None]:
        """One ledger transaction for a batch; then the replies, then the orders go out.

        An order reaches the counter only after its record is on disk, and a client hears an
        outcome only after it is recorded, exactly as with a commit per write; a batch just
        pays the commit once."""
        ledger = self.ledger
        assert ledger is not None
        ledger.begin()
        self._batching = True
        committed = False
        try:
            yield
        finally:
            self._batching = False
            replies, self._held_replies = self._held_replies, []
            submits, self._held_submits = self._held_submits, []
            try:
                ledger.commit()
                committed = True
                self._storage_recovered(LEDGER_STORE)
            except Exception as exc:
                log.exception("ledger commit failed: the batch's new orders are refused, not sent")
                ledger.rollback([record for *_, record in submits if record is not None])
                self._storage_failed(LEDGER_STORE, str(exc))
                # Outcomes this batch recorded are not on disk: their replies say storage_failed.
                replies = [(at, envelope, _unrecorded(payload)) for at, envelope, payload in replies]
            for token, spec, args, record in submits:
                if committed or record is None:
                    self.broker.submit(token, spec, args)
                    continue
                pending = self._pending.pop(token, None)
                if pending is not None:
                    replies.append((len(self._batch), pending.envelope, encode_error(
                        pending.request_id, errors.STORAGE_FAILED,
                        f"{spec.name}: the order could not be recorded, so it was not sent; "
                        "the same client_order_id may be sent again once storage works")))
            self._flush(replies)  # the batch's events and replies, in the order they were made

    def _wait(
        self, envelope: list[bytes], request_id: Any, spec: ops.OpSpec, args: dict[str, Any],
        record: OrderRecord | None,
    ) -> Pending:
        token = next(self._tokens)
        deadline = time.monotonic() + self.config.broker_timeout
        pending = Pending(token, envelope, request_id, spec, args, deadline, record=record)
        self._pending.add(pending)
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
            self._reply_error(
                envelope, request_id, errors.DUPLICATE_CLIENT_ORDER_ID,
                f"client_order_id {cid!r} was already used for a different order on account {record.account_id}",
            )
        elif record.state in (ACKNOWLEDGED, REJECTED):
            self._reply_ok(envelope, request_id, self._order_result(spec, record))
        elif record.state == UNKNOWN:
            self._reply_error(envelope, request_id, errors.OUTCOME_UNKNOWN, _unknown_message(record))
        elif record.state == NOT_PLACED:
            self._reply_error(
                envelope, request_id, errors.ORDER_NOT_PLACED,
                f"order {cid!r} never reached the counter (reconciled: {record.error_msg}); "
                "send it again with a new client_order_id",
            )
        elif spec.kind == ops.ORDER_ASYNC and record.seq is not None:
            self._reply_ok(envelope, request_id, self._order_result(spec, record))
        else:  # still on its way: this request gets the same answer as the first
            self._wait(envelope, request_id, spec, args, record)

    @staticmethod
    def _order_result(spec: ops.OpSpec, record: OrderRecord) -> dict[str, Any]:
        if spec.kind == ops.ORDER_ASYNC:
            return {"seq": record.seq, "client_order_id": record.client_order_id, "order_id": record.order_id}
        return dict(record.response or {})

    def _busy(self, client: bytes) -> str:
        """Why a new broker command from ``client`` must wait, or ''."""
        if self._pending.count_for(client) >= self.config.max_inflight_per_client:
            return f"this client has {self.config.max_inflight_per_client} commands in flight already"
        if len(self._pending) >= self.config.max_inflight:
            return f"the gateway has {self.config.max_inflight} commands in flight already"
        return ""

    def _gateway_op(
        self, envelope: list[bytes], request_id: Any, op: str, args: dict[str, Any], key: ClientKey = access.LOCAL
    ) -> None:
        """Ops answered from the gateway's own state, on this thread."""
        journal = self.journal
        assert journal is not None
        if op == "ping":
            if args["publish"]:
                self._publish_control(events.PONG, {"id": request_id, "last_seq": self._published_seq()})
            result: Any = self._ping(key)
        elif op == "replay":
            try:
                page = journal.read(
                    args["from_seq"], args["to_seq"], args["prefixes"], args["limit"], access.allowed_prefixes(key),
                    max_bytes=MAX_REPLAY_BYTES,
                )
            except SeqExpired as exc:
                self._reply_error(
                    envelope, request_id, errors.SEQ_EXPIRED, f"{exc}; rebuild from the snapshot op"
                )
                return
            result = {
                "epoch": journal.epoch,
                "first_seq": journal.first_seq,
                "last_seq": journal.last_seq,
                "next_seq": page.next_seq,
                "more": page.more,
                "events": [[topic, payload] for topic, payload in page.events],
            }
        elif op == "snapshot":
            result = {"epoch": journal.epoch, "seq": self._event_seq, **self._view.snapshot(args["account_id"])}
        elif op == "journal_info":
            result = journal.info()
        elif op == "order_outcomes":
            assert self.ledger is not None
            result = [
                {name: getattr(record, name) for name in events.OUTCOME_FIELDS}
                for record in self.ledger.records(args["account_id"])
            ]
        elif op == "reload":
            try:
                result = self._reload()
            except (KeyFileError, ConfigError) as exc:
                self._reply_error(envelope, request_id, errors.INVALID_ARGUMENT,
                                  f"reload: {exc}; the old keys and limits stay")
                return
        elif op in ("halt", "reduce_only", "resume"):
            state = {"halt": HALTED, "reduce_only": REDUCE_ONLY, "resume": NORMAL}[op]
            reason = args["reason"] or f"{op} by {key.name}"
            result = self._set_trading(state, reason, cancel_open=args.get("cancel_open", False))
        elif op == "risk":
            accounts = [a for a in self.config.accounts if access.may_use(key, a)]
            report = self.risk.report(accounts, self._view.books)
            if key.accounts is not None:
                report["limits"].pop("default", None)
            result = {"trading": self.killswitch.as_map(), **report}
        else:  # the op table and this dispatch disagree: a bug, reported, not hidden
            raise NotImplementedError(f"no gateway handler for op {op}")
        self._reply_ok(envelope, request_id, result)

    def _reload(self) -> dict[str, Any]:
        """Read the risk limits and the keys again; if any key lost a right, drop every connection."""
        risk_config = None
        if self._config_path:  # checked whole before anything changes
            risk_config = load_risk(self._config_path)
        admitted, lost = self.access.reload()
        if risk_config is not None:
            self.risk.update(risk_config)
            log.info("risk limits reloaded from %s", self._config_path)
        if lost:
            # Subscribers at once: no event published from now on reaches a revoked key. Commands
            # are refused by key already; the ROUTER waits so this reload's own reply leaves.
            self._rebind(self._pub, self.pub_endpoint)
            self._drop_at = time.monotonic() + DROP_DELAY
        log.info(
            "keys reloaded: %d admitted%s", len(admitted),
            f"; {', '.join(lost)} lost rights: dropping connections" if lost else "",
        )
        return {"admitted": admitted, "revoked": lost, "dropping_connections": bool(lost),
                "risk_limits": "reloaded" if risk_config is not None else "unchanged (no config file)"}

    def _drop_connections(self) -> None:
        self._drop_at = 0.0
        self._rebind(self._router, self.router_endpoint)
        log.info("dropped every connection; clients reconnect with their keys checked again")

    @staticmethod
    def _rebind(socket: zmq.Socket | None, endpoint: str) -> None:
        """Close every connection of ``socket`` by unbinding and binding again: libzmq cannot
        close one peer's. Clients reconnect at once and pass ZAP with the keys now in force."""
        assert socket is not None
        socket.unbind(endpoint)
        for attempt in range(50):  # the old listener closes asynchronously
            try:
                socket.bind(endpoint)
                return
            except zmq.ZMQError:
                if attempt == 49:
                    raise
                time.sleep(0.02)

    def _ping(self, key: ClientKey = access.LOCAL) -> dict[str, Any]:
        identity = {}
        if self.access.curve:
            identity = {"key": {"name": key.name, "accounts": key.describe_accounts(),
                                "permissions": sorted(key.permissions)}}
        return {
            **identity,
            "server_version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "backend": self.config.backend,
            "session_id": self.broker.session_id,
            "accounts": [a for a in self.config.accounts if access.may_use(key, a)],
            "connected": self._connected,
            "last_seq": self._published_seq(),
            "epoch": self.journal.epoch if self.journal else "",
            "pending": len(self._pending),
            "journal_errors": self.stats["journal_errors"],
            "risk_events_dropped": self.stats["risk_events_dropped"],
            "storage": {"ok": not self._storage_problems, "failed": dict(self._storage_problems),
                        "unjournaled": len(self._backlog)},
            "unknown_orders": self.ledger.count(UNKNOWN) if self.ledger else 0,
            "trading_state": self.killswitch.state,
            "uptime": round(time.monotonic() - self._started_at, 3),
        }

    def _handle_inbox(self) -> bool:
        for item in self._inbox.drain():
            tag = item[0]
            if tag == "event":
                _, event_type, account_id, data, ts = item
                if event_type in events.ORDER_LINKED:
                    self._learn(self._link(data), event_type, data)
                self._publish(event_type, account_id, data, ts)
            elif tag == "response":
                self._on_response(*item[1:])
            elif tag == "sent":
                _, token, kind, seq = item
                pending = self._pending.get(token)
                if pending is None:
                    continue
                pending.seq = seq
                if pending.record is not None:
                    pending.record.seq = seq
                    self._answer(pending.record, ops.ORDER_ASYNC)
                elif kind not in _SYNC_KINDS:
                    done = self._pending.pop(token)
                    if done is not None:
                        self._complete(done, {"seq": seq})
            elif tag == "result":
                _, token, result = item
                pending = self._pending.pop(token, None)
                if pending is not None:
                    self._complete(pending, result)
            elif tag == "error":
                _, token, code, message = item
                pending = self._pending.pop(token, None)
                if pending is None:
                    continue
                record = pending.record
                if record is None:
                    self._reply_error(pending.envelope, pending.request_id, code, message)
                    continue
                # The call failed, but the request may have left: only the counter's books can tell.
                if record.state == SENDING:
                    assert self.ledger is not None
                    self.ledger.settle(record, UNKNOWN, error_msg=message)
                for waiter in [pending, *record.waiters]:
                    if waiter is pending or self._pending.pop(waiter.token, None) is not None:
                        self._reply_error(waiter.envelope, waiter.request_id, errors.OUTCOME_UNKNOWN,
                                          _unknown_message(record))
                record.waiters.clear()
            elif tag == "encoded":
                _, pending, packed = item
                self._encoding -= 1
                if packed is None:
                    self._reply_error(pending.envelope, pending.request_id, errors.INTERNAL_ERROR,
                                      "internal error; see the gateway log")
                else:
                    self._observe(pending.envelope, pending.request_id, "ok")
                    self._send(pending.envelope, encode_ok_packed(pending.request_id, packed))
            elif tag == "reconcile":
                _, account_id, books = item
                self._reconcile(account_id, books)
            elif tag == "connection":
                _, connected, reason, ts = item
                self._on_connection(connected, reason, ts)
            elif tag == "reload":
                try:
                    self._reload()
                except (KeyFileError, ConfigError) as exc:
                    log.error("reload failed, the old keys stay: %s", exc)
            elif tag == "stop":
                self._flush()
                return False
        self._flush()
        return True

    def _on_response(
        self, token: int | None, kind: str | None, event_type: str, account_id: str | None, data: dict[str, Any], ts: int
    ) -> None:
        if event_type == "order_response":
            pending = self._pending.get(token) if token is not None else None
            record = self._link(data, pending.record if pending is not None else None)
            if record is not None:
                if record.state in IN_FLIGHT:
                    order_id = data.get("order_id") or 0
                    pushed = self._view.books(record.account_id)["orders"].get(order_id) or {}
                    refused = order_id <= 0 or pushed.get("order_status") == ORDER_JUNK  # pushes may come first
                    assert self.ledger is not None
                    self.ledger.settle(
                        record, REJECTED if refused else ACKNOWLEDGED,
                        order_id=order_id if order_id > 0 else None, error_msg=data.get("error_msg") or "",
                        response=data,
                    )
                if self._answer(record, ops.ORDER) and kind == ops.ORDER:
                    return  # a sync op's response is its reply, not an event
        else:
            pending = self._pending.pop(token, None) if kind in _SYNC_KINDS and token is not None else None
            if pending is not None:
                self._complete(pending, data)
                return
        self._publish(event_type, account_id, data, ts)  # an async op's response, or a late one

    def _answer(self, record: OrderRecord, kind: str) -> bool:
        """Reply to the requests of ``kind`` waiting on this order; True if there were any."""
        answered = False
        for waiter in [w for w in record.waiters if w.spec.kind == kind]:
            record.waiters.remove(waiter)
            if self._pending.pop(waiter.token, None) is not None:
                self._complete(waiter, self._order_result(waiter.spec, record))
                answered = True
        return answered

    def _link(self, data: dict[str, Any], record: OrderRecord | None = None) -> OrderRecord | None:
        """Map a counter record back to its order: client order id and the user's remark."""
        assert self.ledger is not None
        found = self.ledger.by_tag(data.get("order_remark"))
        if found is None and data.get("order_id"):
            found = self.ledger.by_order_id(data.get("account_id") or "", data.get("order_id"))
        record = found or record
        if record is not None:
            data["client_order_id"] = record.client_order_id
            data["order_remark"] = record.order_remark
        return record

    def _learn(self, record: OrderRecord | None, event_type: str, data: dict[str, Any]) -> None:
        """An order event settles an order whose acknowledgement was lost, and a counter
        refusal after numbering (status 57) makes an acknowledged order rejected."""
        if record is None or event_type != "order" or not data.get("order_id"):
            return
        assert self.ledger is not None
        if record.state == ACKNOWLEDGED and data.get("order_status") == ORDER_JUNK:
            self.ledger.settle(record, REJECTED, error_msg=data.get("status_msg") or "refused by the counter")
            return
        if record.state != UNKNOWN:
            return
        state = REJECTED if data.get("order_status") == ORDER_JUNK else ACKNOWLEDGED
        self.ledger.settle(record, state, order_id=data["order_id"], error_msg=data.get("status_msg") or "",
                           response=_response_from_order(data))
        log.info("order account=%s client_order_id=%s resolved from the counter's push: %s, order_id %s",
                 record.account_id, record.client_order_id, state, record.order_id,
                 extra={"account_id": record.account_id, "client_order_id": record.client_order_id,
                        "request_id": None})

    def _on_connection(self, connected: bool, reason: str, ts: int) -> None:
        self._connected = connected
        (log.info if connected else log.warning)("counter connection: %s", reason)
        self._publish(events.CONNECTION, None, {"connected": connected, "reason": reason}, ts)
        if connected or self._closing:
            return
        # What was with the counter now has an unknown outcome; reconciliation settles it.
        assert self.ledger is not None
        for pending in self._pending.values():
            self._pending.pop(pending.token)
            record = pending.record
            if record is not None:
                if record.state == SENDING:
                    self.ledger.settle(record, UNKNOWN, error_msg="counter connection lost")
                record.waiters.clear()
                self._reply_error(pending.envelope, pending.request_id, errors.OUTCOME_UNKNOWN, _unknown_message(record))
            else:
                self._reply_error(
                    pending.envelope, pending.request_id, errors.BROKER_UNAVAILABLE,
                    f"{pending.spec.name}: the counter connection was lost before it answered; retry later",
                )
        self.broker.reconnect()

    def _reconcile(self, account_id: str, books: dict[str, Any]) -> None:
        """Compare the counter's books with what was published; publish what was missed.

        Runs at start-up and after every reconnection, before commands are served again.
        Differences go out as normal events marked ``reconciled``; orders whose outcome was
        unknown are settled from the counter's own order list (by remark tag), never guessed.
        """
        known = self._view.books(account_id)
        now = time.time_ns()
        orders = [dict(o) for o in books.get("orders", ())]
        trades = [dict(t) for t in books.get("trades", ())]
        for counter_records in (orders, trades):
            for data in counter_records:
                self._link(data)
        published = 0
        for trade in trades:
            if trade["traded_id"] not in known["trades"]:
                self._publish("trade", account_id, trade, now, reconciled=True)
                published += 1
        for order in orders:
            if known["orders"].get(order["order_id"]) != order:
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
        assert self.ledger is not None
        by_tag = {o["client_order_id"]: o for o in orders if o.get("client_order_id")}
        for record in self.ledger.in_flight():
            if record.account_id != account_id or record.waiters:
                continue
            found = by_tag.get(record.client_order_id)
            if found is not None:
                state = REJECTED if found.get("order_status") == ORDER_JUNK else ACKNOWLEDGED
                self.ledger.settle(record, state, order_id=found["order_id"], response=_response_from_order(found))
            else:
                self.ledger.settle(record, NOT_PLACED, error_msg="not in the counter's orders of the day")
                self._announce_not_placed(record, now)
            log.info("reconciled order account=%s client_order_id=%s: %s (order_id %s)", record.account_id,
                     record.client_order_id, record.state, record.order_id,
                     extra={"account_id": record.account_id, "client_order_id": record.client_order_id,
                            "request_id": None})
        self._view.load(account_id, {"asset": asset, "positions": books.get("positions", ()),
                                     "orders": orders, "trades": trades})  # the counter's books are the truth
        log.info("reconciled account %s: %d events published from the counter's books", account_id, published)

    def _announce_not_placed(self, record: OrderRecord, ts: int) -> None:
        """An accepted order found never placed reaches its final state in public: the
        order_response (order_id -1) and order_error an async sender waits for (PROTOCOL §3.4)."""
        message = f"order {record.client_order_id!r} was never placed: {record.error_msg}"
        values = {"account_type": 2, "account_id": record.account_id, "order_id": -1, "error_id": -1,
                  "error_msg": message, "strategy_name": record.strategy_name, "order_remark": record.order_remark,
                  "seq": record.seq, "client_order_id": record.client_order_id}
        for event_type in ("order_response", "order_error"):
            fields = events.EVENT_FIELDS[event_type]
            self._publish(event_type, record.account_id, {f: values[f] for f in fields}, ts, reconciled=True)

    def _sweep_unknown(self, now: float) -> None:
        """While an order's outcome is unknown, look at the counter's orders now and then.

        An order found there by its tag is settled. Absence proves nothing while the
        connection is up (the request may still be on its way), so only reconciliation
        after a reconnection or restart marks an order not placed.
        """
        self._next_sweep = now + self.config.unknown_sweep_interval
        assert self.ledger is not None
        accounts = {r.account_id for r in self.ledger.in_flight() if r.state == UNKNOWN}
        if not accounts or not self._connected or self._closing:
            return
        spec = ops.OPS["query_stock_orders"]
        for account_id in sorted(accounts):
            args = {"account_id": account_id, "account_type": "STOCK", "cancelable_only": False}
            self._internal(spec, args, lambda orders, a=account_id: self._settle_found(a, orders))

    def _settle_found(self, account_id: str, orders: list[dict[str, Any]]) -> None:
        assert self.ledger is not None
        for order in orders or ():
            record = self._link(order)
            if record is not None and record.state == UNKNOWN:
                self._learn(record, "order", order)

    def _complete(self, pending: Pending, result: Any) -> None:
        if pending.on_result is not None:
            pending.on_result(result)
            return
        if pending.spec.name in _ALL_ACCOUNT_QUERIES and isinstance(result, list) and pending.key is not None:
            result = access.filter_accounts(result, pending.key)
        if (pending.spec.kind == ops.QUERY and isinstance(result, list) and len(result) >= LARGE_RESULT
                and self._encoding < MAX_ENCODING):
            self._encoding += 1
            self._encoder.submit(self._encode_large, pending, result)
            return
        if pending.spec.name in _ORDER_RECORD_QUERIES and result is not None:
            for data in result if isinstance(result, list) else (result,):
                self._link(data)
        if pending.spec.kind != ops.QUERY:
            args = pending.args
            log.info(
                "%s id=%r account=%s %s -> %s (%.1f ms)",
                pending.spec.name,
                pending.request_id,
                args.get("account_id"),
                _describe_command(args),
                _describe_result(result),
                (time.monotonic() - pending.started) * 1000,
                extra=_order_fields(pending.args, pending.request_id),
            )
        self._reply_ok(pending.envelope, pending.request_id, result)

    def _encode_large(self, pending: Pending, result: list[Any]) -> None:
        """On the encoder thread: link and pack a long answer, then hand the bytes back. The
        links only read the ledger's in-memory maps (each lookup one atomic dict read)."""
        try:
            if pending.spec.name in _ORDER_RECORD_QUERIES:
                for data in result:
                    self._link(data)
            # Item by item: one packb call of a whole day's orders would hold the GIL for
            # ~100 ms and stall the I/O thread all the same.
            packed = b"".join([_array_header(len(result)), *(pack(item) for item in result)])
            self._inbox.post(("encoded", pending, packed))
        except Exception:
            log.exception("encoding the %s answer failed", pending.spec.name)
            self._inbox.post(("encoded", pending, None))

    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, token = heapq.heappop(self._deadlines)
            pending = self._pending.pop(token, None)
            if pending is None:
                continue
            log.warning(
                "%s id=%r account=%s client_order_id=%s timed out (seq %s)", pending.spec.name, pending.request_id,
                pending.args.get("account_id"), pending.args.get("client_order_id"), pending.seq,
                extra=_order_fields(pending.args, pending.request_id),
            )
            record = pending.record
            if record is not None:
                if record.state == SENDING:
                    assert self.ledger is not None
                    self.ledger.settle(record, UNKNOWN, error_msg="no answer from the counter in time")
                if pending in record.waiters:
                    record.waiters.remove(pending)
                self._reply_error(pending.envelope, pending.request_id, errors.OUTCOME_UNKNOWN, _unknown_message(record))
                continue
            self._reply_error(
                pending.envelope,
                pending.request_id,
                errors.BROKER_TIMEOUT,
                f"{pending.spec.name}: no answer from the counter within "
                f"{self.config.broker_timeout:g} s{_unknown(pending)}",
            )

    def _published_seq(self) -> int:
        """The newest seq already sent on the PUB. Events numbered but still waiting (for the
        end of this batch, or for a failing journal) are not: a stream that starts from a pong
        or a heartbeat must still receive them."""
        waiting = self._backlog or self._batch
        return waiting[0][0] - 1 if waiting else self._event_seq

    def _publish(
        self, event_type: str, account_id: str | None, data: dict[str, Any], ts: int, reconciled: bool = False
    ) -> None:
        """Number the event and queue it; ``_flush`` journals the batch, then publishes it."""
        self._event_seq += 1
        topic, payload = encode_event(
            self._event_seq, ts, event_type, account_id, data, self._epoch(), reconciled=reconciled
        )
        self._batch.append((self._event_seq, ts, topic, payload))
        self._view.apply(event_type, account_id, data)

    def _flush(self, replies: list[tuple[int, list[bytes], bytes]] | None = None) -> None:
        """Journal the pending events, then publish them; in a batch, only at its end.

        ``replies`` (from a batch: each with the number of events made before it) go out
        interleaved with the events in the order they were made."""
        if self._batching:
            return
        replies = replies or []
        if not self._batch and not self._backlog:
            for _, envelope, payload in replies:
                self._send(envelope, payload)
            return
        batch, self._batch = self._batch, []
        journal = self.journal
        assert journal is not None and self._pub is not None
        if not self._journal_append(batch):
            for _, envelope, payload in replies:  # answers still go; the events wait for the journal
                self._send(envelope, payload)
            return
        if self._backlog:  # what waited for the journal goes first; the replies keep their place
            replies = [(at + len(self._backlog), envelope, payload) for at, envelope, payload in replies]
            batch, self._backlog = self._backlog + batch, []
        send = self._pub.send_multipart
        pending = iter(replies)
        reply = next(pending, None)
        for index, (_, _, topic, payload) in enumerate(batch):
            while reply is not None and reply[0] <= index:
                self._send(reply[1], reply[2])
                reply = next(pending, None)
            send([topic, payload])
        while reply is not None:
            self._send(reply[1], reply[2])
            reply = next(pending, None)
        self.stats["events"] += len(batch)
        if self.metrics is not None:
            self.metrics.events.inc(len(batch))
        self._apply_retention()

    def _journal_append(self, batch: list[tuple[int, int, bytes, bytes]]) -> bool:
        """Journal the unjournaled backlog and ``batch``; False when the journal fails.

        Nothing is published unjournaled: a failed batch waits in the backlog (in order, bounded)
        and goes out once the journal takes it. A backlog over its bound is dropped and its seqs
        given back (nobody saw them); the counter's books bring those changes back at the next
        reconciliation."""
        journal = self.journal
        assert journal is not None
        rows = self._backlog + batch
        try:
            journal.append([(seq, ts, topic.decode(), payload) for seq, ts, topic, payload in rows])
        except Exception as exc:
            self.stats["journal_errors"] += len(batch)
            log.exception("journal append failed for seq %d..%d", rows[0][0], rows[-1][0])
            self._backlog = rows
            if len(rows) > MAX_UNJOURNALED:
                log.critical("dropping %d unjournaled events (seq %d..%d): never published, seqs reused",
                             len(rows), rows[0][0], rows[-1][0])
                self._backlog = []
                self._event_seq = journal.last_seq
            self._storage_failed(JOURNAL_STORE, str(exc))
            return False
        self._storage_recovered(JOURNAL_STORE)
        return True

    def _apply_retention(self) -> None:
        """Cheap unless a bound is passed; also runs on heartbeats so an idle journal ages out."""
        assert self.journal is not None
        try:
            self.journal.prune_if_due()
        except Exception:
            log.exception("journal retention failed; will try again")

    def _publish_control(self, event_type: str, data: dict[str, Any]) -> None:
        """Control events (pong, heartbeat): not numbered, not journaled, sent at once."""
        assert self._pub is not None
        self._pub.send_multipart(encode_event(None, time.time_ns(), event_type, None, data, self._epoch()))

    def _epoch(self) -> str:
        return self.journal.epoch if self.journal is not None else ""

    def _reply_ok(self, envelope: list[bytes], request_id: Any, result: Any) -> None:
        self._observe(envelope, request_id, "ok")
        self._send(envelope, encode_ok(request_id, result))

    def _reply_error(
        self, envelope: list[bytes], request_id: Any, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        self.stats["errors"] += 1
        self._observe(envelope, request_id, code)
        self._send(envelope, encode_error(request_id, code, message, details))

    def _observe(self, envelope: list[bytes], request_id: Any, outcome: str) -> None:
        if self.metrics is None:
            return
        try:
            asked = self._asked.pop((envelope[0], request_id), None)
        except TypeError:  # an unhashable id never made it into the table
            asked = None
        op = asked[0] if asked else "invalid"
        self.metrics.commands.labels(op, outcome).inc()
        if asked:
            self.metrics.latency.labels(op).observe(time.perf_counter() - asked[1])

    def _send(self, envelope: list[bytes], payload: bytes) -> None:
        assert self._router is not None
        if envelope[0] == _GATEWAY_CLIENT:  # the gateway's own query: nobody to answer
            return
        if self._batching:
            self._held_replies.append((len(self._batch), envelope, payload))
            return
        try:
            self._router.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            # The client is gone or its queue is full; ROUTER cannot deliver, nothing to do.
            self.stats["replies_dropped"] += 1


def _array_header(length: int) -> bytes:
    """msgpack's array header: what ``pack`` writes before the items of a list that long."""
    if length < 16:
        return bytes([0x90 | length])
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


def _unrecorded(payload: bytes) -> bytes:
    """An ok reply whose outcome the ledger could not record becomes storage_failed, naming it."""
    body = unpack(payload)
    if not isinstance(body, dict) or not body.get("ok"):
        return payload
    result = body.get("result")
    known = f" (the counter answered {_describe_result(result)})" if isinstance(result, dict) else ""
    return encode_error(body.get("id"), errors.STORAGE_FAILED,
                        f"the outcome could not be recorded{known}; it is settled from the counter's books "
                        "when storage works: ask again with the same client_order_id", None)


def _order_fields(args: dict[str, Any], request_id: Any) -> dict[str, Any]:
    """Structured fields of an order-related log line (JSON logs carry them as keys)."""
    return {"account_id": args.get("account_id"), "client_order_id": args.get("client_order_id"),
            "request_id": request_id}


def _user_id(frame: zmq.Frame) -> str | None:
    """The CURVE key libzmq authenticated this message's connection with, if any."""
    try:
        user_id = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    return user_id if isinstance(user_id, str) else None


def _unknown_message(record: OrderRecord) -> str:
    return (
        f"order {record.client_order_id!r}: {record.error_msg or 'no answer from the counter'}; its outcome is "
        "unknown until reconciliation reads the counter's books. Retrying with the same client_order_id is safe: "
        "it returns the outcome once known and never orders twice"
    )


def _response_from_order(order: dict[str, Any]) -> dict[str, Any]:
    """An order response rebuilt from the counter's order record (the original was lost)."""
    fields = ("account_type", "account_id", "order_id", "strategy_name", "order_remark")
    response = {name: order.get(name) for name in fields}
    response.update(error_msg=order.get("status_msg") or "" if order.get("order_status") == ORDER_JUNK else "",
                    seq=None, client_order_id=order.get("client_order_id"))
    return response


def _unknown(pending: Pending) -> str:
    """For a cancel that timed out (orders have ledger records and _unknown_message)."""
    if pending.spec.kind not in (ops.CANCEL, ops.CANCEL_ASYNC):
        return ""
    seq = f" (xtquant seq {pending.seq})" if pending.seq is not None else ""
    return f"; its outcome is unknown until the counter reports it{seq}: check orders and events before resending"


def _describe_command(args: dict[str, Any]) -> str:
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


def _describe_result(result: Any) -> str:
    if isinstance(result, dict):
        keys = ("order_id", "cancel_result", "seq", "error_msg")
        return " ".join(f"{k}={result[k]!r}" for k in keys if result.get(k) not in (None, ""))
    return repr(result)
