"""The gateway: one I/O thread owns the ROUTER and the PUB (docs/architecture.md §2).

This module is the I/O only: sockets, the poller, the inbox from the broker, the ledger
commit of each batch, numbering, journal-then-publish, and replies. What a command or a
broker message means is decided by the order desk (``desk.py``, no I/O) and the gateway's
own ops by ``admin.py``; the gateway carries out the desk's actions in order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import zmq

from ..broker import XtBroker
from ..broker.messages import Books, BrokerMessage, Connection
from ..config import Config, ConfigError
from .journal import Journal
from ..keys import ClientKey, KeyFileError
from .ledger import Ledger
from ..protocol import ProtocolError, RequestError, decode_request, encode_error, encode_event, encode_ok, encode_ok_packed, errors, events, ops
from .reference import reference_for
from .risk import RiskEngine
from . import access, admin
from .access import Access
from .bounds import Bounds
from .desk import GATEWAY_CLIENT, JOURNAL_STORE, LEDGER_STORE, Action, Control, Desk, Publish, Reconnect, Refuse, Reply, Submit
from .encoding import Encoded, LargeAnswers, unrecorded
from .inbox import Inbox
from .killswitch import KillSwitch
from .metrics import Metrics
from .marketdata import source_for
from .observe import Observer
from .quotes import MarketAnswer, MarketDesk, PackedReply, QuoteThread
from .outbox import Outbox
from .sockets import Sockets, bind, grant_subscriptions, rebind, user_id
from .view import BooksView
from .viewstore import FILE_NAME as VIEW_FILE

log = logging.getLogger(__name__)

# Commands read per wake-up before the inbox gets a turn, so neither side starves.
COMMAND_BATCH = 256
INBOX_BATCH = 512  # broker messages handled per wake-up: a burst never keeps commands waiting long
DROP_DELAY = 0.2  # seconds between a reload's reply and dropping connections, so the reply leaves


class Gateway:
    """ROUTER/PUB front of one ``XtQuantTrader``.

    ``start()`` binds, brings the counter up (start, connect, subscribe, query) and starts
    the I/O thread; ``stop()`` stops the broker, answers what is still pending, closes.
    """

    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path  # re-read by reload for the [risk] limits
        self.router_endpoint = ""
        self.pub_endpoint = ""
        self._inbox = Inbox()
        self.broker = XtBroker(config, self._inbox.post)
        self.access = Access(config)
        self.bounds = Bounds(config)  # per-client bounds in bytes (PROTOCOL §5)
        self._reference = reference_for(config)
        self.risk = RiskEngine(config.risk_config(), self._reference)
        self.killswitch = KillSwitch(config.data_dir)
        self.metrics: Metrics | None = Metrics() if config.metrics_port else None
        self.metrics_port = 0
        self.observer = Observer(self.metrics)
        self.journal: Journal | None = None
        self.ledger: Ledger | None = None
        self.desk: Desk = None  # type: ignore[assignment]  # made in start(), with the ledger
        self.outbox: Outbox = None  # type: ignore[assignment]  # made in start(), with the journal
        self._next_heartbeat = 0.0
        self._drop_at = 0.0  # when to drop every connection (a key lost rights); 0: not planned
        # A batch of commands or inbox items shares one ledger commit; what must follow the
        # commit (replies, orders to the counter) waits here until it is done.
        self._batching = False
        self._held_replies: list[tuple[int, list[bytes], bytes]] = []  # (events made before it, ...)
        self._held_submits: list[Submit] = []
        self.sockets: Sockets = None  # type: ignore[assignment]  # made in start()
        self.market = MarketDesk(config, self._inbox.post)  # xtdata's ops and quote leases (PROTOCOL §16)
        self.quotes: QuoteThread | None = None
        self.quote_endpoint = ""
        self.encoder = LargeAnswers(lambda records: self.desk.link_all(records), self._inbox.post)
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._started_at = 0.0

    # -- control (any thread) ----------------------------------------------------------

    def start(self) -> None:
        sockets = self.sockets = bind(self.config, self.access, self.bounds.subscriptions.frame_cap,
                                      monitored=self.metrics is not None)
        self.router_endpoint, self.pub_endpoint = sockets.router_endpoint, sockets.pub_endpoint
        self.quote_endpoint = sockets.quotes_endpoint
        view: BooksView | None = None
        try:
            if self.metrics is not None:
                self.metrics_port = self.metrics.serve(self.config.metrics_port)
            config = self.config
            self.journal = Journal(config.data_dir, sync=config.journal_sync, retention_days=config.retention_days,
                                   retention_bytes=config.retention_bytes)
            self.outbox = Outbox(self.journal, sockets.pub.send_multipart, self._send)
            self.ledger = Ledger(self.config.data_dir, sync=self.config.ledger_sync, background_checkpoints=True)
            view = BooksView(self.config.accounts, Path(self.config.data_dir) / VIEW_FILE)
            view.rebuild(self.journal)
            self.desk = Desk(self.config, self.ledger, self.risk, self.killswitch, view,
                             curve=self.access.curve, metrics=self.metrics)
            self.killswitch.load()
            self.broker.start()
            from .stores import check_stores  # the ledger against the journal and the counter (PROTOCOL §9.6)

            try:
                check_stores(self.journal, self.ledger, self.broker.view)
            except BaseException:
                self.broker.stop()
                raise
        except BaseException:
            sockets.close_monitors()
            for socket in (sockets.router, sockets.pub, sockets.quotes):
                socket.close()
            self._release(view)
            raise
        source = source_for(self.config, self.broker)
        self.quotes = QuoteThread(self.config, sockets.quotes, source.latest_bars, self.access.identify,
                                  self.access.curve)
        self.market.attach(source, self.quotes)
        self.quotes.start()
        # Reconciled by the I/O thread before it reads any command (see _run).
        for account_id, books in self.broker.view.items():
            self._inbox.post(Books(account_id, books))
        self._inbox.post(Connection(True, "connected and subscribed", time.time_ns()))
        self._started_at = time.monotonic()
        # Thread start is the memory barrier that lets the I/O thread take the sockets over.
        self._thread = threading.Thread(target=self._run, name="qmt-gateway-io", daemon=True)
        self._thread.start()
        log.info("serving: router %s, pub %s, backend %s, session %s, accounts %s, quotes %s", self.router_endpoint,
                 self.pub_endpoint, self.config.backend, self.broker.session_id, ", ".join(self.config.accounts),
                 self.quote_endpoint)
        journal = self.journal
        log.info("journal %s: epoch %s, seq %d..%d", journal.path, journal.epoch, journal.first_seq, journal.last_seq)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker, then the I/O thread; idempotent."""
        if self._thread is None:
            return
        self.desk.closing = True
        # The quote thread reads bars from the source, which may be the broker's counter process:
        # it stops while that still answers, or a read in flight would wait out its time-out and
        # keep the quote socket (and so the context's term) open.
        if self.quotes is not None:
            self.quotes.stop()
        self.broker.stop(timeout)
        self._inbox.post(_STOP)
        self._thread.join(timeout)
        self._thread = None
        self.encoder.close()
        if hasattr(self._reference, "close"):
            self._reference.close()
        self._inbox.close()
        self._release(self.desk.view)
        log.info("stopped")

    def _release(self, view: BooksView | None) -> None:
        """What start() acquired past the sockets, once they are closed: after a stop or a failed start."""
        self.access.stop()
        if self.metrics is not None:
            self.metrics.close()
        self.sockets.context.term()
        for store in (self.journal, self.ledger):
            if store is not None:
                store.close()
        self.journal = self.ledger = None
        if view is not None:
            view.close()

    def reload(self) -> None:
        """Read the client keys again (SIGHUP); the I/O thread does it."""
        self._inbox.post(_RELOAD)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the I/O thread has ended."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "Gateway":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- I/O thread: the loop ------------------------------------------------------------

    def _run(self) -> None:
        router, pub = self.sockets.router, self.sockets.pub
        poller, inbox_fd = zmq.Poller(), self._inbox.fileno()
        for source in (router, pub, *(monitor for monitor, _ in self.sockets.monitors), inbox_fd):
            poller.register(source, zmq.POLLIN)
        try:
            running = self._handle_inbox()  # start-up reconciliation comes before any command
            while running:
                ready = dict(poller.poll(self._poll_timeout_ms()))
                if router in ready:
                    with self._batched():
                        self._read_commands(router)
                if pub in ready:
                    grant_subscriptions(pub, self.pub_endpoint, self.access, self.bounds.subscriptions, COMMAND_BATCH)
                for monitor, name in self.sockets.monitors:
                    if monitor in ready:
                        self.observer.peers(monitor, name)
                if inbox_fd in ready:
                    running = self._handle_inbox()
                now = time.monotonic()
                if _due(self.market.next_wake(), now):
                    for action in self.market.on_tick(now):
                        self._act(action)
                if _due(self.desk.next_wake(), now):
                    with self._batched():
                        self.desk.on_tick(now)
                        self._carry_out()
                if self.config.heartbeat_interval and now >= self._next_heartbeat:
                    self._heartbeat(now)
                if self._drop_at and now >= self._drop_at:
                    self._drop_connections()
        except Exception:
            log.exception("I/O loop failed")
        finally:
            self.desk.on_stop()
            self._carry_out()
            for refusal in self.market.stop():
                self._act(refusal)
            self.sockets.close_monitors()
            router.close(linger=500)  # let those last replies leave
            pub.close()
            self._stopped.set()

    def _poll_timeout_ms(self) -> int:
        now = time.monotonic()
        wakes = (self.desk.next_wake(), self.market.next_wake(),
                 self._next_heartbeat if self.config.heartbeat_interval else None, self._drop_at or None)
        wake = min([now + 1.0, *(w for w in wakes if w is not None)])
        return max(0, int((wake - now) * 1000) + 1)

    def _heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self.config.heartbeat_interval
        if self.outbox.unjournaled and not self._batching:
            self._flush()  # the journal may take the waiting events now
        if self.metrics is not None and self.journal is not None:
            self.observer.refresh(self.journal.size_bytes(), self.outbox.published_seq, self.desk.status())
        self._apply_retention()
        self.publish_control(events.HEARTBEAT, {"last_seq": self.outbox.published_seq, "connected": self.desk.connected,
                                                "interval": self.config.heartbeat_interval})

    # -- commands ---------------------------------------------------------------------

    def _read_commands(self, router: zmq.Socket) -> None:
        curve = self.access.curve
        for _ in range(COMMAND_BATCH):
            try:
                message = self.bounds.receive(router, zmq.NOBLOCK)  # frame by frame: copies only what it keeps
            except zmq.Again:
                return
            key = self.access.identify(user_id(message.last)) if curve else access.LOCAL
            envelope, body = message.split()
            if message.refusal:
                self._reply_error(envelope, None, errors.INVALID_MESSAGE, message.refusal)
                continue
            try:
                self._on_command(envelope, body, key)
            except Exception:
                log.exception("command handling failed")
                self._reply_error(envelope, None, errors.INTERNAL_ERROR, "internal error; see the gateway log")

    def _on_command(self, envelope: list[bytes], body: list[bytes], key: ClientKey | None = access.LOCAL) -> None:
        if len(body) != 1:
            self._reply_error(envelope, None, errors.INVALID_MESSAGE,
                              f"expected exactly one payload frame after the routing id, got {len(body)}")
            return
        try:
            request = decode_request(body[0], self.config.max_message_size)
        except RequestError as exc:
            self._reply_error(envelope, exc.request_id, exc.code, exc.message)
            return
        self.observer.asked(envelope[0], request.id, request.op)
        try:
            self._on_request(envelope, request, key)
        except Exception:
            log.exception("command handling failed: %r", request.op)
            self._reply_error(envelope, request.id, errors.INTERNAL_ERROR, "internal error; see the gateway log")
        finally:
            self._carry_out()

    def _on_request(self, envelope: list[bytes], request: Any, key: ClientKey | None) -> None:
        try:
            spec, args = self.desk.admit(request.op, request.args, key)
            assert key is not None
            if spec.kind == ops.MARKET:
                for action in self.market.on_command(envelope, request.id, spec, args, key):
                    self._act(action)
                return
            if spec.kind == ops.GATEWAY:
                call = admin.Call(args, key, request.id, envelope[0])
                self._reply_ok(envelope, request.id, admin.HANDLERS[spec.name](self, call))
                return
        except ProtocolError as exc:
            self._reply_error(envelope, request.id, exc.code, exc.message)
            return
        self.desk.on_command(envelope, request.id, spec, args, key)

    # -- the desk's actions -----------------------------------------------------------

    def _carry_out(self) -> None:
        """Do what the desk asked, in the order it asked."""
        for action in self.desk.drain():
            self._act(action)

    def _act(self, action: Action | PackedReply) -> None:
        if isinstance(action, Publish):
            self.outbox.number(action.event_type, action.account_id, action.data, action.ts, action.reconciled)
        elif isinstance(action, Reply):
            self._answer(action)
        elif isinstance(action, PackedReply):
            self.observer.answered(action.envelope[0], action.request_id, "ok")
            self._send(action.envelope, encode_ok_packed(action.request_id, action.packed))
        elif isinstance(action, Refuse):
            self._reply_error(action.envelope, action.request_id, action.code, action.message, action.details)
        elif isinstance(action, Submit):
            if self._batching:  # to the counter only once the ledger has committed
                self._held_submits.append(action)
            else:
                self.broker.submit(action.token, action.spec, action.args, action.raw)
        elif isinstance(action, Control):
            self.publish_control(action.event_type, action.data)
        elif isinstance(action, Reconnect):
            self.broker.reconnect()
        else:  # an action added to the desk and not here: a bug, reported, not hidden
            raise TypeError(f"unknown action {action!r}")

    def _answer(self, reply: Reply) -> None:
        if self.encoder.take(reply):
            return
        if reply.op:
            self.desk.link_all(reply.result if isinstance(reply.result, list) else [reply.result])
        self._reply_ok(reply.envelope, reply.request_id, reply.result)

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
                self.desk.storage_recovered(LEDGER_STORE)
            except Exception as exc:
                log.exception("ledger commit failed: the batch's new orders are refused, not sent")
                ledger.rollback([submit.record for submit in submits if submit.record is not None])
                self.desk.storage_failed(LEDGER_STORE, str(exc))
                # Outcomes this batch recorded are not on disk: their replies say storage_failed.
                replies = [(at, envelope, unrecorded(payload)) for at, envelope, payload in replies]
            for submit in submits:
                if committed or submit.record is None:
                    self.broker.submit(submit.token, submit.spec, submit.args, submit.raw)
                else:
                    self.desk.not_recorded(submit)
            for action in self.desk.drain():  # the alarm, the refusals: after the batch's replies
                if isinstance(action, Refuse):
                    replies.append((self.outbox.made, action.envelope, self._error_payload(action)))
                else:
                    self._act(action)
            self._flush(replies)  # the batch's events and replies, in the order they were made
            # The view writes its finished orders and trades once the replies and events are out
            # (lookups see them meanwhile); never raises.
            self.desk.view.commit()

    def _handle_inbox(self) -> bool:
        with self._batched():
            for item in self._inbox.drain(INBOX_BATCH):
                if isinstance(item, Encoded):
                    self.encoder.done()
                    self._act(item.answer)
                elif isinstance(item, MarketAnswer):
                    for action in self.market.on_answer(item):
                        self._act(action)
                elif item is _RELOAD:
                    try:
                        admin.reload_now(self)
                    except (KeyFileError, ConfigError) as exc:
                        log.error("reload failed, the old keys stay: %s", exc)
                elif item is _STOP:
                    return False
                else:
                    self._on_broker(item)
        return True

    def _on_broker(self, message: BrokerMessage) -> None:
        if isinstance(message, Connection) and message.connected:
            self.market.resubscribe()  # QMT's subscriptions are gone after a reconnect; ours are not
        try:
            self.desk.on_broker(message)
        finally:
            self._carry_out()

    # -- admin's I/O ------------------------------------------------------------------

    def drop_connections_soon(self) -> None:
        """Every connection ends shortly (a key lost rights): subscribers at once, commands once the reply left."""
        rebind(self.sockets.pub, self.pub_endpoint)
        self._drop_at = time.monotonic() + DROP_DELAY

    def _drop_connections(self) -> None:
        self._drop_at = 0.0
        rebind(self.sockets.router, self.router_endpoint)
        log.info("dropped every connection; clients reconnect with their keys checked again")

    def uptime(self) -> float:
        return round(time.monotonic() - self._started_at, 3)

    def epoch(self) -> str:
        return self.journal.epoch if self.journal is not None else ""

    # -- events: numbered, journaled, then published --------------------------------------

    def _flush(self, replies: list[tuple[int, list[bytes], bytes]] | None = None) -> None:
        """Journal the pending events, then publish them with ``replies``; in a batch, only at
        its end. A failing journal raises the storage alarm (and stops order entry)."""
        if self._batching:
            return
        before = self.outbox.published
        journaled = self.outbox.flush(replies or [])
        if journaled is None:
            return
        if journaled:
            self.desk.storage_recovered(JOURNAL_STORE)
        else:
            self.desk.storage_failed(JOURNAL_STORE, self.outbox.error)
        self._carry_out()  # the storage alarm or its all-clear
        self.observer.published(self.outbox.published - before)
        if journaled:
            self._apply_retention()

    def _apply_retention(self) -> None:
        """Cheap unless a bound is passed; also runs on heartbeats so an idle journal ages out."""
        assert self.journal is not None
        try:
            self.journal.prune_if_due()
        except Exception:
            log.exception("journal retention failed; will try again")

    def publish_control(self, event_type: str, data: dict[str, Any]) -> None:
        """Control events (pong, heartbeat, storage): not numbered, not journaled, sent at once."""
        self.sockets.pub.send_multipart(encode_event(None, time.time_ns(), event_type, None, data, self.epoch()))

    # -- replies ----------------------------------------------------------------------

    def _reply_ok(self, envelope: list[bytes], request_id: Any, result: Any) -> None:
        self.observer.answered(envelope[0], request_id, "ok")
        self._send(envelope, encode_ok(request_id, result))

    def _reply_error(
        self, envelope: list[bytes], request_id: Any, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        self._send(envelope, self._error_payload(Refuse(envelope, request_id, code, message, details)))

    def _error_payload(self, refusal: Refuse) -> bytes:
        self.observer.answered(refusal.envelope[0], refusal.request_id, refusal.code)
        return encode_error(refusal.request_id, refusal.code, refusal.message, refusal.details)

    def _send(self, envelope: list[bytes], payload: bytes) -> None:
        if envelope[0] == GATEWAY_CLIENT:  # the gateway's own query: nobody to answer
            return
        if self._batching:
            self._held_replies.append((self.outbox.made, envelope, payload))
            return
        try:
            self.sockets.router.send_multipart([*envelope, payload], zmq.NOBLOCK)
        except zmq.ZMQError:
            log.debug("reply dropped: the client is gone or its queue is full")


_STOP, _RELOAD = object(), object()  # inbox items from the controlling thread


def _due(wake: float | None, now: float) -> bool:
    return wake is not None and now >= wake
