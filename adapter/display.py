"""Text for people: numbers, times, sides, statuses, tables and events as the CLI and console show them."""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from .protocol import mapping


def format_event(event: Any) -> str:
    """One readable line per event, for ``tail``."""
    d = event.data
    when = dt.datetime.fromtimestamp(event.ts / 1e9).strftime("%H:%M:%S.%f")[:-3]
    head = f"#{event.seq} {when} {event.type:<14} {event.account_id or '-':<11}"
    etype = event.type
    if etype == "order":
        body = (
            f"{d.stock_code} {side_name(d.order_type)} {d.order_volume}@{fmt(d.price)} "
            f"{status_name(d.order_status)} traded {d.traded_volume}@{fmt(d.traded_price)} order_id={d.order_id}"
            + (f" msg={d.status_msg!r}" if d.status_msg else "")
        )
    elif etype == "trade":
        body = (
            f"{d.stock_code} {side_name(d.order_type)} {d.traded_volume}@{fmt(d.traded_price)} "
            f"amount={fmt(d.traded_amount)} commission={fmt(d.commission)} order_id={d.order_id} traded_id={d.traded_id}"
        )
    elif etype == "position":
        body = (
            f"{d.stock_code} volume={d.volume} can_use={d.can_use_volume} frozen={d.frozen_volume} "
            f"avg={fmt(d.avg_price)} market_value={fmt(d.market_value)}"
        )
    elif etype == "asset":
        body = (
            f"cash={fmt(d.cash)} frozen={fmt(d.frozen_cash)} market_value={fmt(d.market_value)} "
            f"total={fmt(d.total_asset)}"
        )
    elif etype in ("order_error", "cancel_error"):
        body = f"order_id={d.order_id} error_id={d.error_id} {d.error_msg}"
    elif etype == "order_response":
        body = f"seq={d.seq} order_id={d.order_id}" + (f" error={d.error_msg!r}" if d.error_msg else "")
    elif etype == "cancel_response":
        body = f"seq={d.seq} order_id={d.order_id} cancel_result={d.cancel_result}" + (
            f" error={d.error_msg!r}" if d.error_msg else ""
        )
    elif etype == "account_status":
        body = f"status={d.status}"
    elif etype == "gateway.connection":
        body = f"connected={d.connected} {d.reason}"
    else:
        body = " ".join(f"{k}={v!r}" for k, v in d.to_dict().items())
    return f"{head} {body}"


def fmt(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4f}".rstrip("0")  # at least two decimals, more only when they carry a value
        return text + "0" * max(0, 2 - len(text.split(".")[1]))
    return "-" if value is None else str(value)


def side_name(order_type: Any) -> str:
    return mapping.ORDER_TYPE_NAMES.get(order_type, str(order_type))


def status_name(status: Any) -> str:
    return f"{status}({mapping.ORDER_STATUS_NAMES.get(status, '?')})"


def clock(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)) or epoch <= 0:
        return "-"
    return dt.datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [list(headers)] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    if not rows:
        print("(none)")


def china_time(ms: Any, pattern: str) -> str:
    if not isinstance(ms, (int, float)) or ms <= 0:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone(dt.timedelta(hours=8))).strftime(pattern)


def format_quote(code: str, name: str, tick: dict[str, Any]) -> str:
    """One line per code, for ``quote``: last, change against the previous close, the book's
    best levels (0 there: no level, e.g. at a price limit), volume (lots), time (China)."""
    last, close = tick.get("lastPrice"), tick.get("lastClose")
    change = f"{(last - close) / close * 100:+.2f}%" if isinstance(last, float) and close else "-"
    bid = (tick.get("bidPrice") or [0])[0]
    ask = (tick.get("askPrice") or [0])[0]
    book = f"{fmt(bid) if bid else '-'}/{fmt(ask) if ask else '-'}"
    return (f"{code:<10} {pad(name, 10)} {fmt(last):>9} {change:>8}  bid/ask {book:<13} "
            f"vol {tick.get('volume', '-'):<10} {china_time(tick.get('time'), '%H:%M:%S')}")


def pad(text: str, width: int) -> str:
    """Left-aligned in ``width`` terminal columns: a Chinese character takes two."""
    import unicodedata

    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - used)
