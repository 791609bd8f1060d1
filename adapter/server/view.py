"""The gateway's own view of each account's books, kept in event order (the Clone pattern).

Loaded from the start-up queries, then updated by every order, trade, position and asset
event as it is numbered, so ``snapshot`` returns the books exactly as of the last seq: a late
joiner applies the events after that seq and ends where an early subscriber is.
Counter pushes carry whole records, so applying one twice is harmless.

Memory: working orders stay dicts (the risk checks read them); finished orders and trades,
most of a day's records, are kept packed (msgpack, field names once per shape) and unpacked
only when read (``snapshot``, reconciliation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping

import msgpack

from ..ledger import day_start_ns, trading_day
from ..protocol import unpack
from ..protocol.mapping import FINAL_ORDER_STATUSES, ORDER_STATUS_NAMES, STOCK_BUY

if TYPE_CHECKING:
    from ..journal import Journal

# Order statuses still working at the counter (unreported .. part-traded): the risk checks'
# "open orders", kept as an index so a check never scans the day's orders.
OPEN_STATUSES = frozenset(code for code, name in ORDER_STATUS_NAMES.items()
                          if code not in FINAL_ORDER_STATUSES and name != "unknown")
BOOK_PREFIXES = ("order.", "trade.", "position.", "asset.")


class PackedRecords(Mapping[Any, dict[str, Any]]):
    """Records by id, in first-seen order: kept as dicts while ``live``, else packed."""

    def __init__(self) -> None:
        self._items: dict[Any, dict[str, Any] | bytes] = {}
        self._shapes: list[tuple[str, ...]] = []  # the field names of packed records, each once
        self._shape_ids: dict[tuple[str, ...], int] = {}

    def put(self, key: Any, record: dict[str, Any], live: bool = False) -> None:
        if live:
            self._items[key] = record
            return
        shape = tuple(record)
        number = self._shape_ids.get(shape)
        if number is None:
            number = self._shape_ids[shape] = len(self._shapes)
            self._shapes.append(shape)
        self._items[key] = msgpack.packb([number, *record.values()], use_bin_type=True)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        item = self._items[key]
        if isinstance(item, dict):
            return item
        number, *values = msgpack.unpackb(item, raw=False, strict_map_key=False)
        return dict(zip(self._shapes[number], values))

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class BooksView:
    def __init__(self, accounts: tuple[str, ...] | list[str]) -> None:
        self._books: dict[str, dict[str, Any]] = {account: _empty() for account in accounts}

    def load(self, account_id: str, books: dict[str, Any]) -> None:
        """Replace one account's books with query results (asset, positions, orders, trades)."""
        target = self._books.setdefault(account_id, _empty())
        target.update(_empty())
        target["asset"] = books.get("asset")
        target["positions"] = {p["stock_code"]: p for p in books.get("positions", ())}
        for order in books.get("orders", ()):
            _put_order(target, order)
        for trade in books.get("trades", ()):
            target["trades"].put(trade["traded_id"], trade)

    def rebuild(self, journal: "Journal", now_ns: int | None = None) -> None:
        """What subscribers were told before this start: the journal's book events of the current
        trading day, replayed. Only the day: the view is the baseline the start-up reconciliation
        compares the counter's books of the day with, and then replaced by them; orders and
        trades of earlier days are in neither. A position or asset last published on an earlier
        day is published again at that reconciliation (marked ``reconciled``): a whole record,
        harmless to apply twice, and the start-up time no longer grows with the retention."""
        if not journal.count:
            return
        from_seq = first_seq_since(journal, day_start_ns(trading_day(now_ns)))
        for _ in range(1 + journal.count // 10_000):
            page = journal.read(from_seq, None, BOOK_PREFIXES, 10_000)
            for _topic, payload in page.events:
                body = unpack(payload, max_size=len(payload))
                self.apply(body["type"], body["account_id"], body["data"])
            from_seq = page.next_seq
            if not page.more:
                break

    def apply(self, event_type: str, account_id: str | None, data: dict[str, Any]) -> None:
        books = self._books.get(account_id) if account_id else None
        if books is None:
            return
        if event_type == "order":
            _put_order(books, data)
        elif event_type == "trade":
            books["trades"].put(data["traded_id"], data)
        elif event_type == "position":
            books["positions"][data["stock_code"]] = data
        elif event_type == "asset":
            books["asset"] = data

    def books(self, account_id: str) -> dict[str, Any]:
        """The account's books as kept (orders and trades by id, as read-only mappings whose
        values are dicts; positions by code; ``open``: the working orders by id,
        ``open_by_code``: the same by code, ``buying``: the value working buy orders still have
        to buy, by code); read only."""
        return self._books.setdefault(account_id, _empty())

    def snapshot(self, account_id: str) -> dict[str, Any]:
        books = self._books.get(account_id) or _empty()
        return {
            "account_id": account_id,
            "asset": books["asset"],
            "positions": list(books["positions"].values()),
            "orders": list(books["orders"].values()),
            "trades": list(books["trades"].values()),
        }


def first_seq_since(journal: "Journal", since_ns: int) -> int:
    """The first kept seq whose event is stamped ``since_ns`` or later (a binary search over
    events stamped in seq order; past the last seq when none is)."""
    low, high = journal.first_seq, journal.last_seq + 1
    while low < high:  # about 20 single-event reads for a million events
        middle = (low + high) // 2
        events = journal.read(middle, middle, (), 1).events
        ts = unpack(events[0][1], max_size=len(events[0][1])).get("ts", 0) if events else 0
        if ts >= since_ns:
            high = middle
        else:
            low = middle + 1
    return low


def _empty() -> dict[str, Any]:
    return {"asset": None, "positions": {}, "orders": PackedRecords(), "trades": PackedRecords(), "open": {},
            "open_by_code": {}, "buying": {}, "buy_value": {}}


def _put_order(books: dict[str, Any], order: dict[str, Any]) -> None:
    books["orders"].put(order["order_id"], order, live=order.get("order_status") in OPEN_STATUSES)
    _index_open(books, order)


def _index_open(books: dict[str, Any], order: dict[str, Any]) -> None:
    order_id, code = order["order_id"], order.get("stock_code")
    old_value = books["buy_value"].pop(order_id, 0.0)
    if old_value:
        books["buying"][code] = books["buying"].get(code, 0.0) - old_value
    working = order.get("order_status") in OPEN_STATUSES
    if working and order.get("order_type") == STOCK_BUY:
        value = (order["order_volume"] - (order.get("traded_volume") or 0)) * float(order.get("price") or 0.0)
        books["buy_value"][order_id] = value
        books["buying"][code] = books["buying"].get(code, 0.0) + value
    if working:
        books["open"][order_id] = order
        books["open_by_code"].setdefault(code, {})[order_id] = order
    elif books["open"].pop(order_id, None) is not None:
        same_code = books["open_by_code"].get(code, {})
        same_code.pop(order_id, None)
        if not same_code:
            books["open_by_code"].pop(code, None)
