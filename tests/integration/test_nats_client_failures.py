"""NATS clients through failures, against a real nats-server, a gateway over the sim and its
bridge (subprocess): a NATS restart and a bridge kill -9 while orders flow lose no event and
repeat none; a durable consumer continues in a new client where the last one stopped; the
bridges' health makes ``gateway_alive`` and the ``gateway.liveness`` notice as over ZeroMQ."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from adapter.client import LIVENESS_EVENT, AsyncClient, Client, Event
from adapter.client.records import replayed_events

from ..conftest import ACCOUNT, wait_for
from ..support.nats import BridgeProcess, NatsServer

WAIT = 30.0  # seconds; generous on a loaded machine
GATEWAY = "gw1"


@pytest.fixture
def setup(gateway_factory: Any, tmp_path: Path) -> Iterator[tuple[NatsServer, Any, BridgeProcess]]:
    server = NatsServer(tmp_path).start()
    bridge = None
    try:
        gateway = gateway_factory()
        bridge = BridgeProcess(tmp_path, server.url, gateway.router_endpoint, gateway.pub_endpoint, GATEWAY).start()
        with Client(nats=server.url, timeout=10.0) as probe:
            wait_for(lambda: GATEWAY in probe.gateways, timeout=WAIT, interval=0.1, what="the bridge's health")
        yield server, gateway, bridge
    finally:
        if bridge is not None:
            bridge.stop()
        server.stop()


def journal(client: Client) -> list[Event]:
    """Every event the gateway journaled, page by page."""
    found: list[Event] = []
    from_seq = 1
    for _ in range(1000):
        page = client.replay(from_seq)
        found += replayed_events(page)
        from_seq = page.next_seq
        if not page.more:
            return found
    pytest.fail("the journal did not end")


class Orders:
    """Orders through the gateway's ZeroMQ client on a thread of their own until stopped."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.placed = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with Client(self.gateway.router_endpoint, self.gateway.pub_endpoint, timeout=10.0) as client:
                for index in range(10_000):  # bounded; stopped long before
                    if self._stop.wait(0.02):
                        return
                    price = 10.70 if index % 2 else 10.50  # fills and resting orders
                    client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", price)
                    self.placed += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def wait_more(self, count: int) -> None:
        target = self.placed + count
        wait_for(lambda: self.placed >= target or self.errors, timeout=WAIT, interval=0.02,
                 what=f"{count} more orders")
        assert not self.errors, self.errors

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        assert not self.errors, self.errors


class Reader:
    """An event stream read on a thread of its own; numbered events and notices kept apart."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.events: list[Event] = []
        self.notices: list[Event] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(1_000_000):  # bounded; stopped long before
            if self._stop.is_set():
                return
            event = self.stream.receive(0.1)
            if event is not None:
                (self.events if event.seq is not None else self.notices).append(event)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self.stream.close()


def bridged(url: str) -> int:
    """The last seq the bridge says JetStream holds (its health, PROTOCOL §18.3)."""
    with Client(nats=url, timeout=10.0) as probe:
        wait_for(lambda: GATEWAY in probe.gateways, timeout=WAIT, interval=0.05, what="the bridge's health")
        return int(probe.gateways[GATEWAY].get("last_seq") or 0)


def durable_rest(url: str, durable: str, last: int, most: int) -> list[Event]:
    """What a new blocking client under ``durable`` reads, up to and with seq ``last``."""
    rest: list[Event] = []
    with Client(nats=url, timeout=10.0) as remote:
        stream = remote.events(accounts=[ACCOUNT], durable=durable)
        for _ in range(most):  # bounded
            event = stream.receive(WAIT)
            assert event is not None, "no event within the deadline"
            if event.seq is not None:
                rest.append(event)
            if event.seq == last:
                break
        stream.close()
    return rest


def same_events(got: list[Event], expected: list[Event]) -> None:
    assert [e.seq for e in got] == [e.seq for e in expected]  # once each, in seq order
    assert [(e.topic, e.data, e.epoch) for e in got] == [(e.topic, e.data, e.epoch) for e in expected]


def test_every_event_once_in_order_through_a_nats_restart_and_a_bridge_kill(
        setup: tuple[NatsServer, Any, BridgeProcess]) -> None:
    server, gateway, bridge = setup
    called: list[Event] = []
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as local:
        before = local.ping().last_seq  # the callback's consumer takes new events only: those after
    with Client(nats=server.url, timeout=10.0) as remote:
        reader = Reader(remote.events(accounts=[ACCOUNT], from_seq=1))
        subscription = remote.subscribe(lambda e: called.append(e) if e.seq is not None else None,
                                        accounts=[ACCOUNT])
        assert reader.stream.wait_subscribed(WAIT) and subscription.wait_subscribed(WAIT)
        server.stop()  # clean shutdown before the callback's consumer got anything; same port and store again
        orders = Orders(gateway)
        try:
            orders.wait_more(10)  # the gateway journals meanwhile; the bridge publishes them once NATS is back
            server.start()
            orders.wait_more(10)
            bridge.kill()
            orders.wait_more(10)
            bridge.start()
            orders.wait_more(10)
        finally:
            orders.stop()
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as local:
            expected = journal(local)
        last = expected[-1].seq  # the journal as read: a fill's last events may still follow it
        wait_for(lambda: reader.events and reader.events[-1].seq >= last, timeout=WAIT, interval=0.1,
                 what=f"seq {last} read from the stream")
        wait_for(lambda: called and called[-1].seq >= last, timeout=WAIT, interval=0.1,
                 what=f"seq {last} given to the callback")
        reader.stop()
        subscription.close()
    same_events([e for e in reader.events if e.seq <= last], expected)
    same_events([e for e in called if e.seq <= last], [e for e in expected if e.seq > before])


def test_a_durable_consumer_continues_in_a_new_client(setup: tuple[NatsServer, Any, BridgeProcess]) -> None:
    server, gateway, _ = setup
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as local:
        for index in range(6):
            local.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.70 if index % 2 else 10.50)
        expected = journal(local)
    assert len(expected) > 20
    first: list[Event] = []
    with Client(nats=server.url, timeout=10.0) as remote:
        stream = remote.events(accounts=[ACCOUNT], from_seq=1, durable="strategy-1")
        for _ in range(len(expected)):  # bounded
            event = stream.receive(WAIT)
            assert event is not None, "no event within the deadline"
            if event.seq is not None:
                first.append(event)
            if len(first) == 10:
                break
        stream.close()
    assert [e.seq for e in first] == [e.seq for e in expected[:10]]
    # New events while nobody reads: they come after the ones the first client fetched but did not take.
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as local:
        local.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.70)
        expected = journal(local)
        last = expected[-1].seq  # the journal as read: a fill's last events may follow a ping's seq
    wait_for(lambda: bridged(server.url) >= last, timeout=WAIT, interval=0.1, what=f"seq {last} in the stream")
    same_events(first + durable_rest(server.url, "strategy-1", last, len(expected) * 2), expected)


def test_gateway_alive_follows_the_bridges_health(setup: tuple[NatsServer, Any, BridgeProcess]) -> None:
    server, _, bridge = setup
    with Client(nats=server.url, timeout=10.0) as remote:
        stream = remote.events(accounts=[ACCOUNT])
        assert stream.wait_subscribed(WAIT)
        assert remote.gateway_alive is True
        wait_for(lambda: stream.gateway_alive is True, timeout=WAIT, interval=0.05, what="the stream hearing it")
        bridge.kill()
        notices = []
        for _ in range(1000):  # bounded: the first events are the notice
            event = stream.receive(WAIT)
            assert event is not None, "no liveness notice within the deadline"
            if event.type == LIVENESS_EVENT:
                notices.append(event)
                break
        assert notices and notices[0].data["alive"] is False and notices[0].data["gateway"] == GATEWAY
        assert notices[0].data["silent_for"] >= 2.5
        assert stream.gateway_alive is False and remote.gateway_alive is False
        bridge.start()
        for _ in range(1000):
            event = stream.receive(WAIT)
            assert event is not None, "no liveness notice within the deadline"
            if event.type == LIVENESS_EVENT:
                notices.append(event)
                break
        assert notices[1].data["alive"] is True
        assert stream.gateway_alive is True and remote.gateway_alive is True
        stream.close()


class Disconnects:
    """An XtQuantTraderCallback that counts on_disconnected."""

    def __init__(self) -> None:
        self.disconnected = 0

    def on_disconnected(self) -> None:
        self.disconnected += 1


def test_the_compat_trader_over_nats_calls_on_disconnected_when_the_bridge_dies(
        setup: tuple[NatsServer, Any, BridgeProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    from adapter.compat import StockAccount, XtQuantTrader

    server, _, bridge = setup
    monkeypatch.setenv("QMT_ADAPTER_NATS", server.url)
    trader = XtQuantTrader("userdata_mini", 7, timeout=10.0)
    callback = Disconnects()
    trader.register_callback(callback)
    trader.start()
    try:
        assert trader.connect() == 0
        assert trader.subscribe(StockAccount(ACCOUNT)) == 0
        assert callback.disconnected == 0
        bridge.kill()
        wait_for(lambda: callback.disconnected == 1, timeout=WAIT, interval=0.05, what="on_disconnected")
    finally:
        trader.stop()


def test_the_asyncio_client_through_a_nats_restart_and_a_bridge_kill(
        setup: tuple[NatsServer, Any, BridgeProcess]) -> None:
    server, gateway, bridge = setup

    async def scenario() -> tuple[list[Event], list[Event], int]:
        events: list[Event] = []
        notices: list[Event] = []
        async with AsyncClient(nats=server.url, timeout=10.0) as remote:
            stream = remote.events(accounts=[ACCOUNT], from_seq=1)
            assert await stream.wait_subscribed(WAIT)

            async def take_until(done: Any) -> None:
                for _ in range(10_000):  # bounded
                    event = await stream.receive(WAIT)
                    assert event is not None, "nothing within the deadline"
                    (events if event.seq is not None else notices).append(event)
                    if done():
                        return
                pytest.fail("the stream did not get there")

            bridge.kill()  # first: no health from here until it is back, whatever the restart takes
            await asyncio.to_thread(server.restart)
            await take_until(lambda: any(not n.data["alive"] for n in notices))
            assert stream.gateway_alive is False and remote.gateway_alive is False
            await asyncio.to_thread(place, gateway, 4)
            bridge.start()
            with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as local:
                last = local.ping().last_seq
            await take_until(lambda: bool(events) and events[-1].seq >= last
                             and any(n.data["alive"] for n in notices))
            assert stream.gateway_alive is True
            await stream.aclose()
        return events, notices, last

    events, notices, last = asyncio.run(scenario())
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as local:
        expected = [e for e in journal(local) if e.seq <= last]
    same_events(events, expected)
    assert [n.data["alive"] for n in notices] == [False, True]


def place(gateway: Any, count: int) -> None:
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
        for index in range(count):
            client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.70 if index % 2 else 10.50)


def test_an_asyncio_durable_reader_hands_over_to_a_blocking_one(setup: tuple[NatsServer, Any, BridgeProcess]) -> None:
    server, gateway, _ = setup
    place(gateway, 4)
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as local:
        expected = journal(local)
    last = expected[-1].seq

    async def first_part() -> list[Event]:
        taken: list[Event] = []
        async with AsyncClient(nats=server.url, timeout=10.0) as remote:
            stream = remote.events(accounts=[ACCOUNT], from_seq=1, durable="strategy-2")
            for _ in range(len(expected)):  # bounded
                event = await stream.receive(WAIT)
                assert event is not None, "no event within the deadline"
                if event.seq is not None:
                    taken.append(event)
                if len(taken) == 7:
                    break
            await stream.aclose()
        return taken

    first = asyncio.run(first_part())
    same_events(first + durable_rest(server.url, "strategy-2", last, len(expected) * 2), expected)
