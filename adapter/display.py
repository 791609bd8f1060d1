"""Text for people: numbers, times, sides, statuses, tables and events as the CLI and console show them.

Words are the trader's, in Chinese as QMT shows them and in English (``56 已成 filled``). Times are
exchange time (China, UTC+8) unless a zone is given. Widths are terminal columns (``wcwidth``): a
Chinese character takes two, so tables with instrument names stay aligned.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Sequence

from wcwidth import wcswidth, wcwidth

from .market import CHINA
from .protocol import mapping

EXCHANGE_ZONE: dt.tzinfo = CHINA  # A-shares trade on China time, whatever the host's zone
ELLIPSIS = "…"

# xtconstant's order statuses: QMT's own words, then a trader's English.
STATUS_WORDS: dict[int, tuple[str, str]] = {
    48: ("未报", "unreported"),
    49: ("待报", "pending"),
    50: ("已报", "reported"),
    51: ("已报待撤", "cancel pending"),
    52: ("部成待撤", "part filled, cancel pending"),
    53: ("部撤", "part cancelled"),
    54: ("已撤", "cancelled"),
    55: ("部成", "part filled"),
    56: ("已成", "filled"),
    57: ("废单", "rejected"),
    255: ("未知", "unknown"),
}
SIDE_WORDS: dict[int, tuple[str, str]] = {mapping.STOCK_BUY: ("买入", "buy"), mapping.STOCK_SELL: ("卖出", "sell")}
# xtconstant.ACCOUNT_STATUS_*: QMT's words for the account's login state.
ACCOUNT_STATUS_WORDS: dict[int, tuple[str, str]] = {
    -1: ("无效", "invalid"),
    0: ("正常", "ok"),
    1: ("连接中", "connecting"),
    2: ("登录中", "logging in"),
    3: ("失败", "failed"),
    4: ("初始化中", "initialising"),
    5: ("数据刷新校正中", "correcting data"),
    6: ("收盘后", "closed for the day"),
    7: ("穿透副链接断开", "secondary link down"),
    8: ("系统停用", "disabled by the system"),
    9: ("用户停用", "disabled by the user"),
}
TRADING_WORDS = {
    "normal": "trading normal: orders accepted",
    "halted": "trading HALTED: no new orders until 'qmt-adapter resume'",
    "reduce_only": "trading REDUCE-ONLY: only orders that shrink positions",
}


# -- words -----------------------------------------------------------------------------------


def status_name(status: Any) -> str:
    """``56 已成 filled``; a status xtquant does not define: ``77 ?``."""
    words = STATUS_WORDS.get(status) if isinstance(status, int) else None
    return f"{status} {words[0]} {words[1]}" if words else f"{status} ?"


def side_name(order_type: Any) -> str:
    """``买入 buy`` / ``卖出 sell``; another order type as its number."""
    words = SIDE_WORDS.get(order_type) if isinstance(order_type, int) else None
    return f"{words[0]} {words[1]}" if words else str(order_type)


def account_status_name(status: Any) -> str:
    words = ACCOUNT_STATUS_WORDS.get(status) if isinstance(status, int) else None
    return f"{status} {words[0]} {words[1]}" if words else f"{status} ?"


def fmt(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4f}".rstrip("0")  # at least two decimals, more only when they carry a value
        return text + "0" * max(0, 2 - len(text.split(".")[1]))
    return "-" if value is None else str(value)


def format_size(size: Any) -> str:
    """Bytes in MB, as the README counts them (10**6)."""
    if not isinstance(size, (int, float)) or isinstance(size, bool):
        return "-"
    return f"{size / 1e6:.1f} MB"


# -- times -----------------------------------------------------------------------------------


def zone_label(zone: dt.tzinfo | None = None) -> str:
    """``UTC+8`` for exchange time (None); another zone by its offset now, e.g. ``UTC-5``."""
    offset = dt.datetime.now(zone or EXCHANGE_ZONE).utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def local_zone() -> dt.tzinfo:
    """This host's zone (for ``--local-time``)."""
    zone = dt.datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def time_of_day(epoch: Any, zone: dt.tzinfo | None = None, pattern: str = "%H:%M:%S") -> str:
    """Seconds since the epoch as a time in ``zone`` (None: exchange time); ``-`` for none."""
    if not isinstance(epoch, (int, float)) or isinstance(epoch, bool) or epoch <= 0:
        return "-"
    return dt.datetime.fromtimestamp(epoch, zone or EXCHANGE_ZONE).strftime(pattern)


def clock(epoch: Any) -> str:
    """Seconds since the epoch as ``HH:MM:SS`` exchange time (UTC+8)."""
    return time_of_day(epoch)


def china_time(ms: Any, pattern: str) -> str:
    if not isinstance(ms, (int, float)) or ms <= 0:
        return "-"
    return time_of_day(ms / 1000, EXCHANGE_ZONE, pattern)


# -- widths and tables -----------------------------------------------------------------------


def width(text: str) -> int:
    """Terminal columns ``text`` takes: a Chinese character two, a combining mark none."""
    columns = wcswidth(text)
    if columns >= 0:
        return int(columns)
    return sum(max(0, wcwidth(ch)) for ch in text)  # control characters count as nothing


def pad(text: str, columns: int) -> str:
    """Left-aligned in ``columns`` terminal columns: a Chinese character takes two."""
    return text + " " * max(0, columns - width(text))


def pad_left(text: str, columns: int) -> str:
    """Right-aligned in ``columns`` terminal columns."""
    return " " * max(0, columns - width(text)) + text


def truncate(text: str, columns: int) -> str:
    """``text`` cut to ``columns`` terminal columns, an ellipsis marking the cut."""
    if width(text) <= columns:
        return text
    if columns <= 0:
        return ""
    kept, used = [], 0
    for ch in text:
        w = max(0, wcwidth(ch))
        if used + w > columns - 1:
            break
        kept.append(ch)
        used += w
    return "".join(kept) + ELLIPSIS


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table_lines(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    max_width: int | None = None,
    shrink: Sequence[int | Sequence[int]] = (),
    gap: int = 2,
) -> list[str]:
    """A table as lines: columns as wide as their widest cell in terminal columns, numbers
    right-aligned (a column whose values are all numbers or None, header included).

    ``max_width``: when the table is wider, the columns named in ``shrink`` are cut, their cells
    ending in an ellipsis, down to one column each: each entry a column index or a group of them
    (cut together, the widest first), entries in turn.
    """
    texts = [[fmt(v) for v in row] for row in rows]
    numeric = [bool(rows) and all(_is_number(row[i]) or row[i] is None for row in rows) for i in range(len(headers))]
    widths = [max([width(h)] + [width(row[i]) for row in texts]) for i, h in enumerate(headers)]
    if max_width is not None:
        excess = sum(widths) + gap * (len(widths) - 1) - max_width
        for entry in shrink:
            group = [entry] if isinstance(entry, int) else list(entry)
            while excess > 0:  # the group's widest column gives up a column, until the table fits
                widest = max(group, key=lambda i: widths[i])
                if widths[widest] <= 1:
                    break
                widths[widest] -= 1
                excess -= 1
    lines = []
    for row in [list(headers)] + texts:
        cells = [
            pad_left(truncate(cell, w), w) if numeric[i] else pad(truncate(cell, w), w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append((" " * gap).join(cells).rstrip())
    if not rows:
        lines.append("(none)")
    return lines


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print :func:`table_lines`."""
    for line in table_lines(headers, rows):
        print(line)


# -- orders and fills ------------------------------------------------------------------------


def price_text(price: Any, price_type: Any = None) -> str:
    """An order's price: the limit, or the price type's name for market orders (price 0)."""
    if isinstance(price_type, int) and price_type != 50 and price_type in mapping.BROKER_PRICE_TYPE_NAMES:
        return mapping.BROKER_PRICE_TYPE_NAMES[price_type]
    return fmt(price)


def describe_order(d: Mapping[str, Any]) -> str:
    """``600000.SH 浦发银行 买入 buy 200 @ 10.70: 56 已成 filled, 200 traded @ 10.60; order 12``."""
    name = d.get("instrument_name") or ""
    traded = d.get("traded_volume") or 0
    text = (
        f"{d.get('stock_code')}{' ' + name if name else ''} {side_name(d.get('order_type'))} "
        f"{d.get('order_volume')} @ {price_text(d.get('price'), d.get('price_type'))}: "
        f"{status_name(d.get('order_status'))}"
        + (f", {traded} traded @ {fmt(d.get('traded_price'))}" if traded else "")
        + f"; order {d.get('order_id')}"
    )
    message = d.get("status_msg")
    return text + (f" ({message})" if message else "")


def describe_fill(d: Mapping[str, Any]) -> str:
    """One trade: ``filled 200 @ 10.60 = 2120.00, commission 5.00 (trade 0000000020000001)``."""
    return (
        f"filled {d.get('traded_volume')} @ {fmt(d.get('traded_price'))} = {fmt(d.get('traded_amount'))}, "
        f"commission {fmt(d.get('commission'))} (trade {d.get('traded_id')})"
    )


ORDERS_WIDTH = 120  # the orders table fits a 120-column terminal unless asked wide


def orders_table(orders: Sequence[Any], zone: dt.tzinfo | None = None, wide: bool = False) -> list[str]:
    """Today's orders as table lines: time in ``zone`` (None: exchange time), side and status in
    words, numbers right-aligned; at most :data:`ORDERS_WIDTH` columns, the client order id and
    the counter's message cut to fit. ``wide``: nothing cut, and the order remark too."""
    rows = [
        [
            time_of_day(o.get("order_time"), zone),
            o.get("order_id"),
            o.get("stock_code"),
            side_name(o.get("order_type")),
            o.get("order_volume"),
            price_text(o.get("price"), o.get("price_type")),
            o.get("traded_volume"),
            o.get("traded_price") if o.get("traded_volume") else None,
            status_name(o.get("order_status")),
            o.get("client_order_id") or "",
        ]
        + ([o.get("order_remark") or ""] if wide else [])
        + [o.get("status_msg") or ""]
        for o in orders
    ]
    headers = [f"time ({zone_label(zone)})", "order_id", "code", "side", "volume", "price", "traded", "avg",
               "status", "client_order_id"] + (["remark"] if wide else []) + ["message"]
    # The client order id and the message first; the status only when nothing else is left.
    return table_lines(headers, rows, max_width=None if wide else ORDERS_WIDTH, shrink=((9, 10), 8))


# -- events ----------------------------------------------------------------------------------


def format_event(event: Any, zone: dt.tzinfo | None = None) -> str:
    """One readable line per event, for ``tail``: ``#seq time type account sentence``; the time
    in ``zone`` (None: exchange time, UTC+8)."""
    when = time_of_day(event.ts / 1e9, zone, "%H:%M:%S.%f")[:-3]
    head = f"#{event.seq if event.seq is not None else '-'} {when} {event.type:<14} {event.account_id or '-':<11}"
    body = describe_event(event.type, event.data)
    return f"{head} {body}" + (" [reconciled]" if getattr(event, "reconciled", False) else "")


def describe_event(etype: str, d: Mapping[str, Any]) -> str:
    """What an event says, as a sentence (the event's fields otherwise)."""
    describe = _DESCRIBERS.get(etype)
    if describe is not None:
        try:
            return describe(d)
        except (KeyError, TypeError, ValueError):  # a field missing or of another type: the fields
            pass
    return ", ".join(f"{key} {fmt(d.get(key))}" for key in d.keys())


def _trade(d: Mapping[str, Any]) -> str:
    return (
        f"{d.get('stock_code')} {side_name(d.get('order_type'))} {describe_fill(d)}; order {d.get('order_id')}"
    )


def _position(d: Mapping[str, Any]) -> str:
    name = d.get("instrument_name") or ""
    return (
        f"{d.get('stock_code')}{' ' + name if name else ''}: {d.get('volume')} shares held, "
        f"{d.get('can_use_volume')} sellable, {d.get('frozen_volume')} frozen, avg cost {fmt(d.get('avg_price'))}, "
        f"market value {fmt(d.get('market_value'))}"
    )


def _asset(d: Mapping[str, Any]) -> str:
    return (
        f"cash {fmt(d.get('cash'))}, frozen {fmt(d.get('frozen_cash'))}, market value {fmt(d.get('market_value'))}, "
        f"total {fmt(d.get('total_asset'))}"
    )


def _order_error(d: Mapping[str, Any]) -> str:
    order_id = d.get("order_id")
    which = f"order {order_id}" if isinstance(order_id, int) and order_id > 0 else "order"
    return f"{which} refused by the counter (error {d.get('error_id')}): {d.get('error_msg')}"


def _cancel_error(d: Mapping[str, Any]) -> str:
    return f"cancel of order {d.get('order_id')} refused by the counter (error {d.get('error_id')}): {d.get('error_msg')}"


def _order_response(d: Mapping[str, Any]) -> str:
    order_id = d.get("order_id")
    if isinstance(order_id, int) and order_id > 0:
        return f"order {order_id} accepted by the counter (request seq {d.get('seq')})"
    return f"order refused by the counter (request seq {d.get('seq')}): {d.get('error_msg') or 'no order id'}"


def _cancel_response(d: Mapping[str, Any]) -> str:
    if d.get("cancel_result") == 0:
        return f"cancel of order {d.get('order_id')} sent to the exchange (request seq {d.get('seq')})"
    return f"cancel of order {d.get('order_id')} failed (request seq {d.get('seq')}): {d.get('error_msg') or 'refused'}"


def _connection(d: Mapping[str, Any]) -> str:
    reason = d.get("reason") or ""
    if d.get("connected"):
        return "counter connected" + (f" ({reason})" if reason else "")
    return "counter connection LOST" + (f" ({reason})" if reason else "") + "; orders are refused until it is back"


def _trading(d: Mapping[str, Any]) -> str:
    state = d.get("state")
    text = TRADING_WORDS.get(state, f"trading {state}") if isinstance(state, str) else f"trading {state}"
    reason = d.get("reason")
    return text + (f" ({reason})" if reason else "") + ("; cancelling every open order" if d.get("cancel_open") else "")


def _risk_denied(d: Mapping[str, Any]) -> str:
    if str(d.get("op") or "").startswith("cancel"):
        what = f"cancel of order {d.get('order_id')}"
    else:
        what = (f"{side_name(d.get('order_type'))} {d.get('stock_code')} {d.get('order_volume')} @ "
                f"{fmt(d.get('price'))}")
    return f"risk rule {d.get('rule')} refused {what}: {d.get('message')}"


def _storage(d: Mapping[str, Any]) -> str:
    if d.get("ok"):
        return f"storage: the {d.get('store')} store works again"
    return (f"storage FAILED: the {d.get('store')} store: {d.get('error')}; order entry is halted until "
            "'qmt-adapter resume'")


def _liveness(d: Mapping[str, Any]) -> str:
    if d.get("alive"):
        return "the gateway is heard again"
    return (f"no heartbeat from the gateway for {fmt(float(d.get('silent_for') or 0))} s: it is down or cut off "
            f"(last seq {d.get('last_seq')}); waiting for it to come back")


def _epoch(d: Mapping[str, Any]) -> str:
    return (f"the gateway serves another journal ({d.get('old_epoch')} -> {d.get('new_epoch')}); events continue "
            f"after its seq {d.get('resume_after')}: take a fresh snapshot")


def _gap(d: Mapping[str, Any]) -> str:
    kept = d.get("first_kept")
    why = f"the journal keeps events from seq {kept} on" if kept is not None else "the journal could not be read"
    return f"events {d.get('from_seq')}..{d.get('to_seq')} are lost ({why}): take a fresh snapshot"


_DESCRIBERS: dict[str, Any] = {
    "order": describe_order,
    "trade": _trade,
    "position": _position,
    "asset": _asset,
    "order_error": _order_error,
    "cancel_error": _cancel_error,
    "order_response": _order_response,
    "cancel_response": _cancel_response,
    "account_status": lambda d: f"account status {account_status_name(d.get('status'))}",
    "gateway.connection": _connection,
    "gateway.trading": _trading,
    "risk_denied": _risk_denied,
    "gateway.storage": _storage,
    "gateway.liveness": _liveness,
    "gateway.epoch": _epoch,
    "gateway.gap": _gap,
    "gateway.pong": lambda d: f"pong to request {d.get('id')} (last seq {d.get('last_seq')})",
    "gateway.heartbeat": lambda d: (f"heartbeat: last seq {d.get('last_seq')}, counter "
                                    f"{'connected' if d.get('connected') else 'NOT connected'}"),
}


# -- quotes ----------------------------------------------------------------------------------


def format_quote(code: str, name: str, tick: dict[str, Any]) -> str:
    """One line per code, for ``quote``: last, change against the previous close, the book's
    best levels (0 there: no level, e.g. at a price limit), volume (lots), time (China, labelled UTC+8)."""
    last, close = tick.get("lastPrice"), tick.get("lastClose")
    change = f"{(last - close) / close * 100:+.2f}%" if isinstance(last, float) and close else "-"
    bid = (tick.get("bidPrice") or [0])[0]
    ask = (tick.get("askPrice") or [0])[0]
    book = f"{fmt(bid) if bid else '-'}/{fmt(ask) if ask else '-'}"
    return (f"{code:<10} {pad(name, 10)} {fmt(last):>9} {change:>8}  bid/ask {book:<13} "
            f"vol {tick.get('volume', '-'):<10} {china_time(tick.get('time'), '%H:%M:%S')} {zone_label()}")
