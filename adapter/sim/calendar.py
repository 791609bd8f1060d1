"""Trading days of the Shanghai and Shenzhen exchanges, for the simulated market.

The days come from ``exchange_calendars``' XSHG calendar (the SSE's published holidays; SZSE
and BSE close on the same days). Importing that library costs about a second (pandas), so it
is imported on first use and its days are kept as a set of ordinals.

Outside the library's range (it records holidays from 1990-12 to the end of the year it was
released for) every weekday counts as a trading day: later holidays are not known yet.

Times: China has had no daylight saving since 1991, so Asia/Shanghai is UTC+8 here, a fixed
offset (no tz database needed). xtdata stamps a day as the epoch milliseconds of its local
midnight.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from adapter.market import CHINA

DAY_MS = 86_400_000
MARKETS = frozenset({"SH", "SZ", "BJ"})  # one calendar for the three A-share exchanges


@dataclass(frozen=True)
class _Days:
    first: int  # ordinals of the library's first and last session
    last: int
    ordinals: list[int]  # sorted trading days within [first, last]
    members: frozenset[int]


_lock = threading.Lock()
_days: _Days | None = None


def _load() -> _Days:
    global _days
    with _lock:
        if _days is None:
            from exchange_calendars.exchange_calendar_xshg import XSHGExchangeCalendar

            with warnings.catch_warnings():  # its own pandas deprecations are not ours to show
                warnings.simplefilter("ignore")
                calendar = XSHGExchangeCalendar(start=XSHGExchangeCalendar.bound_min(), end=XSHGExchangeCalendar.bound_max())
            ordinals = [day.toordinal() for day in calendar.sessions.date]
            _days = _Days(ordinals[0], ordinals[-1], ordinals, frozenset(ordinals))
        return _days


def covered() -> tuple[dt.date, dt.date]:
    """The first and last day whose holidays the library knows."""
    days = _load()
    return dt.date.fromordinal(days.first), dt.date.fromordinal(days.last)


def _is_day(ordinal: int, days: _Days) -> bool:
    if days.first <= ordinal <= days.last:
        return ordinal in days.members
    return (ordinal - 1) % 7 < 5  # ordinal 1 (0001-01-01) was a Monday


def is_trading_day(day: dt.date) -> bool:
    return _is_day(day.toordinal(), _load())


def trading_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Trading days in ``[start, end]``, both included, in order."""
    return [dt.date.fromordinal(o) for o in trading_ordinals(start.toordinal(), end.toordinal())]


def trading_ordinals(start: int, end: int) -> list[int]:
    """``trading_days`` as date ordinals (what the history generator works in)."""
    days = _load()
    out: list[int] = []
    if start > end:
        return out
    if start < days.first:  # weekdays before the library's range
        out.extend(o for o in range(start, min(end, days.first - 1) + 1) if (o - 1) % 7 < 5)
    low, high = max(start, days.first), min(end, days.last)
    if low <= high:
        out.extend(days.ordinals[bisect.bisect_left(days.ordinals, low):bisect.bisect_right(days.ordinals, high)])
    if end > days.last:  # weekdays after it
        out.extend(o for o in range(max(start, days.last + 1), end + 1) if (o - 1) % 7 < 5)
    return out


def previous_trading_day(day: dt.date) -> dt.date:
    """The last trading day strictly before ``day``."""
    days = _load()
    ordinal = day.toordinal() - 1
    while not _is_day(ordinal, days):
        ordinal -= 1
    return dt.date.fromordinal(ordinal)


def next_trading_day(day: dt.date) -> dt.date:
    """The first trading day strictly after ``day``."""
    days = _load()
    ordinal = day.toordinal() + 1
    while not _is_day(ordinal, days):
        ordinal += 1
    return dt.date.fromordinal(ordinal)


def last_trading_ordinals(end: int, count: int) -> list[int]:
    """The last ``count`` trading days up to ``end`` (an ordinal, included), oldest first."""
    if count <= 0:
        return []
    days = _load()
    found: list[int] = []
    ordinal = end
    if ordinal > days.last:  # weekdays after the range, one by one (a short stretch)
        while ordinal > days.last and len(found) < count:
            if (ordinal - 1) % 7 < 5:
                found.append(ordinal)
            ordinal -= 1
    if len(found) < count and ordinal >= days.first:
        stop = bisect.bisect_right(days.ordinals, ordinal)
        begin = max(0, stop - (count - len(found)))
        found.extend(reversed(days.ordinals[begin:stop]))
        ordinal = days.first - 1  # only reached again when the range ran out
    while len(found) < count and ordinal >= 1:
        if (ordinal - 1) % 7 < 5:
            found.append(ordinal)
        ordinal -= 1
    found.reverse()
    return found


_UNIX_EPOCH = dt.date(1970, 1, 1).toordinal()
_OFFSET_MS = 8 * 3_600_000


def day_ms(day: dt.date) -> int:
    """Epoch milliseconds of the day's midnight in China, as xtdata stamps days."""
    return ordinal_ms(day.toordinal())


def ordinal_ms(ordinal: Any) -> Any:
    """``day_ms`` of a date ordinal (an int, or a numpy array of them)."""
    return (ordinal - _UNIX_EPOCH) * DAY_MS - _OFFSET_MS


def ms_day(ms: int) -> dt.date:
    """The China date of an epoch-millisecond time."""
    return dt.datetime.fromtimestamp(ms / 1000, CHINA).date()


def check_market(market: str) -> str:
    if market not in MARKETS:
        raise ValueError(f"market: {market!r} is not one of {', '.join(sorted(MARKETS))}")
    return market
