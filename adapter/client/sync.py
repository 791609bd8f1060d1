"""The blocking client: one DEALER for commands, SUB sockets for events.

Thread-safety. ZeroMQ sockets must not be used by two threads at once, so :class:`Client`
serialises calls with a lock: several threads may share one Client, but their calls run one
after another (a slow ``order_stock`` delays a ``ping`` from another thread; the lock wait
counts against the waiting call's time-out). For calls that overlap, use
:class:`~adapter.client.AsyncClient` or one Client per thread. An :class:`EventStream` belongs to
the thread that iterates it; a :class:`Subscription` owns one background thread and its socket.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any, Callable, Iterator, Optional

import zmq
import zmq.asyncio

from adapter.config import DEFAULT_PUB, DEFAULT_ROUTER
from adapter.protocol import encode_request

from ._ops import OpMethods
from ._wire import (
    FIRST_PONG_WAIT,
    PONG_TOPIC,
    check_timeout,
    decode_reply,
    next_pong_wait,
    open_subscriber,
    reply_outcome,
    to_milliseconds,
    topic_matches,
    topic_prefixes,
)
from .errors import CLIENT_CLOSED, GatewayError, GatewayTimeout
from .records import Event, EventFormatError, Record, parse_event

logger = logging.getLogger(__name__)

EventCallback = Callable[[Event], Any]
_SEND_RETRY_PAUSE = 0.001  # seconds; keeps a connection that flaps at send time from spinning the CPU


def _plain_context(context: zmq.Context[Any] | None) -> zmq.Context[Any]:
    """A blocking context: the given one (shadowed if it is an asyncio one) or the global one."""
    if context is None:
        return zmq.Context.instance()
    if isinstance(context, zmq.asyncio.Context):
        return zmq.Context.shadow(context.underlying)
    return context


class Client(OpMethods[Record, Optional[Record], list[Record], Any]):
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

    def __init__(
        self,
        router: str = DEFAULT_ROUTER,
        pub: str = DEFAULT_PUB,
        timeout: float = 10.0,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.router = router
        self.pub = pub
        self.timeout = check_timeout(timeout, timeout)
        self._context = _plain_context(context)
        self._lock = threading.Lock()  # held for the whole of a call: send, then wait for the reply
        self._ids = itertools.count(1)
        self._closed = False
        self._subscriptions: set[Subscription] = set()
        self._subscriptions_lock = threading.Lock()
        socket = self._context.socket(zmq.DEALER)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.IMMEDIATE, 1)
            socket.connect(router)
        except BaseException:
            socket.close(linger=0)
            raise
        self._socket = socket
        logger.debug("client connecting to %s (events %s)", router, pub)

    # -- commands -------------------------------------------------------------------------

    def _call(self, op: str, args: dict[str, Any], timeout: float | None) -> Any:
        seconds = check_timeout(timeout, self.timeout)
        deadline = time.monotonic() + seconds
        if not self._lock.acquire(timeout=seconds):
            raise GatewayTimeout(
                f"{op}: the client was busy with other calls for {seconds:g}s; request not sent", sent=False
            )
        try:
            if self._closed:
                raise GatewayError(CLIENT_CLOSED, f"{op}: the client is closed")
            request_id = next(self._ids)
            try:
                payload = encode_request(request_id, op, args)
            except (TypeError, ValueError, OverflowError) as exc:
                raise TypeError(f"{op}: arguments cannot be encoded: {exc}") from exc
            socket = self._socket
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not socket.poll(to_milliseconds(remaining), zmq.POLLOUT):
                    raise GatewayTimeout(
                        f"{op}: no connection to the gateway at {self.router} within {seconds:g}s; "
                        f"request {request_id} not sent",
                        request_id,
                        sent=False,
                    )
                try:
                    socket.send(payload, zmq.NOBLOCK)
                    break
                except zmq.Again:  # the connection went away between poll and send: wait for the next
                    time.sleep(_SEND_RETRY_PAUSE)
            logger.debug("request %s sent: %s", request_id, op)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not socket.poll(to_milliseconds(remaining), zmq.POLLIN):
                    logger.warning("request %s (%s): no reply within %gs", request_id, op, seconds)
                    raise GatewayTimeout(
                        f"{op}: no reply to request {request_id} within {seconds:g}s; outcome unknown",
                        request_id,
                        sent=True,
                    )
                decoded = decode_reply(socket.recv_multipart(zmq.NOBLOCK))
                if decoded is None:
                    continue
                reply_id, body = decoded
                if reply_id != request_id:
                    logger.debug("dropping a reply to request %r while waiting for %s", reply_id, request_id)
                    continue
                logger.debug("request %s answered (ok=%r)", request_id, body.get("ok"))
                return reply_outcome(request_id, body)
        finally:
            self._lock.release()

    # -- events ---------------------------------------------------------------------------

    def events(self, *prefixes: str | bytes, timeout: float | None = None) -> EventStream:
        """An iterator of events whose topic starts with one of ``prefixes`` (none: all).

        The SUB socket is created and connects now; events published once the subscription
        has reached the gateway (:meth:`EventStream.wait_subscribed` tells when) are kept
        until read. Iteration ends when ``timeout`` seconds pass without an event, if given.
        Use the stream from one thread; leaving the loop early and dropping it (or ``close()``
        / ``with``) closes its socket.
        """
        self._check_open()
        return EventStream(self._context, self.pub, prefixes, timeout, PongRequest(self))

    def subscribe(self, callback: EventCallback, *prefixes: str | bytes) -> Subscription:
        """Deliver events whose topic starts with one of ``prefixes`` (none: all) to ``callback``.

        ``callback(event)`` runs on one background thread that owns its own SUB socket, in
        publication order. An exception in the callback is logged and the next event still
        arrives. The returned handle's ``close()`` stops the thread; closing the client closes
        its subscriptions too.
        """
        self._check_open()
        subscription = Subscription(self._context, self.pub, prefixes, callback, PongRequest(self), self._forget)
        with self._subscriptions_lock:
            self._subscriptions.add(subscription)
        return subscription

    def _forget(self, subscription: Subscription) -> None:
        with self._subscriptions_lock:
            self._subscriptions.discard(subscription)

    # -- life cycle -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise GatewayError(CLIENT_CLOSED, "the client is closed")

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

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Client router={self.router!r} pub={self.pub!r} {state}>"


class EventStream:
    """Events from the gateway's PUB socket, as a blocking iterator over its own SUB socket.

    Slow joiner: ZeroMQ delivers only what is published after the subscription has reached the
    PUB, and does not say when that is. :meth:`wait_subscribed` finds out: it asks the gateway
    to publish a ``gateway.pong`` and waits until one arrives. Events seen meanwhile are kept
    for the iterator. A consumer that must not miss anything also checks ``seq`` continuity and
    re-queries state after a gap.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        url: str,
        prefixes: tuple[str | bytes, ...],
        timeout: float | None = None,
        ping: PongRequest | None = None,
    ) -> None:
        self._idle_timeout = None if timeout is None else check_timeout(timeout, timeout)
        self.prefixes = tuple(topic_prefixes(prefixes))
        self._ping = ping
        self._buffer: deque[Event] = deque()
        self._subscribed = False
        self._closed = True
        self._sub = open_subscriber(context, url, self.prefixes)
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

        Malformed messages are logged and skipped.
        """
        if self._closed:
            raise RuntimeError("the event stream is closed")
        if self._buffer:
            return self._buffer.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frames = self._receive_frames(deadline)
            if frames is None:
                return None
            event = self._accept(frames)
            if event is not None:
                return event

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until the subscription is live (True) or ``timeout`` passes (False).

        Sends ``ping(publish=True)`` through the client, again with growing pauses, until a
        ``gateway.pong`` arrives on this stream; ``timeout`` defaults to the client's. Call it
        from the thread that iterates the stream. Errors other than time-outs (e.g. a closed
        client) are raised.
        """
        if self._subscribed:
            return True
        if self._closed:
            return False
        if self._ping is None:
            raise RuntimeError("this stream has no client to ping the gateway with")
        deadline = time.monotonic() + (timeout if timeout is not None else self._ping.default_timeout)
        interval = FIRST_PONG_WAIT
        while not self._subscribed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self._ping(remaining)
            except GatewayTimeout:
                return False
            wait_until = min(deadline, time.monotonic() + interval)
            while not self._subscribed:
                frames = self._receive_frames(wait_until)
                if frames is None:
                    break
                event = self._accept(frames)
                if event is not None:
                    self._buffer.append(event)
            interval = next_pong_wait(interval)
        return True

    @property
    def subscribed(self) -> bool:
        """Whether a pong has proved the subscription live."""
        return self._subscribed

    @property
    def closed(self) -> bool:
        return self._closed

    def _receive_frames(self, deadline: float | None) -> list[bytes] | None:
        if deadline is None:
            wait_ms = -1
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            wait_ms = to_milliseconds(remaining)
        if not self._sub.poll(wait_ms, zmq.POLLIN):
            return None
        frames: list[bytes] = self._sub.recv_multipart(zmq.NOBLOCK)
        return frames

    def _accept(self, frames: list[bytes]) -> Event | None:
        """The event to hand out, or None for a pong nobody asked for or a malformed message."""
        if frames and frames[0] == PONG_TOPIC:
            self._subscribed = True
        if not frames or not topic_matches(frames[0], self.prefixes):
            return None
        try:
            return parse_event(frames)
        except EventFormatError as exc:
            logger.warning("skipping a malformed event: %s", exc)
            return None

    def close(self) -> None:
        """Close the SUB socket; idempotent. Call from the thread that uses the stream."""
        if self._closed:
            return
        self._closed = True
        self._sub.close(linger=0)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # interpreter shutdown: the context may be gone already
                pass


class Subscription:
    """Events delivered to a callback on one background thread that owns its SUB socket.

    Created by :meth:`Client.subscribe`; the socket is connecting by the time it returns. See
    :class:`EventStream` about joining late; :meth:`wait_subscribed` tells when the
    subscription is live.
    """

    _POLL_MS = 50  # how quickly close() is noticed

    def __init__(
        self,
        context: zmq.Context[Any],
        url: str,
        prefixes: tuple[str | bytes, ...],
        callback: EventCallback,
        ping: PongRequest | None = None,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self.prefixes = tuple(topic_prefixes(prefixes))
        self._context = context
        self._url = url
        self._callback = callback
        self._ping = ping
        self._on_close = on_close
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"qmt-client-events-{url}", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def _run(self) -> None:
        try:
            sub = open_subscriber(self._context, self._url, self.prefixes)
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            while not self._stop.is_set():
                if sub.poll(self._POLL_MS, zmq.POLLIN):
                    self._deliver_ready(sub)
        except Exception:
            logger.exception("event subscription to %s stopped by an error", self._url)
        finally:
            sub.close(linger=0)
            logger.debug("event subscription to %s closed", self._url)

    def _deliver_ready(self, sub: zmq.Socket[Any]) -> None:
        while not self._stop.is_set():
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frames and frames[0] == PONG_TOPIC:
                self._subscribed.set()
            if not frames or not topic_matches(frames[0], self.prefixes):
                continue
            try:
                event = parse_event(frames)
            except EventFormatError as exc:
                logger.warning("skipping a malformed event: %s", exc)
                continue
            try:
                self._callback(event)
            except Exception:
                logger.exception("event callback failed on %s seq %s", event.topic, event.seq)

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until the subscription is live (True) or ``timeout`` passes (False).

        Sends ``ping(publish=True)`` through the client until the delivery thread sees a
        ``gateway.pong``; ``timeout`` defaults to the client's. Not from the callback: the
        thread that would see the pong is the one running it.
        """
        if self._subscribed.is_set():
            return True
        if self._ping is None:
            raise RuntimeError("this subscription has no client to ping the gateway with")
        deadline = time.monotonic() + (timeout if timeout is not None else self._ping.default_timeout)
        interval = FIRST_PONG_WAIT
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self._ping(remaining)
            except GatewayTimeout:
                return False
            if self._subscribed.wait(max(0.0, min(interval, deadline - time.monotonic()))):
                return True
            interval = next_pong_wait(interval)
        return False

    @property
    def subscribed(self) -> bool:
        """Whether a pong has proved the subscription live."""
        return self._subscribed.is_set()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        """Whether the delivery thread is running."""
        return self._thread.is_alive()

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop delivery and close the socket; waits up to ``timeout`` for the thread (not when
        called from the callback itself). Idempotent."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("subscribed" if self.subscribed else "subscribing")
        return f"<Subscription {self._url} prefixes={list(self.prefixes)!r} {state}>"


class PongRequest:
    """Asks the gateway for a ``gateway.pong`` through a client: ``ping(publish=True)``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def default_timeout(self) -> float:
        return self._client.timeout

    def __call__(self, timeout: float) -> None:
        self._client.ping(publish=True, timeout=timeout)
