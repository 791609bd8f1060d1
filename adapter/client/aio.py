"""The asyncio client: many calls in flight on one DEALER, events as async iterators.

Every op method returns an awaitable. Replies are read by one reader task and handed to the
waiting call by request id, so a slow ``order_stock`` never holds up a ``ping``. Use an
AsyncClient from the one event loop it was first used in; it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from typing import Any, Awaitable, Callable, Optional, Sequence

import zmq
import zmq.asyncio

from adapter.keys import CurveKeys
from adapter.protocol import DEFAULT_PUB, DEFAULT_ROUTER

from ._base import AsyncClosing, ClientBase
from ._market import MarketMethods
from ._ops import OpMethods
from ._stream import PongSchedule, StatePath, StreamCore, StreamView, combined_liveness
from ._wire import SEND_RETRY_PAUSE, check_timeout, decode_reply, open_subscriber, readable, reply_outcome
from .errors import CLIENT_CLOSED, GatewayError, GatewayTimeout
from .records import Event, Record

logger = logging.getLogger(__name__)

AsyncEventCallback = Callable[[Event], Any]  # a plain function or a coroutine function
_HASHABLE_IDS = (int, str, bytes)


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
    ClientBase,
    AsyncClosing,
    OpMethods[Awaitable[Record], Awaitable[Optional[Record]], Awaitable[list[Record]], Awaitable[Any]],
    MarketMethods[Awaitable[Any]],
):
    """asyncio client of a qmt-zmq-adapter gateway; the same methods as :class:`Client`, awaited.

    ``await client.ping()``, ``await client.order_stock(...)``; ``async for event in
    client.events("order.")``; ``async with AsyncClient(...) as client``. Results, errors and
    time-outs behave as on the blocking :class:`Client`. ``context`` defaults to the
    process-wide ``zmq.asyncio.Context.instance()``.
    """

    _context: zmq.asyncio.Context
    _adopt_context = staticmethod(_async_context)
    _ASYNC = True

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
    ) -> AsyncClient:
        """``nats=URL`` (and the NATS options of :class:`~adapter.client.Client`) makes the same
        client over NATS: :class:`adapter.nats.client.AsyncNatsClient`. Give ``nats`` only then."""
        if nats is not None and cls is AsyncClient:
            from adapter.nats.client import AsyncNatsClient

            return object.__new__(AsyncNatsClient)  # its __init__ runs next, with the same arguments
        return object.__new__(cls)

    def _init_driver(self) -> None:
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: set[AsyncSubscription] = set()

    # -- commands -------------------------------------------------------------------------

    def _call(self, op: str, args: dict[str, Any], timeout: float | None, plain: bool = False) -> Awaitable[Any]:
        return self._request(op, args, timeout, plain)

    async def _request(self, op: str, args: dict[str, Any], timeout: float | None, plain: bool = False) -> Any:
        seconds = check_timeout(timeout, self.timeout)
        self._check_open()
        loop = asyncio.get_running_loop()
        self._start_reader(loop)
        deadline = loop.time() + seconds
        request_id, payload = self._encode(op, args)
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[request_id] = future
        try:
            await self._send(op, request_id, payload, deadline, seconds)
            logger.debug("request %s sent: %s", request_id, op)
            try:
                body = await asyncio.wait_for(future, max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                raise self._no_reply(op, request_id, seconds) from None
            logger.debug("request %s answered (ok=%r)", request_id, body.get("ok"))
            return reply_outcome(request_id, body, plain)
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
                raise self._not_sent(op, request_id, seconds) from None
            except zmq.Again:  # the connection went away between readiness and the send: wait again
                await asyncio.sleep(SEND_RETRY_PAUSE)
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

    def events(
        self,
        *prefixes: str | bytes,
        from_seq: int | None = None,
        timeout: float | None = None,
        state_file: StatePath | None = None,
        rcvhwm: int | None = None,
    ) -> AsyncEventStream:
        """A recovering async iterator of the events whose topic starts with one of ``prefixes``
        (none: all): each once, in ``seq`` order, gaps filled by ``replay`` calls through this
        client. Arguments and costs as for :meth:`Client.events <adapter.client.Client.events>`.

        The SUB socket connects now; :meth:`AsyncEventStream.wait_subscribed` tells when it is live.
        """
        self._check_open()
        return AsyncEventStream(self, self._core(prefixes, from_seq, state_file), timeout, rcvhwm)

    def subscribe(
        self,
        callback: AsyncEventCallback,
        *prefixes: str | bytes,
        from_seq: int | None = None,
        state_file: StatePath | None = None,
        rcvhwm: int | None = None,
    ) -> AsyncSubscription:
        """Deliver matching events to ``callback`` (a function or coroutine function) from a task.

        Recovering, like :meth:`events`; an event counts as delivered once the callback has
        returned. Call from a running event loop. Callback exceptions are logged; delivery goes
        on. ``await handle.close()`` stops it; closing the client closes it too.
        """
        self._check_open()
        stream = AsyncEventStream(self, self._core(prefixes, from_seq, state_file), None, rcvhwm)
        subscription = AsyncSubscription(stream, callback, self._subscriptions.discard)
        self._subscriptions.add(subscription)
        return subscription

    def _core(self, prefixes: tuple[str | bytes, ...], from_seq: int | None, state_file: StatePath | None) -> StreamCore:
        return StreamCore(prefixes, from_seq=from_seq, state_file=state_file, silence=self.liveness_timeout)

    @property
    def gateway_alive(self) -> bool | None:
        """Whether this client's subscriptions hear the gateway (see :attr:`Client.gateway_alive`)."""
        return combined_liveness(s.gateway_alive for s in self._subscriptions if not s.closed)

    async def _publish_pong(self, timeout: float) -> None:
        """Ask the gateway for a ``gateway.pong``: the proof a stream waits for."""
        await self.ping(publish=True, timeout=timeout)

    # -- life cycle -----------------------------------------------------------------------

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

    aclose = close

    def _state(self) -> str:
        return "closed" if self._closed else f"open, {len(self._pending)} pending"


async def _serve_request(core: StreamCore, client: AsyncClient) -> bool:
    """Make the replay call the core asks for, if any; True when one was made."""
    request = core.next_request()
    if request is None:
        return False
    try:
        result = await client._call(request.op, request.args(), None)
    except GatewayError as exc:
        core.on_error(request, exc)
    else:
        core.on_result(request, result)
    return True


class AsyncEventStream(StreamView, AsyncClosing):
    """Events from the gateway as an async iterator over its own SUB socket; made by
    :meth:`AsyncClient.events`.

    Slow joiner: only events published after the subscription has reached the PUB arrive, and
    ZeroMQ does not say when that is. :meth:`wait_subscribed` finds out with a
    ``ping(publish=True)`` round trip; events seen meanwhile are kept for the iterator. Use a
    stream from one task at a time. ``stats`` counts what the recovery did.
    """

    def __init__(self, client: AsyncClient, core: StreamCore, timeout: float | None, rcvhwm: int | None) -> None:
        self._idle_timeout = None if timeout is None else check_timeout(timeout, timeout)
        self._client = client
        self._core = core
        self._pong = asyncio.Event()  # set once the core has seen a pong; lets another task wait for it
        self._closed = True
        self._sub = open_subscriber(client._context, client.pub, rcvhwm, client._curve)
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
        """The next event, or None when ``timeout`` seconds (None: no limit) pass without one.

        The event returned before counts as delivered now. A replay call in progress may take
        up to the client's time-out beyond ``timeout``.
        """
        if self._closed:
            raise RuntimeError("the event stream is closed")
        self._core.commit()
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            event = self._core.pop()
            if event is not None:
                return event
            if not await _serve_request(self._core, self._client) and not await self._feed_one(deadline):
                return None

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until the subscription is live (True) or ``timeout`` passes (False).

        Sends ``ping(publish=True)`` through the client, again with growing pauses, until a
        ``gateway.pong`` arrives on this stream; ``timeout`` defaults to the client's.
        """
        return await self._wait_subscribed(timeout, read=True)

    async def _wait_subscribed(self, timeout: float | None, read: bool) -> bool:
        # read=False: another task iterates the stream and sets _pong; only ping and wait.
        if self._closed:
            return self._core.subscribed
        loop = asyncio.get_running_loop()
        schedule = PongSchedule(loop.time(), self._client.timeout if timeout is None else timeout)
        while not self._core.subscribed and not self._closed:
            remaining = schedule.remaining(loop.time())
            if remaining <= 0:
                return False
            try:
                await self._client._publish_pong(remaining)
            except GatewayTimeout:
                return False
            wait_until = schedule.wait_until(loop.time())
            if read:
                while not self._core.subscribed and await self._feed_one(wait_until):
                    pass
            else:
                try:
                    await asyncio.wait_for(self._pong.wait(), max(0.0, wait_until - loop.time()))
                except asyncio.TimeoutError:
                    pass
        return self._core.subscribed

    @property
    def closed(self) -> bool:
        return self._closed

    async def _feed_one(self, deadline: float | None) -> bool:
        """Wait for one SUB message until ``deadline`` and feed it to the core; False on time-out."""
        core = self._core
        if not readable(self._sub):
            core.idle()  # nothing to read now: save the position before waiting
        loop = asyncio.get_running_loop()
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            check = core.next_check()
            wait = remaining if check is None else check if remaining is None else min(remaining, check)
            if wait is None:
                frames = await self._sub.recv_multipart()
                break
            try:
                frames = await asyncio.wait_for(self._sub.recv_multipart(), wait)
                break
            except asyncio.TimeoutError:
                if core.check():
                    return True  # a liveness notice is ready
        core.feed(frames)
        if self._core.subscribed:
            self._pong.set()
        return True

    def close(self, delivered: bool = True) -> None:
        """Close the SUB socket (a pending receive is cancelled); idempotent. The event returned
        last counts as delivered unless ``delivered`` is False."""
        if self._closed:
            return
        self._closed = True
        self._sub.close(linger=0)
        self._core.close(delivered)

    async def aclose(self) -> None:
        """Async spelling of :meth:`close`, for ``contextlib.aclosing``."""
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # the loop or context may be gone already
                pass


class AsyncSubscription(StreamView, AsyncClosing):
    """Events delivered to a callback by one task; made by :meth:`AsyncClient.subscribe`.
    ``stats`` counts what the recovery did."""

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
        self._core = stream._core
        self._callback = callback
        self._on_close = on_close
        self._in_callback = False  # cancelled inside the callback: that event was not delivered
        self._task = asyncio.get_running_loop().create_task(self._run(), name="qmt-client-events")

    async def _run(self) -> None:
        try:
            while True:
                event = await self._stream.receive()  # the event before counts as delivered now
                if event is None:
                    return
                self._in_callback = True
                try:
                    result = self._callback(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("event callback failed on %s seq %s", event.topic, event.seq)
                self._in_callback = False
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
    def closed(self) -> bool:
        return self._stream.closed

    async def close(self) -> None:
        """Stop delivery and close the socket; idempotent."""
        task = self._task
        if not task.done():
            task.cancel()
            if task is not asyncio.current_task():
                await asyncio.gather(task, return_exceptions=True)
        self._stream.close(delivered=not self._in_callback)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    aclose = close
