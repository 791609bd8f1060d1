"""The gateway over a counter in its own process (``sim_process = true``), as QMT runs beside it:
orders and events through the process boundary, the process killed (a disconnect) and started
again (a reconnection, reconciled), and an order placed exactly once across it."""

from __future__ import annotations

import os
from typing import Any

import pytest

from adapter.client import GatewayError

from ..conftest import ACCOUNT, trading_session, wait_filled, wait_for
from ..support.market import counter_process, market

BUY, LIMIT = 23, 11


@pytest.mark.timeout(120)  # ~10 s idle: two counter process starts and a reconnection back-off
def test_a_killed_counter_process_is_a_disconnect_and_its_restart_a_reconciled_reconnection(
    gateway_factory: Any,
) -> None:
    gateway = gateway_factory(sim_process=True, broker_timeout=0.5)
    process = counter_process(gateway)
    assert process.alive() and process.pid != os.getpid()
    with trading_session(gateway) as (client, log):
        resting = client.order_stock(ACCOUNT, "600000.SH", BUY, 100, LIMIT, 10.40, client_order_id="rest-1")
        log.wait("order", order_id=resting.order_id, order_status=50)
        filled = client.order_stock(ACCOUNT, "600000.SH", BUY, 100, LIMIT, 10.70, client_order_id="fill-1")
        wait_filled(log, filled.order_id)
        assert log.wait("trade", order_id=filled.order_id)[0].data.client_order_id == "fill-1"

        # The counter takes this order and writes it, but its answer is held when the process dies.
        market(gateway).set_ack_delay(60.0)
        with pytest.raises(GatewayError) as unknown:
            client.order_stock(ACCOUNT, "600000.SH", BUY, 100, LIMIT, 10.30, client_order_id="once-1")
        assert unknown.value.code == "outcome_unknown"
        process.kill()
        log.wait("gateway.connection", connected=False, timeout=10.0)
        assert client.ping().connected is False
        with pytest.raises(GatewayError) as refused:
            client.order_stock(ACCOUNT, "600000.SH", BUY, 100, LIMIT, 10.30, client_order_id="during-outage")
        assert refused.value.code == "broker_unavailable"

        process.start()  # the books come back from its state file; ack_delay is the configured 0 again
        log.wait("gateway.connection", connected=True, timeout=45.0)
        wait_for(lambda: client.ping().unknown_orders == 0, timeout=15.0, what="the reconciliation to settle once-1")
        once = [e for e in log.of("order") if e.data.client_order_id == "once-1"]
        assert once and all(e.reconciled for e in once)  # learnt from the counter's books, not its lost answer
        again = client.order_stock(ACCOUNT, "600000.SH", BUY, 100, LIMIT, 10.30, client_order_id="once-1")
        assert again.order_id == once[0].data.order_id
        orders = client.query_stock_orders(ACCOUNT)
        assert [o.client_order_id for o in orders] == ["rest-1", "fill-1", "once-1"]  # once each; never during-outage
        assert len(market(gateway).books(ACCOUNT)["orders"]) == 3

        # The new process goes on matching what the old one took.
        market(gateway).set_price("600000.SH", 10.40)
        wait_filled(log, resting.order_id)
        assert [e.reconciled for e in log.of("trade", order_id=resting.order_id)] == [False]


@pytest.mark.parametrize("sim_process", [False, True], ids=["in-process", "own-process"])
def test_the_counters_hooks_are_the_same_in_both_modes(gateway_factory: Any, sim_process: bool) -> None:
    gateway = gateway_factory(sim_process=sim_process)
    counter = market(gateway)
    assert counter.connected_sessions() == 1  # the gateway's
    assert counter.price_limits("600000.SH") == (9.54, 11.66)
    with pytest.raises(ValueError, match="outside the daily limits"):
        counter.set_price("600000.SH", 20.0)
    with trading_session(gateway) as (client, log):
        order = client.order_stock(ACCOUNT, "600000.SH", BUY, 100, LIMIT, 10.40)
        log.wait("order", order_id=order.order_id, order_status=50)
        counter.set_order_latency(0.0)
        counter.set_price("600000.SH", 10.40)
        assert counter.last_price("600000.SH") == 10.40
        wait_filled(log, order.order_id)
        books = counter.books(ACCOUNT)
        assert books["orders"][order.order_id]["order_status"] == 56 and len(books["trades"]) == 1
        counter.push_assets(ACCOUNT, 3)
        log.wait("asset", count=4)  # the fill's, and the three pushed
        counter.next_day()
        assert counter.books(ACCOUNT)["orders"] == {}
        assert counter.drop_connections("link down") == 1
        log.wait("gateway.connection", connected=False)
        log.wait("gateway.connection", connected=True, timeout=15.0)


def test_a_counter_process_stops_on_two_signals_at_once(tmp_path: Any) -> None:
    """Ctrl-C reaches the whole process group while the gateway sends its own stop: the counter
    process gets both, stops once and exits 0."""
    import signal

    from adapter import sim
    from adapter.config import SimConfig

    process = sim.start_counter_process(tmp_path / "qmt", SimConfig(persist=False), [ACCOUNT])
    try:
        assert process.proc is not None
        os.kill(process.proc.pid, signal.SIGTERM)
        os.kill(process.proc.pid, signal.SIGINT)
        assert process.proc.wait(20) == 0
    finally:
        process.kill()
