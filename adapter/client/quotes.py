"""Quote subscriptions over the gateway's quote PUB, with xtdata's callbacks (PROTOCOL §16).

::

    from adapter.client import Client
    from adapter.client.quotes import Quotes

    with Client(router, pub) as client, Quotes(client) as quotes:
        seq = quotes.subscribe_quote("600000.SH", "1m", callback=lambda datas: print(datas))
        ...
        quotes.unsubscribe_quote(seq)

:class:`Quotes` holds a SUB on the quote PUB (its endpoint from ``ping``'s ``quote_pub`` unless
given, the client's CURVE keys) and three threads of its own: one reads the SUB, one calls the
callbacks, one renews the gateway's leases every third of a lease and subscribes again for any
seq the gateway no longer holds (it restarted, or the lease ran out), with the same
parameters. After the SUB reconnects (the gateway or the network went away) every
subscription is made afresh: seqs of a restarted gateway may name another client's now.

Bounded: between two deliveries only the newest quote per code and period is kept (what the
gateway does too), so a slow callback sees fewer, newer quotes, never a growing queue. The
callbacks get xtdata's shapes: ``subscribe_quote`` ``{code: [record]}``,
``subscribe_whole_quote`` ``{code: tick, ...}`` with every code that moved since the last call.
The seq these methods return is this object's own, stable across re-subscriptions.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from time import monotonic as _now
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import zmq
from zmq.utils.monitor import parse_monitor_message

from adapter.keys import apply_client_curve
from adapter.monitors import close_monitor
from adapter.protocol import ProtocolError, unpack

from ._base import ClientBase, Closing
from ._market import ProgressCallback, _codes
from .errors import CLIENT_CLOSED, GatewayError, GatewayTimeout
from .sync import Client

logger = logging.getLogger(__name__)

QuoteCallback = Callable[[dict[str, Any]], Any]

QUOTE_RECEIVE_HWM = 10_000  # messages ZeroMQ queues before dropping (the gateway's quote_hwm default)
MAX_QUOTE_MESSAGE = 16 << 20
MARKETS = frozenset({"SH", "SZ", "BJ"})
_POLL_MS = 20  # how soon a new topic or close() is seen by the reading thread
_READ_BATCH = 4096  # messages read per turn before the topic changes are looked at again
_RETRY = 1.0  # seconds before a failed renewal or re-subscription is tried again
_CLOSE_TIMEOUT = 2.0  # seconds for the unsubscriptions on close
_FINAL_PROGRESS_WAIT = 1.0  # seconds a download's last progress may trail its reply


def quote_endpoint(ping: Any, pub: str) -> str:
    """Where to connect for quotes: ``ping``'s ``quote_pub`` with a wildcard host replaced by the
    PUB's host, else the PUB's port + 1 (the gateway's default)."""
    bound = ping.get("quote_pub") if ping is not None else None
    pub_head, _, pub_port = pub.rpartition(":")
    if isinstance(bound, str) and bound:
        head, _, port = bound.rpartition(":")
        host = head.partition("://")[2]
        if host in ("*", "0.0.0.0", "::", "[::]") and pub_head:
            return f"{pub_head}:{port}"
        return bound
    return f"{pub_head}:{int(pub_port) + 1}" if pub_port.isdigit() else pub


@dataclass
class _Subscription:
    handle: int
    whole: bool
    codes: tuple[str, ...]  # subscribe_quote: one code; subscribe_whole_quote: codes and markets
    period: str
    count: int
    callback: QuoteCallback | None
    seq: int | None = None  # the gateway's, None while it has to be (re)made
    lease: float = 0.0
    made: bool = False  # subscribed once by _add: from then on the lease thread keeps it

    def topics(self) -> list[bytes]:
        if not self.whole:
            return [f"quote.{self.period}.{self.codes[0]}.".encode()]
        if any(code in MARKETS for code in self.codes):
            return [b"quote.tick."]  # a market is no topic prefix: its codes are picked out here
        return [f"quote.tick.{code}.".encode() for code in self.codes]


class Quotes(Closing):
    """Quote subscriptions with callbacks; see the module's doc.

    ``client``: a :class:`~adapter.client.Client` or :class:`~adapter.client.AsyncClient`
    whose endpoints, keys and context are used (calls go through a command socket of this
    object's own, so they never wait behind the client's). ``endpoint``: the quote PUB
    (default: from ``ping``). ``rcvhwm``: messages the SUB queues before ZeroMQ drops.
    ``renew_every``: seconds between renewals (default a third of the shortest lease).
    """

    def __init__(self, client: ClientBase, endpoint: str | None = None, *, timeout: float | None = None,
                 rcvhwm: int = QUOTE_RECEIVE_HWM, renew_every: float | None = None) -> None:
        self._control = Client(client.router, client.pub, client.timeout if timeout is None else timeout,
                               context=client._context, client_key=client._curve,
                               liveness_timeout=client.liveness_timeout)
        self._renew_every = renew_every
        self._lock = threading.Lock()  # subscriptions, their indexes and the topic changes
        self._subs: dict[int, _Subscription] = {}
        self._handles = itertools.count(1)
        self._exact: dict[tuple[str, str], set[int]] = {}  # (period, code) -> handles
        self._markets: dict[str, set[int]] = {}  # market -> whole-quote handles
        self._topics: dict[bytes, int] = {}
        self._topic_changes: list[tuple[bool, bytes]] = []
        self._topics_asked = 0  # topic changes queued so far, and applied to the SUB so far
        self._topics_applied = 0
        self._applied = threading.Condition()
        self._downloads: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._ready = threading.Condition()
        self._pending: dict[tuple[str, str], Any] = {}  # newest per (period, code) not yet delivered
        self._stop = threading.Event()
        self._wake_renewer = threading.Event()
        self._remake_all = False
        self._connected = threading.Event()
        self.stats = {"received": 0, "conflated": 0, "delivered": 0, "renewals": 0, "resubscribed": 0}
        sub = None
        try:
            self.endpoint = endpoint or quote_endpoint(self._control.ping(), client.pub)
            sub = self._control._context.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            apply_client_curve(sub, client._curve)
            sub.setsockopt(zmq.RCVHWM, rcvhwm)
            self._monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
            sub.connect(self.endpoint)
        except BaseException:
            if sub is not None:
                if hasattr(self, "_monitor"):
                    close_monitor(sub, self._monitor)
                sub.close(linger=0)
            self._control.close()
            raise
        self._sub = sub
        self._threads = [
            threading.Thread(target=self._read, name="qmt-quotes-read", daemon=True),
            threading.Thread(target=self._deliver, name="qmt-quotes-callbacks", daemon=True),
            threading.Thread(target=self._renew_loop, name="qmt-quotes-leases", daemon=True),
        ]
        for thread in self._threads:
            thread.start()  # the memory barrier that hands the SUB to the reading thread

    # -- subscriptions --------------------------------------------------------------------

    def subscribe_quote(self, stock_code: str, period: str = "1d", start_time: str = "", end_time: str = "",
                        count: int = 0, callback: QuoteCallback | None = None) -> int:
        """xtdata's ``subscribe_quote``: ``callback({code: [record]})`` with each tick (period
        ``tick``) or the bar now forming. ``start_time``/``end_time`` are taken for xtdata's
        sake (they only shape its local cache). Returns this object's seq for it."""
        return self._add(_Subscription(0, False, (stock_code.upper(),), period, count, _checked(callback)))

    def subscribe_whole_quote(self, code_list: str | Sequence[str], callback: QuoteCallback | None = None) -> int:
        """xtdata's ``subscribe_whole_quote``: ticks of codes or whole markets (``SH``, ``SZ``,
        ``BJ``), ``callback({code: tick, ...})``. Returns this object's seq for it."""
        codes = tuple(dict.fromkeys(code.upper() for code in _codes(code_list)))  # the gateway's codes are upper case
        return self._add(_Subscription(0, True, codes, "tick", 0, _checked(callback)))

    def unsubscribe_quote(self, seq: int) -> None:
        """End a subscription made here (an unknown seq is ignored, as in xtdata)."""
        with self._lock:
            sub = self._subs.pop(seq, None)
            if sub is None:
                return
            self._unindex(sub)
        if sub.seq is not None:
            try:
                self._control.unsubscribe_quote(sub.seq)
            except GatewayError as exc:  # the lease runs out at the gateway anyway
                logger.warning("unsubscribing quote seq %s: %s", sub.seq, exc)

    @property
    def seqs(self) -> dict[int, int | None]:
        """This object's seqs and the gateway's seq each one holds now (None: being remade)."""
        with self._lock:
            return {handle: sub.seq for handle, sub in self._subs.items()}

    @property
    def connected(self) -> bool:
        """Whether the SUB is connected to the quote PUB."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the SUB has connected to the quote PUB (True) or ``timeout`` passes."""
        return self._connected.wait(timeout)

    def _add(self, sub: _Subscription) -> int:
        if self._stop.is_set():
            raise GatewayError(CLIENT_CLOSED, "the quote subscriber is closed")
        with self._lock:
            sub.handle = next(self._handles)
            self._subs[sub.handle] = sub
            self._index(sub)  # receive from now on: the first quote may come before the reply
        try:
            self._make(sub)
        except BaseException:
            with self._lock:
                if self._subs.pop(sub.handle, None) is not None:
                    self._unindex(sub)
            raise
        with self._lock:
            sub.made = True
        self._wake_renewer.set()  # a shorter lease may mean renewing sooner
        return sub.handle

    def _make(self, sub: _Subscription) -> None:
        """Subscribe at the gateway (again), keeping the seq and lease it answers."""
        if sub.whole:
            reply = self._control.subscribe_whole_quote(list(sub.codes))
        else:
            reply = self._control.subscribe_quote(sub.codes[0], sub.period, sub.count)
        with self._lock:
            if sub.handle in self._subs:
                sub.seq, sub.lease = int(reply["seq"]), float(reply["lease"])
                return
        # Unsubscribed meanwhile: give the gateway's seq back.
        try:
            self._control.unsubscribe_quote(int(reply["seq"]))
        except GatewayError:
            pass

    def _index(self, sub: _Subscription) -> None:
        for code in sub.codes:
            if sub.whole and code in MARKETS:
                self._markets.setdefault(code, set()).add(sub.handle)
            else:
                self._exact.setdefault((sub.period, code), set()).add(sub.handle)
        for topic in sub.topics():
            self._topics[topic] = self._topics.get(topic, 0) + 1
            if self._topics[topic] == 1:
                self._change_topic(True, topic)

    def _unindex(self, sub: _Subscription) -> None:
        for code in sub.codes:
            if sub.whole and code in MARKETS:
                _discard(self._markets, code, sub.handle)
            else:
                _discard(self._exact, (sub.period, code), sub.handle)
        for topic in sub.topics():
            left = self._topics.get(topic, 0) - 1
            if left > 0:
                self._topics[topic] = left
            else:
                self._topics.pop(topic, None)
                self._change_topic(False, topic)

    def _change_topic(self, subscribe: bool, topic: bytes) -> None:
        """Queue a SUB (un)subscription for the reading thread, which owns the socket (lock held)."""
        self._topic_changes.append((subscribe, topic))
        self._topics_asked += 1

    def wait_ready(self, timeout: float) -> bool:
        """Block until the SUB is connected and carries every topic asked for so far (True), or
        ``timeout`` passes. Quotes published from then on reach it once the gateway has read
        the subscription, which it does first thing."""
        deadline = _now() + timeout
        with self._lock:
            asked = self._topics_asked
        with self._applied:
            if not self._applied.wait_for(lambda: self._topics_applied >= asked, timeout):
                return False
        return self._connected.wait(max(0.0, deadline - _now()))

    # -- the reading thread ---------------------------------------------------------------

    def _read(self) -> None:
        sub, monitor = self._sub, self._monitor
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        handshakes = 0
        try:
            while not self._stop.is_set():
                with self._lock:
                    changes, self._topic_changes = self._topic_changes, []
                    asked = self._topics_asked
                for subscribe, topic in changes:
                    sub.setsockopt(zmq.SUBSCRIBE if subscribe else zmq.UNSUBSCRIBE, topic)
                if changes:
                    with self._applied:
                        self._topics_applied = asked
                        self._applied.notify_all()
                ready = dict(poller.poll(_POLL_MS))
                if monitor in ready:
                    handshakes = self._monitor_events(monitor, handshakes)
                if sub in ready:
                    for _ in range(_READ_BATCH):
                        try:
                            frames = sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._take(frames)
        except Exception:
            logger.exception("the quote subscriber's reading thread stopped")
        finally:
            close_monitor(sub, monitor)
            sub.close(linger=0)

    def _monitor_events(self, monitor: Any, handshakes: int) -> int:
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            except zmq.Again:
                return handshakes
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected.set()
                handshakes += 1
                if handshakes > 1:  # back after a loss: the gateway may have restarted
                    logger.info("quote PUB %s reconnected: making the subscriptions again", self.endpoint)
                    with self._lock:
                        self._remake_all = True
                    self._wake_renewer.set()
            elif event == zmq.EVENT_DISCONNECTED:
                self._connected.clear()

    def _take(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            return
        topic = frames[0]
        try:
            payload = unpack(frames[1], max_size=MAX_QUOTE_MESSAGE)
        except ProtocolError:
            logger.debug("dropping an unreadable quote message on %r", topic)
            return
        if topic.startswith(b"download."):
            key = ("download", topic[9:-1].decode("utf-8", "replace"))
        elif isinstance(payload, dict) and isinstance(payload.get("code"), str) and isinstance(payload.get("data"), list):
            key = (str(payload.get("period")), payload["code"])
            if not self._wants(*key):
                return
            payload = payload["data"]
        else:
            return
        with self._ready:
            self.stats["received"] += 1
            if key in self._pending:
                self.stats["conflated"] += 1
            self._pending[key] = payload
            self._ready.notify()

    def _wants(self, period: str, code: str) -> bool:
        with self._lock:
            return (period, code) in self._exact or (period == "tick" and code.rpartition(".")[2] in self._markets)

    # -- the callback thread --------------------------------------------------------------

    def _deliver(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._stop.is_set():
                    self._ready.wait()
                if self._stop.is_set():
                    return
                batch, self._pending = self._pending, {}
            for callback, datas in self._route(batch):
                try:
                    callback(datas)
                except Exception:
                    logger.exception("quote callback %r failed", callback)
                self.stats["delivered"] += 1

    def _route(self, batch: dict[tuple[str, str], Any]) -> list[tuple[Callable[[Any], Any], Any]]:
        calls: list[tuple[Callable[[Any], Any], Any]] = []
        whole: dict[int, dict[str, Any]] = {}
        with self._lock:
            downloads = dict(self._downloads)
            for (period, code), data in batch.items():
                if period == "download":
                    watcher = downloads.get(code)
                    if watcher is not None:
                        calls.append((watcher, data))
                    continue
                handles = set(self._exact.get((period, code), ()))
                if period == "tick":
                    handles |= self._markets.get(code.rpartition(".")[2], set())
                for handle in handles:
                    sub = self._subs.get(handle)
                    if sub is None or sub.callback is None or not data:
                        continue
                    if sub.whole:
                        whole.setdefault(handle, {})[code] = data[-1]
                    else:
                        calls.append((sub.callback, {code: data}))
            for handle, ticks in whole.items():
                callback = self._subs[handle].callback
                assert callback is not None
                calls.append((callback, ticks))
        return calls

    # -- the lease thread -----------------------------------------------------------------

    def _renew_loop(self) -> None:
        last, failed = _now(), False
        while True:
            # Woken early by a new subscription (its lease may be shorter) or a reconnection.
            self._wake_renewer.wait(max(0.0, last + (_RETRY if failed else self._interval()) - _now()))
            self._wake_renewer.clear()
            if self._stop.is_set():
                return
            with self._lock:
                urgent = self._remake_all
            if not urgent and _now() < last + (_RETRY if failed else self._interval()):
                continue
            last = _now()
            try:
                failed = not self._renew()
            except Exception:
                logger.exception("renewing quote subscriptions failed")
                failed = True

    def _interval(self) -> float:
        if self._renew_every is not None:
            return self._renew_every
        with self._lock:
            leases = [sub.lease for sub in self._subs.values() if sub.lease > 0]
        return min(leases) / 3 if leases else 20.0

    def _renew(self) -> bool:
        """Renew, and make again what the gateway no longer holds; False when something failed."""
        with self._lock:
            kept = [sub for sub in self._subs.values() if sub.made]  # not one _add is making now
            if self._remake_all:
                self._remake_all = False
                for sub in kept:
                    sub.seq = None
            held = {sub.seq: sub for sub in kept if sub.seq is not None}
            remake = [sub for sub in kept if sub.seq is None]
        ok = True
        if held:
            try:
                unknown = self._control.renew_quotes(list(held))["unknown"]
                self.stats["renewals"] += 1
            except GatewayError as exc:
                logger.info("renewing quote leases: %s", exc)
                return False
            remake += [held[seq] for seq in unknown if seq in held]
        for sub in remake:
            try:
                self._make(sub)
                self.stats["resubscribed"] += 1
                logger.info("quote subscription %s (%s %s) made again: gateway seq %s", sub.handle, sub.period,
                            ",".join(sub.codes[:3]) + ("..." if len(sub.codes) > 3 else ""), sub.seq)
            except GatewayError as exc:
                logger.warning("subscribing %s %s again: %s", sub.period, ",".join(sub.codes[:3]), exc)
                with self._lock:
                    sub.seq = None
                ok = False
                if isinstance(exc, GatewayTimeout):
                    break
        return ok

    # -- downloads ------------------------------------------------------------------------

    def _watch_download(self, task: str, watcher: Callable[[dict[str, Any]], None] | None) -> None:
        topic = f"download.{task}.".encode()
        with self._lock:
            if watcher is None:
                self._downloads.pop(task, None)
                subscribe = False
            else:
                self._downloads[task] = watcher
                subscribe = True
            self._change_topic(subscribe, topic)

    # -- life cycle -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Unsubscribe everything at the gateway, stop the threads, close the sockets; idempotent.
        A callback still running finishes first (not waited for when called from one)."""
        if self._stop.is_set():
            return
        with self._lock:
            seqs = [sub.seq for sub in self._subs.values() if sub.seq is not None]
            self._subs.clear()
        self._stop.set()
        self._wake_renewer.set()
        with self._ready:
            self._ready.notify_all()
        for seq in seqs:
            try:
                self._control.unsubscribe_quote(seq, timeout=_CLOSE_TIMEOUT)
            except GatewayTimeout:
                break  # the gateway is away: the leases run out there
            except GatewayError:
                pass
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(5.0)
        self._control.close()

    def __repr__(self) -> str:
        return f"<Quotes {self.endpoint} {len(self._subs)} subscriptions{' closed' if self.closed else ''}>"


def _checked(callback: QuoteCallback | None) -> QuoteCallback | None:
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")
    return callback


class _Progress:
    """A download's progress maps handed to the user's callback, in order, and whether the
    last one said done."""

    def __init__(self, callback: ProgressCallback, total: int) -> None:
        self._callback = callback
        self._total = total
        self._done = threading.Event()
        self._last: dict[str, Any] = {}

    def __call__(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        self._last = data
        try:
            self._callback(data)
        except Exception:  # as xtdata: a failing progress callback does not stop the download
            logger.exception("download progress callback failed")
        finished, total = data.get("finished"), data.get("total")
        if isinstance(finished, int) and isinstance(total, int) and finished >= total:
            self._done.set()

    def finish(self, codes: Sequence[str]) -> None:
        """After the reply: wait briefly for the PUB's last progress, else make it up."""
        if self._done.wait(_FINAL_PROGRESS_WAIT):
            return
        self(dict(finished=self._total, total=self._total, stockcode=codes[-1] if codes else "", message=""))


def download_with_progress(client: Any, args: dict[str, Any], timeout: float, callback: ProgressCallback,
                           endpoint: str | None) -> Any:
    """``download_history_data2`` with progress callbacks, blocking (see ``Client``'s method)."""
    progress = _Progress(callback, len(args["stock_list"]))
    with Quotes(client, endpoint) as quotes:
        quotes._watch_download(args["task"], progress)
        quotes.wait_ready(min(timeout, client.timeout))
        result = client._call("download_history_data2", args, timeout, plain=True)
        progress.finish(args["stock_list"])
    return result


def download_with_progress_async(client: Any, args: dict[str, Any], timeout: float, callback: ProgressCallback,
                                 endpoint: str | None) -> Awaitable[Any]:
    """The same for the asyncio client: the callbacks still run on a thread of their own."""

    async def run() -> Any:
        if endpoint is None:
            where = quote_endpoint(await client._call("ping", {}, None, plain=True), client.pub)
        else:
            where = endpoint
        progress = _Progress(callback, len(args["stock_list"]))
        quotes = await asyncio.to_thread(Quotes, client, where)
        try:
            quotes._watch_download(args["task"], progress)
            await asyncio.to_thread(quotes.wait_ready, min(timeout, client.timeout))
            result = await client._call("download_history_data2", args, timeout, plain=True)
            await asyncio.to_thread(progress.finish, args["stock_list"])
        finally:
            await asyncio.to_thread(quotes.close)
        return result

    return run()


def _discard(index: dict[Any, set[int]], key: Any, handle: int) -> None:
    handles = index.get(key)
    if handles is not None:
        handles.discard(handle)
        if not handles:
            del index[key]
