"""What the bench scripts share: where results go, how a run is written, the served line."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import zmq

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
# `qmt-adapter serve` logs this once it listens (ports chosen at random: tcp://127.0.0.1:*).
SERVING = re.compile(r"serving: router (\S+), pub (\S+),")
# A served gateway's pre-trade checks, off: a load run trips each of them by design.
RISK_OFF_TOML = """[risk]
max_order_volume = 0
max_order_notional = 0
max_position_notional = 0
max_open_orders = 0
orders_per_second = 0
orders_per_day = 0
duplicate_window = 0
"""


def serve(config: Path, data_dir: Path, timeout: float = 60.0) -> tuple[subprocess.Popen[str], str, str]:
    """``qmt-adapter serve`` on random loopback ports in a process of its own: (process, router, pub)
    once it serves; its output is read from then on so the pipe never fills."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter", "serve", "--config", str(config), "--data-dir", str(data_dir),
         "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:  # readline returns at the latest when the process ends
        line = proc.stdout.readline()
        lines.append(line)
        match = SERVING.search(line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, match.group(1), match.group(2)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the gateway did not start:\n" + "".join(lines[-30:]))


def machine(**extra: Any) -> dict[str, Any]:
    """The machine a run was made on, for its JSON report."""
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            **extra, "libzmq": zmq.zmq_version(), "pyzmq": zmq.__version__}


def write_report(report: dict[str, Any], directory: Path | str, prefix: str = "", suffix: str = "") -> Path:
    """``<directory>/<prefix><time><suffix>.json``; returns the path."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}{dt.datetime.now():%Y%m%d-%H%M%S}{suffix}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it."""
    return str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
