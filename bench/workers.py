"""The benchmark's child processes: a raw echo, a raw publisher, the gateway, subscribers.

Each runs in its own process (spawned), so the gateway, the load and the baseline do not
share an interpreter lock with the measuring side. Only loopback addresses are used.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

ACCOUNT = "1000000365"
LOOPBACK = "tcp://127.0.0.1:*"


def echo_server(conn: Any) -> None:
    """A raw ROUTER that sends every message straight back, in C (zmq_proxy of the ROUTER to
    itself): the physical floor. Ends when its process is terminated."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.bind(LOOPBACK)
    conn.send(router.getsockopt_string(zmq.LAST_ENDPOINT))
    zmq.proxy(router, router)


def counter_alone(conn: Any, sim_settings: dict[str, Any], count: int, price: float, process: bool = False) -> None:
    """The genuine XtQuantTrader over the sim in one process, sequential order_stock: what the
    counter itself costs, with no gateway in between. Sends back the latencies (seconds).
    ``process``: the counter runs in a process of its own (the link's cost included)."""
    import uuid

    from adapter import sim
    from adapter.config import SimConfig

    sim.install()
    from xtquant.xttrader import XtQuantTrader
    from xtquant.xttype import StockAccount

    counter: Any
    if process:
        directory = tempfile.mkdtemp(prefix="qmt-bench-counter-")
        counter = sim.start_counter_process(Path(directory) / "qmt", SimConfig(**sim_settings), [ACCOUNT])
        path = str(counter.path)
    else:
        counter = sim.SimCounter(SimConfig(**sim_settings), [ACCOUNT])
        path = f"sim://{uuid.uuid4().hex}"
        sim.register_counter(path, counter)
    trader = XtQuantTrader(path, 77)
    trader.start()
    trader.connect()
    account = StockAccount(ACCOUNT)
    trader.subscribe(account)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        trader.order_stock(account, "600000.SH", 23, 100, 11, price, "bench", "")
        samples.append(time.perf_counter() - start)
    conn.send(samples)
    trader.stop()
    counter.close()


def raw_publisher(conn: Any, count: int, size: int) -> None:
    """A raw PUB sending ``count`` messages of ``size`` bytes when asked: the events' floor."""
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.sndhwm = count + 1000
    pub.bind(LOOPBACK)
    conn.send(pub.getsockopt_string(zmq.LAST_ENDPOINT))
    payload = b"x" * size
    while True:
        command = conn.recv()
        if command == "stop":
            break
        if command == "hello":  # until the subscriber sees one, its subscription is not live
            pub.send_multipart([b"hello", b""])
            continue
        for seq in range(count):
            pub.send_multipart([b"asset.1000000365.", seq.to_bytes(8, "little") + payload])
        conn.send("sent")
    pub.close(0)
    context.term()


def gateway_config(directory: str, settings: dict[str, Any]) -> Any:
    """The benchmarked gateway's settings: loopback, journal on, a deep PUB queue."""
    from adapter.config import SimConfig, load_config

    config = load_config(
        None, router=LOOPBACK, pub=LOOPBACK, data_dir=str(Path(directory) / "data"),
        curve=settings.get("curve", False), keys_dir=settings.get("keys_dir", "qmt-adapter-keys"),
        risk=settings.get("risk", {}), pub_hwm=1_000_000, heartbeat_interval=1.0,
        sim_process=settings.get("sim_process", False),
    )
    return type(config)(**{**config.__dict__, "sim": SimConfig(**settings.get("sim", {}))})


def gateway(conn: Any, settings: dict[str, Any]) -> None:
    """The gateway over the sim, with the journal on; pushes asset events on request."""
    from adapter.server import Gateway

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        gw = Gateway(gateway_config(directory, settings))
        gw.start()
        conn.send((gw.router_endpoint, gw.pub_endpoint))
        while True:
            command = conn.recv()
            if command[0] == "stop":
                break
            if command[0] == "push":
                gw.broker.counter.push_assets(ACCOUNT, command[1])
                conn.send("pushed")
        gw.stop()


def subscriber(conn: Any, router: str, pub: str, keys: dict[str, str] | None) -> None:
    """A Client subscription counting asset events; reports what arrived, and when."""
    from adapter.client import Client

    keys = keys or {}
    with Client(router, pub, timeout=10.0, client_key=keys.get("client_key"),
                server_key=keys.get("server_key")) as client:
        seen: list[int] = []
        times = [0.0, 0.0]

        def on_event(event: Any) -> None:
            if event.type == "asset":
                now = time.monotonic()
                if not seen:
                    times[0] = now
                times[1] = now
                seen.append(event.seq)

        handle = client.subscribe(on_event, "asset.")
        if not handle.wait_subscribed(10.0):
            conn.send(("error", "no subscription"))
            return
        conn.send(("ready", None))
        while True:
            command = conn.recv()
            if command[0] == "stop":
                break
            expected, timeout = command[1], command[2]
            deadline = time.monotonic() + timeout
            while len(seen) < expected and time.monotonic() < deadline:
                time.sleep(0.005)
            got = list(seen)
            seen.clear()
            conn.send(("done", {"received": len(got), "unique": len(set(got)), "in_order": got == sorted(got),
                                "first": times[0], "last": times[1], "stats": handle.stats.__dict__}))
        handle.close()
