"""The gateway's own view of each account's books, kept in event order (the Clone pattern).

Loaded from the start-up queries, then updated by every order, trade, position and asset
event as it is numbered, so ``snapshot`` returns the books exactly as of the last seq: a late
joiner applies the events after that seq and ends where an early subscriber is.
Counter pushes carry whole records, so applying one twice is harmless.

Memory (a day may hold 100k+ orders): working orders, positions and the asset stay dicts in
memory (the risk checks read them on every order). Finished orders and trades, most of a
day's records, are handed to a store (``viewstore``): the view's own SQLite file, written
in one transaction at a batch's end (``commit``, after the ledger's) once a few hundred have
gathered, read back on a lookup's miss and by ``snapshot``. Until then they wait, packed, in
``_pending``, where lookups see them. The file is a cache of the journal: made empty when the
view is made, refilled by ``rebuild``; if it fails, the view keeps the records in memory
instead and trading goes on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, TypeVar

import msgpack

from .ledger import day_start_ns, trading_day
from ..protocol import unpack
from ..protocol.mapping import FINAL_ORDER_STATUSES, ORDER_STATUS_NAMES, STOCK_BUY
from .viewstore import FileStore, FullKey, MemoryStore, Writes

if TYPE_CHECKING:
    from .journal import Journal

log = logging.getLogger(__name__)

# Order statuses still working at the counter (unreported .. part-traded): the risk checks'
# "open orders", kept as an index so a check never scans the day's orders.
OPEN_STATUSES = frozenset(code for code, name in ORDER_STATUS_NAMES.items()
                          if code not in FINAL_ORDER_STATUSES and name != "unknown")
BOOK_PREFIXES = ("order.", "trade.", "position.", "asset.")
ORDERS, TRADES = "order", "trade"  # the store's kinds
WRITE_AT = 256  # finished records gathered before a batch's end writes them (some 60 KB)

T = TypeVar("T")
Store = FileStore | MemoryStore


class Shapes:
    """Packs a record as its values and the number of its field names (each shape once, in
    memory: the store lives no longer than the view)."""

    def __init__(self) -> None:
        self._shapes: list[tuple[str, ...]] = []
        self._ids: dict[tuple[str, ...], int] = {}

    def pack(self, record: dict[str, Any]) -> bytes:
        shape = tuple(record)
        number = self._ids.get(shape)
        if number is None:
            number = self._ids[shape] = len(self._shapes)
            self._shapes.append(shape)
        return msgpack.packb([number, *record.values()], use_bin_type=True)

    def unpack(self, data: bytes) -> dict[str, Any]:
        number, *values = msgpack.unpackb(data, raw=False, strict_map_key=False)
        return dict(zip(self._shapes[number], values))


class Records(Mapping[Any, dict[str, Any]]):
    """One account's orders or trades of the day by id, in first-seen order: working orders
    (``live``) as dicts here, the others in the view's store, read on a miss. Read only.

    An order working again after it finished (out-of-order pushes; rare) may leave its finished
    row in the store until it finishes again: the live record hides it, in its place."""

    def __init__(self, view: "BooksView", account_id: str, kind: str) -> None:
        self._view = view
        self._account_id = account_id
        self._kind = kind
        self._live: dict[Any, dict[str, Any]] = {}
        self._places: dict[Any, int] = {}  # of the live ones: when first seen here

    def put(self, key: Any, record: dict[str, Any], live: bool = False) -> None:
        if live:
            if key not in self._live:
                self._places[key] = self._view._revive((self._account_id, self._kind, key))
            self._live[key] = record
            return
        place = self._places.pop(key, None)
        if place is not None:
            del self._live[key]
        self._view._finish((self._account_id, self._kind, key), record, place)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        record = self._live.get(key)
        if record is None:
            record = self._view._find((self._account_id, self._kind, key))
            if record is None:
                raise KeyError(key)
        return record

    def __contains__(self, key: object) -> bool:
        return key in self._live or self._view._holds((self._account_id, self._kind, key))

    def __iter__(self) -> Iterator[Any]:
        return (key for key, _record in self._merged())

    def __len__(self) -> int:
        hidden = sum(1 for key in self._live if self._view._holds((self._account_id, self._kind, key)))
        return len(self._live) + self._view._count(self._account_id, self._kind) - hidden

    def records(self) -> list[dict[str, Any]]:
        """Every record in first-seen order (one read of the store, not one per key)."""
        unpack_record = self._view._shapes.unpack
        return [record if isinstance(record, dict) else unpack_record(record) for _key, record in self._merged()]

    def _merged(self) -> Iterator[tuple[Any, dict[str, Any] | bytes]]:
        live = self._live
        stored: Iterable[tuple[int, Any, dict[str, Any] | bytes]] = self._view._stored(self._account_id, self._kind)
        working: Iterable[tuple[int, Any, dict[str, Any] | bytes]] = sorted(
            ((self._places[key], key, record) for key, record in live.items()), key=_first)
        shown: set[Any] = set()
        for _place, key, record in heapq.merge(stored, working, key=_first):
            if key in live:  # a stored row of a live key comes first (seen earlier): the live record goes there
                if key in shown:
                    continue
                shown.add(key)
                yield key, live[key]
            else:
                yield key, record


class BooksView:
    def __init__(self, accounts: tuple[str, ...] | list[str], path: Path | None = None) -> None:
        """``path``: the file for finished orders and trades (made empty here); None: memory."""
        self._shapes = Shapes()
        self._pending: Writes = {}  # handed over, not yet written: (place, packed)
        self._next_place = itertools.count(1)
        self._store: Store = MemoryStore()
        if path is not None:
            try:
                self._store = FileStore(path)
            except Exception:  # a cache of the journal: trading goes on with it in memory
                log.exception("books view: cannot open %s; the day's records are kept in memory", path)
        self._books: dict[str, dict[str, Any]] = {account: self._empty(account) for account in accounts}

    def load(self, account_id: str, books: dict[str, Any]) -> None:
        """Replace one account's books with query results (asset, positions, orders, trades)."""
        target = self.books(account_id)
        self._pending = {full: held for full, held in self._pending.items() if full[0] != account_id}
        self._use(lambda store: store.clear(account_id))
        target.update(self._empty(account_id))
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
        harmless to apply twice, and the start-up time no longer grows with the retention.
        The view's file starts empty (the view made it so), so after any stop, ``kill -9``
        included, it holds exactly this replay."""
        if not journal.count:
            return
        from_seq = first_seq_since(journal, day_start_ns(trading_day(now_ns)))
        for _ in range(1 + journal.count // 10_000):
            page = journal.read(from_seq, None, BOOK_PREFIXES, 10_000)
            for _topic, payload in page.events:
                body = unpack(payload, max_size=len(payload))
                self.apply(body["type"], body["account_id"], body["data"])
            self.flush()
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
        values are dicts, finished ones read from the store on each lookup; positions by code;
        ``open``: the working orders by id, ``open_by_code``: the same by code, ``buying``: the
        value working buy orders still have to buy, by code); read only."""
        books = self._books.get(account_id)
        if books is None:
            books = self._books[account_id] = self._empty(account_id)
        return books

    def snapshot(self, account_id: str) -> dict[str, Any]:
        """The whole day, as the contract says: every order and trade, read from the store in
        one pass each and unpacked (about 1 s per 100k records, on the I/O thread)."""
        books = self._books.get(account_id)
        return {
            "account_id": account_id,
            "asset": books["asset"] if books else None,
            "positions": list(books["positions"].values()) if books else [],
            "orders": books["orders"].records() if books else [],
            "trades": books["trades"].records() if books else [],
        }

    def commit(self) -> None:
        """End of a batch (the gateway calls it after the ledger's commit): write what was
        handed over once ``WRITE_AT`` records have gathered, in one transaction. Batches at a
        few hundred orders a second hold a handful of records, and a SQLite commit costs far
        more than the rows it writes (some 100 us against a few us a row); nothing of the
        file needs to reach the disk (it is rebuilt at every start), and lookups see what
        waits. Never raises for the file: see ``_use``."""
        if len(self._pending) >= WRITE_AT:
            self.flush()

    def flush(self) -> None:
        """Write whatever waits, now."""
        if not self._pending:
            return
        writes, self._pending = self._pending, {}
        self._use(lambda store: store.write(writes))

    def close(self) -> None:
        """At the gateway's stop. What waits is dropped: the next start rebuilds the file."""
        store, self._store = self._store, MemoryStore()
        self._pending.clear()
        try:
            store.close()
        except Exception:
            log.exception("books view: closing its file failed")

    # -- the store, for Records ------------------------------------------------------------

    def _empty(self, account_id: str) -> dict[str, Any]:
        return {"asset": None, "positions": {}, "orders": Records(self, account_id, ORDERS),
                "trades": Records(self, account_id, TRADES), "open": {}, "open_by_code": {}, "buying": {},
                "buy_value": {}}

    def _finish(self, full: FullKey, record: dict[str, Any], place: int | None) -> None:
        if place is None:
            held = self._pending.get(full)
            # new here; if the store holds the key already, the write keeps the store's place
            place = held[0] if held is not None else next(self._next_place)
        self._pending[full] = (place, self._shapes.pack(record))

    def _revive(self, full: FullKey) -> int:
        """The place of a key becoming live. Not looked up in the store (a read per new order):
        a row there stays, hidden by the live record, and keeps its place when written again."""
        held = self._pending.pop(full, None)
        return held[0] if held is not None else next(self._next_place)

    def _find(self, full: FullKey) -> dict[str, Any] | None:
        held = self._pending.get(full)
        data = held[1] if held is not None else self._use(lambda store: store.get(*full))
        return self._shapes.unpack(data) if data is not None else None

    def _holds(self, full: FullKey) -> bool:
        return full in self._pending or self._use(lambda store: store.place(*full)) is not None

    def _count(self, account_id: str, kind: str) -> int:
        self.flush()
        return self._use(lambda store: store.count(account_id, kind))

    def _stored(self, account_id: str, kind: str) -> list[tuple[int, Any, bytes]]:
        self.flush()
        return self._use(lambda store: list(store.rows(account_id, kind)))

    def _use(self, action: Callable[[Store], T]) -> T:
        """``action`` on the store; if the file fails, on memory from then on. The view is a
        cache of what the journal holds: losing its file must never stop trading or lose an
        event, so the records it held are read back into memory (if it still reads) and the
        failed action is done there."""
        try:
            return action(self._store)
        except Exception as exc:
            if not isinstance(self._store, FileStore):
                raise
            self._fall_back(exc)
            return action(self._store)

    def _fall_back(self, exc: Exception) -> None:
        store = self._store
        log.error("books view: its file %s failed (%s); the day's finished orders and trades are kept in memory "
                  "until the next start", store.path if isinstance(store, FileStore) else "", exc)
        memory = MemoryStore()
        try:
            memory.write({(account_id, kind, key): (place, data)
                          for account_id, kind, key, place, data in store.everything()})
        except Exception:
            log.exception("books view: its file cannot be read back; snapshots and reconciliation miss the "
                          "finished orders and trades written to it, until the next start")
        self._store = memory
        try:
            store.close()
        except Exception:
            log.debug("books view: closing the failed file", exc_info=True)


def _first(row: tuple[int, Any, Any]) -> int:
    return int(row[0])


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
