"""The simulated counter's books on disk: one SQLite file, written through on every change.

A gateway killed with SIGKILL and started again meets the counter it left: the same cash,
positions, orders of the day (with every field), trades, last prices and id sequences.

File format (SQLite 3, ``journal_mode=WAL``, ``synchronous=NORMAL``: a committed
transaction survives a process crash, not necessarily a power cut)::

    meta(key TEXT PRIMARY KEY, value TEXT)
        format = "qmt-zmq-adapter.sim-counter", version = "1", created = unix time,
        next_order_id / next_sysid / next_trade_id = the next id each sequence hands out
        (ids never repeat: not across restarts, not across next_day())
    accounts(account_id PRIMARY KEY, cash, frozen_cash)
    positions(account_id, code, volume, can_use, frozen, yesterday, cost, open_cost)
        PRIMARY KEY (account_id, code), listed in rowid order (the order they were opened);
        cost includes buy commissions, open_cost does not
    orders(order_id PRIMARY KEY, sysid, account_id, code, name, market, secu_account,
           order_type, volume, price_type, price, strategy_name, order_remark, order_time,
           status, status_msg, traded_volume, traded_amount, frozen_cash)
        today's orders, junk (57) ones included
    trades(seq INTEGER PRIMARY KEY, traded_id UNIQUE, account_id, stock_code, order_type,
           traded_time, traded_price, traded_volume, traded_amount, order_id, order_sysid,
           strategy_name, order_remark, direction, offset_flag, commission, secu_account,
           instrument_name)
        today's trades in the order they happened (seq); column names are XtTrade's
    quotes(code PRIMARY KEY, prev_close, last)

Money and prices of the books (cash, costs, order prices and amounts, quotes) are exact
decimal strings; the trade columns hold what the XtTrade pushes carried (floats). The
file is opened with ``locking_mode=EXCLUSIVE``: while a counter has it open no other
connection (another counter, the sqlite3 shell) can use it; the lock dies with the process.

Writing: the counter writes one transaction per round of work on its thread (a request, or
up to 64 that queued up meanwhile; a price move; a walk step; next_day()), holding back that
round's responses and pushes until it is committed. Not stored: sessions and subscriptions
(a restart drops every connection), the order latency and refusal settings, and the price
walk's random state (the walk resumes from the stored last prices with a fresh generator).

Only the counter's thread uses a ``StateFile`` after construction.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMAT = "qmt-zmq-adapter.sim-counter"
VERSION = "1"

ORDER_COLUMNS = (
    "order_id",
    "sysid",
    "account_id",
    "code",
    "name",
    "market",
    "secu_account",
    "order_type",
    "volume",
    "price_type",
    "price",
    "strategy_name",
    "order_remark",
    "order_time",
    "status",
    "status_msg",
    "traded_volume",
    "traded_amount",
    "frozen_cash",
)
TRADE_COLUMNS = (
    "traded_id",
    "account_id",
    "stock_code",
    "order_type",
    "traded_time",
    "traded_price",
    "traded_volume",
    "traded_amount",
    "order_id",
    "order_sysid",
    "strategy_name",
    "order_remark",
    "direction",
    "offset_flag",
    "commission",
    "secu_account",
    "instrument_name",
)
POSITION_COLUMNS = ("account_id", "code", "volume", "can_use", "frozen", "yesterday", "cost", "open_cost")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY, cash TEXT NOT NULL, frozen_cash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    account_id TEXT NOT NULL, code TEXT NOT NULL,
    volume INTEGER NOT NULL, can_use INTEGER NOT NULL, frozen INTEGER NOT NULL, yesterday INTEGER NOT NULL,
    cost TEXT NOT NULL, open_cost TEXT NOT NULL,
    PRIMARY KEY (account_id, code)
);
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, sysid TEXT NOT NULL, account_id TEXT NOT NULL, code TEXT NOT NULL,
    name TEXT NOT NULL, market INTEGER NOT NULL, secu_account TEXT NOT NULL, order_type INTEGER NOT NULL,
    volume INTEGER NOT NULL, price_type INTEGER NOT NULL, price TEXT NOT NULL, strategy_name TEXT NOT NULL,
    order_remark TEXT NOT NULL, order_time INTEGER NOT NULL, status INTEGER NOT NULL, status_msg TEXT NOT NULL,
    traded_volume INTEGER NOT NULL, traded_amount TEXT NOT NULL, frozen_cash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_account ON orders (account_id, order_id);
CREATE TABLE IF NOT EXISTS trades (
    seq INTEGER PRIMARY KEY, traded_id TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL,
    stock_code TEXT NOT NULL, order_type INTEGER NOT NULL, traded_time INTEGER NOT NULL,
    traded_price REAL NOT NULL, traded_volume INTEGER NOT NULL, traded_amount REAL NOT NULL,
    order_id INTEGER NOT NULL, order_sysid TEXT NOT NULL, strategy_name TEXT NOT NULL,
    order_remark TEXT NOT NULL, direction INTEGER NOT NULL, offset_flag INTEGER NOT NULL,
    commission REAL NOT NULL, secu_account TEXT NOT NULL, instrument_name TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_by_account ON trades (account_id, seq);
CREATE TABLE IF NOT EXISTS quotes (code TEXT PRIMARY KEY, prev_close TEXT NOT NULL, last TEXT NOT NULL);
"""

_ORDER_UPSERT = (
    f"INSERT OR REPLACE INTO orders ({', '.join(ORDER_COLUMNS)}) VALUES ({', '.join('?' * len(ORDER_COLUMNS))})"
)
_TRADE_INSERT = f"INSERT INTO trades ({', '.join(TRADE_COLUMNS)}) VALUES ({', '.join('?' * len(TRADE_COLUMNS))})"
# A true upsert (not REPLACE) keeps the row's rowid: positions load in the order they were opened.
_POSITION_UPSERT = (
    f"INSERT INTO positions ({', '.join(POSITION_COLUMNS)}) VALUES ({', '.join('?' * len(POSITION_COLUMNS))}) "
    f"ON CONFLICT (account_id, code) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in POSITION_COLUMNS[2:])
)


class StateFileError(RuntimeError):
    """The state file cannot be used: in use by another counter, not a counter file, unreadable."""


class Changes:
    """One transaction's worth of book changes (rows in the column orders above)."""

    __slots__ = ("accounts", "clear_day", "delete_positions", "ids", "orders", "positions", "quotes", "trades")

    def __init__(self) -> None:
        self.clear_day: list[str] = []  # accounts whose orders and trades are deleted first (next_day)
        self.accounts: list[tuple[str, str, str]] = []
        self.positions: list[tuple[Any, ...]] = []
        self.delete_positions: list[tuple[str, str]] = []
        self.orders: list[tuple[Any, ...]] = []
        self.trades: list[tuple[Any, ...]] = []
        self.quotes: list[tuple[str, str, str]] = []
        self.ids: tuple[int, int, int] | None = None  # (next_order_id, next_sysid, next_trade_id)

    def __bool__(self) -> bool:
        return bool(
            self.clear_day
            or self.accounts
            or self.positions
            or self.delete_positions
            or self.orders
            or self.trades
            or self.quotes
            or self.ids is not None
        )


class StateFile:
    """An open state file. ``is_new`` tells whether it was created (empty) by this open."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = 0.25) -> None:
        self.path = os.fspath(path)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            raise StateFileError(f"cannot open the sim counter state file {self.path}: {exc}") from None
        try:
            db = self._db
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            # Look before writing anything: a foreign database is refused untouched.
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
            self.is_new = not tables
            if tables and meta.get("format") != FORMAT:
                raise StateFileError(f"{self.path} is not a sim counter state file (format {meta.get('format')!r})")
            if tables and meta.get("version") != VERSION:
                raise StateFileError(f"{self.path}: unsupported state file version {meta.get('version')!r}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # The write lock, taken now and kept (exclusive mode): a second counter fails here.
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if self.is_new:
                meta = {"format": FORMAT, "version": VERSION, "created": str(int(time.time()))}
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
            db.execute("COMMIT")
            self.meta = meta
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise StateFileError(
                    f"the sim counter state file {self.path} is in use by another counter ({exc})"
                ) from None
            raise StateFileError(f"cannot use the sim counter state file {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StateFileError(f"{self.path} is not a usable sim counter state file: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    # -- reading (at construction) -------------------------------------------------------

    def next_ids(self) -> tuple[int, int, int] | None:
        try:
            return (int(self.meta["next_order_id"]), int(self.meta["next_sysid"]), int(self.meta["next_trade_id"]))
        except KeyError:
            return None

    def account(self, account_id: str) -> tuple[str, str] | None:
        row = self._db.execute("SELECT cash, frozen_cash FROM accounts WHERE account_id = ?", (account_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def positions(self, account_id: str) -> list[dict[str, Any]]:
        return self._dicts(
            f"SELECT {', '.join(POSITION_COLUMNS)} FROM positions WHERE account_id = ? ORDER BY rowid", (account_id,)
        )

    def orders(self, account_id: str) -> list[dict[str, Any]]:
        return self._dicts(
            f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE account_id = ? ORDER BY order_id", (account_id,)
        )

    def trades(self, account_id: str) -> list[dict[str, Any]]:
        return self._dicts(
            f"SELECT {', '.join(TRADE_COLUMNS)} FROM trades WHERE account_id = ? ORDER BY seq", (account_id,)
        )

    def quotes(self) -> dict[str, tuple[str, str]]:
        rows = self._db.execute("SELECT code, prev_close, last FROM quotes")
        return {code: (prev, last) for code, prev, last in rows}

    def max_ids(self) -> tuple[int, int, int]:
        """The largest ids the tables hold (0 if none): a floor for the sequences."""
        order_id, sysid = self._db.execute("SELECT max(order_id), max(CAST(sysid AS INTEGER)) FROM orders").fetchone()
        (trade_id,) = self._db.execute("SELECT max(CAST(traded_id AS INTEGER)) FROM trades").fetchone()
        return (order_id or 0, sysid or 0, trade_id or 0)

    def _dicts(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        cursor = self._db.execute(sql, args)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    # -- writing -------------------------------------------------------------------------

    def write(self, changes: Changes) -> None:
        """Apply ``changes`` in one transaction (all or nothing)."""
        if not changes:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            for account_id in changes.clear_day:
                db.execute("DELETE FROM orders WHERE account_id = ?", (account_id,))
                db.execute("DELETE FROM trades WHERE account_id = ?", (account_id,))
            if changes.accounts:
                db.executemany(
                    "INSERT OR REPLACE INTO accounts (account_id, cash, frozen_cash) VALUES (?, ?, ?)", changes.accounts
                )
            if changes.delete_positions:
                db.executemany("DELETE FROM positions WHERE account_id = ? AND code = ?", changes.delete_positions)
            if changes.positions:
                db.executemany(_POSITION_UPSERT, changes.positions)
            if changes.orders:
                db.executemany(_ORDER_UPSERT, changes.orders)
            if changes.trades:
                db.executemany(_TRADE_INSERT, changes.trades)
            if changes.quotes:
                db.executemany(
                    "INSERT OR REPLACE INTO quotes (code, prev_close, last) VALUES (?, ?, ?)", changes.quotes
                )
            if changes.ids is not None:
                names = ("next_order_id", "next_sysid", "next_trade_id")
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [(name, str(value)) for name, value in zip(names, changes.ids)],
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()



def saved_accounts(path: str | os.PathLike[str]) -> set[str]:
    """The accounts a counter state file holds, read without writing or keeping it open; an empty
    set when there is no such file or it cannot be read now (another counter holds it)."""
    if not os.path.exists(path):
        return set()
    try:
        uri = Path(path).resolve().as_uri() + "?mode=ro"  # percent-encoded: any file name
        db = sqlite3.connect(uri, uri=True, timeout=0.25)
    except sqlite3.Error:
        return set()
    try:
        return {str(account_id) for (account_id,) in db.execute("SELECT account_id FROM accounts")}
    except sqlite3.Error:
        return set()
    finally:
        db.close()
