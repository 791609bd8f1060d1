"""Shared fixtures: gateways on random loopback ports over the genuine xttrader + sim."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Iterator

import pytest

from adapter.config import Config, SimConfig, load_config

ACCOUNT = "1000000365"
LOOPBACK = "tcp://127.0.0.1:*"


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005, what: str = "") -> Any:
    """Poll until ``predicate()`` is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def _shared_context_connects(seconds: float = 10.0) -> bool:
    """Whether a new socket of ``zmq.Context.instance()`` still connects (to a ROUTER of another
    context), as every Client made without a context needs."""
    import zmq

    peers = zmq.Context()
    try:
        router = peers.socket(zmq.ROUTER)
        router.linger = 0
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        try:
            dealer.linger = 0
            dealer.setsockopt(zmq.IMMEDIATE, 1)
            dealer.connect(f"tcp://127.0.0.1:{port}")
            return bool(dealer.poll(int(seconds * 1000), zmq.POLLOUT))
        finally:
            dealer.close(linger=0)
    finally:
        peers.destroy(linger=0)


_SHARED_CONTEXT_BROKEN: list[bool] = []  # set once a test of this worker broke it


@pytest.fixture(autouse=True)
def shared_context_stays_usable() -> Iterator[None]:
    """A test that leaves the process-wide context unable to connect fails itself, instead of
    every later test of its worker (a blocked libzmq I/O thread stays blocked)."""
    yield
    if _SHARED_CONTEXT_BROKEN:
        return  # said once, by the test that broke it
    if not _shared_context_connects():
        _SHARED_CONTEXT_BROKEN.append(True)
        pytest.fail("zmq.Context.instance() no longer makes connections after this test")


# Tests of other features send bursts, identical orders and orders the counter must refuse, on
# purpose: the gateway's pre-trade checks are off for them. tests/integration/test_risk.py runs
# with the real defaults (risk={}).
RISK_OFF = {
    "orders_per_second": 0, "orders_per_day": 0, "duplicate_window": 0, "max_open_orders": 0,
    "max_order_volume": 0, "max_order_notional": 0, "max_position_notional": 0, "check_instrument": False,
}


def make_config(sim: SimConfig | None = None, **overrides: Any) -> Config:
    overrides.setdefault("risk", RISK_OFF)
    overrides.setdefault("router", LOOPBACK)  # a random port unless the test gives one
    overrides.setdefault("pub", LOOPBACK)
    config = load_config(None, **overrides)
    return replace(config, sim=sim) if sim is not None else config


class EventLog:
    """Collects events from a client subscription (delivered on its thread)."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, event_type: str, **match: Any) -> list[Any]:
        with self._lock:
            found = [e for e in self.events if e.type == event_type]
        return [e for e in found if all(getattr(e.data, k) == v for k, v in match.items())]

    def wait(self, event_type: str, timeout: float = 5.0, count: int = 1, **match: Any) -> list[Any]:
        return wait_for(
            lambda: (lambda found: found if len(found) >= count else None)(self.of(event_type, **match)),
            timeout,
            what=f"{count} {event_type} event(s) matching {match}",
        )

    def types_for_order(self, order_id: int) -> list[tuple[str, Any]]:
        """(type, order_status) of this order's order/trade events, in seq order."""
        with self._lock:
            mine = [e for e in self.events if e.type in ("order", "trade") and e.data.order_id == order_id]
        return [(e.type, getattr(e.data, "order_status", None)) for e in sorted(mine, key=lambda e: e.seq)]


def wait_filled(log: EventLog, order_id: int, timeout: float = 10.0) -> int:
    """Wait until the whole fill of ``order_id`` is published: the sim sends trade, order 56,
    position, asset, in that order. Returns the seq of that asset event, the fill's last."""
    filled = log.wait("order", timeout, order_id=order_id, order_status=56)[0]
    after = wait_for(
        lambda: [e for e in log.of("asset") if e.seq is not None and e.seq > filled.seq],
        timeout,
        what=f"the asset event after order {order_id}'s fill",
    )
    return int(after[0].seq)


def prove_live(client: Any, log: EventLog, timeout: float = 5.0) -> None:
    """Ping with publish until a gateway.pong arrives: the subscription is then live."""
    wait_for(
        lambda: client.ping(publish=True).connected and log.of("gateway.pong"),
        timeout,
        interval=0.02,
        what="the subscription to go live",
    )


@contextlib.contextmanager
def raw_dealer(endpoint: str) -> Iterator[Any]:
    """A bare DEALER on the gateway's ROUTER, for sending bytes the client library never would."""
    import zmq

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    socket.rcvtimeo = 5000
    socket.connect(endpoint)
    try:
        yield socket
    finally:
        socket.close()
        context.term()


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (for settings that need a number)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def subscribed_log(client: Any) -> Iterator[EventLog]:
    """An EventLog of everything ``client`` receives, its subscription proven live."""
    log = EventLog()
    handle = client.subscribe(log)
    try:
        prove_live(client, log)
        yield log
    finally:
        handle.close()


@contextlib.contextmanager
def trading_session(gateway: Any, timeout: float = 5.0) -> Iterator[tuple[Any, EventLog]]:
    """A Client on ``gateway`` and an EventLog of everything it publishes, proven live."""
    from adapter.client import Client

    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=timeout) as client, \
            subscribed_log(client) as log:
        yield client, log


@pytest.fixture
def gateway_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    from adapter.server import Gateway

    started: list[Gateway] = []

    def start(sim: SimConfig | None = None, **overrides: Any) -> Gateway:
        overrides.setdefault("data_dir", str(tmp_path_factory.mktemp("gateway")))
        gateway = Gateway(make_config(sim, **overrides))
        gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(gateway_factory: Callable[..., Any]) -> Any:
    return gateway_factory()


@pytest.fixture
def client(gateway: Any) -> Iterator[Any]:
    from adapter.client import Client

    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as c:
        yield c


@pytest.fixture
def event_log(client: Any) -> Iterator[EventLog]:
    """Every event from the gateway, subscribed and proven live before the test runs."""
    log = EventLog()
    handle = client.subscribe(log)
    prove_live(client, log)
    yield log
    handle.close()
