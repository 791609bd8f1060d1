"""The logic of an event stream, shared by the four drivers (blocking and asyncio, iterator and
callback): what to make of each SUB message and when the subscription is proven live.

pyzmq's ``zmq.auth`` is built the same way: one class holds the logic, thin drivers do the I/O
on a thread or an event loop. A driver reads frames and passes them to :meth:`StreamCore.feed`,
then hands out what :meth:`StreamCore.pop` returns. No sockets here.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Sequence

from ._wire import FIRST_PONG_WAIT, PONG_TOPIC, next_pong_wait, topic_matches, topic_prefixes
from .records import Event, EventFormatError, parse_event

logger = logging.getLogger(__name__)


class StreamCore:
    """Events matching ``prefixes`` (none: all) in arrival order, and the pong that proves the
    subscription live."""

    def __init__(self, prefixes: Sequence[str | bytes]) -> None:
        self.prefixes = tuple(topic_prefixes(prefixes))
        self.subscribed = False  # a gateway.pong has arrived
        self._ready: deque[Event] = deque()

    def feed(self, frames: list[bytes]) -> None:
        """Take one SUB message: note a pong; keep a matching event; log and skip a malformed one."""
        if frames and frames[0] == PONG_TOPIC:
            self.subscribed = True
        if not frames or not topic_matches(frames[0], self.prefixes):
            return
        try:
            self._ready.append(parse_event(frames))
        except EventFormatError as exc:
            logger.warning("skipping a malformed event: %s", exc)

    def pop(self) -> Event | None:
        """The next event to hand out, or None."""
        return self._ready.popleft() if self._ready else None


class PongSchedule:
    """When ``wait_subscribed`` pings: at once, then again after pauses that grow from 20 ms to
    half a second, until ``timeout`` seconds after ``now`` (clock of the driver's choice)."""

    def __init__(self, now: float, timeout: float) -> None:
        self.deadline = now + timeout
        self._interval = FIRST_PONG_WAIT

    def remaining(self, now: float) -> float:
        """Seconds left; <= 0 means give up."""
        return self.deadline - now

    def wait_until(self, now: float) -> float:
        """Until when to wait for a pong after a ping sent at ``now``; the next pause grows."""
        until = min(self.deadline, now + self._interval)
        self._interval = next_pong_wait(self._interval)
        return until
