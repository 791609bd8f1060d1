"""``python -m bench.quotes``: market data through the gateway against a raw PUB, in one run.

- fan-out: quotes per second each of 1 and 4 subscriber processes receive from the quote PUB
  subscribed whole (``subscribe_whole_quote(["SH", "SZ", "BJ"])``) while a source hands the
  gateway ticks of every code as fast as it sends them (as xtdata's push thread would on a QMT
  host); alongside, a raw pyzmq PUB flooding messages of a tick's size to the same number of SUB
  processes: the floor's rate;
- the simulated market's flood: the same subscribers with every code of the instrument table
  walking at the fastest cadence (what the sim can make, in its own process);
- the trading stream while quotes flood: sequential ``order_stock`` round trips with no quotes,
  in the simulated market's flood, in the fan-out flood, and with the whole table at QMT's 3 s
  cadence (p50, p99, and round trips over 100 ms: stalls);
- queries: ``get_full_tick`` of 500 codes and ``get_market_data_ex`` of 250 daily bars x 100
  codes, round trips.

Writes ``bench/results/quotes-<time>.json`` and prints a table. Loopback only; every loop is
bounded in count and time. Figures on a shared 2-core machine are noisy: the ratios travel.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, write_report  # noqa: E402

ACCOUNT = "1000000365"
LOOPBACK = "tcp://127.0.0.1:*"
SPAWN = multiprocessing.get_context("spawn")
RISK = {"orders_per_second": 0, "orders_per_day": 0, "duplicate_window": 0, "max_open_orders": 0,
        "max_position_notional": 0, "max_order_notional": 0}


def gateway(conn: Any, tick_interval: float) -> None:
    """A gateway over the sim in its own process (as QMT is) whose every code walks each
    ``tick_interval``; reports its sent quotes."""
    from adapter.config import SimConfig, load_config
    from adapter.server import Gateway
    from adapter.sim.instruments import load_instruments

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        config = load_config(None, router=LOOPBACK, pub=LOOPBACK, quote_pub=LOOPBACK, data_dir=directory,
                             risk=RISK, quote_hwm=100_000, sim_process=True)
        sim = SimConfig(price_model="walk", tick_interval=tick_interval, persist=False, cash=1e12)
        gw = Gateway(type(config)(**{**config.__dict__, "sim": sim}))
        gw.start()
        gc.freeze()  # as qmt-adapter serve does after start-up
        codes = [code for code, instrument in load_instruments().items() if not instrument.is_index]
        conn.send((gw.router_endpoint, gw.quote_endpoint, codes))
        feeder: Feeder | None = None
        while True:
            command = conn.recv()
            if command == "stop":
                break
            if command == "sent":
                assert gw.quotes is not None
                conn.send(gw.quotes.sent)
            if command == "feed":
                assert gw.quotes is not None and gw.market.source is not None
                feeder = Feeder(gw.quotes, gw.market.source.call("get_full_tick", {"code_list": codes}, lambda _: None))
                feeder.start()
                conn.send("feeding")
            if command == "unfeed" and feeder is not None:
                feeder.stop()
                conn.send(feeder.given)
        gw.stop()


class Feeder:
    """A market source at the rate the gateway takes quotes: hands the quote thread ticks of
    every code in turn (a new time each), at most ``AHEAD`` more than it has sent, from a thread
    of its own, as xtdata's push thread does on a QMT host."""

    AHEAD = 20_000
    BATCH = 500

    def __init__(self, quotes: Any, ticks: dict[str, dict[str, Any]]) -> None:
        self._quotes = quotes
        self._ticks = list(ticks.items())
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-feeder", daemon=True)
        self.given = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)

    def _run(self) -> None:
        ticks, quotes = self._ticks, self._quotes
        start, stamp = 0, int(time.time() * 1000)
        for _ in range(100_000_000):  # bounded; ended by stop()
            if self._stopping.is_set():
                return
            if self.given - quotes.sent > self.AHEAD:
                self._stopping.wait(0.0005)
                continue
            stamp += 1
            batch = ticks[start:start + self.BATCH] or ticks[:self.BATCH]
            start = (start + self.BATCH) % len(ticks)
            quotes.put([("tick", code, {**tick, "time": stamp}) for code, tick in batch])
            self.given += len(batch)


def counter(conn: Any, endpoint: str, seconds: float) -> None:
    """A SUB counting what arrives on ``endpoint`` for ``seconds`` once the first message is in."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.rcvhwm = 100_000
    sub.subscribe(b"")
    sub.connect(endpoint)
    conn.send("ready")
    got, first = 0, 0.0
    deadline = time.monotonic() + seconds + 30
    while time.monotonic() < deadline and sub.poll(5000):  # bounded by the deadline
        sub.recv_multipart()
        if not got:
            first = time.monotonic()
            deadline = first + seconds
        got += 1
    elapsed = time.monotonic() - first if got else 1.0
    conn.send(got / elapsed)
    sub.close(0)
    context.term()


def raw_publisher(conn: Any, size: int, seconds: float) -> None:
    """A raw PUB flooding ``size``-byte messages for ``seconds`` (at most 20 million)."""
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.sndhwm = 100_000
    pub.bind(LOOPBACK)
    conn.send(pub.getsockopt_string(zmq.LAST_ENDPOINT))
    conn.recv()  # the subscribers are ready
    time.sleep(0.5)  # let their subscriptions arrive: a raw PUB has no other way to know
    payload = b"x" * size
    end = time.monotonic() + seconds + 1
    for n in range(20_000_000):
        pub.send_multipart([b"quote.tick.600000.SH.", payload])
        if n % 1000 == 0 and time.monotonic() > end:
            break
    conn.send("done")
    conn.recv()
    pub.close(0)
    context.term()


def fan_out(endpoint: str, subscribers: int, seconds: float) -> list[float]:
    pipes, procs = [], []
    for _ in range(subscribers):
        conn, child = SPAWN.Pipe()
        proc = SPAWN.Process(target=counter, args=(child, endpoint, seconds), daemon=True)
        proc.start()
        pipes.append(conn)
        procs.append(proc)
    for conn in pipes:
        conn.recv()
    return [conn.recv() for conn in pipes] if procs else []


def raw_fan_out(size: int, subscribers: int, seconds: float) -> list[float]:
    conn, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=raw_publisher, args=(child, size, seconds), daemon=True)
    proc.start()
    endpoint = conn.recv()
    pipes, procs = [], []
    for _ in range(subscribers):
        sub_conn, sub_child = SPAWN.Pipe()
        sub = SPAWN.Process(target=counter, args=(sub_child, endpoint, seconds), daemon=True)
        sub.start()
        pipes.append(sub_conn)
        procs.append(sub)
    for sub_conn in pipes:
        sub_conn.recv()
    conn.send("go")
    rates = [sub_conn.recv() for sub_conn in pipes]
    conn.recv()
    conn.send("stop")
    proc.join(10)
    return rates


def measured_fan_out(conn: Any, quotes: str, subscribers: int, seconds: float) -> dict[str, float]:
    """Quotes per second each of ``subscribers`` processes received, and what the gateway sent."""
    conn.send("sent")
    before = conn.recv()
    started = time.monotonic()
    rates = fan_out(quotes, subscribers, seconds)
    conn.send("sent")
    produced = (conn.recv() - before) / (time.monotonic() - started)
    return {"gateway_per_subscriber": statistics.median(rates), "gateway_sent_per_s": produced}


class Wire:
    def __init__(self, endpoint: str) -> None:
        self.socket: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.n = 0

    def call(self, op: str, **args: Any) -> Any:
        self.n += 1
        self.socket.send(msgpack.packb({"v": 1, "id": self.n, "op": op, **args}))
        if not self.socket.poll(60_000):
            raise RuntimeError(f"{op}: no reply in 60 s")
        reply = msgpack.unpackb(self.socket.recv(), strict_map_key=False)
        if not reply["ok"]:
            raise RuntimeError(f"{op}: {reply['error']}")
        return reply["result"]


def timed(wire: Wire, times: int, op: str, **args: Any) -> list[float]:
    samples = []
    for _ in range(times):  # bounded
        start = time.perf_counter()
        wire.call(op, **args)
        samples.append(time.perf_counter() - start)
    return samples


def orders(wire: Wire, seconds: float) -> dict[str, float]:
    samples: list[float] = []
    end = time.monotonic() + seconds
    for n in range(100_000):  # bounded by count and time
        if time.monotonic() > end:
            break
        start = time.perf_counter()
        wire.call("order_stock", account_id=ACCOUNT, stock_code="600000.SH", order_type="buy", order_volume=100,
                  price_type="limit", price=9.6 + (n % 10) * 0.01)
        samples.append(time.perf_counter() - start)
    ordered = sorted(samples)
    return {"count": len(samples), "p50_us": ordered[len(ordered) // 2] * 1e6,
            "p99_us": ordered[int(len(ordered) * 0.99)] * 1e6,
            "stalls_over_100ms": sum(1 for s in samples if s > 0.1)}


@contextlib.contextmanager
def running_gateway(tick_interval: float) -> Iterator[tuple[Any, str, str, list[str]]]:
    conn, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=gateway, args=(child, tick_interval), daemon=True)
    proc.start()
    router, quotes, codes = conn.recv()
    try:
        yield conn, router, quotes, codes
    finally:
        conn.send("stop")
        proc.join(30)


def orders_with_subscriber(wire: Wire, quotes: str, seconds: float) -> dict[str, float]:
    """Order round trips while a subscriber process takes every quote."""
    conn, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=counter, args=(child, quotes, seconds * 2), daemon=True)
    proc.start()
    conn.recv()
    result = orders(wire, seconds)
    result["quotes_per_s_received"] = conn.recv()
    proc.join(10)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each fan-out and order window")
    parser.add_argument("--tick-interval", type=float, default=0.05,
                        help="the sim's price step (QMT pushes every 3 s; a step of all 5,500 codes takes ~0.2 s)")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
                              "seconds": args.seconds, "tick_interval": args.tick_interval}
    with running_gateway(args.tick_interval) as (conn, router, quotes, codes):
        wire = Wire(router)
        sample_tick = wire.call("get_full_tick", code_list=["600000.SH"])["600000.SH"]
        size = len(msgpack.packb({"code": "600000.SH", "period": "tick", "data": [sample_tick]}))
        report["quote_bytes"] = size
        full = timed(wire, 20, "get_full_tick", code_list=codes[:500])
        bars = timed(wire, 5, "get_market_data_ex", stock_list=codes[:100], period="1d", count=250)
        report["get_full_tick_500_ms"] = statistics.median(full) * 1e3
        report["get_market_data_ex_250x100_ms"] = statistics.median(bars) * 1e3
        report["orders_quiet"] = orders(wire, args.seconds)
        wire.call("get_full_tick", code_list=codes)  # every code walks from now on
        wire.call("subscribe_whole_quote", code_list=["SH", "SZ", "BJ"])
        for subscribers in (1, 4):
            report[f"sim_market_{subscribers}"] = measured_fan_out(conn, quotes, subscribers, args.seconds)
        report["orders_while_quotes_flood"] = orders_with_subscriber(wire, quotes, args.seconds)
    # The gateway's quote path alone: a source as fast as it takes quotes, as xtdata's thread
    # would be, against a raw PUB of the same message size in the same run.
    with running_gateway(3600.0) as (conn, router, quotes, codes):
        wire = Wire(router)
        wire.call("subscribe_whole_quote", code_list=["SH", "SZ", "BJ"])
        conn.send("feed")
        conn.recv()
        for subscribers in (1, 4):
            result = measured_fan_out(conn, quotes, subscribers, args.seconds)
            raw = raw_fan_out(size, subscribers, args.seconds)
            result.update(raw_pub_per_subscriber=statistics.median(raw),
                          ratio=result["gateway_per_subscriber"] / statistics.median(raw))
            report[f"fan_out_{subscribers}"] = result
        report["orders_while_fan_out_floods"] = orders_with_subscriber(wire, quotes, args.seconds)
        conn.send("unfeed")
        conn.recv()
    # The whole table at QMT's own cadence (a push every 3 s): what a real day asks of the gateway.
    with running_gateway(3.0) as (conn, router, quotes, codes):
        wire = Wire(router)
        wire.call("get_full_tick", code_list=codes)
        wire.call("subscribe_whole_quote", code_list=["SH", "SZ", "BJ"])
        report["orders_with_whole_market_at_3s"] = orders_with_subscriber(wire, quotes, max(args.seconds, 7.0))
    print(json.dumps(report, indent=1))
    print(f"written to {write_report(report, RESULTS, 'quotes-')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
