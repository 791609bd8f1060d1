"""Each pre-trade rule denies what it should and passes what it should, at the edges."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from adapter.server.risk import (
    CHINA,
    HALTED,
    NORMAL,
    REDUCE_ONLY,
    RULES,
    Denial,
    RiskConfigError,
    RiskEngine,
    parse_risk,
)
from adapter.server.view import BooksView
from adapter.sim.instruments import load_instruments

ACCOUNT = "1000000365"
INSTRUMENTS = load_instruments()
OFF = {"orders_per_second": 0, "orders_per_day": 0, "duplicate_window": 0}
# A Wednesday, 10:00 China time.
WEDNESDAY_10AM = dt.datetime(2026, 11, 25, 10, 0, tzinfo=CHINA).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = WEDNESDAY_10AM

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds


def engine(risk: dict[str, Any] | None = None, clock: Clock | None = None) -> RiskEngine:
    clock = clock or Clock()
    return RiskEngine(parse_risk(risk), INSTRUMENTS.get, clock=lambda: clock.now, wall=lambda: clock.wall)


def books(positions: dict[str, dict[str, Any]] | None = None, orders: list[dict[str, Any]] | None = None) -> dict:
    orders_by_id = {o["order_id"]: o for o in orders or []}
    book = {"asset": None, "positions": positions or {}, "orders": {}, "trades": {}, "open": {}, "open_by_code": {}}
    view = BooksView([ACCOUNT])
    view.load(ACCOUNT, {"positions": list((positions or {}).values()), "orders": list(orders_by_id.values())})
    book.update(view.books(ACCOUNT))
    return book


def order(code: str = "600000.SH", side: int = 23, volume: int = 100, price: float = 10.60, **extra: Any) -> dict:
    return {"account_id": ACCOUNT, "stock_code": code, "order_type": side, "order_volume": volume,
            "price_type": extra.pop("price_type", 11), "price": price, "client_order_id": "c1", **extra}


def denied(risk: RiskEngine, args: dict, book: dict | None = None, state: str = NORMAL, key: str | None = None,
           in_flight: int = 0) -> Denial | None:
    try:
        risk.check_order(ACCOUNT, key, args, book or books(), state, in_flight)
    except Denial as denial:
        assert denial.rule in RULES
        return denial
    return None


def rule_of(risk: RiskEngine, args: dict, **kwargs: Any) -> str | None:
    denial = denied(risk, args, **kwargs)
    return denial.rule if denial else None


def test_max_volume_and_notional_allow_exactly_the_limit() -> None:
    risk = engine({**OFF, "max_order_volume": 1000, "max_order_notional": 10_600.0})
    assert rule_of(risk, order(volume=1000, price=10.60)) is None  # 10,600.00 exactly
    assert rule_of(risk, order(volume=1100, price=9.60)) == "order.max_volume"
    denial = denied(risk, order(volume=1000, price=10.61))
    assert denial is not None and denial.rule == "order.max_notional"
    assert (denial.limit, denial.value) == (10_600.0, 10_610.0)
    assert risk.denials == {"order.max_volume": 1, "order.max_notional": 1}


def test_position_notional_counts_holdings_and_open_buys() -> None:
    risk = engine({**OFF, "max_position_notional": 10_000.0})
    held = {"600000.SH": {"stock_code": "600000.SH", "market_value": 5_760.0, "can_use_volume": 0}}
    open_buy = {"order_id": 1, "stock_code": "600000.SH", "order_type": 23, "order_volume": 200,
                "traded_volume": 100, "price": 10.60, "order_status": 55}
    book = books(held, [open_buy])  # 5,760 held + 1,060 still buying
    assert rule_of(risk, order(volume=300, price=10.60), book=book) is None  # 9,940
    assert rule_of(risk, order(volume=400, price=10.60), book=book) == "position.max_notional"  # 11,060
    assert rule_of(risk, order(side=24, volume=400, price=10.60), book=book) is None  # sells are not capped


def test_max_open_orders_counts_working_and_in_flight_orders() -> None:
    risk = engine({**OFF, "max_open_orders": 3})
    working = [{"order_id": i, "order_status": s, "stock_code": "600036.SH", "order_type": 23,
                "order_volume": 100, "traded_volume": 0, "price": 40.0} for i, s in ((1, 50), (2, 55), (3, 56))]
    assert rule_of(risk, order(), book=books(orders=working)) is None  # 2 working (56 is done) + this = 3
    assert rule_of(risk, order(), book=books(orders=working), in_flight=1) == "orders.max_open"


def test_rate_per_second_is_a_token_bucket() -> None:
    clock = Clock()
    risk = engine({"orders_per_second": 5, "orders_per_day": 0, "duplicate_window": 0}, clock)
    results = [rule_of(risk, order(volume=100 * (i + 1))) for i in range(7)]
    assert results == [None] * 5 + ["rate.per_second"] * 2  # a burst of 5, then denied
    clock.advance(0.2)  # one token back
    assert rule_of(risk, order(volume=800)) is None
    assert rule_of(risk, order(volume=900)) == "rate.per_second"
    clock.advance(1.0)
    for _ in range(5):
        risk.check_cancel(ACCOUNT, None)  # cancels use the same bucket
    with pytest.raises(Denial) as info:
        risk.check_cancel(ACCOUNT, None)
    assert info.value.rule == "rate.per_second"


def test_rate_per_day_resets_at_midnight_china_time() -> None:
    clock = Clock()
    risk = engine({"orders_per_second": 0, "orders_per_day": 3, "duplicate_window": 0}, clock)
    assert [rule_of(risk, order(volume=100 * (i + 1))) for i in range(4)] == [None, None, None, "rate.per_day"]
    clock.advance(14 * 3600 + 1)  # past midnight in Shanghai
    assert rule_of(risk, order(volume=500)) is None


def test_duplicate_orders_within_the_window_unless_intentional() -> None:
    clock = Clock()
    risk = engine({"orders_per_second": 0, "orders_per_day": 0, "duplicate_window": 2.0}, clock)
    assert rule_of(risk, order()) is None
    clock.advance(1.0)
    assert rule_of(risk, order()) == "order.duplicate"
    assert rule_of(risk, order(intentional=True)) is None
    assert rule_of(risk, order(volume=200)) is None  # another volume is another order
    clock.advance(2.0)  # the first one's window has passed; the intentional one's not yet
    assert rule_of(risk, order()) == "order.duplicate"
    clock.advance(0.01 + 1.0)
    assert rule_of(risk, order()) is None


def test_instrument_rules() -> None:
    risk = engine(OFF)
    assert rule_of(risk, order(code="600000.XX")) == "code.format"
    assert rule_of(risk, order(code="600001.SH")) == "code.unknown"
    assert rule_of(risk, order(volume=150)) == "instrument.lot"
    assert rule_of(risk, order(code="688981.SH", volume=199, price=88.0)) == "instrument.lot"
    assert rule_of(risk, order(code="688981.SH", volume=201, price=88.0)) is None  # STAR: 200+, steps of 1
    assert rule_of(risk, order(price=10.605)) == "instrument.tick"
    assert rule_of(risk, order(code="510300.SH", price=3.951)) is None  # funds tick 0.001
    assert rule_of(risk, order(price=11.66)) is None and rule_of(risk, order(price=9.54)) is None  # the limits
    denial = denied(risk, order(price=11.67))
    assert denial is not None and denial.rule == "instrument.price_limit" and denial.limit == [9.54, 11.66]
    assert rule_of(risk, order(code="600696.SH", price=4.42)) == "instrument.price_limit"  # ST: 5 %
    held = {"600000.SH": {"stock_code": "600000.SH", "can_use_volume": 1050, "market_value": 0.0}}
    assert rule_of(risk, order(side=24, volume=50), book=books(held)) is None  # clears the odd lot
    assert rule_of(risk, order(side=24, volume=30), book=books(held)) == "instrument.lot"
    assert rule_of(risk, order(price=0.0, price_type=5)) is None  # market price type: no tick, no band


def test_allow_and_block_lists() -> None:
    risk = engine({**OFF, "allow_codes": ["600000.sh", "600036.SH"], "block_codes": ["600036.SH"]})
    assert rule_of(risk, order()) is None
    assert rule_of(risk, order(code="600036.SH", price=42.30)) == "code.blocked"
    assert rule_of(risk, order(code="000001.SZ", price=11.80)) == "code.not_allowed"


def test_trading_hours() -> None:
    clock = Clock()
    risk = engine({**OFF, "trading_hours": True}, clock)
    assert rule_of(risk, order()) is None  # Wednesday 10:00
    clock.wall = dt.datetime(2026, 11, 25, 12, 0, tzinfo=CHINA).timestamp()
    assert rule_of(risk, order()) == "hours.closed"  # lunch
    clock.wall = dt.datetime(2026, 11, 25, 15, 0, tzinfo=CHINA).timestamp()
    assert rule_of(risk, order()) is None  # the close itself is inside
    clock.wall = dt.datetime(2026, 11, 28, 10, 0, tzinfo=CHINA).timestamp()
    assert rule_of(risk, order()) == "hours.closed"  # Saturday


def test_kill_switch_states() -> None:
    risk = engine(OFF)
    held = {"600000.SH": {"stock_code": "600000.SH", "can_use_volume": 500, "market_value": 5_300.0}}
    selling = {"order_id": 9, "stock_code": "600000.SH", "order_type": 24, "order_volume": 200,
               "traded_volume": 0, "price": 10.6, "order_status": 50}
    assert rule_of(risk, order(), state=HALTED) == "trading.halted"
    assert rule_of(risk, order(side=24, volume=100), book=books(held), state=HALTED) == "trading.halted"
    assert rule_of(risk, order(), book=books(held), state=REDUCE_ONLY) == "trading.reduce_only"
    # The counter reports can_use_volume net of shares frozen by open sells (500 - 200).
    held["600000.SH"]["can_use_volume"] = 300
    book = books(held, [selling])
    assert rule_of(risk, order(side=24, volume=300), book=book, state=REDUCE_ONLY) is None
    assert rule_of(risk, order(side=24, volume=400), book=book, state=REDUCE_ONLY) == "trading.reduce_only"
    risk.check_cancel(ACCOUNT, None)  # cancels pass a halt: they only reduce risk


def test_account_and_key_levels() -> None:
    risk = engine({**OFF, "max_order_volume": 1000, "accounts": {ACCOUNT: {"max_order_volume": 5000}},
                   "keys": {"small": {"max_order_volume": 300, "orders_per_second": 1}}})
    assert rule_of(risk, order(volume=4000)) is None  # the account's own limit replaces the default
    assert rule_of(risk, order(volume=400), key="small") == "order.max_volume"  # the key tightens
    assert rule_of(risk, order(volume=300), key="small") is None
    assert rule_of(risk, order(volume=200), key="small") == "rate.per_second"  # the key's own bucket
    assert rule_of(risk, order(volume=200), key="other") is None  # keys without limits: the account's only
    report = risk.report([ACCOUNT], lambda _a: books())
    assert report["limits"]["accounts"][ACCOUNT]["max_order_volume"] == 5000
    assert report["limits"]["keys"] == {"small": {"max_order_volume": 300, "orders_per_second": 1.0}}
    assert report["denials"] == {"order.max_volume": 1, "rate.per_second": 1}
    assert report["usage"][ACCOUNT]["today"] == 3


@pytest.mark.parametrize("bad", [
    {"max_order_volume": -1}, {"max_order_volume": "10"}, {"nonsense": 1}, {"allow_codes": "600000.SH"},
    {"sessions": ["9-10"]}, {"accounts": {"1": {"bogus": 1}}}, {"keys": {"k": 3}}, {"trading_hours": 1},
])
def test_bad_risk_settings_are_named(bad: dict[str, Any]) -> None:
    with pytest.raises(RiskConfigError):
        parse_risk(bad)


def test_the_views_working_order_indexes_follow_each_order() -> None:
    view = BooksView([ACCOUNT])
    buy = {"order_id": 1, "stock_code": "600000.SH", "order_type": 23, "order_volume": 300, "traded_volume": 0,
           "price": 10.0, "order_status": 50}
    sell = {**buy, "order_id": 2, "order_type": 24}
    view.apply("order", ACCOUNT, buy)
    view.apply("order", ACCOUNT, sell)
    books = view.books(ACCOUNT)
    assert set(books["open"]) == {1, 2} and set(books["open_by_code"]["600000.SH"]) == {1, 2}
    assert books["buying"]["600000.SH"] == 3000.0  # sells do not count
    view.apply("order", ACCOUNT, {**buy, "traded_volume": 100, "order_status": 55})
    assert books["buying"]["600000.SH"] == 2000.0
    view.apply("order", ACCOUNT, {**buy, "traded_volume": 300, "order_status": 56})
    view.apply("order", ACCOUNT, {**sell, "order_status": 54})
    assert books["open"] == {} and books["open_by_code"] == {} and books["buying"]["600000.SH"] == 0.0
