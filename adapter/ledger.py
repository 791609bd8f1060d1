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

import json
import logging
import os
import re
import secrets
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from . import journal
from .storage import open_database

log = logging.getLogger(__name__)

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



def parse_tag(tag: Any) -> tuple[str, int] | None:
    """``(prefix, record number)`` of a counter remark that is a ledger tag, else None."""
    match = _TAG.fullmatch(tag) if isinstance(tag, str) else None
    return None if match is None else (match.group(1), int(match.group(2), 36))


def make_tag(prefix: str, record_id: int) -> str:
    return f"{TAG_PREFIX}{prefix}{_base36(record_id)}"


def fingerprint(args: dict[str, Any]) -> str:
    """What makes two sends the same order."""
    keys = ("account_type", "stock_code", "order_type", "order_volume", "price_type", "price",
            "strategy_name", "order_remark")
    return "|".join(repr(args[k]) for k in keys)


def new_client_order_id() -> str:
    return "gw-" + secrets.token_hex(6)


def recovery_hint(directory: str | Path) -> str:
    """The two ways out of a ledger that lost records (PROTOCOL §9.6), for error messages."""
    return (
        "Two ways out, with the gateway stopped:\n"
        f"  1. rebuild the ledger from the journal's events and the counter's tagged orders:\n"
        f"       qmt-adapter ledger rebuild --data-dir {directory} [--config FILE]\n"
        "     then start as before: a repeat of a client_order_id it recovered returns the first outcome;\n"
        "  2. or start with an empty ledger, accepting that a repeat of an earlier client_order_id is a NEW order:\n"
        f"       qmt-adapter serve --reset-ledger --data-dir {directory} ...\n"
        f"     (the old {FILE_NAME} is kept beside it as {FILE_NAME}.reset-<time>)"
    )


class LedgerUnreadable(RuntimeError):
    """``orders.sqlite3`` exists but SQLite cannot read it (truncated, overwritten, not a database)."""


def _new_prefix(avoid: frozenset[str] = frozenset()) -> str:
    while True:
        prefix = "".join(secrets.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(3))
        if prefix not in avoid:
            return prefix


class Ledger:
    def __init__(self, directory: str | Path, *, sync: str = "normal") -> None:
        self.path = Path(directory) / FILE_NAME
        # Whether the file was there before: a ledger created now has no history (stores.py).
        self.existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self._db = open_database(self.path, _SCHEMA, full_sync=sync == "full")
            self._load()
        except sqlite3.DatabaseError as exc:
            if getattr(self, "_db", None) is not None:
                self._db.close()
            if isinstance(exc, sqlite3.OperationalError):  # locked, no permission: not a damaged file
                raise
            raise LedgerUnreadable(
                f"refusing to start: the order ledger {self.path} cannot be read ({exc}); it was truncated or "
                f"damaged, and without it a repeat of a client_order_id it held would be ordered again.\n"
                + recovery_hint(self.path.parent)
            ) from exc

    def _load(self) -> None:
        # A random part per ledger: tags of a lost or recreated ledger, or another tool's
        # remarks, cannot be taken for this ledger's orders.
        prefix = self.meta("tag_prefix")
        if prefix is None:
            prefix = _new_prefix()
            self.set_meta("tag_prefix", prefix)
        self.tag_prefix = prefix
        # Record numbers below this were used (by a lost ledger's orders): never given again.
        self._id_floor = int(self.meta("id_floor") or 0)
        self._last_id = 0
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
            self._index(OrderRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], order_id=row[7],
                                    error_msg=row[8], response=response, created_ns=row[10]))
            self._last_id = max(self._last_id, row[0])

    # -- identity and history (adapter/server/stores.py) -----------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        """Committed at once (None deletes the key)."""
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def json_meta(self, key: str) -> Any:
        text = self.meta(key)
        return None if text is None else json.loads(text)

    @property
    def high_water(self) -> int:
        """The highest record number this ledger has used or must never give (its floor)."""
        return max(self._last_id, self._id_floor)

    def set_id_floor(self, floor: int) -> None:
        self._id_floor = max(self._id_floor, floor)
        self.set_meta("id_floor", str(self._id_floor))

    def set_prefix(self, prefix: str) -> None:
        """Another tag prefix, only for a ledger with no records: a rebuild takes the lost ledger's."""
        if self._by_id:
            raise ValueError("a ledger with records keeps its tag prefix")
        if not re.fullmatch(r"[0-9A-Z]{3}", prefix):
            raise ValueError(f"not a tag prefix: {prefix!r}")
        self.tag_prefix = prefix
        self.set_meta("tag_prefix", prefix)

    def redraw_prefix(self, avoid: frozenset[str]) -> str:
        """A new random prefix, none of ``avoid`` (prefixes already on the counter's orders)."""
        self.set_prefix(_new_prefix(avoid))
        return self.tag_prefix

    def backup(self, target: str | Path) -> None:
        """A consistent copy of the ledger (its -wal included) in one file."""
        copy = sqlite3.connect(target)
        try:
            self._db.backup(copy)
        finally:
            copy.close()

    def restore(self, record: OrderRecord) -> None:
        """Write a record with its own number and state as it is (a rebuild); committed at once."""
        blob = msgpack.packb(record.response, use_bin_type=True) if record.response is not None else None
        self._db.execute(
            "INSERT INTO orders (id, account_id, client_order_id, fingerprint, strategy_name, order_remark, state, "
            "order_id, error_msg, response, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.id, record.account_id, record.client_order_id, record.fingerprint, record.strategy_name,
             record.order_remark, record.state, record.order_id, record.error_msg, blob, record.created_ns),
        )
        record.tag = ""
        self._index(record)
        self._last_id = max(self._last_id, record.id)

    def _tag(self, record_id: int) -> str:
        return make_tag(self.tag_prefix, record_id)

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
        parsed = parse_tag(tag)
        if parsed is None or parsed[0] != self.tag_prefix:
            return None
        return self._by_id.get(parsed[1])

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
        # The number is chosen here, never by SQLite: it stays above every number used before,
        # also above a rebuilt ledger's floor and the numbers of rolled-back records.
        record_id = max(self._last_id, self._id_floor) + 1
        self._db.execute(
            "INSERT INTO orders (id, account_id, client_order_id, fingerprint, strategy_name, order_remark, state, "
            "created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record_id, account_id, client_order_id, fingerprint(args), args["strategy_name"], args["order_remark"],
             SENDING, now),
        )
        self._last_id = record_id
        record = OrderRecord(
            record_id, account_id, client_order_id, fingerprint(args), args["strategy_name"],
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


def in_use(path: str | Path) -> bool:
    """Whether another process has this SQLite file open (a running gateway): it holds a lock
    that keeps an exclusive one out. False for a missing file."""
    if not Path(path).exists():
        return False
    db = sqlite3.connect(path, isolation_level=None, timeout=0.2)
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN EXCLUSIVE")
        db.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc) or "busy" in str(exc)
    except sqlite3.DatabaseError:  # not a database at all: nobody uses it as one
        return False
    finally:
        db.close()


def ensure_stopped(directory: str | Path) -> None:
    """Raise RuntimeError while a gateway (or anything else) has the data dir's stores open."""
    for name in (journal.FILE_NAME, FILE_NAME):
        path = Path(directory) / name
        if in_use(path):
            raise RuntimeError(f"{path} is open in another process: stop the gateway that uses {directory} first")


def archive_name(directory: str | Path, reason: str) -> Path:
    """A free name beside the ledger: ``orders.sqlite3.<reason>-<time>``."""
    path = Path(directory) / FILE_NAME
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{FILE_NAME}.{reason}-{stamp}")
    number = 1
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        number += 1
        target = path.with_name(f"{FILE_NAME}.{reason}-{stamp}-{number}")
    return target


def archive(directory: str | Path, reason: str) -> Path | None:
    """Move ``orders.sqlite3`` (with its -wal and -shm) aside as ``orders.sqlite3.<reason>-<time>``;
    the archived path, or None when there was no ledger file. Never deletes anything."""
    path = Path(directory) / FILE_NAME
    if not path.exists():
        return None
    target = archive_name(directory, reason)
    for suffix in ("-wal", "-shm", ""):  # the main file last: a half-done move leaves it in place
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{target}{suffix}")
    return target


def reset(directory: str | Path) -> Path | None:
    """The operator's reset (``serve --reset-ledger``): archive the ledger and put an empty one
    in its place, marked so that the next start accepts the history it does not know, records
    what it accepted and says so loudly (adapter/server/stores.py). Returns the archived path."""
    ensure_stopped(directory)
    archived = archive(directory, "reset")
    ledger = Ledger(directory)
    try:
        ledger.set_meta("reset_pending", json.dumps({"at_ns": time.time_ns(), "archived": str(archived or "")}))
    finally:
        ledger.close()
    log.warning("order ledger RESET: %s; a new, empty %s is in its place. Repeats of client_order_ids sent "
                "before now are NOT recognised: they would be placed as new orders.",
                f"the old one is kept as {archived}" if archived else "there was no ledger file",
                Path(directory) / FILE_NAME)
    return archived
