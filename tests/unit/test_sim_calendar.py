"""The sim's trading calendar: SSE holidays from exchange_calendars, weekdays beyond its range."""

from __future__ import annotations

import datetime as dt

import pytest

from adapter.sim import calendar

D = dt.date


def test_holidays_are_not_trading_days() -> None:
    # National Day 2025: closed 10-01 .. 10-08, open again on Thursday 10-09.
    days = calendar.trading_days(D(2025, 9, 29), D(2025, 10, 10))
    assert days == [D(2025, 9, 29), D(2025, 9, 30), D(2025, 10, 9), D(2025, 10, 10)]
    # Spring Festival 2026: closed 02-16 .. 02-23 (and the weekends around it).
    days = calendar.trading_days(D(2026, 2, 12), D(2026, 2, 25))
    assert days == [D(2026, 2, 12), D(2026, 2, 13), D(2026, 2, 24), D(2026, 2, 25)]
    assert not calendar.is_trading_day(D(2026, 2, 18))
    assert not calendar.is_trading_day(D(2025, 10, 4))  # a Saturday
    assert calendar.is_trading_day(D(2025, 10, 9))


def test_previous_and_next_trading_day_skip_weekends_and_holidays() -> None:
    assert calendar.previous_trading_day(D(2025, 10, 9)) == D(2025, 9, 30)
    assert calendar.next_trading_day(D(2025, 9, 30)) == D(2025, 10, 9)
    assert calendar.previous_trading_day(D(2026, 2, 24)) == D(2026, 2, 13)
    assert calendar.previous_trading_day(D(2025, 12, 8)) == D(2025, 12, 5)  # Monday -> Friday


def test_outside_the_librarys_range_every_weekday_trades() -> None:
    first, last = calendar.covered()
    assert first <= D(1991, 1, 2) and last >= D(2026, 12, 31)
    later = last + dt.timedelta(days=400)
    week = calendar.trading_days(later, later + dt.timedelta(days=6))
    assert len(week) == 5 and all(day.weekday() < 5 for day in week)
    # New Year's Day of a year the library does not know yet is a plain weekday.
    new_year = D(last.year + 2, 1, 1)
    assert calendar.is_trading_day(new_year) == (new_year.weekday() < 5)


def test_last_trading_ordinals_count_back_across_the_range_edges() -> None:
    end = D(2025, 10, 10).toordinal()
    last = calendar.last_trading_ordinals(end, 4)
    assert [D.fromordinal(o) for o in last] == [D(2025, 9, 29), D(2025, 9, 30), D(2025, 10, 9), D(2025, 10, 10)]
    _, covered_last = calendar.covered()
    beyond = covered_last + dt.timedelta(days=10)
    days = calendar.last_trading_ordinals(beyond.toordinal(), 30)
    assert len(days) == 30 and days == sorted(days)
    assert days == calendar.trading_ordinals(days[0], beyond.toordinal())
    assert calendar.last_trading_ordinals(end, 0) == []


def test_days_are_stamped_at_china_midnight_in_epoch_ms() -> None:
    # 2025-10-09 00:00 +08:00 = 2025-10-08 16:00 UTC
    assert calendar.day_ms(D(2025, 10, 9)) == int(dt.datetime(2025, 10, 8, 16, tzinfo=dt.timezone.utc).timestamp()) * 1000
    assert calendar.ms_day(calendar.day_ms(D(2025, 10, 9))) == D(2025, 10, 9)
    assert calendar.ms_day(calendar.day_ms(D(2025, 10, 9)) + calendar.DAY_MS - 1) == D(2025, 10, 9)


def test_markets() -> None:
    assert calendar.check_market("SZ") == "SZ"
    with pytest.raises(ValueError, match="market"):
        calendar.check_market("HK")
