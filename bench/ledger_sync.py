"""What ``ledger_sync = "full"`` costs against ``"normal"``, measured in the same run.

    python bench/ledger_sync.py [--orders N] [--runs R] [--dir DIR]

Each order is written as the gateway writes it: the record created and committed before the order
goes out, then its outcome settled and committed (two commits per order). With ``--batch B`` (default
1 and 64) B orders share each commit, as under pipelined load when a wake-up of the I/O thread reads
several commands. Runs alternate between the two settings; medians of R runs are printed.

The files go to a temporary directory under ``--dir`` (default: the current directory), which should be
on the disk the gateway's ``data_dir`` is on: a tmpfs has no disk to wait for. The figures are of one
shared VM's disk; read the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.server.ledger import ACKNOWLEDGED, Ledger  # noqa: E402

ARGS = {"account_type": "STOCK", "stock_code": "600000.SH", "order_type": 23, "order_volume": 100,
        "price_type": 11, "price": 10.7, "strategy_name": "bench", "order_remark": "ledger_sync"}


def one_run(directory: str, sync: str, orders: int, batch: int) -> float:
    """Seconds for ``orders`` orders (create + settle), ``batch`` of them per commit."""
    with tempfile.TemporaryDirectory(dir=directory, prefix=f"ledger-{sync}-") as where:
        ledger = Ledger(where, sync=sync)
        start = time.perf_counter()
        for first in range(0, orders, batch):
            count = min(batch, orders - first)
            ledger.begin()
            records = [ledger.create("1000000365", f"c{first + i}", ARGS) for i in range(count)]
            ledger.commit()
            ledger.begin()
            for i, record in enumerate(records):
                ledger.settle(record, ACKNOWLEDGED, order_id=first + i + 1, response={"order_id": first + i + 1})
            ledger.commit()
        elapsed = time.perf_counter() - start
        ledger.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders per run (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per setting (default 5)")
    parser.add_argument("--batch", type=int, action="append", help="orders per commit; repeatable (default 1 and 64)")
    parser.add_argument("--dir", default=".", help="where the files go (default: the current directory)")
    args = parser.parse_args(argv)
    batches = args.batch or [1, 64]
    print(f"ledger_sync: {args.orders} orders per run, {args.runs} runs per setting, medians; "
          f"files under {os.path.abspath(args.dir)}")
    print(f"{'orders/commit':>13} {'setting':>8} {'orders/s':>10} {'µs/order':>9} {'µs/commit':>10} {'× normal':>9}")
    for batch in batches:
        times: dict[str, list[float]] = {"normal": [], "full": []}
        for _ in range(args.runs):
            for sync in ("normal", "full"):  # alternated: drift in the machine hits both alike
                times[sync].append(one_run(args.dir, sync, args.orders, batch))
        base = statistics.median(times["normal"])
        for sync in ("normal", "full"):
            elapsed = statistics.median(times[sync])
            commits = 2 * -(-args.orders // batch)
            print(f"{batch:>13} {sync:>8} {args.orders / elapsed:>10.0f} {elapsed / args.orders * 1e6:>9.1f} "
                  f"{elapsed / commits * 1e6:>10.1f} {elapsed / base:>8.2f}×")
    print(f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
