"""Opening the gateway's SQLite files the one way they are used."""

from __future__ import annotations

import sqlite3
from pathlib import Path


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
