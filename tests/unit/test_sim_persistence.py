"""The simulated counter's books in a state file: they survive a close, a kill and next_day().

Driven through the genuine ``XtQuantTrader`` like ``test_sim_counter``; a "restart" is a new
``SimCounter`` on the same file (a new desk path), a kill is a real SIGKILL of a child process.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapter import sim
from adapter.config import SimConfig
from adapter.sim import native, store
from tests.unit.test_sim_counter import ACC, ACCOUNT, CASH, OTHER, Desk, make_desk  # noqa: F401  (fixture)

from xtquant import xtconstant as C
from xtquant.xttype import StockAccount

REPO = Path(__file__).resolve().parents[2]


def queried(desk: Desk) -> dict[str, Any]:
    """Everything a fresh session of ACCOUNT can query, as plain values."""
    trader, _ = desk.trader(ACCOUNT)
    return {
        "asset": vars(trader.query_stock_asset(ACC)),
        "orders": [vars(o) for o in trader.query_stock_orders(ACC)],
        "trades": [vars(t) for t in trader.query_stock_trades(ACC)],
        "positions": [vars(p) for p in trader.query_stock_positions(ACC)],
    }


def ids_of(*books: dict[str, Any]) -> tuple[int, int, int]:
    """The largest (order_id, sysid, trade_id) in the books of some accounts."""
    orders = [o for b in books for o in b["orders"].values()]
    trades = [t for b in books for t in b["trades"]]
    return (
        max(o["order_id"] for o in orders),
        max(int(o["order_sysid"]) for o in orders if o["order_sysid"].isdigit()),  # junk: "xt<order_id>"
        max(int(t["traded_id"]) for t in trades),
    )


def trade_day(desk: Desk) -> None:
    """A day with every kind of book change: resting, filled, part-filled, cancelled and junk orders."""
    trader, recorder = desk.trader(ACCOUNT, OTHER)
    trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 300, C.FIX_PRICE, 10.40, "grid", "rest-1")  # rests
    trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 200, C.FIX_PRICE, 10.60, "grid", "fill-1")  # fills
    sell = trader.order_stock(ACC, "000001.SZ", C.STOCK_SELL, 400, C.FIX_PRICE, 11.90, "exit", "备注备注")
    cancelled = trader.order_stock(ACC, "600519.SH", C.STOCK_SELL, 50, C.FIX_PRICE, 1500.0, "exit", "cancel-me")
    assert trader.cancel_order_stock(ACC, cancelled) == 0
    trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 150, C.FIX_PRICE, 10.60, "grid", "junk-lot")  # 57
    trader.order_stock(StockAccount(OTHER), "300750.SZ", C.STOCK_BUY, 100, C.FIX_PRICE, 264.0, "x", "other")
    desk.counter.set_price("000001.SZ", 11.90)  # the sell fills 300 of 400 (fill_volume)
    desk.counter.set_price("300750.SZ", 264.0)
    desk.flush(trader)
    assert trader.query_stock_order(ACC, sell).order_status == C.ORDER_PART_SUCC
    assert [(e.error_id, "[130003]" in e.error_msg) for e in recorder.of("order_error")] == [(-61, True)]


def test_books_survive_close_and_reopen(make_desk: Callable[..., Desk], tmp_path: Path) -> None:
    path = tmp_path / "books.sqlite3"
    desk = make_desk(state_path=path, fill_volume=300)
    trade_day(desk)
    before = {a: desk.counter.books(a) for a in (ACCOUNT, OTHER)}
    seen = queried(desk)
    prices = {c: desk.counter.last_price(c) for c in ("600000.SH", "000001.SZ", "300750.SZ")}
    desk.close()

    # The config only seeds a NEW file: other cash and positions change nothing now.
    again = make_desk(state_path=path, fill_volume=300, cash=5.0, positions={})
    assert {a: again.counter.books(a) for a in (ACCOUNT, OTHER)} == before
    assert queried(again) == seen
    assert {c: again.counter.last_price(c) for c in prices} == prices
    books = before[ACCOUNT]
    remarks = {o["order_remark"]: o["order_status"] for o in books["orders"].values()}
    assert remarks == {"rest-1": 50, "fill-1": 56, "备注备注": 55, "cancel-me": 54, "junk-lot": 57}
    assert before[OTHER]["positions"]["300750.SZ"]["volume"] == 100

    # Work goes on where it stopped: the resting sell fills its rest, ids keep increasing.
    trader, _ = again.trader(ACCOUNT)
    last_order, last_sysid, last_trade = ids_of(*before.values())
    again.counter.step()
    new_order = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60, "s", "after")
    assert new_order == last_order + 1
    assert int(trader.query_stock_order(ACC, new_order).order_sysid) == last_sysid + 1
    assert [int(t.traded_id) for t in trader.query_stock_trades(ACC)[-2:]] == [last_trade + 1, last_trade + 2]
    assert trader.query_stock_position(ACC, "000001.SZ").volume == 600
    assert trader.cancel_order_stock(ACC, min(books["orders"])) == 0  # a loaded order is cancelled
    after = {a: again.counter.books(a) for a in (ACCOUNT, OTHER)}
    assert after[ACCOUNT]["frozen_cash"] == 0.0
    again.close()

    third = make_desk(state_path=path)
    assert {a: third.counter.books(a) for a in (ACCOUNT, OTHER)} == after


def test_next_day_persists_and_ids_never_repeat(make_desk: Callable[..., Desk], tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "books.sqlite3"  # the folder is made
    desk = make_desk(state_path=path)
    trader, _ = desk.trader(ACCOUNT)
    first = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    trader.order_stock(ACC, "688981.SH", C.STOCK_SELL, 300, C.FIX_PRICE, 88.00)  # sells the whole position
    trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50)  # rests, expires
    desk.counter.set_price("600000.SH", 11.00)
    top = ids_of(desk.counter.books(ACCOUNT))
    desk.counter.next_day()
    rolled = desk.counter.books(ACCOUNT)
    desk.close()

    again = make_desk(state_path=path)
    books = again.counter.books(ACCOUNT)
    assert books == rolled
    assert books["orders"] == {} and books["trades"] == [] and "688981.SH" not in books["positions"]
    bought = books["positions"]["600000.SH"]
    assert (bought["volume"], bought["can_use_volume"], bought["yesterday_volume"]) == (100, 100, 100)
    assert again.counter.price_limits("600000.SH") == (9.9, 12.1)
    trader, _ = again.trader(ACCOUNT)
    order_id = trader.order_stock(ACC, "600000.SH", C.STOCK_SELL, 100, C.FIX_PRICE, 11.00)
    assert order_id == top[0] + 1 and order_id > first
    after = again.counter.books(ACCOUNT)
    assert int(after["orders"][order_id]["order_sysid"]) == top[1] + 1
    assert int(after["trades"][0]["traded_id"]) == top[2] + 1


def test_a_new_account_is_seeded_an_old_one_kept(make_desk: Callable[..., Desk], tmp_path: Path) -> None:
    path = tmp_path / "books.sqlite3"
    desk = make_desk(accounts=(ACCOUNT,), state_path=path)
    trader, _ = desk.trader(ACCOUNT)
    trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    kept = desk.counter.books(ACCOUNT)
    desk.close()
    again = make_desk(accounts=(ACCOUNT, OTHER), state_path=path, cash=2000.0, positions={OTHER: {"600036.SH": 100}})
    assert again.counter.books(ACCOUNT) == kept
    other = again.counter.books(OTHER)
    assert other["cash"] == 2000.0 and other["positions"]["600036.SH"]["volume"] == 100


def test_every_acknowledged_order_is_on_disk_first(
    make_desk: Callable[..., Desk], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = make_desk(state_path=tmp_path / "books.sqlite3")
    trader, recorder = desk.trader(ACCOUNT)
    written: set[int] = set()
    late: list[tuple[str, int]] = []
    write = store.StateFile.write

    def recording_write(self: store.StateFile, changes: store.Changes) -> None:
        write(self, changes)
        written.update(row[0] for row in changes.orders)

    deliver = native.XtQuantAsyncClient.deliver

    def checking_deliver(self: native.XtQuantAsyncClient, callback: str, *args: Any) -> None:
        # Runs on the counter thread at the moment of delivery: the order must be written already.
        if callback == native.CB_ORDER_RESP and args[1].m_nOrderID not in written:
            late.append((callback, args[1].m_nOrderID))
        if callback == native.CB_ORDER and args[0].order_id not in written:
            late.append((callback, args[0].order_id))
        deliver(self, callback, *args)

    monkeypatch.setattr(store.StateFile, "write", recording_write)
    monkeypatch.setattr(native.XtQuantAsyncClient, "deliver", checking_deliver)
    for price in (10.60, 10.50, 10.40, 10.30):
        trader.order_stock_async(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, price, "s", f"r{price}")
    recorder.wait_for(lambda events: sum(k == "order_resp" for k, _ in events) == 4)
    desk.flush(trader)
    assert len(written) == 4 and late == []


KILLED_CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading
    from adapter import sim
    from adapter.config import SimConfig
    from adapter.sim import native
    sim.install()
    from xtquant.xttrader import XtQuantTrader, XtQuantTraderCallback
    from xtquant.xttype import StockAccount

    deliver = native.XtQuantAsyncClient.deliver

    def dying_deliver(self, callback, *args):
        if callback == native.CB_ORDER_RESP:  # accepted, about to be acknowledged: die
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        deliver(self, callback, *args)

    native.XtQuantAsyncClient.deliver = dying_deliver
    counter = sim.SimCounter(SimConfig(), [sys.argv[2]], state_path=sys.argv[1])
    sim.register_counter("sim://child", counter)
    built = []
    builder = threading.Thread(target=lambda: built.append(XtQuantTrader("sim://child", 7, XtQuantTraderCallback())))
    builder.start()
    builder.join()
    trader = built[0]
    trader.start()
    assert trader.connect() == 0
    account = StockAccount(sys.argv[2])
    assert trader.subscribe(account) == 0
    trader.order_stock_async(account, "600000.SH", 23, 200, 11, 10.50, "killer", "acked-never")
    threading.Event().wait(20)
    print("still alive")
    """
)


@pytest.mark.timeout(30)
def test_an_order_accepted_before_a_kill_is_in_the_reopened_books(
    make_desk: Callable[..., Desk], tmp_path: Path
) -> None:
    path = tmp_path / "books.sqlite3"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, str(path), ACCOUNT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=25,
    )
    assert child.returncode != 0 and "still alive" not in child.stdout, child.stderr
    desk = make_desk(accounts=(ACCOUNT,), state_path=path)  # the dead process's lock is gone
    trader, _ = desk.trader(ACCOUNT)
    (order,) = trader.query_stock_orders(ACC)
    assert (order.order_remark, order.strategy_name, order.order_status) == ("acked-never", "killer", 50)
    assert (order.order_volume, order.price, order.order_id) == (200, 10.50, 1082130433)
    asset = trader.query_stock_asset(ACC)
    assert asset.frozen_cash == 2105.0 and asset.cash + asset.frozen_cash == CASH
    assert trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60) == order.order_id + 1


def test_a_file_in_use_is_refused(make_desk: Callable[..., Desk], tmp_path: Path) -> None:
    path = tmp_path / "books.sqlite3"
    desk = make_desk(state_path=path)
    with pytest.raises(sim.StateFileError, match="in use"):
        sim.SimCounter(SimConfig(), [ACCOUNT], state_path=path)
    desk.counter.close()
    sim.SimCounter(SimConfig(), [ACCOUNT], state_path=path).close()  # the lock goes with close()


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database " * 100, encoding="utf-8")
    with pytest.raises(sim.StateFileError, match="not a usable"):
        sim.SimCounter(SimConfig(), [ACCOUNT], state_path=text)
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('format', 'journal')")
    with pytest.raises(sim.StateFileError, match="not a sim counter state file"):
        sim.SimCounter(SimConfig(), [ACCOUNT], state_path=other)
    with sqlite3.connect(other) as db:  # refused untouched
        assert [name for (name,) in db.execute("SELECT name FROM sqlite_master")] == ["meta", "sqlite_autoindex_meta_1"]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    with pytest.raises(sim.StateFileError, match="cannot open"):
        sim.SimCounter(SimConfig(), [ACCOUNT], state_path=text / "below-a-file.sqlite3")


def test_a_position_in_a_vanished_instrument_is_an_error(make_desk: Callable[..., Desk], tmp_path: Path) -> None:
    path = tmp_path / "books.sqlite3"
    make_desk(state_path=path).close()
    table = tmp_path / "instruments.csv"
    table.write_text("code,name,prev_close\n600000.SH,浦发银行,10.60\n", encoding="utf-8")
    with pytest.raises(ValueError, match="000001.SZ"):
        sim.SimCounter(SimConfig(instruments_file=str(table)), [ACCOUNT], state_path=path)
    sim.SimCounter(SimConfig(), [ACCOUNT], state_path=path).close()  # the failed open let go of the file


def test_in_memory_counter_writes_nothing(make_desk: Callable[..., Desk], tmp_path: Path) -> None:
    desk = make_desk()
    trader, _ = desk.trader(ACCOUNT)
    assert trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60) > 0
    assert desk.counter._store is None and desk.counter._dirty_orders == {}


def test_a_failed_write_is_retried(
    make_desk: Callable[..., Desk], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "books.sqlite3"
    desk = make_desk(state_path=path)
    trader, _ = desk.trader(ACCOUNT)
    write = store.StateFile.write

    def full_disk(self: store.StateFile, changes: store.Changes) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store.StateFile, "write", full_disk)
    first = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50, "s", "unwritten")
    assert first > 0 and desk.counter.store_errors >= 1  # served from memory meanwhile
    monkeypatch.setattr(store.StateFile, "write", write)
    second = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.40, "s", "written")
    books = desk.counter.books(ACCOUNT)
    desk.close()
    again = make_desk(state_path=path)
    assert again.counter.books(ACCOUNT) == books
    assert [o["order_remark"] for o in books["orders"].values()] == ["unwritten", "written"] and second == first + 1
