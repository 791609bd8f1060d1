"""Socket-level helpers shared by the blocking and the asyncio client.

Time-outs, reply decoding and the SUB socket set-up live here once, so both drivers behave the
same way.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import zmq

from adapter.keys import CurveKeys, apply_client_curve
from adapter.protocol import PROTOCOL_VERSION, ProtocolError, unpack

from .errors import INVALID_REPLY, GatewayError
from .records import to_result

logger = logging.getLogger(__name__)

# The gateway is trusted, and list queries of a busy day can be large: no practical cap.
MAX_REPLY_SIZE = 1 << 30
# Events are queued in the SUB socket until read; ZeroMQ drops beyond this (default 1000).
EVENT_RECEIVE_HWM = 100_000
FIRST_PONG_WAIT = 0.02  # seconds to wait for a pong after the first ping
SEND_RETRY_PAUSE = 0.001  # seconds; keeps a connection that flaps at send time from spinning the CPU


def check_timeout(timeout: float | None, default: float) -> float:
    """The effective time-out of one call, in seconds; every call has a finite one."""
    value = default if timeout is None else timeout
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def to_milliseconds(seconds: float) -> int:
    """A poll time-out in whole milliseconds, never rounding a positive wait down to zero."""
    return max(0, math.ceil(seconds * 1000))


def decode_reply(frames: Sequence[bytes]) -> tuple[Any, dict[str, Any]] | None:
    """The ``(id, body)`` of a reply, or None when it cannot be read or matched to a request.

    The payload is the last frame, so a reply that mirrors a REQ-style empty delimiter is read
    the same way.
    """
    if not frames:
        return None
    payload = frames[-1]
    try:
        body = unpack(payload, max_size=MAX_REPLY_SIZE)
    except ProtocolError as exc:
        logger.warning("dropping an unreadable reply (%d bytes): %s", len(payload), exc.message)
        return None
    if not isinstance(body, dict) or "id" not in body:
        logger.warning("dropping a reply without a request id: %.200r", body)
        return None
    return body["id"], body


def reply_outcome(request_id: Any, body: dict[str, Any], plain: bool = False) -> Any:
    """The converted result of a matched reply (as decoded when ``plain``: market data is
    xtdata's plain dicts and lists, and large), or raise the GatewayError it carries."""
    if body.get("v") != PROTOCOL_VERSION:
        raise GatewayError(
            INVALID_REPLY, f"reply speaks protocol version {body.get('v')!r}, expected {PROTOCOL_VERSION}", request_id
        )
    ok = body.get("ok")
    if ok is True:
        return body.get("result") if plain else to_result(body.get("result"))
    if ok is False:
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            details = {k: v for k, v in error.items() if k not in ("code", "message")}
            raise GatewayError(error["code"], str(error.get("message", "")), request_id, details)
        raise GatewayError(INVALID_REPLY, f"error reply without an error code: {error!r:.200}", request_id)
    raise GatewayError(INVALID_REPLY, f"reply has no boolean 'ok' field: {ok!r:.50}", request_id)


def open_subscriber(context: zmq.Context[Any], url: str, rcvhwm: int | None = None, curve: CurveKeys | None = None) -> Any:
    """A SUB socket connected to ``url`` that receives every event (works for plain and asyncio
    contexts alike).

    Everything, because ``seq`` is global: only a subscriber to all topics can tell a lost event
    from one it filtered out. Streams apply their prefixes themselves. ``rcvhwm``: how many
    messages the socket queues before ZeroMQ drops (default :data:`EVENT_RECEIVE_HWM`); ``curve``:
    the client's keys, if the gateway runs CURVE.
    """
    sub = context.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.LINGER, 0)
        apply_client_curve(sub, curve)
        sub.setsockopt(zmq.RCVHWM, EVENT_RECEIVE_HWM if rcvhwm is None else rcvhwm)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(url)
    except BaseException:
        sub.close(linger=0)
        raise
    logger.debug("subscribed to every event at %s", url)
    return sub


def readable(socket: Any) -> bool:
    """Whether a message can be received from ``socket`` at once (plain or asyncio socket)."""
    return bool(socket.getsockopt(zmq.EVENTS) & zmq.POLLIN)


def next_pong_wait(interval: float) -> float:
    """How long to wait for the next pong: short at first, then backing off to half a second."""
    return min(interval * 2, 0.5)
