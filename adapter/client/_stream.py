"""The logic of an event stream, shared by the four drivers (blocking and asyncio, iterator and
callback): what to make of each SUB message, which replay calls to make, what to hand out next,
when the subscription is proven live and where a restarted stream resumes.

pyzmq's ``zmq.auth`` is built the same way: one class holds the logic, thin drivers do the I/O
on a thread or an event loop. A driver loops:

1. hand out what :meth:`StreamCore.pop` returns (and :meth:`StreamCore.commit` it once it
   counts as delivered);
2. else make the call :meth:`StreamCore.next_request` asks for, over the client's DEALER, and
   give the outcome back (:meth:`StreamCore.on_result` / :meth:`StreamCore.on_error`);
3. else read one SUB message and :meth:`StreamCore.feed` it.

No sockets here; the state file is the only I/O.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from adapter.protocol import events as event_types

from ._wire import FIRST_PONG_WAIT, next_pong_wait
from .errors import GatewayError
from .recovery import EPOCH_EVENT, HOLD_LIMIT, PAGE_LIMIT, Recovery, Request, StreamStats, _notice
from .records import Event, EventFormatError, Record, parse_event

logger = logging.getLogger(__name__)

StatePath = Union[str, "os.PathLike[str]"]
STATE_SAVE_INTERVAL = 0.1  # seconds between state file writes while events stream (a write costs ~0.1 ms)
# The client's liveness notice: the gateway fell silent ({"alive": false, ...}) or was heard again.
LIVENESS_EVENT = "gateway.liveness"
MISSED_HEARTBEATS = 3  # heartbeat intervals of silence before the gateway counts as gone
MIN_SILENCE = 3.0  # seconds: never fewer, so a busy machine's late heartbeat is not a loss


def text_prefixes(prefixes: Sequence[str | bytes]) -> tuple[str, ...]:
    """Topic prefixes as text (bytes are UTF-8); an empty one means every event."""
    result = []
    for prefix in prefixes:
        if isinstance(prefix, bytes):
            prefix = prefix.decode("utf-8")
        elif not isinstance(prefix, str):
            raise TypeError(f"topic prefix must be str or bytes, got {prefix!r}")
        result.append(prefix)
    return () if "" in result else tuple(result)


@dataclass(frozen=True)
class Position:
    """Where a stream stands: every event up to ``last_seq`` of journal ``epoch`` was delivered."""

    epoch: str | None
    last_seq: int


class StateFile:
    """A small JSON file holding a stream's :class:`Position`, replaced atomically.

    One stream per file. The file is written to a temporary name in the same directory and
    renamed over the old one, so a crash leaves either the old or the new position, never a
    torn one (no fsync: a power cut may lose the last few positions, which are then delivered
    again).
    """

    def __init__(self, path: StatePath) -> None:
        self.path = Path(path)
        self._temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")

    def load(self) -> Position | None:
        """The saved position, or None when there is no file; a file of another kind raises ValueError."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            epoch, last_seq = data["epoch"], data["last_seq"]
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"{self.path}: not a stream state file") from None
        if (epoch is not None and not isinstance(epoch, str)) or not isinstance(last_seq, int) or last_seq < 0:
            raise ValueError(f"{self.path}: not a stream state file")
        return Position(epoch, last_seq)

    def save(self, position: Position) -> None:
        self._temporary.write_text(
            json.dumps({"epoch": position.epoch, "last_seq": position.last_seq}), encoding="utf-8"
        )
        os.replace(self._temporary, self.path)


class StreamCore:
    """One recovering event stream: events matching ``prefixes`` (none: all), each once, in seq order.

    ``from_seq``: start by replaying from this seq (None: from the state file's position + 1
    when there is one, else live from the first event seen). ``state_file``: where the
    position is kept (see :meth:`commit`); it is written at most every ``save_interval``
    seconds while events stream, and whenever the driver has nothing to read
    (:meth:`idle`) or the stream closes. So a crash in the middle of a burst delivers up to
    that much again after the restart; a clean close loses and repeats nothing. Not
    thread-safe: one driver uses it.
    """

    def __init__(
        self,
        prefixes: Sequence[str | bytes],
        *,
        from_seq: int | None = None,
        state_file: StatePath | None = None,
        hold_limit: int = HOLD_LIMIT,
        page_limit: int = PAGE_LIMIT,
        save_interval: float = STATE_SAVE_INTERVAL,
        silence: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``silence``: seconds without any message (event, heartbeat, pong) after which the
        gateway counts as gone; None: ``MISSED_HEARTBEATS`` heartbeat intervals, at least
        ``MIN_SILENCE``; 0: never. Without an explicit limit, liveness is watched only once a
        heartbeat has been seen (a gateway with heartbeats off cannot be told apart from a quiet
        one); with one, from the first message."""
        self.prefixes = text_prefixes(prefixes)
        self._state = None if state_file is None else StateFile(state_file)
        saved = None if self._state is None else self._state.load()
        epoch = None
        if from_seq is None and saved is not None:
            from_seq, epoch = saved.last_seq + 1, saved.epoch
        self.recovery = Recovery(
            self.prefixes, from_seq=from_seq, epoch=epoch, hold_limit=hold_limit, page_limit=page_limit
        )
        self.subscribed = False  # a gateway.pong has arrived
        self._handed: Event | None = None  # handed out, not yet counted as delivered
        self._position = saved  # of the events counted as delivered
        self._saved = saved  # what the state file holds
        self._save_interval = save_interval
        self._next_save = 0.0  # monotonic time before which a streaming commit does not write
        self._silence = silence
        self._clock = clock
        self._heartbeat_interval = 0.0  # from the gateway's heartbeats; 0: not watching
        self._heard_at = clock()
        self.alive: bool | None = None  # None until a heartbeat arms the watch

    @property
    def stats(self) -> StreamStats:
        return self.recovery.stats_snapshot()

    # -- input ----------------------------------------------------------------------------

    def feed(self, frames: list[bytes]) -> None:
        """Take one SUB message; a malformed one is logged and skipped."""
        try:
            event = parse_event(frames)
        except EventFormatError as exc:
            logger.warning("skipping a malformed event: %s", exc)
            return
        if event.type == event_types.PONG:
            self.subscribed = True
        self._heard(event)
        self.recovery.on_event(event)

    # -- liveness -------------------------------------------------------------------------

    def silence_limit(self) -> float | None:
        """Seconds of silence that mean the gateway is gone; None while not watching."""
        if self._silence == 0 or (self._silence is None and self._heartbeat_interval <= 0):
            return None
        if self._silence is not None:
            return float(self._silence)
        return max(MISSED_HEARTBEATS * self._heartbeat_interval, MIN_SILENCE)

    def next_check(self) -> float | None:
        """Seconds until :meth:`check` may change its verdict (None: nothing to watch)."""
        limit = self.silence_limit()
        if limit is None or not self.alive:
            return None
        return max(0.0, self._heard_at + limit - self._clock())

    def check(self) -> bool:
        """Declare the gateway gone after the silence limit; True when a notice is now ready."""
        limit = self.silence_limit()
        if limit is None or not self.alive:
            return False
        silent_for = self._clock() - self._heard_at
        if silent_for <= limit:
            return False
        self.alive = False
        logger.warning("no message from the gateway for %.1f s: counting it as gone", silent_for)
        self._announce(silent_for)
        return True

    def _announce(self, silent_for: float) -> None:
        """Hand out a liveness notice for the verdict just reached (``self.alive``)."""
        self.recovery.ready.append(_notice(LIVENESS_EVENT, {
            "alive": self.alive, "silent_for": round(silent_for, 3), "last_seq": self.recovery.last_seq,
        }, self.recovery.epoch))

    def _heard(self, event: Event) -> None:
        self._heard_at = self._clock()
        if event.type == event_types.HEARTBEAT:
            interval = event.data.get("interval")
            if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval > 0:
                self._heartbeat_interval = float(interval)
                if self.alive is None:
                    self.alive = True
        if self.alive is None and self._silence:
            self.alive = True  # an explicit limit: watch from the first message on
        if self.alive is False:
            self.alive = True
            logger.warning("the gateway is heard again")
            self._announce(0.0)

    def next_request(self) -> Request | None:
        """The replay (or journal_info) call to make now, or None."""
        return self.recovery.next_request()

    def on_result(self, request: Request, result: Any) -> None:
        if not isinstance(result, (Record, Mapping)):
            self.recovery.on_error(request, "invalid_reply", f"{request.op} result is not a map: {result!r:.100}")
            return
        self.recovery.on_result(request, result)

    def on_error(self, request: Request, error: GatewayError) -> None:
        self.recovery.on_error(request, error.code, error.message)

    # -- output ---------------------------------------------------------------------------

    def pop(self) -> Event | None:
        """The next event to hand out, or None. Call :meth:`commit` once it counts as delivered."""
        if not self.recovery.ready:
            return None
        self._handed = self.recovery.ready.popleft()
        return self._handed

    def commit(self) -> None:
        """The event handed out last counts as delivered: advance the position (and save it,
        when there is a state file and the last write is ``save_interval`` old).

        With nothing left to hand out, the position is the recovery cursor, which also covers
        events passed over because no prefix matched.
        """
        event, self._handed = self._handed, None
        if self._state is None:
            return
        if event is not None and event.seq is not None:
            self._position = Position(event.epoch or self.recovery.epoch, event.seq)
        elif event is not None and event.type == EPOCH_EVENT:
            resume = event.data.get("resume_after")
            self._position = Position(event.data.get("new_epoch"), resume if isinstance(resume, int) else 0)
        last = self.recovery.last_seq
        if not self.recovery.ready and last is not None:
            self._position = Position(self.recovery.epoch, last)
        if time.monotonic() >= self._next_save:
            self._save()

    def idle(self) -> None:
        """The driver is about to wait for input: a good moment to save the position."""
        self._save()

    def close(self, delivered: bool = True) -> None:
        """The stream ends: the event handed out last counts as delivered unless ``delivered`` is
        False (a callback that did not return); save the position."""
        if delivered:
            self.commit()
        else:
            self._handed = None  # the position stays before it
        self._save()

    def _save(self) -> None:
        if self._state is not None and self._position is not None and self._position != self._saved:
            self._state.save(self._position)
            self._saved = self._position
            self._next_save = time.monotonic() + self._save_interval


def combined_liveness(verdicts: Iterable[bool | None]) -> bool | None:
    """A client's verdict from its streams': None when none watches, else whether all hear it."""
    known = [verdict for verdict in verdicts if verdict is not None]
    return None if not known else all(known)


class StreamView:
    """What every stream driver shows of its :class:`StreamCore` (read-only)."""

    _core: StreamCore

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The topic prefixes delivered (empty: every event)."""
        return self._core.prefixes

    @property
    def subscribed(self) -> bool:
        """Whether a pong has proved the subscription live."""
        return self._core.subscribed

    @property
    def stats(self) -> StreamStats:
        """A copy of the recovery counters: live, recovered, duplicates, gaps, expired, ..."""
        return self._core.stats

    @property
    def last_seq(self) -> int | None:
        """The newest seq delivered or passed over (None before the first event or heartbeat)."""
        return self._core.recovery.last_seq

    @property
    def epoch(self) -> str | None:
        """The journal epoch of the stream (None until one is seen)."""
        return self._core.recovery.epoch

    @property
    def gateway_alive(self) -> bool | None:
        """Whether the gateway is heard: False once it has been silent for the stream's
        ``silence`` limit (a ``gateway.liveness`` notice says so), True again when a message
        arrives; None until the first heartbeat (gateways with heartbeats off stay None)."""
        return self._core.alive


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
