"""The asyncio client: many calls in flight on one DEALER, events as async iterators.

Every op method returns an awaitable. Replies are read by one reader task and handed to the
waiting call by request id, so a slow ``order_stock`` never holds up a ``ping``. Use an
AsyncClient from the one event loop it was first used in; it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections import deque
from types import TracebackType
from typing import Any, Awaitable, Callable, Optional

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
    topic_matches,
    topic_prefixes,
)
from .errors import CLIENT_CLOSED, GatewayError, GatewayTimeout
from .records import Event, EventFormatError, Record, parse_event

logger = logging.getLogger(__name__)

AsyncEventCallback = Callable[[Event], Any]  # a plain function or a coroutine function
_HASHABLE_IDS = (int, str, bytes)
_SEND_RETRY_PAUSE = 0.001  # seconds; keeps a connection that flaps at send time from spinning the loop


def _async_context(context: zmq.Context[Any] | None) -> zmq.asyncio.Context:
    """An asyncio context: the given one (shadowed if it is a blocking one) or the global one."""
    if context is None:
        return zmq.asyncio.Context.instance()
    if isinstance(context, zmq.asyncio.Context):
        return context
    return zmq.asyncio.Context.shadow(context.underlying)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return bool(cancelling()) if cancelling is not None else False


class AsyncClient(
    OpMethods[Awaitable[Record], Awaitable[Optional[Record]], Awaitable[list[Record]], Awaitable[Any]]
):
    """asyncio client of a qmt-zmq-adapter gateway; the same methods as :class:`Client`, awaited.

    ``await client.ping()``, ``await client.order_stock(...)``; ``async for event in
    client.events("order.")``; ``async with AsyncClient(...) as client``. Results, errors and
    time-outs behave as on the blocking :class:`Client`. ``context`` defaults to the
    process-wide ``zmq.asyncio.Context.instance()``.
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
        self._context = _async_context(context)
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._subscriptions: set[AsyncSubscription] = set()
        socket = self._context.socket(zmq.DEALER)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.IMMEDIATE, 1)  # never queue a request for a later connection
            socket.connect(router)
        except BaseException:
            socket.close(linger=0)
            raise
        self._socket = socket
        logger.debug("async client connecting to %s (events %s)", router, pub)

    # -- commands -------------------------------------------------------------------------

    def _call(self, op: str, args: dict[str, Any], timeout: float | None) -> Awaitable[Any]:
        return self._request(op, args, timeout)

    async def _request(self, op: str, args: dict[str, Any], timeout: float | None) -> Any:
        seconds = check_timeout(timeout, self.timeout)
        self._check_open()
        loop = asyncio.get_running_loop()
        self._start_reader(loop)
        deadline = loop.time() + seconds
        request_id = next(self._ids)
        try:
            payload = encode_request(request_id, op, args)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"{op}: arguments cannot be encoded: {exc}") from exc
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[request_id] = future
        try:
            await self._send(op, request_id, payload, deadline, seconds)
            logger.debug("request %s sent: %s", request_id, op)
            try:
                body = await asyncio.wait_for(future, max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                logger.warning("request %s (%s): no reply within %gs", request_id, op, seconds)
                raise GatewayTimeout(
                    f"{op}: no reply to request {request_id} within {seconds:g}s; outcome unknown",
                    request_id,
                    sent=True,
                ) from None
            logger.debug("request %s answered (ok=%r)", request_id, body.get("ok"))
            return reply_outcome(request_id, body)
        finally:
            self._pending.pop(request_id, None)

    async def _send(self, op: str, request_id: int, payload: bytes, deadline: float, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                await asyncio.wait_for(self._socket.send(payload), remaining)
                return
            except asyncio.TimeoutError:
                raise GatewayTimeout(
                    f"{op}: no connection to the gateway at {self.router} within {seconds:g}s; "
                    f"request {request_id} not sent",
                    request_id,
                    sent=False,
                ) from None
            except zmq.Again:  # the connection went away between readiness and the send: wait again
                await asyncio.sleep(_SEND_RETRY_PAUSE)
            except asyncio.CancelledError:
                # close() cancels the socket's pending sends; report that, not a cancelled caller.
                if self._closed and not _being_cancelled():
                    raise GatewayError(
                        CLIENT_CLOSED, f"{op}: the client was closed; request not sent", request_id
                    ) from None
                raise
            except zmq.ZMQError as exc:
                if self._closed:
                    raise GatewayError(
                        CLIENT_CLOSED, f"{op}: the client was closed; request not sent", request_id
                    ) from None
                raise GatewayError(CLIENT_CLOSED, f"{op}: the command socket failed: {exc}", request_id) from exc

    def _start_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("an AsyncClient can only be used from the event loop it was first used in")
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read_replies(), name=f"qmt-client-replies-{self.router}")

    async def _read_replies(self) -> None:
        """Hand each reply to the call waiting for its id; drop replies nobody waits for."""
        try:
            while True:
                decoded = decode_reply(await self._socket.recv_multipart())
                if decoded is None:
                    continue
                reply_id, body = decoded
                future = self._pending.get(reply_id) if isinstance(reply_id, _HASHABLE_IDS) else None
                if future is None or future.done():
                    logger.debug("dropping a reply to request %r: no call waits for it", reply_id)
                    continue
                future.set_result(body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._closed:
                logger.exception("reply reader for %s stopped", self.router)
            self._fail_pending(f"the reply reader stopped: {exc}")

    def _fail_pending(self, reason: str) -> None:
        for request_id, future in list(self._pending.items()):
            if not future.done():
                future.set_exception(GatewayError(CLIENT_CLOSED, reason, request_id))

    # -- events ---------------------------------------------------------------------------

    def events(self, *prefixes: str | bytes, timeout: float | None = None) -> AsyncEventStream:
        """An async iterator of events whose topic starts with one of ``prefixes`` (none: all).

        The SUB socket connects now; iteration ends when ``timeout`` seconds pass without an
        event, if given. :meth:`AsyncEventStream.wait_subscribed` tells when it is live.
        """
        self._check_open()
        return AsyncEventStream(self._context, self.pub, prefixes, timeout, AsyncPongRequest(self))

    def subscribe(self, callback: AsyncEventCallback, *prefixes: str | bytes) -> AsyncSubscription:
        """Deliver matching events to ``callback`` (a function or coroutine function) from a task.

        Call from a running event loop. Callback exceptions are logged; delivery goes on.
        ``await handle.close()`` stops it; closing the client closes it too.
        """
        self._check_open()
        stream = AsyncEventStream(self._context, self.pub, prefixes, None, AsyncPongRequest(self))
        subscription = AsyncSubscription(stream, callback, self._subscriptions.discard)
        self._subscriptions.add(subscription)
        return subscription

    # -- life cycle -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise GatewayError(CLIENT_CLOSED, "the client is closed")

    async def close(self) -> None:
        """Close the command socket and subscriptions; calls still waiting fail with
        ``client_closed``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.close()
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            if reader.get_loop() is asyncio.get_running_loop():
                await asyncio.gather(reader, return_exceptions=True)
        self._fail_pending("the client was closed while waiting for the reply")
        self._socket.close(linger=0)
        logger.debug("async client for %s closed", self.router)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"open, {len(self._pending)} pending"
        return f"<AsyncClient router={self.router!r} pub={self.pub!r} {state}>"


class AsyncEventStream:
    """Events from the gateway's PUB socket as an async iterator over its own SUB socket.

    Slow joiner: only events published after the subscription has reached the PUB arrive, and
    ZeroMQ does not say when that is. :meth:`wait_subscribed` finds out with a
    ``ping(publish=True)`` round trip; events seen meanwhile are kept for the iterator. Use a
    stream from one task at a time. A consumer that must not miss anything also checks ``seq``
    continuity and re-queries state after a gap.
    """

    def __init__(
        self,
        context: zmq.asyncio.Context,
        url: str,
        prefixes: tuple[str | bytes, ...],
        timeout: float | None = None,
        ping: AsyncPongRequest | None = None,
    ) -> None:
        self._idle_timeout = None if timeout is None else check_timeout(timeout, timeout)
        self.prefixes = tuple(topic_prefixes(prefixes))
        self._ping = ping
        self._buffer: deque[Event] = deque()
        self._subscribed = False
        self._pong = asyncio.Event()  # set with _subscribed; lets another task wait for it
        self._closed = True
        self._sub = open_subscriber(context, url, self.prefixes)
        self._closed = False

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        event = await self.receive(self._idle_timeout)
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    async def receive(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when ``timeout`` seconds (None: no limit) pass without one."""
        if self._closed:
            raise RuntimeError("the event stream is closed")
        if self._buffer:
            return self._buffer.popleft()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            frames = await self._receive_frames(deadline)
            if frames is None:
                return None
            event = self._accept(frames)
            if event is not None:
                return event

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until the subscription is live (True) or ``timeout`` passes (False).

        Sends ``ping(publish=True)`` through the client, again with growing pauses, until a
        ``gateway.pong`` arrives on this stream; ``timeout`` defaults to the client's.
        """
        return await self._wait_subscribed(timeout, read=True)

    async def _wait_subscribed(self, timeout: float | None, read: bool) -> bool:
        # read=False: another task iterates the stream and sets _pong; only ping and wait.
        if self._subscribed:
            return True
        if self._closed:
            return False
        if self._ping is None:
            raise RuntimeError("this stream has no client to ping the gateway with")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout if timeout is not None else self._ping.default_timeout)
        interval = FIRST_PONG_WAIT
        while not self._subscribed and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await self._ping(remaining)
            except GatewayTimeout:
                return False
            wait_until = min(deadline, loop.time() + interval)
            if read:
                while not self._subscribed:
                    frames = await self._receive_frames(wait_until)
                    if frames is None:
                        break
                    event = self._accept(frames)
                    if event is not None:
                        self._buffer.append(event)
            else:
                try:
                    await asyncio.wait_for(self._pong.wait(), max(0.0, wait_until - loop.time()))
                except asyncio.TimeoutError:
                    pass
            interval = next_pong_wait(interval)
        return self._subscribed

    @property
    def subscribed(self) -> bool:
        """Whether a pong has proved the subscription live."""
        return self._subscribed

    @property
    def closed(self) -> bool:
        return self._closed

    async def _receive_frames(self, deadline: float | None) -> list[bytes] | None:
        frames: list[bytes]
        if deadline is None:
            frames = await self._sub.recv_multipart()
            return frames
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            frames = await asyncio.wait_for(self._sub.recv_multipart(), remaining)
        except asyncio.TimeoutError:
            return None
        return frames

    def _accept(self, frames: list[bytes]) -> Event | None:
        """The event to hand out, or None for a pong nobody asked for or a malformed message."""
        if frames and frames[0] == PONG_TOPIC:
            self._subscribed = True
            self._pong.set()
        if not frames or not topic_matches(frames[0], self.prefixes):
            return None
        try:
            return parse_event(frames)
        except EventFormatError as exc:
            logger.warning("skipping a malformed event: %s", exc)
            return None

    def close(self) -> None:
        """Close the SUB socket (a pending receive is cancelled); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._sub.close(linger=0)

    async def aclose(self) -> None:
        """Async spelling of :meth:`close`, for ``contextlib.aclosing``."""
        self.close()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # the loop or context may be gone already
                pass


class AsyncSubscription:
    """Events delivered to a callback by one task; made by :meth:`AsyncClient.subscribe`."""

    def __init__(
        self,
        stream: AsyncEventStream,
        callback: AsyncEventCallback,
        on_close: Callable[[AsyncSubscription], None] | None = None,
    ) -> None:
        if not callable(callback):
            stream.close()
            raise TypeError(f"callback must be callable, got {callback!r}")
        self._stream = stream
        self._callback = callback
        self._on_close = on_close
        self._task = asyncio.get_running_loop().create_task(self._run(), name="qmt-client-events")

    async def _run(self) -> None:
        try:
            async for event in self._stream:
                try:
                    result = self._callback(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("event callback failed on %s seq %s", event.topic, event.seq)
        except asyncio.CancelledError:
            raise
        except Exception:
            if not self._stream.closed:
                logger.exception("event subscription stopped by an error")

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until the subscription is live (True) or ``timeout`` passes (False); see
        :meth:`AsyncEventStream.wait_subscribed`. Not from the callback: the task that would
        see the pong is the one running it."""
        return await self._stream._wait_subscribed(timeout, read=False)

    @property
    def subscribed(self) -> bool:
        return self._stream.subscribed

    @property
    def closed(self) -> bool:
        return self._stream.closed

    async def close(self) -> None:
        """Stop delivery and close the socket; idempotent."""
        task = self._task
        if not task.done():
            task.cancel()
            if task is not asyncio.current_task():
                await asyncio.gather(task, return_exceptions=True)
        self._stream.close()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class AsyncPongRequest:
    """Asks the gateway for a ``gateway.pong`` through a client: ``ping(publish=True)``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @property
    def default_timeout(self) -> float:
        return self._client.timeout

    async def __call__(self, timeout: float) -> None:
        await self._client.ping(publish=True, timeout=timeout)
