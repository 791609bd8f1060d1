"""Deterministic history bars of the simulated market (days before today).

Every instrument gets daily and intraday bars on the real trading days (``adapter.sim.calendar``)
that end where the counter's market starts: the last history day closes at the instrument's
``prev_close``, every bar lies inside the limit band of the close before it and on the tick.

Determinism: the random draws of a day come from a stream seeded by ``seed`` and the code and
positioned by the day's date, so a day's return, gap, range and volume are the same in every
run and whatever window is asked. Prices are chained backwards from the anchor (the previous
trading day's close), so when the anchor moves (``next_day``) the whole history is rescaled.

Bars as xtdata stamps them (times are epoch ms, China time):

* ``1d``: the day's midnight.
* ``1m``: the minute's end, 241 a day: 09:30 holds the opening call auction (open = high =
  low = close = the auction price), then 09:31 .. 11:30 and 13:01 .. 15:00.
* ``5m`` .. ``1h``: the end of each period counted in trading minutes from 09:30 (``1h``:
  10:30, 11:30, 14:00, 15:00); the 09:30 auction bar is folded into the first period.

The 1m .. 1h bars of a day add up to that day's daily bar (open, high, low, close, volume);
their amounts are each bar's volume at its own average price, so their sum is near the daily
amount, not equal to it. ``volume`` is in lots of 100 shares, as xtdata gives it; ``amount``
in CNY (an index's: its constituents' volume at ``INDEX_SHARE_PRICE`` a share). There are no
dividends: every ``dividend_type`` gives the same bars.

numpy is imported by the generating functions only: the counter builds ``Spec``s at start.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from adapter import market as rules
from adapter.sim import calendar

if TYPE_CHECKING:
    import numpy as np

BAR_FIELDS = (
    "time", "open", "high", "low", "close", "volume", "amount",
    "settelementPrice", "openInterest", "preClose", "suspendFlag",
)  # xtdata's K-line fields, its spelling ("settelementPrice") included
INTRADAY_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60}
BAR_PERIODS = ("1m", "5m", "15m", "30m", "1h", "1d")
LOT = 100  # shares per lot: xtdata's volume unit for A-share bars and ticks
INDEX_SHARE_PRICE = 15.0  # an index's amount: its volume at this average price (CNY), not at the index level

# The trading sessions in minutes of the day (China time): 09:30-11:30, 13:00-15:00.
SESSIONS = ((570, 690), (780, 900))
TRADING_MINUTES = 240
FIRST_DAY = dt.date(1990, 12, 19).toordinal()  # the SSE's first trading day: no history before it
_EPOCH = dt.date(1990, 1, 1).toordinal()  # day index 0 of the draw streams
_DAILY_DRAWS = 7
_MINUTE_DRAWS = 3 * (TRADING_MINUTES + 1) + 2
_STREAM_DAILY, _STREAM_MINUTES = 1, 2


def minute_of_day(trading_minute: int) -> int:
    """Minute of the day (China time) at which trading minute ``m`` (0 = 09:30) ends."""
    return SESSIONS[0][0] + trading_minute if trading_minute <= 120 else SESSIONS[1][0] + trading_minute - 120


@dataclass(frozen=True)
class Spec:
    """What the generator needs of one instrument (prices in ticks: integer units of ``1/scale`` CNY)."""

    code: str
    key: int  # stable per code: seeds its streams
    scale: int  # 100 (tick 0.01) or 1000 (tick 0.001)
    limit_pct: int  # daily band in percent of the previous close
    anchor: int  # the previous trading day's close (the instrument's prev_close), in ticks
    base_lots: float  # a typical day's volume in lots
    sigma: float  # daily volatility
    first_day: int  # ordinal of the listing day: no bars before it
    index: bool = False  # volume and amount are its constituents'


def make_spec(instrument: Any, prev_close: Decimal) -> Spec:
    """The spec of an ``adapter.market.Instrument`` (its optional ``kind``, ``list_date`` and
    ``float_volume`` are used when the table has them)."""
    code = instrument.code
    tick = rules.tick_size(code)
    scale = int(Decimal(1) / tick)
    anchor = max(int(prev_close * scale), 1)
    kind = getattr(instrument, "kind", "stock") or "stock"
    return Spec(
        code=code,
        key=code_key(code),
        scale=scale,
        limit_pct=int(rules.limit_ratio(code, instrument.name) * 100),
        anchor=anchor,
        base_lots=base_lots(instrument, anchor / scale),
        sigma=0.02 if kind == "stock" else 0.012,
        first_day=max(_ordinal(getattr(instrument, "list_date", None)) or FIRST_DAY, FIRST_DAY),
        index=kind == "index",
    )


def code_key(code: str) -> int:
    return zlib.crc32(code.encode("ascii"))


def base_lots(instrument: Any, price: float) -> float:
    """A typical day's volume in lots: 1.5 % of the float when the table has it, else about
    300 million CNY; indices 10 billion shares. Instruments differ by up to 4x, by code."""
    kind = getattr(instrument, "kind", "stock") or "stock"
    float_volume = float(getattr(instrument, "float_volume", 0) or 0)
    if kind == "index":
        lots = 1.0e8
    elif float_volume > 0:
        lots = float_volume * 0.015 / LOT
    else:
        lots = 3.0e8 / max(price, 0.001) / LOT
    return max(lots * (0.5 + (code_key(instrument.code) % 1000) / 1000 * 1.5), 10.0)


def _ordinal(value: Any) -> int | None:
    """A listing date as an ordinal: a date, 20200101, "20200101" or "2020-01-01"; None if unset."""
    if value in (None, "", 0):
        return None
    if isinstance(value, dt.datetime):
        return value.date().toordinal()
    if isinstance(value, dt.date):
        return value.toordinal()
    text = str(value).strip().replace("-", "")
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])).toordinal()
    except ValueError:
        return None


def _uniforms(seed: int, spec: Spec, stream: int, first_index: int, count: int, width: int) -> np.ndarray:
    """``count`` rows of ``width`` uniforms: row i belongs to day index ``first_index + i``
    whatever window is asked (PCG64 jumps ahead; each double takes one 64-bit step)."""
    import numpy as np

    generator = np.random.PCG64(np.random.SeedSequence([seed % (1 << 63), spec.key, stream]))
    generator.advance(first_index * width)
    return np.random.Generator(generator).random((count, width))


def limits(pre: np.ndarray, pct: int) -> tuple[np.ndarray, np.ndarray]:
    """(down, up) in ticks from previous closes in ticks: ``adapter.market.price_limits`` exactly
    (half up to the tick; at least one tick)."""
    import numpy as np

    up = (pre * (100 + pct) + 50) // 100
    down = np.maximum((pre * (100 - pct) + 50) // 100, 1)
    return down, up


@dataclass
class Daily:
    """Daily bars of consecutive trading days (arrays; prices in ticks, volume in lots)."""

    days: np.ndarray  # ordinals
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    pre: np.ndarray
    volume: np.ndarray
    amount: np.ndarray

    def __len__(self) -> int:
        return len(self.days)


def daily(spec: Spec, seed: int, first: int, last: int, anchor_day: int) -> Daily:
    """Daily bars of the trading days in ``[first, last]`` (ordinals; ``last <= anchor_day``),
    chained back from ``spec.anchor``, the close of ``anchor_day``."""
    import numpy as np

    first = max(first, spec.first_day)
    last = min(last, anchor_day)
    chain = np.array(calendar.trading_ordinals(first, anchor_day), dtype=np.int64)
    keep = int(np.searchsorted(chain, last, side="right"))
    if keep == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Daily(empty, empty, empty, empty, empty, empty, empty, np.zeros(0))
    index = chain - _EPOCH
    draws = _uniforms(seed, spec, _STREAM_DAILY, int(index[0]), int(index[-1] - index[0] + 1), _DAILY_DRAWS)
    u = draws[index - index[0]]
    band = spec.limit_pct / 100
    ret = np.clip(spec.sigma * 2 * (u[:, 0] + u[:, 1] + u[:, 2] - 1.5), -0.8 * band, 0.8 * band)
    growth = np.cumprod((1 + ret)[::-1])[::-1]  # growth[i] = product of (1 + ret) over days i..end
    close = np.maximum(np.rint(spec.anchor / np.append(growth[1:], 1.0)), 1).astype(np.int64)
    close[-1] = spec.anchor
    pre = np.empty_like(close)
    pre[1:] = close[:-1]
    pre[0] = max(int(round(close[0] / (1 + ret[0]))), 1)
    down, up = limits(pre, spec.limit_pct)
    if ((close < down) | (close > up)).any():  # rounding at low prices: rare
        _chain_inside_limits(close, pre, spec.limit_pct)
        down, up = limits(pre, spec.limit_pct)
    gap = 0.3 * ret + spec.sigma * 0.25 * (u[:, 3] * 2 - 1)
    opened = np.clip(np.rint(pre * (1 + gap)).astype(np.int64), down, up)
    top, bottom = np.maximum(opened, close), np.minimum(opened, close)
    high = np.clip(np.ceil(top * (1 + spec.sigma * 0.6 * u[:, 4])).astype(np.int64), top, up)
    low = np.clip(np.floor(bottom * (1 - spec.sigma * 0.6 * u[:, 5])).astype(np.int64), down, bottom)
    volume = np.maximum(spec.base_lots * (0.6 + 0.8 * u[:, 6]) * (1 + 8 * np.abs(ret)), 1).astype(np.int64)
    amount = np.round(volume * LOT * _amount_price(spec, opened + high + low + close), 2)
    cut = slice(0, keep)
    return Daily(chain[cut], opened[cut], high[cut], low[cut], close[cut], pre[cut], volume[cut], amount[cut])


def _chain_inside_limits(close: np.ndarray, pre: np.ndarray, pct: int) -> None:
    """Walk back from the anchor: a close outside the band of the close before it pulls that
    one to it (a flat day), so the anchor stays and every day is inside its band."""
    import numpy as np

    for i in range(len(close) - 1, 0, -1):
        down, up = limits(np.array([close[i - 1]]), pct)
        if not down[0] <= close[i] <= up[0]:
            close[i - 1] = close[i]
    pre[1:] = close[:-1]
    down, up = limits(np.array([pre[0]]), pct)
    if not down[0] <= close[0] <= up[0]:
        pre[0] = close[0]


def minutes(spec: Spec, seed: int, days: Daily) -> dict[str, np.ndarray]:
    """1m bars of each day in ``days``: arrays of shape (days, 241), column 0 the 09:30 auction bar."""
    import numpy as np

    n = len(days)
    shape = (n, TRADING_MINUTES + 1)
    out: dict[str, np.ndarray] = {name: np.zeros(shape, dtype=np.int64) for name in ("open", "high", "low", "close", "volume")}
    out["amount"] = np.zeros(shape)
    if n == 0:
        return out
    index = days.days - _EPOCH
    draws = _uniforms(seed, spec, _STREAM_MINUTES, int(index[0]), int(index[-1] - index[0] + 1), _MINUTE_DRAWS)
    steps = np.arange(TRADING_MINUTES + 1)
    shape_weights = 1 + 2 * ((steps - 120.5) / 120) ** 2  # busy at the open and the close
    shape_weights[0] = 3.0  # the opening auction
    m = TRADING_MINUTES + 1
    for row, day_index in enumerate(index - index[0]):
        u = draws[day_index]
        o, h, lo, c = (int(days.open[row]), int(days.high[row]), int(days.low[row]), int(days.close[row]))
        t_high = 1 + int(u[-2] * (TRADING_MINUTES - 1))
        t_low = 1 + int(u[-1] * (TRADING_MINUTES - 1))
        if t_low == t_high:
            t_low = t_high % (TRADING_MINUTES - 1) + 1
        knots = sorted([(0, o), (t_high, h), (t_low, lo), (TRADING_MINUTES, c)])
        knot_t = np.array([k[0] for k in knots])
        knot_v = np.array([k[1] for k in knots], dtype=float)
        walk = np.cumsum(u[:m] - 0.5)
        bridge = walk - np.interp(steps, knot_t, walk[knot_t])
        spread = np.abs(bridge).max()
        noise = bridge * ((h - lo) * 0.3 / spread) if spread > 0 else 0.0
        path = np.clip(np.rint(np.interp(steps, knot_t, knot_v) + noise), lo, h).astype(np.int64)
        path[knot_t] = knot_v.astype(np.int64)
        opened = np.empty(m, dtype=np.int64)
        opened[0] = o
        opened[1:] = path[:-1]
        path[0] = o
        extra = np.floor(u[m:2 * m] * 2.5 - 1).clip(0) * np.maximum((h - lo) // 20, 1)
        top = np.minimum(np.maximum(opened, path) + extra.astype(np.int64), h)
        bottom = np.maximum(np.minimum(opened, path) - extra.astype(np.int64), lo)
        top[0] = bottom[0] = o
        weights = shape_weights * (0.5 + u[2 * m:3 * m])
        volume = np.floor(int(days.volume[row]) * weights / weights.sum()).astype(np.int64)
        volume[int(np.argmax(volume))] += int(days.volume[row]) - int(volume.sum())
        out["open"][row], out["close"][row], out["high"][row], out["low"][row] = opened, path, top, bottom
        out["volume"][row] = volume
    out["amount"] = np.round(out["volume"] * LOT * _amount_price(spec, out["open"] + out["high"] + out["low"] + out["close"]), 2)
    return out


def _amount_price(spec: Spec, ohlc_sum: np.ndarray) -> Any:
    """The average price (CNY) a bar's volume traded at: its mean price, or an index's constituents'."""
    return INDEX_SHARE_PRICE if spec.index else ohlc_sum / 4 / spec.scale


def aggregate(bars: dict[str, np.ndarray], period_minutes: int) -> dict[str, np.ndarray]:
    """1m bars (days, 241) to ``period_minutes`` bars (days, 240 / period); the auction bar
    goes into the first period."""
    import numpy as np

    if period_minutes == 1:
        return bars
    n = bars["open"].shape[0]
    groups = TRADING_MINUTES // period_minutes

    def blocks(name: str) -> np.ndarray:
        return bars[name][:, 1:].reshape(n, groups, period_minutes)

    out = {
        "open": blocks("open")[:, :, 0].copy(),
        "close": blocks("close")[:, :, -1].copy(),
        "high": blocks("high").max(axis=2),
        "low": blocks("low").min(axis=2),
        "volume": blocks("volume").sum(axis=2),
        "amount": blocks("amount").sum(axis=2),
    }
    auction = {name: bars[name][:, 0] for name in bars}
    out["open"][:, 0] = auction["open"]
    out["high"][:, 0] = np.maximum(out["high"][:, 0], auction["high"])
    out["low"][:, 0] = np.minimum(out["low"][:, 0], auction["low"])
    out["volume"][:, 0] += auction["volume"]
    out["amount"][:, 0] += auction["amount"]
    out["amount"] = np.round(out["amount"], 2)
    return out


def bar_minutes(period: str) -> list[int]:
    """Minutes of the day (China time) at which a day's bars of ``period`` are stamped."""
    step = INTRADAY_MINUTES[period]
    first = 0 if step == 1 else step
    return [minute_of_day(m) for m in range(first, TRADING_MINUTES + 1, step)]


def bars(spec: Spec, seed: int, period: str, first: int, last: int, anchor_day: int) -> dict[str, np.ndarray]:
    """History bars of ``period`` on the trading days in ``[first, last]`` (ordinals; days after
    ``anchor_day`` have none): flat columns named as ``BAR_FIELDS``, oldest first."""
    import numpy as np

    days = daily(spec, seed, first, last, anchor_day)
    scale = spec.scale
    if period == "1d":
        count = len(days)
        columns = {
            "time": calendar.ordinal_ms(days.days),
            "open": days.open / scale, "high": days.high / scale, "low": days.low / scale,
            "close": days.close / scale, "volume": days.volume, "amount": days.amount,
            "preClose": days.pre / scale,
        }
    else:
        grid = aggregate(minutes(spec, seed, days), INTRADAY_MINUTES[period])
        per_day = grid["open"].shape[1]
        count = len(days) * per_day
        stamps = np.array(bar_minutes(period), dtype=np.int64) * 60_000
        midnights = calendar.ordinal_ms(days.days)
        close = grid["close"]
        pre = np.empty_like(close)
        pre[:, 1:] = close[:, :-1]
        pre[:, 0] = days.pre  # the first bar of a day follows the day before's close
        columns = {
            "time": (midnights[:, None] + stamps[None, :]).reshape(count),
            "open": grid["open"].reshape(count) / scale, "high": grid["high"].reshape(count) / scale,
            "low": grid["low"].reshape(count) / scale, "close": close.reshape(count) / scale,
            "volume": grid["volume"].reshape(count), "amount": grid["amount"].reshape(count),
            "preClose": pre.reshape(count) / scale,
        }
    columns["settelementPrice"] = np.zeros(count)
    columns["openInterest"] = np.zeros(count, dtype=np.int64)
    columns["suspendFlag"] = np.zeros(count, dtype=np.int64)
    return {name: columns[name] for name in BAR_FIELDS}
