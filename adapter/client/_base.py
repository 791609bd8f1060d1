"""What the blocking and the asyncio client share: endpoints, time-outs, request ids, the DEALER.

The two drivers differ only in how they wait (a lock and ``poll`` on a thread, futures on an
event loop); everything else about a call, including the wording of its time-outs, is here once.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any, TypeVar

import zmq

from adapter.protocol import DEFAULT_PUB, DEFAULT_ROUTER
from adapter.keys import CurveKeys, apply_client_curve, client_curve_keys
from adapter.protocol import encode_request

from ._wire import check_timeout
from .errors import CLIENT_CLOSED, GatewayError, GatewayTimeout

logger = logging.getLogger(__name__)

SelfT = TypeVar("SelfT")

CLIENT_KEY_ENV = "QMT_ADAPTER_CLIENT_KEY"
SERVER_KEY_ENV = "QMT_ADAPTER_SERVER_KEY"


class Closing:
    """``with`` closes: for the blocking client, streams and subscriptions."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: SelfT) -> SelfT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClosing:
    """``async with`` closes (through ``aclose()``, as ``contextlib.aclosing`` does)."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: SelfT) -> SelfT:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class ClientBase:
    """Endpoints, the default time-out, request ids and the command socket of one client.

    ``router`` and ``pub`` are the gateway's ROUTER and PUB endpoints; ``timeout`` the default
    per-call time-out in seconds (each method also takes ``timeout=``); ``context`` the ZeroMQ
    context (None: the process-wide instance, which the client never terminates).
    ``client_key`` (this client's ``NAME.key_secret`` file) and ``server_key`` (the gateway's
    ``server.key`` file or its Z85 public key) turn on CURVE; when both are None they come from
    ``QMT_ADAPTER_CLIENT_KEY`` and ``QMT_ADAPTER_SERVER_KEY`` if set. ``liveness_timeout``:
    seconds of silence on an event stream after which it reports the gateway gone (None:
    three heartbeat intervals, at least 3 s; 0: never). A driver
    says how to adapt the context (:meth:`_adopt_context`) and adds its own state
    (:meth:`_init_driver`).
    """

    def __init__(
        self,
        router: str = DEFAULT_ROUTER,
        pub: str = DEFAULT_PUB,
        timeout: float = 10.0,
        context: zmq.Context[Any] | None = None,
        *,
        client_key: str | os.PathLike[str] | CurveKeys | None = None,
        server_key: str | os.PathLike[str] | None = None,
        liveness_timeout: float | None = None,
    ) -> None:
        self.router = router
        # Seconds of silence on an event stream after which the gateway counts as gone (None:
        # three heartbeat intervals, at least 3 s; 0: never); see StreamView.gateway_alive.
        if liveness_timeout is not None and (
                isinstance(liveness_timeout, bool) or not isinstance(liveness_timeout, (int, float))
                or not liveness_timeout >= 0):
            raise ValueError(f"liveness_timeout must be a number of seconds >= 0, got {liveness_timeout!r}")
        self.liveness_timeout = liveness_timeout
        self.pub = pub
        self.timeout = check_timeout(timeout, timeout)
        if isinstance(client_key, CurveKeys):  # another client's keys, e.g. for a quote subscriber's own socket
            self._curve: CurveKeys | None = client_key
        else:
            if client_key is None and server_key is None:
                client_key = os.environ.get(CLIENT_KEY_ENV) or None
                server_key = os.environ.get(SERVER_KEY_ENV) or None
            self._curve = client_curve_keys(client_key, server_key)
        self._context = self._adopt_context(context)
        self._ids = itertools.count(1)
        self._closed = False
        self._init_driver()
        socket = self._context.socket(zmq.DEALER)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            apply_client_curve(socket, self._curve)
            socket.setsockopt(zmq.IMMEDIATE, 1)  # never queue a request for a later connection
            socket.connect(router)
        except BaseException:
            socket.close(linger=0)
            raise
        self._socket = socket
        logger.debug("%s connecting to %s (events %s)", type(self).__name__, router, pub)

    @staticmethod
    def _adopt_context(context: zmq.Context[Any] | None) -> Any:
        """The context this driver's sockets are made from."""
        raise NotImplementedError

    def _init_driver(self) -> None:
        """Set up the driver's own state (locks, pending calls, subscriptions)."""

    def _encode(self, op: str, args: dict[str, Any]) -> tuple[int, bytes]:
        """A fresh request id and the request frame; unencodable arguments raise TypeError."""
        request_id = next(self._ids)
        try:
            return request_id, encode_request(request_id, op, args)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"{op}: arguments cannot be encoded: {exc}") from exc

    def _not_sent(self, op: str, request_id: int, seconds: float) -> GatewayTimeout:
        return GatewayTimeout(
            f"{op}: no connection to the gateway at {self.router} within {seconds:g}s; request {request_id} not sent",
            request_id,
            sent=False,
        )

    def _no_reply(self, op: str, request_id: int, seconds: float) -> GatewayTimeout:
        logger.warning("request %s (%s): no reply within %gs", request_id, op, seconds)
        return GatewayTimeout(
            f"{op}: no reply to request {request_id} within {seconds:g}s; outcome unknown", request_id, sent=True
        )

    @property
    def uses_curve(self) -> bool:
        """Whether this client connects with CURVE keys."""
        return self._curve is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise GatewayError(CLIENT_CLOSED, "the client is closed")

    def _state(self) -> str:
        return "closed" if self._closed else "open"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} router={self.router!r} pub={self.pub!r} {self._state()}>"
