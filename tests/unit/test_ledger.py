"""The order ledger on its own: records, tags, states and their counts, reopening."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from adapter.cli import main
from adapter.server.ledger import (
    ACKNOWLEDGED, NOT_PLACED, RECENT, REJECTED, SENDING, STATES, TRANSITIONS, UNKNOWN, IllegalTransition, Ledger,
    OrderRecord, day_start_ns, fingerprint, trading_day,
)
from adapter.server.stores import prune

ARGS = {"account_type": "STOCK", "stock_code": "600000.SH", "order_type": 23, "order_volume": 100,
        "price_type": 11, "price": 10.5, "strategy_name": "s", "order_remark": "my remark"}


def test_records_tags_and_counts_survive_reopening(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    first = ledger.create("A", "c1", ARGS)
    second = ledger.create("A", "c2", {**ARGS, "order_volume": 200})
    assert first.tag.startswith("QZ" + ledger.tag_prefix) and len(first.tag) <= 24 and first.tag != second.tag
    assert ledger.by_tag(first.tag) is first and ledger.by_tag(first.tag + "0") is None
    other_prefix = "000" if ledger.tag_prefix != "000" else "001"
    assert ledger.by_tag("QZ" + other_prefix + first.tag[5:]) is None  # another ledger's tag
    assert (ledger.count(SENDING), len(ledger.in_flight())) == (2, 2)
    ledger.settle(first, ACKNOWLEDGED, order_id=77, response={"order_id": 77})
    ledger.settle(second, UNKNOWN, error_msg="time-out")
    assert (ledger.count(SENDING), ledger.count(ACKNOWLEDGED), ledger.count(UNKNOWN)) == (0, 1, 1)
    assert [r.client_order_id for r in ledger.in_flight()] == ["c2"]
    ledger.settle(first, REJECTED, error_msg="status 57")
    prefix = ledger.tag_prefix
    ledger.close()

    reopened = Ledger(tmp_path)
    assert reopened.tag_prefix == prefix
    again = reopened.get("A", "c1")
    assert again is not None and (again.state, again.order_id, again.response) == (REJECTED, 77, {"order_id": 77})
    assert again.order_remark == "my remark" and again.fingerprint == fingerprint(ARGS)
    assert reopened.by_order_id("A", 77) is again and reopened.by_tag(again.tag) is again
    assert (reopened.count(UNKNOWN), reopened.count(REJECTED)) == (1, 1)
    reopened.close()
    assert Ledger(tmp_path / "new").tag_prefix  # a new ledger draws its own prefix


def test_an_acknowledged_order_drops_an_old_reason(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    record = ledger.create("A", "c1", ARGS)
    ledger.settle(record, UNKNOWN, error_msg="time-out")
    ledger.settle(record, ACKNOWLEDGED, order_id=5)
    assert record.error_msg == "" and ledger.count(UNKNOWN) == 0
    ledger.close()


# -- states and their moves ----------------------------------------------------------------

LEGAL = {
    (SENDING, ACKNOWLEDGED), (SENDING, REJECTED), (SENDING, UNKNOWN), (SENDING, NOT_PLACED),
    (UNKNOWN, ACKNOWLEDGED), (UNKNOWN, REJECTED), (UNKNOWN, NOT_PLACED),
    (ACKNOWLEDGED, REJECTED),
}
PAIRS = [(a, b) for a in sorted(STATES) for b in sorted(STATES)]


def test_the_table_is_the_gateways_moves() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
    assert STATES == {SENDING, ACKNOWLEDGED, REJECTED, UNKNOWN, NOT_PLACED}


def _in_state(ledger: Ledger, cid: str, state: str) -> OrderRecord:
    """A record walked to ``state`` by legal moves."""
    record = ledger.create("A", cid, ARGS)
    path = {SENDING: [], UNKNOWN: [UNKNOWN], ACKNOWLEDGED: [ACKNOWLEDGED], REJECTED: [REJECTED],
            NOT_PLACED: [UNKNOWN, NOT_PLACED]}[state]
    for step in path:
        ledger.settle(record, step, order_id=9 if step == ACKNOWLEDGED else None)
    return record


@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_every_pair_of_states(tmp_path: Path, old: str, new: str) -> None:
    ledger = Ledger(tmp_path)
    record = _in_state(ledger, "c1", old)
    if (old, new) in LEGAL:
        ledger.settle(record, new, error_msg="why")
        assert record.state == new and ledger.count(new) == 1 and (old == new or ledger.count(old) == 0)
        ledger.close()
        assert Ledger(tmp_path).get("A", "c1").state == new  # type: ignore[union-attr]
        return
    with pytest.raises(IllegalTransition) as caught:
        ledger.settle(record, new, error_msg="why")
    assert "'c1'" in str(caught.value) and f"from {old!r} to {new!r}" in str(caught.value)
    assert (caught.value.client_order_id, caught.value.from_state, caught.value.to_state) == ("c1", old, new)
    assert record.state == old and ledger.count(old) == 1  # nothing changed, on disk neither
    ledger.close()
    assert Ledger(tmp_path).get("A", "c1").state == old  # type: ignore[union-attr]


# -- bounded memory ------------------------------------------------------------------------


def test_settled_records_leave_memory_and_come_back_from_disk(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    flying = ledger.create("A", "fly", ARGS)
    first = ledger.create("A", "c0", ARGS)
    ledger.settle(first, ACKNOWLEDGED, order_id=1000, response={"order_id": 1000})
    for n in range(1, RECENT + 50):
        ledger.settle(ledger.create("A", f"c{n}", ARGS), REJECTED, error_msg="no")
    assert len(ledger._recent) == RECENT and len(ledger._by_key) == RECENT + 1  # the cache is bounded
    assert first.id not in ledger._recent  # the oldest settled one was dropped ...
    for found in (ledger.get("A", "c0"), ledger.by_tag(first.tag), ledger.by_order_id("A", 1000)):
        assert found is not None and (found.client_order_id, found.state, found.order_id, found.response) == (
            "c0", ACKNOWLEDGED, 1000, {"order_id": 1000})  # ... and read back by index
    assert ledger.get("A", "c0") is ledger.by_order_id("A", 1000)  # then cached again
    assert ledger.get("A", "fly") is flying and ledger.by_tag(flying.tag) is flying  # in flight: always the same
    assert ledger.get("A", "nope") is None and ledger.by_order_id("A", 0) is None and ledger.by_order_id("A", 5) is None
    assert (ledger.count(SENDING), ledger.count(REJECTED), ledger.count(ACKNOWLEDGED)) == (1, RECENT + 49, 1)
    ledger.close()


def test_start_up_reads_only_what_is_in_flight(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    for n in range(20):
        ledger.settle(ledger.create("A", f"c{n}", ARGS), ACKNOWLEDGED, order_id=100 + n)
    ledger.settle(ledger.create("A", "u", ARGS), UNKNOWN, error_msg="time-out")
    ledger.create("A", "s", ARGS)
    ledger.close()
    reopened = Ledger(tmp_path)
    assert sorted(r.client_order_id for r in reopened.in_flight()) == ["s", "u"]
    assert not reopened._recent and reopened.high_water == 22
    assert (reopened.count(UNKNOWN), reopened.count(SENDING), reopened.count(ACKNOWLEDGED)) == (1, 1, 20)
    unknown = reopened.get("A", "u")
    assert unknown is not None and unknown is reopened.by_tag(unknown.tag) and unknown in reopened.in_flight()
    assert reopened.create("A", "next", ARGS).id == 23  # numbers go on above the history
    reopened.close()


def test_order_outcomes_lists_the_day_and_what_is_in_flight(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    today = trading_day()
    old = ledger.create("A", "old", ARGS)
    ledger.settle(old, ACKNOWLEDGED, order_id=1)
    old_open = ledger.create("A", "old-open", ARGS)
    ledger.settle(old_open, UNKNOWN, error_msg="time-out")
    yesterday = day_start_ns(today) - 3600 * 10**9
    ledger._db.execute("UPDATE orders SET created_ns = ? WHERE id IN (?, ?)", (yesterday, old.id, old_open.id))
    new = ledger.create("A", "new", ARGS)
    ledger.create("B", "other", ARGS)
    assert [r.client_order_id for r in ledger.records("A")] == ["old-open", "new"]
    assert ledger.records("A")[0] is old_open and ledger.records("A")[1] is new
    assert [r.client_order_id for r in ledger.records()] == ["old-open", "new", "other"]
    assert [r.client_order_id for r in ledger.records("A", day=today - timedelta(days=1))] == ["old", "old-open", "new"]
    found = ledger.get("A", "old")  # a repeat of an old day's id is still recognised
    assert found is not None and found.state == ACKNOWLEDGED
    ledger.close()


def test_prune_deletes_settled_records_of_earlier_days_and_the_next_start_accepts_it(tmp_path: Path) -> None:
    from adapter.server.journal import Journal
    from adapter.protocol.codec import encode_event
    from adapter.server.stores import check_stores

    ledger = Ledger(tmp_path)
    records = {cid: ledger.create("A", cid, ARGS) for cid in ("done", "named", "open", "today")}
    ledger.settle(records["done"], ACKNOWLEDGED, order_id=1)
    ledger.settle(records["named"], REJECTED)
    ledger.settle(records["open"], UNKNOWN)
    two_days_ago = day_start_ns(trading_day()) - 2 * 86_400 * 10**9
    ledger._db.execute("UPDATE orders SET created_ns = ? WHERE client_order_id != 'today'", (two_days_ago,))
    high_water = ledger.high_water
    ledger.close()
    journal = Journal(tmp_path)
    rows = []
    for seq, (cid, ts) in enumerate([("done", two_days_ago), ("named", time.time_ns())], start=1):
        data = {"account_id": "A", "order_id": seq, "order_remark": "", "client_order_id": cid}
        topic, payload = encode_event(seq, ts, "order", "A", data, journal.epoch, False)
        rows.append((seq, ts, topic.decode(), payload))
    journal.append(rows)
    journal.close()

    with pytest.raises(ValueError, match="after today"):
        prune(tmp_path, trading_day() + timedelta(days=1))
    assert main(["ledger", "prune", "--before", "yesterday", "--data-dir", str(tmp_path)]) == 1
    holder = Ledger(tmp_path)  # a running gateway holds the files
    holder._db.execute("BEGIN EXCLUSIVE")
    assert main(["ledger", "prune", "--before", trading_day().isoformat(), "--data-dir", str(tmp_path)]) == 1
    holder._db.execute("ROLLBACK")
    holder.close()
    assert main(["ledger", "prune", "--before", trading_day().isoformat(), "--data-dir", str(tmp_path)]) == 0

    ledger = Ledger(tmp_path)
    assert ledger.get("A", "done") is None  # settled and older than the day: gone
    assert {c for c in ("named", "open", "today") if ledger.get("A", c)} == {"named", "open", "today"}
    assert ledger.high_water == high_water and ledger.create("A", "next", ARGS).id == high_water + 1
    journal = Journal(tmp_path)
    check_stores(journal, ledger, {"A": {"orders": []}})  # the journal's "done" event is accepted history
    journal.close()
    ledger.close()
    assert prune(tmp_path, trading_day()) == (0, 1)  # nothing more; "named" is still named by the journal


def test_the_gateways_ledger_checkpoints_on_its_own_thread_and_its_wal_stays_bounded(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, background_checkpoints=True)
    wal = Path(f"{ledger.path}-wal")
    try:
        sizes = []
        for batch in range(300):  # bounded: 300 batches of 10 orders
            ledger.begin()
            for n in range(10):
                record = ledger.create("A", f"wal-{batch}-{n}", ARGS)
                ledger.settle(record, "acknowledged", order_id=batch * 10 + n + 1)
            ledger.commit()
            sizes.append(wal.stat().st_size)
        checkpoints = ledger._checkpoints
        assert checkpoints is not None
        deadline = time.monotonic() + 10
        while checkpoints.passes == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpoints.passes > 0  # SQLite's own auto-checkpoint is off: this thread did it
        assert max(sizes) < 8 << 20  # the WAL starts over instead of growing with the day
    finally:
        ledger.close()
    reopened = Ledger(tmp_path)
    assert reopened.get("A", "wal-299-9") is not None
    reopened.close()


def test_orders_on_their_way_are_counted_per_account(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    a1, a2 = ledger.create("A", "c1", ARGS), ledger.create("A", "c2", ARGS)
    ledger.create("B", "c3", ARGS)
    assert (ledger.sending("A"), ledger.sending("B"), ledger.sending("C")) == (2, 1, 0)
    ledger.settle(a1, ACKNOWLEDGED, order_id=1)
    ledger.settle(a2, UNKNOWN, error_msg="time-out")
    assert (ledger.sending("A"), ledger.sending("B")) == (0, 1)
    ledger.begin()
    ledger.create("A", "c4", ARGS)
    ledger.rollback([r for r in ledger.in_flight() if r.client_order_id == "c4"])
    assert ledger.sending("A") == 0
    ledger.close()
    reopened = Ledger(tmp_path)
    assert (reopened.sending("A"), reopened.sending("B")) == (0, 1)
    reopened.close()
