"""The seed guide's loop and the counter's rules, end to end: Client -> ROUTER -> broker
thread -> genuine xtquant.xttrader -> simulated counter, and events back over PUB."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.client import Client, GatewayError
from adapter.config import SimConfig

from ..conftest import ACCOUNT, EventLog, trading_session, wait_for
from ..support.market import market

BUY, SELL, LIMIT = 23, 24, 11
START_CASH = 1_000_000.0


def order_status(client: Any, order_id: int) -> int:
    return client.query_stock_order(ACCOUNT, order_id).order_status


def test_seed_guide_loop(client: Any, event_log: EventLog) -> None:
    """start -> connect -> subscribe -> the four queries -> limit buy -> cancel -> events."""
    info = client.ping()
    assert info.connected and info.backend == "sim" and ACCOUNT in info.accounts
    asset = client.query_stock_asset(ACCOUNT)
    assert asset.cash == START_CASH and asset.frozen_cash == 0 and asset.total_asset == START_CASH
    assert client.query_stock_positions(ACCOUNT) == []
    assert client.query_stock_orders(ACCOUNT) == []
    assert client.query_stock_trades(ACCOUNT) == []

    # 10.50 is below 600000.SH's last price (10.60): the order rests.
    response = client.order_stock(ACCOUNT, "600000.SH", BUY, 200, LIMIT, 10.50, "strategy_demo", "remark")
    order_id = response.order_id
    assert order_id > 0 and response.account_id == ACCOUNT
    event_log.wait("order", order_id=order_id, order_status=50)
    frozen = client.query_stock_asset(ACCOUNT)
    assert frozen.frozen_cash >= 200 * 10.50 and frozen.cash == pytest.approx(START_CASH - frozen.frozen_cash)
    assert client.query_stock_orders(ACCOUNT, cancelable_only=True)[0].order_id == order_id

    cancel = client.cancel_order_stock(ACCOUNT, order_id)
    assert cancel.cancel_result == 0
    event_log.wait("order", order_id=order_id, order_status=54)
    assert [s for t, s in event_log.types_for_order(order_id)] == [48, 50, 51, 54]
    assert order_status(client, order_id) == 54
    assert client.query_stock_orders(ACCOUNT, cancelable_only=True) == []
    wait_for(lambda: client.query_stock_asset(ACCOUNT).cash == START_CASH, what="cash unfrozen")
    assert client.query_stock_asset(ACCOUNT).frozen_cash == 0


def test_marketable_buy_fills_with_events_in_order_and_queries_agree(client: Any, event_log: EventLog) -> None:
    response = client.order_stock(ACCOUNT, "600000.SH", BUY, 200, LIMIT, 10.70)
    order_id = response.order_id
    fill_order = event_log.wait("order", order_id=order_id, order_status=56)[0]
    position_event = event_log.wait("position", stock_code="600000.SH")[-1]
    asset_event = wait_for(lambda: [a for a in event_log.of("asset") if a.seq > fill_order.seq], what="asset")[-1]
    trade = event_log.wait("trade", order_id=order_id)[0]

    assert [t for t, _ in event_log.types_for_order(order_id)] == ["order", "order", "trade", "order"]
    assert [s for _, s in event_log.types_for_order(order_id)][-1] == 56
    assert trade.seq < fill_order.seq < position_event.seq < asset_event.seq  # trade, order, position, asset

    assert trade.data.traded_volume == 200 and trade.data.traded_price == 10.60  # fills at the last price
    assert trade.data.traded_amount == pytest.approx(2120.0)
    commission = trade.data.commission
    assert commission == pytest.approx(5.0)  # max(0.025% of 2120, 5 CNY minimum)

    order = client.query_stock_order(ACCOUNT, order_id)
    assert (order.order_status, order.traded_volume, order.traded_price) == (56, 200, 10.60)
    position = client.query_stock_position(ACCOUNT, "600000.SH")
    assert position.volume == 200 and position.can_use_volume == 0  # T+1: not sellable today
    assert position.to_dict() == position_event.data.to_dict()
    asset = client.query_stock_asset(ACCOUNT)
    assert asset.cash == pytest.approx(START_CASH - 2120.0 - commission)
    assert asset.frozen_cash == pytest.approx(0.0)
    assert asset.to_dict() == asset_event.data.to_dict()
    trades = client.query_stock_trades(ACCOUNT)
    assert [t.to_dict() for t in trades] == [trade.data.to_dict()]


def test_partial_fills_progress_55_then_56(gateway_factory: Any) -> None:
    gateway = gateway_factory(sim=SimConfig(fill_volume=100))
    with trading_session(gateway) as (client, log):
        order_id = client.order_stock(ACCOUNT, "000001.SZ", BUY, 300, LIMIT, 12.00).order_id
        log.wait("trade", order_id=order_id)
        assert order_status(client, order_id) == 55
        market(gateway).step()
        log.wait("trade", count=2, order_id=order_id)
        market(gateway).step()
        log.wait("order", order_id=order_id, order_status=56)
        statuses = [s for t, s in log.types_for_order(order_id) if t == "order"]
        assert statuses == [48, 50, 55, 55, 56]
        assert sum(t.data.traded_volume for t in log.of("trade", order_id=order_id)) == 300
        assert client.query_stock_position(ACCOUNT, "000001.SZ").volume == 300


def test_partly_filled_order_cancelled_is_part_cancelled(gateway_factory: Any) -> None:
    gateway = gateway_factory(sim=SimConfig(fill_volume=100))
    with trading_session(gateway) as (client, log):
        order_id = client.order_stock(ACCOUNT, "000001.SZ", BUY, 300, LIMIT, 12.00).order_id
        log.wait("order", order_id=order_id, order_status=55)
        assert client.cancel_order_stock(ACCOUNT, order_id).cancel_result == 0
        log.wait("order", order_id=order_id, order_status=53)
        assert [s for t, s in log.types_for_order(order_id) if t == "order"][-2:] == [52, 53]
        order = client.query_stock_order(ACCOUNT, order_id)
        assert (order.order_status, order.traded_volume) == (53, 100)
        wait_for(lambda: client.query_stock_asset(ACCOUNT).frozen_cash == 0, what="frozen cash released")


def test_async_order_and_cancel_report_through_events(client: Any, event_log: EventLog) -> None:
    seq = client.order_stock_async(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.40, "s", "r").seq
    response = event_log.wait("order_response", seq=seq)[0]
    order_id = response.data.order_id
    assert order_id > 0 and response.data.strategy_name == "s" and response.data.order_remark == "r"
    event_log.wait("order", order_id=order_id, order_status=50)
    cancel_seq = client.cancel_order_stock_async(ACCOUNT, order_id).seq
    cancel = event_log.wait("cancel_response", seq=cancel_seq)[0]
    assert cancel.data.cancel_result == 0 and cancel.data.order_id == order_id
    event_log.wait("order", order_id=order_id, order_status=54)
    # A sync op's response is the reply, never an event.
    client.order_stock(ACCOUNT, "600000.SH", BUY, 100, LIMIT, 10.40)
    assert len(event_log.of("order_response")) == 1


def test_cancel_by_sysid(client: Any, event_log: EventLog) -> None:
    order_id = client.order_stock(ACCOUNT, "600000.SH", BUY, 100, LIMIT, 10.40).order_id
    sysid = event_log.wait("order", order_id=order_id, order_status=50)[0].data.order_sysid
    assert sysid
    assert client.cancel_order_stock_sysid(ACCOUNT, "SH", sysid).cancel_result == 0
    event_log.wait("order", order_id=order_id, order_status=54)


def test_cancel_of_a_filled_order_reports_cancel_error(client: Any, event_log: EventLog) -> None:
    order_id = client.order_stock(ACCOUNT, "600000.SH", BUY, 100, LIMIT, 10.70).order_id
    event_log.wait("order", order_id=order_id, order_status=56)
    assert client.cancel_order_stock(ACCOUNT, order_id).cancel_result == 0  # only "sent"
    error = event_log.wait("cancel_error", order_id=order_id)[0]
    assert error.data.error_msg and error.data.error_id != 0
    assert order_status(client, order_id) == 56


def test_cancel_of_an_unknown_order(client: Any, event_log: EventLog) -> None:
    response = client.cancel_order_stock(ACCOUNT, 123)
    assert response.cancel_result != 0
    event_log.wait("cancel_error", order_id=123)


@pytest.mark.parametrize(
    "code, side, volume, price, price_type, error_id",
    [
        ("600000.SH", BUY, 150, 10.60, LIMIT, 130003),  # lot: not a multiple of 100
        ("688981.SH", BUY, 100, 90.00, LIMIT, 130003),  # lot: STAR needs at least 200
        ("600000.SH", BUY, 100, 10.555, LIMIT, 130004),  # tick
        ("600000.SH", BUY, 100, 11.67, LIMIT, 130006),  # limit up is 11.66 (prev close 10.60 + 10%)
        ("600000.SH", SELL, 100, 9.53, LIMIT, 130006),  # limit down is 9.54
        ("600519.SH", BUY, 100_000, 1500.00, LIMIT, 120147),  # cash
        ("600000.SH", SELL, 100, 10.60, LIMIT, 120149),  # shares: nothing held
        ("999999.SH", BUY, 100, 10.00, LIMIT, 120100),  # unknown code
        ("600000.SH", BUY, 100, 0, 47, 130002),  # a Shenzhen-only market price type on Shanghai
    ],
)
def test_counter_refusals_are_junk_orders_with_an_order_error(
    client: Any, event_log: EventLog, code: str, side: int, volume: int, price: float, price_type: int, error_id: int
) -> None:
    response = client.order_stock(ACCOUNT, code, side, volume, price_type, price)
    order_id = response.order_id
    assert order_id > 0  # the counter took it and then refused it, as a real one does
    junk = event_log.wait("order", order_id=order_id, order_status=57)[0]
    error = event_log.wait("order_error", order_id=order_id)[0]
    assert error.data.error_id == -61 and f"[{error_id}]" in error.data.error_msg  # QMT's id, the counter's code
    assert junk.data.status_msg
    assert order_status(client, order_id) == 57
    assert client.query_stock_asset(ACCOUNT).cash == START_CASH  # nothing frozen or spent


def test_t_plus_one_todays_buy_is_not_sellable(gateway_factory: Any) -> None:
    sim = SimConfig(positions={ACCOUNT: {"000001.SZ": 500}})
    gateway = gateway_factory(sim=sim)
    with trading_session(gateway) as (client, log):
        held = client.query_stock_position(ACCOUNT, "000001.SZ")
        assert (held.volume, held.can_use_volume) == (500, 500)
        bought = client.order_stock(ACCOUNT, "000001.SZ", BUY, 200, LIMIT, 12.00).order_id
        log.wait("order", order_id=bought, order_status=56)
        position = client.query_stock_position(ACCOUNT, "000001.SZ")
        assert (position.volume, position.can_use_volume) == (700, 500)
        too_many = client.order_stock(ACCOUNT, "000001.SZ", SELL, 600, LIMIT, 11.00).order_id
        log.wait("order", order_id=too_many, order_status=57)
        log.wait("order_error", order_id=too_many)
        sold = client.order_stock(ACCOUNT, "000001.SZ", SELL, 500, LIMIT, 11.00).order_id
        log.wait("order", order_id=sold, order_status=56)
        position = client.query_stock_position(ACCOUNT, "000001.SZ")
        assert (position.volume, position.can_use_volume) == (200, 0)


def test_resting_sell_freezes_shares_and_fills_when_the_price_rises(gateway_factory: Any) -> None:
    gateway = gateway_factory(sim=SimConfig(positions={ACCOUNT: {"600000.SH": 1000}}))
    with trading_session(gateway) as (client, log):
        order_id = client.order_stock(ACCOUNT, "600000.SH", SELL, 400, LIMIT, 10.80).order_id
        log.wait("order", order_id=order_id, order_status=50)
        position = client.query_stock_position(ACCOUNT, "600000.SH")
        assert (position.can_use_volume, position.frozen_volume) == (600, 400)
        market(gateway).set_price("600000.SH", 10.80)
        log.wait("order", order_id=order_id, order_status=56)
        position = client.query_stock_position(ACCOUNT, "600000.SH")
        assert (position.volume, position.can_use_volume, position.frozen_volume) == (600, 600, 0)
        trade = log.of("trade", order_id=order_id)[0]
        assert trade.data.traded_price == 10.80
        asset = client.query_stock_asset(ACCOUNT)
        assert asset.cash == pytest.approx(START_CASH + 4320.0 - trade.data.commission)


def test_query_of_missing_items_is_nil(client: Any) -> None:
    assert client.query_stock_order(ACCOUNT, 42) is None
    assert client.query_stock_position(ACCOUNT, "600000.SH") is None


def test_account_queries(client: Any) -> None:
    infos = client.query_account_infos()
    assert [i.account_id for i in infos] == [ACCOUNT]
    statuses = client.query_account_status()
    assert [(s.account_id, s.status) for s in statuses] == [(ACCOUNT, 0)]


def test_unknown_account_is_refused_by_the_gateway(client: Any) -> None:
    with pytest.raises(GatewayError) as info:
        client.query_stock_asset("999")
    assert info.value.code == "unknown_account" and "999" in info.value.message


def test_credit_and_ipo_queries_through_the_gateway(gateway_factory: Any) -> None:
    gateway = gateway_factory(sim=SimConfig(positions={ACCOUNT: {"600000.SH": 5000, "000001.SZ": 1000}}))
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as client:
        for query in (client.query_credit_detail, client.query_stk_compacts, client.query_credit_subjects,
                      client.query_credit_slo_code, client.query_credit_assure):
            assert query(ACCOUNT) == []  # a cash account
        # 5,000 x 10.60 = 53,000 CNY of SH stock: 5,000 shares; 1,000 x 11.80 of SZ: 1,000 shares.
        assert client.query_new_purchase_limit(ACCOUNT).to_dict() == {"SH": 5000, "SZ": 1000}
        assert client.query_ipo_data().to_dict() == {}
        with pytest.raises(GatewayError) as info:
            client.query_credit_detail("nobody")
        assert info.value.code == "unknown_account"
