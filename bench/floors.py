"""``python -m bench.floors``: what the genuine xtquant layer over the sim does with no gateway at all.

Every order and every event the gateway handles goes through the genuine ``XtQuantTrader`` and
the simulated counter first. This measures that floor on this machine, in one run, beside the
raw ZeroMQ echo that ``python -m bench`` compares against:

- pipelined ``order_stock_async`` through the genuine trader: resting and filling orders per
  second, with the counter in the trader's process and in its own process (``sim_process``);
- pushes of the account's asset through the genuine trader's callback (``on_stock_asset``,
  a callback that only counts): the rate at which events can reach the gateway at all;
- a raw pyzmq DEALER -> ROUTER echo between two processes: p50 and p99.

Writes ``bench/results/floors-<time>.json`` and prints a table. Loopback only; every loop is
bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter import sim  # noqa: E402
from adapter.config import SimConfig  # noqa: E402
from bench.common import RESULTS, machine, write_report  # noqa: E402

ACCOUNT = "1000000365"


def _trader(path: str, callback: Any) -> Any:
    sim.install()
    from xtquant.xttrader import XtQuantTrader
    from xtquant.xttype import StockAccount

    class Trader(XtQuantTrader):
        def __del__(self) -> None:  # xttrader's restores an event loop it saved only on the main thread
            pass

    built: list[Any] = []
    builder = threading.Thread(target=lambda: built.append(Trader(path, 910_000 + os.getpid() % 1000, callback)))
    builder.start()
    builder.join()
    trader = built[0]
    trader.start()
    if trader.connect() != 0 or trader.subscribe(StockAccount(ACCOUNT)) != 0:
        raise SystemExit("could not connect to the simulated counter")
    return trader


class _Counting:
    """An ``XtQuantTraderCallback`` that counts one callback and sets an event at ``target``."""

    def __init__(self, name: str) -> None:
        from xtquant.xttrader import XtQuantTraderCallback

        counting = self

        class Callback(XtQuantTraderCallback):
            pass

        def count(_self: Any, *_args: Any) -> None:
            counting.seen += 1
            if counting.seen >= counting.target:
                counting.done.set()

        setattr(Callback, name, count)
        self.callback = Callback()
        self.seen = 0
        self.target = 1 << 62
        self.done = threading.Event()

    def expect(self, count: int) -> None:
        self.seen, self.target = 0, count
        self.done.clear()


def _counter(where: str, directory: Path) -> tuple[str, Any]:
    config = SimConfig(cash=1e12, persist=False)
    if where == "own process":
        folder = directory / "qmt"
        return str(folder), sim.start_counter_process(folder, config, [ACCOUNT])
    counter = sim.SimCounter(config, [ACCOUNT])
    path = f"sim://floors-{os.getpid()}-{time.monotonic_ns()}"
    sim.register_counter(path, counter)
    return path, counter


@contextlib.contextmanager
def _session(where: str, callback: str) -> Iterator[tuple[Any, Any, _Counting]]:
    """A genuine trader connected to a fresh counter, counting one callback: (trader, counter, count)."""
    with tempfile.TemporaryDirectory() as scratch:
        path, counter = _counter(where, Path(scratch))
        counting = _Counting(callback)
        trader = _trader(path, counting.callback)
        try:
            yield trader, counter, counting
        finally:
            trader.stop()
            if where != "own process":
                sim.unregister_counter(path)
            counter.close()


def orders_per_second(where: str, fill: bool, count: int) -> float:
    """Pipelined order_stock_async through the genuine trader until every async response is in."""
    sim.install()
    from xtquant.xttype import StockAccount

    with _session(where, "on_order_stock_async_response") as (trader, _counter_, answers):
        account = StockAccount(ACCOUNT)
        price = 10.70 if fill else 10.00
        answers.expect(count)
        started = time.perf_counter()
        for _ in range(count):
            trader.order_stock_async(account, "600000.SH", 23, 100, 11, price, "floors", "")
        if not answers.done.wait(120):
            raise SystemExit(f"only {answers.seen} of {count} orders answered")
        return count / (time.perf_counter() - started)


def pushes_per_second(where: str, count: int) -> float:
    """Asset pushes delivered to the genuine trader's on_stock_asset, which only counts."""
    with _session(where, "on_stock_asset") as (_trader_, counter, assets):
        time.sleep(0.5)  # the subscription's own pushes
        assets.expect(count)
        started = time.perf_counter()
        counter.push_assets(ACCOUNT, count)
        if not assets.done.wait(120):
            raise SystemExit(f"only {assets.seen} of {count} pushes arrived")
        return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5_000, help="pipelined orders per case")
    parser.add_argument("--pushes", type=int, default=50_000, help="asset pushes per case")
    parser.add_argument("--runs", type=int, default=3, help="runs per case; the table shows medians")
    args = parser.parse_args()
    from bench.__main__ import echo_case

    report: dict[str, Any] = {"machine": machine(), "runs": args.runs}
    median = statistics.median
    echo = [echo_case(5_000) for _ in range(args.runs)]
    report["echo_p50_us"] = median(e["p50"] for e in echo)
    report["echo_p99_us"] = median(e["p99"] for e in echo)
    for where in ("in process", "own process"):
        for fill in (False, True):
            key = f"orders_{'filling' if fill else 'resting'}_{where.replace(' ', '_')}"
            report[key] = median(orders_per_second(where, fill, args.orders) for _ in range(args.runs))
        report[f"pushes_{where.replace(' ', '_')}"] = median(pushes_per_second(where, args.pushes)
                                                            for _ in range(args.runs))
    print(table(report))
    print(f"\n(written to {write_report(report, RESULTS, 'floors-')})")
    return 0


def table(r: dict[str, Any]) -> str:
    rows = [
        "| The genuine xtquant layer over the sim, no gateway | counter in process | counter in its own process |",
        "|---|---:|---:|",
        f"| pipelined `order_stock_async`, resting, orders/s | {r['orders_resting_in_process']:,.0f} | "
        f"{r['orders_resting_own_process']:,.0f} |",
        f"| pipelined `order_stock_async`, filling, orders/s | {r['orders_filling_in_process']:,.0f} | "
        f"{r['orders_filling_own_process']:,.0f} |",
        f"| asset pushes to `on_stock_asset` (a callback that counts), /s | {r['pushes_in_process']:,.0f} | "
        f"{r['pushes_own_process']:,.0f} |",
        "",
        f"Raw DEALER->ROUTER echo between two processes: p50 {r['echo_p50_us']:,.0f} µs, "
        f"p99 {r['echo_p99_us']:,.0f} µs. {r['machine']['platform']}, {r['machine']['cpus']} CPUs, "
        f"Python {r['machine']['python']}; medians of {r['runs']} runs.",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
