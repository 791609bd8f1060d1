"""The order ledger: one durable record per order, keyed by account and client order id.

A record is written before its order reaches the counter, so a repeated client order id
(also after a restart, also when two sends race) returns the first outcome instead of
ordering twice. The counter is given a short tag in ``order_remark`` (it keeps only 24
bytes), which maps back to the record, so an order whose acknowledgement was lost is still
found in the counter's own order list. The user's remark is kept here.

States and their legal moves are the table ``TRANSITIONS``. Only the I/O thread writes
through a Ledger once the gateway runs (the encoder thread only looks records up).

Memory is bounded through a trading day: kept are the records in flight (``sending``,
``unknown``: the gateway hangs waiters on them, so every lookup returns the same object) and
the ``RECENT`` records touched last; any other lookup reads SQLite by index. Start-up reads
only the records in flight and the meta, whatever the history's length.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import msgpack

from . import journal
from ..market import CHINA
from .storage import Checkpoints, open_database

log = logging.getLogger(__name__)

FILE_NAME = "orders.sqlite3"
TAG_PREFIX = "QZ"
_TAG = re.compile(r"QZ([0-9A-Z]{3})([0-9A-Z]{1,10})")
SENDING, ACKNOWLEDGED, REJECTED, UNKNOWN, NOT_PLACED = "sending", "acknowledged", "rejected", "unknown", "not_placed"
IN_FLIGHT = frozenset({SENDING, UNKNOWN})

# Every state and the states it may move to, each move one of the gateway's settle calls
# (adapter/server/gateway.py); anything else is a bug and raises IllegalTransition.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    # the counter answered (_on_response); time-out, broker error, disconnect or stop made the
    # outcome unknown; reconciliation found no trace (_reconcile)
    SENDING: frozenset({ACKNOWLEDGED, REJECTED, UNKNOWN, NOT_PLACED}),
    # a late response, a push (_learn) or reconciliation settled it
    UNKNOWN: frozenset({ACKNOWLEDGED, REJECTED, NOT_PLACED}),
    # the counter refused it after numbering it (status 57, _learn)
    ACKNOWLEDGED: frozenset({REJECTED}),
    REJECTED: frozenset(),
    NOT_PLACED: frozenset(),
}
STATES = frozenset(TRANSITIONS)
RECENT = 2048  # settled records kept in memory besides those in flight
_IN_FLIGHT_SQL = "state IN ('sending', 'unknown')"  # word for word the partial index's condition
_COLUMNS = ("id, account_id, client_order_id, fingerprint, strategy_name, order_remark, state, order_id, "
            "error_msg, response, created_ns")

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
CREATE INDEX IF NOT EXISTS orders_in_flight ON orders (state) WHERE state IN ('sending', 'unknown');
CREATE INDEX IF NOT EXISTS orders_by_order_id ON orders (account_id, order_id);
CREATE INDEX IF NOT EXISTS orders_by_created ON orders (created_ns);
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


def day_start_ns(day: date) -> int:
    """The first nanosecond of a trading day (midnight, China Standard Time)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=CHINA).timestamp()) * 10**9


def trading_day(now_ns: int | None = None) -> date:
    """The date in China Standard Time (now by default)."""
    return datetime.fromtimestamp((time.time_ns() if now_ns is None else now_ns) / 1e9, CHINA).date()


class IllegalTransition(RuntimeError):
    """A record asked to move between two states ``TRANSITIONS`` does not connect: a bug."""

    def __init__(self, record: "OrderRecord", state: str) -> None:
        super().__init__(f"order ledger: client_order_id {record.client_order_id!r} (account {record.account_id}) "
                         f"cannot move from {record.state!r} to {state!r}")
        self.client_order_id, self.from_state, self.to_state = record.client_order_id, record.state, state


class LedgerUnreadable(RuntimeError):
    """``orders.sqlite3`` exists but SQLite cannot read it (truncated, overwritten, not a database)."""


def _new_prefix(avoid: frozenset[str] = frozenset()) -> str:
    while True:
        prefix = "".join(secrets.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(3))
        if prefix not in avoid:
            return prefix


class Ledger:
    def __init__(self, directory: str | Path, *, sync: str = "normal", background_checkpoints: bool = False) -> None:
        self.path = Path(directory) / FILE_NAME
        self._checkpoints: Checkpoints | None = None
        # Whether the file was there before: a ledger created now has no history (stores.py).
        self.existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self._db = open_database(self.path, _SCHEMA, full_sync=sync == "full")
            self._load()
            if background_checkpoints:  # the gateway's: its I/O thread never waits for a checkpoint's fsync
                self._checkpoints = Checkpoints(self._db, self.path, full_sync=sync == "full", name="ledger")
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
        self._last_id = int(self._db.execute("SELECT MAX(id) FROM orders").fetchone()[0] or 0)
        # The encoder thread links records too (gateway._encode_large): lookups that fill the
        # cache from SQLite must not interleave with the I/O thread's.
        self._lock = threading.RLock()
        self._changes = 0  # total_changes when the batch began
        self._batching = False  # between begin and commit
        self._in_flight: dict[int, OrderRecord] = {}
        self._recent: OrderedDict[int, OrderRecord] = OrderedDict()  # settled, least recently used first
        self._by_key: dict[tuple[str, str], OrderRecord] = {}  # over both of the above
        self._by_order_id: dict[tuple[str, int], OrderRecord] = {}
        self._sending: dict[str, set[int]] = {}  # account -> its records in state sending
        # Counts of the states in flight are exact from the start; the settled ones are read
        # once, when first asked for, and kept from then on.
        self._states: Counter[str] = Counter()
        self._settled_counted = False
        for row in self._db.execute(f"SELECT {_COLUMNS} FROM orders WHERE {_IN_FLIGHT_SQL} ORDER BY id"):
            record = _from_row(row)
            self._keep(record)
            self._states[record.state] += 1

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
        if self.has_records():
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
        with self._lock:
            self._db.execute(
                f"INSERT INTO orders ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.account_id, record.client_order_id, record.fingerprint, record.strategy_name,
                 record.order_remark, record.state, record.order_id, record.error_msg, blob, record.created_ns),
            )
            record.tag = ""
            self._keep(record)
            self._states[record.state] += 1
            self._last_id = max(self._last_id, record.id)

    def has_records(self) -> bool:
        return self._db.execute("SELECT 1 FROM orders LIMIT 1").fetchone() is not None

    def size(self) -> int:
        """How many records (a count over an index: for messages, not for every order)."""
        return int(self._db.execute("SELECT COUNT(*) FROM orders").fetchone()[0])

    def identity(self, number: int) -> tuple[str, str, int | None] | None:
        """(account, client order id, order id) of a record number, read without caching."""
        row = self._db.execute("SELECT account_id, client_order_id, order_id FROM orders WHERE id = ?",
                               (number,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def knows(self, account_id: str, client_order_id: str) -> bool:
        """Whether a record of this key exists, read without caching."""
        return self._db.execute("SELECT 1 FROM orders WHERE account_id = ? AND client_order_id = ?",
                                (account_id, client_order_id)).fetchone() is not None

    def iter_records(self) -> Iterator[OrderRecord]:
        """Every record, oldest first, read in pages (offline tools: a rebuild)."""
        after = 0
        while True:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM orders WHERE id > ? ORDER BY id LIMIT 1000",
                                    (after,)).fetchall()
            for row in rows:
                yield self._in_flight.get(row[0]) or _from_row(row)
            if len(rows) < 1000:
                return
            after = rows[-1][0]

    def settled_before(self, cutoff_ns: int, after: int, limit: int) -> list[tuple[int, str, str]]:
        """(number, account, client order id) of settled records created before ``cutoff_ns``,
        numbered above ``after``, oldest first: a page for ``ledger prune``."""
        return self._db.execute(
            f"SELECT id, account_id, client_order_id FROM orders INDEXED BY orders_by_created "
            f"WHERE created_ns < ? AND id > ? AND NOT ({_IN_FLIGHT_SQL}) ORDER BY id LIMIT ?", (cutoff_ns, after, limit),
        ).fetchall()

    def delete(self, numbers: list[int]) -> None:
        """Delete settled records (``ledger prune``, the gateway stopped), in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for number in numbers:
                    self._db.execute(f"DELETE FROM orders WHERE id = ? AND NOT ({_IN_FLIGHT_SQL})", (number,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            for number in numbers:
                record = self._recent.get(number)
                if record is not None:
                    self._drop(record)
            self._settled_counted = False

    # -- the gateway's lookups ----------------------------------------------------------------

    def _tag(self, record_id: int) -> str:
        return make_tag(self.tag_prefix, record_id)

    def _keep(self, record: OrderRecord) -> None:
        """Hold a record in memory: in flight for as long as it is, else among the recent."""
        record.tag = record.tag or self._tag(record.id)
        sending = self._sending.setdefault(record.account_id, set())
        if record.state == SENDING:
            sending.add(record.id)
        else:
            sending.discard(record.id)
        if record.state in IN_FLIGHT:
            self._recent.pop(record.id, None)
            self._in_flight[record.id] = record
        else:
            self._in_flight.pop(record.id, None)
            self._recent[record.id] = record
            self._recent.move_to_end(record.id)
            while len(self._recent) > RECENT:
                self._drop(self._recent.popitem(last=False)[1])
        self._by_key[(record.account_id, record.client_order_id)] = record
        if record.order_id is not None and record.order_id > 0:
            self._by_order_id[(record.account_id, record.order_id)] = record

    def _drop(self, record: OrderRecord) -> None:
        self._sending.get(record.account_id, set()).discard(record.id)
        self._in_flight.pop(record.id, None)
        self._recent.pop(record.id, None)
        key = (record.account_id, record.client_order_id)
        if self._by_key.get(key) is record:
            del self._by_key[key]
        if record.order_id is not None and self._by_order_id.get((record.account_id, record.order_id)) is record:
            del self._by_order_id[(record.account_id, record.order_id)]

    def _hit(self, record: OrderRecord | None) -> OrderRecord | None:
        if record is not None and record.id in self._recent:
            self._recent.move_to_end(record.id)
        return record

    def _fetch(self, where: str, params: tuple[Any, ...]) -> OrderRecord | None:
        """A record not in memory, read by index; it joins the recent ones."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM orders WHERE {where}", params).fetchone()
        if row is None:
            return None
        live = self._in_flight.get(row[0]) or self._recent.get(row[0])
        if live is not None:
            return live
        record = _from_row(row)
        record.tag = self._tag(record.id)
        self._keep(record)
        return record

    def get(self, account_id: str, client_order_id: str) -> OrderRecord | None:
        with self._lock:
            return self._hit(self._by_key.get((account_id, client_order_id))) or self._fetch(
                "account_id = ? AND client_order_id = ?", (account_id, client_order_id))

    def by_tag(self, tag: Any) -> OrderRecord | None:
        parsed = parse_tag(tag)
        if parsed is None or parsed[0] != self.tag_prefix:
            return None
        number = parsed[1]
        with self._lock:
            return self._in_flight.get(number) or self._hit(self._recent.get(number)) or self._fetch(
                "id = ?", (number,))

    def names(self, tags: Iterable[Any]) -> dict[str, tuple[str, str]]:
        """``tag -> (client_order_id, order_remark)`` for many counter remarks at once (a day's
        orders): memory first, the rest in one indexed read per 500, nothing cached."""
        wanted: dict[int, str] = {}
        for tag in tags:
            parsed = parse_tag(tag)
            if parsed is not None and parsed[0] == self.tag_prefix:
                wanted[parsed[1]] = tag
        found: dict[str, tuple[str, str]] = {}
        missing = []
        with self._lock:
            for number, tag in wanted.items():
                record = self._in_flight.get(number) or self._recent.get(number)
                if record is None:
                    missing.append(number)
                else:
                    found[tag] = (record.client_order_id, record.order_remark)
        for start in range(0, len(missing), 500):
            chunk = missing[start:start + 500]
            with self._lock:  # per read: the I/O thread's own ledger work goes on between them
                rows = self._db.execute(
                    f"SELECT id, client_order_id, order_remark FROM orders WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk).fetchall()
            for number, client_order_id, remark in rows:
                found[wanted[number]] = (client_order_id, remark)
        return found

    def by_order_id(self, account_id: str, order_id: Any) -> OrderRecord | None:
        if not isinstance(order_id, int) or isinstance(order_id, bool) or order_id <= 0:
            return None
        with self._lock:
            return self._hit(self._by_order_id.get((account_id, order_id))) or self._fetch(
                "account_id = ? AND order_id = ?", (account_id, order_id))

    def records(self, account_id: str | None = None, *, day: date | None = None) -> list[OrderRecord]:
        """``order_outcomes`` (PROTOCOL §9.7): the account's (or every account's) records created on
        the trading day (today by default) and every record still in flight, oldest first. Earlier
        settled records are not listed (the answer stays a day's size); a repeat of their client
        order id still finds them."""
        since = day_start_ns(day or trading_day())
        where = "created_ns >= ? AND created_ns < ?"
        params: tuple[Any, ...] = (since, since + 86_400 * 10**9)
        if account_id is not None:
            where, params = where + " AND account_id = ?", (*params, account_id)
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM orders INDEXED BY orders_by_created WHERE {where}", params)
            found = {row[0]: self._in_flight.get(row[0]) or _from_row(row) for row in rows}
            for record in self._in_flight.values():
                if account_id is None or record.account_id == account_id:
                    found[record.id] = record
        return [found[number] for number in sorted(found)]

    def sending(self, account_id: str) -> int:
        """The account's orders on their way to the counter (the risk checks' in-flight count)."""
        return len(self._sending.get(account_id, ()))

    def in_flight(self) -> list[OrderRecord]:
        return list(self._in_flight.values())

    def count(self, state: str) -> int:
        if state not in IN_FLIGHT and not self._settled_counted:
            with self._lock:
                for name, number in self._db.execute(
                        f"SELECT state, COUNT(*) FROM orders WHERE NOT ({_IN_FLIGHT_SQL}) GROUP BY state"):
                    self._states[name] = number
                self._settled_counted = True
        return self._states[state]

    # -- writes -------------------------------------------------------------------------------

    def create(self, account_id: str, client_order_id: str, args: dict[str, Any]) -> OrderRecord:
        """Record a new order: committed before this returns, or with the batch (``begin``)."""
        now = time.time_ns()
        same = fingerprint(args)
        with self._lock:
            # The number is chosen here, never by SQLite: it stays above every number used before,
            # also above a rebuilt ledger's floor and the numbers of rolled-back records.
            record_id = max(self._last_id, self._id_floor) + 1
            self._writing()
            self._db.execute(
                "INSERT INTO orders (id, account_id, client_order_id, fingerprint, strategy_name, order_remark, "
                "state, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record_id, account_id, client_order_id, same, args["strategy_name"],
                 args["order_remark"], SENDING, now),
            )
            self._last_id = record_id
            record = OrderRecord(
                record_id, account_id, client_order_id, same, args["strategy_name"],
                args["order_remark"], SENDING, created_ns=now,
            )
            self._keep(record)
            self._states[SENDING] += 1
        return record

    def settle(
        self, record: OrderRecord, state: str, order_id: int | None = None, error_msg: str = "",
        response: dict[str, Any] | None = None,
    ) -> None:
        """Move a record to a new state (one of ``TRANSITIONS``): committed before this returns,
        or with the batch. Raises IllegalTransition for any other move, changing nothing."""
        if state not in TRANSITIONS.get(record.state, frozenset()):
            raise IllegalTransition(record, state)
        with self._lock:
            blob = msgpack.packb(response if response is not None else record.response, use_bin_type=True) \
                if response is not None or record.response is not None else None
            new_order_id = order_id if order_id is not None else record.order_id
            new_error = error_msg if error_msg or state == ACKNOWLEDGED else record.error_msg  # no old reason kept
            self._writing()
            self._db.execute(
                "UPDATE orders SET state = ?, order_id = ?, error_msg = ?, response = ? WHERE id = ?",
                (state, new_order_id, new_error, blob, record.id),
            )
            self._states[record.state] -= 1
            self._states[state] += 1
            record.state, record.order_id, record.error_msg = state, new_order_id, new_error
            if response is not None:
                record.response = response
            self._keep(record)

    def begin(self) -> None:
        """Hold the writes that follow in one transaction, until ``commit`` (one disk write
        for a whole batch of commands or answers). The transaction opens at the first write:
        a batch that records nothing costs nothing."""
        self._batching = True

    def _writing(self) -> None:
        """Before a write (under the lock): open the batch's transaction if it is not open."""
        if self._batching and not self._db.in_transaction:
            self._db.execute("BEGIN")
            self._changes = self._db.total_changes

    def commit(self) -> None:
        with self._lock:
            self._batching = False
            if not self._db.in_transaction:
                return
            self._db.execute("COMMIT")
            if self._checkpoints is not None and self._db.total_changes != self._changes:
                # about a table leaf and the index leaves each changed row touches
                self._checkpoints.wrote(4 * (self._db.total_changes - self._changes))

    def rollback(self, created: list[OrderRecord]) -> None:
        """After a failed commit: forget the records that never reached the disk."""
        with self._lock:
            self._batching = False
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            for record in created:
                self._drop(record)
                self._states[record.state] -= 1

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
        self._db.close()


def _from_row(row: tuple[Any, ...]) -> OrderRecord:
    response = msgpack.unpackb(row[9], raw=False) if row[9] is not None else None
    return OrderRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], order_id=row[7], error_msg=row[8],
                       response=response, created_ns=row[10])


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
