"""The sim's counter agrees with its market: orders and cancels against the session phases and
suspensions of ``adapter.sim.feed`` (``sim.market_hours``, ``sim.suspended``), on a fake clock."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from adapter import market as rules
from adapter import sim
from adapter.config import SimConfig
from adapter.sim import books as B
from adapter.sim import calendar, feed as F
from adapter.sim import status
from tests.unit.test_sim_counter import Recorder, new_trader
from xtquant import xtconstant as C  # after adapter.sim: xtquant without its update check
from xtquant.xttype import StockAccount

ACCOUNT = "1000000365"
TABLE = """code,name,prev_close,last_price,kind
600000.SH,浦发银行,10.60,10.60,
000001.SZ,平安银行,11.80,11.80,
510300.SH,沪深300ETF,3.950,3.950,
"""
THURSDAY = dt.date(2025, 10, 9)  # a trading day
HOLIDAY = dt.date(2025, 10, 1)  # National Day, a Wednesday
SATURDAY = dt.date(2025, 10, 11)


def at(hh: int, mm: int, ss: int = 0, day: dt.date = THURSDAY) -> int:
    """Epoch ms of a China time."""
    return int(dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=calendar.CHINA).timestamp() * 1000)


class Market:
    """Books wired to a feed as the counter wires them (``Books`` asks ``feed.session``), on a
    settable clock; ``step`` is the counter's price step (walk, then a matching pass)."""

    def __init__(self, config: SimConfig, now: int, wired: bool = True) -> None:
        self.now = now
        clock = lambda: self.now / 1000  # noqa: E731
        session = (lambda code: self.feed.session(code, self.now)) if wired else None
        self.books = B.Books(config, [ACCOUNT], clock, session)
        self.feed = F.SimFeed(config, self.books.quotes, clock)

    def at(self, ms: int) -> Market:
        self.now = ms
        return self

    def buy(self, code: str, price: str, volume: int = 100, price_type: int = rules.FIX_PRICE) -> B.Placed:
        return self.books.place(ACCOUNT, code, B.BUY, volume, price_type, price)

    def step(self, ms: int | None = None) -> list[B.Event]:
        if ms is not None:
            self.now = ms
        frozen = self.feed.frozen(self.now)
        events = self.books.step(frozen) if len(frozen) < len(self.books.quotes) else []
        self.feed.on_step(self.now, self.books.quotes)
        return events

    def order(self, order_id: int) -> B.Order:
        return self.books.accounts[ACCOUNT].orders[order_id]


@pytest.fixture
def table(tmp_path: Path) -> str:
    path = tmp_path / "instruments.csv"
    path.write_text(TABLE, encoding="utf-8")
    return str(path)


@pytest.fixture
def make(table: str) -> Callable[..., Market]:
    def build(now: int = at(10, 0), wired: bool = True, **settings: Any) -> Market:
        return Market(replace(SimConfig(instruments_file=table, cash=1_000_000.0), **settings), now, wired)

    return build


def refused(placed: B.Placed) -> int | None:
    return placed.refusal.error_id if placed.refusal else None


# -- orders at each boundary ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "outcome"),
    [
        (at(9, 14, 59), "refused"),  # pre-open
        (at(9, 15), "rests"),  # the opening call auction
        (at(9, 24, 59), "rests"),
        (at(9, 25), "rests"),  # 09:25-09:30: taken, matched at 09:30
        (at(9, 30), "fills"),
        (at(11, 30), "rests"),  # lunch
        (at(13, 0), "fills"),
        (at(14, 57), "rests"),  # the closing call auction (SZ stocks, and SH stocks)
        (at(15, 0), "refused"),  # closed
        (at(23, 0), "refused"),
        (at(10, 0, day=HOLIDAY), "refused"),
        (at(10, 0, day=SATURDAY), "refused"),
    ],
)
def test_a_marketable_limit_order_at_each_boundary(make: Callable[..., Market], when: int, outcome: str) -> None:
    market = make(now=when, market_hours="exchange")
    placed = market.buy("000001.SZ", "11.80")
    if outcome == "refused":
        assert placed.refusal is not None and placed.order.status == status.JUNK
        assert placed.refusal.message.startswith("[COUNTER] [12313][当前时间不允许此类证券交易]")
    elif outcome == "rests":
        assert placed.refusal is None and placed.order.status == status.REPORTED
        assert not any(isinstance(e, B.TradeMade) for e in placed.events)
    else:
        assert placed.refusal is None and placed.order.status == status.SUCCEEDED


def test_sh_funds_trade_on_through_the_closing_auction(make: Callable[..., Market]) -> None:
    market = make(now=at(14, 58), market_hours="exchange")
    assert market.buy("510300.SH", "3.950").order.status == status.SUCCEEDED
    assert market.buy("600000.SH", "10.60").order.status == status.REPORTED  # SH stocks close by auction


def test_an_auction_order_rests_and_fills_once_continuous(make: Callable[..., Market]) -> None:
    market = make(now=at(9, 16), market_hours="exchange")
    placed = market.buy("600000.SH", "10.60", 300)
    order_id = placed.order.order_id
    assert placed.refusal is None and placed.order.status == status.REPORTED
    account = market.books.accounts[ACCOUNT]
    assert account.frozen_cash > 0  # reported: its cash is frozen as in continuous trading
    assert market.step(at(9, 20)) == [] and market.step(at(9, 25)) == []  # the auction, then no matching
    assert market.books.set_price("600000.SH", 10.50) == []  # a price move outside matching fills nothing
    assert market.order(order_id).status == status.REPORTED
    events = market.step(at(9, 30))
    trades = [e.trade for e in events if isinstance(e, B.TradeMade)]
    assert [(t.order_id, t.traded_volume, t.traded_price) for t in trades] == [(order_id, 300, 10.50)]
    assert market.order(order_id).status == status.SUCCEEDED
    # a lunch order waits for 13:00
    lunch = market.at(at(12, 0)).buy("600000.SH", "10.50").order.order_id
    assert market.step(at(12, 30)) == [] and market.order(lunch).status == status.REPORTED
    market.step(at(13, 0))
    assert market.order(lunch).status == status.SUCCEEDED


def test_market_orders_only_in_continuous_trading(make: Callable[..., Market]) -> None:
    market = make(now=at(9, 16), market_hours="exchange")
    for when in (at(9, 16), at(9, 27), at(12, 0), at(14, 58)):
        placed = market.at(when).buy("000001.SZ", "0", price_type=rules.MARKET_PEER_PRICE_FIRST)
        assert refused(placed) == 130010 and "[当前时段不支持市价委托]" in placed.refusal.message  # type: ignore[union-attr]
    placed = market.at(at(10, 0)).buy("000001.SZ", "0", price_type=rules.MARKET_PEER_PRICE_FIRST)
    assert placed.refusal is None and placed.order.status == status.SUCCEEDED
    assert market.at(at(9, 16)).buy("000001.SZ", "11.80", price_type=rules.LATEST_PRICE).order.status == status.REPORTED


# -- cancels --------------------------------------------------------------------------------


def test_no_cancels_from_0920_to_0925_nor_in_the_closing_auction(make: Callable[..., Market]) -> None:
    market = make(now=at(9, 16), market_hours="exchange")
    first = market.buy("000001.SZ", "11.70").order.order_id
    assert market.at(at(9, 19, 59)).books.cancel(ACCOUNT, first).refusal is None  # 09:15-09:20: taken
    second = market.buy("000001.SZ", "11.70").order.order_id
    for when in (at(9, 20), at(9, 24, 59)):
        cancelled = market.at(when).books.cancel(ACCOUNT, second)
        assert cancelled.refusal is not None and cancelled.refusal.error_id == 110004 and cancelled.events == []
        assert cancelled.refusal.message.startswith("[COUNTER] [110004][当前时间不允许撤单]")
        assert market.order(second).status == status.REPORTED  # untouched
    assert market.at(at(9, 25)).books.cancel(ACCOUNT, second).refusal is None  # the break: the counter takes it
    assert market.order(second).status == status.CANCELED

    stock = market.at(at(14, 0)).buy("000001.SZ", "11.70").order.order_id
    fund = market.buy("510300.SH", "3.900").order.order_id
    market.at(at(14, 57))
    assert market.books.cancel(ACCOUNT, stock).refusal.error_id == 110004  # type: ignore[union-attr]
    assert market.books.cancel(ACCOUNT, fund).refusal is None  # SH funds: continuous to 15:00
    assert market.at(at(15, 0)).books.cancel(ACCOUNT, stock).refusal is None
    assert market.order(stock).status == status.CANCELED


def test_cancels_on_a_day_without_trading_are_taken(make: Callable[..., Market]) -> None:
    market = make(now=at(14, 0, day=dt.date(2025, 9, 30)), market_hours="exchange")  # the eve of the holiday
    order_id = market.buy("000001.SZ", "11.70").order.order_id
    assert market.at(at(9, 22, day=HOLIDAY)).books.cancel(ACCOUNT, order_id).refusal is None


# -- suspended codes ------------------------------------------------------------------------


@pytest.mark.parametrize("hours", ["always", "exchange"])
def test_suspended_codes_are_refused_in_both_modes(make: Callable[..., Market], hours: str) -> None:
    market = make(now=at(10, 0), market_hours=hours, suspended=("000001.SZ",))
    placed = market.buy("000001.SZ", "11.80")
    assert refused(placed) == 120102 and placed.order.status == status.JUNK
    assert placed.refusal.message == "[COUNTER] [120102][证券停牌][stock_code=000001.SZ]"  # type: ignore[union-attr]
    assert market.books.place(ACCOUNT, "000001.SZ", B.SELL, 100, rules.FIX_PRICE, "11.80").refusal is not None
    assert market.buy("600000.SH", "10.60").order.status == status.SUCCEEDED


@pytest.mark.parametrize("suspended", [True, False])
def test_a_resting_order_in_a_suspended_code_is_not_matched(make: Callable[..., Market], suspended: bool) -> None:
    # Books without the feed's hook take it, as a state file from before the suspension brings it.
    market = make(wired=False, suspended=("000001.SZ",) if suspended else ())
    order_id = market.buy("000001.SZ", "11.70").order.order_id
    market.books.quotes["000001.SZ"].last = Decimal("11.60")  # as a walk would move it
    market.step()
    assert market.order(order_id).status == (status.REPORTED if suspended else status.SUCCEEDED)


# -- "always" is as before ------------------------------------------------------------------


def test_always_open_is_unchanged(make: Callable[..., Market]) -> None:
    def script(market: Market) -> list[Any]:
        out: list[Any] = []
        for when in (at(3, 0, day=dt.date(2025, 10, 12)), at(9, 22), at(14, 58), at(23, 30, day=HOLIDAY)):
            market.at(when)
            out.append(market.buy("000001.SZ", "11.80"))
            out.append(market.buy("000001.SZ", "0", price_type=rules.MARKET_PEER_PRICE_FIRST))
            resting = market.buy("600000.SH", "10.50")
            out.append(resting)
            out.append(market.books.cancel(ACCOUNT, resting.order.order_id))
            out.append(market.books.set_price("600000.SH", 10.60))
            out.append(market.step())
        return out

    wired, plain = make(), make(wired=False)  # the books alone are what they were before the feed's hook
    ours, theirs = script(wired), script(plain)
    assert repr(ours) == repr(theirs)
    assert all(p.refusal is None for p in ours if isinstance(p, (B.Placed, B.Cancelled)))
    assert [p.order.status for p in ours[:2]] == [status.SUCCEEDED, status.SUCCEEDED]


# -- through the counter and the genuine xttrader -------------------------------------------


@pytest.fixture
def desk(table: str) -> Iterator[tuple[Any, Any, Recorder, list[float]]]:
    now = [at(9, 16) / 1000]
    config = SimConfig(instruments_file=table, market_hours="exchange", tick_interval=0.05,
                       suspended=("510300.SH",))
    counter = sim.SimCounter(config, [ACCOUNT], clock=lambda: now[0])
    path = f"sim://{uuid.uuid4().hex}"
    sim.register_counter(path, counter)
    recorder = Recorder()
    trader = new_trader(path, recorder)
    trader.start()
    try:
        assert trader.connect() == 0 and trader.subscribe(StockAccount(ACCOUNT)) == 0
        yield counter, trader, recorder, now
    finally:
        trader.stop()
        trader.loop.close()
        sim.unregister_counter(path)
        counter.close()


def test_the_counter_refuses_rests_and_fills_at_the_open(desk: tuple[Any, Any, Recorder, list[float]]) -> None:
    _, trader, recorder, now = desk
    account = StockAccount(ACCOUNT)
    order_id = trader.order_stock(account, "600000.SH", C.STOCK_BUY, 200, C.FIX_PRICE, 10.60)
    assert trader.query_stock_order(account, order_id).order_status == C.ORDER_REPORTED
    now[0] = at(9, 21) / 1000
    assert trader.cancel_order_stock(account, order_id) == 0  # taken as a request, refused by the counter
    trader.query_account_status()  # every push so far has run
    assert [(e.order_id, e.error_id) for e in recorder.of("cancel_error")] == [(order_id, 110004)]
    assert recorder.of("trade") == []
    now[0] = at(9, 30) / 1000  # "fixed" prices: the timer's first continuous pass fills it
    recorder.wait_for(lambda events: any(kind == "trade" for kind, _ in events))
    assert [(t.order_id, t.traded_volume, t.traded_price) for t in recorder.of("trade")] == [(order_id, 200, 10.60)]

    suspended = trader.order_stock(account, "510300.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 3.95)
    now[0] = at(15, 1) / 1000
    late = trader.order_stock(account, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    trader.query_account_status()
    errors = {e.order_id: e for e in recorder.of("order_error")}
    assert errors[suspended].error_id == -61 and "[COUNTER] [120102][证券停牌]" in errors[suspended].error_msg
    assert errors[late].error_msg.startswith("限价买入 [SH600000] [COUNTER] [12313][当前时间不允许此类证券交易]")
    assert trader.query_stock_order(account, late).order_status == C.ORDER_JUNK


# -- the feed names an unknown code as the counter does --------------------------------------


def test_the_feed_says_a_code_is_unknown_to_the_simulator_and_how_to_add_it(
    make: Callable[..., Market], table: str
) -> None:
    feed = make().feed
    with pytest.raises(ValueError) as info:
        feed.market_data([], ["999999.SH"])
    assert str(info.value).startswith("stock_list: unknown code '999999.SH' (999999.SH is unknown to the simulator")
    assert table in str(info.value)
    with pytest.raises(ValueError, match="code_list: 5 is not a code"):
        feed.full_tick([5])
    built_in = Market(SimConfig(), at(10, 0)).feed
    with pytest.raises(ValueError, match="unknown to the simulator.*set sim.instruments_file"):
        built_in.full_tick(["999999.SH"])
