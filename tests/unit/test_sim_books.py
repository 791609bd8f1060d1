"""The sim's books on their own: no counter thread, no sessions, no xttrader.

Defaults: 1,000,000 CNY cash, commission 0.025 % with a 5 CNY minimum, fills at once at the
last price (600000.SH 10.60, 000001.SZ 11.80); ``fill_volume`` caps a fill where a test needs
partial fills.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from adapter import market as rules
from adapter.config import SimConfig
from adapter.sim import books as B
from xtquant import xtconstant as C

ACCOUNT = "1000000365"
NOW = 1_760_000_000.0
CASH = Decimal("1000000.00")
HELD = 1000  # shares of 000001.SZ held since yesterday


def make_books(**config: Any) -> B.Books:
    settings = SimConfig(positions={ACCOUNT: {"000001.SZ": HELD}})
    return B.Books(replace(settings, **config), [ACCOUNT], lambda: NOW)


def statuses(events: list[B.Event]) -> list[int]:
    return [e.order.status for e in events if isinstance(e, B.OrderChanged)]


def kinds(events: list[B.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def buy(books: B.Books, volume: int, price: Any = "10.60", code: str = "600000.SH", **kw: Any) -> B.Placed:
    return books.place(ACCOUNT, code, C.STOCK_BUY, volume, kw.pop("price_type", C.FIX_PRICE), price, **kw)


def sell(books: B.Books, volume: int, price: Any = "11.80", code: str = "000001.SZ", **kw: Any) -> B.Placed:
    return books.place(ACCOUNT, code, C.STOCK_SELL, volume, kw.pop("price_type", C.FIX_PRICE), price, **kw)


def test_an_accepted_buy_is_reported_and_freezes_amount_and_commission() -> None:
    books = make_books()
    placed = buy(books, 100, "10.50", strategy_name="s", order_remark="r")  # below the last price: rests
    assert placed.refusal is None
    assert kinds(placed.events) == ["OrderChanged", "OrderChanged", "AssetChanged"]
    assert statuses(placed.events) == [C.ORDER_UNREPORTED, C.ORDER_REPORTED]
    first = placed.events[0]
    assert isinstance(first, B.OrderChanged) and first.order.sysid == ""  # no contract number before the answer
    order = books.account(ACCOUNT).orders[placed.order.order_id]
    assert (order.order_id, order.sysid, order.status) == (B.FIRST_ORDER_ID, str(B.FIRST_SYSID), C.ORDER_REPORTED)
    assert (order.price, order.frozen_cash, order.strategy_name, order.order_remark) == (
        Decimal("10.50"), Decimal("1055.00"), "s", "r"
    )
    asset = books.asset(ACCOUNT)
    assert (asset.cash, asset.frozen_cash) == (CASH - Decimal("1055.00"), Decimal("1055.00"))
    assert placed.events[-1] == B.AssetChanged(asset)
    assert books.open_orders() == [order]


def test_a_marketable_buy_fills_at_once_and_its_shares_are_not_sellable_today() -> None:
    books = make_books()
    placed = buy(books, 100)
    assert kinds(placed.events) == [
        "OrderChanged", "OrderChanged", "AssetChanged", "TradeMade", "OrderChanged", "PositionChanged", "AssetChanged"
    ]
    assert statuses(placed.events) == [C.ORDER_UNREPORTED, C.ORDER_REPORTED, C.ORDER_SUCCEEDED]
    trade = next(e.trade for e in placed.events if isinstance(e, B.TradeMade))
    assert (trade.traded_id, trade.traded_time, trade.traded_price, trade.traded_volume) == (
        f"{B.FIRST_TRADE_ID:016d}", int(NOW), 10.60, 100
    )
    assert (trade.traded_amount, trade.commission, trade.order_sysid) == (1060.0, 5.0, placed.order.sysid)
    position = books.account(ACCOUNT).positions["600000.SH"]
    assert (position.volume, position.can_use, position.frozen, position.yesterday) == (100, 0, 0, 0)
    assert (position.cost, position.open_cost) == (Decimal("1065.00"), Decimal("1060.00"))
    asset = books.asset(ACCOUNT)
    held = Decimal("11.80") * HELD
    assert (asset.cash, asset.frozen_cash, asset.market_value) == (CASH - Decimal("1065.00"), 0, held + 1060)
    assert books.account(ACCOUNT).trades == [trade] and books.open_orders() == []


def test_partial_fills_step_by_step_release_what_the_rest_no_longer_needs() -> None:
    books = make_books(fill_volume=100)
    placed = buy(books, 300)
    assert statuses(placed.events)[-1] == C.ORDER_PART_SUCC
    order = books.account(ACCOUNT).orders[placed.order.order_id]
    assert (order.traded_volume, order.frozen_cash) == (100, Decimal("2125.00"))  # 2 * 1060 + 5
    assert statuses(books.step()) == [C.ORDER_PART_SUCC]
    assert statuses(books.step()) == [C.ORDER_SUCCEEDED]
    assert books.step() == []  # nothing open any more
    assert (order.traded_volume, order.traded_amount, order.frozen_cash) == (300, Decimal("3180.00"), 0)
    asset = books.asset(ACCOUNT)
    assert (asset.cash, asset.frozen_cash) == (CASH - Decimal("3195.00"), 0)  # three fills, 5 each
    assert [t.traded_volume for t in books.account(ACCOUNT).trades] == [100, 100, 100]


def test_a_resting_order_fills_when_the_price_reaches_it() -> None:
    books = make_books()
    placed = buy(books, 100, "10.50")
    assert books.set_price("600000.SH", 10.55) == []
    assert statuses(books.set_price("600000.SH", 10.50)) == [C.ORDER_SUCCEEDED]
    assert books.account(ACCOUNT).orders[placed.order.order_id].traded_amount == Decimal("1050.00")
    with pytest.raises(ValueError, match="outside the daily limits"):
        books.set_price("600000.SH", 20.0)


def test_a_sell_freezes_shares_and_a_fill_pays_the_proceeds_less_commission() -> None:
    books = make_books()
    placed = sell(books, 200, "11.90")  # above the last price: rests
    assert kinds(placed.events) == ["OrderChanged", "OrderChanged", "PositionChanged", "AssetChanged"]
    position = books.account(ACCOUNT).positions["000001.SZ"]
    assert (position.volume, position.can_use, position.frozen) == (HELD, HELD - 200, 200)
    assert statuses(books.set_price("000001.SZ", 11.90)) == [C.ORDER_SUCCEEDED]
    assert (position.volume, position.can_use, position.frozen) == (HELD - 200, HELD - 200, 0)
    assert books.asset(ACCOUNT).cash == CASH + Decimal("2380.00") - Decimal("5.00")
    assert position.cost == Decimal("11.80") * (HELD - 200)  # sells keep the cost per share


def test_the_price_of_a_junk_order_is_what_was_sent_and_events_are_snapshots() -> None:
    books = make_books()
    placed = buy(books, 100, "10.605")  # off tick
    assert placed.order.price == Decimal("10.605")
    assert books.step() == []  # a junk order never matches
    accepted = buy(books, 100, "10.50")
    reported = [e.order for e in accepted.events if isinstance(e, B.OrderChanged)]
    assert [o.status for o in reported] == [C.ORDER_UNREPORTED, C.ORDER_REPORTED]
    assert reported[0].frozen_cash == 0 and reported[1].frozen_cash == Decimal("1055.00")


REFUSALS = [
    # (what, order_type, code, volume, price_type, price, config, error)
    ("unknown code", C.STOCK_BUY, "999999.SH", 100, C.FIX_PRICE, "10.00", {}, B.ERR_UNKNOWN_CODE),
    ("order type", 99, "600000.SH", 100, C.FIX_PRICE, "10.60", {}, B.ERR_ORDER_TYPE),
    ("price type", C.STOCK_BUY, "600000.SH", 100, 999, "10.60", {}, B.ERR_PRICE_TYPE),
    ("SZ type on SH", C.STOCK_BUY, "600000.SH", 100, C.MARKET_SZ_CONVERT_5_CANCEL, 0, {}, B.ERR_PRICE_TYPE_MARKET),
    ("buy lot", C.STOCK_BUY, "600000.SH", 150, C.FIX_PRICE, "10.60", {}, B.ERR_LOT),
    ("STAR minimum", C.STOCK_BUY, "688981.SH", 100, C.FIX_PRICE, "88.00", {}, B.ERR_LOT),
    ("sell nothing", C.STOCK_SELL, "000001.SZ", 0, C.FIX_PRICE, "11.80", {}, B.ERR_LOT),
    ("off tick", C.STOCK_BUY, "600000.SH", 100, C.FIX_PRICE, "10.605", {}, B.ERR_TICK),
    ("not a price", C.STOCK_BUY, "600000.SH", 100, C.FIX_PRICE, "abc", {}, B.ERR_TICK),
    ("above the up limit", C.STOCK_BUY, "600000.SH", 100, C.FIX_PRICE, "11.70", {}, B.ERR_LIMIT),
    ("below the down limit", C.STOCK_SELL, "000001.SZ", 100, C.FIX_PRICE, "10.00", {}, B.ERR_LIMIT),
    ("cash", C.STOCK_BUY, "600519.SH", 700, C.FIX_PRICE, "1460.00", {}, B.ERR_CASH),
    ("shares not held", C.STOCK_SELL, "600000.SH", 100, C.FIX_PRICE, "10.60", {}, B.ERR_SHARES),
    ("more shares than held", C.STOCK_SELL, "000001.SZ", HELD + 100, C.FIX_PRICE, "11.80", {}, B.ERR_SHARES),
    ("odd sell", C.STOCK_SELL, "000001.SZ", 150, C.FIX_PRICE, "11.80", {}, B.ERR_LOT),
    ("FOK beyond the fill cap", C.STOCK_BUY, "000001.SZ", 200, C.MARKET_SZ_FULL_OR_CANCEL, 0, {"fill_volume": 100},
     B.ERR_FOK),
]


@pytest.mark.parametrize(
    ("order_type", "code", "volume", "price_type", "price", "config", "error"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_each_refusal_rule_junks_the_order_and_touches_nothing_else(
    order_type: int, code: str, volume: int, price_type: int, price: Any, config: dict[str, Any],
    error: tuple[int, str],
) -> None:
    books = make_books(**config)
    before = books.asset(ACCOUNT)
    placed = books.place(ACCOUNT, code, order_type, volume, price_type, price)
    assert placed.refusal is not None
    assert placed.refusal.error_id == error[0]
    assert placed.refusal.message.startswith(f"[COUNTER] [{error[0]}][{error[1]}]")
    order = placed.order
    assert (order.status, order.status_msg, order.sysid) == (C.ORDER_JUNK, placed.refusal.message, f"xt{order.order_id}")
    assert kinds(placed.events) == ["OrderChanged"] and statuses(placed.events) == [C.ORDER_JUNK]
    assert books.account(ACCOUNT).orders[order.order_id].status == C.ORDER_JUNK  # listed with the day's orders
    assert books.asset(ACCOUNT) == before and books.open_orders() == []
    assert books.account(ACCOUNT).positions["000001.SZ"].can_use == HELD
    assert books.next_sysid == B.FIRST_SYSID  # junk orders take no contract number


def test_the_refusal_text_names_the_values_checked() -> None:
    books = make_books()
    placed = buy(books, 100, "11.70")
    sent = rules.to_decimal("11.70")
    assert placed.refusal == B.Refusal(
        B.ERR_LIMIT[0],
        f"[COUNTER] [{B.ERR_LIMIT[0]}][{B.ERR_LIMIT[1]}][entrust_price={sent},down_price=9.54,up_price=11.66]",
    )


def test_an_odd_lot_sell_that_clears_the_holding_is_accepted() -> None:
    books = B.Books(SimConfig(positions={ACCOUNT: {"000001.SZ": 150}}), [ACCOUNT], lambda: NOW)
    placed = sell(books, 150)
    assert placed.refusal is None and placed.order.status == C.ORDER_SUCCEEDED


def test_cancelling_an_open_order_unfreezes_its_cash() -> None:
    books = make_books()
    order_id = buy(books, 100, "10.50").order.order_id
    cancelled = books.cancel(ACCOUNT, order_id)
    assert cancelled.refusal is None and cancelled.order_id == order_id
    assert statuses(cancelled.events) == [C.ORDER_REPORTED_CANCEL, C.ORDER_CANCELED]
    assert kinds(cancelled.events) == ["OrderChanged", "OrderChanged", "AssetChanged"]
    asset = books.asset(ACCOUNT)
    assert (asset.cash, asset.frozen_cash) == (CASH, 0)
    assert books.account(ACCOUNT).orders[order_id].frozen_cash == 0


def test_cancelling_a_part_filled_sell_unfreezes_the_rest_of_its_shares() -> None:
    books = make_books(fill_volume=100)
    placed = sell(books, 300)
    assert placed.order.status == C.ORDER_PART_SUCC
    cancelled = books.cancel(ACCOUNT, sysid=placed.order.sysid, market=rules.MARKET_SZ)
    assert cancelled.order_id == placed.order.order_id
    assert statuses(cancelled.events) == [C.ORDER_PARTSUCC_CANCEL, C.ORDER_PART_CANCEL]
    assert kinds(cancelled.events) == ["OrderChanged", "OrderChanged", "PositionChanged", "AssetChanged"]
    position = books.account(ACCOUNT).positions["000001.SZ"]
    assert (position.volume, position.can_use, position.frozen) == (HELD - 100, HELD - 100, 0)
    assert books.step() == []


@pytest.mark.parametrize("final", ["filled", "junk", "cancelled"])
def test_cancelling_a_final_order_is_refused_and_changes_nothing(final: str) -> None:
    books = make_books()
    if final == "filled":
        order_id = buy(books, 100).order.order_id
    elif final == "junk":
        order_id = buy(books, 150).order.order_id
    else:
        order_id = buy(books, 100, "10.50").order.order_id
        books.cancel(ACCOUNT, order_id)
    before = books.account(ACCOUNT).orders[order_id].status
    cancelled = books.cancel(ACCOUNT, order_id)
    assert cancelled.refusal is not None and cancelled.refusal.error_id == B.ERR_CANCEL_FINAL[0]
    assert f"order_status={before}" in cancelled.refusal.message
    assert cancelled.order is not None and cancelled.order.status == before and cancelled.events == []
    assert books.account(ACCOUNT).orders[order_id].status == before


def test_cancelling_an_unknown_order_is_refused_as_addressed() -> None:
    books = make_books()
    by_id = books.cancel(ACCOUNT, 42)
    assert (by_id.order_id, by_id.order, by_id.events) == (42, None, [])
    assert by_id.refusal == B.Refusal(B.ERR_CANCEL_UNKNOWN[0], B.counter_message(B.ERR_CANCEL_UNKNOWN, order_id=42))
    placed = buy(books, 100, "10.50")
    by_sysid = books.cancel(ACCOUNT, sysid=placed.order.sysid, market=rules.MARKET_SZ)  # wrong market
    assert (by_sysid.order_id, by_sysid.order) == (-1, None)
    assert by_sysid.refusal is not None and f"entrust_no={placed.order.sysid}" in by_sysid.refusal.message


def test_an_immediate_or_cancel_rest_is_cancelled_at_once() -> None:
    books = make_books(fill_volume=100)
    placed = buy(books, 300, 0, price_type=C.MARKET_SH_CONVERT_5_CANCEL)
    assert statuses(placed.events) == [C.ORDER_UNREPORTED, C.ORDER_REPORTED, C.ORDER_PART_SUCC, C.ORDER_PART_CANCEL]
    assert placed.order.price == Decimal("10.60")  # priced at the last price
    asset = books.asset(ACCOUNT)
    assert (asset.cash, asset.frozen_cash) == (CASH - Decimal("1065.00"), 0)


def test_bought_shares_become_sellable_on_the_next_day() -> None:
    books = make_books()
    buy(books, 100)
    refused = sell(books, 100, "10.60", code="600000.SH")
    assert refused.refusal is not None and refused.refusal.error_id == B.ERR_SHARES[0]
    events = books.next_day()
    account = books.account(ACCOUNT)
    assert account.orders == {} and account.trades == []
    position = account.positions["600000.SH"]
    assert (position.volume, position.can_use, position.yesterday) == (100, 100, 100)
    assert kinds(events) == ["PositionChanged", "PositionChanged", "AssetChanged"]
    sold = sell(books, 100, "10.60", code="600000.SH")
    assert sold.refusal is None and sold.order.status == C.ORDER_SUCCEEDED
    assert sold.order.order_id == B.FIRST_ORDER_ID + 2  # ids go on across days
    books.next_day()
    assert "600000.SH" not in books.account(ACCOUNT).positions  # sold out: dropped at the day's end


def test_the_next_day_expires_open_orders_and_moves_the_limit_bands() -> None:
    books = make_books(fill_volume=100)
    resting = buy(books, 100, "10.50").order.order_id
    part = sell(books, 300).order.order_id
    books.set_price("600000.SH", 11.00)
    events = books.next_day()
    assert statuses(events) == [C.ORDER_CANCELED, C.ORDER_PART_CANCEL]
    expired = {e.order.order_id for e in events if isinstance(e, B.OrderChanged)}
    assert expired == {resting, part}
    asset = books.asset(ACCOUNT)
    assert asset.frozen_cash == 0 and asset.cash == CASH + Decimal("1180.00") - Decimal("5.00")
    position = books.account(ACCOUNT).positions["000001.SZ"]
    assert (position.volume, position.can_use, position.frozen) == (HELD - 100, HELD - 100, 0)
    quote = books.quote("600000.SH")
    assert (quote.prev_close, quote.down, quote.up) == (Decimal("11.00"), Decimal("9.90"), Decimal("12.10"))


def test_a_status_change_outside_the_table_raises() -> None:
    books = make_books()
    placed = buy(books, 100, "10.50")
    order = books.account(ACCOUNT).orders[placed.order.order_id]
    order.status = C.ORDER_WAIT_REPORTING  # a state the sim never reaches: still open to nothing
    with pytest.raises(B.status.IllegalStatusTransition, match="ORDER_WAIT_REPORTING -> ORDER_SUCCEEDED"):
        B.status.advance(order, C.ORDER_SUCCEEDED)
    order.status = C.ORDER_UNREPORTED  # e.g. left behind by a failed round: next_day cannot expire it
    with pytest.raises(B.status.IllegalStatusTransition, match="ORDER_UNREPORTED -> ORDER_CANCELED"):
        books.next_day()


def test_the_asset_is_valued_again_after_every_fill_and_price_move() -> None:
    books = make_books()

    def valued_now() -> Decimal:
        account = books.account(ACCOUNT)
        return sum((rules.trade_amount(books.quote(p.code).last, p.volume) for p in account.positions.values()),
                   Decimal(0))

    assert books.asset(ACCOUNT).market_value == valued_now() == Decimal("11800.00")
    buy(books, 200)  # fills at once: a new holding
    assert books.asset(ACCOUNT).market_value == valued_now() == Decimal("11800.00") + Decimal("2120.00")
    books.set_price("600000.SH", 10.70)
    assert books.asset(ACCOUNT).market_value == valued_now()
    sell(books, 1000)
    assert books.asset(ACCOUNT).market_value == valued_now() == Decimal("2140.00")
