"""The recovery state machine and the stream core, without sockets: fast and deterministic.

:class:`JournalModel` answers ``replay`` and ``journal_info`` as the gateway does (the fake
gateway in ``test_client.py`` uses it too); :func:`serve` plays the driver's part, making the
calls the core asks for, with a bound on their number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapter.client import Event, GatewayError, Record
from adapter.client._stream import StateFile, StreamCore, text_prefixes
from adapter.client.recovery import (
    EPOCH_EVENT,
    GAP_EVENT,
    PAGE_LIMIT,
    EpochCheckRequest,
    JournalInfoRequest,
    Recovery,
    ReplayRequest,
    Request,
    StreamStats,
)
from adapter.client.records import parse_event
from adapter.protocol import encode_event, unpack

EPOCH = "epoch-1"
ACCOUNT = "1000000365"


class JournalModel:
    """The gateway's journal in memory: ``append`` numbers nothing (the caller gives the seq),
    ``replay`` / ``journal_info`` answer with the gateway's result maps, or raise GatewayError."""

    def __init__(self, epoch: str = EPOCH) -> None:
        self.epoch = epoch
        self.rows: dict[int, list[bytes]] = {}  # seq -> [topic, payload], the PUB frames
        self.first_kept = 1  # replay from an older seq fails with seq_expired

    def append(
        self, seq: int, event_type: str = "order", account_id: str | None = ACCOUNT, data: dict[str, Any] | None = None
    ) -> list[bytes]:
        ts = 1_700_000_000_000_000_000 + seq
        frames = list(encode_event(seq, ts, event_type, account_id, data or {"n": seq}, self.epoch))
        self.rows[seq] = frames
        return frames

    def event(self, seq: int) -> Event:
        return parse_event(self.rows[seq])

    @property
    def newest(self) -> int:
        return max(self.rows, default=0)

    def replay(
        self, from_seq: int, to_seq: int | None = None, prefixes: list[str] | None = None, limit: int = 1000
    ) -> dict[str, Any]:
        if from_seq < self.first_kept:
            raise GatewayError("seq_expired", f"seq {from_seq} is no longer kept (first kept: {self.first_kept})")
        upper = self.newest if to_seq is None else min(to_seq, self.newest)
        wanted = tuple(prefixes or [""])
        in_range = [seq for seq in sorted(self.rows) if from_seq <= seq <= upper]
        rows = [self.rows[seq] for seq in in_range if self.rows[seq][0].decode().startswith(wanted)][:limit]
        next_seq = unpack(rows[-1][1])["seq"] + 1 if len(rows) == limit else max(upper + 1, from_seq)
        return {
            "epoch": self.epoch,
            "first_seq": min(self.rows, default=0),
            "last_seq": self.newest,
            "next_seq": next_seq,
            "more": next_seq <= upper,
            "events": [[topic.decode(), payload] for topic, payload in rows],
        }

    def journal_info(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "first_seq": self.first_kept, "last_seq": self.newest}

    def answer(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "replay":
            return self.replay(**args)
        assert op == "journal_info" and not args, (op, args)
        return self.journal_info()


def serve(recovery: Recovery, journal: JournalModel, max_calls: int = 100) -> list[Request]:
    """Answer every call the recovery asks for, as a driver does; the calls made, in order."""
    calls: list[Request] = []
    for _ in range(max_calls):
        request = recovery.next_request()
        if request is None:
            return calls
        calls.append(request)
        try:
            result = journal.answer(request.op, request.args())
        except GatewayError as exc:
            recovery.on_error(request, exc.code, exc.message)
        else:
            recovery.on_result(request, result)
    raise AssertionError(f"recovery still asking after {max_calls} calls: {calls[-3:]}")


def delivered(recovery: Recovery) -> list[Any]:
    """Pop everything ready: seqs for numbered events, the type for the others."""
    out: list[Any] = []
    while recovery.ready:
        event = recovery.ready.popleft()
        out.append(event.seq if event.seq is not None else event.type)
    return out


def heartbeat(last_seq: int, epoch: str = EPOCH) -> Event:
    data = {"last_seq": last_seq, "connected": True, "interval": 1.0}
    return parse_event(list(encode_event(None, 1, "gateway.heartbeat", None, data, epoch)))


def pong(epoch: str = EPOCH) -> Event:
    return parse_event(list(encode_event(None, 1, "gateway.pong", None, {"id": 1}, epoch)))


def live(recovery: Recovery, journal: JournalModel, *seqs: int, topic_type: str = "order") -> None:
    """Journal and deliver live the given seqs (what the SUB receives)."""
    for seq in seqs:
        journal.append(seq, topic_type)
        recovery.on_event(journal.event(seq))


def stats(**counts: int) -> StreamStats:
    return StreamStats(**counts)


# -- live order, duplicates, start point ----------------------------------------------------


def test_in_order_events_are_delivered_as_they_come() -> None:
    recovery, journal = Recovery(), JournalModel()
    live(recovery, journal, 1, 2, 3)
    assert delivered(recovery) == [1, 2, 3]
    assert recovery.next_request() is None and recovery.last_seq == 3 and recovery.epoch == EPOCH
    assert recovery.stats == stats(live=3)


def test_a_live_start_begins_at_the_first_event_seen_without_history() -> None:
    recovery, journal = Recovery(), JournalModel()
    for seq in range(1, 10):
        journal.append(seq)
    live(recovery, journal, 10, 11)
    assert delivered(recovery) == [10, 11] and recovery.next_request() is None


def test_duplicates_are_dropped_and_counted() -> None:
    recovery, journal = Recovery(), JournalModel()
    live(recovery, journal, 1, 2)
    recovery.on_event(journal.event(2))
    recovery.on_event(journal.event(1))
    live(recovery, journal, 3)
    assert delivered(recovery) == [1, 2, 3]
    assert recovery.stats == stats(live=3, duplicates=2)


def test_a_first_heartbeat_sets_the_start_point() -> None:
    recovery, journal = Recovery(), JournalModel()
    for seq in range(1, 6):
        journal.append(seq)
    recovery.on_event(heartbeat(5))
    assert recovery.last_seq == 5 and recovery.next_request() is None
    recovery.on_event(journal.event(5))  # published before the heartbeat: not ours
    live(recovery, journal, 6)
    assert delivered(recovery) == [6] and recovery.stats == stats(live=1, duplicates=1)


def test_a_first_pong_sets_the_start_point_so_a_late_sub_misses_nothing() -> None:
    """The subscription was proven live at seq 5; the SUB then lost 6 and 7 (e.g. the gateway
    restarted) before the next heartbeat: they are replayed, not skipped."""
    recovery, journal = Recovery(), JournalModel()
    for seq in range(1, 6):
        journal.append(seq)
    recovery.on_event(parse_event(list(encode_event(None, 1, "gateway.pong", None, {"id": 1, "last_seq": 5}, EPOCH))))
    assert recovery.last_seq == 5 and delivered(recovery) == ["gateway.pong"]
    journal.append(6)
    journal.append(7)
    recovery.on_event(heartbeat(7))
    serve(recovery, journal)
    assert delivered(recovery) == [6, 7]
    recovery.on_event(parse_event(list(encode_event(None, 1, "gateway.pong", None, {"id": 2, "last_seq": 9}, EPOCH))))
    assert recovery.last_seq == 7  # a later pong moves nothing: only heartbeats and events do


# -- gaps ---------------------------------------------------------------------------------


def test_a_jump_holds_live_events_and_replays_the_gap() -> None:
    recovery, journal = Recovery(), JournalModel()
    live(recovery, journal, 1)
    journal.append(2)
    journal.append(3)  # published, but this subscriber lost them
    live(recovery, journal, 4, 5)
    assert delivered(recovery) == [1]  # 4 and 5 wait behind the gap
    assert recovery.held == 2 and recovery.recovering
    assert recovery.next_request() == ReplayRequest(2, 3, (), PAGE_LIMIT)
    calls = serve(recovery, journal)
    assert len(calls) == 1
    assert delivered(recovery) == [2, 3, 4, 5]
    assert recovery.stats == stats(live=3, recovered=2, gaps=1)
    assert not recovery.recovering and recovery.held == 0


def test_a_replay_refused_for_budget_is_asked_again_on_the_next_input_not_given_up() -> None:
    recovery, journal = Recovery(), JournalModel()
    live(recovery, journal, 1)
    journal.append(2)
    live(recovery, journal, 3)
    request = recovery.next_request()
    assert isinstance(request, ReplayRequest)
    recovery.on_error(request, "too_many_requests", "replay: replay_client_bytes spent")
    assert recovery.next_request() is None and recovery.stats.gaps == 1 and delivered(recovery) == [1]
    recovery.on_event(heartbeat(3))  # the next input: ask again
    serve(recovery, journal)
    assert delivered(recovery) == [2, 3] and recovery.stats.recovered == 1


def test_replay_args_leave_out_an_open_end() -> None:
    assert ReplayRequest(7, None, ("order.",), 50).args() == {"from_seq": 7, "prefixes": ["order."], "limit": 50}
    assert ReplayRequest(7, 9, (), 50).args() == {"from_seq": 7, "to_seq": 9, "prefixes": [], "limit": 50}


def test_a_heartbeat_ahead_of_what_was_seen_is_a_gap() -> None:
    recovery, journal = Recovery(), JournalModel()
    live(recovery, journal, 1)
    journal.append(2)
    journal.append(3)  # the tail was lost and nothing follows: only the heartbeat tells
    recovery.on_event(heartbeat(1))
    assert recovery.next_request() is None  # idle, nothing missing
    recovery.on_event(heartbeat(3))
    assert recovery.next_request() == ReplayRequest(2, 3, (), PAGE_LIMIT)
    serve(recovery, journal)
    assert delivered(recovery) == [1, 2, 3] and recovery.stats == stats(live=1, recovered=2, gaps=1)


def test_a_heartbeat_ahead_of_the_journal_waits_for_the_live_events() -> None:
    """The gateway numbers events before it writes them: a heartbeat may name a seq that replay
    cannot give yet. The cursor must not skip it; the live event still comes."""
    recovery, journal = Recovery(), JournalModel()
    live(recovery, journal, 1)
    recovery.on_event(heartbeat(2))  # seq 2 numbered, not yet journaled nor published
    assert serve(recovery, journal) == [ReplayRequest(2, 2, (), PAGE_LIMIT)]  # empty page: wait
    assert recovery.last_seq == 1 and recovery.next_request() is None
    live(recovery, journal, 2)
    assert delivered(recovery) == [1, 2] and not recovery.recovering


def test_the_hold_buffer_is_bounded_and_overflow_is_left_to_replay() -> None:
    recovery, journal = Recovery(hold_limit=3), JournalModel()
    live(recovery, journal, 1)
    journal.append(2)
    live(recovery, journal, 3, 4, 5)
    assert recovery.held == 3
    live(recovery, journal, 6)  # one too many: the held ones are dropped
    assert recovery.held == 0 and recovery.stats.overflows == 1
    live(recovery, journal, 7)  # held again, behind the replay
    assert recovery.next_request() == ReplayRequest(2, 6, (), PAGE_LIMIT)
    serve(recovery, journal)
    assert delivered(recovery) == [1, 2, 3, 4, 5, 6, 7]
    assert recovery.stats == stats(live=2, recovered=5, gaps=1, overflows=1)


def test_a_long_gap_is_replayed_page_by_page() -> None:
    recovery, journal = Recovery(page_limit=3), JournalModel()
    live(recovery, journal, 1)
    for seq in range(2, 12):
        journal.append(seq)
    live(recovery, journal, 12)
    calls = serve(recovery, journal)
    assert [call.from_seq for call in calls if isinstance(call, ReplayRequest)] == [2, 5, 8, 11]
    assert delivered(recovery) == list(range(1, 13))


def test_held_events_behind_a_second_gap_are_replayed_in_turn() -> None:
    recovery, journal = Recovery(), JournalModel()
    live(recovery, journal, 1)
    journal.append(2)
    live(recovery, journal, 3)
    journal.append(4)
    live(recovery, journal, 5)
    assert delivered(recovery) == [1]
    calls = serve(recovery, journal)
    assert calls == [ReplayRequest(2, 2, (), PAGE_LIMIT), ReplayRequest(4, 4, (), PAGE_LIMIT)]
    assert delivered(recovery) == [2, 3, 4, 5] and recovery.stats.gaps == 1


# -- prefixes -------------------------------------------------------------------------------


def test_prefixes_filter_locally_and_the_cursor_passes_non_matching_ranges() -> None:
    recovery, journal = Recovery(("trade.",)), JournalModel()
    live(recovery, journal, 1, topic_type="trade")
    live(recovery, journal, 2, 3, topic_type="order")  # not wanted: passed over, not delivered
    assert delivered(recovery) == [1] and recovery.last_seq == 3
    for seq in range(4, 9):
        journal.append(seq, "order")  # lost, and none of them wanted
    live(recovery, journal, 9, topic_type="trade")
    request = recovery.next_request()
    assert request == ReplayRequest(4, 8, ("trade.",), PAGE_LIMIT)  # the gateway filters too
    serve(recovery, journal)
    assert delivered(recovery) == [9] and recovery.last_seq == 9
    assert recovery.stats == stats(live=2, gaps=1)


def test_the_cursor_follows_next_seq_across_pages_without_matches() -> None:
    recovery, journal = Recovery(("trade.",), page_limit=2), JournalModel()
    live(recovery, journal, 1, topic_type="trade")
    for seq in range(2, 8):
        journal.append(seq, "trade" if seq in (3, 6) else "order")
    live(recovery, journal, 8, topic_type="trade")
    serve(recovery, journal)
    assert delivered(recovery) == [1, 3, 6, 8]


def test_control_events_are_not_data_but_a_matching_pong_is_passed_on() -> None:
    recovery = Recovery(("gateway.",))
    recovery.on_event(heartbeat(0))
    recovery.on_event(pong())
    assert delivered(recovery) == ["gateway.pong"]
    orders = Recovery(("order.",))
    orders.on_event(pong())
    orders.on_event(heartbeat(0))
    assert delivered(orders) == [] and orders.stats == stats()


def test_text_prefixes() -> None:
    assert text_prefixes(["order.", b"trade."]) == ("order.", "trade.")
    assert text_prefixes(["order.", ""]) == ()  # "" matches everything
    with pytest.raises(TypeError):
        text_prefixes([1])  # type: ignore[list-item]


# -- starting from a seq ----------------------------------------------------------------------


def test_from_seq_replays_history_then_goes_live() -> None:
    journal = JournalModel()
    for seq in range(1, 8):
        journal.append(seq)
    recovery = Recovery(from_seq=3)
    assert recovery.next_request() == ReplayRequest(3, None, (), PAGE_LIMIT)  # before any input
    serve(recovery, journal)
    assert delivered(recovery) == [3, 4, 5, 6, 7] and not recovery.recovering
    recovery.on_event(journal.event(7))  # still in the SUB queue: a duplicate
    live(recovery, journal, 8)
    assert delivered(recovery) == [8] and recovery.stats == stats(live=1, recovered=5, duplicates=1)


def test_from_seq_with_live_events_arriving_during_the_replay() -> None:
    journal = JournalModel()
    for seq in range(1, 5):
        journal.append(seq)
    recovery = Recovery(from_seq=1)
    live(recovery, journal, 6)  # 5 was lost on the way; 6 is held
    journal.append(5)
    assert recovery.next_request() == ReplayRequest(1, 5, (), PAGE_LIMIT)  # bounded by what is held
    serve(recovery, journal)
    assert delivered(recovery) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_from_seq_must_be_a_positive_integer(bad: Any) -> None:
    with pytest.raises(ValueError):
        Recovery(from_seq=bad)


# -- epochs ---------------------------------------------------------------------------------


def test_a_new_epoch_gives_a_notice_and_restarts_at_the_new_journals_start() -> None:
    recovery, old = Recovery(), JournalModel("epoch-1")
    live(recovery, old, 1, 2)
    new = JournalModel("epoch-2")  # the journal was recreated: seqs start again
    for seq in (1, 2):
        new.append(seq)
    live(recovery, new, 3)
    assert recovery.epoch == "epoch-2"
    assert recovery.next_request() == ReplayRequest(1, 2, (), PAGE_LIMIT)
    serve(recovery, new)
    events = list(recovery.ready)
    assert delivered(recovery) == [1, 2, EPOCH_EVENT, 1, 2, 3]
    notice = events[2]
    assert notice.data.to_dict() == {"old_epoch": "epoch-1", "new_epoch": "epoch-2", "resume_after": 0}
    assert notice.epoch == "epoch-2"
    recovery.on_event(old.event(2))  # late from the old journal: dropped, and checked
    assert delivered(recovery) == [] and recovery.epoch == "epoch-2"
    assert serve(recovery, new) == [EpochCheckRequest("epoch-1")]  # the gateway serves epoch-2: stale
    assert delivered(recovery) == [] and recovery.epoch == "epoch-2" and recovery.next_request() is None
    assert recovery.stats == stats(live=3, recovered=2, duplicates=1, epoch_changes=1)


def test_a_new_epoch_seen_in_a_heartbeat_or_a_replay_page() -> None:
    recovery, old = Recovery(), JournalModel("epoch-1")
    live(recovery, old, 1)
    new = JournalModel("epoch-2")
    new.append(1)
    recovery.on_event(heartbeat(1, "epoch-2"))
    serve(recovery, new)
    assert delivered(recovery) == [1, EPOCH_EVENT, 1]

    resumed = Recovery(from_seq=40, epoch="epoch-1")  # the saved position is of the old journal
    calls = serve(resumed, new)
    assert calls[0] == ReplayRequest(40, None, (), PAGE_LIMIT) and calls[1].from_seq == 1  # type: ignore[union-attr]
    assert delivered(resumed) == [EPOCH_EVENT, 1] and resumed.stats.epoch_changes == 1


def notices(events: list[Event]) -> list[dict[str, Any]]:
    return [event.data.to_dict() for event in events if event.type == EPOCH_EVENT]


def test_back_on_a_journal_it_left_the_stream_resumes_where_it_left_it() -> None:
    """A -> B -> A (the gateway restarted with another data dir, then with the first one):
    the stream follows each journal, and no seq of A is delivered twice."""
    recovery, a = Recovery(), JournalModel("epoch-a")
    live(recovery, a, 1, 2)
    b = JournalModel("epoch-b")
    live(recovery, b, 1, 2)
    assert delivered(recovery) == [1, 2, EPOCH_EVENT, 1, 2] and recovery.epoch == "epoch-b"

    a.append(3)  # the gateway is back on A: its start events, and one more published live
    live(recovery, a, 4)
    assert delivered(recovery) == [] and recovery.epoch == "epoch-b"  # not trusted yet: it may be late
    calls = serve(recovery, a)
    assert calls == [EpochCheckRequest("epoch-a"), ReplayRequest(3, None, (), PAGE_LIMIT)]
    events = list(recovery.ready)
    assert delivered(recovery) == [EPOCH_EVENT, 3, 4] and recovery.epoch == "epoch-a"
    assert notices(events) == [{"old_epoch": "epoch-b", "new_epoch": "epoch-a", "resume_after": 2}]
    live(recovery, a, 5)
    assert delivered(recovery) == [5] and recovery.last_seq == 5 and recovery.next_request() is None

    b.append(3)  # and to B again: B resumes after its seq 2
    live(recovery, b, 4)
    serve(recovery, b)
    assert delivered(recovery) == [EPOCH_EVENT, 3, 4] and recovery.epoch == "epoch-b"
    assert recovery.stats == stats(live=5, recovered=4, duplicates=2, epoch_changes=3)  # 4 came late live: replayed


def test_a_heartbeat_of_a_journal_it_left_brings_an_idle_stream_back() -> None:
    recovery, a = Recovery(), JournalModel("epoch-a")
    live(recovery, a, 1)
    b = JournalModel("epoch-b")
    recovery.on_event(heartbeat(0, "epoch-b"))  # B's gateway is idle: only heartbeats
    assert serve(recovery, b) == [ReplayRequest(1, None, (), PAGE_LIMIT)]
    recovery.on_event(heartbeat(1, "epoch-a"))  # back on A, idle too
    assert serve(recovery, a) == [EpochCheckRequest("epoch-a"), ReplayRequest(2, None, (), PAGE_LIMIT)]
    live(recovery, a, 2)
    assert delivered(recovery) == [1, EPOCH_EVENT, EPOCH_EVENT, 2] and recovery.epoch == "epoch-a"


def test_a_reply_from_a_journal_it_left_is_followed_at_once() -> None:
    """A reply cannot be late: the gateway that made it serves that journal now."""
    recovery, a = Recovery(), JournalModel("epoch-a")
    live(recovery, a, 1, 2)
    b = JournalModel("epoch-b")
    b.append(1)
    live(recovery, b, 2)  # B's seq 1 was lost: a replay is due
    request = recovery.next_request()
    assert request == ReplayRequest(1, 1, (), PAGE_LIMIT)
    a.append(3)
    recovery.on_result(request, a.replay(**request.args()))  # answered by the gateway, back on A
    assert recovery.epoch == "epoch-a"
    assert serve(recovery, a) == [ReplayRequest(3, None, (), PAGE_LIMIT)]
    assert delivered(recovery) == [1, 2, EPOCH_EVENT, EPOCH_EVENT, 3]


def a_to_b_and_a_again() -> tuple[Recovery, JournalModel, Request | None]:
    """A stream on A that switched to B and then saw A again: its check of which journal is live."""
    recovery, a = Recovery(), JournalModel("epoch-a")
    live(recovery, a, 1)
    live(recovery, JournalModel("epoch-b"), 1)
    live(recovery, a, 2)
    check = recovery.next_request()
    assert check == EpochCheckRequest("epoch-a")
    return recovery, a, check


def test_checking_which_journal_is_live_survives_time_outs_and_failures() -> None:
    recovery, a, check = a_to_b_and_a_again()
    recovery.on_error(check, "client_timeout", "no reply")
    assert recovery.next_request() is None  # no busy retry while the gateway is away
    recovery.on_event(heartbeat(2, "epoch-a"))
    check = recovery.next_request()
    assert check == EpochCheckRequest("epoch-a")
    recovery.on_error(check, "unknown_op", "unknown op 'journal_info'")  # no answer: follow the SUB
    serve(recovery, a)
    assert delivered(recovery) == [1, EPOCH_EVENT, 1, EPOCH_EVENT, 2] and recovery.epoch == "epoch-a"


def test_a_check_answered_after_another_journal_change_is_ignored() -> None:
    recovery, a, check = a_to_b_and_a_again()
    c = JournalModel("epoch-c")
    live(recovery, c, 1)  # meanwhile a third journal: the stream is on C now
    recovery.on_result(check, a.journal_info())
    assert recovery.epoch == "epoch-c" and serve(recovery, c) == []
    assert delivered(recovery) == [1, EPOCH_EVENT, 1, EPOCH_EVENT, 1]


def test_the_state_file_follows_the_stream_back_to_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    a, b = JournalModel("epoch-a"), JournalModel("epoch-b")
    core = StreamCore([], state_file=path)
    feed_live(core, a, 1, 2)
    feed_live(core, b, 1)
    feed_live(core, a, 3)
    serve(core.recovery, a)
    for _ in range(5):  # 1, 2, the notice, B's 1, the notice
        assert core.pop() is not None
        core.commit()
    event = core.pop()
    assert event is not None and (event.epoch, event.seq) == ("epoch-a", 3) and core.pop() is None
    core.close()
    assert json.loads(path.read_text()) == {"epoch": "epoch-a", "last_seq": 3}


# -- what cannot be recovered ---------------------------------------------------------------


def test_seq_expired_gives_a_gap_notice_and_goes_on_from_the_first_kept() -> None:
    journal = JournalModel()
    for seq in range(1, 9):
        journal.append(seq)
    journal.first_kept = 5
    recovery = Recovery(from_seq=2)
    calls = serve(recovery, journal)
    assert isinstance(calls[1], JournalInfoRequest) and calls[1].expired == calls[0]
    events = list(recovery.ready)
    assert delivered(recovery) == [GAP_EVENT, 5, 6, 7, 8]
    assert events[0].data.to_dict() == {"from_seq": 2, "to_seq": 4, "first_kept": 5}
    assert recovery.stats == stats(recovered=4, expired=1)


def test_an_expired_range_never_passes_over_held_events() -> None:
    journal = JournalModel()
    live_recovery = Recovery()
    live(live_recovery, journal, 1)
    for seq in range(2, 6):
        journal.append(seq)
    live(live_recovery, journal, 6)
    journal.first_kept = 9  # retention dropped more than the gap
    serve(live_recovery, journal)
    events = list(live_recovery.ready)
    assert delivered(live_recovery) == [1, GAP_EVENT, 6]
    assert events[1].data.to_dict() == {"from_seq": 2, "to_seq": 5, "first_kept": 9}


def test_a_gateway_without_replay_gives_a_gap_notice_per_gap() -> None:
    recovery, journal = Recovery(), JournalModel()
    live(recovery, journal, 1)
    live(recovery, journal, 4)
    request = recovery.next_request()
    assert request is not None
    recovery.on_error(request, "unknown_op", "unknown op 'replay'")
    events = list(recovery.ready)
    assert delivered(recovery) == [1, GAP_EVENT, 4]
    assert events[1].data.to_dict() == {"from_seq": 2, "to_seq": 3, "first_kept": None}
    assert recovery.next_request() is None and recovery.stats.expired == 1


def seq_2_missing() -> tuple[Recovery, JournalModel, Request]:
    """Seq 1 delivered, 2 lost (journaled), 3 held: and the replay the recovery asks for."""
    recovery, journal = Recovery(), JournalModel()
    live(recovery, journal, 1)
    journal.append(2)
    live(recovery, journal, 3)
    request = recovery.next_request()
    assert request == ReplayRequest(2, 2, (), PAGE_LIMIT)
    return recovery, journal, request


def test_a_timeout_retries_after_new_input_only() -> None:
    recovery, journal, request = seq_2_missing()
    recovery.on_error(request, "client_timeout", "no reply")
    assert recovery.next_request() is None  # no busy retry while the gateway is away
    recovery.on_event(heartbeat(3))
    assert recovery.next_request() == request
    serve(recovery, journal)
    assert delivered(recovery) == [1, 2, 3] and recovery.stats.expired == 0


def test_a_malformed_page_is_a_gap_not_a_loop() -> None:
    recovery, _, request = seq_2_missing()
    recovery.on_result(request, {"epoch": EPOCH, "events": [["order.1", "not bytes"]], "next_seq": 3, "more": False})
    assert delivered(recovery) == [1, GAP_EVENT, 3]
    stuck = Recovery(from_seq=1)
    first = stuck.next_request()
    assert first is not None
    stuck.on_result(first, {"epoch": EPOCH, "events": [], "next_seq": 1, "more": True})  # no progress
    assert delivered(stuck) == [GAP_EVENT] and stuck.next_request() is None


def test_a_reply_for_a_moved_cursor_is_ignored() -> None:
    recovery, journal, request = seq_2_missing()
    new = JournalModel("epoch-2")
    new.append(1)
    recovery.on_event(new.event(1))  # meanwhile the journal was recreated: the cursor restarts
    assert delivered(recovery) == [1, EPOCH_EVENT, 1]
    recovery.on_result(request, journal.replay(**request.args()))  # the old journal's answer
    recovery.on_error(request, "seq_expired")
    assert delivered(recovery) == [] and recovery.next_request() is None
    assert recovery.stats == stats(live=2, gaps=1, epoch_changes=1)


# -- the stream core: state file ------------------------------------------------------------


def feed_live(core: StreamCore, journal: JournalModel, *seqs: int, topic_type: str = "order") -> None:
    for seq in seqs:
        core.feed(journal.append(seq, topic_type))


def test_state_file_keeps_the_delivered_position_and_a_new_stream_resumes_there(tmp_path: Path) -> None:
    path = tmp_path / "strategy.state"
    journal = JournalModel()
    core = StreamCore(["order."], state_file=path)
    feed_live(core, journal, 1, 2, 3)
    first = core.pop()
    assert first is not None and first.seq == 1
    assert not path.exists()  # handed out, not yet delivered
    second = core.pop()  # the iterator asks for the next one: the first counts as delivered
    core.commit()
    assert json.loads(path.read_text()) == {"epoch": EPOCH, "last_seq": 2}
    assert second is not None and core.pop() is not None
    core.close()  # the last one handed out counts as delivered on close
    assert StateFile(path).load() is not None and json.loads(path.read_text())["last_seq"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["strategy.state"]  # no temporary left behind

    for seq in (4, 5):
        journal.append(seq)  # published while the strategy was down
    resumed = StreamCore(["order."], state_file=path)
    assert resumed.next_request() == ReplayRequest(4, None, ("order.",), PAGE_LIMIT)
    serve(resumed.recovery, journal)
    assert delivered(resumed.recovery) == [4, 5]


def test_state_file_position_follows_the_cursor_past_unwanted_events(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    journal = JournalModel()
    core = StreamCore(["trade."], state_file=path)
    feed_live(core, journal, 1, topic_type="trade")
    feed_live(core, journal, 2, 3, topic_type="order")
    assert core.pop() is not None and core.pop() is None
    core.commit()
    assert json.loads(path.read_text())["last_seq"] == 3  # nothing pending: the cursor


def test_state_file_writes_are_spaced_while_streaming_and_made_when_idle(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    journal = JournalModel()
    core = StreamCore([], state_file=path, save_interval=3600.0)
    feed_live(core, journal, 1, 2, 3)
    for _ in range(3):
        core.pop()
        core.commit()
    assert json.loads(path.read_text())["last_seq"] == 1  # the first commit wrote; then spaced
    core.idle()  # the driver has nothing to read: write what is pending
    assert json.loads(path.read_text())["last_seq"] == 3


def test_state_file_not_delivered_when_the_callback_did_not_return(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    journal = JournalModel()
    core = StreamCore([], state_file=path)
    feed_live(core, journal, 1, 2)
    core.pop()
    core.commit()
    core.pop()
    core.close(delivered=False)
    assert json.loads(path.read_text())["last_seq"] == 1


def test_explicit_from_seq_wins_over_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"epoch": EPOCH, "last_seq": 10}))
    core = StreamCore([], from_seq=3, state_file=path)
    assert core.next_request() == ReplayRequest(3, None, (), PAGE_LIMIT)


def test_a_state_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    for text in ("not json", "[]", '{"epoch": 1, "last_seq": 3}', '{"epoch": "e", "last_seq": -1}', "{}"):
        path = tmp_path / "bad.json"
        path.write_text(text)
        with pytest.raises(ValueError, match="not a stream state file"):
            StreamCore([], state_file=path)


def test_core_feed_skips_malformed_messages_and_notes_pongs() -> None:
    core = StreamCore([])
    core.feed([b"order.1", b"\xc1"])
    core.feed([b"only one frame"])
    assert core.pop() is None and not core.subscribed
    core.feed(list(encode_event(None, 1, "gateway.pong", None, {"id": 1}, EPOCH)))
    assert core.subscribed
    pong_event = core.pop()
    assert pong_event is not None and pong_event.type == "gateway.pong" and pong_event.data == Record(id=1)


def test_core_turns_a_non_map_result_into_a_gap() -> None:
    core = StreamCore([], from_seq=1)
    request = core.next_request()
    assert request is not None
    core.on_result(request, ["not", "a", "map"])
    gap = core.pop()
    assert gap is not None and gap.type == GAP_EVENT
