"""Risk checks and the kill switch through a live gateway over the sim."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import pytest

from adapter.client import AsyncClient, Client, GatewayError
from adapter.config import SimConfig
from adapter.server import Gateway

from ..conftest import ACCOUNT, EventLog, make_config, prove_live, trading_session, wait_for

OTHER = "1000000366"
HELD = SimConfig(positions={ACCOUNT: {"600000.SH": 1000}})


def buy(client: Client, volume: int = 100, price: float = 10.60, **kwargs: Any) -> Any:
    return client.order_stock(ACCOUNT, "600000.SH", "buy", volume, "limit", price, "risk", "", **kwargs)


def sell(client: Client, volume: int = 100, price: float = 10.60, **kwargs: Any) -> Any:
    return client.order_stock(ACCOUNT, "600000.SH", "sell", volume, "limit", price, "risk", "", **kwargs)


def denial_of(call: Callable[[], Any]) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        call()
    assert info.value.code == "risk_denied", info.value
    return info.value


def test_a_denial_is_answered_published_counted_and_leaves_no_trace(gateway_factory: Any) -> None:
    gateway = gateway_factory(risk={"max_order_volume": 1000})
    with trading_session(gateway) as (client, log):
        error = denial_of(lambda: buy(client, volume=1100, client_order_id="too-big"))
        assert error.details == {"rule": "order.max_volume", "limit": 1000, "value": 1100}
        assert error.message.startswith("order.max_volume:")
        event = log.wait("risk_denied")[0]
        assert event.topic == f"risk_denied.{ACCOUNT}." and event.account_id == ACCOUNT
        assert (event.data.rule, event.data.client_order_id, event.data.order_volume) == ("order.max_volume", "too-big", 1100)
        assert client.query_stock_orders(ACCOUNT) == [] and client.order_outcomes(ACCOUNT) == []
        assert buy(client, volume=1000, client_order_id="too-big").order_id > 0  # the id was never used
        report = client.risk()
        assert report.denials.to_dict() == {"order.max_volume": 1}
        assert report.usage[ACCOUNT].today == 1 and report.trading.state == "normal"
        assert report.limits.accounts[ACCOUNT].max_order_volume == 1000


def test_the_default_limits_hold_at_the_gateway(gateway_factory: Any) -> None:
    gateway = gateway_factory(risk={})  # the shipped defaults
    with trading_session(gateway) as (client, _log):
        assert buy(client, price=10.60).order_id > 0
        assert buy(client, price=10.60).order_id > 0  # the duplicate guard is opt-in
        assert denial_of(lambda: buy(client, price=11.67)).details["rule"] == "instrument.price_limit"
        assert denial_of(lambda: buy(client, volume=150)).details["rule"] == "instrument.lot"
        # A burst of 80 distinct orders, all sent before the first reply is read (one by one, a
        # busy machine could be slow enough for the bucket to refill between them).
        outcomes = asyncio.run(burst(gateway, [200 + 100 * i for i in range(80)]))
        denials = [o for o in outcomes if isinstance(o, GatewayError)]
        assert all(d.code == "risk_denied" and d.details["rule"] == "rate.per_second" for d in denials), denials
        denied = len(denials)
        assert 0 < denied < 80  # the bucket let a second's worth through, then denied
        assert client.risk().denials["rate.per_second"] == denied


async def burst(gateway: Any, volumes: list[int]) -> list[Any]:
    async with AsyncClient(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
        orders = [client.order_stock(ACCOUNT, "600000.SH", "buy", volume, "limit", 9.60, "risk", "") for volume in volumes]
        return await asyncio.gather(*orders, return_exceptions=True)


def test_halt_keeps_open_orders_unless_asked_and_lets_cancels_through(gateway_factory: Any) -> None:
    gateway = gateway_factory()
    with trading_session(gateway) as (client, log):
        resting = [buy(client, volume=100 * (i + 1), price=10.00).order_id for i in range(2)]
        result = client.halt(reason="desk says stop")
        assert (result.state, result.previous, result.cancel_open) == ("halted", "normal", False)
        assert log.wait("gateway.trading")[0].data.state == "halted"
        assert client.ping().trading_state == "halted"
        assert denial_of(lambda: buy(client, price=9.90)).details["rule"] == "trading.halted"
        open_ids = {o.order_id for o in client.query_stock_orders(ACCOUNT, True)}
        assert open_ids == set(resting)  # halting alone cancels nothing
        assert client.cancel_order_stock(ACCOUNT, resting[0]).cancel_result == 0  # cancels still pass
        wait_for(lambda: {o.order_id for o in client.query_stock_orders(ACCOUNT, True)} == {resting[1]})
        client.resume()
        assert buy(client, price=9.90).order_id > 0


def test_halt_with_cancel_open_cancels_every_open_order_at_the_counter(gateway_factory: Any) -> None:
    gateway = gateway_factory(accounts=(ACCOUNT, OTHER))
    with trading_session(gateway) as (client, log):
        for account in (ACCOUNT, OTHER):
            for volume in (100, 200):
                client.order_stock(account, "600000.SH", "buy", volume, "limit", 10.00, "rest", "")
        filled = buy(client, volume=300, price=10.60).order_id
        assert len(client.query_stock_orders(ACCOUNT, True)) == 2 and len(client.query_stock_orders(OTHER, True)) == 2
        assert client.halt(cancel_open=True).cancel_open
        for account in (ACCOUNT, OTHER):
            wait_for(lambda a=account: client.query_stock_orders(a, True) == [], what=f"{account}'s orders cancelled")
            statuses = sorted(o.order_status for o in client.query_stock_orders(account) if o.order_id != filled)
            assert statuses == [54, 54]  # cancelled at the sim, not just forgotten
        log.wait("order", count=4, order_status=54)
        assert {o.order_status for o in client.query_stock_orders(ACCOUNT) if o.order_id == filled} == {56}


def test_reduce_only_lets_through_only_sells_within_the_position(gateway_factory: Any) -> None:
    gateway = gateway_factory(sim=HELD)
    with trading_session(gateway) as (client, log):
        client.reduce_only(reason="wind down")
        assert client.ping().trading_state == "reduce_only"
        assert denial_of(lambda: buy(client)).details["rule"] == "trading.reduce_only"
        assert sell(client, volume=600, price=10.80).order_id > 0  # rests above the market
        # 1000 held, 600 frozen by the resting sell: 400 sellable, as the counter reports it.
        log.wait("position", stock_code="600000.SH", can_use_volume=400)  # the gateway's view has it too
        error = denial_of(lambda: sell(client, volume=500, price=10.80))
        assert error.details == {"rule": "trading.reduce_only", "limit": 400, "value": 500}
        assert sell(client, volume=400, price=10.60).order_id > 0
        client.resume()
        assert buy(client).order_id > 0


def test_the_kill_switch_survives_a_restart(gateway_factory: Any, tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    first = gateway_factory(data_dir=data_dir)
    with Client(first.router_endpoint, first.pub_endpoint, timeout=5.0) as client:
        client.halt(reason="overnight")
    first.stop()
    second = gateway_factory(data_dir=data_dir)
    with trading_session(second) as (client, _log):
        info = client.ping()
        assert info.trading_state == "halted"
        assert client.risk().trading.reason == "overnight"
        assert denial_of(lambda: buy(client)).details["rule"] == "trading.halted"
        client.resume(reason="morning")
    second.stop()
    third = gateway_factory(data_dir=data_dir)
    with trading_session(third) as (client, _log):
        assert client.ping().trading_state == "normal" and buy(client).order_id > 0


def test_limits_reload_without_a_restart(tmp_path: Path) -> None:
    config_file = tmp_path / "gateway.toml"
    config_file.write_text("[risk]\nmax_order_volume = 1000\nduplicate_window = 0\n", encoding="utf-8")
    from adapter.config import load_config

    config = load_config(config_file, router="tcp://127.0.0.1:*", pub="tcp://127.0.0.1:*", data_dir=str(tmp_path / "d"))
    gateway = Gateway(config, str(config_file))
    gateway.start()
    try:
        with trading_session(gateway) as (client, _log):
            assert denial_of(lambda: buy(client, volume=2000)).details["limit"] == 1000
            config_file.write_text("[risk]\nmax_order_volume = 5000\nduplicate_window = 0\n", encoding="utf-8")
            assert client.reload().risk_limits == "reloaded"
            assert buy(client, volume=2000).order_id > 0
            config_file.write_text("[risk]\nmax_order_volume = -5\n", encoding="utf-8")
            with pytest.raises(GatewayError) as failed:
                client.reload()
            assert failed.value.code == "invalid_argument" and "max_order_volume" in failed.value.message
            assert buy(client, volume=5000, price=10.50).order_id > 0  # the last good limits stay
            assert denial_of(lambda: buy(client, volume=5100)).details["limit"] == 5000
            gateway.reload()  # what SIGHUP does: the bad file is logged, the limits stay
            assert denial_of(lambda: buy(client, volume=5100)).details["limit"] == 5000
    finally:
        gateway.stop()


def test_risk_events_reach_only_their_account(gateway_factory: Any) -> None:
    """A denial is an account event: a subscriber filtering by account sees only its own."""
    gateway = gateway_factory(accounts=(ACCOUNT, OTHER), risk={"max_order_volume": 100})
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as client:
        log = EventLog()
        with client.subscribe(log, f"risk_denied.{OTHER}.", "gateway.pong"):
            prove_live(client, log)
            denial_of(lambda: buy(client, volume=200))
            denial_of(lambda: client.order_stock(OTHER, "600000.SH", "buy", 300, "limit", 10.6, "risk", ""))
            event = log.wait("risk_denied")[0]
            assert event.account_id == OTHER and event.data.order_volume == 300
            assert len(log.of("risk_denied")) == 1


def test_make_config_default_is_what_other_tests_expect() -> None:
    assert make_config().risk_config().base.orders_per_second == 0  # the suite's other tests: checks off


def test_a_keys_own_limits_apply_on_top_of_the_accounts(gateway_factory: Any, tmp_path: Path) -> None:
    from adapter.keys import ensure_server_key, new_client_key

    keys = tmp_path / "keys"
    ensure_server_key(keys)
    for name in ("small", "big"):
        new_client_key(keys, name, frozenset({ACCOUNT}), frozenset({"read", "trade"}))
    gateway = gateway_factory(
        curve=True, keys_dir=str(keys), accounts=(ACCOUNT, OTHER),
        risk={"max_order_volume": 5000, "duplicate_window": 0, "keys": {"small": {"max_order_volume": 300}}},
    )

    def connect(name: str) -> Client:
        return Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0,
                      client_key=keys / "private" / f"{name}.key_secret", server_key=keys / "server.key")

    with connect("small") as small, connect("big") as big:
        assert denial_of(lambda: buy(small, volume=400)).details == {"rule": "order.max_volume", "limit": 300, "value": 400}
        assert buy(small, volume=300).order_id > 0
        assert buy(big, volume=4000).order_id > 0  # the account's limit only
        report = small.risk()
        assert list(report.usage.to_dict()) == [ACCOUNT] and "default" not in report.limits.to_dict()
        with pytest.raises(GatewayError) as denied:
            small.halt()
        assert denied.value.code == "permission_denied"
