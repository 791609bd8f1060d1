"""The kill switch's state, durable across restarts: ``data_dir/trading-state.json``.

A change takes effect in memory first, then is written atomically (a temporary file, fsync,
rename) before it is announced, so a gateway that restarts comes back in the state it last
reported. A write that fails leaves the new state in force and says so loudly (``persisted``
false, a critical log line); an unreadable file starts the gateway halted: failing closed is
the only safe reading of a lost kill switch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .risk import HALTED, NORMAL, TRADING_STATES

log = logging.getLogger(__name__)

FILE_NAME = "trading-state.json"


class KillSwitch:
    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.state = NORMAL
        self.reason = ""
        self.since_ns = 0
        self.persisted = True  # False while the state in force is not on disk
        self.save_error = ""

    def load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            state = data["state"]
            if state not in TRADING_STATES:
                raise ValueError(f"unknown state {state!r}")
            self.state, self.reason, self.since_ns = state, str(data.get("reason", "")), int(data.get("since_ns", 0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("cannot read %s (%s): starting HALTED until 'qmt-adapter resume'", self.path, exc)
            self.state, self.reason, self.since_ns = HALTED, f"state file unreadable: {exc}", time.time_ns()
        if self.state != NORMAL:
            log.warning("trading state %s since the last run: %s", self.state.upper(), self.reason or "no reason given")

    def set(self, state: str, reason: str) -> bool:
        """Take effect at once, in memory, then save; False when it could not be saved (it stays
        in force in this process, and ``persisted`` says so until a later save succeeds)."""
        since = time.time_ns()
        self.state, self.reason, self.since_ns = state, reason, since
        return self.save()

    def save(self) -> bool:
        body = json.dumps({"state": self.state, "reason": self.reason, "since_ns": self.since_ns})
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            self.persisted = False
            self.save_error = str(exc)
            log.critical("the trading state %s is in force but could not be saved to %s: %s",
                         self.state.upper(), self.path, exc)
            return False
        self.persisted, self.save_error = True, ""
        return True

    def as_map(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "since_ns": self.since_ns, "persisted": self.persisted}
