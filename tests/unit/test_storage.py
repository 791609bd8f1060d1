"""A store's WAL is copied into its file on a thread of its own (tests/unit/test_ledger.py
checks the gateway's ledger WAL stays bounded)."""

from __future__ import annotations

import time
from pathlib import Path

from adapter.server.storage import Checkpoints, open_database


def test_closing_stops_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    db = open_database(path, "")
    checkpoints = Checkpoints(db, path, full_sync=False, name="test")
    checkpoints.request()
    deadline = time.monotonic() + 10
    while checkpoints.passes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    checkpoints.close()
    assert checkpoints.passes >= 1 and not checkpoints._thread.is_alive()
    db.close()
