"""Opening the gateway's SQLite files the one way they are used."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PAGE_SIZE = 4096  # SQLite's default page size, for counting the pages a commit writes
CHECKPOINT_PAGES = 1000  # WAL pages between checkpoints: SQLite's own auto-checkpoint size


def open_database(path: Path, schema: str, *, full_sync: bool = False) -> sqlite3.Connection:
    """WAL, autocommit (transactions are explicit), usable from the thread the gateway hands it to.

    ``synchronous=NORMAL`` survives a process crash (``kill -9``); ``full_sync`` also a power cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if full_sync else 'NORMAL'}")
    db.executescript(schema)
    return db


class Checkpoints:
    """Copies a database's WAL into its file on a thread and connection of its own, so the
    thread that commits rarely waits for the fsync a checkpoint makes.

    The committing connection turns SQLite's auto-checkpoint off and reports what it wrote
    (``wrote``). A checkpoint syncs as the main connection would (same ``synchronous``); only
    where it runs changes. PASSIVE never blocks the writer: a pass that could not copy
    everything is tried again at the next request, and once one has copied the bulk, the
    writer copies the few frames appended meanwhile so the WAL starts over (stays bounded)."""

    def __init__(self, db: sqlite3.Connection, path: Path, *, full_sync: bool, name: str) -> None:
        self._db = db
        db.execute("PRAGMA wal_autocheckpoint=0")
        self._own = open_database(path, "", full_sync=full_sync)
        self._name = name
        self._wanted = threading.Event()
        self._closing = False
        self._finished = False  # a pass copied the bulk: the writer may end the WAL
        self._pages = 0  # written since the thread was last asked
        self.passes = 0
        self._thread = threading.Thread(target=self._run, name=f"{name}-checkpoint", daemon=True)
        self._thread.start()

    def wrote(self, pages: int) -> None:
        """After a commit (never inside a transaction): ``pages`` more in the WAL."""
        self._pages += pages
        if self._finished:
            self._finished = False
            try:  # after the commit: a failure here must not make the write look failed
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                log.warning("%s checkpoint failed: %s", self._name, exc)
        elif self._pages >= CHECKPOINT_PAGES:
            self._pages = 0
            self._wanted.set()

    def request(self) -> None:
        self._pages = 0
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closing:
                return
            try:
                (_busy, frames, copied), = self._own.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the next request tries again; commits are unaffected
                log.warning("%s checkpoint failed: %s", self._name, exc)
                continue
            self.passes += 1
            self._finished = 0 < copied <= frames

    def close(self) -> None:
        """Before the main connection closes (the last to close checkpoints what is left)."""
        self._closing = True
        self._wanted.set()
        self._thread.join()
        self._own.close()
