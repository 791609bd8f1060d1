"""The simulated counter in its own process, found through the QMT path as a real terminal is.

    python -m adapter.sim.remote --path DIR [--config FILE] [--account ID ...] [--state FILE]

runs a ``SimCounter`` that serves ``XtQuantTrader(DIR, session)`` from any process: it binds a
ROUTER on a random 127.0.0.1 port and writes ``DIR/sim-counter.endpoint`` (JSON: endpoint, pid).
``native.XtQuantAsyncClient.connect()``, finding no counter registered in its own process for
that path, reads the file and opens a ``RemoteLink``.

The link (msgpack frames, objects as ``adapter.sim.wire`` encodes them; routing ids name the
client's two sockets by one random token):

    client sub socket  -> ["attach", {session, name}]         <- ["attached", 0 | CONNECT_REFUSED]
    client req socket  -> ["req", [method, seq, RequestFields]] | ["detach", ""]
    counter            -> sub socket ["cb", [callback, args]]  (a delivery, in the counter's order)
                       -> sub socket ["cbpart", [answer id, rows]] ... ["cbdone", [callback, seq, answer id]]
    client sub socket  -> ["pack", ""]                        (a part decoded: the next may come)
    control socket     -> ["ctl", [id, hook, args]]           <- ["ctl", [id, ok, result | [type, text]]]
    quote socket       -> ["quotes", ""] | ["qack", ""]        <- ["quotes", [[code, payload], ...]]

Quotes are latest-value: the counter's thread only merges each step's ticks into a pending map
(newest per code); the link's thread sends a push of at most ``QUOTE_PUSH`` ticks to a quote
socket when that socket has acknowledged the one before ("qack"), so a slow reader gets fresher
quotes, not a queue, and a push never holds order answers back. Each tick goes packed as the
gateway's quote PUB sends it (``protocol.encode_quote``): the gateway forwards the bytes.

Requests go out on their own socket under a lock (any thread may send); deliveries arrive on the
other, read only by the link's delivery thread, which calls the bound callbacks as the counter's
thread does in-process. A counter process that dies (or stops answering ZMTP heartbeats) is a
QMT disconnect: the disconnected callback, queries in flight answered with failures (orders and
cancels stay unanswered: their outcome is unknown), and ``connect()`` failing until a counter
process is back at the path.

The control channel (``RemoteCounter``) offers ``SimCounter``'s test/ops hooks by name;
``CounterProcess`` also starts, kills and stops the process (the gateway's ``sim_process``).
The market data hooks (``full_tick``, ``market_data`` ...: ``adapter.sim.feed``) go the same way;
``on_quotes`` opens a quote socket whose own thread hands each push to the callback.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import itertools
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, cast

import zmq

from adapter.config import SimConfig
from adapter.monitors import close_monitor
from adapter.signals import StopSignals
from adapter.protocol import encode_quote, pack, unpack
from adapter.sim import native, wire
from adapter.sim.wire import PART, PARTS_DONE

log = logging.getLogger(__name__)

ENDPOINT_FILE = "sim-counter.endpoint"
LOG_FILE = "sim-counter.log"
ATTACH_TIMEOUT = 5.0  # seconds connect() waits for the counter process to take a session
HEARTBEAT_MS = 500  # ZMTP heartbeats: a hung counter process is a lost connection after HEARTBEAT_TIMEOUT_MS
HEARTBEAT_TIMEOUT_MS = 3000
# SimCounter's hooks the control channel serves (and "ping": the process's pid).
CONTROL_HOOKS = frozenset({
    "set_price", "step", "push_assets", "last_price", "price_limits", "drop_connections", "set_ack_delay",
    "set_order_latency", "refuse_connections", "refuse_connections_for", "connected_sessions", "next_day", "books",
    "control",  # the operator's controls (the gateway's sim op)
    # the market (adapter.sim.feed)
    "full_tick", "record_ticks", "market_data", "local_data", "trading_dates", "download_history",
})
_LOST_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED | zmq.EVENT_CONNECT_RETRIED


SWITCH_INTERVAL = 0.0005  # seconds: the counter process's GIL switch interval (see main)
QUOTE_PUSH = 1_000  # ticks in one quote push: one frame (many frames cost a GIL hand-off each)
QUOTE_ACK_TIMEOUT = 5.0  # seconds without a "qack" before a quote socket may have a push again


def pack_quotes(ticks: Iterable[tuple[str, dict[str, Any]]]) -> bytes:
    """A quote push's body: ``[[code, payload], ...]``, each payload the quote PUB's message."""
    return pack([[code, encode_quote("tick", code, tick)] for code, tick in ticks])


def read_quotes(body: bytes) -> list[tuple[str, bytes]]:
    """``pack_quotes`` read back as ``(code, payload)`` pairs; anything else reads as none."""
    try:
        return [(str(code), bytes(payload)) for code, payload in unpack(body, len(body))]
    except Exception:
        log.warning("a malformed quote push of %d bytes was dropped", len(body))
        return []


PART_ACK_TIMEOUT = 5.0  # seconds without a "pack" before a client's next answer part goes anyway
_ANSWER_PARTS = frozenset({b"cbpart", b"cbdone"})


class _HeldParts:
    """A client's parts of long answers (and their ends) not sent yet, on the link's thread."""

    __slots__ = ("frames", "sent_at")

    def __init__(self) -> None:
        self.frames: collections.deque[list[bytes]] = collections.deque()
        self.sent_at: float | None = None  # when the part it has not acknowledged yet went


class _QuotePeer:
    """A quote socket's state on the link's thread: its ticks not sent yet, and its credit."""

    __slots__ = ("pending", "sent_at")

    def __init__(self) -> None:
        self.pending: dict[str, dict[str, Any]] = {}
        self.sent_at: float | None = None  # when the push it has not acknowledged yet went


def _heartbeat(socket: zmq.Socket[Any]) -> None:
    socket.heartbeat_ivl = HEARTBEAT_MS
    socket.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
    socket.heartbeat_ttl = HEARTBEAT_TIMEOUT_MS


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # no cheap check there: a dead endpoint fails the attach instead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_endpoint(path: str | os.PathLike[str]) -> str | None:
    """The endpoint of the live counter process serving ``path``, or None."""
    try:
        info = json.loads((Path(path) / ENDPOINT_FILE).read_text(encoding="utf-8"))
        endpoint, pid = str(info["endpoint"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return endpoint if _pid_alive(pid) else None


_context_lock = threading.Lock()
_context: zmq.Context[Any] | None = None


def _shared_context() -> zmq.Context[Any]:
    # One context for every link of this process (never terminated: links may outlive anything).
    global _context
    with _context_lock:
        if _context is None:
            _context = zmq.Context()
        return _context


# ---------------------------------------------------------------------------------------
# Client side: one link per native client session.


class RemoteLink:
    """A native client's session with a counter process (``native.Connection``)."""

    NEW, ACTIVE, DROPPED, LOST, CLOSED = "new", "active", "dropped", "lost", "closed"

    def __init__(self, client: native.XtQuantAsyncClient, endpoint: str) -> None:
        self._client = client
        token = os.urandom(16)
        context = _shared_context()
        self._sub = context.socket(zmq.DEALER)
        self._sub.routing_id = b"s" + token
        self._sub.linger = 0
        self._sub.reconnect_ivl = -1  # a session never survives its connection
        self._sub.rcvhwm = 0  # deliveries are never dropped
        _heartbeat(self._sub)
        self._monitor = self._sub.get_monitor_socket(_LOST_EVENTS)
        self._sub.connect(endpoint)
        self._req = context.socket(zmq.DEALER)
        self._req.routing_id = b"q" + token
        self._req.linger = 500  # long enough for a detach to leave
        self._req.reconnect_ivl = -1
        self._req.sndhwm = 0
        self._req.connect(endpoint)
        self._lock = threading.Lock()  # guards _req, _state and _pending
        self._state = RemoteLink.NEW
        self._pending: dict[int, tuple[str, native.RequestFields]] = {}  # seq -> request without its response yet
        self._parts: dict[int, list[Any]] = {}  # answer id -> the parts of a long answer received so far
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._state == RemoteLink.ACTIVE

    def attach(self, timeout: float = ATTACH_TIMEOUT) -> int:
        """Ask the counter process for a session; a native connect() result."""
        client = self._client
        # A refused connection is not tried again (reconnect_ivl -1), and a DEALER with no peer
        # blocks a send for ever: a counter process that died (or is not up yet) must fail the
        # attach, so the broker backs off and tries again.
        self._sub.sndtimeo = max(1, int(timeout * 1000))
        try:
            self._sub.send_multipart([b"attach", wire.pack({"session": client.session_id, "name": client.name})])
        except zmq.Again:
            return native.CONNECT_NO_COUNTER
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            ready = dict(poller.poll(max(1, int(remaining * 1000))))
            if self._monitor in ready:
                self._monitor.recv_multipart()  # refused or closed: no counter at that endpoint
                return native.CONNECT_NO_COUNTER
            if self._sub in ready:
                frames = self._sub.recv_multipart()
                if frames[0] != b"attached":
                    continue
                result = int(wire.unpack(frames[1]))
                if result != native.CONNECT_OK:
                    return result
                self._state = RemoteLink.ACTIVE
                # The sockets move to the delivery thread here (its start is the memory barrier).
                self._thread = threading.Thread(target=self._run, name="sim-native-link", daemon=True)
                self._thread.start()
                return native.CONNECT_OK
        return native.CONNECT_NO_COUNTER

    def submit_request(self, session: Any, method: str, seq: int, fields: native.RequestFields) -> bool:
        frames = [b"req", wire.pack([method, seq, fields])]
        with self._lock:
            if self._state not in (RemoteLink.ACTIVE, RemoteLink.DROPPED):
                return False  # the caller answers it, as for a closed counter
            if method in _ANSWERED_ON_LOSS:
                self._pending[seq] = (method, fields)
            try:
                self._req.send_multipart(frames, zmq.NOBLOCK)
            except zmq.ZMQError:
                self._pending.pop(seq, None)
                return False
        return True

    def detach(self, session: Any = None) -> None:
        """Leave the counter process: after this returns no callback of this link runs again."""
        with self._lock:
            was = self._state
            self._state = RemoteLink.CLOSED
            if was in (RemoteLink.ACTIVE, RemoteLink.DROPPED):
                try:
                    self._req.send_multipart([b"detach", b""], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
            if thread.is_alive():  # a callback that does not return: leave the sockets to it
                log.warning("the counter link's delivery thread did not stop")
                return
        if thread is None or thread is not threading.current_thread():
            self._close_sockets()

    def _close_sockets(self) -> None:
        close_monitor(self._sub, self._monitor)
        self._sub.close(0)
        with self._lock:
            self._req.close()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while self._state != RemoteLink.CLOSED:
            ready = dict(poller.poll(100))  # wakes to notice detach()
            if self._sub in ready:
                self._drain()
            if self._monitor in ready:
                self._monitor.recv_multipart()
                self._drain()  # what arrived before the connection went
                self._lost()
                return

    def _drain(self) -> None:
        while self._state != RemoteLink.CLOSED:
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = frames[0]
            if kind == b"cbpart":  # decoded now, so later callbacks are not held behind a whole day
                answer_id, records = wire.unpack(frames[1])
                self._parts.setdefault(answer_id, []).extend(records)
                try:
                    self._sub.send_multipart([b"pack", b""], zmq.NOBLOCK)  # the counter may send the next part
                except zmq.ZMQError:
                    pass  # the connection is going: the counter sends on after PART_ACK_TIMEOUT anyway
                continue
            if kind == b"cbdone":
                callback, seq, answer_id = wire.unpack(frames[1])
                args = [seq, self._parts.pop(answer_id, [])]
            elif kind == b"cb":
                callback, args = wire.unpack(frames[1])
            else:
                continue
            if callback == native.CB_DISCONNECTED:
                with self._lock:
                    if self._state == RemoteLink.ACTIVE:
                        self._state = RemoteLink.DROPPED
            elif callback in _RESPONSES and args and isinstance(args[0], int):
                with self._lock:
                    self._pending.pop(args[0], None)
            self._client.deliver(callback, *args)

    def _lost(self) -> None:
        """The counter process is gone: a disconnect, and failures for the queries it took."""
        with self._lock:
            was = self._state
            if was == RemoteLink.CLOSED:
                return
            self._state = RemoteLink.LOST
            pending, self._pending = self._pending, {}
            self._parts.clear()  # their answers never complete: the queries fail below
        log.warning("lost the counter process of %s", self._client.path)
        if was == RemoteLink.ACTIVE:
            self._client.deliver(native.CB_DISCONNECTED)
        for seq, (method, fields) in sorted(pending.items()):
            for callback, args in native.failure_deliveries(method, seq, fields, "[SIM] connection lost"):
                self._client.deliver(callback, *args)


# Requests whose failure answer is safe when the counter process goes: nothing was placed.
_ANSWERED_ON_LOSS = frozenset(native.RESPONSE_CALLBACKS) - {"orderStockWithSeq", "cancelOrderStockWithSeq"}
_RESPONSES = frozenset(native.RESPONSE_CALLBACKS[m] for m in _ANSWERED_ON_LOSS)


# ---------------------------------------------------------------------------------------
# Counter process side.


class _Peer:
    """What the counter holds as a session's native client: deliveries go out on the link."""

    def __init__(self, server: CounterServer, token: bytes) -> None:
        self.server = server
        self.token = token
        self.session: Any = None

    takes_parts = True  # a long answer goes out part by part (SimCounter._answer_long)

    def deliver(self, callback: str, *args: Any) -> None:  # on the counter's thread
        if callback == PART:  # (answer id, records)
            self.server.send_out([b"s" + self.token, b"cbpart", wire.pack([args[0], wire.rows(args[1])])])
        elif callback == PARTS_DONE:  # (the answer's callback, seq, answer id)
            self.server.send_out([b"s" + self.token, b"cbdone", wire.pack(list(args))])
        else:
            self.server.send_out([b"s" + self.token, b"cb", wire.pack([callback, [wire.rows(arg) for arg in args]])])


class CounterServer:
    """Serves one ``SimCounter`` to native clients and control clients of other processes."""

    def __init__(self, counter: Any, path: str | os.PathLike[str]) -> None:
        self.counter = counter
        self.path = Path(path)
        self._context: zmq.Context[Any] = zmq.Context()
        self._router = self._context.socket(zmq.ROUTER)
        self._router.router_mandatory = True  # a gone client is noticed at the next delivery
        self._router.sndhwm = self._router.rcvhwm = 0
        self._router.linger = 0
        _heartbeat(self._router)
        port = self._router.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        inproc = f"inproc://sim-out-{id(self)}"
        self._out_pull = self._context.socket(zmq.PULL)
        self._out_pull.rcvhwm = 0
        self._out_pull.bind(inproc)
        self._out_push = self._context.socket(zmq.PUSH)
        self._out_push.sndhwm = 0
        self._out_push.linger = 0
        self._out_push.connect(inproc)
        self._out_lock = threading.Lock()  # the counter and control threads both send out
        self._peers: dict[bytes, _Peer] = {}  # token -> peer; touched on the I/O thread only
        self._quote_peers: dict[bytes, _QuotePeer] = {}  # by routing id; I/O thread only
        self._held_parts: dict[bytes, _HeldParts] = {}  # a client's answer frames behind its unacknowledged part
        self._quote_lock = threading.Lock()
        self._quotes_new: dict[str, dict[str, Any]] = {}  # from the counter's thread, newest per code
        self._quotes_wanted = False  # any quote socket: read by the counter's thread without the lock
        self._unsubscribe_quotes = counter.on_quotes(self._on_quotes)
        self._control: queue.SimpleQueue[tuple[bytes, Any] | None] = queue.SimpleQueue()
        self.stopping = threading.Event()

    def send_out(self, frames: list[bytes]) -> None:
        with self._out_lock:
            self._out_push.send_multipart(frames)

    def _on_quotes(self, ticks: dict[str, dict[str, Any]]) -> None:  # on the counter's thread: merge, wake
        if not self._quotes_wanted:
            return
        with self._quote_lock:
            wake = not self._quotes_new
            self._quotes_new.update(ticks)
        if wake:
            self.send_out([b"", b"quotes"])

    def _push_quotes(self, now: float) -> None:
        """On the link's thread: new ticks to each quote socket's pending map, then a push to each
        socket with credit."""
        with self._quote_lock:
            new, self._quotes_new = self._quotes_new, {}
        for identity, peer in list(self._quote_peers.items()):
            peer.pending.update(new)
            if peer.sent_at is not None and now - peer.sent_at < QUOTE_ACK_TIMEOUT:
                continue  # its push is not acknowledged yet
            if not peer.pending:
                continue
            if len(peer.pending) <= QUOTE_PUSH:
                batch, peer.pending = list(peer.pending.items()), {}
            else:
                batch = list(itertools.islice(peer.pending.items(), QUOTE_PUSH))
                for code, _tick in batch:
                    del peer.pending[code]
            try:
                self._router.send_multipart([identity, b"quotes", pack_quotes(batch)], zmq.NOBLOCK)
            except zmq.ZMQError:  # its socket is gone
                del self._quote_peers[identity]
                self._quotes_wanted = bool(self._quote_peers)
                continue
            peer.sent_at = now

    def write_endpoint(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        temporary = self.path / f"{ENDPOINT_FILE}.{os.getpid()}"
        temporary.write_text(json.dumps({"endpoint": self.endpoint, "pid": os.getpid()}), encoding="utf-8")
        os.replace(temporary, self.path / ENDPOINT_FILE)

    def _remove_endpoint(self) -> None:
        target = self.path / ENDPOINT_FILE
        try:
            if json.loads(target.read_text(encoding="utf-8")).get("pid") == os.getpid():
                target.unlink()
        except (OSError, ValueError):
            pass

    def serve(self, parent_pid: int | None = None, signals: StopSignals | None = None) -> None:
        """Until ``stopping`` is set, a stop signal is noted in ``signals`` or the parent process
        is gone: serve, then close the counter."""
        worker = threading.Thread(target=self._control_loop, name="sim-control", daemon=True)
        worker.start()
        self.write_endpoint()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._out_pull, zmq.POLLIN)
        try:
            while not self.stopping.is_set() and (signals is None or signals.received is None):
                ready = dict(poller.poll(200))
                if self._router in ready:
                    for _ in range(1000):  # bounded: deliveries get their turn
                        try:
                            frames = self._router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            self._on_message(frames)
                        except Exception:  # one bad message must not stop the counter's link
                            log.exception("counter link: a message could not be served")
                if self._out_pull in ready:
                    self._flush(1000)
                else:  # a quiet turn: what waits for an acknowledgement that was lost
                    if self._quote_peers:
                        self._push_quotes(time.monotonic())
                    if self._held_parts:
                        self._overdue_parts(time.monotonic())
                if parent_pid is not None and os.getppid() != parent_pid:
                    log.warning("the process that started the counter is gone: stopping")
                    break
        finally:
            self._remove_endpoint()
            self._control.put(None)
            self._unsubscribe_quotes()
            self.counter.close()  # every active session gets its disconnected push
            self._flush(100_000)
            worker.join(5.0)
            self._router.close(0)
            self._out_pull.close(0)
            with self._out_lock:
                self._out_push.close(0)
            self._context.term()

    def _flush(self, limit: int) -> None:
        for _ in range(limit):
            try:
                frames = self._out_pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frames[0] == b"":  # new quotes
                self._push_quotes(time.monotonic())
                continue
            if frames[1] in _ANSWER_PARTS:
                held = self._held_parts.setdefault(frames[0], _HeldParts())
                held.frames.append(frames)
                if held.sent_at is None:
                    self._release_parts(frames[0], held, time.monotonic())
                continue
            self._send(frames)

    def _send(self, frames: list[bytes]) -> bool:
        try:
            self._router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError:  # the client's connection is gone: its session too
            peer = self._peers.pop(frames[0][1:], None) if frames[0][:1] == b"s" else None
            if peer is not None:
                self._control.put((b"", ("forget", peer)))
            self._held_parts.pop(frames[0], None)
            return False
        return True

    def _release_parts(self, identity: bytes, held: "_HeldParts", now: float) -> None:
        """Send a client's held answer frames up to and with the next part, which it acknowledges
        ("pack") once decoded: at most one part of a long answer is ever ahead of its other
        deliveries, so an order's answer waits for one part, not a day of them."""
        held.sent_at = None
        while held.frames:
            frames = held.frames.popleft()
            if not self._send(frames):
                return
            if frames[1] == b"cbpart":
                held.sent_at = now
                return
        self._held_parts.pop(identity, None)

    def _overdue_parts(self, now: float) -> None:
        for identity, held in list(self._held_parts.items()):
            if held.sent_at is not None and now - held.sent_at >= PART_ACK_TIMEOUT:
                self._release_parts(identity, held, now)

    def _on_message(self, frames: list[bytes]) -> None:
        if len(frames) != 3:
            return
        identity, kind, body = frames
        token = identity[1:]
        if kind == b"req":
            method, seq, fields = wire.unpack(body)
            peer = self._peers.get(token)
            if peer is None:  # detached or never attached
                deliveries = native.failure_deliveries(method, seq, fields, "[SIM] not connected to the counter")
            elif self.counter.submit_request(peer.session, method, seq, fields):
                return
            else:
                deliveries = native.failure_deliveries(method, seq, fields, "[SIM] the counter is closed")
            for callback, args in deliveries:
                self.send_out([b"s" + token, b"cb", wire.pack([callback, args])])
        elif kind == b"attach":
            peer = _Peer(self, token)
            try:
                peer.session = self.counter.attach(cast(Any, peer))
            except Exception:
                log.debug("attach failed", exc_info=True)
                result = native.CONNECT_NO_COUNTER
            else:
                result = native.CONNECT_OK if peer.session is not None else native.CONNECT_REFUSED
            if peer.session is not None:
                self._peers[token] = peer
            self._router.send_multipart([identity, b"attached", wire.pack(result)])
        elif kind == b"detach":
            peer = self._peers.pop(token, None)
            if peer is not None:
                self._control.put((b"", ("forget", peer)))
        elif kind == b"ctl":
            self._control.put((identity, wire.unpack(body)))
        elif kind == b"quotes":
            self._quote_peers[identity] = _QuotePeer()
            self._quotes_wanted = True
        elif kind == b"pack":
            held = self._held_parts.get(identity)
            if held is not None:
                self._release_parts(identity, held, time.monotonic())
        elif kind == b"qack":
            quote_peer = self._quote_peers.get(identity)
            if quote_peer is not None:
                quote_peer.sent_at = None
                self._push_quotes(time.monotonic())
        elif kind == b"unquotes":
            self._quote_peers.pop(identity, None)
            self._quotes_wanted = bool(self._quote_peers)

    def _control_loop(self) -> None:
        """Hooks run here, one at a time, so a long one never holds the link's I/O."""
        while True:
            item = self._control.get()
            if item is None:
                return
            identity, request = item
            if request[0] == "forget":
                try:
                    self.counter.detach(request[1].session)
                except RuntimeError:  # closed meanwhile
                    pass
                continue
            call_id, hook, args = request
            try:
                if hook == "ping":
                    result: Any = os.getpid()
                elif hook == "shutdown":
                    result = None
                    self.stopping.set()
                elif hook in CONTROL_HOOKS:
                    result = getattr(self.counter, hook)(*args)
                else:
                    raise ValueError(f"unknown control hook {hook!r}")
                reply = [call_id, True, result]
            except Exception as exc:
                reply = [call_id, False, ["ValueError" if isinstance(exc, ValueError) else "RuntimeError", str(exc)]]
            self.send_out([identity, b"ctl", wire.pack(reply)])


# ---------------------------------------------------------------------------------------
# Control side.


class RemoteCounter:
    """``SimCounter``'s test/ops hooks on the counter process serving ``path``, by name."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._socket: zmq.Socket[Any] | None = None
        self._endpoint: str | None = None
        self._ids = itertools.count(1)

    def _call(self, hook: str, *args: Any, timeout: float = 30.0) -> Any:
        with self._lock:
            endpoint = read_endpoint(self.path)
            if endpoint is None:
                raise RuntimeError(f"no counter process is serving {self.path}")
            if endpoint != self._endpoint or self._socket is None:
                self._close_socket()
                self._socket = _shared_context().socket(zmq.DEALER)
                self._socket.linger = 0
                self._socket.connect(endpoint)
                self._endpoint = endpoint
            call_id = next(self._ids)
            self._socket.send_multipart([b"ctl", wire.pack([call_id, hook, args])])
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                if not self._socket.poll(max(1, int(remaining * 1000))):
                    break
                frames = self._socket.recv_multipart()
                answer_id, ok, value = wire.unpack(frames[1])
                if answer_id != call_id:
                    continue  # the late answer of a call that timed out
                if ok:
                    return value
                kind, message = value
                raise (ValueError if kind == "ValueError" else RuntimeError)(message)
            self._close_socket()
            raise TimeoutError(f"the counter process did not answer {hook} within {timeout:.0f} s")

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
            self._endpoint = None

    def close(self) -> None:
        with self._lock:
            self._close_socket()

    def ping(self, timeout: float = 5.0) -> int:
        """The counter process's pid."""
        return int(self._call("ping", timeout=timeout))

    def set_price(self, code: str, price: float) -> None:
        self._call("set_price", code, price)

    def step(self) -> None:
        self._call("step")

    def push_assets(self, account_id: str, count: int) -> None:
        self._call("push_assets", account_id, count, timeout=120.0)

    def last_price(self, code: str) -> float:
        return float(self._call("last_price", code))

    def price_limits(self, code: str) -> tuple[float, float]:
        down, up = self._call("price_limits", code)
        return float(down), float(up)

    def drop_connections(self, reason: str = "connection lost") -> int:
        return int(self._call("drop_connections", reason))

    def set_ack_delay(self, seconds: float) -> None:
        self._call("set_ack_delay", seconds)

    def set_order_latency(self, seconds: float) -> None:
        self._call("set_order_latency", seconds)

    def refuse_connections(self, flag: bool = True) -> None:
        self._call("refuse_connections", flag)

    def refuse_connections_for(self, seconds: float) -> None:
        self._call("refuse_connections_for", seconds)

    def connected_sessions(self) -> int:
        return int(self._call("connected_sessions"))

    def next_day(self) -> None:
        self._call("next_day")

    def books(self, account_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("books", account_id))

    def control(self, action: str, args: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("control", action, dict(args), timeout=timeout))

    # -- the market (adapter.sim.feed): the same calls as SimCounter's -----------------------

    def full_tick(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        return cast(dict[str, dict[str, Any]], self._call("full_tick", list(codes)))

    def record_ticks(self, codes: list[str]) -> None:
        self._call("record_ticks", list(codes))

    def market_data(
        self, field_list: Sequence[str] = (), stock_list: Sequence[str] = (), period: str = "1d", start_time: str = "",
        end_time: str = "", count: int = -1, dividend_type: str = "none", fill_data: bool = True,
    ) -> dict[str, dict[str, list[Any]]]:
        args = (list(field_list), list(stock_list), period, start_time, end_time, count, dividend_type, fill_data)
        return cast(dict[str, dict[str, list[Any]]], self._call("market_data", *args, timeout=120.0))

    def local_data(
        self, field_list: Sequence[str] = (), stock_list: Sequence[str] = (), period: str = "1d", start_time: str = "",
        end_time: str = "", count: int = -1, dividend_type: str = "none", fill_data: bool = True,
    ) -> dict[str, dict[str, list[Any]]]:
        args = (list(field_list), list(stock_list), period, start_time, end_time, count, dividend_type, fill_data)
        return cast(dict[str, dict[str, list[Any]]], self._call("local_data", *args, timeout=120.0))

    def trading_dates(self, market: str, start_time: str = "", end_time: str = "", count: int = -1) -> list[int]:
        return cast(list[int], self._call("trading_dates", market, start_time, end_time, count))

    def download_history(
        self, stock_list: Any, period: str, start_time: str = "", end_time: str = "",
        callback: Callable[[dict[str, Any]], None] | None = None, incrementally: bool | None = None,
    ) -> list[dict[str, Any]]:
        """The progress is reported here, once the counter process is done (a callback cannot travel)."""
        codes = [stock_list] if isinstance(stock_list, str) else list(stock_list)
        progress = cast(list[dict[str, Any]], self._call("download_history", codes, period, start_time, end_time))
        if callback is not None:
            for item in progress:
                callback(dict(item))
        return progress

    def on_quotes(self, callback: Callable[[dict[str, dict[str, Any]]], None]) -> Callable[[], None]:
        """``SimCounter.on_quotes`` across processes: ``callback({code: tick})`` on a thread of
        this process for each push; it must only hand off. Follows a counter process restarted
        at the path. Returns the unsubscribe (which stops that thread)."""

        def decoded(pairs: list[tuple[str, bytes]]) -> None:
            callback({code: unpack(payload)["data"][0] for code, payload in pairs})

        return self.on_packed_quotes(decoded)

    def on_packed_quotes(self, callback: Callable[[list[tuple[str, bytes]]], None]) -> Callable[[], None]:
        """``on_quotes`` with each tick as the quote PUB's payload, packed in the counter process:
        ``callback([(code, payload), ...])``."""
        watch = QuoteWatch(self.path, callback)
        watch.start()
        return watch.close


class QuoteWatch:
    """The quote pushes of the counter process serving ``path``, handed to ``callback`` on the
    watch's thread. A counter process that goes away and comes back (a new endpoint) is
    subscribed again; pushes meanwhile are lost (quotes are snapshots: the next one replaces them)."""

    def __init__(self, path: str | os.PathLike[str], callback: Callable[[list[tuple[str, bytes]]], None]) -> None:
        self.path = Path(path)
        self._callback = callback
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-quotes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _run(self) -> None:
        socket: zmq.Socket[Any] | None = None
        endpoint: str | None = None
        checked = 0.0
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now - checked >= 0.5:  # the endpoint file names the live counter process
                    checked = now
                    found = read_endpoint(self.path)
                    if found != endpoint:
                        if socket is not None:
                            socket.close(0)
                            socket = None
                        endpoint = found
                        if endpoint is not None:
                            socket = _shared_context().socket(zmq.DEALER)
                            socket.linger = 0
                            _heartbeat(socket)
                            socket.connect(endpoint)
                            socket.send_multipart([b"quotes", b""])
                if socket is None or not socket.poll(100):
                    if socket is None:
                        self._stopping.wait(0.1)
                    continue
                frames = socket.recv_multipart()
                if len(frames) == 2 and frames[0] == b"quotes":
                    try:
                        self._callback(read_quotes(frames[1]))
                    except Exception:
                        log.exception("a quote subscriber failed")
                    socket.send_multipart([b"qack", b""])  # handed off: the counter may send the next
        finally:
            if socket is not None:
                socket.linger = 100  # long enough for the goodbye to leave
                try:
                    socket.send_multipart([b"unquotes", b""], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
                socket.close(0)


class CounterProcess(RemoteCounter):
    """A counter process this process starts and stops (``sim_process = true``); also its control."""

    def __init__(
        self, path: str | os.PathLike[str], config: SimConfig, accounts: Iterable[str],
        state_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(path)
        self.config = config
        self.accounts = tuple(str(a) for a in accounts)
        self.state_path = state_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until it serves the path; RuntimeError if it does not."""
        if self.alive():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / ENDPOINT_FILE).unlink(missing_ok=True)
        command = [sys.executable, "-m", "adapter.sim.remote", "--path", str(self.path),
                   "--settings", json.dumps(dataclasses.asdict(self.config)), "--parent-pid", str(os.getpid())]
        if self.state_path is not None:
            command += ["--state", str(self.state_path)]
        for account in self.accounts:
            command += ["--account", account]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # this checkout's adapter, installed or not
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        logfile = self.path / LOG_FILE
        with open(logfile, "ab") as output:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = logfile.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"the counter process exited with {self.proc.returncode}:\n{tail}")
            if read_endpoint(self.path) is not None:
                try:
                    if self.ping(timeout=2.0) == self.proc.pid:
                        return
                except (TimeoutError, RuntimeError):
                    pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the counter process did not serve {self.path} within {timeout:.0f} s")

    def kill(self) -> None:
        """A crash: no goodbye to the sessions, the endpoint file left behind (the pid is dead)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.close_control()

    def close_control(self) -> None:
        super().close()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the process: its sessions get the disconnected push, its books are written."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._call("shutdown", timeout=5.0)
            except (TimeoutError, RuntimeError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the counter process did not stop within %.0f s: killed", timeout)
                self.proc.kill()
                self.proc.wait(10)
        self.close_control()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter.sim.remote", description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True, help="the QMT path clients give XtQuantTrader (a folder)")
    parser.add_argument("--config", metavar="FILE", help="qmt-adapter TOML: its [sim] table and accounts")
    parser.add_argument("--settings", metavar="JSON", help="[sim] settings as JSON (overrides --config's)")
    parser.add_argument("--account", action="append", metavar="ID", help="fund account; repeatable")
    parser.add_argument("--state", metavar="FILE", help="keep the books in this file (default: memory only)")
    parser.add_argument("--parent-pid", type=int, help="stop when this process is no longer the parent")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from adapter.config import ConfigError, load_config
    from adapter.sim.counter import SimCounter

    try:
        config = load_config(args.config)
        sim = config.sim if args.settings is None else SimConfig(**json.loads(args.settings))
        accounts = args.account or list(config.accounts)
        counter = SimCounter(sim, accounts, state_path=args.state)
    except (ConfigError, ValueError, TypeError, OSError) as exc:
        print(f"counter: {exc}", file=sys.stderr)
        return 2
    server = CounterServer(counter, args.path)
    gc.freeze()  # the instrument table and the books live as long as the process: collections skip them
    # The link's thread hands each request to the counter's thread and each answer back; while a
    # price step keeps the counter's thread busy, every hand-off waits out the GIL's switch
    # interval (5 ms by default): shorter, an order waits for its turn, not for the step's slices.
    sys.setswitchinterval(SWITCH_INTERVAL)
    stop = StopSignals()
    stop.install()
    log.info("serving %s on %s", args.path, server.endpoint)
    server.serve(args.parent_pid, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
