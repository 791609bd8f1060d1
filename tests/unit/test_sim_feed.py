"""The sim's market as xtdata shows it (``adapter.sim.feed``): ticks from the counter's quotes,
session phases, bars from ticks joined to history, the query semantics and their errors, and
the counter's hooks (in its process and in its own)."""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest
import xtquant

from adapter import market as rules
from adapter.config import ConfigError, SimConfig
from adapter.sim import books as B
from adapter.sim import calendar, feed as F, history

ACCOUNT = "1000000365"
TABLE = """code,name,prev_close,last_price,kind
600000.SH,浦发银行,10.60,10.60,
600696.SH,ST岩石,4.20,4.20,
000001.SZ,平安银行,11.80,11.80,
300750.SZ,宁德时代,265.00,265.00,
510300.SH,沪深300ETF,3.950,3.950,
159915.SZ,创业板ETF,2.200,2.200,
000300.SH,沪深300,3900.00,3900.00,index
"""
THURSDAY = dt.date(2025, 10, 9)  # a trading day (after the National Day holiday)


def at(hh: int, mm: int, ss: int = 0, day: dt.date = THURSDAY) -> int:
    """Epoch ms of a China time."""
    return int(dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=calendar.CHINA).timestamp() * 1000)


class Market:
    """Books and a feed over them on a settable clock (no counter thread)."""

    def __init__(self, config: SimConfig, now: int) -> None:
        self.now = now
        self.books = B.Books(config, [ACCOUNT], lambda: self.now / 1000)
        self.feed = F.SimFeed(config, self.books.quotes, lambda: self.now / 1000)

    def step(self, ms: int | None = None) -> dict[str, dict[str, Any]]:
        if ms is not None:
            self.now = ms
        return self.feed.on_step(self.now, self.books.quotes)

    def set(self, code: str, price: str, ms: int | None = None) -> dict[str, dict[str, Any]]:
        if ms is not None:
            self.now = ms
        self.books.set_price(code, float(price))
        return self.feed.on_step(self.now, {code: self.books.quotes[code]})

    def tick(self, code: str) -> dict[str, Any]:
        return self.feed.full_tick([code])[code]


@pytest.fixture
def table(tmp_path: Path) -> str:
    path = tmp_path / "instruments.csv"
    path.write_text(TABLE, encoding="utf-8")
    return str(path)


@pytest.fixture
def make(table: str) -> Callable[..., Market]:
    def build(now: int = at(10, 0), **settings: Any) -> Market:
        return Market(replace(SimConfig(instruments_file=table, cash=10_000_000.0), **settings), now)

    return build


def manual_fields(title: str) -> list[str]:
    """The quoted names of one field list of xtquant's own manual (doc/xtdata.md)."""
    text = (Path(xtquant.__file__).parent / "doc" / "xtdata.md").read_text(encoding="utf-8")
    block = text.split(f"#### {title}", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    return re.findall(r"^'(\w+)'", block, re.M)


# -- ticks ----------------------------------------------------------------------------------


def test_a_tick_has_the_manuals_fields_with_xtdatas_types(make: Callable[..., Market]) -> None:
    market = make()
    tick = market.tick("600000.SH")
    wanted = manual_fields("tick - 分笔数据")
    assert "transactionNum" in wanted and "pvolume" in wanted
    assert set(wanted) <= set(tick)
    assert list(tick) == list(F.TICK_FIELDS)
    assert isinstance(tick["time"], int) and tick["time"] == at(10, 0)
    assert tick["timetag"] == "20251009 10:00:00"
    for name in ("lastPrice", "open", "high", "low", "lastClose", "amount", "lastSettlementPrice", "settlementPrice"):
        assert type(tick[name]) is float, name
    for name in ("volume", "pvolume", "stockStatus", "openInt", "transactionNum"):
        assert type(tick[name]) is int, name
    for name in ("askPrice", "bidPrice"):
        assert isinstance(tick[name], list) and len(tick[name]) == 5 and all(type(p) is float for p in tick[name])
    for name in ("askVol", "bidVol"):
        assert isinstance(tick[name], list) and len(tick[name]) == 5 and all(type(v) is int for v in tick[name])
    assert tick["lastPrice"] == tick["lastClose"] == 10.60
    assert (tick["stockStatus"], tick["openInt"]) == (3, 13)  # continuous, as real ticks carry it


def test_the_quote_is_the_price_an_order_fills_at(make: Callable[..., Market]) -> None:
    market = make()
    market.set("600000.SH", "10.73", at(10, 0, 5))
    tick = market.tick("600000.SH")
    assert tick["lastPrice"] == 10.73 and tick["askPrice"][0] == 10.73 and tick["bidPrice"][0] == 10.72
    assert tick["askPrice"] == [10.73, 10.74, 10.75, 10.76, 10.77]
    assert tick["bidPrice"] == [10.72, 10.71, 10.70, 10.69, 10.68]
    buy = market.books.place(ACCOUNT, "600000.SH", B.BUY, 100, rules.FIX_PRICE, tick["askPrice"][0])
    trades = [e.trade for e in buy.events if isinstance(e, B.TradeMade)]
    assert trades and trades[0].traded_price == tick["lastPrice"]
    # The walk moves the price; the next tick shows where the next order fills.
    market.books.quote("000001.SZ")  # in use: the walk moves it
    market.books.step()
    market.step(at(10, 0, 6))
    tick = market.tick("000001.SZ")
    assert Decimal(str(tick["lastPrice"])) == market.books.quotes["000001.SZ"].last
    buy = market.books.place(ACCOUNT, "000001.SZ", B.BUY, 100, rules.LATEST_PRICE, 0)
    trades = [e.trade for e in buy.events if isinstance(e, B.TradeMade)]
    assert trades[0].traded_price == tick["lastPrice"]


def test_on_step_returns_only_what_changed_and_the_day_accumulates(make: Callable[..., Market]) -> None:
    market = make()
    assert market.step(at(10, 0, 1)) == {}  # nothing moved
    changed = market.set("600000.SH", "10.70", at(10, 0, 2))
    assert list(changed) == ["600000.SH"]
    first = changed["600000.SH"]
    assert first["volume"] > 0 and first["pvolume"] == first["volume"] * 100 and first["transactionNum"] > 0
    assert first["amount"] == pytest.approx(first["pvolume"] * 10.70)
    second = market.set("600000.SH", "10.55", at(10, 0, 3))["600000.SH"]
    assert second["volume"] > first["volume"] and second["amount"] > first["amount"]
    assert (second["open"], second["high"], second["low"]) == (10.60, 10.70, 10.55)
    assert second["time"] == at(10, 0, 3)


def test_the_book_stays_inside_the_limits(make: Callable[..., Market]) -> None:
    market = make()
    quote = market.books.quotes["600000.SH"]
    up, down = str(quote.up), str(quote.down)
    tick = market.set("600000.SH", up)["600000.SH"]
    assert tick["askPrice"] == [0.0] * 5 and tick["askVol"] == [0] * 5  # nobody sells at the up limit
    assert tick["bidPrice"][0] == float(up) and min(tick["bidVol"]) > 0
    tick = market.set("600000.SH", down)["600000.SH"]
    assert tick["bidPrice"] == [0.0] * 5 and tick["bidVol"] == [0] * 5
    assert tick["askPrice"][0] == float(down)
    fund = market.set("510300.SH", "3.961")["510300.SH"]
    assert fund["askPrice"][:2] == [3.961, 3.962] and fund["bidPrice"][0] == 3.96  # a fund's tick is 0.001


def test_an_index_is_quoted_without_a_book(make: Callable[..., Market]) -> None:
    market = make()
    tick = market.set("000300.SH", "3910.00", at(10, 0, 1))["000300.SH"]
    assert tick["lastPrice"] == 3910.0 and tick["askPrice"] == [0.0] * 5 and tick["bidVol"] == [0] * 5
    assert tick["amount"] == pytest.approx(tick["pvolume"] * history.INDEX_SHARE_PRICE)


def test_the_same_seed_gives_the_same_ticks(make: Callable[..., Market]) -> None:
    runs = []
    for _ in range(2):
        market = make(price_model="walk", seed=9)
        market.books.quote("600000.SH")
        for second in range(1, 6):
            market.books.step()
            market.step(at(10, 0, second))
        runs.append(market.feed.full_tick(["600000.SH"]))
    assert runs[0] == runs[1]


# -- phases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "stock", "sh_fund"),
    [
        ((9, 14, 59), 11, 11), ((9, 15, 0), 12, 12), ((9, 24, 59), 12, 12), ((9, 25, 0), 14, 14),
        ((9, 29, 59), 14, 14), ((9, 30, 0), 13, 13), ((11, 29, 59), 13, 13), ((11, 30, 0), 14, 14),
        ((12, 59, 59), 14, 14), ((13, 0, 0), 13, 13), ((14, 56, 59), 13, 13), ((14, 57, 0), 18, 13),
        ((14, 59, 59), 18, 13), ((15, 0, 0), 15, 15), ((23, 0, 0), 15, 15),
    ],
)
def test_exchange_phases_at_each_boundary(make: Callable[..., Market], time: tuple[int, int, int], stock: int, sh_fund: int) -> None:
    market = make(now=at(*time), market_hours="exchange")
    ticks = market.feed.full_tick(["600000.SH", "000001.SZ", "510300.SH", "159915.SZ"])
    assert ticks["600000.SH"]["openInt"] == stock  # SH stocks close by auction since 2018
    assert ticks["000001.SZ"]["openInt"] == stock
    assert ticks["159915.SZ"]["openInt"] == stock  # SZ funds too
    assert ticks["510300.SH"]["openInt"] == sh_fund  # SH funds trade on to 15:00
    assert all(t["stockStatus"] == t["openInt"] - 10 for t in ticks.values())


def test_holidays_and_weekends_are_closed_and_always_is_always_open(make: Callable[..., Market]) -> None:
    for day in (dt.date(2025, 10, 1), dt.date(2025, 10, 11), dt.date(2026, 2, 18)):
        market = make(now=at(10, 0, day=day), market_hours="exchange")
        assert market.tick("600000.SH")["openInt"] == F.CLOSED
        assert market.feed.frozen(market.now) == set(market.books.quotes)
    night = make(now=at(3, 0, day=dt.date(2025, 10, 12)))  # a Sunday night: "always" trades
    assert night.tick("600000.SH")["openInt"] == F.CONTINUOUS
    assert night.feed.frozen(night.now) == frozenset()
    with pytest.raises(ConfigError, match="market_hours"):
        SimConfig(market_hours="nyse").validate()


def test_a_trading_day_through_its_phases(make: Callable[..., Market]) -> None:
    market = make(now=at(9, 0), market_hours="exchange")
    everything = set(market.books.quotes)
    tick = market.tick("000001.SZ")
    assert (tick["open"], tick["volume"], tick["askPrice"], tick["openInt"]) == (0.0, 0, [0.0] * 5, F.PRE_OPEN)
    assert market.feed.frozen(market.now) == everything
    changed = market.step(at(9, 15))
    assert changed["000001.SZ"]["openInt"] == F.AUCTION  # the phase change is pushed
    tick = changed["000001.SZ"]
    assert tick["askPrice"][0] == tick["bidPrice"][0] == 11.80 and tick["askPrice"][1] == 0.0  # the indicative price
    assert tick["volume"] == 0
    opened = market.step(at(9, 25))["000001.SZ"]  # the auction's match
    assert opened["open"] == 11.80 and opened["volume"] > 0 and opened["openInt"] == F.BREAK
    assert market.feed.frozen(market.now) == everything
    market.step(at(9, 30))
    assert market.feed.frozen(market.now) == frozenset()
    during = market.set("000001.SZ", "11.90", at(10, 0))["000001.SZ"]
    assert during["volume"] > opened["volume"]
    assert market.feed.frozen(at(12, 0)) == everything  # lunch
    market.step(at(14, 58))
    assert market.feed.frozen(market.now) == everything - {"510300.SH"}  # SH funds trade on
    before = market.tick("000001.SZ")["volume"]
    fund_before = market.tick("510300.SH")["volume"]
    closed = market.step(at(15, 0))
    assert closed["000001.SZ"]["volume"] > before  # the closing auction's match
    assert closed["510300.SH"]["openInt"] == F.CLOSED and closed["510300.SH"]["volume"] == fund_before
    assert market.step(at(15, 0, 5)) == {}  # once


def test_suspended_codes_never_trade(make: Callable[..., Market]) -> None:
    market = make(suspended=("600000.SH",))
    tick = market.tick("600000.SH")
    assert (tick["openInt"], tick["stockStatus"]) == (F.SUSPENDED, 7)
    assert tick["askPrice"] == [0.0] * 5 and tick["volume"] == 0
    assert market.feed.frozen(market.now) == {"600000.SH"}
    bar = market.feed.market_data([], ["600000.SH"], "1d", count=1)["600000.SH"]
    assert bar["suspendFlag"] == [1] and bar["volume"] == [0] and bar["close"] == [10.60]
    exchange = make(now=at(10, 0), market_hours="exchange", suspended=["000001.SZ"])
    assert exchange.tick("000001.SZ")["openInt"] == F.SUSPENDED and exchange.tick("600000.SH")["openInt"] == F.CONTINUOUS
    assert exchange.feed.frozen(exchange.now) == {"000001.SZ"}
    with pytest.raises(ValueError, match="sim.suspended"):
        make(suspended=["999999.SH"])


# -- bars -----------------------------------------------------------------------------------


def test_todays_bars_are_made_from_the_ticks_and_follow_history(make: Callable[..., Market]) -> None:
    market = make(market_hours="exchange", now=at(9, 26))
    market.step()
    for ms, price in ((at(9, 30, 10), "10.62"), (at(9, 30, 40), "10.66"), (at(9, 31, 5), "10.58"), (at(9, 36, 0), "10.61")):
        market.set("600000.SH", price, ms)
    data = market.feed.market_data([], ["600000.SH"], "1m", "20250930", "20251009", -1)["600000.SH"]
    today = [i for i, t in enumerate(data["time"]) if t >= at(9, 30)]
    assert len(data["time"]) == 241 + len(today)  # yesterday's bars, then today's
    assert data["time"][0] == at(9, 30, day=dt.date(2025, 9, 30)) and data["close"][240] == 10.60
    rows = {dt.datetime.fromtimestamp(data["time"][i] / 1000, calendar.CHINA).strftime("%H:%M"): i for i in today}
    assert list(rows) == ["09:30", "09:31", "09:32", "09:33", "09:34", "09:35", "09:36", "09:37"]  # gaps filled
    auction, first, second = rows["09:30"], rows["09:31"], rows["09:32"]
    assert data["open"][auction] == data["close"][auction] == 10.60 and data["volume"][auction] > 0
    assert (data["open"][first], data["high"][first], data["low"][first], data["close"][first]) == (10.62, 10.66, 10.62, 10.66)
    assert (data["open"][second], data["close"][second]) == (10.58, 10.58)
    assert data["volume"][rows["09:33"]] == 0 and data["close"][rows["09:33"]] == 10.58  # filled: flat, no volume
    unfilled = market.feed.market_data(["close"], ["600000.SH"], "1m", "20251009093000", "", -1, "none", False)
    assert len(unfilled["600000.SH"]["time"]) == 4
    tick = market.tick("600000.SH")
    five = market.feed.market_data([], ["600000.SH"], "5m", "20251009", "", -1)["600000.SH"]
    assert [dt.datetime.fromtimestamp(t / 1000, calendar.CHINA).strftime("%H:%M") for t in five["time"]] == ["09:35", "09:40"]
    assert five["open"][0] == 10.60 and five["high"][0] == 10.66 and five["low"][0] == 10.58
    assert sum(five["volume"]) == tick["volume"]
    day = market.feed.market_data([], ["600000.SH"], "1d", count=2)["600000.SH"]
    assert day["time"] == [calendar.day_ms(dt.date(2025, 9, 30)), calendar.day_ms(THURSDAY)]
    assert day["close"] == [10.60, 10.61]  # yesterday closed at today's prev_close
    assert (day["open"][1], day["high"][1], day["low"][1], day["volume"][1]) == (10.60, 10.66, 10.58, tick["volume"])
    assert day["amount"][1] == tick["amount"] and day["preClose"][1] == 10.60
    assert set(manual_fields("1m / 5m / 1d - K线数据")) == set(day)


def test_count_start_and_end(make: Callable[..., Market]) -> None:
    market = make()
    md = market.feed.market_data
    days = md(["close"], ["000001.SZ"], "1d", "20250922", "20251009", -1)["000001.SZ"]["time"]
    assert [calendar.ms_day(t) for t in days] == calendar.trading_days(dt.date(2025, 9, 22), THURSDAY)
    assert md(["close"], ["000001.SZ"], "1d", "20250922", "20251009", 3)["000001.SZ"]["time"] == days[-3:]
    assert md(["close"], ["000001.SZ"], "1d", "", "20251009", 2)["000001.SZ"]["time"] == days[-2:]
    assert md(["close"], ["000001.SZ"], "1d", "", "", 0) == {"000001.SZ": {"time": [], "close": []}}
    everything = md(["close"], ["000001.SZ"], "1d")["000001.SZ"]["time"]
    assert len(everything) == F.DEFAULT_DAYS["1d"] + 1 and calendar.ms_day(everything[-1]) == THURSDAY  # and today
    minutes = md(["close"], ["000001.SZ"], "1m", "20250930100000", "20250930100500", -1)["000001.SZ"]["time"]
    assert minutes == [at(10, m, day=dt.date(2025, 9, 30)) for m in range(0, 6)]
    assert md([], ["000001.SZ"], "1m", "", "20250930", 5)["000001.SZ"]["time"][-1] == at(15, 0, day=dt.date(2025, 9, 30))
    two = md(["open"], ["000001.SZ", "600000.SH"], "1h", count=6)
    assert list(two) == ["000001.SZ", "600000.SH"] and list(two["600000.SH"]) == ["time", "open"]
    hours = two["600000.SH"]["time"]  # nothing traded today: the last 6 of history
    assert len(hours) == 6 and hours[-1] == at(15, 0, day=dt.date(2025, 9, 30)) and hours[0] == at(14, 0, day=dt.date(2025, 9, 29))
    assert market.feed.local_data(["close"], ["000001.SZ"], "1d", count=1) == md(["close"], ["000001.SZ"], "1d", count=1)


def test_trading_dates(make: Callable[..., Market]) -> None:
    market = make()
    dates = market.feed.trading_dates("SH", "20250929", "20251010")
    assert [calendar.ms_day(d) for d in dates] == [dt.date(2025, 9, 29), dt.date(2025, 9, 30), THURSDAY, dt.date(2025, 10, 10)]
    assert market.feed.trading_dates("SZ", "20250929", "20251010", 2) == dates[-2:]
    assert market.feed.trading_dates("SZ", "", "", 1) == [calendar.day_ms(THURSDAY)]  # up to today
    assert market.feed.trading_dates("BJ", "", "", 0) == []
    first = market.feed.trading_dates("SH", "", "19901231")
    assert calendar.ms_day(first[0]) == dt.date(1990, 12, 19)


def test_download_history_reports_progress_and_widens_local_data(make: Callable[..., Market]) -> None:
    market = make()
    seen: list[dict[str, Any]] = []
    progress = market.feed.download_history(["600000.SH", "000001.SZ"], "1d", "20200101", "", seen.append)
    assert seen == progress == [
        {"finished": 1, "total": 2, "stockcode": "600000.SH", "message": ""},
        {"finished": 2, "total": 2, "stockcode": "000001.SZ", "message": ""},
    ]
    everything = market.feed.market_data(["close"], ["600000.SH"], "1d")["600000.SH"]["time"]
    assert calendar.ms_day(everything[0]) == dt.date(2020, 1, 2)  # the first trading day of 2020
    assert market.feed.download_history("600000.SH", "1m") == [{"finished": 1, "total": 1, "stockcode": "600000.SH", "message": ""}]


def test_tick_history_of_today(make: Callable[..., Market]) -> None:
    market = make()
    market.feed.record_ticks(["600000.SH"])
    for second, price in enumerate(("10.61", "10.62", "10.63"), 1):
        market.set("600000.SH", price, at(10, 0, second))
    ticks = market.feed.market_data(["lastPrice", "volume"], ["600000.SH"], "tick")["600000.SH"]
    assert ticks["lastPrice"] == [10.60, 10.61, 10.62, 10.63] and ticks["time"][0] == at(10, 0)
    assert ticks["volume"] == sorted(ticks["volume"])
    last = market.feed.market_data([], ["600000.SH"], "tick", "", "", 1)["600000.SH"]
    assert last["lastPrice"] == [10.63] and last["askPrice"] == [market.tick("600000.SH")["askPrice"]]
    # A code nobody recorded starts now: its current tick.
    other = market.feed.market_data(["lastPrice"], ["000001.SZ"], "tick")["000001.SZ"]
    assert other["lastPrice"] == [11.80]


def test_next_day_starts_the_market_again(make: Callable[..., Market]) -> None:
    market = make()
    market.set("600000.SH", "10.80", at(10, 0, 1))
    market.books.next_day()
    changed = market.feed.next_day(market.books.quotes)
    tick = changed["600000.SH"]
    assert tick["lastClose"] == 10.80 and tick["volume"] == 0 and tick["open"] == 10.80
    assert market.feed.market_data(["close"], ["600000.SH"], "1d", count=2)["600000.SH"]["close"][0] == 10.80


def test_bad_arguments_name_the_argument(make: Callable[..., Market], monkeypatch: pytest.MonkeyPatch) -> None:
    feed = make().feed
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: feed.market_data([], ["999999.SH"]), "stock_list: unknown code '999999.SH'"),
        (lambda: feed.market_data([], ["600000.SH"], "2m"), "period: '2m'"),
        (lambda: feed.market_data([], ["600000.SH"], "1d", "20251010", "20251009"), "start_time is after end_time"),
        (lambda: feed.market_data([], ["600000.SH"], "1d", "2025-10-01"), "start_time: '2025-10-01'"),
        (lambda: feed.market_data([], ["600000.SH"], "1d", "", "20251340"), "end_time: '20251340'"),
        (lambda: feed.market_data([], ["600000.SH"], "1d", "", "", -2), "count: -2"),
        (lambda: feed.market_data(["close", "vol"], ["600000.SH"]), "field_list: unknown field(s) 'vol'"),
        (lambda: feed.market_data(["lastPrice"], ["600000.SH"], "1d"), "field_list"),
        (lambda: feed.market_data([], ["600000.SH"], "1d", dividend_type="forward"), "dividend_type: 'forward'"),
        (lambda: feed.full_tick(["600000.SH", "AAPL"]), "code_list: unknown code 'AAPL'"),
        (lambda: feed.trading_dates("HK"), "market: 'HK'"),
        (lambda: feed.download_history(["600000.SH"], "1w"), "period: '1w'"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert message in str(info.value)
    monkeypatch.setattr(F, "MAX_CODES", 2)
    with pytest.raises(ValueError, match="stock_list: 3 codes, at most 2"):
        feed.market_data([], ["600000.SH", "000001.SZ", "300750.SZ"], count=1)
    monkeypatch.setattr(F, "MAX_BARS", 1000)
    with pytest.raises(ValueError, match="start_time/count: the answer would hold"):
        feed.market_data([], ["600000.SH"], "1m", count=2000)


def test_a_market_stands_for_its_codes(make: Callable[..., Market]) -> None:
    ticks = make().feed.full_tick(["SZ"])
    assert list(ticks) == ["000001.SZ", "159915.SZ", "300750.SZ"]


# -- the counter ----------------------------------------------------------------------------


def test_the_counter_pushes_ticks_after_its_steps(table: str) -> None:
    from adapter.sim.counter import SimCounter

    now = [at(10, 0) / 1000]
    counter = SimCounter(SimConfig(instruments_file=table, price_model="walk", tick_interval=3600.0), [ACCOUNT],
                         clock=lambda: now[0])
    pushes: list[dict[str, dict[str, Any]]] = []
    got = threading.Event()

    def on_quotes(ticks: dict[str, dict[str, Any]]) -> None:
        pushes.append(ticks)
        got.set()

    unsubscribe = counter.on_quotes(on_quotes)
    try:
        assert counter.full_tick(["600000.SH"])["600000.SH"]["lastPrice"] == 10.60
        counter.set_price("600000.SH", 10.7)
        assert got.wait(5) and pushes[-1]["600000.SH"]["lastPrice"] == 10.70
        now[0] += 1
        counter.step()
        tick = counter.full_tick(["600000.SH"])["600000.SH"]
        assert tick["lastPrice"] == counter.last_price("600000.SH")
        assert pushes[-1]["600000.SH"] == tick
        assert counter.market_data(["close"], ["600000.SH"], "1d", "", "", 2)["600000.SH"]["close"][0] == 10.60
        assert counter.trading_dates("SH", "20251009", "20251009") == [calendar.day_ms(THURSDAY)]
        with pytest.raises(ValueError, match="stock_list"):
            counter.market_data([], ["nope"])
        unsubscribe()
        count = len(pushes)
        counter.set_price("600000.SH", 10.5)
        assert len(pushes) == count
    finally:
        counter.close()


def test_the_counter_does_not_walk_outside_continuous_trading(table: str) -> None:
    from adapter.sim.counter import SimCounter

    now = [at(12, 0) / 1000]
    counter = SimCounter(
        SimConfig(instruments_file=table, price_model="walk", walk_step=0.01, tick_interval=3600.0, market_hours="exchange"),
        [ACCOUNT], clock=lambda: now[0],
    )
    try:
        counter.full_tick(["600000.SH"])  # in use: the walk would move it
        for _ in range(5):
            counter.step()
        assert counter.last_price("600000.SH") == 10.60  # lunch
        now[0] = at(13, 30) / 1000
        for _ in range(5):
            counter.step()
        assert counter.last_price("600000.SH") != 10.60
        assert counter.full_tick(["600000.SH"])["600000.SH"]["lastPrice"] == counter.last_price("600000.SH")
        now[0] = at(14, 58) / 1000  # the closing auction: SH funds trade on
        counter.full_tick(["510300.SH"])
        stock, fund = counter.last_price("600000.SH"), counter.last_price("510300.SH")
        for _ in range(5):
            counter.step()
        assert counter.last_price("600000.SH") == stock and counter.last_price("510300.SH") != fund
    finally:
        counter.close()


def test_the_counters_walk_leaves_suspended_codes_alone(table: str) -> None:
    from adapter.sim.counter import SimCounter

    config = SimConfig(instruments_file=table, price_model="walk", walk_step=0.01, tick_interval=3600.0,
                       suspended=("000001.SZ",))
    counter = SimCounter(config, [ACCOUNT], clock=lambda: at(10, 0) / 1000)
    try:
        counter.full_tick(["000001.SZ", "600000.SH"])
        for _ in range(5):
            counter.step()
        assert counter.last_price("000001.SZ") == 11.80 and counter.last_price("600000.SH") != 10.60
        assert counter.full_tick(["000001.SZ"])["000001.SZ"]["volume"] == 0
    finally:
        counter.close()


def test_the_counter_process_serves_the_market(table: str, tmp_path: Path) -> None:
    from adapter import sim

    config = SimConfig(instruments_file=table, price_model="walk", tick_interval=0.05)
    process = sim.start_counter_process(tmp_path / "qmt", config, [ACCOUNT])
    try:
        pushes: list[dict[str, dict[str, Any]]] = []
        got = threading.Event()

        def on_quotes(ticks: dict[str, dict[str, Any]]) -> None:
            pushes.append(ticks)
            got.set()

        stop = process.on_quotes(on_quotes)
        tick = process.full_tick(["600000.SH"])["600000.SH"]
        assert tick["lastClose"] == 10.60 and list(tick) == list(F.TICK_FIELDS)
        assert got.wait(10)
        assert set(pushes[-1][next(iter(pushes[-1]))]) == set(F.TICK_FIELDS)
        bars = process.market_data(["close"], ["000001.SZ"], "1d", "", "", 3)
        assert len(bars["000001.SZ"]["close"]) == 3
        seen: list[dict[str, Any]] = []
        assert process.download_history("000001.SZ", "1d", "20250101", "", seen.append) == seen
        with pytest.raises(ValueError, match="period"):
            process.market_data([], ["000001.SZ"], "7m")
        stop()
    finally:
        process.close()


def test_a_quote_socket_gets_one_push_at_a_time_and_the_newest_prices(table: str, tmp_path: Path) -> None:
    """A counter process never queues quotes for a reader: one push in flight per quote socket
    until it says "qack", and meanwhile only the newest tick per code is kept."""
    import msgpack
    import zmq

    from adapter import sim
    from adapter.sim.remote import read_endpoint, read_quotes

    process = sim.start_counter_process(tmp_path / "qmt", SimConfig(instruments_file=table), [ACCOUNT])
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    try:
        endpoint = read_endpoint(tmp_path / "qmt")
        assert endpoint is not None
        socket.connect(endpoint)
        socket.send_multipart([b"quotes", b""])

        def push(timeout_ms: int) -> dict[str, float] | None:
            if not socket.poll(timeout_ms):
                return None
            kind, body = socket.recv_multipart()
            assert kind == b"quotes"
            return {code: msgpack.unpackb(payload)["data"][0]["lastPrice"] for code, payload in read_quotes(body)}

        first = None
        for price in (10.61, 10.62, 10.63, 10.64, 10.65):  # bounded: the subscription may take a moment
            process.set_price("600000.SH", price)
            first = push(1000)
            if first:
                break
        assert first and "600000.SH" in first
        for price in (10.50, 10.51, 10.52):  # no credit: these wait in the counter process, conflated
            process.set_price("600000.SH", price)
        process.set_price("000001.SZ", 11.90)
        assert push(500) is None
        socket.send_multipart([b"qack", b""])
        assert push(5000) == {"600000.SH": 10.52, "000001.SZ": 11.90}
    finally:
        socket.close(0)
        context.term()
        process.close()


def test_a_step_slower_than_the_cadence_is_not_started_again_before_it_ends() -> None:
    """With thousands of codes walking and a cadence shorter than a step, the counter goes on
    with the step under way (in parts, orders between) instead of queueing more steps."""
    from adapter.sim.counter import STEP_PART, SimCounter
    from adapter.sim.instruments import load_instruments

    codes = [code for code, instrument in load_instruments().items() if not instrument.is_index][:3000]
    counter = SimCounter(SimConfig(price_model="walk", tick_interval=0.001, persist=False), [ACCOUNT])
    try:
        counter.full_tick(codes)  # these walk from now on
        parts = -(-len(codes) // STEP_PART)
        most = 0
        for _ in range(40):  # bounded: about 1 s of steps
            most = max(most, counter._call(lambda: len(counter._deferred)))
            threading.Event().wait(0.025)
        assert 0 < most <= parts
    finally:
        counter.close()


def test_a_full_quote_push_reads_back_whole() -> None:
    """A push of QUOTE_PUSH ticks (about half a megabyte) reads back whole, each payload the
    quote PUB's own message; a malformed body reads as no quotes."""
    import msgpack

    from adapter.sim.remote import QUOTE_PUSH, pack_quotes, read_quotes

    tick = {name: 0.0 for name in F.TICK_FIELDS}
    ticks = [(f"{600000 + n:06d}.SH", {**tick, "time": n}) for n in range(QUOTE_PUSH)]
    body = pack_quotes(ticks)
    assert len(body) > 200_000
    pairs = read_quotes(body)
    assert [code for code, _ in pairs] == [code for code, _ in ticks]
    last = msgpack.unpackb(pairs[-1][1])
    assert last["code"] == ticks[-1][0] and last["period"] == "tick" and last["data"][0]["time"] == QUOTE_PUSH - 1
    assert read_quotes(b"\xc1") == [] and read_quotes(msgpack.packb([1, 2])) == []
