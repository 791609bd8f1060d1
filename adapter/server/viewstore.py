"""Where the books view keeps finished orders and trades: a SQLite file of its own, or memory.

Both stores hold records as ``(account_id, kind, key) -> (place, packed bytes)``; ``place``
is when the key was first seen, so reading them in place order gives the view's first-seen
order. Writing a key already held keeps its place (an update never moves a record).
The file is a cache of what the journal holds: it is made empty when opened and refilled
by the view (``BooksView.rebuild``), so nothing in it needs to survive a crash.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator

from .storage import PAGE_SIZE, Checkpoints, open_database

log = logging.getLogger(__name__)

FILE_NAME = "books.sqlite3"

# Keyed as looked up (the desk asks for one order or trade by id); ``place`` gives the order a
# snapshot lists them in. ``key`` has no type: order ids stay integers, trade ids strings.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key NOT NULL,
    place INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (account_id, kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_in_place ON records (account_id, kind, place);
"""

FullKey = tuple[str, str, Any]  # (account_id, kind, key)
# What a commit writes: per key its place (kept if the key is held already) and packed record.
Writes = dict[FullKey, tuple[int, bytes]]


class MemoryStore:
    """The records in dicts: for a view without a file, and after the file failed."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], dict[Any, tuple[int, bytes]]] = {}

    def write(self, writes: Writes) -> None:
        for (account_id, kind, key), (place, data) in writes.items():
            table = self._tables.setdefault((account_id, kind), {})
            held = table.get(key)
            table[key] = (held[0] if held is not None else place, data)

    def get(self, account_id: str, kind: str, key: Any) -> bytes | None:
        held = self._tables.get((account_id, kind), {}).get(key)
        return held[1] if held is not None else None

    def place(self, account_id: str, kind: str, key: Any) -> int | None:
        held = self._tables.get((account_id, kind), {}).get(key)
        return held[0] if held is not None else None

    def rows(self, account_id: str, kind: str) -> Iterator[tuple[int, Any, bytes]]:
        table = self._tables.get((account_id, kind), {})
        return iter(sorted(((place, key, data) for key, (place, data) in table.items()), key=_first))

    def count(self, account_id: str, kind: str) -> int:
        return len(self._tables.get((account_id, kind), {}))

    def clear(self, account_id: str) -> None:
        for table in [table for table in self._tables if table[0] == account_id]:
            del self._tables[table]

    def everything(self) -> Iterable[tuple[str, str, Any, int, bytes]]:
        for (account_id, kind), table in self._tables.items():
            for key, (place, data) in table.items():
                yield account_id, kind, key, place, data

    def close(self) -> None:
        self._tables.clear()


class FileStore:
    """The records in ``books.sqlite3``: read on a lookup's miss and by snapshots, written once per
    batch. Errors are raised; the view decides what a failure means."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)  # start empty: the view refills it from the journal
        self._db = open_database(path, _SCHEMA)
        # Rebuilt at every start, so no write has to reach the disk: no fsync on the I/O thread.
        self._db.execute("PRAGMA synchronous=OFF")
        self._checkpoints = Checkpoints(self._db, path, full_sync=False, name="books view")

    def write(self, writes: Writes) -> None:
        kept = [(*full, place, data) for full, (place, data) in writes.items()]
        db = self._db
        try:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO records (account_id, kind, key, place, data) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (account_id, kind, key) DO UPDATE SET data = excluded.data", kept)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        # about a leaf of the table and one of the index per commit, more for a big one
        size = sum(len(row[4]) for row in kept)
        self._checkpoints.wrote(2 * (1 + size // PAGE_SIZE))

    def get(self, account_id: str, kind: str, key: Any) -> bytes | None:
        row = self._db.execute("SELECT data FROM records WHERE account_id = ? AND kind = ? AND key = ?",
                               (account_id, kind, key)).fetchone()
        return row[0] if row is not None else None

    def place(self, account_id: str, kind: str, key: Any) -> int | None:
        row = self._db.execute("SELECT place FROM records WHERE account_id = ? AND kind = ? AND key = ?",
                               (account_id, kind, key)).fetchone()
        return row[0] if row is not None else None

    def rows(self, account_id: str, kind: str) -> Iterator[tuple[int, Any, bytes]]:
        return iter(self._db.execute(
            "SELECT place, key, data FROM records WHERE account_id = ? AND kind = ? ORDER BY place",
            (account_id, kind)).fetchall())

    def count(self, account_id: str, kind: str) -> int:
        row = self._db.execute("SELECT count(*) FROM records WHERE account_id = ? AND kind = ?",
                               (account_id, kind)).fetchone()
        return int(row[0])

    def clear(self, account_id: str) -> None:
        self._db.execute("DELETE FROM records WHERE account_id = ?", (account_id,))
        self._checkpoints.request()  # a delete touches many pages: checkpoint soon

    def everything(self) -> Iterable[tuple[str, str, Any, int, bytes]]:
        return self._db.execute("SELECT account_id, kind, key, place, data FROM records").fetchall()

    def close(self) -> None:
        try:
            self._checkpoints.close()
        finally:
            self._db.close()


def _first(row: tuple[int, Any, bytes]) -> int:
    return row[0]
