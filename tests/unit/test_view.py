"""BooksView: the snapshot contract, finished records kept in the view's file (lookups before
and after the commit, load, rebuild, a failing file), the open-order index, and a start-up
replay that reads only the current trading day."""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.server.journal import Journal
from adapter.server.ledger import day_start_ns, trading_day
from adapter.protocol import events
from adapter.protocol.codec import encode_event
from adapter.protocol.mapping import ORDER_JUNK, ORDER_STATUS_NAMES, STOCK_BUY, STOCK_SELL
from adapter.server import view as view_module
from adapter.server.view import OPEN_STATUSES, WRITE_AT, BooksView, first_seq_since
from adapter.server.viewstore import FILE_NAME, FileStore, MemoryStore

A = "1000000365"
STATUS = {name: code for code, name in ORDER_STATUS_NAMES.items()}


def order(order_id: int, status: int, order_type: int = STOCK_BUY, code: str = "600000.SH", **more: Any) -> dict[str, Any]:
    data: dict[str, Any] = {name: None for name in events.ORDER_FIELDS}
    data.update(account_type=2, account_id=A, stock_code=code, order_id=order_id, order_sysid=f"S{order_id}",
                order_time=1_700_000_000, order_type=order_type, order_volume=1000, price_type=50, price=10.25,
                traded_volume=200, traded_price=10.25, order_status=status, status_msg="", strategy_name="s",
                order_remark="QZABC1", direction=48, offset_flag=48, client_order_id=f"c{order_id}")
    data.update(more)
    return data


def trade(traded_id: str, order_id: int) -> dict[str, Any]:
    data: dict[str, Any] = {name: None for name in events.TRADE_FIELDS}
    data.update(account_type=2, account_id=A, stock_code="600000.SH", order_type=STOCK_BUY, traded_id=traded_id,
                traded_time=1_700_000_001, traded_price=10.25, traded_volume=100, traded_amount=1025.0,
                order_id=order_id, order_sysid=f"S{order_id}", strategy_name="s", order_remark="QZABC1",
                direction=48, offset_flag=48, client_order_id=f"c{order_id}")
    return data


def test_open_statuses_are_the_working_ones_by_name() -> None:
    names = {"unreported", "wait_reporting", "reported", "reported_cancel", "partsucc_cancel", "part_succ"}
    assert OPEN_STATUSES == {STATUS[name] for name in names}


@pytest.fixture(params=["file", "memory"])
def view(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    made = BooksView([A], tmp_path / FILE_NAME if request.param == "file" else None)
    yield made
    made.close()


def test_the_snapshot_holds_every_record_as_applied_in_first_seen_order(view: BooksView) -> None:
    position = {"account_id": A, "stock_code": "600000.SH", "volume": 100}
    view.load(A, {"asset": {"cash": 1.0}, "positions": [position],
                  "orders": [order(1, STATUS["succeeded"]), order(2, STATUS["reported"])], "trades": [trade("t1", 1)]})
    view.apply("order", A, order(3, STATUS["reported"], order_type=STOCK_SELL))
    view.apply("order", A, order(2, STATUS["canceled"]))  # finished: to the store, keeps its place
    view.apply("order", A, order(4, ORDER_JUNK, price=10.5))
    view.apply("trade", A, trade("t2", 3))
    view.apply("trade", A, trade("t2", 3))  # applied twice: harmless
    view.apply("asset", A, {"cash": 2.0})
    view.apply("order", "other", order(9, STATUS["reported"]))  # an account not served
    snapshot = view.snapshot(A)
    assert snapshot["orders"] == [order(1, STATUS["succeeded"]), order(2, STATUS["canceled"]),
                                  order(3, STATUS["reported"], order_type=STOCK_SELL), order(4, ORDER_JUNK, price=10.5)]
    assert snapshot["trades"] == [trade("t1", 1), trade("t2", 3)]
    assert (snapshot["asset"], snapshot["positions"], snapshot["account_id"]) == ({"cash": 2.0}, [position], A)
    books = view.books(A)
    assert books["orders"].get(2) == order(2, STATUS["canceled"]) and books["orders"].get(99) is None
    assert "t1" in books["trades"] and "t9" not in books["trades"] and len(books["orders"]) == 4
    assert list(books["open"]) == [3] and list(books["open_by_code"]) == ["600000.SH"]
    assert books["open"][3] is books["orders"][3]  # a working order is the one dict both hold
    assert books["buying"] == {"600000.SH": 0.0}  # the buy order 2 finished: nothing left to buy
    assert view.snapshot("nobody")["orders"] == []


def test_working_buys_count_what_they_still_have_to_buy() -> None:
    view = BooksView([A])
    view.apply("order", A, order(1, STATUS["part_succ"]))
    assert view.books(A)["buying"] == {"600000.SH": 800 * 10.25}
    view.apply("order", A, order(1, STATUS["succeeded"], traded_volume=1000))
    assert view.books(A)["buying"] == {"600000.SH": 0.0} and not view.books(A)["open"]


def _journal(directory: Path, stamped: list[tuple[int, str, dict[str, Any]]]) -> Journal:
    journal = Journal(directory)
    rows = []
    for seq, (ts, event_type, data) in enumerate(stamped, start=journal.last_seq + 1):
        topic, payload = encode_event(seq, ts, event_type, A, data, journal.epoch)
        rows.append((seq, ts, topic.decode(), payload))
    journal.append(rows)
    return journal


def test_the_start_up_replay_reads_only_the_current_trading_day(tmp_path: Path) -> None:
    today = day_start_ns(trading_day())
    yesterday = today - 86_400 * 10**9
    journal = _journal(tmp_path, [
        (yesterday + 1, "order", order(1, STATUS["succeeded"])),
        (yesterday + 2, "trade", trade("t1", 1)),
        (yesterday + 3, "asset", {"cash": 1.0}),
        (today + 1, "order", order(2, STATUS["reported"])),
        (today + 2, "trade", trade("t2", 2)),
        (time.time_ns(), "asset", {"cash": 2.0}),
    ])
    assert first_seq_since(journal, today) == 4
    assert first_seq_since(journal, yesterday) == 1 and first_seq_since(journal, today + 10**18) == 7
    view = BooksView([A])
    view.rebuild(journal)
    snapshot = view.snapshot(A)
    assert [o["order_id"] for o in snapshot["orders"]] == [2] and [t["traded_id"] for t in snapshot["trades"]] == ["t2"]
    assert snapshot["asset"] == {"cash": 2.0} and list(view.books(A)["open"]) == [2]
    earlier = BooksView([A])
    earlier.rebuild(journal, now_ns=yesterday + 5)  # as on the day before: that day's events, and later ones
    assert [o["order_id"] for o in earlier.snapshot(A)["orders"]] == [1, 2]
    journal.close()
    empty = BooksView([A])
    empty.rebuild(Journal(tmp_path / "empty"))
    assert empty.snapshot(A)["orders"] == []


def test_a_finished_record_is_found_before_and_after_it_is_written_and_not_kept_in_memory(tmp_path: Path) -> None:
    view = BooksView([A], tmp_path / FILE_NAME)
    view.apply("order", A, order(1, STATUS["reported"]))
    view.apply("order", A, order(1, STATUS["succeeded"], traded_volume=1000))
    view.apply("trade", A, trade("t1", 1))
    books = view.books(A)
    assert not books["orders"]._live and books["orders"].get(1)["order_status"] == STATUS["succeeded"]
    assert "t1" in books["trades"] and books["trades"]["t1"] == trade("t1", 1)
    view.commit()  # a batch's end with few records: they wait for more
    assert _stored(tmp_path) == [] and books["orders"][1]["traded_volume"] == 1000
    view.flush()
    assert _stored(tmp_path) == [("order", 1), ("trade", "t1")]
    assert books["orders"][1] == order(1, STATUS["succeeded"], traded_volume=1000) and "t1" in books["trades"]
    assert books["orders"].get(2) is None and "t2" not in books["trades"] and "1" not in books["orders"]
    view.apply("order", A, order(2, STATUS["reported"]))
    view.apply("order", A, order(1, STATUS["part_succ"]))  # working again (out of order): back in memory
    assert books["open"][1] is books["orders"][1]
    assert view.snapshot(A)["orders"] == [order(1, STATUS["part_succ"]), order(2, STATUS["reported"])]  # in its place
    assert list(books["orders"]) == [1, 2] and len(books["orders"]) == 2
    view.apply("order", A, order(1, STATUS["succeeded"]))
    assert view.snapshot(A)["orders"] == [order(1, STATUS["succeeded"]), order(2, STATUS["reported"])]
    for n in range(3, 3 + WRITE_AT):
        view.apply("trade", A, trade(f"t{n}", 2))
    view.commit()  # enough gathered: one write
    assert len(_stored(tmp_path)) == 2 + WRITE_AT and not view._pending
    view.close()


def _stored(directory: Path) -> list[tuple[str, Any]]:
    with sqlite3.connect(directory / FILE_NAME) as db:
        return sorted(db.execute("SELECT kind, key FROM records").fetchall(), key=repr)


class Reference:
    """The books all in memory, as plain dicts in first-seen order: what the view must show."""

    def __init__(self, accounts: list[str]) -> None:
        self.books = {account: self._empty() for account in accounts}

    @staticmethod
    def _empty() -> dict[str, Any]:
        return {"asset": None, "positions": {}, "orders": {}, "trades": {}}

    def apply(self, event_type: str, account_id: str, data: dict[str, Any]) -> None:
        books = self.books.get(account_id)
        if books is None:
            return
        if event_type == "order":
            books["orders"][data["order_id"]] = data
        elif event_type == "trade":
            books["trades"][data["traded_id"]] = data
        elif event_type == "position":
            books["positions"][data["stock_code"]] = data
        else:
            books["asset"] = data

    def load(self, account_id: str, loaded: dict[str, Any]) -> None:
        books = self.books[account_id] = self._empty()
        books["asset"] = loaded["asset"]
        books["positions"] = {p["stock_code"]: p for p in loaded["positions"]}
        books["orders"] = {o["order_id"]: o for o in loaded["orders"]}
        books["trades"] = {t["traded_id"]: t for t in loaded["trades"]}

    def snapshot(self, account_id: str) -> dict[str, Any]:
        books = self.books.get(account_id) or self._empty()
        return {"account_id": account_id, "asset": books["asset"], "positions": list(books["positions"].values()),
                "orders": list(books["orders"].values()), "trades": list(books["trades"].values())}


B = "2000000001"
ORDER_IDS = range(1, 4)
TRADE_IDS = [f"t{n}" for n in range(1, 5)]
# working and finished alike, and "unknown" (neither): orders go back and forth often
statuses = st.sampled_from([STATUS[name] for name in ("reported", "part_succ", "succeeded", "canceled", "junk", "unknown")])
CODES = ["600000.SH", "000001.SZ"]
orders = st.builds(lambda n, status, traded: order(n, status, code=CODES[n % 2], traded_volume=traded),
                   st.sampled_from(ORDER_IDS), statuses, st.integers(0, 3))
trades = st.builds(lambda t, n: trade(t, n), st.sampled_from(TRADE_IDS), st.sampled_from(ORDER_IDS))
positions = st.builds(lambda code, volume: {"account_id": A, "stock_code": code, "volume": volume},
                      st.sampled_from(CODES), st.integers(0, 3))
accounts = st.sampled_from([A, B, "not-served"])
steps = st.lists(st.one_of(
    st.tuples(st.just("order"), accounts, orders),
    st.tuples(st.just("trade"), accounts, trades),
    st.tuples(st.just("position"), accounts, positions),
    st.tuples(st.just("asset"), accounts, st.builds(lambda cash: {"cash": cash}, st.integers(0, 3))),
    st.tuples(st.just("commit"), st.just(A), st.none()),
    st.tuples(st.just("flush"), st.just(A), st.none()),
    st.tuples(st.just("load"), st.sampled_from([A, B]), st.fixed_dictionaries({
        "asset": st.none() | st.builds(lambda cash: {"cash": cash}, st.integers(0, 3)),
        "positions": st.lists(positions, max_size=2), "orders": st.lists(orders, max_size=4),
        "trades": st.lists(trades, max_size=3)})),
), max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_the_view_shows_what_an_all_in_memory_view_shows(sequence: list[tuple[str, str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        view = BooksView([A, B], Path(directory) / FILE_NAME)
        reference = Reference([A, B])
        view_module.WRITE_AT = 3  # the batch-end writes happen within these short sequences
        try:
            for number, (step, account_id, data) in enumerate(sequence):
                if step == "commit":
                    view.commit()
                elif step == "flush":
                    view.flush()
                elif step == "load":
                    view.load(account_id, data)
                    reference.load(account_id, data)
                else:
                    view.apply(step, account_id, data)
                    reference.apply(step, account_id, data)
                if number % 3 == 2 or number == len(sequence) - 1:
                    _same(view, reference)
        finally:
            view_module.WRITE_AT = WRITE_AT
            view.close()


def _same(view: BooksView, reference: Reference) -> None:
    for account_id in (A, B):
        expected = reference.books[account_id]
        books = view.books(account_id)
        for n in [*ORDER_IDS, 99]:
            assert books["orders"].get(n) == expected["orders"].get(n)
            assert (n in books["orders"]) == (n in expected["orders"])
        for t in [*TRADE_IDS, "t99"]:
            assert books["trades"].get(t) == expected["trades"].get(t)
            assert (t in books["trades"]) == (t in expected["trades"])
        working = {n: o for n, o in expected["orders"].items() if o["order_status"] in OPEN_STATUSES}
        assert books["open"] == working and all(books["open"][n] is books["orders"][n] for n in working)
        by_code: dict[str, set[int]] = {}
        for n, o in working.items():
            by_code.setdefault(o["stock_code"], set()).add(n)
        assert {code: set(same) for code, same in books["open_by_code"].items()} == by_code
        assert books["positions"] == expected["positions"] and books["asset"] == expected["asset"]
        assert view.snapshot(account_id) == reference.snapshot(account_id)  # writes what waits
        assert list(books["orders"]) == list(expected["orders"]) and len(books["trades"]) == len(expected["trades"])


def test_load_replaces_the_stored_records_too(tmp_path: Path) -> None:
    view = BooksView([A, B], tmp_path / FILE_NAME)
    view.apply("order", B, order(7, STATUS["succeeded"]))
    for n in range(1, 4):
        view.apply("order", A, order(n, STATUS["succeeded"]))
        view.apply("trade", A, trade(f"t{n}", n))
    view.flush()
    view.apply("order", A, order(4, STATUS["canceled"]))  # waiting when the load comes
    view.load(A, {"asset": {"cash": 5.0}, "positions": [], "orders": [order(2, STATUS["part_cancel"]), order(5, STATUS["reported"])],
                  "trades": [trade("t2", 2)]})
    books = view.books(A)
    assert [books["orders"].get(n) for n in (1, 3, 4)] == [None, None, None] and "t1" not in books["trades"]
    assert view.snapshot(A)["orders"] == [order(2, STATUS["part_cancel"]), order(5, STATUS["reported"])]
    assert view.snapshot(A)["trades"] == [trade("t2", 2)] and list(books["open"]) == [5]
    assert view.snapshot(B)["orders"] == [order(7, STATUS["succeeded"])]  # another account's are kept
    assert _stored(tmp_path) == [("order", 2), ("order", 7), ("trade", "t2")]
    view.close()


def test_a_rebuild_refills_the_file_from_the_journal_even_after_a_kill(tmp_path: Path) -> None:
    now = time.time_ns()
    journal = _journal(tmp_path / "journal", [
        (now, "order", order(1, STATUS["reported"])),
        (now, "order", order(2, STATUS["succeeded"])),
        (now, "trade", trade("t1", 2)),
        (now, "order", order(1, STATUS["canceled"])),
        (now, "order", order(3, STATUS["reported"])),
    ])
    path = tmp_path / FILE_NAME
    killed = BooksView([A], path)
    killed.apply("order", A, order(9, STATUS["succeeded"]))  # newer than the journal: lost with the process
    killed.flush()
    killed._store._db.execute("BEGIN")  # type: ignore[union-attr]  # as killed in the middle of a write
    killed._store._db.execute("INSERT INTO records VALUES (?, 'order', 8, 99, x'00')", (A,))  # type: ignore[union-attr]
    view = BooksView([A], path)  # the file starts empty, whatever the last run left
    view.rebuild(journal)
    assert _stored(tmp_path) == [("order", 1), ("order", 2), ("trade", "t1")]  # all written, the working one not
    snapshot = view.snapshot(A)
    assert snapshot["orders"] == [order(1, STATUS["canceled"]), order(2, STATUS["succeeded"]), order(3, STATUS["reported"])]
    assert snapshot["trades"] == [trade("t1", 2)] and list(view.books(A)["open"]) == [3]
    view.close()
    killed.close()
    journal.close()


def test_a_failing_file_leaves_the_records_in_memory_and_trading_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    view = BooksView([A], tmp_path / FILE_NAME)
    view.apply("order", A, order(1, STATUS["succeeded"]))
    view.flush()
    view.apply("trade", A, trade("t1", 1))
    view._store._db.execute("PRAGMA query_only = 1")  # type: ignore[union-attr]  # every write now fails
    with caplog.at_level(logging.ERROR, logger="adapter.server.view"):
        view.flush()
    assert "kept in memory" in caplog.text and isinstance(view._store, MemoryStore)
    view.apply("order", A, order(2, STATUS["canceled"]))
    view.flush()
    books = view.books(A)
    assert books["orders"][1] == order(1, STATUS["succeeded"]) and "t1" in books["trades"] and 2 in books["orders"]
    assert view.snapshot(A)["orders"] == [order(1, STATUS["succeeded"]), order(2, STATUS["canceled"])]
    view.close()


def test_a_file_that_cannot_be_read_back_costs_its_records_not_the_trading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    view = BooksView([A], tmp_path / FILE_NAME)
    view.apply("order", A, order(1, STATUS["succeeded"]))
    view.flush()

    def broken(*args: Any) -> Any:
        raise sqlite3.DatabaseError("disk I/O error")

    for method in ("write", "get", "place", "rows", "count", "everything"):
        monkeypatch.setattr(FileStore, method, broken)
    view.apply("trade", A, trade("t1", 1))
    assert view.books(A)["orders"].get(1) is None  # lost with the file: reconciliation publishes it again
    assert view.snapshot(A)["trades"] == [trade("t1", 1)]
    view.close()


def test_a_file_that_cannot_be_made_leaves_the_view_in_memory(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).mkdir()  # in the way of the file
    view = BooksView([A], tmp_path / FILE_NAME)
    view.apply("order", A, order(1, STATUS["succeeded"]))
    view.flush()
    assert view.books(A)["orders"][1] == order(1, STATUS["succeeded"]) and isinstance(view._store, MemoryStore)


def test_finished_orders_and_trades_no_longer_grow_the_memory(tmp_path: Path) -> None:
    view = BooksView([A], tmp_path / FILE_NAME)
    pushes = []  # made first: the pushes themselves are the gateway's input, not the view's memory
    for n in range(4000):
        pushes.append([("order", order(n, STATUS["reported"])), ("order", order(n, STATUS["succeeded"], traded_volume=1000)),
                       ("trade", trade(f"t{n}", n))])

    def day(numbers: range) -> None:
        for n in numbers:
            for event_type, data in pushes[n]:
                view.apply(event_type, A, data)
            if n % 50 == 49:  # a batch
                view.commit()

    day(range(1000))  # warm: shapes, statements, caches
    view.flush()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        day(range(1000, 4000))
        view.flush()  # what waits for a write is bounded (WRITE_AT), not part of the growth
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / 3000 < 8, grown  # per finished order with its trade; packed in memory it was ~400 B
    assert len(view.snapshot(A)["orders"]) == 4000 and view.books(A)["trades"]["t3999"] == trade("t3999", 3999)
    view.close()
