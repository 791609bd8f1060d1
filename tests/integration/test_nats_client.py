"""Client(nats=...) against a real nats-server, two gateways over the sim (different accounts)
and a bridge (subprocess) beside each: the same calls give the same results as over ZeroMQ."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from adapter.client import Client, GatewayError, GatewayTimeout

from ..conftest import ACCOUNT, wait_for
from ..support.nats import BridgeProcess, NatsServer

OTHER = "1000000366"
WAIT = 30.0  # seconds; generous on a loaded machine


@pytest.fixture
def nats_setup(gateway_factory: Any, tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    server = NatsServer(tmp_path).start()
    bridges: list[BridgeProcess] = []
    try:
        gw_a = gateway_factory(accounts=[ACCOUNT])
        gw_b = gateway_factory(accounts=[OTHER])
        for name, gateway in (("gw-a", gw_a), ("gw-b", gw_b)):
            bridges.append(BridgeProcess(tmp_path, server.url, gateway.router_endpoint, gateway.pub_endpoint,
                                         name).start())
        with Client(nats=server.url, timeout=10.0) as probe:
            wait_for(lambda: {"gw-a", "gw-b"} <= set(probe.gateways), timeout=WAIT, interval=0.1,
                     what="both bridges' health on NATS")
        yield server.url, gw_a, gw_b
    finally:
        for bridge in bridges:
            bridge.stop()
        server.stop()


def test_the_same_calls_through_nats_give_the_same_results_as_through_zeromq(nats_setup: Any) -> None:
    url, gw_a, gw_b = nats_setup
    with Client(nats=url, timeout=10.0) as remote, \
            Client(gw_a.router_endpoint, gw_a.pub_endpoint, timeout=10.0) as local:
        filled = remote.order_stock(ACCOUNT, "600000.SH", "buy", 200, "limit", 10.70, "s", "n1",
                                    client_order_id="nats-fill-1")
        assert filled.order_id > 0 and filled.client_order_id == "nats-fill-1"
        assert remote.query_stock_order(ACCOUNT, filled.order_id) == local.query_stock_order(ACCOUNT, filled.order_id)
        resting = remote.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.50)
        cancel = remote.cancel_order_stock(ACCOUNT, resting.order_id)
        assert cancel.cancel_result == 0
        for query in ("query_stock_asset", "query_stock_positions", "query_stock_trades"):
            assert getattr(remote, query)(ACCOUNT) == getattr(local, query)(ACCOUNT), query
        pending = remote.order_stock_async(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.70)
        assert isinstance(pending.seq, int)
        # The other account is another gateway's: routed by account id.
        other = remote.order_stock(OTHER, "600000.SH", "buy", 100, "limit", 10.70)
        assert other.order_id > 0
        with Client(gw_b.router_endpoint, gw_b.pub_endpoint, timeout=10.0) as local_b:
            assert [o.order_id for o in local_b.query_stock_orders(OTHER)] == [other.order_id]
        # The gateway's own errors come back as over ZeroMQ.
        with pytest.raises(GatewayError) as over_nats:
            remote.order_stock(ACCOUNT, "600000.SH", "sideways", 100, "limit", 10.70)
        with pytest.raises(GatewayError) as over_zmq:
            local.order_stock(ACCOUNT, "600000.SH", "sideways", 100, "limit", 10.70)
        assert (over_nats.value.code, over_nats.value.message) == (over_zmq.value.code, over_zmq.value.message)
        # An op without an account needs the gateway named when two are on NATS.
        with pytest.raises(GatewayError, match="gateway=") as caught:
            remote.ping()
        assert caught.value.code == "gateway_unknown"
    with Client(nats=url, gateway="gw-a", timeout=10.0) as named:
        assert named.ping().accounts == local_accounts(gw_a)


def local_accounts(gateway: Any) -> Any:
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
        return client.ping().accounts


def test_an_order_retried_after_a_time_out_is_placed_once(nats_setup: Any) -> None:
    url, gw_a, _ = nats_setup
    with Client(nats=url, timeout=10.0) as remote:
        try:
            remote.order_stock(ACCOUNT, "600000.SH", "buy", 300, "limit", 10.70, client_order_id="retry-1",
                               timeout=0.001)
        except GatewayTimeout:
            pass  # the outcome is unknown: retry with the same id
        first = remote.order_stock(ACCOUNT, "600000.SH", "buy", 300, "limit", 10.70, client_order_id="retry-1")
        again = remote.order_stock(ACCOUNT, "600000.SH", "buy", 300, "limit", 10.70, client_order_id="retry-1")
        assert first.order_id == again.order_id
        outcomes = [o for o in remote.order_outcomes(ACCOUNT) if o.client_order_id == "retry-1"]
        assert len(outcomes) == 1
        orders = [o for o in remote.query_stock_orders(ACCOUNT) if o.order_id == first.order_id]
        assert len(orders) == 1 and len(remote.query_stock_orders(ACCOUNT)) == 1


def test_events_through_jetstream_once_in_order_and_resume_from_a_seq(nats_setup: Any) -> None:
    url, _, _ = nats_setup
    with Client(nats=url, timeout=10.0) as remote:
        stream = remote.events("order.", "trade.", accounts=[ACCOUNT])
        assert stream.wait_subscribed(WAIT)
        placed = remote.order_stock(ACCOUNT, "600000.SH", "buy", 200, "limit", 10.70)
        seen = []
        deadline_events = 50  # bounded: the order's own events are a handful
        for _ in range(deadline_events):
            event = stream.receive(WAIT)
            assert event is not None, "no event within the deadline"
            seen.append(event)
            if event.type == "order" and event.data.order_id == placed.order_id and event.data.order_status == 56:
                break
        stream.close()
        seqs = [e.seq for e in seen]
        assert seqs == sorted(set(seqs)) and all(e.account_id == ACCOUNT for e in seen)
        assert any(e.type == "trade" for e in seen)
        # A new stream from the first of those seqs gets the same events again, once each.
        again = remote.events("order.", "trade.", accounts=[ACCOUNT], from_seq=seqs[0])
        replayed = [again.receive(WAIT) for _ in seqs]
        again.close()
        assert [(e.seq, e.topic, e.data) for e in replayed if e] == [(e.seq, e.topic, e.data) for e in seen]


def test_a_command_for_an_account_nobody_serves_fails_fast(nats_setup: Any) -> None:
    url, _, _ = nats_setup
    with Client(nats=url, timeout=20.0) as remote:
        with pytest.raises(GatewayError) as caught:
            remote.query_stock_asset("9999999999")
    assert caught.value.code == "no_responders" and "9999999999" in caught.value.message


def test_a_cli_command_with_nats(nats_setup: Any) -> None:
    url, _, _ = nats_setup
    done = subprocess.run([sys.executable, "-m", "adapter", "asset", OTHER, "--nats", url], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cash" in done.stdout.lower() or "现金" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "adapter", "asset", "9999999999", "--nats", url],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no_responders" in missing.stderr


def test_a_reader_that_falls_behind_leaves_the_events_in_jetstream_not_in_memory(
    nats_setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer fetches at most MAX_BACKLOG events ahead of its reader; the rest wait in the
    stream, and the reader still gets every event, once and in order, when it reads."""
    from adapter.nats import client as nats_client

    monkeypatch.setattr(nats_client, "MAX_BACKLOG", 8)
    url, gw_a, _ = nats_setup
    with Client(nats=url, timeout=10.0) as remote, \
            Client(gw_a.router_endpoint, gw_a.pub_endpoint, timeout=10.0) as local:
        stream = remote.events(accounts=[ACCOUNT], from_seq=1)
        assert stream.wait_subscribed(WAIT)
        for n in range(6):  # each fills: some seven events apiece, well past the backlog
            local.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.70, client_order_id=f"slow-{n}")
        last = local.ping().last_seq
        wait_for(lambda: remote._link.held > 0, timeout=WAIT, interval=0.05, what="the consumer to wait for its reader")
        assert stream._queue.qsize() <= 8
        seqs = []
        for _ in range(last):  # bounded: one receive per journaled event at most
            event = stream.receive(WAIT)
            assert event is not None, f"no event after seq {seqs[-1] if seqs else 0}"
            if event.seq is not None:
                seqs.append(event.seq)
            if seqs and seqs[-1] >= last:
                break
        stream.close()
        assert seqs == list(range(1, last + 1))
