"""The order ledger's memory through a trading day and its start-up time against history length.

    python bench/ledger_memory.py [--orders N] [--history H] [--dir DIR]

- memory: N orders (default 100000) created and settled through the Ledger API, 64 per commit as
  under load; Python heap growth (tracemalloc) and RSS growth of a fresh process;
- start-up: ``Ledger(dir)`` over a ledger of H settled historical rows (default 500000) plus 10
  in flight; median of 3 opens. The first open after an upgrade builds the indexes once: its
  time is printed apart.

Each measurement runs in its own process (RSS is per process). Figures of one shared VM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.server.ledger import ACKNOWLEDGED, FILE_NAME, Ledger  # noqa: E402

ARGS = {"account_type": "STOCK", "stock_code": "600000.SH", "order_type": 23, "order_volume": 100,
        "price_type": 11, "price": 10.7, "strategy_name": "bench", "order_remark": "ledger_memory"}
RESPONSE = {"account_type": 2, "account_id": "1000000365", "order_id": 0, "strategy_name": "bench",
            "order_remark": "ledger_memory", "error_msg": "", "seq": 1, "client_order_id": ""}


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(directory: str, orders: int) -> dict[str, float]:
    ledger = Ledger(directory)
    rss_before = _rss()
    tracemalloc.start()
    start = time.perf_counter()
    for first in range(0, orders, 64):
        ledger.begin()
        batch = [ledger.create("1000000365", f"c{n}", ARGS) for n in range(first, min(first + 64, orders))]
        ledger.commit()
        ledger.begin()
        for record in batch:
            ledger.settle(record, ACKNOWLEDGED, order_id=record.id, response={**RESPONSE, "order_id": record.id})
        ledger.commit()
        del batch
    seconds = time.perf_counter() - start
    heap, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = _rss()
    ledger.close()
    return {"orders": orders, "heap_mib": heap / 2**20, "rss_growth_mib": (rss_after - rss_before) / 2**20,
            "seconds": seconds}


def fill_history(directory: str, rows: int) -> None:
    """``rows`` settled records (a year of trading) and 10 in flight, written straight to SQLite."""
    Ledger(directory).close()  # the schema
    import sqlite3

    import msgpack

    db = sqlite3.connect(Path(directory) / FILE_NAME)
    blob = msgpack.packb(RESPONSE, use_bin_type=True)
    day_ns = 86_400 * 10**9
    first_ns = time.time_ns() - 250 * day_ns
    db.executemany(
        "INSERT INTO orders (id, account_id, client_order_id, fingerprint, strategy_name, order_remark, state, "
        "order_id, error_msg, response, created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?)",
        ((n, "1000000365", f"h{n}", "fp", "bench", "ledger_memory", "unknown" if n > rows else ACKNOWLEDGED,
          None if n > rows else n, blob, first_ns + n * (250 * day_ns // (rows + 10))) for n in range(1, rows + 11)),
    )
    db.commit()
    db.close()


def startup(directory: str) -> dict[str, float]:
    times = []
    for _ in range(4):
        start = time.perf_counter()
        ledger = Ledger(directory)
        times.append(time.perf_counter() - start)
        in_flight = len(ledger.in_flight())
        ledger.close()
    return {"first_open_s": times[0], "open_s": statistics.median(times[1:]), "in_flight": in_flight}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=500_000)
    parser.add_argument("--dir", default=None, help="where the temporary ledgers go (default: the system's)")
    parser.add_argument("--case", choices=("memory", "startup"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case == "memory":
        print(json.dumps(memory(args.path, args.orders)))
        return
    if args.case == "startup":
        print(json.dumps(startup(args.path)))
        return
    here = [sys.executable, __file__]
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ledger-memory-") as where:
        result = subprocess.run([*here, "--case", "memory", "--orders", str(args.orders), "--path", where + "/m"],
                                check=True, capture_output=True, text=True)
        mem = json.loads(result.stdout)
        fill_history(where + "/s", args.history)
        result = subprocess.run([*here, "--case", "startup", "--path", where + "/s"],
                                check=True, capture_output=True, text=True)
        up = json.loads(result.stdout)
    print(f"{mem['orders']} orders created and settled: Python heap +{mem['heap_mib']:.1f} MiB, "
          f"RSS +{mem['rss_growth_mib']:.1f} MiB, {mem['seconds']:.1f} s")
    print(f"start-up over {args.history} historical rows ({up['in_flight']} in flight): "
          f"{up['open_s'] * 1000:.1f} ms (median of 3; the first open: {up['first_open_s'] * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
