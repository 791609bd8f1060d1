"""The gateway's own view of each account's books, kept in event order (the Clone pattern).

Loaded from the start-up queries, then updated by every order, trade, position and asset
event as it is numbered, so ``snapshot`` returns the books exactly as of the last seq: a late
joiner applies the events after that seq and ends where an early subscriber is.
Counter pushes carry whole records, so applying one twice is harmless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol import unpack

if TYPE_CHECKING:
    from ..journal import Journal

# Order statuses still working at the counter (unreported .. part-traded): the risk checks'
# "open orders", kept as an index so a check never scans the day's orders.
OPEN_STATUSES = frozenset({48, 49, 50, 51, 52, 55})


class BooksView:
    def __init__(self, accounts: tuple[str, ...] | list[str]) -> None:
        self._books: dict[str, dict[str, Any]] = {account: _empty() for account in accounts}

    def load(self, account_id: str, books: dict[str, Any]) -> None:
        """Replace one account's books with query results (asset, positions, orders, trades)."""
        target = self._books.setdefault(account_id, _empty())
        target["asset"] = books.get("asset")
        target["positions"] = {p["stock_code"]: p for p in books.get("positions", ())}
        target["orders"] = {o["order_id"]: o for o in books.get("orders", ())}
        target["open"] = {}
        target["open_by_code"] = {}
        target["buying"] = {}  # code -> CNY still to be bought by working buy orders
        target["buy_value"] = {}  # order id -> its part of that
        for order in target["orders"].values():
            _index_open(target, order)
        target["trades"] = {t["traded_id"]: t for t in books.get("trades", ())}

    def rebuild(self, journal: "Journal") -> None:
        """What subscribers were told before this start: the journal's book events, replayed."""
        if not journal.count:
            return
        from_seq, prefixes = journal.first_seq, ("order.", "trade.", "position.", "asset.")
        for _ in range(1 + journal.count // 10_000):
            page = journal.read(from_seq, None, prefixes, 10_000)
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
            books["orders"][data["order_id"]] = data
            _index_open(books, data)
        elif event_type == "trade":
            books["trades"][data["traded_id"]] = data
        elif event_type == "position":
            books["positions"][data["stock_code"]] = data
        elif event_type == "asset":
            books["asset"] = data

    def books(self, account_id: str) -> dict[str, Any]:
        """The account's books as kept (orders and trades by id, positions by code, and
        ``open``: the working orders by id, ``open_by_code``: the same by code, ``buying``: the
        value working buy orders still have to buy, by code); read only."""
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


def _empty() -> dict[str, Any]:
    return {"asset": None, "positions": {}, "orders": {}, "trades": {}, "open": {}, "open_by_code": {},
            "buying": {}, "buy_value": {}}


def _index_open(books: dict[str, Any], order: dict[str, Any]) -> None:
    order_id, code = order["order_id"], order.get("stock_code")
    old_value = books["buy_value"].pop(order_id, 0.0)
    if old_value:
        books["buying"][code] = books["buying"].get(code, 0.0) - old_value
    working = order.get("order_status") in OPEN_STATUSES
    if working and order.get("order_type") == 23:
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
