"""Gap-free delivery end to end: journal, replay, snapshot, heartbeat and client recovery,
over real sockets with the genuine xttrader over the sim."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from adapter.client import AsyncClient, Client, GatewayError
from adapter.config import SimConfig

from ..conftest import ACCOUNT, EventLog, free_port, trading_session, wait_filled, wait_for
from ..support.market import market
from ..support.processes import GatewayProcess, pings

RICH = SimConfig(cash=1e10)


def stat(stats: Any, name: str) -> int:
    return int(stats[name] if isinstance(stats, dict) else getattr(stats, name))


def burst(router: str, pub: str, orders: int, window: int = 200, price: float = 10.70) -> int:
    """Place ``orders`` marketable buys (7 events each) from an AsyncClient; returns how many were answered."""

    async def run() -> int:
        answered = 0
        async with AsyncClient(router, pub, timeout=10.0) as client:
            for first in range(0, orders, window):
                calls = [
                    client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", price, "burst")
                    for _ in range(min(window, orders - first))
                ]
                results = await asyncio.gather(*calls, return_exceptions=True)
                answered += sum(not isinstance(r, BaseException) for r in results)
                if answered < first + len(results):  # the gateway went away: stop sending
                    break
        return answered

    return asyncio.run(run())


class Collector(EventLog):
    """A recovering subscription's deliveries, with a slow handler on request."""

    def __init__(self, slow_every: int = 0) -> None:
        super().__init__()
        self.slow_every = slow_every
        self.lock = self._lock

    def __call__(self, event: Any) -> None:
        with self.lock:
            self.events.append(event)
            n = len(self.events)
        if self.slow_every and n % self.slow_every == 0:
            time.sleep(0.002)  # a handler that cannot keep up with the burst (not a wait)

    def seqs(self) -> list[int]:
        with self.lock:
            return [e.seq for e in self.events if e.seq is not None]

    def last(self) -> int:
        seqs = self.seqs()
        return seqs[-1] if seqs else 0


def wait_burst_filled(log: EventLog, order_ids: Any = None, count: int = 0, timeout: float = 60.0) -> int:
    """Wait until the fills of ``order_ids`` (or of ``count`` orders) are published completely:
    every one's order 56, then the asset event after the last of them (the sim sends trade,
    order 56, position, asset). Returns that asset's seq: nothing else is on its way then."""
    wanted = None if order_ids is None else set(order_ids)

    def fills() -> list[Any] | None:
        done = [e for e in log.of("order", order_status=56) if wanted is None or e.data.order_id in wanted]
        return done if len(done) >= (count if wanted is None else len(wanted)) else None

    newest = max(e.seq for e in wait_for(fills, timeout, interval=0.02, what="the fills"))
    after = wait_for(lambda: [e for e in log.of("asset") if e.seq is not None and e.seq > newest], timeout,
                     what="the asset event after the last fill")
    return int(after[0].seq)


def journal_frames(client: Client, from_seq: int = 1) -> list[tuple[str, bytes]]:
    """Every journaled event as its exact PUB frames, read page by page."""
    frames: list[tuple[str, bytes]] = []
    for _ in range(10_000):
        page = client.replay(from_seq)
        frames += [(topic, payload) for topic, payload in page.events]
        from_seq = page.next_seq
        if not page.more:
            return frames
    pytest.fail("the journal did not end")


@pytest.mark.timeout(180)  # ~8 s idle: 3,000 orders, 21,000 events
def test_tiny_hwm_slow_subscriber_gets_every_seq_once_in_order(gateway_factory: Any) -> None:
    gateway = gateway_factory(sim=RICH, pub_hwm=500)
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
        collector = Collector(slow_every=50)
        subscription = client.subscribe(collector, from_seq=1, rcvhwm=50)
        assert subscription.wait_subscribed(5.0)
        answered = burst(gateway.router_endpoint, gateway.pub_endpoint, 3000)
        assert answered == 3000
        last = wait_burst_filled(collector, count=3000)  # the replies come before the fills' events
        assert last >= 20_000 and client.ping().last_seq == last
        seqs = collector.seqs()
        assert seqs == list(range(1, last + 1))  # every seq, exactly once, in order
        assert stat(subscription.stats, "recovered") > 0  # the PUB really dropped, replay filled in
        journal = journal_frames(client)
        with collector.lock:
            delivered = [(e.topic, e.seq, e.type, e.data.to_dict()) for e in collector.events if e.seq is not None]
        assert len(journal) == last
        from adapter.client.records import parse_event

        assert delivered == [
            (e.topic, e.seq, e.type, e.data.to_dict())
            for e in (parse_event([t.encode(), p]) for t, p in journal)
        ]
        subscription.close()


def test_subscriber_that_was_away_recovers_what_it_missed(gateway: Any, tmp_path: Path) -> None:
    state = tmp_path / "cursor"
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
        first = Collector()
        subscription = client.subscribe(first, state_file=str(state))
        assert subscription.wait_subscribed(5.0)
        order_id = client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70).order_id
        wait_filled(first, order_id)
        wait_for(lambda: first.last() == client.ping().last_seq, what="caught up")
        subscription.close()  # away: events flow without it
        away_from = first.last() + 1
        for _ in range(5):
            client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70)
        last = client.ping().last_seq
        assert last > away_from
        second = Collector()
        resumed = client.subscribe(second, state_file=str(state))  # resumes from the saved cursor
        wait_for(lambda: second.last() >= last, timeout=10.0, what="the missed events")
        assert second.seqs()[: last - away_from + 1] == list(range(away_from, last + 1))
        assert stat(resumed.stats, "recovered") >= last - away_from + 1
        assert order_id > 0
        resumed.close()


def test_iterator_from_seq_replays_then_follows(client: Any) -> None:
    for _ in range(3):
        client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.40)  # rest: 48, 50 each
    with client.events("order.", from_seq=1, timeout=5.0) as stream:
        seen = []
        for event in stream:  # replayed, or live if the reply came before they were published
            seen.append(event)
            if len(seen) == 6:
                break
        assert all(e.type == "order" for e in seen)
        assert [e.data.order_status for e in seen] == [48, 50] * 3
        assert [e.seq for e in seen] == sorted(e.seq for e in seen)
        live_id = client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.40).order_id
        live = stream.receive(5.0)
        assert live is not None and live.type == "order" and live.data.order_id == live_id



@pytest.fixture
def endpoints() -> Iterator[tuple[str, str]]:
    yield f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"


@pytest.mark.timeout(180)  # ~13 s idle: two gateway processes, a burst
def test_gateway_killed_mid_burst_restarts_with_seq_continuing_and_nothing_lost(
    tmp_path: Path, endpoints: tuple[str, str]
) -> None:
    router, pub = endpoints
    first = GatewayProcess(tmp_path, router, pub)
    second: GatewayProcess | None = None
    try:
        with Client(router, pub, timeout=10.0) as client:
            wait_for(lambda: pings(client), timeout=30.0, interval=0.1, what="the gateway to start")
            epoch = client.ping().epoch
            collector = Collector()
            subscription = client.subscribe(collector, from_seq=1)
            assert subscription.wait_subscribed(10.0)
            sender = threading.Thread(target=burst, args=(router, pub, 3000), daemon=True)
            sender.start()
            wait_for(lambda: collector.last() > 5000, timeout=30.0, what="the burst to be under way")
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            sender.join(60)
            second = GatewayProcess(tmp_path, router, pub)
            wait_for(lambda: pings(client), timeout=30.0, interval=0.1, what="the gateway to restart")
            info = client.ping()
            assert info.epoch == epoch  # same journal, same stream
            placed = [client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70).order_id for _ in range(3)]
            last = wait_burst_filled(collector, placed)
            assert client.ping().last_seq == last
            seqs = collector.seqs()
            assert seqs == list(range(1, last + 1))  # no seq reused, none missing, none doubled
            journal = journal_frames(client)
            assert len(journal) == last
            with collector.lock:
                assert [e.type for e in collector.events if e.seq] == [t.split(".")[0] if not t.startswith("gateway.") else t for t, _ in journal]
            restarts = [e.seq for e in collector.events if e.type == "gateway.connection" and e.data.connected]
            assert len(restarts) == 2 and restarts[1] > 5000  # the second run went on from the journal
            subscription.close()
    finally:
        GatewayProcess.stop_all(first, second)


def test_a_stream_follows_the_gateway_to_another_journal_and_back(
    gateway_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Client.events() left running while the gateway restarts on the same ports with journal
    B, then with journal A again: each journal change gives a gateway.epoch notice, the stream
    never goes silent, and each seq of one journal comes once, in order."""
    router, pub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    dir_a, dir_b = str(tmp_path_factory.mktemp("journal-a")), str(tmp_path_factory.mktemp("journal-b"))
    seen: list[Any] = []

    def start(data_dir: str) -> Any:
        return gateway_factory(router=router, pub=pub, data_dir=data_dir, heartbeat_interval=0.2)

    def order_events(client: Client, stream: Any, epoch: str) -> int:
        """Place an order on the gateway of ``epoch`` and read the stream until its fill arrives."""
        order_id = client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70).order_id
        for _ in range(10_000):
            event = stream.receive(10.0)
            assert event is not None, f"the stream went silent; seen: {[(e.type, e.seq) for e in seen[-5:]]}"
            seen.append(event)
            if event.epoch == epoch and event.type == "order" and event.data.order_id == order_id \
                    and event.data.order_status == 56:
                return order_id
        pytest.fail("no fill of the order in 10,000 events")

    gateway = start(dir_a)
    with Client(router, pub, timeout=5.0) as client, client.events(from_seq=1) as stream:
        assert stream.wait_subscribed(10.0)
        epoch_a = client.ping().epoch
        order_events(client, stream, epoch_a)
        for data_dir in (dir_b, dir_a):
            gateway.stop()
            gateway = start(data_dir)
            epoch = wait_for(lambda: _epoch(client), timeout=30.0, interval=0.05, what="the restarted gateway")
            third_order = order_events(client, stream, epoch)
        assert epoch == epoch_a  # the third gateway is back on journal A

    notices = [e.data.to_dict() for e in seen if e.type == "gateway.epoch"]
    epoch_b = notices[0]["new_epoch"]
    first_switch = next(i for i, e in enumerate(seen) if e.type == "gateway.epoch")
    left_a = max(e.seq for e in seen[:first_switch] if e.epoch == epoch_a and e.seq is not None)
    assert notices == [{"old_epoch": epoch_a, "new_epoch": epoch_b, "resume_after": 0},
                       {"old_epoch": epoch_b, "new_epoch": epoch_a, "resume_after": left_a}]
    for epoch in (epoch_a, epoch_b):  # within one journal: every seq once, in order
        seqs = [e.seq for e in seen if e.epoch == epoch and e.seq is not None]
        assert seqs == list(range(1, len(seqs) + 1)), (epoch, seqs)
    back = next(i for i, e in enumerate(seen) if e.type == "gateway.epoch" and e.data.new_epoch == epoch_a)
    third = [e for e in seen[back:] if e.epoch == epoch_a and e.seq is not None]
    assert any(e.type == "trade" and e.data.order_id == third_order for e in third)  # from the third gateway
    assert third[0].seq == max(e.seq for e in seen[:back] if e.epoch == epoch_a and e.seq is not None) + 1


def _epoch(client: Client) -> str | None:
    try:
        info = client.ping(timeout=0.5)
    except GatewayError:
        return None
    return str(info.epoch) if info.connected else None


def apply(books: dict[str, Any], event: Any) -> None:
    """A subscriber's own books from events, by the same rules as the snapshot."""
    d = event.data
    if event.type == "order":
        books["orders"][d.order_id] = d.to_dict()
    elif event.type == "trade":
        books["trades"][d.traded_id] = d.to_dict()
    elif event.type == "position":
        books["positions"][d.stock_code] = d.to_dict()
    elif event.type == "asset":
        books["asset"] = d.to_dict()


def books_of(snapshot: Any) -> dict[str, Any]:
    return {
        "asset": snapshot.asset.to_dict() if snapshot.asset is not None else None,
        "positions": {p.stock_code: p.to_dict() for p in snapshot.positions},
        "orders": {o.order_id: o.to_dict() for o in snapshot.orders},
        "trades": {t.traded_id: t.to_dict() for t in snapshot.trades},
    }


def test_late_joiner_snapshot_plus_events_equals_an_early_subscriber(gateway_factory: Any) -> None:
    gateway = gateway_factory(sim=SimConfig(positions={ACCOUNT: {"000001.SZ": 1000}}, fill_volume=100))
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
        start = client.snapshot(ACCOUNT)
        early_books = books_of(start)
        early = client.events("", from_seq=start.seq + 1)
        assert early.wait_subscribed(5.0)
        client.order_stock(ACCOUNT, "600000.SH", 23, 300, 11, 10.70)  # fills in three parts
        client.order_stock(ACCOUNT, "000001.SZ", 24, 200, 11, 11.00)
        resting = client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.40).order_id
        market(gateway).step()

        snapshot = client.snapshot(ACCOUNT)  # the late joiner arrives here
        late_books = books_of(snapshot)
        late = client.events("", from_seq=snapshot.seq + 1)
        assert late.wait_subscribed(5.0)
        market(gateway).step()
        client.cancel_order_stock(ACCOUNT, resting)
        client.order_stock(ACCOUNT, "000001.SZ", 24, 100, 11, 11.00)
        market(gateway).step()
        # The cancel's and the fills' events come after the replies: wait until the gateway's
        # books show them. A snapshot's books are those of the events up to its seq.
        final_snapshot = wait_for(
            lambda: (lambda s: s if {o.order_id: o.order_status for o in s.orders}.get(resting) == 54
                     and len(s.trades) >= 4 else None)(client.snapshot(ACCOUNT)),
            what="the cancel and the fills in the snapshot",
        )
        for stream, books in ((early, early_books), (late, late_books)):
            for _ in range(10_000):
                event = stream.receive(5.0)
                assert event is not None, "stream ended early"
                assert event.seq is None or event.seq <= final_snapshot.seq
                apply(books, event)
                if event.seq == final_snapshot.seq:
                    break
        final = books_of(final_snapshot)
        assert late_books == early_books == final
        assert final["orders"][resting]["order_status"] == 54 and len(final["trades"]) >= 4
        early.close()
        late.close()


def test_heartbeats_tell_a_quiet_subscriber_the_stream_is_alive(gateway_factory: Any) -> None:
    gateway = gateway_factory(heartbeat_interval=0.1)
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as client:
        info = client.ping()  # (start-up events may still be on their way: last_seq can only grow)
        import zmq
        import msgpack

        context = zmq.Context.instance()
        sub = context.socket(zmq.SUB)
        sub.linger = 0
        sub.subscribe(b"gateway.heartbeat")
        sub.connect(gateway.pub_endpoint)
        beats = []
        deadline = time.monotonic() + 5
        while len(beats) < 3 and time.monotonic() < deadline:
            if sub.poll(200):
                beats.append(msgpack.unpackb(sub.recv_multipart()[1]))
        sub.close()
        assert len(beats) == 3
        newest = client.ping().last_seq
        for beat in beats:
            assert beat["seq"] is None and beat["epoch"] == info.epoch
            assert info.last_seq <= beat["data"].pop("last_seq") <= newest
            assert beat["data"] == {"connected": True, "interval": 0.1}


def test_replay_older_than_retention_says_so(gateway_factory: Any) -> None:
    gateway = gateway_factory(retention_bytes=4000)
    with trading_session(gateway) as (client, log):
        for _ in range(10):
            order_id = client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70).order_id
        wait_filled(log, order_id)  # the last fill published: the journal stays as it is now
        info = client.journal_info()
        assert info.first_seq > 1 and info.payload_bytes <= 4000
        with pytest.raises(GatewayError) as expired:
            client.replay(1)
        assert expired.value.code == "seq_expired"
        assert f"first kept: {info.first_seq}" in expired.value.message and "snapshot" in expired.value.message
        page = client.replay(info.first_seq)
        assert page.events and page.first_seq == info.first_seq
        assert client.snapshot(ACCOUNT).seq == info.last_seq  # the documented way back


def test_cli_journal_and_tail_from(gateway: Any, client: Any) -> None:
    client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70)
    common = ["--router", gateway.router_endpoint, "--pub", gateway.pub_endpoint, "--timeout", "5"]
    journal = subprocess.run([sys.executable, "-m", "adapter", "journal", *common], capture_output=True, text=True, timeout=30)
    assert journal.returncode == 0 and client.ping().epoch in journal.stdout and "seq 1.." in journal.stdout
    tail = subprocess.run(
        [sys.executable, "-m", "adapter", "tail", *common, "--from", "1", "--count", "3", "order."],
        capture_output=True, text=True, timeout=30,
    )
    lines = [line for line in tail.stdout.splitlines() if " order " in line]
    assert tail.returncode == 0 and len(lines) == 3, tail.stdout + tail.stderr
    assert "48 未报 unreported" in lines[0] and "50 已报 reported" in lines[1] and "56 已成 filled" in lines[2]


def test_an_idle_journal_still_ages_out(gateway_factory: Any) -> None:
    gateway = gateway_factory(retention_days=0.5 / 86400, heartbeat_interval=0.05)  # keep half a second
    with trading_session(gateway) as (client, log):
        last = wait_filled(log, client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70).order_id)
        assert client.ping().last_seq == last
        wait_for(lambda: client.journal_info().count == 0, timeout=10.0, interval=0.1, what="the journal to age out")
        info = client.journal_info()
        assert info.last_seq == last and info.first_seq == 0  # seq still continues from where it was
