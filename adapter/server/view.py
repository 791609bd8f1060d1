"""The gateway's own view of each account's books, kept in event order (the Clone pattern).

Loaded from the start-up queries, then updated by every order, trade, position and asset
event as it is numbered, so ``snapshot`` returns the books exactly as of the last seq: a late
joiner applies the events after that seq and ends where an early subscriber is.
Counter pushes carry whole records, so applying one twice is harmless.
"""

from __future__ import annotations

from typing import Any


class BooksView:
    def __init__(self, accounts: tuple[str, ...] | list[str]) -> None:
        self._books: dict[str, dict[str, Any]] = {account: _empty() for account in accounts}

    def load(self, account_id: str, books: dict[str, Any]) -> None:
        """Replace one account's books with query results (asset, positions, orders, trades)."""
        target = self._books.setdefault(account_id, _empty())
        target["asset"] = books.get("asset")
        target["positions"] = {p["stock_code"]: p for p in books.get("positions", ())}
        target["orders"] = {o["order_id"]: o for o in books.get("orders", ())}
        target["trades"] = {t["traded_id"]: t for t in books.get("trades", ())}

    def apply(self, event_type: str, account_id: str | None, data: dict[str, Any]) -> None:
        books = self._books.get(account_id) if account_id else None
        if books is None:
            return
        if event_type == "order":
            books["orders"][data["order_id"]] = data
        elif event_type == "trade":
            books["trades"][data["traded_id"]] = data
        elif event_type == "position":
            books["positions"][data["stock_code"]] = data
        elif event_type == "asset":
            books["asset"] = data

    def books(self, account_id: str) -> dict[str, Any]:
        """The account's books as kept (orders and trades by id, positions by code); read only."""
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
    return {"asset": None, "positions": {}, "orders": {}, "trades": {}}
