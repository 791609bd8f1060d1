"""Money and signed figures for the console (adapter.display has prices, times and statuses)."""

from __future__ import annotations

from typing import Any


def money(value: Any) -> str:
    """CNY with thousands separators and two decimals; '-' when unknown."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:,.2f}"


def signed(value: Any) -> str:
    """A P&L figure: always signed, thousands separated; '-' when unknown."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:+,.2f}"


def signed_pct(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:+.2f}%"
