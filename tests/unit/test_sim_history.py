"""The sim's history bars: real trading days, ending at today's reference price, inside the
limit bands, on tick, deterministic, and the intraday bars adding up to the daily ones."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from adapter import market as rules
from adapter.sim import calendar, history

D = dt.date
ANCHOR = D(2025, 10, 9).toordinal()  # "yesterday" when today is Friday 2025-10-10


def instrument(code: str, prev_close: str, name: str = "测试", **extra: Any) -> Any:
    price = Decimal(prev_close)
    return SimpleNamespace(code=code, name=name, prev_close=price, last_price=price, **extra)


def spec(code: str = "600000.SH", prev_close: str = "10.60", name: str = "浦发银行", **extra: Any) -> history.Spec:
    inst = instrument(code, prev_close, name, **extra)
    return history.make_spec(inst, inst.prev_close)


def first_of_last(days: int) -> int:
    return calendar.last_trading_ordinals(ANCHOR, days)[0]


def china(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, calendar.CHINA)


def test_daily_history_ends_at_the_reference_price_on_real_trading_days() -> None:
    s = spec()
    bars = history.bars(s, 1, "1d", first_of_last(250), ANCHOR, ANCHOR)
    assert list(bars) == list(history.BAR_FIELDS)
    assert len(bars["time"]) == 250
    assert bars["close"][-1] == 10.60  # yesterday's close is today's prev_close
    days = [china(int(t)) for t in bars["time"]]
    assert all(d.hour == 0 and d.minute == 0 for d in days)  # stamped at China midnight
    assert days[-1].date() == D(2025, 10, 9) and days[-2].date() == D(2025, 9, 30)  # National Day is absent
    assert all(calendar.is_trading_day(d.date()) for d in days)
    assert (np.diff(bars["time"]) > 0).all()


@pytest.mark.parametrize(
    ("code", "prev_close", "name"),
    [("600000.SH", "10.60", "浦发银行"), ("600696.SH", "4.20", "ST岩石"), ("300750.SZ", "265.00", "宁德时代"),
     ("688981.SH", "88.00", "中芯国际"), ("430047.BJ", "13.50", "诺思兰德"), ("159915.SZ", "2.200", "创业板ETF"),
     ("000001.SZ", "1.05", "低价")],
)
def test_every_bar_is_on_tick_and_inside_the_band_of_the_close_before(code: str, prev_close: str, name: str) -> None:
    s = spec(code, prev_close, name)
    bars = history.bars(s, 7, "1d", first_of_last(500), ANCHOR, ANCHOR)
    assert bars["close"][-1] == float(prev_close)
    scale = s.scale
    pre = bars["preClose"]
    assert (pre[1:] == bars["close"][:-1]).all()
    for i in range(len(pre)):
        down, up = rules.price_limits(code, name, Decimal(str(pre[i])))
        for field in ("open", "high", "low", "close"):
            price = Decimal(str(bars[field][i]))
            assert down <= price <= up, (field, i, price, down, up)
            assert (price * scale) % 1 == 0  # on tick
    assert (bars["high"] >= np.maximum(bars["open"], bars["close"])).all()
    assert (bars["low"] <= np.minimum(bars["open"], bars["close"])).all()
    # volume in lots, amount in CNY at a price within the day's range
    average = bars["amount"] / (bars["volume"] * history.LOT)
    assert (bars["volume"] > 0).all()
    assert (average >= bars["low"] - 1e-9).all() and (average <= bars["high"] + 1e-9).all()
    assert (bars["suspendFlag"] == 0).all() and (bars["settelementPrice"] == 0).all()


def test_bars_are_the_same_whatever_window_is_asked() -> None:
    s = spec()
    long = history.bars(s, 3, "1d", first_of_last(300), ANCHOR, ANCHOR)
    short = history.bars(s, 3, "1d", first_of_last(20), ANCHOR, ANCHOR)
    assert (long["close"][-20:] == short["close"]).all() and (long["volume"][-20:] == short["volume"]).all()
    ending_earlier = history.bars(s, 3, "1d", first_of_last(300), first_of_last(10), ANCHOR)
    assert (ending_earlier["close"] == long["close"][:291]).all()
    assert not (history.bars(s, 4, "1d", first_of_last(20), ANCHOR, ANCHOR)["close"] == short["close"]).all()


def test_history_is_the_same_in_another_process() -> None:
    script = (
        "import json; from decimal import Decimal; from types import SimpleNamespace; from adapter.sim import history, calendar\n"
        "inst = SimpleNamespace(code='000001.SZ', name='平安银行', prev_close=Decimal('11.80'))\n"
        f"s = history.make_spec(inst, inst.prev_close); a = {ANCHOR}\n"
        "b = history.bars(s, 5, '1m', calendar.last_trading_ordinals(a, 2)[0], a, a)\n"
        "print(json.dumps([b['close'].tolist(), b['volume'].tolist()]))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=True)
    inst = instrument("000001.SZ", "11.80", "平安银行")
    here = history.bars(history.make_spec(inst, inst.prev_close), 5, "1m", first_of_last(2), ANCHOR, ANCHOR)
    assert json.loads(out.stdout) == [here["close"].tolist(), here["volume"].tolist()]


def test_minute_bars_are_stamped_as_xtdata_stamps_them() -> None:
    s = spec()
    bars = history.bars(s, 1, "1m", first_of_last(2), ANCHOR, ANCHOR)
    assert len(bars["time"]) == 2 * 241
    day = [china(int(t)).strftime("%H:%M") for t in bars["time"][241:]]
    assert day[:3] == ["09:30", "09:31", "09:32"]  # 09:30: the opening auction
    assert day[120:123] == ["11:30", "13:01", "13:02"] and day[-1] == "15:00"
    assert china(int(bars["time"][241])).date() == D(2025, 10, 9)
    auction = slice(241, 242)
    assert bars["open"][auction] == bars["high"][auction] == bars["low"][auction] == bars["close"][auction]
    stamps = {
        "5m": ["09:35", "09:40"], "15m": ["09:45", "10:00"], "30m": ["10:00", "10:30"],
        "1h": ["10:30", "11:30", "14:00", "15:00"],
    }
    for period, first in stamps.items():
        got = [china(int(t)).strftime("%H:%M") for t in history.bars(s, 1, period, ANCHOR, ANCHOR, ANCHOR)["time"]]
        assert got[: len(first)] == first and got[-1] == "15:00"
        assert len(got) == 240 // history.INTRADAY_MINUTES[period]


def test_intraday_bars_add_up_to_the_daily_bar() -> None:
    s = spec("300750.SZ", "265.00", "宁德时代")
    first = first_of_last(5)
    daily = history.bars(s, 2, "1d", first, ANCHOR, ANCHOR)
    for period in history.INTRADAY_MINUTES:
        bars = history.bars(s, 2, period, first, ANCHOR, ANCHOR)
        per_day = len(bars["time"]) // 5
        for k in range(5):
            day = slice(k * per_day, (k + 1) * per_day)
            assert bars["open"][day][0] == daily["open"][k] and bars["close"][day][-1] == daily["close"][k]
            assert bars["high"][day].max() == daily["high"][k] and bars["low"][day].min() == daily["low"][k]
            assert bars["volume"][day].sum() == daily["volume"][k]
            assert bars["amount"][day].sum() == pytest.approx(daily["amount"][k], rel=0.02)
            assert bars["preClose"][day][0] == daily["preClose"][k]
            assert (bars["high"][day] >= np.maximum(bars["open"][day], bars["close"][day])).all()
            assert (bars["low"][day] <= np.minimum(bars["open"][day], bars["close"][day])).all()


def test_no_bars_before_the_listing_day() -> None:
    listed = D(2025, 9, 25)
    s = spec(list_date=listed.strftime("%Y%m%d"))
    bars = history.bars(s, 1, "1d", first_of_last(100), ANCHOR, ANCHOR)
    assert china(int(bars["time"][0])).date() == listed
    assert len(bars["time"]) == len(calendar.trading_days(listed, D(2025, 10, 9)))
    assert bars["close"][-1] == 10.60
    nothing = history.bars(s, 1, "1d", first_of_last(100), D(2025, 9, 1).toordinal(), ANCHOR)
    assert len(nothing["time"]) == 0 and list(nothing) == list(history.BAR_FIELDS)


def test_a_volume_from_the_float_and_indices() -> None:
    with_float = spec(float_volume=1_000_000_000)
    assert with_float.base_lots == pytest.approx(1_000_000_000 * 0.015 / 100 * (0.5 + with_float.key % 1000 / 1000 * 1.5))
    index = spec("000001.SZ", "3900.00", "指数", kind="index")  # the kind, not the code, makes an index here
    assert index.sigma < spec().sigma
    bars = history.bars(index, 1, "1d", first_of_last(5), ANCHOR, ANCHOR)
    assert bars["close"][-1] == 3900.00
    # an index's amount is its constituents' volume at their prices, not at the index level
    assert (bars["amount"] == bars["volume"] * history.LOT * history.INDEX_SHARE_PRICE).all()
