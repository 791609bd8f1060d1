"""BooksView: the snapshot contract, packed finished records, the open-order index, and a
start-up replay that reads only the current trading day."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

from adapter.journal import Journal
from adapter.ledger import day_start_ns, trading_day
from adapter.protocol import events
from adapter.protocol.codec import encode_event
from adapter.protocol.mapping import ORDER_JUNK, ORDER_STATUS_NAMES, STOCK_BUY, STOCK_SELL
from adapter.server.view import OPEN_STATUSES, BooksView, PackedRecords, first_seq_since

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


def test_the_snapshot_holds_every_record_as_applied_in_first_seen_order() -> None:
    view = BooksView([A])
    position = {"account_id": A, "stock_code": "600000.SH", "volume": 100}
    view.load(A, {"asset": {"cash": 1.0}, "positions": [position],
                  "orders": [order(1, STATUS["succeeded"]), order(2, STATUS["reported"])], "trades": [trade("t1", 1)]})
    view.apply("order", A, order(3, STATUS["reported"], order_type=STOCK_SELL))
    view.apply("order", A, order(2, STATUS["canceled"]))  # finished: packed, keeps its place
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


def test_a_finished_order_takes_far_less_memory_than_its_dict() -> None:
    count = 2000
    originals = [order(n, STATUS["succeeded"]) for n in range(count)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    as_dicts = {o["order_id"]: dict(o) for o in originals}
    dict_bytes = tracemalloc.get_traced_memory()[0] - before
    packed = PackedRecords()
    before = tracemalloc.get_traced_memory()[0]
    for o in originals:
        packed.put(o["order_id"], o)
    packed_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert packed_bytes * 3 < dict_bytes, (packed_bytes / count, dict_bytes / count)
    assert [packed[n] for n in range(count)] == list(as_dicts.values())


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
