"""The order ledger: one durable record per order, keyed by account and client order id.

A record is written before its order reaches the counter, so a repeated client order id
(also after a restart, also when two sends race) returns the first outcome instead of
ordering twice. The counter is given a short tag in ``order_remark`` (it keeps only 24
bytes), which maps back to the record, so an order whose acknowledgement was lost is still
found in the counter's own order list. The user's remark is kept here.

States: ``sending`` (recorded, handed to the broker), ``acknowledged`` (the counter gave an
order id), ``rejected`` (the counter said no), ``unknown`` (sent, then time-out or
disconnect: resolved by reconciliation, never by guessing), ``not_placed`` (reconciliation
found no trace at the counter). Only the I/O thread uses a Ledger once the gateway runs.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from .storage import open_database

FILE_NAME = "orders.sqlite3"
TAG_PREFIX = "QZ"
_TAG = re.compile(r"QZ([0-9A-Z]{3})([0-9A-Z]{1,10})")
SENDING, ACKNOWLEDGED, REJECTED, UNKNOWN, NOT_PLACED = "sending", "acknowledged", "rejected", "unknown", "not_placed"
IN_FLIGHT = frozenset({SENDING, UNKNOWN})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    strategy_name TEXT NOT NULL,
    order_remark TEXT NOT NULL,
    state TEXT NOT NULL,
    order_id INTEGER,
    error_msg TEXT NOT NULL DEFAULT '',
    response BLOB,
    created_ns INTEGER NOT NULL,
    UNIQUE (account_id, client_order_id)
);
"""


@dataclass
class OrderRecord:
    id: int
    account_id: str
    client_order_id: str
    fingerprint: str
    strategy_name: str
    order_remark: str
    state: str
    order_id: int | None = None
    error_msg: str = ""
    response: dict[str, Any] | None = None  # the counter's order response, as first answered
    created_ns: int = 0
    seq: int | None = None  # this session's xtquant seq; not kept across restarts
    waiters: list[Any] = field(default_factory=list)  # requests waiting for the outcome
    tag: str = ""  # what the counter's order_remark holds for this order


def _base36(number: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text



def fingerprint(args: dict[str, Any]) -> str:
    """What makes two sends the same order."""
    keys = ("account_type", "stock_code", "order_type", "order_volume", "price_type", "price",
            "strategy_name", "order_remark")
    return "|".join(repr(args[k]) for k in keys)


def new_client_order_id() -> str:
    return "gw-" + secrets.token_hex(6)


class Ledger:
    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / FILE_NAME
        self._db = open_database(self.path, _SCHEMA)
        # A random part per ledger: tags of a lost or recreated ledger, or another tool's
        # remarks, cannot be taken for this ledger's orders.
        row = self._db.execute("SELECT value FROM meta WHERE key = 'tag_prefix'").fetchone()
        if row is None:
            prefix = "".join(secrets.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(3))
            self._db.execute("INSERT INTO meta (key, value) VALUES ('tag_prefix', ?)", (prefix,))
        else:
            prefix = str(row[0])
        self.tag_prefix = prefix
        self._by_key: dict[tuple[str, str], OrderRecord] = {}
        self._by_id: dict[int, OrderRecord] = {}
        self._by_order_id: dict[tuple[str, int], OrderRecord] = {}
        # Kept as records change, so ping and the unknown-order sweep need no scan.
        self._states: Counter[str] = Counter()
        self._in_flight: dict[int, OrderRecord] = {}
        for row in self._db.execute(
            "SELECT id, account_id, client_order_id, fingerprint, strategy_name, order_remark, state, "
            "order_id, error_msg, response, created_ns FROM orders"
        ):
            response = msgpack.unpackb(row[9], raw=False) if row[9] is not None else None
            self._index(OrderRecord(*row[:9], response=response, created_ns=row[10]))

    def _tag(self, record_id: int) -> str:
        return f"{TAG_PREFIX}{self.tag_prefix}{_base36(record_id)}"

    def _index(self, record: OrderRecord, old_state: str | None = None) -> None:
        record.tag = record.tag or self._tag(record.id)
        if old_state is not None:
            self._states[old_state] -= 1
        self._states[record.state] += 1
        if record.state in IN_FLIGHT:
            self._in_flight[record.id] = record
        else:
            self._in_flight.pop(record.id, None)
        self._by_key[(record.account_id, record.client_order_id)] = record
        self._by_id[record.id] = record
        if record.order_id is not None and record.order_id > 0:
            self._by_order_id[(record.account_id, record.order_id)] = record

    def get(self, account_id: str, client_order_id: str) -> OrderRecord | None:
        return self._by_key.get((account_id, client_order_id))

    def by_tag(self, tag: Any) -> OrderRecord | None:
        match = _TAG.fullmatch(tag) if isinstance(tag, str) else None
        if match is None or match.group(1) != self.tag_prefix:
            return None
        return self._by_id.get(int(match.group(2), 36))

    def by_order_id(self, account_id: str, order_id: Any) -> OrderRecord | None:
        return self._by_order_id.get((account_id, order_id))

    def records(self, account_id: str | None = None) -> list[OrderRecord]:
        return [r for r in self._by_id.values() if account_id is None or r.account_id == account_id]

    def in_flight(self) -> list[OrderRecord]:
        return list(self._in_flight.values())

    def count(self, state: str) -> int:
        return self._states[state]

    def create(self, account_id: str, client_order_id: str, args: dict[str, Any]) -> OrderRecord:
        """Record a new order: committed before this returns, or with the batch (``begin``)."""
        now = time.time_ns()
        cursor = self._db.execute(
            "INSERT INTO orders (account_id, client_order_id, fingerprint, strategy_name, order_remark, state, "
            "created_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (account_id, client_order_id, fingerprint(args), args["strategy_name"], args["order_remark"], SENDING, now),
        )
        record = OrderRecord(
            int(cursor.lastrowid or 0), account_id, client_order_id, fingerprint(args), args["strategy_name"],
            args["order_remark"], SENDING, created_ns=now,
        )
        self._index(record)
        return record

    def settle(
        self, record: OrderRecord, state: str, order_id: int | None = None, error_msg: str = "",
        response: dict[str, Any] | None = None,
    ) -> None:
        """Move a record to a new state: committed before this returns, or with the batch."""
        old_state = record.state
        record.state = state
        if order_id is not None:
            record.order_id = order_id
        if error_msg or state == ACKNOWLEDGED:
            record.error_msg = error_msg  # a settled order does not keep an old reason
        if response is not None:
            record.response = response
        blob = msgpack.packb(record.response, use_bin_type=True) if record.response is not None else None
        self._db.execute(
            "UPDATE orders SET state = ?, order_id = ?, error_msg = ?, response = ? WHERE id = ?",
            (record.state, record.order_id, record.error_msg, blob, record.id),
        )
        self._index(record, old_state)

    def begin(self) -> None:
        """Hold the writes that follow in one transaction, until ``commit`` (one disk write
        for a whole batch of commands or answers)."""
        self._db.execute("BEGIN")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self, created: list[OrderRecord]) -> None:
        """After a failed commit: forget the records that never reached the disk."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        for record in created:
            self._by_key.pop((record.account_id, record.client_order_id), None)
            self._by_id.pop(record.id, None)
            self._in_flight.pop(record.id, None)
            self._states[record.state] -= 1

    def close(self) -> None:
        self._db.close()
