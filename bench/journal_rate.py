"""How many events per second the journal sustains, against raw baselines in the same run.

    python bench/journal_rate.py [--events N] [--runs R]

Prints, as medians over R runs:
1. Journal.append alone (the SQLite cost), in batches of 1, 10, 100 and 1000, sync normal/full;
2. the gateway's event path (inbox -> number -> journal -> PUB -> one SUB over TCP loopback),
   fed straight into the gateway's inbox so the counter's speed does not count;
3. a raw pyzmq PUB -> SUB over TCP loopback with the same payloads: the ratio to it is the
   figure that travels between machines.
Absolute numbers on a shared 2-core VM are noisy; the ratios matter.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.broker.messages import Pushed  # noqa: E402
from adapter.config import load_config  # noqa: E402
from adapter.server.journal import Journal  # noqa: E402
from adapter.protocol import encode_event, events  # noqa: E402

ORDER = {name: 0 for name in events.ORDER_FIELDS} | {
    "account_id": "1000000365", "stock_code": "600000.SH", "status_msg": "", "instrument_name": "浦发银行",
    "order_sysid": "1000001", "strategy_name": "bench", "order_remark": "r", "secu_account": "A123456789",
    "price": 10.5, "traded_price": 10.6,
}


def journal_alone(events_count: int, batch: int, sync: str) -> float:
    with tempfile.TemporaryDirectory() as directory:
        journal = Journal(directory, sync=sync)
        topic, payload = encode_event(1, time.time_ns(), "order", "1000000365", ORDER, journal.epoch)
        rows = [(seq, 0, topic.decode(), payload) for seq in range(1, events_count + 1)]
        start = time.perf_counter()
        for first in range(0, events_count, batch):
            journal.append(rows[first:first + batch])
        elapsed = time.perf_counter() - start
        journal.close()
    return events_count / elapsed


def receive_all(sub: zmq.Socket, count: int, timeout: float) -> int:
    """Receive until ``count`` sequenced events arrived or ``timeout`` passed; returns how many."""
    got = 0
    deadline = time.monotonic() + timeout
    while got < count and time.monotonic() < deadline:
        if sub.poll(100):
            topic, _ = sub.recv_multipart()
            if not topic.startswith(b"gateway."):
                got += 1
    return got


def raw_pubsub(events_count: int) -> tuple[float, int]:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.sndhwm = 0
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = context.socket(zmq.SUB)
    sub.rcvhwm = 0
    sub.subscribe(b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    topic, payload = encode_event(1, time.time_ns(), "order", "1000000365", ORDER, "e")
    deadline = time.monotonic() + 5  # slow joiner: probe until the subscription is live
    while time.monotonic() < deadline:
        pub.send_multipart([b"gateway.probe", b""])
        if sub.poll(20):
            sub.recv_multipart()
            break
    result: list[int] = []
    reader = threading.Thread(target=lambda: result.append(receive_all(sub, events_count, 60)))
    reader.start()
    start = time.perf_counter()
    for _ in range(events_count):
        pub.send_multipart([topic, payload])
    reader.join()
    elapsed = time.perf_counter() - start
    pub.close(0)
    sub.close(0)
    context.term()
    return events_count / elapsed, events_count - result[0]


def gateway_path(events_count: int, sync: str) -> tuple[float, int]:
    from adapter.server import Gateway

    with tempfile.TemporaryDirectory() as directory:
        config = replace(
            load_config(None, router="tcp://127.0.0.1:*", pub="tcp://127.0.0.1:*", log_level="WARNING"),
            data_dir=directory, journal_sync=sync, heartbeat_interval=0.0,
        )
        gateway = Gateway(config)
        gateway.start()
        context = zmq.Context()
        sub = context.socket(zmq.SUB)
        sub.rcvhwm = 0
        sub.subscribe(b"")
        sub.connect(gateway.pub_endpoint)
        dealer = context.socket(zmq.DEALER)
        dealer.connect(gateway.router_endpoint)
        from adapter.protocol import encode_request

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # slow joiner: ping(publish) until a pong arrives
            dealer.send(encode_request(1, "ping", {"publish": True}))
            dealer.recv()
            if sub.poll(50) and sub.recv_multipart()[0] == b"gateway.pong":
                break
        result: list[int] = []
        reader = threading.Thread(target=lambda: result.append(receive_all(sub, events_count, 120)))
        reader.start()
        post = gateway._inbox.post  # feeds the I/O thread exactly as xtquant's callback thread does
        already = gateway.journal.count if gateway.journal else 0  # start-up events
        start = time.perf_counter()
        for _ in range(events_count):
            post(Pushed("order", "1000000365", ORDER, time.time_ns()))
        reader.join()
        elapsed = time.perf_counter() - start
        journaled = (gateway.journal.count if gateway.journal else 0) - already
        dealer.close(0)
        sub.close(0)
        context.term()
        gateway.stop()
    if journaled != events_count:
        raise SystemExit(f"journal holds {journaled} events, {events_count} were posted")
    return events_count / elapsed, events_count - result[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    n, runs = args.events, args.runs
    median = statistics.median

    print(f"events per run: {n}, runs: {runs}, payload {len(encode_event(1, 0, 'order', '1', ORDER, 'e')[1])} bytes")
    print("\n| journal alone | batch | events/s |\n|---|---:|---:|")
    for sync in ("normal", "full"):
        for batch in (1, 10, 100, 1000):
            count = min(n, 5_000) if batch == 1 else n
            rate = median(journal_alone(count, batch, sync) for _ in range(runs))
            print(f"| sync={sync} | {batch} | {rate:,.0f} |")

    raw = [raw_pubsub(n) for _ in range(runs)]
    raw_rate = median(r for r, _ in raw)
    print("\n| end to end (1 SUB, TCP loopback) | events/s | lost | ratio to raw |\n|---|---:|---:|---:|")
    print(f"| raw pyzmq PUB->SUB | {raw_rate:,.0f} | {sum(l for _, l in raw)} | 1.00 |")
    for sync in ("normal", "full"):
        results = [gateway_path(n, sync) for _ in range(runs)]
        rate = median(r for r, _ in results)
        print(f"| gateway, journal sync={sync} | {rate:,.0f} | {sum(l for _, l in results)} | {rate / raw_rate:.2f} |")


if __name__ == "__main__":
    main()
