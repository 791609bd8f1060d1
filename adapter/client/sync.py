"""The blocking client: one DEALER for commands, SUB sockets for events.

Thread-safety. ZeroMQ sockets must not be used by two threads at once, so :class:`Client`
serialises calls with a lock: several threads may share one Client, but their calls run one
after another (a slow ``order_stock`` delays a ``ping`` from another thread; the lock wait
counts against the waiting call's time-out). For calls that overlap, use
:class:`~adapter.client.AsyncClient` or one Client per thread. An :class:`EventStream` belongs to
the thread that iterates it; a :class:`Subscription` owns one background thread and its socket.
"""

from __future__ import annotations

import logging
import threading
import time
import os
from typing import Any, Callable, Iterator, Optional, Sequence

import zmq
import zmq.asyncio

from adapter.keys import CurveKeys
from adapter.protocol import DEFAULT_PUB, DEFAULT_ROUTER

from ._base import ClientBase, Closing
from ._market import MarketMethods
from ._ops import OpMethods
from ._stream import PongSchedule, StatePath, StreamCore, StreamView, combined_liveness
from ._wire import (
    SEND_RETRY_PAUSE,
    check_timeout,
    decode_reply,
    open_subscriber,
    readable,
    reply_outcome,
    to_milliseconds,
)
from .errors import CLIENT_CLOSED, GatewayError, GatewayTimeout
from .records import Event, Record

logger = logging.getLogger(__name__)

EventCallback = Callable[[Event], Any]


def _plain_context(context: zmq.Context[Any] | None) -> zmq.Context[Any]:
    """A blocking context: the given one (shadowed if it is an asyncio one) or the global one."""
    if context is None:
        return zmq.Context.instance()
    if isinstance(context, zmq.asyncio.Context):
        return zmq.Context.shadow(context.underlying)
    return context


class Client(ClientBase, Closing, OpMethods[Record, Optional[Record], list[Record], Any], MarketMethods[Any]):
    """Blocking client of a qmt-zmq-adapter gateway.

    ``router`` and ``pub`` are the gateway's ROUTER and PUB endpoints; ``timeout`` the default
    per-call time-out in seconds (each method also takes ``timeout=``). ``context`` defaults to
    the process-wide ``zmq.Context.instance()``, which the client never terminates.

    Results: a map becomes a :class:`Record`, a list a ``list[Record]``, nil ``None``. Every
    failure raises :class:`GatewayError` (``GatewayTimeout`` when no reply came in time). After
    a time-out the client stays usable: the late reply is recognised by its id and dropped.

    A request is only queued on a completed connection (``ZMQ_IMMEDIATE``), so a call made
    while the gateway is unreachable times out with ``sent=False`` instead of being delivered
    minutes later when the gateway comes back.

    Safe to share between threads; calls are serialised (see the module docstring).
    """

    _context: zmq.Context[Any]
    _adopt_context = staticmethod(_plain_context)

    def __new__(
        cls,
        router: str = DEFAULT_ROUTER,
        pub: str = DEFAULT_PUB,
        timeout: float = 10.0,
        context: zmq.Context[Any] | None = None,
        *,
        client_key: str | os.PathLike[str] | CurveKeys | None = None,
        server_key: str | os.PathLike[str] | None = None,
        liveness_timeout: float | None = None,
        nats: str | Sequence[str] | None = None,
        **nats_options: Any,
    ) -> Client:
        """``nats=URL`` (with ``nats_user``, ``nats_password``, ``nats_creds``, ``nats_nkey_seed``,
        ``nats_tls_ca``, ``nats_tls_cert``, ``nats_tls_key``, ``gateway``, ``accounts``) makes the
        same client over NATS: :class:`adapter.nats.client.NatsClient`. Give ``nats`` only then."""
        if nats is not None and cls is Client:
            from adapter.nats.client import NatsClient

            return object.__new__(NatsClient)  # its __init__ runs next, with the same arguments
        return object.__new__(cls)

    def _init_driver(self) -> None:
        self._lock = threading.Lock()  # held for the whole of a call: send, then wait for the reply
        self._subscriptions: set[Subscription] = set()
        self._subscriptions_lock = threading.Lock()

    # -- commands -------------------------------------------------------------------------

    def _call(self, op: str, args: dict[str, Any], timeout: float | None, plain: bool = False) -> Any:
        seconds = check_timeout(timeout, self.timeout)
        deadline = time.monotonic() + seconds
        if not self._lock.acquire(timeout=seconds):
            raise GatewayTimeout(
                f"{op}: the client was busy with other calls for {seconds:g}s; request not sent", sent=False
            )
        try:
            if self._closed:
                raise GatewayError(CLIENT_CLOSED, f"{op}: the client is closed")
            request_id, payload = self._encode(op, args)
            socket = self._socket
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not socket.poll(to_milliseconds(remaining), zmq.POLLOUT):
                    raise self._not_sent(op, request_id, seconds)
                try:
                    socket.send(payload, zmq.NOBLOCK)
                    break
                except zmq.Again:  # the connection went away between poll and send: wait for the next
                    time.sleep(SEND_RETRY_PAUSE)
            logger.debug("request %s sent: %s", request_id, op)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not socket.poll(to_milliseconds(remaining), zmq.POLLIN):
                    raise self._no_reply(op, request_id, seconds)
                decoded = decode_reply(socket.recv_multipart(zmq.NOBLOCK))
                if decoded is None:
                    continue
                reply_id, body = decoded
                if reply_id != request_id:
                    logger.debug("dropping a reply to request %r while waiting for %s", reply_id, request_id)
                    continue
                logger.debug("request %s answered (ok=%r)", request_id, body.get("ok"))
                return reply_outcome(request_id, body, plain)
        finally:
            self._lock.release()

    # -- events ---------------------------------------------------------------------------

    def events(
        self,
        *prefixes: str | bytes,
        from_seq: int | None = None,
        timeout: float | None = None,
        state_file: StatePath | None = None,
        rcvhwm: int | None = None,
    ) -> EventStream:
        """A recovering iterator of the events whose topic starts with one of ``prefixes`` (none: all).

        Every event is delivered once, in ``seq`` order, also across a SUB reconnect, a gateway
        restart or a burst the SUB could not keep up with: gaps are filled by ``replay`` calls
        through this client (see :mod:`adapter.client.recovery`, also for the ``gateway.epoch``
        and ``gateway.gap`` notices). The SUB socket receives *every* event (seq is global, so
        only that shows a gap) and the prefixes are applied locally: the whole stream's
        bandwidth reaches this process.

        ``from_seq``: start with the journal's events from this seq (e.g. ``snapshot.seq + 1``);
        default: live, from the first event seen, or from the state file's position.
        ``state_file``: a file where the position is kept (an event counts as delivered when the
        next one is asked for or the stream is closed), so a restarted program resumes there.
        It is written whenever the stream waits for input or closes, and at most every 0.1 s
        during a burst: after a crash mid-burst, up to that much is delivered again.
        ``timeout``: iteration ends after that many seconds without an event. ``rcvhwm``: the SUB
        receive high-water mark (default 100,000 events).

        The SUB socket connects now; :meth:`EventStream.wait_subscribed` tells when it is live.
        Use the stream from one thread; ``close()`` (or ``with``, or dropping it) closes it.
        """
        self._check_open()
        return EventStream(self, self._core(prefixes, from_seq, state_file), timeout, rcvhwm)

    def subscribe(
        self,
        callback: EventCallback,
        *prefixes: str | bytes,
        from_seq: int | None = None,
        state_file: StatePath | None = None,
        rcvhwm: int | None = None,
    ) -> Subscription:
        """Deliver the events whose topic starts with one of ``prefixes`` (none: all) to ``callback``.

        Recovering, like :meth:`events` (same ``from_seq``, ``state_file``, ``rcvhwm``; an event
        counts as delivered once the callback has returned). ``callback(event)`` runs on one
        background thread that owns its own SUB socket and makes the replay calls through this
        client (its lock is taken per call, never across a callback). An exception in the
        callback is logged and the next event still arrives. The handle's ``close()`` stops the
        thread; closing the client closes its subscriptions too.
        """
        self._check_open()
        subscription = Subscription(self, self._core(prefixes, from_seq, state_file), callback, rcvhwm)
        with self._subscriptions_lock:
            self._subscriptions.add(subscription)
        return subscription

    def _core(self, prefixes: tuple[str | bytes, ...], from_seq: int | None, state_file: StatePath | None) -> StreamCore:
        return StreamCore(prefixes, from_seq=from_seq, state_file=state_file, silence=self.liveness_timeout)

    @property
    def gateway_alive(self) -> bool | None:
        """Whether this client's subscriptions hear the gateway: False when one has found it
        silent (see ``StreamView.gateway_alive``), None with no subscription watching."""
        with self._subscriptions_lock:
            return combined_liveness(s.gateway_alive for s in self._subscriptions if not s.closed)

    def _forget(self, subscription: Subscription) -> None:
        with self._subscriptions_lock:
            self._subscriptions.discard(subscription)

    def _publish_pong(self, timeout: float) -> None:
        """Ask the gateway for a ``gateway.pong``: the proof a stream waits for."""
        self.ping(publish=True, timeout=timeout)

    # -- life cycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the command socket and the client's subscriptions; idempotent.

        Waits for a call in progress on another thread to end (at most its time-out). Event
        streams belong to the threads iterating them and are not closed here.
        """
        if self._closed:
            return
        self._closed = True
        with self._subscriptions_lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()
        with self._lock:
            self._socket.close(linger=0)
        logger.debug("client for %s closed", self.router)


def _ping_until_pong(
    client: Client, timeout: float | None, wait_until: Callable[[float], bool], stopped: Callable[[], bool]
) -> bool:
    """``wait_subscribed``: ping(publish=True), then ``wait_until(t)`` for the pong (True once it
    came), again on the :class:`PongSchedule`, until ``timeout`` (default: the client's)."""
    schedule = PongSchedule(time.monotonic(), client.timeout if timeout is None else timeout)
    while not stopped():
        remaining = schedule.remaining(time.monotonic())
        if remaining <= 0:
            return False
        try:
            client._publish_pong(remaining)
        except GatewayTimeout:
            return False
        if wait_until(schedule.wait_until(time.monotonic())):
            return True
    return False


def _serve_request(core: StreamCore, client: Client) -> bool:
    """Make the replay call the core asks for, if any; True when one was made."""
    request = core.next_request()
    if request is None:
        return False
    try:
        result = client._call(request.op, request.args(), None)
    except GatewayError as exc:
        core.on_error(request, exc)
    else:
        core.on_result(request, result)
    return True


class EventStream(StreamView, Closing):
    """Events from the gateway as a blocking iterator over its own SUB socket; made by
    :meth:`Client.events`, which describes the recovery.

    Slow joiner: ZeroMQ delivers only what is published after the subscription has reached the
    PUB, and does not say when that is. :meth:`wait_subscribed` finds out: it asks the gateway
    to publish a ``gateway.pong`` and waits until one arrives. Events seen meanwhile are kept
    for the iterator. ``stats`` counts what the recovery did.
    """

    def __init__(self, client: Client, core: StreamCore, timeout: float | None, rcvhwm: int | None) -> None:
        self._idle_timeout = None if timeout is None else check_timeout(timeout, timeout)
        self._client = client
        self._core = core
        self._closed = True
        self._sub = open_subscriber(client._context, client.pub, rcvhwm, client._curve)
        self._closed = False

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._closed:
            raise StopIteration
        event = self.receive(self._idle_timeout)
        if event is None:
            self.close()
            raise StopIteration
        return event

    def receive(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when ``timeout`` seconds (None: no limit) pass without one.

        The event returned before counts as delivered now. A replay call in progress may take
        up to the client's time-out beyond ``timeout``. Malformed messages are logged and skipped.
        """
        if self._closed:
            raise RuntimeError("the event stream is closed")
        self._core.commit()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._core.pop()
            if event is not None:
                return event
            if not _serve_request(self._core, self._client) and not self._feed_one(deadline):
                return None

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until the subscription is live (True) or ``timeout`` passes (False).

        Sends ``ping(publish=True)`` through the client, again with growing pauses, until a
        ``gateway.pong`` arrives on this stream; ``timeout`` defaults to the client's. Call it
        from the thread that iterates the stream. Errors other than time-outs (e.g. a closed
        client) are raised.
        """
        if self._closed or self._core.subscribed:
            return self._core.subscribed

        def read_until(until: float) -> bool:  # this thread reads the stream itself
            while not self._core.subscribed and self._feed_one(until):
                pass
            return self._core.subscribed

        return _ping_until_pong(self._client, timeout, read_until, lambda: self._closed)

    @property
    def closed(self) -> bool:
        return self._closed

    def _feed_one(self, deadline: float | None) -> bool:
        """Wait for one SUB message until ``deadline`` and feed it to the core; False on time-out."""
        core = self._core
        while not readable(self._sub):
            core.idle()  # nothing to read now: save the position before waiting
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            check = core.next_check()
            wait = remaining if check is None else check if remaining is None else min(remaining, check)
            if self._sub.poll(-1 if wait is None else to_milliseconds(wait), zmq.POLLIN):
                break
            if core.check():
                return True  # a liveness notice is ready
        core.feed(self._sub.recv_multipart(zmq.NOBLOCK))
        return True

    def close(self) -> None:
        """Close the SUB socket (the event returned last counts as delivered); idempotent. Call
        from the thread that uses the stream."""
        if self._closed:
            return
        self._closed = True
        self._sub.close(linger=0)
        self._core.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # interpreter shutdown: the context may be gone already
                pass


class Subscription(StreamView, Closing):
    """Events delivered to a callback on one background thread that owns its SUB socket.

    Created by :meth:`Client.subscribe`; the socket is connecting by the time it returns. See
    :class:`EventStream` about joining late; :meth:`wait_subscribed` tells when the
    subscription is live. ``stats`` counts what the recovery did.
    """

    _POLL_MS = 50  # how quickly close() is noticed

    def __init__(self, client: Client, core: StreamCore, callback: EventCallback, rcvhwm: int | None) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self._client = client
        self._core = core
        self._url = client.pub
        self._callback = callback
        self._rcvhwm = rcvhwm
        self._stop = threading.Event()
        self._subscribed = threading.Event()  # set by the thread when the core has seen a pong
        self._started = threading.Event()
        self._forgotten = False
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"qmt-client-events-{self._url}", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def _run(self) -> None:
        try:
            sub = open_subscriber(self._client._context, self._url, self._rcvhwm, self._client._curve)
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        core = self._core
        try:
            while not self._stop.is_set():
                event = core.pop()
                if event is not None:
                    self._deliver(event)
                elif not _serve_request(core, self._client):
                    if not readable(sub):
                        core.idle()  # nothing to read now: save the position before waiting
                        if not sub.poll(self._POLL_MS, zmq.POLLIN):
                            core.check()
                            continue
                    core.feed(sub.recv_multipart(zmq.NOBLOCK))
                    if core.subscribed:
                        self._subscribed.set()
        except Exception:
            logger.exception("event subscription to %s stopped by an error", self._url)
        finally:
            sub.close(linger=0)
            core.close()
            logger.debug("event subscription to %s closed", self._url)

    def _deliver(self, event: Event) -> None:
        try:
            self._callback(event)
        except Exception:
            logger.exception("event callback failed on %s seq %s", event.topic, event.seq)
        self._core.commit()  # delivered: the callback has returned

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until the subscription is live (True) or ``timeout`` passes (False).

        Sends ``ping(publish=True)`` through the client until the delivery thread sees a
        ``gateway.pong``; ``timeout`` defaults to the client's. Not from the callback: the
        thread that would see the pong is the one running it.
        """
        if self._subscribed.is_set():
            return True

        def wait_until(until: float) -> bool:  # the delivery thread reads and sets the flag
            return self._subscribed.wait(max(0.0, until - time.monotonic()))

        return _ping_until_pong(self._client, timeout, wait_until, self._stop.is_set)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        """Whether the delivery thread is running."""
        return self._thread.is_alive()

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop delivery and close the socket; waits up to ``timeout`` for the thread (not when
        called from the callback itself). Idempotent. A callback still running finishes first."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if not self._forgotten:
            self._forgotten = True
            self._client._forget(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("subscribed" if self.subscribed else "subscribing")
        return f"<Subscription {self._url} prefixes={list(self.prefixes)!r} {state}>"
