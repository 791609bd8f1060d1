"""The durable event journal: every event is appended here before it is published.

SQLite in WAL mode, one row per event holding the exact PUB frames (topic, payload), so a
replayed event is byte-for-byte the live one. ``seq`` continues across restarts, also after
``kill -9`` and after retention has pruned every row (``pruned_through`` is kept in meta).
The ``epoch`` changes only when the journal file is created anew.

Only the gateway's I/O thread uses a Journal once the gateway runs. Copying the WAL into the
database file (a checkpoint, which waits for fsync) is done mostly by the journal's own
``journal-checkpoint`` thread on a second connection, so appends rarely wait for it.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .storage import PAGE_SIZE, Checkpoints, open_database

log = logging.getLogger(__name__)

FILE_NAME = "journal.sqlite3"
AGE_PRUNE_INTERVAL = 60.0  # at most this many seconds between retention-by-age checks
PRUNE_CHUNK = 10_000  # rows looked at per step when pruning by size

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""


class SeqExpired(Exception):
    """The asked-for seq is older than the oldest event the journal keeps."""

    def __init__(self, from_seq: int, first_kept: int) -> None:
        super().__init__(f"seq {from_seq} is no longer in the journal (first kept: {first_kept})")
        self.from_seq = from_seq
        self.first_kept = first_kept


@dataclass(frozen=True)
class Page:
    events: list[tuple[str, bytes]]
    next_seq: int  # every seq before this (from from_seq on) was examined
    more: bool


class Journal:
    def __init__(
        self,
        directory: str | Path,
        *,
        sync: str = "normal",
        retention_days: float = 0.0,
        retention_bytes: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(directory) / FILE_NAME
        self.retention_days = retention_days
        self.retention_bytes = retention_bytes
        self._clock = clock
        # Opened on the control thread, used only by the I/O thread afterwards.
        self._db = open_database(self.path, _SCHEMA, full_sync=sync == "full")
        self._checkpoints = Checkpoints(self._db, self.path, full_sync=sync == "full", name="journal")
        epoch = self._meta("epoch")
        if epoch is None:
            epoch = secrets.token_hex(8)
            self._set_meta("epoch", epoch)
            log.info("new journal %s, epoch %s", self.path, epoch)
        self.epoch = epoch
        self._pruned_through = int(self._meta("pruned_through") or 0)
        newest, oldest, count, size = self._db.execute(
            "SELECT max(seq), min(seq), count(*), coalesce(sum(length(payload)), 0) FROM events"
        ).fetchone()
        self.last_seq = max(newest or 0, self._pruned_through)
        self._first_seq = oldest or 0
        self.count = count
        self.payload_bytes = size
        self._next_age_prune = 0.0

    # -- meta ---------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        """A value kept beside the events (the order ledger's identity, adapter/server/stores.py)."""
        return self._meta(key)

    def set_meta(self, key: str, value: str) -> None:
        """Committed at once; not for keys the journal keeps itself (epoch, pruned_through)."""
        if key in ("epoch", "pruned_through"):
            raise ValueError(f"the journal keeps {key!r} itself")
        self._set_meta(key, value)

    # -- writing ------------------------------------------------------------------------

    def append(self, rows: Sequence[tuple[int, int, str, bytes]]) -> None:
        """Append ``(seq, ts, topic, payload)`` rows in one transaction; seqs must be new."""
        if not rows:
            return
        if len(rows) == 1:  # one statement commits alone: no BEGIN/COMMIT round trips
            self._db.execute("INSERT INTO events (seq, ts, topic, payload) VALUES (?, ?, ?, ?)", rows[0])
        else:
            with self._transaction():
                self._db.executemany("INSERT INTO events (seq, ts, topic, payload) VALUES (?, ?, ?, ?)", rows)
        self.last_seq = rows[-1][0]
        if not self._first_seq:
            self._first_seq = rows[0][0]
        self.count += len(rows)
        size = 0
        for row in rows:
            size += len(row[3])
        self.payload_bytes += size
        self._wrote(2 + size // PAGE_SIZE)  # a commit writes the leaf it appends to and a parent

    def _wrote(self, pages: int) -> None:
        self._checkpoints.wrote(pages)

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db)

    # -- reading ------------------------------------------------------------------------

    @property
    def first_seq(self) -> int:
        """The oldest seq kept (0 when empty)."""
        return self._first_seq

    def read(
        self, from_seq: int, to_seq: int | None, prefixes: Iterable[str], limit: int,
        allowed: Iterable[str] | None = None, max_bytes: int = 0,
    ) -> Page:
        """Events in ``[from_seq, to_seq]`` whose topic starts with a prefix (none: all) and,
        unless ``allowed`` is None, also with one of ``allowed`` (what the reader may see).
        ``max_bytes`` (0: no bound): the page ends before the event that would take its payloads
        past it (it always holds at least one), and ``next_seq`` is that event's seq."""
        if self.count and from_seq < self._first_seq:
            raise SeqExpired(from_seq, self._first_seq)
        if not self.count and from_seq <= self._pruned_through:
            raise SeqExpired(from_seq, self._pruned_through + 1)
        upper = self.last_seq if to_seq is None else min(to_seq, self.last_seq)
        if from_seq > upper:
            return Page([], from_seq, False)
        sql = "SELECT seq, topic, payload FROM events WHERE seq BETWEEN ? AND ?"
        params: list[object] = [from_seq, upper]
        wanted = list(prefixes)
        groups = [wanted] if wanted and "" not in wanted else []
        if allowed is not None:
            groups.append(list(allowed))
        for group in groups:
            # An empty allowed list matches nothing: "(0)".
            sql += " AND (" + (" OR ".join("substr(topic, 1, ?) = ?" for _ in group) or "0") + ")"
            for prefix in group:
                params += [len(prefix), prefix]
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        rows = self._db.execute(sql, params).fetchall()
        if len(rows) == limit:
            next_seq = rows[-1][0] + 1
        else:  # fewer than the limit matched: everything up to the bound was examined
            next_seq = upper + 1
        if max_bytes:
            size = 0
            for index, (seq, _topic, payload) in enumerate(rows):
                size += len(payload)
                if size > max_bytes and index:
                    rows, next_seq = rows[:index], seq
                    break
        return Page([(topic, bytes(payload)) for _, topic, payload in rows], next_seq, next_seq <= upper)

    def rows(
        self, prefixes: Sequence[str], *, tail: int = 0, page_size: int = 10_000
    ) -> Iterator[tuple[int, int, str, bytes]]:
        """Every kept ``(seq, ts, topic, payload)`` whose topic starts with one of ``prefixes``,
        oldest first, read in pages; with ``tail``, only the payload's last ``tail`` bytes (the
        start-up check of the order ledger reads one field there, adapter/server/stores.py)."""
        # Prefix ranges (topic >= p AND topic < p with its last character raised) cost less than substr().
        where = " OR ".join("(topic >= ? AND topic < ?)" for _ in prefixes) or "1"
        params: list[object] = []
        for prefix in prefixes:
            params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
        column = f"substr(payload, -{int(tail)})" if tail > 0 else "payload"
        after = 0
        while True:
            page = self._db.execute(
                f"SELECT seq, ts, topic, {column} FROM events WHERE seq > ? AND ({where}) ORDER BY seq LIMIT ?",
                [after, *params, page_size],
            ).fetchall()
            for seq, ts, topic, payload in page:
                yield seq, ts, topic, bytes(payload)
            if len(page) < page_size:
                return
            after = page[-1][0]

    def info(self) -> dict[str, object]:
        return {
            "epoch": self.epoch,
            "first_seq": self._first_seq,
            "last_seq": self.last_seq,
            "count": self.count,
            "size_bytes": self.size_bytes(),
            "payload_bytes": self.payload_bytes,
            "path": str(self.path),
            "retention_days": self.retention_days,
            "retention_bytes": self.retention_bytes,
        }

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += Path(f"{self.path}{suffix}").stat().st_size
            except OSError:
                pass
        return total

    # -- retention ----------------------------------------------------------------------

    def prune_if_due(self) -> int:
        """Apply retention when the size bound is passed or the age check is due; rows dropped."""
        dropped = 0
        if self.retention_bytes and self.payload_bytes > self.retention_bytes:
            dropped += self._prune_by_size(int(self.retention_bytes * 0.9))
        now = self._clock()
        if self.retention_days and now >= self._next_age_prune:
            self._next_age_prune = now + min(AGE_PRUNE_INTERVAL, self.retention_days * 8640)  # a tenth of the window
            dropped += self._prune_by_age(int((now - self.retention_days * 86400) * 1e9))
        return dropped

    def _prune_by_size(self, target: int) -> int:
        excess = self.payload_bytes - target
        cut = 0
        freed = 0
        start = self._first_seq
        while freed < excess:
            rows = self._db.execute(
                "SELECT seq, length(payload) FROM events WHERE seq >= ? ORDER BY seq LIMIT ?", (start, PRUNE_CHUNK)
            ).fetchall()
            if not rows:
                break
            for seq, size in rows:
                cut, freed = seq, freed + size
                if freed >= excess:
                    break
            start = rows[-1][0] + 1
        return self._drop_through(cut) if cut else 0

    def _prune_by_age(self, cutoff_ns: int) -> int:
        row = self._db.execute("SELECT seq FROM events WHERE ts >= ? ORDER BY seq LIMIT 1", (cutoff_ns,)).fetchone()
        cut = self.last_seq if row is None else row[0] - 1
        return self._drop_through(cut) if cut >= self._first_seq and self.count else 0

    def _drop_through(self, seq: int) -> int:
        with self._transaction():
            dropped_bytes, dropped = self._db.execute(
                "SELECT coalesce(sum(length(payload)), 0), count(*) FROM events WHERE seq <= ?", (seq,)
            ).fetchone()
            self._db.execute("DELETE FROM events WHERE seq <= ?", (seq,))
            self._pruned_through = max(self._pruned_through, seq)
            self._set_meta("pruned_through", str(self._pruned_through))
        self.count -= dropped
        self.payload_bytes -= dropped_bytes
        self._checkpoints.request()  # a delete touches many pages: checkpoint soon
        oldest = self._db.execute("SELECT min(seq) FROM events").fetchone()[0]
        self._first_seq = oldest or 0
        log.info("journal retention dropped %d events through seq %d", dropped, seq)
        return int(dropped)

    def close(self) -> None:
        self._checkpoints.close()
        self._db.close()  # the last connection to close checkpoints what is left, as before


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
