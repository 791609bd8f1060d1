"""``python -m bench``: the gateway against a raw ZeroMQ baseline, measured in one run.

Cases (each repeated ``--runs`` times; medians reported):

- echo: a raw pyzmq DEALER -> ROUTER echo between two processes, with a message the size of
  an order request: the physical floor every round trip is divided by;
- ping, order_stock, query_stock_positions (100 positions): sequential round trips from a raw
  DEALER to the gateway (its own process, sim answering at once, journal on);
- pipelined order_stock: orders per second with a window of requests in flight;
- events end to end: the sim pushes asset records -> xtquant callback -> journal -> PUB ->
  the client library's subscription in 1 and in 4 subscriber processes; events/s and lost;
  the raw PUB -> SUB floor with the same payload size alongside;
- CURVE on against off: ping round trip and the event stream;
- with ``--sim-process``: order_stock (and the counter alone) with the counter in its own process.

Writes ``bench/results/<time>.json`` and prints a markdown table. Absolute figures on a
shared 2-core VM are noisy; the ratios are what travel.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.protocol import encode_request  # noqa: E402

from . import workers  # noqa: E402
from .common import RESULTS, machine, shown, write_report  # noqa: E402

ACCOUNT = workers.ACCOUNT
SPAWN = multiprocessing.get_context("spawn")
# The gateway as benchmarked: risk checks on, but not the ones a load test trips by design.
RISK = {"orders_per_second": 0, "orders_per_day": 0, "duplicate_window": 0, "max_open_orders": 0,
        "max_position_notional": 0}
POSITIONS = 100
EVENT_PAYLOAD = 330  # bytes: about an asset event's payload


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.50) * 1e6, "p99": pick(0.99) * 1e6, "p999": pick(0.999) * 1e6}


def round_trips(socket: zmq.Socket, make: Callable[[int], bytes], count: int, warmup: int = 200) -> dict[str, float]:
    samples = []
    for i in range(count + warmup):
        frame = make(i)
        start = time.perf_counter()
        socket.send(frame)
        reply = socket.recv()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            samples.append(elapsed)
        if i == warmup:  # one check that the gateway really answered ok
            body = msgpack.unpackb(reply, raw=False) if reply[:1] != b"x" else {"ok": True}
            if isinstance(body, dict) and body.get("ok") is False:
                raise RuntimeError(f"the gateway refused the benchmark's request: {body['error']}")
    return percentiles(samples)


def dealer(endpoint: str, keys: dict[str, bytes | None] | None = None) -> zmq.Socket[Any]:
    socket: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    socket.rcvtimeo = 10_000
    if keys:
        socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = (
            keys["public"], keys["secret"], keys["server"])
    socket.connect(endpoint)
    return socket


RESTING, FILLING = 9.99, 10.00  # the bench instruments trade at 10.00


def order_request(i: int, price: float = RESTING) -> bytes:
    return encode_request(i, "order_stock", {"account_id": ACCOUNT, "stock_code": "600000.SH", "order_type": 23,
                                             "order_volume": 100, "price_type": 11, "price": price,
                                             "strategy_name": "bench", "order_remark": ""})


def instruments_file(directory: Path) -> str:
    lines = ["code,name,prev_close,last_price"] + [f"6{i:05d}.SH,BENCH{i},10.00,10.00" for i in range(POSITIONS)]
    path = directory / "instruments.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


class Gateway:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.conn, child = SPAWN.Pipe()
        self.proc = SPAWN.Process(target=workers.gateway, args=(child, settings), daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            raise RuntimeError("the gateway did not start")
        self.router, self.pub = self.conn.recv()

    def push(self, count: int) -> None:
        self.conn.send(("push", count))
        self.conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.conn.send(("stop",))
            self.proc.join(30)


def echo_case(count: int) -> dict[str, float]:
    conn, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=workers.echo_server, args=(child,), daemon=True)
    proc.start()
    endpoint = conn.recv()
    socket = dealer(endpoint)
    size = len(order_request(1))
    try:
        return round_trips(socket, lambda i: b"x" * size, count)
    finally:
        socket.close()
        proc.terminate()
        proc.join(10)


def counter_case(sim: dict[str, Any], count: int, price: float, warmup: int = 200,
                 process: bool = False) -> dict[str, float]:
    conn, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=workers.counter_alone, args=(child, sim, count + warmup, price, process), daemon=True)
    proc.start()
    if not conn.poll(120):
        raise RuntimeError("the counter-alone run did not finish")
    samples = conn.recv()[warmup:]
    proc.join(30)
    return percentiles(samples)


def pipelined(socket: zmq.Socket, total: int, window: int, first: int = 0) -> float:
    """Orders per second with ``window`` in flight; ``first`` numbers the requests (unique ids)."""
    sent = received = 0
    start = time.perf_counter()
    while received < total:
        while sent < total and sent - received < window:
            socket.send(order_request(first + sent))
            sent += 1
        reply = msgpack.unpackb(socket.recv(), raw=False)
        if not reply.get("ok"):
            raise RuntimeError(f"pipelined order refused: {reply['error']}")
        received += 1
    return total / (time.perf_counter() - start)


def subscribers(gateway: Gateway, count: int, keys: dict[str, str] | None) -> list[Any]:
    conns = []
    for _ in range(count):
        conn, child = SPAWN.Pipe()
        SPAWN.Process(target=workers.subscriber, args=(child, gateway.router, gateway.pub, keys), daemon=True).start()
        conns.append(conn)
    for conn in conns:
        if not conn.poll(60) or conn.recv()[0] != "ready":
            raise RuntimeError("a subscriber did not start")
    return conns


def event_case(gateway: Gateway, conns: list[Any], events: int) -> dict[str, Any]:
    start = time.monotonic()
    gateway.push(events)
    for conn in conns:
        conn.send(("wait", events, 60.0))
    results = [conn.recv()[1] for conn in conns]
    last = max(r["last"] for r in results)
    return {
        "events_per_s": events / (last - start) if last > start else 0.0,
        "lost": sum(events - r["unique"] for r in results),
        "out_of_order": sum(0 if r["in_order"] else 1 for r in results),
        "recovered": sum(r["stats"].get("recovered", 0) for r in results),
    }


def raw_events(events: int, size: int) -> float:
    conn, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=workers.raw_publisher, args=(child, events, size), daemon=True)
    proc.start()
    endpoint = conn.recv()
    sub: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.SUB)
    sub.rcvhwm = events + 1000
    sub.subscribe(b"")
    sub.connect(endpoint)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the subscription is live
        conn.send("hello")
        if sub.poll(50):
            sub.recv_multipart()
            break
    while sub.poll(50):
        sub.recv_multipart()
    start = time.monotonic()
    conn.send("go")
    got = 0
    while got < events and sub.poll(5000):
        sub.recv_multipart()
        got += 1
    elapsed = time.monotonic() - start
    conn.recv()
    conn.send("stop")
    proc.join(10)
    sub.close(0)
    return got / elapsed


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=5000, help="pipelined orders per run")
    parser.add_argument("--window", type=int, default=64, help="pipelined orders in flight")
    parser.add_argument("--events", type=int, default=20000, help="events per run")
    parser.add_argument("--quick", action="store_true", help="small counts, one run: a smoke test")
    parser.add_argument("--sim-process", action="store_true",
                        help="also order_stock with the counter in its own process (sim_process = true)")
    parser.add_argument("--results", default=str(RESULTS), help="where the JSON result goes (default bench/results)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.round_trips, args.orders, args.events = 1, 300, 500, 2000
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="qmt-bench-"))
    # The sim answers at once: books in memory, no artificial latency.
    sim = {"cash": 1e12, "instruments_file": instruments_file(scratch), "persist": False,
           "positions": {ACCOUNT: {f"6{i:05d}.SH": 1000 for i in range(POSITIONS)}}}
    counter_sim = {k: v for k, v in sim.items() if k != "persist"}
    keys_dir = scratch / "keys"
    from adapter.keys import ensure_server_key, new_client_key

    ensure_server_key(keys_dir)
    new_client_key(keys_dir, "bench", None, frozenset({"read", "trade"}))
    import zmq.auth

    public, secret = zmq.auth.load_certificate(keys_dir / "private" / "bench.key_secret")
    server = zmq.auth.load_certificate(keys_dir / "server.key")[0]
    raw_keys = {"public": public, "secret": secret, "server": server}
    client_keys = {"client_key": str(keys_dir / "private" / "bench.key_secret"), "server_key": str(keys_dir / "server.key")}

    plain = Gateway({"sim": sim, "risk": RISK})
    curve = Gateway({"sim": sim, "risk": RISK, "curve": True, "keys_dir": str(keys_dir)})
    # The counter in its own process: the same gateway, its counter behind a local link.
    separate = Gateway({"sim": sim, "risk": RISK, "sim_process": True}) if args.sim_process else None
    separate_dealer = dealer(separate.router) if separate is not None else None
    plain_dealer, curve_dealer = dealer(plain.router), dealer(curve.router, raw_keys)
    ping = lambda i: encode_request(i, "ping", {})  # noqa: E731
    positions = lambda i: encode_request(i, "query_stock_positions", {"account_id": ACCOUNT})  # noqa: E731
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        for run in range(args.runs):
            n = args.round_trips
            runs.setdefault("echo", []).append(echo_case(n))
            runs.setdefault("ping", []).append(round_trips(plain_dealer, ping, n))
            runs.setdefault("counter_resting", []).append(counter_case(counter_sim, n, RESTING))
            runs.setdefault("order_stock", []).append(round_trips(plain_dealer, order_request, n))
            runs.setdefault("counter_filling", []).append(counter_case(counter_sim, n // 2, FILLING))
            runs.setdefault("order_stock_filling", []).append(
                round_trips(plain_dealer, lambda i: order_request(i, FILLING), n // 2))
            if separate_dealer is not None:
                runs.setdefault("counter_resting_process", []).append(
                    counter_case(counter_sim, n, RESTING, process=True))
                runs.setdefault("order_stock_process", []).append(round_trips(separate_dealer, order_request, n))
                runs.setdefault("order_stock_filling_process", []).append(
                    round_trips(separate_dealer, lambda i: order_request(i, FILLING), n // 2))
            runs.setdefault("query_stock_positions", []).append(round_trips(plain_dealer, positions, n // 2))
            runs.setdefault("ping_curve", []).append(round_trips(curve_dealer, ping, n))
            runs.setdefault("order_stock_curve", []).append(round_trips(curve_dealer, order_request, n))
            runs.setdefault("pipelined", []).append({"orders_per_s": pipelined(plain_dealer, args.orders, args.window)})
            runs.setdefault("events_raw", []).append({"events_per_s": raw_events(args.events, EVENT_PAYLOAD)})
            print(f"round trips, run {run + 1}/{args.runs} ({time.monotonic() - began:.0f} s)", file=sys.stderr)
        # Events: fresh gateways (thousands of resting orders from the cases above would have
        # the sim's matching passes compete for the CPU), one set of subscribers at a time
        # (every SUB receives the whole stream).
        plain.stop()
        curve.stop()
        plain = Gateway({"sim": sim, "risk": RISK})
        curve = Gateway({"sim": sim, "risk": RISK, "curve": True, "keys_dir": str(keys_dir)})
        for name, gateway, count, keys in (("events_1", plain, 1, None), ("events_4", plain, 4, None),
                                           ("events_curve", curve, 1, client_keys)):
            conns = subscribers(gateway, count, keys)
            for _ in range(args.runs):
                runs.setdefault(name, []).append(event_case(gateway, conns, args.events))
            for conn in conns:
                conn.send(("stop",))
            print(f"{name} ({time.monotonic() - began:.0f} s)", file=sys.stderr)
    finally:
        if separate is not None and separate_dealer is not None:
            separate_dealer.close()
            separate.stop()
        plain_dealer.close()
        curve_dealer.close()
        plain.stop()
        curve.stop()
    result = {name: median_of(values) for name, values in runs.items()}
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": vars(args),
        "medians": result,
        "runs": runs,
        "seconds": round(time.monotonic() - began, 1),
    }
    path = write_report(report, args.results)
    print(table(result, report))
    print(f"\n(written to {shown(path)})")
    return 0


def table(m: dict[str, dict[str, float]], report: dict[str, Any]) -> str:
    echo = m["echo"]["p50"]
    rows = ["| Case | p50 µs | p99 µs | p99.9 µs | p50 ÷ echo p50 |", "|---|---:|---:|---:|---:|"]
    for name, label in (("echo", "raw DEALER→ROUTER echo (baseline)"), ("ping", "`ping`"),
                        ("counter_resting", "the counter alone: genuine `order_stock` over the sim, resting"),
                        ("order_stock", "`order_stock` through the gateway, resting"),
                        ("counter_filling", "the counter alone, filling (order, trade, position, asset pushes)"),
                        ("order_stock_filling", "`order_stock` through the gateway, filling"),
                        ("counter_resting_process", "the counter alone, in its own process, resting"),
                        ("order_stock_process", "`order_stock` through the gateway, counter in its own process, resting"),
                        ("order_stock_filling_process", "`order_stock` through the gateway, counter in its own process, filling"),
                        ("query_stock_positions", f"`query_stock_positions` ({POSITIONS})"),
                        ("ping_curve", "`ping`, CURVE"), ("order_stock_curve", "`order_stock`, CURVE")):
        if name not in m:  # the --sim-process cases
            continue
        r = m[name]
        rows.append(f"| {label} | {r['p50']:.0f} | {r['p99']:.0f} | {r['p999']:.0f} | {r['p50'] / echo:.2f}× |")
    raw = m["events_raw"]["events_per_s"]
    rows += ["", "| Throughput | per second | ratio | lost |", "|---|---:|---:|---:|",
             f"| pipelined `order_stock` (window {report['settings']['window']}) | {m['pipelined']['orders_per_s']:.0f} orders | | |",
             f"| raw PUB→SUB, same payload size (baseline) | {raw:.0f} events | 1.00× | |"]
    for name, label in (("events_1", "events end to end, 1 subscriber"), ("events_4", "events end to end, 4 subscribers"),
                        ("events_curve", "events end to end, 1 subscriber, CURVE")):
        r = m[name]
        rows.append(f"| {label} | {r['events_per_s']:.0f} events | {r['events_per_s'] / raw:.2f}× | {r['lost']:.0f} |")
    added = m["order_stock"]["p50"] - m["counter_resting"]["p50"]
    rows += ["", f"The gateway adds {added:.0f} µs (p50) to a resting order_stock over what the counter itself takes "
                 f"({m['order_stock']['p50']:.0f} vs {m['counter_resting']['p50']:.0f} µs)."]
    curve_rt = m["ping_curve"]["p50"] / m["ping"]["p50"]
    curve_ev = m["events_1"]["events_per_s"] / max(m["events_curve"]["events_per_s"], 1e-9)
    rows += ["", f"CURVE cost: round trip ×{curve_rt:.2f} (ping p50), event stream ×{curve_ev:.2f} (1 subscriber)",
             f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs, Python "
             f"{report['machine']['python']}, libzmq {report['machine']['libzmq']}; {report['settings']['runs']} runs, "
             f"medians; {report['seconds']} s"]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
