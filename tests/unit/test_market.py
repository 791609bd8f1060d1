"""A-share rules of the simulated counter: boards, ticks, limit bands, lots (pure functions)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapter import market as rules
from adapter.sim.instruments import load_instruments, parse_instruments
from adapter.sim.prices import PriceWalk
from adapter.market import Board

D = Decimal


@pytest.mark.parametrize(
    ("code", "board"),
    [
        ("600000.SH", Board.SH_MAIN),
        ("603999.SH", Board.SH_MAIN),
        ("000001.SZ", Board.SZ_MAIN),
        ("001979.SZ", Board.SZ_MAIN),
        ("002594.SZ", Board.SZ_MAIN),
        ("003816.SZ", Board.SZ_MAIN),
        ("300750.SZ", Board.CHINEXT),
        ("301269.SZ", Board.CHINEXT),
        ("688981.SH", Board.STAR),
        ("689009.SH", Board.STAR),
        ("430047.BJ", Board.BJ),
        ("832566.BJ", Board.BJ),
        ("920819.BJ", Board.BJ),
        ("510300.SH", Board.SH_FUND),
        ("159915.SZ", Board.SZ_FUND),
        ("161005.SZ", Board.SZ_FUND),
    ],
)
def test_classify(code: str, board: Board) -> None:
    assert rules.classify(code) is board


@pytest.mark.parametrize(
    "code", ["600000", "600000.sh", "600000.HK", "300750.SH", "688981.SZ", "200002.SZ", "900901.SH", "60000.SH"]
)
def test_classify_refuses_unsupported_codes(code: str) -> None:
    with pytest.raises(ValueError):
        rules.classify(code)


def test_market_enum_and_ticks() -> None:
    assert [rules.market_enum(c) for c in ("600000.SH", "000001.SZ", "430047.BJ")] == [0, 1, 70]
    assert rules.tick_size("600000.SH") == D("0.01")
    assert rules.tick_size("430047.BJ") == D("0.01")
    assert rules.tick_size("510300.SH") == D("0.001")
    assert rules.tick_size("159915.SZ") == D("0.001")


@pytest.mark.parametrize(
    ("code", "name", "prev_close", "down", "up"),
    [
        ("600000.SH", "浦发银行", "10.60", "9.54", "11.66"),
        ("000001.SZ", "平安银行", "11.80", "10.62", "12.98"),
        ("300750.SZ", "宁德时代", "265.00", "212.00", "318.00"),
        ("688981.SH", "中芯国际", "88.00", "70.40", "105.60"),
        ("430047.BJ", "诺思兰德", "13.50", "9.45", "17.55"),
        ("510300.SH", "沪深300ETF", "3.950", "3.555", "4.345"),
        ("600696.SH", "ST岩石", "4.20", "3.99", "4.41"),
        ("600696.SH", "*ST岩石", "4.20", "3.99", "4.41"),
        # half up at the tick: 10.05 * 1.1 = 11.055 -> 11.06, 10.05 * 0.9 = 9.045 -> 9.05
        ("600000.SH", "浦发银行", "10.05", "9.05", "11.06"),
        # 20% board, half up: 12.33 * 1.2 = 14.796 -> 14.80, * 0.8 = 9.864 -> 9.86
        ("300059.SZ", "东方财富", "12.33", "9.86", "14.80"),
        # ST on ChiNext keeps the board's 20%
        ("300001.SZ", "ST特锐", "10.00", "8.00", "12.00"),
    ],
)
def test_price_limits(code: str, name: str, prev_close: str, down: str, up: str) -> None:
    assert rules.price_limits(code, name, D(prev_close)) == (D(down), D(up))
    assert rules.price_limits(code, name, float(prev_close)) == (D(down), D(up))


def test_within_limits_edges_are_inclusive() -> None:
    assert rules.within_limits(11.66, "600000.SH", "浦发银行", 10.60)
    assert not rules.within_limits(11.67, "600000.SH", "浦发银行", 10.60)
    assert rules.within_limits(9.54, "600000.SH", "浦发银行", 10.60)
    assert not rules.within_limits(9.53, "600000.SH", "浦发银行", 10.60)
    assert rules.within_limits("4.345", "510300.SH", "沪深300ETF", "3.950")
    assert not rules.within_limits("4.346", "510300.SH", "沪深300ETF", "3.950")


def test_is_st() -> None:
    assert rules.is_st("ST岩石") and rules.is_st("*ST新纺")
    assert not rules.is_st("浦发银行")


def test_tick_checks() -> None:
    assert rules.is_on_tick(10.6, "600000.SH")
    assert rules.is_on_tick(0.1 + 0.2, "600000.SH")  # 0.30000000000000004: float noise, not off tick
    assert not rules.is_on_tick(10.555, "600000.SH")
    assert not rules.is_on_tick(0, "600000.SH")
    assert not rules.is_on_tick(-10.6, "600000.SH")
    assert rules.is_on_tick(3.951, "510300.SH")
    assert not rules.is_on_tick(3.9515, "510300.SH")


def test_round_to_tick_is_half_up() -> None:
    assert rules.round_to_tick("10.005", "0.01") == D("10.01")
    assert rules.round_to_tick("10.0049", "0.01") == D("10.00")
    assert rules.round_to_tick("3.9505", "0.001") == D("3.951")


@pytest.mark.parametrize(
    ("code", "volume", "ok"),
    [
        ("600000.SH", 100, True),
        ("600000.SH", 1000, True),
        ("600000.SH", 150, False),
        ("600000.SH", 0, False),
        ("600000.SH", -100, False),
        ("300750.SZ", 100, True),
        ("300750.SZ", 50, False),
        ("430047.BJ", 100, True),
        ("430047.BJ", 101, False),
        ("510300.SH", 100, True),
        ("510300.SH", 110, False),
        ("688981.SH", 200, True),
        ("688981.SH", 201, True),
        ("688981.SH", 199, False),
        ("688981.SH", 100, False),
    ],
)
def test_buy_volume(code: str, volume: int, ok: bool) -> None:
    assert rules.is_valid_buy_volume(code, volume) is ok


@pytest.mark.parametrize(
    ("code", "volume", "sellable", "ok"),
    [
        ("600000.SH", 100, 1000, True),
        ("600000.SH", 1000, 1000, True),
        ("600000.SH", 1100, 1000, False),  # more than sellable
        ("600000.SH", 50, 1050, True),  # clears the odd remainder
        ("600000.SH", 150, 1050, True),  # a lot plus the whole odd remainder
        ("600000.SH", 1050, 1050, True),
        ("600000.SH", 30, 1050, False),  # part of the odd remainder
        ("600000.SH", 70, 1050, False),
        ("600000.SH", 50, 1000, False),  # no odd remainder to clear
        ("600000.SH", 0, 1000, False),
        ("688981.SH", 200, 1000, True),
        ("688981.SH", 201, 1000, True),
        ("688981.SH", 150, 1000, False),
        ("688981.SH", 150, 150, True),  # less than 200 left: all of it at once
        ("688981.SH", 100, 150, False),
    ],
)
def test_sell_volume(code: str, volume: int, sellable: int, ok: bool) -> None:
    assert rules.is_valid_sell_volume(code, volume, sellable) is ok


def test_is_marketable_edges() -> None:
    assert rules.is_marketable(rules.STOCK_BUY, 10.60, 10.60)
    assert rules.is_marketable(rules.STOCK_BUY, 10.70, 10.60)
    assert not rules.is_marketable(rules.STOCK_BUY, 10.59, 10.60)
    assert rules.is_marketable(rules.STOCK_SELL, 10.60, 10.60)
    assert rules.is_marketable(rules.STOCK_SELL, 10.50, 10.60)
    assert not rules.is_marketable(rules.STOCK_SELL, 10.61, 10.60)
    with pytest.raises(ValueError):
        rules.is_marketable(99, 1, 1)


def test_broker_price_types() -> None:
    """Order records carry the counter's price-type code (EBrokerPriceType), one per stock type."""
    assert set(rules.BROKER_PRICE_TYPES) == rules.SUPPORTED_PRICE_TYPES
    assert rules.broker_price_type(rules.FIX_PRICE) == rules.broker_price_type(rules.LATEST_PRICE) == 50
    assert rules.broker_price_type(42) == rules.broker_price_type(47) == 88  # best 5, rest cancelled
    assert [rules.broker_price_type(t) for t in (43, 44, 45, 46, 48)] == [85, 84, 86, 87, 89]
    assert rules.broker_price_type(99) == 99  # unsupported: junked, the value sent is kept
    assert not set(rules.BROKER_PRICE_TYPES.values()) & rules.SUPPORTED_PRICE_TYPES
    assert set(rules.BROKER_PRICE_TYPES.values()) <= set(rules.BROKER_PRICE_TYPE_NAMES)


def test_price_type_exchanges() -> None:
    assert rules.price_type_allowed(rules.FIX_PRICE, "600000.SH")
    assert rules.price_type_allowed(rules.LATEST_PRICE, "000001.SZ")
    assert rules.price_type_allowed(42, "600000.SH") and rules.price_type_allowed(43, "430047.BJ")
    assert not rules.price_type_allowed(42, "000001.SZ")
    assert rules.price_type_allowed(46, "000001.SZ") and rules.price_type_allowed(48, "300750.SZ")
    assert not rules.price_type_allowed(47, "600000.SH") and not rules.price_type_allowed(48, "430047.BJ")
    assert rules.price_type_allowed(44, "600000.SH") and rules.price_type_allowed(45, "000001.SZ")
    assert not rules.price_type_allowed(18, "600000.SH")  # futures market type
    assert not rules.is_supported_price_type(99)


def test_money() -> None:
    assert rules.trade_amount(10.6, 100) == D("1060.00")
    assert rules.trade_amount("3.951", 1) == D("3.95")
    assert rules.commission(D("1060"), 0.00025, 5) == D("5.00")
    assert rules.commission(D("100000"), 0.00025, 5) == D("25.00")
    assert rules.commission(D("20002"), 0.00025, 5) == D("5.00")  # 5.0005 -> 5.00, the minimum
    assert rules.commission(D("30002"), 0.00025, 5) == D("7.50")  # 7.5005 -> 7.50


def test_truncate_remark_keeps_whole_characters() -> None:
    assert rules.truncate_remark("a" * 30) == "a" * 24
    assert rules.truncate_remark("中" * 9) == "中" * 8  # 27 bytes -> 24
    assert rules.truncate_remark("ab" + "中" * 8) == "ab" + "中" * 7  # 26 bytes -> 23, no split char


def test_builtin_instruments() -> None:
    table = load_instruments()
    assert len(table) > 5000  # every listed stock; tests/unit/test_sim_instruments_table.py has the detail
    required = ["600000.SH", "000001.SZ", "600519.SH", "300750.SZ", "688981.SH", "430047.BJ", "510300.SH"]
    assert all(code in table for code in required)
    assert table["600000.SH"].name == "浦发银行"
    assert table["600000.SH"].prev_close == table["600000.SH"].last_price == D("10.60")
    boards = {i.board for i in table.values()}
    assert boards == set(Board)
    assert any(rules.is_st(i.name) for i in table.values())


def test_instrument_csv_validation() -> None:
    table = parse_instruments("code,name,prev_close\n600000.SH,浦发银行,10.6\n")
    assert table["600000.SH"].last_price == D("10.60")
    with pytest.raises(ValueError, match="missing column"):
        parse_instruments("code,name\n600000.SH,x\n")
    with pytest.raises(ValueError, match="unsupported security code"):
        parse_instruments("code,name,prev_close\n900901.SH,x,1.00\n")
    with pytest.raises(ValueError, match="outside"):
        parse_instruments("code,name,prev_close,last_price\n600000.SH,x,10.60,11.67\n")
    with pytest.raises(ValueError, match="duplicate"):
        parse_instruments("code,name,prev_close\n600000.SH,x,10.60\n600000.SH,x,10.60\n")


def test_price_walk_is_seeded_on_tick_and_inside_band() -> None:
    down, up = rules.price_limits("600000.SH", "浦发银行", D("10.60"))
    first, second = PriceWalk(7, 0.01), PriceWalk(7, 0.01)
    a = b = D("10.60")
    path = []
    for _ in range(300):
        a = first.next_price(a, D("0.01"), down, up)
        b = second.next_price(b, D("0.01"), down, up)
        assert a == b and down <= a <= up and rules.is_on_tick(a, "600000.SH")
        path.append(a)
    assert len(set(path)) > 5
    cheap = PriceWalk(1, 0.002).next_price(D("1.00"), D("0.01"), D("0.90"), D("1.10"))
    assert cheap in (D("0.99"), D("1.01"))  # at least one tick even when the step rounds to zero


def test_the_risk_checks_load_nothing_of_the_simulator() -> None:
    """Production risk and reference data use the market rules, never the sim's code."""
    import subprocess
    import sys

    code = "import sys, adapter.server.risk, adapter.server.reference; print(any(m.startswith('adapter.sim') for m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "False"
