"""Fail closed: a store that cannot be written stops order entry at once and says so; nothing is
published unjournaled and no seq is handed out twice; every accepted order reaches an announced
final state; errors carry the request id. Real gateways over the sim; the faults are real
(an unwritable file) or injected into the store object at the point where the disk would fail."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from adapter.client import Client, GatewayError
from adapter.config import SimConfig
from adapter.server.killswitch import FILE_NAME

from ..conftest import ACCOUNT, raw_dealer, trading_session, wait_for
from ..support.market import market


def buy(client: Client, price: float = 10.00, **extra: Any) -> Any:
    return client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", price, **extra)


def test_a_halt_that_cannot_be_saved_is_in_force_and_raises_the_alarm(gateway_factory: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    gateway = gateway_factory(data_dir=str(data))
    with trading_session(gateway) as (client, log):
        (data / FILE_NAME).with_suffix(".tmp").mkdir()  # the atomic write's temporary file cannot be made
        result = client.halt(reason="fat finger")
        assert (result.state, result.persisted) == ("halted", False)
        info = client.ping()
        assert info.trading_state == "halted" and not info.storage.ok and "trading-state" in info.storage.failed
        with pytest.raises(GatewayError) as denied:
            buy(client)
        assert denied.value.code == "risk_denied" and denied.value.details["rule"] == "trading.halted"
        alarm = log.wait("gateway.storage")[0]
        assert alarm.seq is None and alarm.data.ok is False and alarm.data.store == "trading-state"
        assert log.wait("gateway.trading")[0].data.state == "halted"


def test_a_failing_journal_halts_orders_publishes_nothing_unjournaled_and_reuses_no_seq(gateway_factory: Any) -> None:
    gateway = gateway_factory()
    journal = gateway.journal
    with trading_session(gateway) as (client, log):
        resting = buy(client).order_id
        log.wait("asset")
        before = client.ping().last_seq
        real_append = journal.append

        def disk_full(rows: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        journal.append = disk_full
        try:
            client.cancel_order_stock(ACCOUNT, resting)  # cancels still go out: they reduce risk
            alarm = log.wait("gateway.storage")[0]
            assert alarm.data.ok is False and alarm.data.store == "journal"
            info = wait_for(lambda: (lambda i: i if i.storage.unjournaled else None)(client.ping()), 5.0,
                            what="events waiting for the journal")
            assert info.trading_state == "halted" and "journal" in info.storage.failed
            assert info.last_seq == before  # what waits for the journal is not announced as published
            with pytest.raises(GatewayError) as denied:
                buy(client, price=10.10)
            assert denied.value.details["rule"] == "trading.halted"
            assert [e.seq for e in log.events if e.seq is not None and e.seq > before] == []  # none unjournaled
        finally:
            journal.append = real_append
        log.wait("order", order_id=resting, order_status=54)  # published once the journal takes them
        recovered = log.wait("gateway.storage", count=2)[1]
        assert recovered.data.ok is True
        seqs = [e.seq for e in log.events if e.seq is not None and e.seq > before]
        assert seqs == list(range(before + 1, before + 1 + len(seqs)))  # every seq once, no gap, no reuse
        page = client.replay(before + 1)
        assert [e[0] for e in page.events] and page.last_seq >= seqs[-1]
        assert client.ping().trading_state == "halted"  # until an operator resumes
        client.resume()
        assert buy(client, price=10.20).order_id > 0


def test_an_order_the_ledger_cannot_record_is_refused_not_sent(gateway_factory: Any) -> None:
    gateway = gateway_factory()
    ledger = gateway.ledger
    with trading_session(gateway) as (client, log):
        real_commit = ledger.commit
        ledger.commit = lambda: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error"))
        try:
            with pytest.raises(GatewayError) as refused:
                buy(client, client_order_id="unrecorded-1")
        finally:
            ledger.commit = real_commit
        assert refused.value.code == "storage_failed" and "not sent" in refused.value.message
        assert client.query_stock_orders(ACCOUNT) == []  # the counter never saw it
        alarm = log.wait("gateway.storage")[0]
        assert (alarm.data.ok, alarm.data.store) == (False, "ledger") and "disk I/O error" in alarm.data.error
        info = client.ping()  # the ledger writes again, and says so; order entry stays halted
        assert info.trading_state == "halted" and info.storage.ok
        assert log.wait("gateway.storage", count=2)[1].data.ok is True
        assert "storage failed: ledger" in client.risk().trading.reason


def test_an_order_whose_record_cannot_be_written_is_refused_not_sent(gateway_factory: Any) -> None:
    gateway = gateway_factory()
    ledger = gateway.ledger
    with trading_session(gateway) as (client, log):
        real_create = ledger.create
        ledger.create = lambda *args: (_ for _ in ()).throw(sqlite3.OperationalError("database or disk is full"))
        try:
            with pytest.raises(GatewayError) as refused:
                buy(client, client_order_id="unwritten-1")
            assert client.replay(1).events is not None  # other commands are served meanwhile
        finally:
            ledger.create = real_create
        assert refused.value.code == "storage_failed" and refused.value.request_id is not None
        assert client.query_stock_orders(ACCOUNT) == []
        assert log.wait("gateway.storage")[0].data.store == "ledger"
        assert client.ping().trading_state == "halted"


def test_errors_carry_the_request_id_and_huge_prices_are_invalid_arguments(gateway_factory: Any) -> None:
    gateway = gateway_factory()
    with trading_session(gateway) as (client, _log):
        with pytest.raises(GatewayError) as huge:
            buy(client, price=1e308)
        assert huge.value.code == "invalid_argument" and "price" in huge.value.message

        def broken(*_args: Any) -> None:
            raise RuntimeError("a bug")

        gateway.desk._check_risk = broken
        with pytest.raises(GatewayError) as internal:
            buy(client)
        assert internal.value.code == "internal_error" and internal.value.request_id is not None
        assert client.ping().connected  # still serving


def test_risk_denials_are_rate_limited_in_the_journal_but_every_one_is_answered(gateway_factory: Any) -> None:
    gateway = gateway_factory(risk={"max_order_volume": 100, "orders_per_second": 0, "orders_per_day": 0})
    with trading_session(gateway) as (client, log):
        before = client.ping().last_seq
        codes = []
        for _ in range(60):
            try:
                client.order_stock(ACCOUNT, "600000.SH", "buy", 200, "limit", 10.0)
            except GatewayError as exc:
                codes.append(exc.details["rule"])
        assert codes == ["order.max_volume"] * 60
        info = client.ping()
        journaled = info.last_seq - before
        assert 0 < journaled < 60 and info.risk_events_dropped == 60 - journaled
        assert len(log.wait("risk_denied", count=journaled)) == journaled


def test_an_async_order_found_never_placed_gets_its_final_events(gateway_factory: Any) -> None:
    gateway = gateway_factory(sim=SimConfig(order_latency=1.0))
    counter = market(gateway)
    with trading_session(gateway) as (client, log):
        sent = client.order_stock_async(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.0, client_order_id="lost-1")
        assert sent.seq is not None
        counter.refuse_connections_for(1.5)
        counter.drop_connections("exchange link down")  # the order was still on its way
        response = log.wait("order_response", timeout=20.0, client_order_id="lost-1")[0]
        error = log.wait("order_error", timeout=20.0, client_order_id="lost-1")[0]
        assert response.data.order_id == -1 and error.data.order_id == -1 and error.data.error_msg
        outcome = next(o for o in client.order_outcomes(ACCOUNT) if o.client_order_id == "lost-1")
        assert outcome.state in ("not_placed", "rejected")
        assert client.query_stock_orders(ACCOUNT) == []


def test_internal_errors_before_the_request_is_read_still_answer(gateway: Any) -> None:
    with raw_dealer(gateway.router_endpoint) as dealer:
        dealer.send_multipart([b"not msgpack \xff"])
        from adapter.protocol import unpack

        reply = unpack(dealer.recv())
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_message"
