"""Gap-free, exactly-once delivery of the gateway's events: the state machine, without I/O.

The gateway numbers every event it journals with ``seq`` (global over all topics, strictly
increasing over its whole life) and tags it with the journal's ``epoch``. A subscriber can lose
events: while its SUB reconnects, while the gateway restarts, or when it reads too slowly and the
PUB drops (high-water mark). :class:`Recovery` turns what arrives (live events, heartbeats and
replay pages) into the exact sequence of events, each once, in ``seq`` order:

- it keeps ``last``, the newest seq delivered or examined, and the stream's ``epoch``;
- a live event with ``seq == last + 1`` is delivered; ``seq <= last`` is a duplicate (dropped,
  counted); a jump (``seq > last + 1``), or a heartbeat whose ``last_seq`` is ahead of
  everything seen, is a gap;
- during a gap the live events that arrive are held (at most ``hold_limit``; on overflow they
  are dropped and left to the replay) and :meth:`next_request` asks for
  ``replay(from_seq=last + 1, to_seq=<first held seq - 1, or the heartbeat's last_seq>)``,
  page by page. Replayed events are delivered in order, then the held ones that are still new.
  The cursor follows the gateway's ``next_seq``, so ranges in which nothing matched the
  prefixes are passed over without events;
- another epoch means the gateway now serves another journal (recreated, or another data
  dir): a ``gateway.epoch`` notice (seq None, data ``old_epoch``, ``new_epoch``) is delivered
  and the cursor restarts at the new stream's beginning, or, for a journal this stream has
  left before, where it left it (each seq of one epoch is delivered at most once, also across
  A -> B -> A). Re-snapshot on it;
- a live event or heartbeat of a journal the stream has left is either a late message of a
  replaced journal or the sign that the gateway is back on that journal. It is dropped and
  :meth:`next_request` asks ``journal_info``: the epoch the gateway answers with is the live
  one, and the stream follows it (a reply, unlike a SUB message, cannot be late). If that
  call fails other than by a time-out, the stream follows the SUB message's epoch. So the
  stream always ends up on the live gateway's journal and never goes silent;
- a range the journal no longer keeps (``seq_expired``), or one that cannot be replayed at all
  (a gateway without ``replay``), becomes a ``gateway.gap`` notice (seq None, data
  ``from_seq``, ``to_seq``, ``first_kept``) and delivery goes on after it. Re-snapshot on it.

Seq is global, so a gap is only visible to a subscriber that receives *every* event: the SUB
socket subscribes to everything and the prefixes are applied here. That costs bandwidth (the
whole event stream reaches every subscriber, plus a small heartbeat a second); replay requests
carry the prefixes, so catching up costs only what matches.

Control events (``seq`` None: ``gateway.heartbeat``, ``gateway.pong``) are not part of the
numbered stream. Heartbeats are consumed here; a pong whose topic matches the prefixes is passed
on as it arrives, as before (it proves a subscription live). The drivers (``sync.py``,
``aio.py``) do the I/O: they feed :meth:`on_event`, make the calls :meth:`next_request` asks
for and hand over what :attr:`ready` holds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Mapping, Sequence, Union

from adapter.protocol import events as event_types
from adapter.protocol.errors import SEQ_EXPIRED, TOO_MANY_REQUESTS

from .errors import CLIENT_TIMEOUT
from .records import Event, EventFormatError, Record, replayed_events

logger = logging.getLogger(__name__)

HOLD_LIMIT = 10_000  # live events held during a gap before they are dropped and left to replay
PAGE_LIMIT = 1000  # events per replay page (the gateway allows up to 10,000)
EPOCH_EVENT = "gateway.epoch"  # the client's notice: a new journal, re-snapshot
GAP_EVENT = "gateway.gap"  # the client's notice: events that cannot be recovered, re-snapshot


@dataclass
class StreamStats:
    """What a recovering stream has done; ``stream.stats`` returns a copy."""

    live: int = 0  # events delivered as they arrived (including those held during a gap)
    recovered: int = 0  # events delivered from replay pages
    duplicates: int = 0  # events dropped because their seq was already delivered or examined
    gaps: int = 0  # gaps detected; each started a recovery
    expired: int = 0  # ranges that could not be recovered: one gateway.gap notice each
    epoch_changes: int = 0  # new journals seen: one gateway.epoch notice each
    overflows: int = 0  # times the hold buffer overflowed and its events were left to replay


@dataclass(frozen=True)
class ReplayRequest:
    """``replay(from_seq, to_seq, prefixes, limit)``: one page of journaled events."""

    op: ClassVar[str] = "replay"
    from_seq: int
    to_seq: int | None  # None: up to the newest
    prefixes: tuple[str, ...]
    limit: int
    generation: int = field(default=0, compare=False)  # which stream (epoch) it was asked for

    def args(self) -> dict[str, Any]:
        """The wire arguments (``to_seq`` left out when None: the newest)."""
        args: dict[str, Any] = {"from_seq": self.from_seq}
        if self.to_seq is not None:
            args["to_seq"] = self.to_seq
        args["prefixes"] = list(self.prefixes)
        args["limit"] = self.limit
        return args


@dataclass(frozen=True)
class EpochCheckRequest:
    """``journal_info()``, asked after a message of a journal the stream has left: which one is live."""

    op: ClassVar[str] = "journal_info"
    suspect: str  # the left epoch a live event or heartbeat carried
    generation: int = field(default=0, compare=False)

    def args(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class JournalInfoRequest:
    """``journal_info()``, asked after ``expired`` failed with seq_expired: where the journal starts."""

    op: ClassVar[str] = "journal_info"
    expired: ReplayRequest

    def args(self) -> dict[str, Any]:
        return {}


Request = Union[ReplayRequest, JournalInfoRequest, EpochCheckRequest]


def _notice(event_type: str, data: dict[str, Any], epoch: str | None) -> Event:
    """A client-made event outside the numbered stream (seq None)."""
    return Event(event_type, None, time.time_ns(), event_type, None, Record(data), epoch)


def _as_seq(value: Any) -> int | None:
    """``value`` when it is a plain int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Recovery:
    """The recovery state of one stream; see the module docstring for the rules.

    ``prefixes``: topic prefixes to deliver (none: every event). ``from_seq``: start by
    replaying from this seq (None: start live, from the first event or heartbeat seen).
    ``epoch``: the epoch ``from_seq`` belongs to, when known (a resumed stream); None adopts the
    first one seen. Not thread-safe: one driver feeds it.
    """

    def __init__(
        self,
        prefixes: Sequence[str] = (),
        *,
        from_seq: int | None = None,
        epoch: str | None = None,
        hold_limit: int = HOLD_LIMIT,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        if from_seq is not None and (_as_seq(from_seq) is None or from_seq < 1):
            raise ValueError(f"from_seq must be an integer >= 1, got {from_seq!r}")
        if hold_limit < 1 or page_limit < 1:
            raise ValueError("hold_limit and page_limit must be >= 1")
        self.prefixes = tuple(prefixes)
        self.epoch = epoch or None
        self.hold_limit = hold_limit
        self.page_limit = page_limit
        self.ready: deque[Event] = deque()  # to deliver, in order; the driver pops from the left
        self.stats = StreamStats()
        self._last: int | None = None if from_seq is None else from_seq - 1
        self._catch_up = from_seq is not None  # replay up to the newest: live continuity not yet seen
        self._gap_end = 0  # a heartbeat or a dropped hold buffer says events up to here exist
        self._held: deque[tuple[int, Event | None]] = deque()  # live events after a gap; None: no match
        self._expired: ReplayRequest | None = None  # a replay refused with seq_expired, to resolve
        self._waiting = False  # a call failed for now: ask again only after new input
        self._left: dict[str, int] = {}  # epochs of journals the stream left -> its last there
        self._suspect: str | None = None  # a left epoch seen on the SUB: ask which journal is live
        self._generation = 0  # counts epoch changes: a reply asked for an older stream is stale

    # -- state ----------------------------------------------------------------------------

    @property
    def last_seq(self) -> int | None:
        """The newest seq delivered or passed over (None: no start point yet)."""
        return self._last

    @property
    def held(self) -> int:
        """How many live events wait behind a gap."""
        return len(self._held)

    @property
    def recovering(self) -> bool:
        """Whether events are known to be missing and a replay is under way or due."""
        return self._last is not None and (
            bool(self._held) or self._catch_up or self._gap_end > self._last or self._expired is not None
        )

    def matches(self, topic: str) -> bool:
        """Whether ``topic`` is one the user asked for."""
        return not self.prefixes or topic.startswith(self.prefixes)

    def stats_snapshot(self) -> StreamStats:
        return replace(self.stats)

    # -- input ----------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Take one event from the SUB socket: a numbered one, a heartbeat or a pong."""
        control = event.seq is None or event.type in event_types.CONTROL_EVENTS
        if not self._same_stream(event.epoch):
            if not control:
                self.stats.duplicates += 1  # of a journal left: late, or back (then replayed)
            return
        self._waiting = False  # new input: a call that failed for now may be tried again
        if control:
            if event.type == event_types.HEARTBEAT:
                self._on_heartbeat(_as_seq(event.data.get("last_seq")))
            elif event.type == event_types.PONG:
                if self._last is None:  # a live start from the subscription's proof, not later
                    self._on_heartbeat(_as_seq(event.data.get("last_seq")))
                if self.matches(event.topic):
                    self.ready.append(event)
            elif event.type == event_types.STORAGE and self.matches(event.topic):
                self.ready.append(event)  # an alarm: handed out as it comes, outside seq order
            return
        assert event.seq is not None
        if self._last is None:  # start live: the first event seen is the first delivered
            self._last = event.seq - 1
        self._on_live(event.seq, event)
        self._settle()

    def _on_live(self, seq: int, event: Event) -> None:
        last = self._cursor()
        if seq <= last or (self._held and seq <= self._held[-1][0]):
            self.stats.duplicates += 1
            return
        wanted = event if self.matches(event.topic) else None
        if seq == last + 1 and not self._held:
            self._advance(seq, wanted, live=True)
            return
        if not self.recovering:
            self.stats.gaps += 1
            logger.info("event stream gap: expected seq %d, got %d; replaying", last + 1, seq)
        self._held.append((seq, wanted))
        if len(self._held) > self.hold_limit:
            # Too far behind to hold everything: drop the held events, the replay brings them.
            self._gap_end = max(self._gap_end, seq)
            self._held.clear()
            self.stats.overflows += 1
            logger.info("event stream: hold buffer overflow at seq %d; left to replay", seq)

    def _on_heartbeat(self, last_seq: int | None) -> None:
        if last_seq is None:
            return
        if self._last is None:  # start live: from what the gateway has at this moment
            self._last = last_seq
            return
        newest_seen = self._held[-1][0] if self._held else self._last
        if last_seq > max(newest_seen, self._gap_end):
            if not self.recovering:
                self.stats.gaps += 1
                logger.info("event stream: gateway is at seq %d, seen %d; replaying", last_seq, newest_seen)
            self._gap_end = last_seq

    # -- replay ---------------------------------------------------------------------------

    def next_request(self) -> Request | None:
        """The call to make now to fill a gap, or None (nothing missing, or waiting for input)."""
        if self._last is None or self._waiting:
            return None
        if self._suspect is not None:
            return EpochCheckRequest(self._suspect, self._generation)
        if self._expired is not None:
            return JournalInfoRequest(self._expired)
        if self._held:
            to_seq: int | None = self._held[0][0] - 1
        elif self._catch_up:
            to_seq = None
        elif self._gap_end > self._last:
            to_seq = self._gap_end
        else:
            return None
        return ReplayRequest(self._last + 1, to_seq, self.prefixes, self.page_limit, self._generation)

    def on_result(self, request: Request, result: Record | Mapping[str, Any]) -> None:
        """Take the result of a call made for :meth:`next_request`."""
        if isinstance(request, EpochCheckRequest):
            self._on_epoch_check(request, result)
        elif isinstance(request, JournalInfoRequest):
            self._on_journal_info(request, result)
        else:
            self._on_page(request, result)

    def on_error(self, request: Request, code: str, message: str = "") -> None:
        """Take the failure of a call made for :meth:`next_request` (a GatewayError's code)."""
        if not self._current(request):
            return
        if code in (CLIENT_TIMEOUT, TOO_MANY_REQUESTS):
            # The gateway may be restarting, or holds this client's replay budget: try again on
            # the next input (a heartbeat at the latest), never give the events up for it.
            self._waiting = True
            return
        if isinstance(request, EpochCheckRequest):
            # No answer to go by: follow the SUB, which carried the left epoch (never go silent).
            logger.warning("event stream: cannot ask which journal is live: %s: %s", code, message)
            self._switch(request.suspect)
            return
        if code == SEQ_EXPIRED and isinstance(request, ReplayRequest):
            self._expired = request  # ask journal_info where the journal starts now
            return
        replay = request.expired if isinstance(request, JournalInfoRequest) else request
        self._expired = None
        logger.warning("event stream: cannot replay from seq %d: %s: %s", replay.from_seq, code, message)
        self._give_up(replay, None)

    def _current(self, request: Request) -> bool:
        """Whether a result still fits the state (same stream, the cursor did not move since)."""
        if isinstance(request, EpochCheckRequest):
            return request.generation == self._generation and self._suspect is not None
        replay = request.expired if isinstance(request, JournalInfoRequest) else request
        return replay.generation == self._generation and self._last is not None and replay.from_seq == self._last + 1

    def _on_page(self, request: ReplayRequest, result: Record | Mapping[str, Any]) -> None:
        if not self._current(request):
            return
        if not self._follow(result.get("epoch")):
            return  # another journal: the cursor was reset
        next_seq, more = _as_seq(result.get("next_seq")), result.get("more")
        try:
            page = replayed_events(result)
        except EventFormatError as exc:
            page, next_seq = [], None
            logger.warning("event stream: unreadable replay page: %s", exc)
        if next_seq is None or not isinstance(more, bool):
            logger.warning("event stream: malformed replay result from seq %d", request.from_seq)
            self._give_up(request, None)
            return
        to_seq = request.to_seq
        for event in page:
            seq = event.seq
            if seq is None or seq <= self._cursor() or (to_seq is not None and seq > to_seq):
                self.stats.duplicates += 1
                continue
            self._advance(seq, event if self.matches(event.topic) else None, live=False)
        # Every seq before next_seq was examined, matching or not.
        examined = next_seq - 1 if to_seq is None else min(next_seq - 1, to_seq)
        if more and examined < request.from_seq:
            logger.warning("event stream: replay from seq %d made no progress", request.from_seq)
            self._give_up(request, None)
            return
        self._last = max(self._cursor(), examined)
        if to_seq is None:
            self._catch_up = more  # without more, caught up with the journal's newest
        elif not more and self._cursor() < to_seq:
            # The journal does not have these yet (numbered, not yet written): they come live,
            # or the next input retries.
            self._waiting = True
        self._settle()

    def _on_journal_info(self, request: JournalInfoRequest, result: Record | Mapping[str, Any]) -> None:
        if not self._current(request):
            return
        if not self._follow(result.get("epoch")):
            return
        self._expired = None
        first, newest = _as_seq(result.get("first_seq")), _as_seq(result.get("last_seq"))
        if first is None or first <= 0:  # an empty journal keeps nothing: everything so far is gone
            first = (newest or 0) + 1
        self._give_up(request.expired, first)

    def _on_epoch_check(self, request: EpochCheckRequest, result: Record | Mapping[str, Any]) -> None:
        if not self._current(request):
            return
        self._suspect = None
        if self._follow(result.get("epoch")):
            logger.info("event stream: a message of journal %s was late; staying on %s", request.suspect, self.epoch)

    def _give_up(self, request: ReplayRequest, first_kept: int | None) -> None:
        """Pass over what cannot be replayed, with a gateway.gap notice.

        ``first_kept``: the journal's oldest seq after seq_expired; None when the gateway could
        not replay at all, then everything up to the request's end is passed over.
        """
        last = self._cursor()
        from_seq = request.from_seq
        if first_kept is not None:
            lost_to = max(first_kept - 1, from_seq)  # always progress, even on odd answers
        elif request.to_seq is not None:
            lost_to = request.to_seq
        else:
            lost_to = max(self._gap_end, last)
            self._catch_up = False
        if request.to_seq is not None:
            lost_to = min(lost_to, request.to_seq)  # never past what is held
        self.stats.expired += 1
        self.ready.append(
            _notice(GAP_EVENT, {"from_seq": from_seq, "to_seq": lost_to, "first_kept": first_kept}, self.epoch)
        )
        logger.warning("event stream: seq %d..%d cannot be recovered (first kept: %s)", from_seq, lost_to, first_kept)
        self._last = max(last, lost_to)
        self._settle()

    # -- delivery -------------------------------------------------------------------------

    def _cursor(self) -> int:
        """``last`` where it must be known already (once started)."""
        assert self._last is not None, "recovery has no start point yet"
        return self._last

    def _advance(self, seq: int, event: Event | None, live: bool) -> None:
        """Move the cursor to ``seq``; deliver ``event`` unless it is None (no prefix matched)."""
        self._last = seq
        if live:
            self._catch_up = False  # live continuity from here on
        if event is not None:
            self.ready.append(event)
            if live:
                self.stats.live += 1
            else:
                self.stats.recovered += 1

    def _settle(self) -> None:
        """Deliver held events that are next in line now."""
        while self._held and self._held[0][0] <= self._cursor() + 1:
            seq, event = self._held.popleft()
            if seq <= self._cursor():
                self.stats.duplicates += 1
            else:
                self._advance(seq, event, live=True)

    # -- epochs ---------------------------------------------------------------------------

    def _same_stream(self, epoch: str | None) -> bool:
        """For a SUB message: whether it belongs to the stream's journal. A new epoch switches
        to it (True); one the stream has left is only suspected to be live again (False: dropped,
        :meth:`next_request` asks ``journal_info`` which journal the gateway serves)."""
        if not epoch or epoch == self.epoch:
            return True
        if self.epoch is None:
            self.epoch = epoch
            return True
        if epoch in self._left:
            self._suspect, self._waiting = epoch, False  # new input: (again) ask which is live
            return False
        self._switch(epoch)
        return True

    def _follow(self, epoch: Any) -> bool:
        """For a reply (replay page, ``journal_info``): its epoch is the live gateway's, even one
        the stream has left; switch to it. Whether the reply belongs to the stream's journal."""
        if not isinstance(epoch, str) or not epoch or epoch == self.epoch:
            return True
        if self.epoch is None:
            self.epoch = epoch
            return True
        self._switch(epoch)
        return False

    def _switch(self, epoch: str) -> None:
        """The gateway serves journal ``epoch`` now: a notice, and the cursor at that journal's
        start, or where this stream left it."""
        old = self.epoch
        if old is not None:
            self._left[old] = self._last or 0
        resume = self._left.pop(epoch, None)
        self.epoch = epoch
        self._generation += 1
        self.stats.epoch_changes += 1
        if resume is None:
            logger.warning("event stream: new journal (epoch %s, was %s); restarting from its first event", epoch, old)
        else:
            logger.warning("event stream: back on journal %s (was %s); resuming after seq %d", epoch, old, resume)
        self.ready.append(_notice(EPOCH_EVENT, {"old_epoch": old, "new_epoch": epoch, "resume_after": resume or 0},
                                  epoch))
        # What is held belongs to the old journal: replayed from there if the stream comes back.
        self._held.clear()
        self._last, self._catch_up, self._gap_end = resume or 0, True, 0
        self._expired, self._waiting, self._suspect = None, False, None
