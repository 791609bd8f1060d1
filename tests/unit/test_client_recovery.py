"""Recovering event streams against the fake gateway (``test_client.FakeGateway``): gaps filled
from its journal over the DEALER, exactly once and in seq order, for the four drivers.

The fake journals what it publishes; ``publish(..., live=False)`` journals an event without
publishing it, which is what a subscriber sees when the PUB drops an event. Every wait has a
deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import zmq

from adapter.client import AsyncClient, Client, Event
from adapter.client.recovery import EPOCH_EVENT, GAP_EVENT

from .test_client import ACCOUNT, WAIT, FakeGateway, unused_endpoint
from .test_recovery import JournalModel


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    fake = FakeGateway()
    yield fake
    fake.close()


@pytest.fixture
def client(gateway: FakeGateway) -> Iterator[Client]:
    with Client(gateway.router_url, gateway.pub_url, timeout=WAIT) as blocking:
        yield blocking


def receive_seqs(stream: Any, count: int) -> list[Any]:
    """The next ``count`` events' seqs (the type for seq-less notices), pongs left out."""
    out: list[Any] = []
    deadline = time.monotonic() + WAIT
    while len(out) < count:
        event = stream.receive(max(0.01, deadline - time.monotonic()))
        assert event is not None, f"only {out} before the deadline"
        if event.type != "gateway.pong":
            out.append(event.seq if event.seq is not None else event.type)
    return out


def publish_orders(gateway: FakeGateway, seqs: range | list[int], live: bool = True, **extra: Any) -> None:
    for seq in seqs:
        gateway.publish(seq, "order", ACCOUNT, {"order_id": seq, **extra}, live=live)


# -- blocking iterator ------------------------------------------------------------------------


def test_iterator_fills_a_gap_from_the_journal(gateway: FakeGateway, client: Client) -> None:
    with client.events("order.", timeout=WAIT) as stream:
        assert stream.wait_subscribed(WAIT)
        publish_orders(gateway, [1, 2])
        publish_orders(gateway, [3, 4], live=False)  # the PUB dropped these
        gateway.publish(5, "trade", ACCOUNT, {"traded_id": "T5"})  # not wanted, but shows the jump
        publish_orders(gateway, [6])
        assert receive_seqs(stream, 5) == [1, 2, 3, 4, 6]
        assert stream.stats.recovered == 2 and stream.stats.gaps == 1 and stream.last_seq == 6
        assert stream.epoch == "epoch-1" and stream.prefixes == ("order.",)
    replays = [request for request in gateway.requests if b"replay" in request]
    assert len(replays) == 1


def test_iterator_notices_a_lost_tail_by_the_heartbeat(gateway: FakeGateway, client: Client) -> None:
    with client.events() as stream:
        assert stream.wait_subscribed(WAIT)
        publish_orders(gateway, [1])
        publish_orders(gateway, [2, 3], live=False)  # nothing follows them
        gateway.heartbeat()  # last_seq 3
        assert receive_seqs(stream, 3) == [1, 2, 3]
        assert stream.receive(0.05) is None  # the heartbeat itself is not an event


def test_events_published_while_the_sub_reconnects_are_replayed() -> None:
    """The PUB side goes away and comes back on the same endpoint (as with a restarted
    gateway): ZeroMQ reconnects the SUB by itself, the jump shows the loss, replay fills it."""
    gateway = FakeGateway(pub_url=unused_endpoint())  # a fixed port below the ephemeral range
    try:
        with Client(gateway.router_url, gateway.pub_url, timeout=WAIT) as client, client.events("order.") as stream:
            assert stream.wait_subscribed(WAIT)
            publish_orders(gateway, [1])
            assert receive_seqs(stream, 1) == [1]
            gateway.run(FakeGateway.restart_pub)
            publish_orders(gateway, [2, 3])  # nobody is connected yet: lost to this subscriber
            gateway.flush()
            deadline = time.monotonic() + WAIT
            while gateway.subscriptions.count(b"\x01") < 2:  # until the SUB is back
                # ZeroMQ completes a reconnect when the socket is used: keep reading meanwhile.
                assert stream.receive(0.02) is None and time.monotonic() < deadline
            publish_orders(gateway, [4])
            assert receive_seqs(stream, 3) == [2, 3, 4]
            assert stream.stats.recovered == 2 and stream.stats.gaps == 1
    finally:
        gateway.close()


def test_late_joiner_replays_from_a_seq_then_goes_live(gateway: FakeGateway, client: Client) -> None:
    publish_orders(gateway, range(1, 6), live=False)  # before the stream existed
    with client.events(from_seq=3) as stream:
        assert receive_seqs(stream, 3) == [3, 4, 5]  # no pong needed: the replay starts at once
        assert stream.wait_subscribed(WAIT)
        publish_orders(gateway, [6, 7])
        assert receive_seqs(stream, 2) == [6, 7]
        assert stream.stats.recovered == 3 and stream.stats.live == 2


def test_state_file_resumes_a_restarted_stream(gateway: FakeGateway, client: Client, tmp_path: Path) -> None:
    state = tmp_path / "strategy.state"
    with client.events(state_file=state) as stream:
        assert stream.wait_subscribed(WAIT)
        publish_orders(gateway, [1, 2, 3])
        assert receive_seqs(stream, 3) == [1, 2, 3]
    assert json.loads(state.read_text()) == {"epoch": "epoch-1", "last_seq": 3}  # closing delivered 3
    publish_orders(gateway, [4, 5], live=False)  # while the strategy was down
    with client.events(state_file=state) as stream:
        assert receive_seqs(stream, 2) == [4, 5]
        assert stream.wait_subscribed(WAIT)
        publish_orders(gateway, [6])
        assert receive_seqs(stream, 1) == [6]
    assert json.loads(state.read_text())["last_seq"] == 6


def test_a_recreated_journal_gives_an_epoch_notice(gateway: FakeGateway, client: Client) -> None:
    with client.events() as stream:
        assert stream.wait_subscribed(WAIT)
        publish_orders(gateway, [1, 2])
        assert receive_seqs(stream, 2) == [1, 2]
        gateway.run(lambda fake: setattr(fake, "journal", JournalModel("epoch-2")))
        publish_orders(gateway, [1], live=False)
        publish_orders(gateway, [2])
        assert receive_seqs(stream, 3) == [EPOCH_EVENT, 1, 2]
        assert stream.epoch == "epoch-2" and stream.stats.epoch_changes == 1


def test_a_stream_follows_the_gateway_back_to_a_journal_it_left(gateway: FakeGateway, client: Client) -> None:
    """A -> B -> A: the stream never goes silent, and no seq of A comes twice."""
    journal_a = gateway.journal
    with client.events() as stream:
        assert stream.wait_subscribed(WAIT)
        publish_orders(gateway, [1, 2])
        assert receive_seqs(stream, 2) == [1, 2]
        gateway.run(lambda fake: setattr(fake, "journal", JournalModel("epoch-2")))
        publish_orders(gateway, [1])
        assert receive_seqs(stream, 2) == [EPOCH_EVENT, 1] and stream.epoch == "epoch-2"
        gateway.run(lambda fake: setattr(fake, "journal", journal_a))  # back on the first journal
        publish_orders(gateway, [3], live=False)
        publish_orders(gateway, [4])
        assert receive_seqs(stream, 3) == [EPOCH_EVENT, 3, 4] and stream.epoch == "epoch-1"
        publish_orders(gateway, [5])
        assert receive_seqs(stream, 1) == [5] and stream.stats.epoch_changes == 2


def test_expired_history_gives_a_gap_notice(gateway: FakeGateway, client: Client) -> None:
    publish_orders(gateway, range(1, 8), live=False)
    gateway.run(lambda fake: setattr(fake.journal, "first_kept", 5))
    with client.events(from_seq=2) as stream:
        gap = stream.receive(WAIT)
        assert gap is not None and gap.type == GAP_EVENT
        assert gap.data.to_dict() == {"from_seq": 2, "to_seq": 4, "first_kept": 5}
        assert receive_seqs(stream, 3) == [5, 6, 7]
        assert stream.stats.expired == 1


def test_burst_beyond_a_tiny_receive_hwm_is_recovered_exactly_once(gateway: FakeGateway, client: Client) -> None:
    """The reader is not reading while 5,000 events of 2 KB are published: far more than the
    high-water marks and the socket buffers hold, so the PUB drops; replay restores them all."""
    count = 5000
    tuned = threading.Event()

    def small_buffers(fake: FakeGateway) -> None:
        fake.pub.setsockopt(zmq.SNDHWM, 10)
        fake.pub.setsockopt(zmq.SNDBUF, 4096)
        fake.heartbeat_interval = 0.05  # the lost tail shows by the heartbeat, as with the gateway
        tuned.set()

    gateway.run(small_buffers)
    assert tuned.wait(WAIT)
    with client.events(rcvhwm=10) as stream:
        assert stream.wait_subscribed(WAIT)
        publish_orders(gateway, range(1, count + 1), pad="x" * 2000)
        gateway.flush()
        seqs = receive_seqs(stream, count)
        stats = stream.stats
    assert seqs == list(range(1, count + 1))
    assert stats.recovered > 0 and stats.live + stats.recovered == count and stats.duplicates >= 0


# -- callbacks ------------------------------------------------------------------------------


def test_subscription_with_a_slow_callback_loses_nothing_while_the_client_is_used(
    gateway: FakeGateway, client: Client
) -> None:
    """A callback stuck for the whole burst and a tiny HWM: the PUB drops. The subscription
    thread replays over the client's DEALER while the user's thread keeps calling it; neither
    blocks the other."""
    count = 5000
    tuned = threading.Event()

    def small_buffers(fake: FakeGateway) -> None:
        fake.pub.setsockopt(zmq.SNDHWM, 10)
        fake.pub.setsockopt(zmq.SNDBUF, 4096)
        fake.heartbeat_interval = 0.05
        tuned.set()

    gateway.run(small_buffers)
    assert tuned.wait(WAIT)
    seen: list[int] = []
    burst_sent, done = threading.Event(), threading.Event()

    def slow(event: Event) -> None:
        if event.seq is None:
            return
        if not seen:
            assert burst_sent.wait(WAIT)  # busy with the first event until the burst is over
        seen.append(event.seq)
        if len(seen) == count:
            done.set()

    with client.subscribe(slow, "order.", rcvhwm=10) as handle:
        assert handle.wait_subscribed(WAIT)
        publish_orders(gateway, range(1, count + 1), pad="x" * 2000)
        gateway.flush()
        burst_sent.set()
        answered = 0
        deadline = time.monotonic() + 3 * WAIT
        for _ in range(100_000):  # the user's own calls go on meanwhile (at least one)
            assert client.query_stock_order(ACCOUNT, 7) is not None
            answered += 1
            if done.is_set() or time.monotonic() > deadline:
                break
        assert done.wait(max(0.0, deadline - time.monotonic())), f"{len(seen)} of {count} delivered"
        stats = handle.stats
    assert seen == list(range(1, count + 1))
    assert stats.recovered > 0 and answered > 0


def test_subscription_commits_after_the_callback_returns(
    gateway: FakeGateway, client: Client, tmp_path: Path
) -> None:
    state = tmp_path / "callback.state"
    delivered: queue.Queue[int] = queue.Queue()

    def keep(event: Event) -> None:
        if event.seq is not None:
            delivered.put(event.seq)

    handle = client.subscribe(keep, state_file=state)
    assert handle.wait_subscribed(WAIT)
    publish_orders(gateway, [1, 2])
    assert [delivered.get(timeout=WAIT) for _ in range(2)] == [1, 2]
    handle.close()
    assert json.loads(state.read_text())["last_seq"] == 2
    publish_orders(gateway, [3], live=False)
    resumed = client.subscribe(keep, state_file=state)
    assert delivered.get(timeout=WAIT) == 3
    resumed.close()


# -- asyncio --------------------------------------------------------------------------------


def test_async_stream_and_subscription_fill_gaps(gateway: FakeGateway) -> None:
    async def main() -> None:
        async with AsyncClient(gateway.router_url, gateway.pub_url, timeout=WAIT) as client:
            delivered: asyncio.Queue[int] = asyncio.Queue()

            async def callback(event: Event) -> None:
                if event.seq is not None:
                    await delivered.put(event.seq)

            handle = client.subscribe(callback, "order.")
            stream = client.events("order.", timeout=WAIT)
            assert await stream.wait_subscribed(WAIT) and await handle.wait_subscribed(WAIT)
            publish_orders(gateway, [1])
            publish_orders(gateway, [2, 3], live=False)
            publish_orders(gateway, [4])
            publish_orders(gateway, [5], live=False)
            gateway.heartbeat()
            seqs = []
            async for event in stream:
                if event.seq is not None:
                    seqs.append(event.seq)
                if len(seqs) == 5:
                    break
            assert seqs == [1, 2, 3, 4, 5]
            assert [await asyncio.wait_for(delivered.get(), WAIT) for _ in range(5)] == [1, 2, 3, 4, 5]
            assert stream.stats.recovered == 3 and handle.stats.recovered == 3
            await stream.aclose()
            late = client.events("order.", from_seq=4)  # a late joiner replays from seq 4
            replayed = [await late.receive(WAIT) for _ in range(2)]
            assert [event.seq if event else None for event in replayed] == [4, 5]
            late.close()

    asyncio.run(asyncio.wait_for(main(), 3 * WAIT))


def test_async_subscription_state_file(gateway: FakeGateway, tmp_path: Path) -> None:
    state = tmp_path / "async.state"

    async def main() -> None:
        async with AsyncClient(gateway.router_url, gateway.pub_url, timeout=WAIT) as client:
            delivered: asyncio.Queue[int] = asyncio.Queue()

            def keep(event: Event) -> None:  # a plain function works as well as a coroutine
                if event.seq is not None:
                    delivered.put_nowait(event.seq)

            handle = client.subscribe(keep, state_file=state)
            assert await handle.wait_subscribed(WAIT)
            publish_orders(gateway, [1, 2])
            assert [await asyncio.wait_for(delivered.get(), WAIT) for _ in range(2)] == [1, 2]
            await handle.close()
            publish_orders(gateway, [3], live=False)
            stream = client.events(state_file=state)
            event = await stream.receive(WAIT)
            assert event is not None and event.seq == 3
            await stream.aclose()

    asyncio.run(asyncio.wait_for(main(), 3 * WAIT))
    assert json.loads(state.read_text())["last_seq"] == 3


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_from_seq_is_checked(gateway: FakeGateway, client: Client, bad: Any) -> None:
    with pytest.raises(ValueError):
        client.events(from_seq=bad)
