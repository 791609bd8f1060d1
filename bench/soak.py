"""A trading day in minutes: orders at a steady rate plus full queries against `qmt-adapter serve`
over the sim (its own process, books persisted as a user runs it), watching the gateway's memory
and latency for growth.

    python bench/soak.py [--seconds 600] [--rate 200] [--query-every 1.0] [--out FILE]

Every order fills at once (buys and sells alternate, so the position stays put). Each second a
client asks for the day's orders (the largest answer there is); another pings every 50 ms to see
how long the gateway's I/O thread is ever busy. Printed and written as JSON: the gateway's RSS
per 10 s, order round-trip percentiles per minute, the longest ping. Targets (issue 14): RSS
growth under 50 MB after the first minute, p99 in the last minute within 2x the first, no stall
over 100 ms. Loopback only; bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapter.client import AsyncClient, Client, GatewayError  # noqa: E402
from bench.common import RISK_OFF_TOML, serve  # noqa: E402

ACCOUNT = "1000000365"
CONFIG = """
accounts = ["1000000365"]
[sim]
persist = true
cash = 1000000000000.0
[sim.positions."1000000365"]
"600000.SH" = 1000000000
""" + RISK_OFF_TOML + """check_instrument = false
"""


def start_gateway(directory: Path, sim_process: bool) -> tuple[subprocess.Popen[str], str, str]:
    config = directory / "soak.toml"
    config.write_text(("sim_process = true\n" if sim_process else "") + CONFIG, encoding="utf-8")
    return serve(config, directory / "data")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def watch(router: str, pub: str, pid: int, began: float, stop: Any, results: Any) -> None:
    """Pings every 50 ms (how long the I/O thread is ever busy) and reads the gateway's RSS per 10 s."""
    rss: list[tuple[float, float]] = []
    pings: list[tuple[float, float]] = []
    with Client(router, pub, timeout=30.0) as client:
        next_rss = 0.0
        while not stop.is_set():  # bounded by the run's length
            now = time.monotonic() - began
            if now >= next_rss:
                rss.append((now, rss_mb(pid)))
                next_rss = now + 10.0
            t = time.perf_counter()
            client.ping()
            pings.append((now, time.perf_counter() - t))
            stop.wait(0.05)
    results.put(("rss", rss))
    results.put(("pings", pings))


def query(router: str, pub: str, every: float, began: float, stop: Any, results: Any) -> None:
    """Asks for the day's orders every ``every`` seconds."""
    queries: list[tuple[float, float, int]] = []
    with Client(router, pub, timeout=60.0) as client:
        while not stop.wait(every):  # bounded by the run's length
            t = time.perf_counter()
            orders = client.query_stock_orders(ACCOUNT)
            queries.append((time.monotonic() - began, time.perf_counter() - t, len(orders)))
    results.put(("queries", queries))


async def load(router: str, pub: str, seconds: float, rate: float, latencies: list[tuple[float, float]],
               refused: list[str]) -> int:
    start = time.monotonic()
    sent = 0
    async with AsyncClient(router, pub, timeout=30.0) as client:
        in_flight: set[asyncio.Task[None]] = set()

        async def order(i: int) -> None:
            begun = time.perf_counter()
            side = "buy" if i % 2 == 0 else "sell"
            price = 10.70 if side == "buy" else 10.50
            try:
                await client.order_stock(ACCOUNT, "600000.SH", side, 100, "limit", price, "soak", "")
            except GatewayError as exc:  # the gateway fell behind (too_many_requests): counted, not waited for
                refused.append(exc.code)
                return
            latencies.append((time.monotonic() - start, time.perf_counter() - begun))

        total = int(seconds * rate)
        for i in range(total):  # bounded: seconds x rate orders
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(order(i))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
        if in_flight:
            await asyncio.wait(in_flight, timeout=60)
    return sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=200.0, help="orders per second")
    parser.add_argument("--query-every", type=float, default=1.0,
                        help="seconds between full order queries (0: none, the orders and pings alone)")
    parser.add_argument("--out", default="", help="write the JSON report here")
    parser.add_argument("--sim-process", action="store_true",
                        help="the simulated counter in its own process (as QMT is): the gateway's RSS is its own")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="qmt-soak-"))
    proc, router, pub = start_gateway(directory, args.sim_process)
    began = time.monotonic()
    # The pinger and the querier run in processes of their own: decoding a day's orders holds a
    # client's GIL for seconds, which would show up as the gateway's latency if they shared one.
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[str, Any]] = ctx.Queue()
    stop = ctx.Event()
    watchers = [ctx.Process(target=watch, args=(router, pub, proc.pid, began, stop, results), daemon=True)]
    if args.query_every > 0:
        watchers.append(ctx.Process(target=query, args=(router, pub, args.query_every, began, stop, results),
                                    daemon=True))
    for watcher in watchers:
        watcher.start()
    latencies: list[tuple[float, float]] = []
    refused: list[str] = []
    try:
        sent = asyncio.run(load(router, pub, args.seconds, args.rate, latencies, refused))
    finally:
        stop.set()
        gathered: dict[str, Any] = {}
        for _ in range(1 + len(watchers)):  # bounded: rss and pings from the watcher, queries from the querier
            try:
                kind, value = results.get(timeout=120)
                gathered[kind] = value
            except queue.Empty:
                break
        for watcher in watchers:
            watcher.join(10)
        final_rss = (time.monotonic() - began, rss_mb(proc.pid))
        proc.terminate()
        proc.wait(30)
    rss: list[tuple[float, float]] = [*gathered.get("rss", []), final_rss]
    pings: list[tuple[float, float]] = gathered.get("pings", [])
    queries: list[tuple[float, float, int]] = gathered.get("queries", [])
    minutes: dict[int, list[float]] = {}
    for at, latency in latencies:
        minutes.setdefault(int(at // 60), []).append(latency)
    per_minute = {m: {"orders": len(v), "p50_ms": round(percentile(v, 0.5) * 1000, 2),
                      "p99_ms": round(percentile(v, 0.99) * 1000, 2)} for m, v in sorted(minutes.items())}
    after_first = [mb for at, mb in rss if at >= 60] or [rss[-1][1]]
    # The first and the last whole minutes: a run's tail bucket holds only the last few answers.
    whole = [m for m, v in per_minute.items() if v["orders"] >= 0.5 * per_minute[min(per_minute)]["orders"]]
    first, last = per_minute[min(whole)], per_minute[max(whole)]
    report: dict[str, Any] = {
        "seconds": args.seconds, "rate": args.rate, "sim_process": args.sim_process, "orders_sent": sent, "orders_answered": len(latencies),
        "orders_refused": len(refused),
        "rss_mb": [[round(at, 1), round(mb, 1)] for at, mb in rss],
        "rss_growth_after_first_minute_mb": round(after_first[-1] - after_first[0], 1),
        "per_minute": per_minute,
        "p99_last_over_first": round(last["p99_ms"] / first["p99_ms"], 2) if first["p99_ms"] else None,
        "longest_ping_ms": round(max((p for _, p in pings), default=0.0) * 1000, 1),
        "pings": len(pings), "pings_over_100ms": sum(1 for _, p in pings if p > 0.1),
        "queries": len(queries), "longest_query_s": round(max((q for _, q, _ in queries), default=0.0), 3),
        "orders_in_last_query": queries[-1][2] if queries else 0,
        "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    ok = (report["rss_growth_after_first_minute_mb"] < 50 and (report["p99_last_over_first"] or 0) <= 2
          and report["longest_ping_ms"] <= 100)
    print(f"targets {'met' if ok else 'NOT met'}: RSS growth {report['rss_growth_after_first_minute_mb']} MB (< 50), "
          f"p99 last/first {report['p99_last_over_first']} (<= 2), longest ping {report['longest_ping_ms']} ms (<= 100)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
