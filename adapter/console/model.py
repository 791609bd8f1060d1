"""What the console shows, kept apart from Textual: books per account, the gateway's state, the
latest events, denials and quotes. No I/O; the app feeds it and draws from it.

Everything is bounded: finished orders leave the books (only working ones are shown), fills,
events and denials are kept up to a count, quotes only for the codes held.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..display import china_time, fmt, format_event, side_name
from ..protocol import events as event_types

EVENTS_KEPT = 200  # rows of the events view
DENIALS_KEPT = 50
FILLS_KEPT = 200  # per account
WORKING = frozenset({48, 49, 50, 51, 55, 255})  # not final: may still trade, or be cancelled
HIDDEN_EVENTS = frozenset({event_types.HEARTBEAT, event_types.PONG})  # the console's own liveness traffic

NORMAL, HALTED, REDUCE_ONLY = "normal", "halted", "reduce_only"


def field_of(record: Any, name: str, default: Any = None) -> Any:
    """A field of a Record or a plain map, ``default`` when it has none."""
    getter = getattr(record, "get", None)
    return getter(name, default) if getter is not None else default


@dataclass
class Books:
    """One account as the console knows it: the snapshot, then the events after ``seq``."""

    account_id: str
    seq: int = -1  # the snapshot's seq: events at or before it are in it already; -1: no snapshot yet
    asset: Any = None
    positions: dict[str, Any] = field(default_factory=dict)  # code -> position record (volume > 0)
    orders: dict[int, Any] = field(default_factory=dict)  # order_id -> working order record
    fills: OrderedDict[Any, Any] = field(default_factory=OrderedDict)  # traded_id -> trade, oldest first

    def add_fill(self, trade: Any, kept: int) -> None:
        key = (field_of(trade, "traded_id"), field_of(trade, "order_id"))
        self.fills[key] = trade
        self.fills.move_to_end(key)
        while len(self.fills) > kept:
            self.fills.popitem(last=False)

    def set_order(self, order: Any) -> None:
        order_id = field_of(order, "order_id")
        if not isinstance(order_id, int) or order_id <= 0:
            return
        if field_of(order, "order_status") in WORKING:
            self.orders[order_id] = order
        else:
            self.orders.pop(order_id, None)

    def set_position(self, position: Any) -> None:
        code = field_of(position, "stock_code")
        if not code:
            return
        if (field_of(position, "volume") or 0) > 0:
            self.positions[code] = position
        else:
            self.positions.pop(code, None)


@dataclass(frozen=True)
class PositionRow:
    code: str
    name: str
    volume: int
    can_use: int
    avg_price: float
    last: float | None
    market_value: float | None
    pnl: float | None  # unrealised: (last - average cost) x volume
    pnl_pct: float | None


class ConsoleModel:
    """The console's state; ``version`` grows with every change, so the screen redraws only then."""

    def __init__(self, events_kept: int = EVENTS_KEPT, denials_kept: int = DENIALS_KEPT,
                 fills_kept: int = FILLS_KEPT) -> None:
        self.version = 0
        self.reachable: bool | None = None  # None: not asked yet
        self.unreachable_since: float | None = None  # wall time of the first failed ping
        self.problem = ""  # why the gateway is not reachable
        self.counter_connected: bool | None = None
        self.trading_state = NORMAL
        self.trading_reason = ""
        self.last_seq: int | None = None
        self.backend = ""
        self.key: Any = None  # ping's key (CURVE), None without
        self.accounts: list[str] = []
        self.books: dict[str, Books] = {}
        self.events: deque[str] = deque(maxlen=events_kept)
        self.denials: deque[tuple[str, str, str, str, str]] = deque(maxlen=denials_kept)
        self.ticks: dict[str, Mapping[str, Any]] = {}
        self.quotes_note = ""  # how quotes arrive (live / polled), or why not
        self.message = ""  # the outcome of the operator's last action
        self._fills_kept = fills_kept
        self._state_seq = 0  # ping's trading state and connection include every event up to this seq

    def _changed(self) -> None:
        self.version += 1

    # -- gateway --------------------------------------------------------------------------

    def on_ping(self, info: Any) -> None:
        self.reachable = True
        self.unreachable_since = None
        self.problem = ""
        self.counter_connected = bool(field_of(info, "connected"))
        self.trading_state = str(field_of(info, "trading_state", NORMAL) or NORMAL)
        self.last_seq = field_of(info, "last_seq")
        self._state_seq = max(self._state_seq, int(self.last_seq or 0))
        self.backend = str(field_of(info, "backend", "") or "")
        self.key = field_of(info, "key")
        accounts = [str(a) for a in field_of(info, "accounts", None) or []]
        if accounts != self.accounts:
            self.accounts = accounts
            for account in accounts:
                self.books.setdefault(account, Books(account))
        self._changed()

    def on_unreachable(self, problem: str, now: float | None = None) -> None:
        if self.reachable is not False:
            self.unreachable_since = time.time() if now is None else now
        self.reachable = False
        self.problem = problem
        self._changed()

    def may(self, right: str) -> bool:
        """Whether this console's key has ``right`` (``admin``, ``trade``); True without CURVE."""
        if self.key is None:
            return True
        return right in (field_of(self.key, "permissions") or [])

    @property
    def key_name(self) -> str:
        return str(field_of(self.key, "name", "") or "")

    def say(self, message: str) -> None:
        self.message = message
        self._changed()

    # -- books ----------------------------------------------------------------------------

    def load(self, snapshot: Any) -> None:
        """An account's snapshot replaces what the console had for it."""
        account = str(field_of(snapshot, "account_id"))
        books = Books(account, seq=int(field_of(snapshot, "seq", 0) or 0), asset=field_of(snapshot, "asset"))
        for position in field_of(snapshot, "positions", None) or []:
            books.set_position(position)
        for order in field_of(snapshot, "orders", None) or []:
            books.set_order(order)
        trades = sorted(field_of(snapshot, "trades", None) or [], key=lambda t: field_of(t, "traded_time") or 0)
        for trade in trades:
            books.add_fill(trade, self._fills_kept)
        self.books[account] = books
        if account not in self.accounts:
            self.accounts.append(account)
        self._changed()

    def apply(self, event: Any) -> bool:
        """Take one event; True when the books must be loaded again (another journal, a gap)."""
        etype = event.type
        if etype in HIDDEN_EVENTS:
            return False
        if event.seq is not None:
            self.last_seq = max(self.last_seq or 0, event.seq)
        data = event.data
        newer = event.seq is None or event.seq > self._state_seq  # replayed history must not undo a ping
        if etype == event_types.TRADING:
            if newer:
                self.trading_state = str(field_of(data, "state", NORMAL))
            if field_of(data, "state") == self.trading_state:
                self.trading_reason = str(field_of(data, "reason", "") or "")
        elif etype == event_types.CONNECTION:
            if newer:
                self.counter_connected = bool(field_of(data, "connected"))
        elif etype == event_types.RISK_DENIED:
            self.denials.appendleft(denial_row(event))
        elif etype == "gateway.liveness":
            if field_of(data, "alive"):
                self.reachable = True
            else:
                self.on_unreachable("no heartbeat from the gateway")
        self.events.appendleft(format_event(event))
        self._changed()
        if etype in ("gateway.epoch", "gateway.gap"):
            return True
        books = self.books.get(event.account_id or "")
        if books is None or (event.seq is not None and event.seq <= books.seq):
            return False  # another account's, or in the snapshot already
        if etype == "order":
            books.set_order(data)
        elif etype == "trade":
            books.add_fill(data, self._fills_kept)
        elif etype == "position":
            books.set_position(data)
        elif etype == "asset":
            books.asset = data
        return False

    def held_codes(self) -> list[str]:
        return sorted({code for books in self.books.values() for code in books.positions})

    def on_ticks(self, ticks: Mapping[str, Mapping[str, Any]]) -> None:
        held = set(self.held_codes())
        for code, tick in ticks.items():
            if code in held and isinstance(tick, Mapping):
                self.ticks[code] = tick
        for code in [c for c in self.ticks if c not in held]:
            del self.ticks[code]  # only the codes held: the map stays bounded
        self._changed()

    # -- views ----------------------------------------------------------------------------

    def last_price(self, code: str, position: Any = None) -> float | None:
        price = field_of(self.ticks.get(code), "lastPrice")
        if isinstance(price, (int, float)) and price > 0:
            return float(price)
        price = field_of(position, "last_price")
        return float(price) if isinstance(price, (int, float)) and price > 0 else None

    def positions(self, account: str) -> list[PositionRow]:
        books = self.books.get(account)
        rows = []
        for code, p in sorted((books.positions if books else {}).items()):
            volume = int(field_of(p, "volume") or 0)
            avg = float(field_of(p, "avg_price") or field_of(p, "open_price") or 0.0)
            last = self.last_price(code, p)
            value = last * volume if last is not None else field_of(p, "market_value")
            pnl = (last - avg) * volume if last is not None and avg > 0 else None
            pct = (last / avg - 1) * 100 if last is not None and avg > 0 else None
            name = str(field_of(p, "instrument_name") or field_of(self.ticks.get(code), "instrumentName") or "")
            rows.append(PositionRow(code, name, volume, int(field_of(p, "can_use_volume") or 0), avg, last,
                                    value, pnl, pct))
        return rows

    def pnl(self, account: str) -> float | None:
        values = [row.pnl for row in self.positions(account) if row.pnl is not None]
        return sum(values) if values else None

    def working_orders(self, account: str) -> list[Any]:
        books = self.books.get(account)
        orders = list(books.orders.values()) if books else []
        return sorted(orders, key=lambda o: (field_of(o, "order_time") or 0, field_of(o, "order_id") or 0),
                      reverse=True)

    def fills(self, account: str) -> list[Any]:
        books = self.books.get(account)
        return list(reversed(books.fills.values())) if books else []


def denial_row(event: Any) -> tuple[str, str, str, str, str]:
    """A risk denial as (time, account, rule, the order, the gateway's message)."""
    d = event.data
    side = side_name(field_of(d, "order_type")) if field_of(d, "order_type") is not None else ""
    volume, price = field_of(d, "order_volume"), field_of(d, "price")
    what = " ".join(str(x) for x in (
        field_of(d, "stock_code") or "", side, f"{volume}@{fmt(price)}" if volume else "",
        f"order {field_of(d, 'order_id')}" if field_of(d, "order_id") else "",
    ) if x)
    return (china_time(event.ts // 1_000_000, "%H:%M:%S"), event.account_id or "-", str(field_of(d, "rule", "?")),
            what or str(field_of(d, "op", "")), str(field_of(d, "message", "") or ""))
