"""Driving the simulator through the gateway (the ``sim`` op, PROTOCOL §17): the CLI against
``qmt-adapter serve``, events a strategy receives, the admin right under CURVE, the sim in its own
process."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from adapter.client import Client, GatewayError
from adapter.config import SimConfig

from ..conftest import ACCOUNT, trading_session, wait_for
from .test_cli import Server, cli


def test_the_cli_sets_a_position_then_a_sell_works(tmp_path: Path) -> None:
    server = Server(tmp_path)
    try:
        refused = cli(server, "sell", ACCOUNT, "600000.SH", "300", "10.60")
        assert refused.returncode != 0 and "120149" in refused.stderr  # nothing held yet: the counter refuses

        held = cli(server, "sim", "position", ACCOUNT, "600000.SH", "1000")
        assert held.returncode == 0, held.stderr
        assert f"account {ACCOUNT} holds 1000 600000.SH (1000 sellable" in held.stdout

        sold = cli(server, "sell", ACCOUNT, "600000.SH", "300", "10.60")
        assert sold.returncode == 0, sold.stderr
        positions = cli(server, "positions", ACCOUNT)
        assert [line.split()[2:4] for line in positions.stdout.splitlines() if "600000.SH" in line] == [["700", "700"]]

        status = cli(server, "sim", "status")
        assert status.returncode == 0, status.stderr
        assert "trading day" in status.stdout and "market_hours always" in status.stdout
        assert ACCOUNT in status.stdout and "600000.SH" in status.stdout

        outside = cli(server, "sim", "price", "600000.SH", "12.00")
        assert outside.returncode == 1
        assert "invalid_argument" in outside.stderr and "above the up limit (涨停) 11.66" in outside.stderr

        usage = cli(server, "sim", "price", "600000.SH")
        assert usage.returncode == 2 and "usage: qmt-adapter sim price CODE PRICE" in usage.stderr

        reset = cli(server, "sim", "reset")
        assert reset.returncode == 0, reset.stderr
        assert "books reset to the configured start" in reset.stdout
        assert "600000.SH" not in cli(server, "positions", ACCOUNT).stdout
    finally:
        server.stop()


def test_a_price_fills_a_resting_order_and_the_fill_event_arrives(gateway: Any) -> None:
    with trading_session(gateway) as (client, log):
        order = client.order_stock(ACCOUNT, "600000.SH", "buy", 200, "limit", 10.50, client_order_id="rest-1")
        log.wait("order", order_id=order.order_id, order_status=50)
        moved = client.sim("price", "600000.SH", 10.50)
        assert (moved.last, moved.trades) == (10.5, 1)
        [trade] = log.wait("trade", order_id=order.order_id)
        assert (trade.data.traded_price, trade.data.traded_volume, trade.data.client_order_id) == (10.5, 200, "rest-1")
        log.wait("order", order_id=order.order_id, order_status=56)
        assert client.get_full_tick(["600000.SH"])["600000.SH"]["lastPrice"] == 10.5

        moved = client.sim("move", "600000.SH", percent=-2)
        assert moved.last == 10.29  # 10.50 x 0.98, on the tick
        assert client.get_full_tick(["600000.SH"])["600000.SH"]["lastPrice"] == 10.29


def test_next_day_makes_todays_buy_sellable(gateway: Any) -> None:
    with trading_session(gateway) as (client, log):
        bought = client.order_stock(ACCOUNT, "600000.SH", "buy", 200, "limit", 10.60)
        log.wait("order", order_id=bought.order_id, order_status=56)
        assert client.query_stock_position(ACCOUNT, "600000.SH").can_use_volume == 0  # T+1
        rolled = client.sim("next_day")
        assert rolled.expired_orders == 0 and rolled.accounts[0]["account_id"] == ACCOUNT
        log.wait("position", stock_code="600000.SH", can_use_volume=200)  # pushed, as a counter does
        sold = client.order_stock(ACCOUNT, "600000.SH", "sell", 200, "limit", 10.60)
        log.wait("order", order_id=sold.order_id, order_status=56)


def test_deposit_is_pushed_as_an_asset_event(gateway: Any) -> None:
    with trading_session(gateway) as (client, log):
        before = client.query_stock_asset(ACCOUNT).cash
        client.sim("deposit", account_id=ACCOUNT, amount=12345.67)
        log.wait("asset", cash=pytest.approx(before + 12345.67))
        with pytest.raises(GatewayError) as unknown:
            client.sim("deposit", account_id="42", amount=1)
        assert unknown.value.code == "invalid_argument" and "'42'" in unknown.value.message


def test_under_curve_only_an_admin_key_drives_the_sim(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    from adapter.keys import ensure_server_key, new_client_key, parse_accounts, parse_permissions

    keys = tmp_path / "keys"
    new_client_key(keys, "trader", parse_accounts(ACCOUNT), parse_permissions("read,trade"))
    new_client_key(keys, "ops", parse_accounts("*"), parse_permissions("read,admin"))
    ensure_server_key(keys)
    gateway = gateway_factory(curve=True, keys_dir=str(keys))

    def connect(name: str) -> Client:
        return Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0,
                      client_key=keys / "private" / f"{name}.key_secret", server_key=keys / "server.key")

    with connect("trader") as trader, connect("ops") as ops:
        with pytest.raises(GatewayError) as denied:
            trader.sim("price", "600000.SH", 10.7)
        assert denied.value.code == "permission_denied" and "'admin'" in denied.value.message
        assert ops.sim("price", "600000.SH", 10.7).last == 10.7
        assert trader.get_full_tick(["600000.SH"])["600000.SH"]["lastPrice"] == 10.7


def test_the_sim_in_its_own_process_is_driven_the_same_way(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(SimConfig(positions={ACCOUNT: {"600000.SH": 500}}), sim_process=True)
    with trading_session(gateway, timeout=10.0) as (client, log):
        order = client.order_stock(ACCOUNT, "600000.SH", "sell", 500, "limit", 10.80)
        log.wait("order", order_id=order.order_id, order_status=50)
        assert client.sim("price", "600000.SH", 10.80).trades == 1
        log.wait("trade", 10.0, order_id=order.order_id)
        status = client.sim("status")
        assert [q["last"] for q in status.codes if q["stock_code"] == "600000.SH"] == [10.8]
        assert wait_for(lambda: client.query_stock_asset(ACCOUNT).cash > status.accounts[0]["cash"] - 1, 10.0)
