"""The simulator's controls (the ``sim`` op, PROTOCOL §17): argument rules, and what each action does
to the counter as the genuine ``XtQuantTrader`` sees it (pushes, fills, sellable shares, quotes)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest

from adapter.broker.messages import Failed
from adapter.config import Config, SimConfig
from adapter.protocol import ProtocolError, errors, ops

from .test_sim_counter import ACC, ACCOUNT, CASH, OTHER, Desk, desk, make_desk  # noqa: F401  (fixtures)

from xtquant import xtconstant as C  # noqa: E402  (the sim is installed by test_sim_counter)

SIM = ops.OPS["sim"]


def args(**raw: Any) -> dict[str, Any]:
    return ops.validate_args(SIM, raw)


# -- the op's arguments -------------------------------------------------------------------------


def test_each_action_takes_exactly_its_arguments() -> None:
    assert args(action="next-day")["action"] == "next_day"
    assert args(action="price", stock_code="600000.sh", price=10.5)["stock_code"] == "600000.SH"
    assert args(action="position", account_id=ACCOUNT, stock_code="600000.SH", volume=0)["volume"] == 0
    with pytest.raises(ProtocolError) as missing:
        args(action="deposit", account_id=ACCOUNT)
    assert missing.value.code == errors.MISSING_ARGUMENT and "'amount'" in missing.value.message
    with pytest.raises(ProtocolError) as stray:
        args(action="status", stock_code="600000.SH")
    assert stray.value.code == errors.UNKNOWN_ARGUMENT and "'stock_code'" in stray.value.message


@pytest.mark.parametrize(("raw", "field"), [
    ({"action": "buy"}, "action"),
    ({"action": "price", "stock_code": "600000.SH", "price": 0}, "price"),
    ({"action": "move", "stock_code": "600000.SH", "percent": -100}, "percent"),
    ({"action": "deposit", "account_id": ACCOUNT, "amount": 0}, "amount"),
    ({"action": "position", "account_id": ACCOUNT, "stock_code": "600000.SH", "volume": -1}, "volume"),
])
def test_bad_values_are_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        args(**raw)
    assert refused.value.code == errors.INVALID_ARGUMENT and refused.value.message.startswith(f"{field}:")


def test_the_op_needs_admin() -> None:
    from adapter.server import access

    assert access.permission_for(SIM) == "admin"


def test_a_qmt_backend_answers_that_there_is_no_simulator() -> None:
    from adapter.broker.xt import XtBroker

    posted: list[Any] = []
    broker = XtBroker(Config(backend="qmt"), posted.append)
    broker._execute(7, SIM, args(action="status"))  # the broker thread's dispatch, called directly
    [failed] = posted
    assert isinstance(failed, Failed) and failed.token == 7 and failed.code == errors.INVALID_REQUEST
    assert "backend is 'qmt'" in failed.message and "not the simulator" in failed.message


# -- what the actions do at the counter ---------------------------------------------------------


def test_price_fills_a_resting_order_and_the_quote_shows_it(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    order_id = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 200, C.FIX_PRICE, 10.50)
    desk.flush(trader)
    assert trader.query_stock_order(ACC, order_id).order_status == C.ORDER_REPORTED
    mark = recorder.mark()
    result = desk.counter.control("price", {"stock_code": "600000.SH", "price": 10.5})
    desk.flush(trader)
    assert (result["last"], result["trades"], result["matched"]) == (10.5, 1, True)
    [trade] = recorder.of("trade", mark)
    assert (trade.order_id, trade.traded_price, trade.traded_volume) == (order_id, 10.5, 200)
    assert trader.query_stock_order(ACC, order_id).order_status == C.ORDER_SUCCEEDED
    assert desk.counter.full_tick(["600000.SH"])["600000.SH"]["lastPrice"] == 10.5


def test_move_rounds_to_the_tick(desk: Desk) -> None:
    result = desk.counter.control("move", {"stock_code": "600000.SH", "percent": 3})
    assert result["last"] == 10.92  # 10.60 x 1.03 = 10.918
    assert desk.counter.last_price("600000.SH") == 10.92


@pytest.mark.parametrize(("control", "words"), [
    ({"stock_code": "600000.SH", "price": 11.67}, ["above the up limit", "11.66", "prev_close 10.60", "±10%"]),
    ({"stock_code": "600000.SH", "price": 9.53}, ["below the down limit", "9.54"]),
    ({"stock_code": "300750.SZ", "price": 10**6}, ["above the up limit", "±20%"]),
    ({"stock_code": "600000.SH", "price": 10.555}, ["not on its tick of 0.01"]),
    ({"stock_code": "600001.SH", "price": 10.0}, ["600001.SH is unknown to the simulator"]),
])
def test_a_price_the_exchange_would_not_take_is_refused_naming_why(
    desk: Desk, control: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(ValueError) as refused:
        desk.counter.control("price", control)
    assert all(word in str(refused.value) for word in words), str(refused.value)
    assert desk.counter.last_price("600000.SH") == 10.60


def test_move_outside_the_band_is_refused(desk: Desk) -> None:
    with pytest.raises(ValueError, match="above the up limit"):
        desk.counter.control("move", {"stock_code": "600000.SH", "percent": 15})


def test_deposit_and_withdrawal_push_the_asset(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    mark = recorder.mark()
    result = desk.counter.control("deposit", {"account_id": ACCOUNT, "amount": 2500.5})
    desk.flush(trader)
    assert result["cash"] == CASH + 2500.5
    assert [a.cash for a in recorder.of("asset", mark)] == [CASH + 2500.5]
    desk.counter.control("deposit", {"account_id": ACCOUNT, "amount": -500.5})
    assert trader.query_stock_asset(ACC).cash == CASH + 2000
    with pytest.raises(ValueError, match="more than the available cash"):
        desk.counter.control("deposit", {"account_id": ACCOUNT, "amount": -(CASH + 2000.01)})
    with pytest.raises(ValueError, match="not one of the simulator's"):
        desk.counter.control("deposit", {"account_id": "42", "amount": 1})


def test_a_position_set_is_sellable_at_once(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    mark = recorder.mark()
    result = desk.counter.control("position", {"account_id": ACCOUNT, "stock_code": "600000.SH", "volume": 1000})
    desk.flush(trader)
    assert (result["volume"], result["can_use_volume"], result["avg_price"]) == (1000, 1000, 10.6)
    [pushed] = recorder.of("position", mark)
    assert (pushed.stock_code, pushed.volume, pushed.can_use_volume) == ("600000.SH", 1000, 1000)
    assert recorder.of("asset", mark)[-1].market_value > 0
    sold = trader.order_stock(ACC, "600000.SH", C.STOCK_SELL, 400, C.FIX_PRICE, 10.60)
    desk.flush(trader)
    assert trader.query_stock_order(ACC, sold).order_status == C.ORDER_SUCCEEDED
    assert trader.query_stock_position(ACC, "600000.SH").volume == 600


def test_a_position_cannot_go_below_what_open_sells_froze(desk: Desk) -> None:
    trader, _ = desk.trader(ACCOUNT)
    trader.order_stock(ACC, "000001.SZ", C.STOCK_SELL, 300, C.FIX_PRICE, 12.00)  # rests above the last
    with pytest.raises(ValueError, match="300 shares of 000001.SZ are frozen by open sell orders"):
        desk.counter.control("position", {"account_id": ACCOUNT, "stock_code": "000001.SZ", "volume": 200})
    desk.counter.control("position", {"account_id": ACCOUNT, "stock_code": "000001.SZ", "volume": 500})
    position = trader.query_stock_position(ACC, "000001.SZ")
    assert (position.volume, position.can_use_volume, position.frozen_volume) == (500, 200, 300)
    with pytest.raises(ValueError, match="index"):
        desk.counter.control("position", {"account_id": ACCOUNT, "stock_code": "000001.SH", "volume": 100})


def test_next_day_makes_todays_buys_sellable_and_expires_open_orders(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    resting = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.00)
    desk.counter.control("price", {"stock_code": "600000.SH", "price": 10.8})
    mark = recorder.mark()
    result = desk.counter.control("next_day", {})
    desk.flush(trader)
    assert result["expired_orders"] == 1
    assert [o.order_status for o in recorder.of("order", mark) if o.order_id == resting] == [C.ORDER_CANCELED]
    position = trader.query_stock_position(ACC, "600000.SH")
    assert (position.volume, position.can_use_volume) == (100, 100)
    assert desk.counter.price_limits("600000.SH") == (9.72, 11.88)  # prev_close 10.80 now


def test_reset_returns_to_the_configured_start(make_desk: Callable[..., Desk], tmp_path: Path) -> None:
    state = tmp_path / "books.sqlite3"
    desk = make_desk(state_path=state)
    trader, recorder = desk.trader(ACCOUNT)
    trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    resting = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.00)
    desk.counter.control("deposit", {"account_id": ACCOUNT, "amount": 5000})
    desk.counter.control("position", {"account_id": ACCOUNT, "stock_code": "000001.SZ", "volume": 0})
    desk.counter.control("price", {"stock_code": "600000.SH", "price": 10.8})
    mark = recorder.mark()
    result = desk.counter.control("reset", {})
    desk.flush(trader)
    assert (result["expired_orders"], result["prices_reset"]) == (1, 1)
    assert [o.order_status for o in recorder.of("order", mark) if o.order_id == resting] == [C.ORDER_CANCELED]
    pushed = {p.stock_code: p.volume for p in recorder.of("position", mark)}
    assert pushed == {"600000.SH": 0, "000001.SZ": 1000, "600519.SH": 1050, "688981.SH": 300}
    assert recorder.of("asset", mark)[-1].cash == CASH

    def books() -> tuple[Any, ...]:
        positions = {p.stock_code: (p.volume, p.can_use_volume) for p in trader.query_stock_positions(ACC)}
        return (trader.query_stock_asset(ACC).cash, positions, trader.query_stock_orders(ACC),
                trader.query_stock_trades(ACC), desk.counter.last_price("600000.SH"))

    configured = (CASH, {"000001.SZ": (1000, 1000), "600519.SH": (1050, 1050), "688981.SH": (300, 300)}, [], [], 10.6)
    assert books() == configured
    desk.close()
    desk = make_desk(state_path=state)  # the reset is on disk
    trader, _ = desk.trader(ACCOUNT)
    assert books() == configured
    assert trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60) > resting  # ids go on


def test_status_shows_the_clock_accounts_and_codes_in_use(desk: Desk) -> None:
    desk.counter.control("price", {"stock_code": "600000.SH", "price": 10.7})
    status = desk.counter.control("status", {})
    assert (status["time"], status["trading_day"], status["market_hours"]) == ("2025-10-09 16:53:20", "20251009", "always")
    assert status["open_now"] and status["books"] == "memory"
    assert [a["account_id"] for a in status["accounts"]] == [ACCOUNT, OTHER]
    assert status["accounts"][0]["cash"] == CASH and status["accounts"][0]["positions"] == 3
    quotes = {q["stock_code"]: q for q in status["codes"]}
    assert quotes["600000.SH"]["last"] == 10.7 and quotes["600000.SH"]["up"] == 11.66
    assert set(quotes) >= {"000001.SZ", "600519.SH", "688981.SH"}  # held
    assert status["codes_in_use"] == len(status["codes"])


def test_saved_books_that_override_configured_positions_are_announced(
    make_desk: Callable[..., Desk], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from adapter.broker.xt import _warn_unapplied_positions

    state = tmp_path / "sim-counter.sqlite3"
    make_desk(state_path=state).close()
    config = replace(Config(), sim=SimConfig(positions={ACCOUNT: {"600000.SH": 100}, "3000000003": {"600000.SH": 1}}))
    with caplog.at_level(logging.WARNING, logger="adapter.broker.xt"):
        _warn_unapplied_positions(config, state)
    [line] = [r.getMessage() for r in caplog.records]
    assert f"account(s) {ACCOUNT} are not applied" in line and str(state) in line
    assert "qmt-adapter sim reset" in line and "delete" in line
    caplog.clear()
    _warn_unapplied_positions(config, tmp_path / "none.sqlite3")  # new books: the configuration seeds them
    assert not caplog.records
