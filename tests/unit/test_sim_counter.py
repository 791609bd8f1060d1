"""The simulated counter, driven through the GENUINE ``xtquant.xttrader.XtQuantTrader``.

Each test registers its own counter at a unique path and connects real traders to it.
Synchronisation: the counter answers requests in order on one thread and xttrader runs all
callbacks on one executor, so a synchronous call made after an action returns only once
every push of that action has reached the recorder (``Desk.flush``). Timers are awaited
with a bounded deadline, never a bare sleep.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import types
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any, Callable, Iterator

import pytest

from adapter import sim
from adapter.config import SimConfig
from adapter import market as rules
from adapter.sim import native

sim.install()

from xtquant import xtconstant as C  # noqa: E402
from xtquant.xttrader import XtQuantTrader, XtQuantTraderCallback  # noqa: E402
from xtquant.xttype import StockAccount  # noqa: E402

ACCOUNT = "1000000365"
OTHER = "2000000002"
NOW = 1_760_000_000.0
CASH = 1_000_000.0
_sessions = itertools.count(int(time.time()) % 100_000 * 10)


class Recorder(XtQuantTraderCallback):
    """Keeps every callback as (kind, data) in arrival order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._cond = threading.Condition()

    def _add(self, kind: str, data: Any = None) -> None:
        with self._cond:
            self.events.append((kind, data))
            self._cond.notify_all()

    def on_disconnected(self) -> None:
        self._add("disconnected")

    def on_account_status(self, status: Any) -> None:
        self._add("account_status", status)

    def on_stock_asset(self, asset: Any) -> None:
        self._add("asset", asset)

    def on_stock_order(self, order: Any) -> None:
        self._add("order", order)

    def on_stock_trade(self, trade: Any) -> None:
        self._add("trade", trade)

    def on_stock_position(self, position: Any) -> None:
        self._add("position", position)

    def on_order_error(self, error: Any) -> None:
        self._add("order_error", error)

    def on_cancel_error(self, error: Any) -> None:
        self._add("cancel_error", error)

    def on_order_stock_async_response(self, response: Any) -> None:
        self._add("order_resp", response)

    def on_cancel_order_stock_async_response(self, response: Any) -> None:
        self._add("cancel_resp", response)

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def since(self, mark: int) -> list[tuple[str, Any]]:
        with self._cond:
            return list(self.events[mark:])

    def of(self, kind: str, mark: int = 0) -> list[Any]:
        return [data for k, data in self.since(mark) if k == kind]

    def wait_for(self, predicate: Callable[[list[tuple[str, Any]]], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out; events: {[k for k, _ in self.events]}")
                self._cond.wait(remaining)


class _Trader(XtQuantTrader):  # type: ignore[misc]
    def __del__(self) -> None:
        # xttrader's __del__ restores an event loop it saved only when built on the main thread.
        pass


def new_trader(path: str, callback: Recorder) -> XtQuantTrader:
    """Built on a helper thread, as the broker does: XtQuantTrader.__init__ sets the building
    thread's asyncio event loop, which must not be the main thread's."""
    built: list[XtQuantTrader] = []
    builder = threading.Thread(target=lambda: built.append(_Trader(path, next(_sessions), callback)))
    builder.start()
    builder.join(5)
    return built[0]


def shape(events: list[tuple[str, Any]]) -> list[str]:
    """Event kinds, with the order status attached: ["order_resp", "order:48", "asset", ...]."""
    return [f"order:{data.order_status}" if kind == "order" else kind for kind, data in events]


class Desk:
    """One counter at a unique path, plus the traders connected to it."""

    def __init__(
        self, config: SimConfig, accounts: tuple[str, ...] = (ACCOUNT, OTHER), state_path: Any = None
    ) -> None:
        self.counter = sim.SimCounter(config, accounts, clock=lambda: NOW, state_path=state_path)
        self.path = f"sim://{uuid.uuid4().hex}"
        sim.register_counter(self.path, self.counter)
        self.traders: list[XtQuantTrader] = []

    def trader(self, *subscribe: str) -> tuple[XtQuantTrader, Recorder]:
        recorder = Recorder()
        trader = new_trader(self.path, recorder)
        trader.start()
        self.traders.append(trader)
        assert trader.connect() == 0
        for account_id in subscribe:
            assert trader.subscribe(StockAccount(account_id)) == 0
        self.flush(trader)
        return trader, recorder

    @staticmethod
    def flush(trader: XtQuantTrader) -> None:
        """Returns once every callback the counter delivered so far has run."""
        trader.query_account_status()

    def close(self) -> None:
        for trader in self.traders:
            if trader.executor is not None:  # started
                trader.stop()
            trader.loop.close()
        self.traders.clear()
        sim.unregister_counter(self.path)
        self.counter.close()


@pytest.fixture
def make_desk() -> Iterator[Callable[..., Desk]]:
    desks: list[Desk] = []

    def make(accounts: tuple[str, ...] = (ACCOUNT, OTHER), state_path: Any = None, **settings: Any) -> Desk:
        base = SimConfig(positions={ACCOUNT: {"000001.SZ": 1000, "600519.SH": 1050, "688981.SH": 300}})
        desk = Desk(replace(base, **settings), accounts, state_path)
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        desk.close()


@pytest.fixture
def desk(make_desk: Callable[..., Desk]) -> Desk:
    return make_desk()


ACC = StockAccount(ACCOUNT)


def asset_tuple(asset: Any) -> tuple[float, float, float, float, float]:
    return (asset.cash, asset.frozen_cash, asset.market_value, asset.total_asset, asset.fetch_balance)


# -- installation and the native layer ------------------------------------------------------


def test_install_is_idempotent_and_binds_xttrader() -> None:
    sim.install()
    sim.install()
    import xtquant
    import xtquant.xttrader

    assert sys.modules["xtquant.xtpythonclient"] is native
    assert xtquant.xtpythonclient is native
    assert xtquant.xttrader._XTQC_ is native


def test_install_refuses_a_trader_bound_to_another_native(monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = types.ModuleType("xtquant.xttrader")
    foreign._XTQC_ = types.ModuleType("xtquant.xtpythonclient")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "xtquant.xttrader", foreign)
    with pytest.raises(RuntimeError, match="install"):
        sim.install()


def test_native_request_classes_have_defaults() -> None:
    cancel = native.CancelOrderStockReq()
    assert (cancel.m_nOrderID, cancel.m_strOrderSysID, cancel.m_nMarket) == (-1, "", -1)
    orders = native.QueryStockOrdersReq()
    assert orders.m_bCanCancel is False and orders.m_nOrderID == -1
    assert native.QueryStockPositionsReq().m_strStockCode == ""
    assert native.QueryCreditDetailReq is native.QueryCreditDetailReq  # any *Req, cached
    assert native.TransferParam().m_strAccountID == ""
    with pytest.raises(AttributeError):
        native.NoSuchThing  # noqa: B018


def test_callbacks_run_on_the_counter_thread_never_inline(desk: Desk) -> None:
    client = native.XtQuantAsyncClient(desk.path.encode("gb18030"), "xtquant", next(_sessions))
    seen: list[tuple[str, Any]] = []
    done = threading.Event()

    def on_subscribe(seq: int, resp: int) -> None:
        seen.append((threading.current_thread().name, resp))
        done.set()

    client.bindOnSubscribeRespCallback(on_subscribe)
    client.bindOnUpdateAccountStatusCallback(lambda data: None)
    client.init()
    client.start()
    assert client.connect() == 0
    req = native.SubscribeReq()
    req.m_strAccountID = ACCOUNT
    seq = client.nextSeq()
    client.subscribeWithSeq(seq, req)
    assert done.wait(5)
    assert seen == [("sim-counter", 0)]
    assert client.nextSeq() > seq
    client.stop()


def test_connect_results(desk: Desk) -> None:
    unknown = new_trader(f"sim://{uuid.uuid4().hex}", Recorder())
    desk.traders.append(unknown)
    unknown.start()
    assert unknown.connect() != 0
    trader, recorder = desk.trader()
    assert trader.subscribe(StockAccount("9999999999")) != 0
    assert trader.subscribe(ACC) == 0
    desk.flush(trader)
    statuses = recorder.of("account_status")
    assert [(s.account_id, s.account_type, s.status) for s in statuses] == [(ACCOUNT, C.SECURITY_ACCOUNT, 0)]


def test_unsupported_requests_raise_at_once(desk: Desk) -> None:
    trader, _ = desk.trader(ACCOUNT)
    with pytest.raises(NotImplementedError, match="queryPositionStatisticsWithSeq is not supported by the simulated counter"):
        trader.query_position_statistics(ACC)


def test_credit_and_ipo_queries_answer_as_a_cash_account_would(desk: Desk) -> None:
    trader, _ = desk.trader(ACCOUNT)
    for query in (trader.query_credit_detail, trader.query_stk_compacts, trader.query_credit_subjects,
                  trader.query_credit_slo_code, trader.query_credit_assure):
        assert query(ACC) == []
    assert trader.query_ipo_data() == {}
    # Quota from holdings: SH 1,000 shares per 10,000 CNY of SH stock, SZ 500 per 5,000 of SZ.
    held = {p.stock_code: p.market_value for p in trader.query_stock_positions(ACC)}
    sh = sum(v for c, v in held.items() if c.endswith(".SH") and not c.startswith("5"))
    sz = sum(v for c, v in held.items() if c.endswith(".SZ") and not c.startswith("1"))
    assert trader.query_new_purchase_limit(ACC) == {"SH": int(sh // 10_000) * 1_000, "SZ": int(sz // 5_000) * 500}


# -- orders: acceptance, fills, push order, accounting -----------------------------------------


def test_limit_buy_below_last_rests_and_freezes_cash(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    mark = recorder.mark()
    seq = trader.order_stock_async(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50, "grid", "seed")
    desk.flush(trader)
    events = recorder.since(mark)
    assert shape(events) == ["order_resp", "order:48", "order:50", "asset"]
    response = events[0][1]
    assert response.seq == seq and response.order_id > 0 and response.account_id == ACCOUNT
    order = events[2][1]
    assert order.order_id == response.order_id
    assert (order.stock_code, order.order_volume, order.price) == ("600000.SH", 100, 10.5)
    assert order.price_type == rules.BROKER_PRICE_LIMIT  # the counter's code for a limit order, not FIX_PRICE
    assert events[1][1].order_sysid == ""  # unreported: no contract number yet
    assert (order.order_type, order.direction, order.offset_flag) == (C.STOCK_BUY, 48, 48)
    assert (order.strategy_name, order.order_remark, order.instrument_name) == ("grid", "seed", "浦发银行")
    assert order.order_time == int(NOW) and order.order_sysid.isdigit() and order.secu_account.startswith("A")
    asset = events[3][1]
    assert asset.frozen_cash == 1055.0  # 1050 + minimum commission 5
    assert asset.cash == CASH - 1055.0
    assert asset_tuple(trader.query_stock_asset(ACC)) == asset_tuple(asset)
    open_orders = trader.query_stock_orders(ACC, cancelable_only=True)
    assert [(o.order_id, o.order_status) for o in open_orders] == [(order.order_id, C.ORDER_REPORTED)]


def test_marketable_buy_fills_at_last_with_exact_push_order(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    before = trader.query_stock_asset(ACC)
    mark = recorder.mark()
    trader.order_stock_async(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.70)
    desk.flush(trader)
    events = recorder.since(mark)
    assert shape(events) == ["order_resp", "order:48", "order:50", "asset", "trade", "order:56", "position", "asset"]
    order_id = events[0][1].order_id
    assert events[3][1].frozen_cash == 1075.0  # frozen at the limit price 10.70 before the fill
    trade = events[4][1]
    assert (trade.order_id, trade.traded_price, trade.traded_volume, trade.traded_amount, trade.commission) == (
        order_id,
        10.6,
        100,
        1060.0,
        5.0,
    )
    assert trade.traded_time == int(NOW) and trade.offset_flag == 48
    assert len(trade.traded_id) == 16 and trade.traded_id.isdigit()
    assert trade.order_sysid == events[5][1].order_sysid and trade.order_sysid.isdigit()
    filled = events[5][1]
    assert (filled.order_status, filled.traded_volume, filled.traded_price) == (C.ORDER_SUCCEEDED, 100, 10.6)
    position = events[6][1]
    assert (position.volume, position.can_use_volume, position.yesterday_volume) == (100, 0, 0)  # T+1
    assert position.frozen_volume == 0
    assert position.on_road_volume == 0
    assert position.avg_price == pytest.approx(10.65)  # commission is part of the cost
    assert position.open_price == pytest.approx(10.6)
    assert (position.market_value, position.last_price, position.float_profit) == (1060.0, 10.6, -5.0)
    assert position.profit_rate == pytest.approx(-5 / 1065)
    asset = events[7][1]
    assert asset.cash == before.cash - 1065.0
    assert asset.frozen_cash == 0.0
    assert asset.market_value == before.market_value + 1060.0
    assert asset.total_asset == pytest.approx(asset.cash + asset.frozen_cash + asset.market_value)
    assert asset.fetch_balance == asset.cash
    # queries agree with the pushes
    assert asset_tuple(trader.query_stock_asset(ACC)) == asset_tuple(asset)
    assert trader.query_stock_order(ACC, order_id).order_status == C.ORDER_SUCCEEDED
    assert [t.traded_id for t in trader.query_stock_trades(ACC)] == [trade.traded_id]
    queried = trader.query_stock_position(ACC, "600000.SH")
    assert vars(queried) == vars(position)


def test_sync_order_stock_returns_the_order_id(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    order_id = trader.order_stock(ACC, "000001.SZ", C.STOCK_BUY, 200, C.FIX_PRICE, 11.80)
    desk.flush(trader)
    assert order_id > 0
    assert [o.order_status for o in recorder.of("order") if o.order_id == order_id] == [48, 50, 56]
    second = trader.order_stock(ACC, "000001.SZ", C.STOCK_BUY, 100, C.FIX_PRICE, 11.00)
    assert second > order_id


def test_sell_freezes_shares_and_fills(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    before = trader.query_stock_asset(ACC)
    mark = recorder.mark()
    trader.order_stock_async(ACC, "000001.SZ", C.STOCK_SELL, 500, C.FIX_PRICE, 11.70)
    desk.flush(trader)
    events = recorder.since(mark)
    assert shape(events) == [
        "order_resp",
        "order:48",
        "order:50",
        "position",
        "asset",
        "trade",
        "order:56",
        "position",
        "asset",
    ]
    frozen = events[3][1]
    assert (frozen.volume, frozen.can_use_volume, frozen.frozen_volume) == (1000, 500, 500)
    assert events[4][1].frozen_cash == 0.0  # sells freeze shares, not cash
    trade = events[5][1]
    assert (trade.traded_price, trade.traded_amount, trade.commission, trade.offset_flag) == (11.8, 5900.0, 5.0, 49)
    assert events[6][1].offset_flag == 49
    after = events[7][1]
    assert (after.volume, after.can_use_volume, after.frozen_volume, after.yesterday_volume) == (500, 500, 0, 1000)
    assert after.avg_price == pytest.approx(11.8)  # sells leave the cost per share unchanged
    assert after.secu_account.startswith("0")
    asset = events[8][1]
    assert asset.cash == before.cash + 5900.0 - 5.0
    assert asset.market_value == before.market_value - 5900.0


def test_t_plus_one_and_next_day(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    assert trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60) > 0
    refused = trader.order_stock(ACC, "600000.SH", C.STOCK_SELL, 100, C.FIX_PRICE, 10.60)
    desk.flush(trader)
    assert refused > 0
    assert [(e.error_id, "[120149]" in e.error_msg) for e in recorder.of("order_error")] == [(-61, True)]
    assert trader.query_stock_order(ACC, refused).order_status == C.ORDER_JUNK
    desk.counter.next_day()
    position = trader.query_stock_position(ACC, "600000.SH")
    assert (position.volume, position.can_use_volume, position.yesterday_volume) == (100, 100, 100)
    mark = recorder.mark()
    sold = trader.order_stock(ACC, "600000.SH", C.STOCK_SELL, 100, C.FIX_PRICE, 10.60)
    desk.flush(trader)
    assert [o.order_status for o in recorder.of("order", mark) if o.order_id == sold][-1] == C.ORDER_SUCCEEDED


# -- counter refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "side", "volume", "price_type", "price", "error_id"),
    [
        ("600001.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.00, 120100),  # not in the table
        ("600000.SH", C.STOCK_BUY, 150, C.FIX_PRICE, 10.60, 130003),  # not a lot
        ("600000.SH", C.STOCK_BUY, 0, C.FIX_PRICE, 10.60, 130003),
        ("688981.SH", C.STOCK_BUY, 150, C.FIX_PRICE, 88.00, 130003),  # STAR: at least 200
        ("600519.SH", C.STOCK_SELL, 30, C.FIX_PRICE, 1460.00, 130003),  # odd lot not clearing the 50
        ("600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.555, 130004),  # off tick
        ("510300.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 3.9505, 130004),
        ("600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 11.67, 130006),  # one tick above the up limit
        ("600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 9.53, 130006),  # one tick below the down limit
        ("000001.SZ", C.STOCK_SELL, 100, C.FIX_PRICE, 12.99, 130006),
        ("600519.SH", C.STOCK_BUY, 700, C.FIX_PRICE, 1460.00, 120147),  # 1,022,000 > cash
        ("000001.SZ", C.STOCK_SELL, 1100, C.FIX_PRICE, 11.80, 120149),  # holds 1000
        ("300750.SZ", C.STOCK_SELL, 100, C.FIX_PRICE, 265.00, 120149),  # holds none
        ("600000.SH", C.STOCK_BUY, 100, C.MARKET_BEST, 0.0, 130001),  # a futures price type
        ("600000.SH", C.STOCK_BUY, 100, 99, 10.60, 130001),
        ("600000.SH", C.STOCK_BUY, 100, C.MARKET_SZ_INSTBUSI_RESTCANCEL, 0.0, 130002),  # SZ type on SH
        ("000001.SZ", C.STOCK_BUY, 100, C.MARKET_SH_CONVERT_5_CANCEL, 0.0, 130002),  # SH type on SZ
        ("430047.BJ", C.STOCK_BUY, 100, C.MARKET_SZ_FULL_OR_CANCEL, 0.0, 130002),
        ("600000.SH", 99, 100, C.FIX_PRICE, 10.60, 120120),  # not a stock order type
    ],
)
def test_counter_refusals_junk_the_order(
    desk: Desk, code: str, side: int, volume: int, price_type: int, price: float, error_id: int
) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    before = asset_tuple(trader.query_stock_asset(ACC))
    positions_before = [vars(p) for p in trader.query_stock_positions(ACC)]
    mark = recorder.mark()
    seq = trader.order_stock_async(ACC, code, side, volume, price_type, price, "s", "r")
    desk.flush(trader)
    events = recorder.since(mark)
    assert shape(events) == ["order_resp", "order:57", "order_error"]
    response, junk, error = (data for _, data in events)
    assert response.seq == seq and response.order_id > 0
    assert junk.order_id == response.order_id
    if price_type == C.FIX_PRICE:
        assert junk.price == price
    assert junk.status_msg.startswith(f"[COUNTER] [{error_id}][")
    assert junk.order_sysid == f"xt{junk.order_id}"  # never got a contract number
    assert junk.price_type == rules.broker_price_type(price_type)
    assert (error.order_id, error.error_id, error.strategy_name, error.order_remark) == (
        response.order_id,
        -61,  # QMT's id for a refusal by the counter; the counter's own code is in the message
        "s",
        "r",
    )
    assert f"[{error_id}]" in error.error_msg
    # "<price type><side> [<market><code>] <the counter's text>", as xtquant's on_order_error shows it
    digits, _, market = code.partition(".")
    assert error.error_msg.endswith(f" [{market}{digits}] {junk.status_msg}") and error.seq == seq
    assert asset_tuple(trader.query_stock_asset(ACC)) == before
    assert [vars(p) for p in trader.query_stock_positions(ACC)] == positions_before
    assert trader.query_stock_order(ACC, response.order_id).order_status == C.ORDER_JUNK
    assert trader.query_stock_orders(ACC, cancelable_only=True) == []


@pytest.mark.parametrize(
    ("code", "side", "volume", "price"),
    [
        ("600000.SH", C.STOCK_BUY, 100, 11.66),  # exactly the up limit
        ("600000.SH", C.STOCK_SELL, 100, 9.54),  # exactly the down limit
        ("510300.SH", C.STOCK_BUY, 100, 4.345),
        ("688981.SH", C.STOCK_BUY, 201, 88.00),
        ("688981.SH", C.STOCK_SELL, 300, 88.00),
        ("600519.SH", C.STOCK_SELL, 50, 1460.00),  # clears the odd remainder of 1050
        ("600519.SH", C.STOCK_SELL, 1050, 1460.00),
    ],
)
def test_orders_at_the_edges_are_accepted(
    make_desk: Callable[..., Desk], code: str, side: int, volume: int, price: float
) -> None:
    desk = make_desk(positions={ACCOUNT: {"600000.SH": 100, "600519.SH": 1050, "688981.SH": 300}})
    trader, recorder = desk.trader(ACCOUNT)
    order_id = trader.order_stock(ACC, code, side, volume, C.FIX_PRICE, price)
    desk.flush(trader)
    assert recorder.of("order_error") == []
    assert trader.query_stock_order(ACC, order_id).order_status == C.ORDER_SUCCEEDED


def test_cash_check_includes_commission(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(cash=1065.0)
    trader, recorder = desk.trader(ACCOUNT)
    assert trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60) > 0
    desk.flush(trader)
    assert recorder.of("order_error") == []
    assert trader.query_stock_asset(ACC).cash == 0.0
    poorer = make_desk(cash=1064.99)
    trader, recorder = poorer.trader(ACCOUNT)
    trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    poorer.flush(trader)
    assert [(e.error_id, "[120147]" in e.error_msg) for e in recorder.of("order_error")] == [(-61, True)]


def test_remark_is_truncated_to_24_bytes(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    order_id = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50, "s", "备注" * 5)
    assert trader.query_stock_order(ACC, order_id).order_remark == "备注" * 4


# -- request-level failures ---------------------------------------------------------------------


def test_request_level_failures_create_no_order(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    for account_id in (OTHER, "9999999999"):  # exists but not subscribed here / unknown
        mark = recorder.mark()
        assert trader.order_stock(StockAccount(account_id), "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.6) == -1
        desk.flush(trader)
        errors = recorder.of("order_error", mark)
        assert len(errors) == 1 and errors[0].error_id == -1 and errors[0].order_id == -1
        assert account_id in errors[0].error_msg
        assert recorder.of("order", mark) == []
    assert trader.query_stock_orders(StockAccount(OTHER)) is None
    assert trader.query_stock_asset(StockAccount(OTHER)) is None
    assert desk.counter.books(OTHER)["orders"] == {}
    mark = recorder.mark()
    assert trader.cancel_order_stock(StockAccount(OTHER), 1) == -1
    desk.flush(trader)
    assert [e.error_id for e in recorder.of("cancel_error", mark)] == [-1]


def test_async_failure_response_then_error(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    mark = recorder.mark()
    seq = trader.order_stock_async(StockAccount(OTHER), "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.6)
    desk.flush(trader)
    events = recorder.since(mark)
    assert shape(events) == ["order_resp", "order_error"]
    assert events[0][1].seq == seq and events[0][1].order_id == -1 and events[0][1].error_msg
    assert events[1][1].seq == seq


# -- cancels -------------------------------------------------------------------------------------


def test_cancel_open_order(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    start = asset_tuple(trader.query_stock_asset(ACC))
    order_id = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 300, C.FIX_PRICE, 10.50)
    desk.flush(trader)
    mark = recorder.mark()
    assert trader.cancel_order_stock(ACC, order_id) == 0
    desk.flush(trader)
    events = recorder.since(mark)
    assert shape(events) == ["order:51", "order:54", "asset"]
    assert asset_tuple(events[-1][1]) == start
    assert trader.query_stock_orders(ACC, cancelable_only=True) == []
    # cancelling again: accepted as a request, refused by the counter
    mark = recorder.mark()
    assert trader.cancel_order_stock(ACC, order_id) == 0
    desk.flush(trader)
    errors = recorder.of("cancel_error", mark)
    assert [(e.order_id, e.error_id) for e in errors] == [(order_id, 110003)]
    assert errors[0].error_msg.startswith("[COUNTER] [110003][该委托已成交或已撤单，不能撤单]")
    assert recorder.of("order", mark) == []


def test_cancel_sell_unfreezes_shares(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    order_id = trader.order_stock(ACC, "000001.SZ", C.STOCK_SELL, 400, C.FIX_PRICE, 12.00)
    desk.flush(trader)
    assert trader.query_stock_position(ACC, "000001.SZ").frozen_volume == 400
    mark = recorder.mark()
    seq = trader.cancel_order_stock_async(ACC, order_id)
    desk.flush(trader)
    events = recorder.since(mark)
    assert shape(events) == ["cancel_resp", "order:51", "order:54", "position", "asset"]
    assert events[0][1].seq == seq and events[0][1].cancel_result == 0 and events[0][1].order_id == order_id
    position = events[3][1]
    assert (position.volume, position.can_use_volume, position.frozen_volume) == (1000, 1000, 0)


def test_cancel_filled_unknown_and_by_sysid(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    filled = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    mark = recorder.mark()
    assert trader.cancel_order_stock(ACC, filled) == 0
    assert trader.cancel_order_stock(ACC, 424242) == -1
    desk.flush(trader)
    assert [(e.order_id, e.error_id) for e in recorder.of("cancel_error", mark)] == [(filled, 110003), (424242, 110002)]

    resting = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.40)
    sysid = trader.query_stock_order(ACC, resting).order_sysid
    assert trader.cancel_order_stock_sysid(ACC, C.SZ_MARKET, sysid) == -1  # wrong market
    mark = recorder.mark()
    assert trader.cancel_order_stock_sysid(ACC, "SH", sysid) == 0
    desk.flush(trader)
    assert [o.order_status for o in recorder.of("order", mark)] == [51, 54]
    errors = recorder.of("cancel_error")
    assert errors[-1].order_sysid == sysid and errors[-1].market == C.SZ_MARKET
    assert trader.cancel_order_stock_sysid(ACC, C.SH_MARKET, "no-such") == -1


# -- matching: partial fills, price moves, market orders -----------------------------------------


def test_partial_fills_per_matching_pass(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(fill_volume=100)
    trader, recorder = desk.trader(ACCOUNT)
    start = trader.query_stock_asset(ACC)
    order_id = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 300, C.FIX_PRICE, 10.70)
    desk.flush(trader)
    order = trader.query_stock_order(ACC, order_id)
    assert (order.order_status, order.traded_volume) == (C.ORDER_PART_SUCC, 100)
    asset = trader.query_stock_asset(ACC)
    remaining_freeze = 200 * 10.70 + 5
    assert asset.frozen_cash == pytest.approx(remaining_freeze)
    assert asset.cash == pytest.approx(start.cash - 1065 - remaining_freeze)
    desk.counter.step()
    desk.flush(trader)
    assert trader.query_stock_order(ACC, order_id).traded_volume == 200
    mark = recorder.mark()
    assert trader.cancel_order_stock(ACC, order_id) == 0
    desk.flush(trader)
    assert shape(recorder.since(mark)) == ["order:52", "order:53", "asset"]
    done = trader.query_stock_order(ACC, order_id)
    assert (done.order_status, done.traded_volume, done.traded_price) == (C.ORDER_PART_CANCEL, 200, 10.6)
    asset = trader.query_stock_asset(ACC)
    assert asset.frozen_cash == 0.0
    assert asset.cash == pytest.approx(start.cash - 2 * 1065)
    trades = trader.query_stock_trades(ACC)
    assert [t.traded_volume for t in trades] == [100, 100]
    assert len({t.traded_id for t in trades}) == 2


def test_step_fills_remaining_volume_to_the_end(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(fill_volume=100)
    trader, recorder = desk.trader(ACCOUNT)
    order_id = trader.order_stock(ACC, "000001.SZ", C.STOCK_SELL, 300, C.FIX_PRICE, 11.80)
    for _ in range(2):
        desk.counter.step()
    desk.counter.step()  # one pass more than needed: nothing happens
    desk.flush(trader)
    statuses = [o.order_status for o in recorder.of("order") if o.order_id == order_id]
    assert statuses == [48, 50, 55, 55, 56]
    position = trader.query_stock_position(ACC, "000001.SZ")
    assert (position.volume, position.can_use_volume, position.frozen_volume) == (700, 700, 0)


def test_price_moves_match_resting_orders(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    buy = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50)
    sell = trader.order_stock(ACC, "000001.SZ", C.STOCK_SELL, 100, C.FIX_PRICE, 12.00)
    desk.counter.set_price("600000.SH", 10.51)
    desk.counter.set_price("000001.SZ", 11.99)
    desk.flush(trader)
    assert recorder.of("trade") == []
    desk.counter.set_price("600000.SH", 10.48)  # through the limit: fills at the last price
    desk.counter.set_price("000001.SZ", 12.00)
    desk.flush(trader)
    trades = {t.order_id: t for t in recorder.of("trade")}
    assert trades[buy].traded_price == 10.48
    assert trades[sell].traded_price == 12.00
    assert desk.counter.last_price("600000.SH") == 10.48
    position = trader.query_stock_position(ACC, "600000.SH")
    assert (position.last_price, position.market_value) == (10.48, 1048.0)
    with pytest.raises(ValueError):
        desk.counter.set_price("600000.SH", 11.67)
    with pytest.raises(ValueError):
        desk.counter.set_price("999999.SH", 1.0)


def test_latest_price_and_market_orders(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(fill_volume=100)
    trader, recorder = desk.trader(ACCOUNT)

    sent: dict[int, int] = {}  # order id -> the request's price type

    def place(code: str, side: int, volume: int, price_type: int) -> list[int]:
        order_id = trader.order_stock(ACC, code, side, volume, price_type, 0.0)
        desk.flush(trader)
        assert order_id > 0
        sent[order_id] = price_type
        return [o.order_status for o in recorder.of("order") if o.order_id == order_id]

    latest = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.LATEST_PRICE, 0.0)
    sent[latest] = C.LATEST_PRICE
    desk.flush(trader)
    order = trader.query_stock_order(ACC, latest)
    assert (order.order_status, order.price, order.traded_price) == (C.ORDER_SUCCEEDED, 10.6, 10.6)

    assert place("600000.SH", C.STOCK_BUY, 200, C.MARKET_SH_CONVERT_5_CANCEL) == [48, 50, 55, 53]
    assert place("000001.SZ", C.STOCK_BUY, 200, C.MARKET_SZ_INSTBUSI_RESTCANCEL) == [48, 50, 55, 53]
    assert place("000001.SZ", C.STOCK_SELL, 200, C.MARKET_SZ_CONVERT_5_CANCEL) == [48, 50, 55, 53]
    assert place("000001.SZ", C.STOCK_BUY, 100, C.MARKET_SZ_FULL_OR_CANCEL) == [48, 50, 56]
    assert place("000001.SZ", C.STOCK_BUY, 200, C.MARKET_SZ_FULL_OR_CANCEL) == [57]
    assert "[130009]" in recorder.of("order_error")[-1].error_msg
    assert place("430047.BJ", C.STOCK_BUY, 100, C.MARKET_SH_CONVERT_5_CANCEL) == [48, 50, 56]
    rests = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 200, C.MARKET_SH_CONVERT_5_LIMIT, 0.0)
    assert trader.query_stock_order(ACC, rests).order_status == C.ORDER_PART_SUCC
    assert trader.query_stock_order(ACC, rests).price == 10.6  # the rest is a limit order at the last price
    desk.counter.step()
    assert trader.query_stock_order(ACC, rests).order_status == C.ORDER_SUCCEEDED
    assert place("600000.SH", C.STOCK_BUY, 100, C.MARKET_PEER_PRICE_FIRST) == [48, 50, 56]
    assert place("000001.SZ", C.STOCK_BUY, 100, C.MARKET_MINE_PRICE_FIRST) == [48, 50, 56]
    # Records carry the counter's price-type codes; the matching above followed the request's types.
    reported = {o.order_id: o.price_type for o in trader.query_stock_orders(ACC) if o.order_id in sent}
    assert reported == {order_id: rules.BROKER_PRICE_TYPES[sent[order_id]] for order_id in sent}
    assert set(reported.values()) == {50, 84, 86, 87, 88, 89}
    assert {o.price_type for o in recorder.of("order") if o.order_id in sent} == set(reported.values())
    books = desk.counter.books(ACCOUNT)
    assert books["frozen_cash"] == 0.0
    assert all(p["frozen_volume"] == 0 for p in books["positions"].values())


# -- sessions, subscriptions, connection loss ----------------------------------------------------


def test_pushes_go_only_to_sessions_that_subscribed(desk: Desk) -> None:
    owner, owner_events = desk.trader(ACCOUNT)
    watcher, watcher_events = desk.trader(ACCOUNT)
    stranger, stranger_events = desk.trader(OTHER)
    marks = [r.mark() for r in (owner_events, watcher_events, stranger_events)]
    owner.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    owner.order_stock(ACC, "600000.SH", C.STOCK_BUY, 150, C.FIX_PRICE, 10.60)  # junk: error to owner only
    for trader in (owner, watcher, stranger):
        desk.flush(trader)
    recorders = (owner_events, watcher_events, stranger_events)
    owner_seen, watcher_seen, stranger_seen = (r.since(m) for r, m in zip(recorders, marks))
    assert shape(watcher_seen) == [
        "order:48",
        "order:50",
        "asset",
        "trade",
        "order:56",
        "position",
        "asset",
        "order:57",
    ]
    assert shape(owner_seen).count("order_error") == 1
    assert stranger_seen == []
    assert watcher.unsubscribe(ACC) == 0
    mark = watcher_events.mark()
    owner.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50)
    desk.flush(owner)
    desk.flush(watcher)
    assert watcher_events.since(mark) == []


def test_drop_connections_then_reconnect(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    other, other_events = desk.trader(OTHER)
    assert desk.counter.drop_connections("test") == 2
    desk.flush(trader)
    desk.flush(other)
    assert recorder.of("disconnected") == [None] and other_events.of("disconnected") == [None]
    assert trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60) == -1
    assert "connection lost" in recorder.of("order_error")[-1].error_msg
    assert trader.query_stock_asset(ACC) is None
    assert trader.subscribe(ACC) != 0
    assert desk.counter.books(ACCOUNT)["orders"] == {}

    desk.counter.refuse_connections(True)
    refused = new_trader(desk.path, Recorder())
    refused.start()
    desk.traders.append(refused)
    assert refused.connect() != 0
    assert trader.connect() != 0
    desk.counter.refuse_connections(False)

    assert trader.connect() == 0  # same trader, new session
    assert trader.subscribe(ACC) == 0
    assert trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60) > 0
    fresh, fresh_events = desk.trader(ACCOUNT)
    assert fresh.query_stock_asset(ACC).frozen_cash == 0.0
    assert desk.counter.connected_sessions() == 2


def test_matching_goes_on_while_the_link_is_down(desk: Desk) -> None:
    old, old_events = desk.trader(ACCOUNT)
    buy = old.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50, "s", "rest-buy")
    sell = old.order_stock(ACC, "000001.SZ", C.STOCK_SELL, 300, C.FIX_PRICE, 11.90, "s", "rest-sell")
    desk.flush(old)
    assert desk.counter.drop_connections("link down") == 1
    old_events.wait_for(lambda events: events[-1][0] == "disconnected")
    mark = old_events.mark()
    desk.counter.set_price("600000.SH", 10.50)  # the buy fills while nobody listens
    desk.counter.set_price("000001.SZ", 11.90)
    desk.counter.step()
    assert desk.counter.books(ACCOUNT)["orders"][sell]["order_status"] == C.ORDER_SUCCEEDED

    fresh, fresh_events = desk.trader(ACCOUNT)  # a NEW XtQuantTrader: new native client and session
    assert desk.counter.connected_sessions() == 1
    orders = {o.order_id: o for o in fresh.query_stock_orders(ACC)}
    assert (orders[buy].order_status, orders[buy].traded_volume, orders[buy].traded_price) == (56, 100, 10.5)
    assert (orders[sell].order_status, orders[sell].order_remark) == (56, "rest-sell")
    assert sorted((t.order_id, t.traded_volume) for t in fresh.query_stock_trades(ACC)) == [(buy, 100), (sell, 300)]
    assert fresh.query_stock_position(ACC, "600000.SH").volume == 100
    assert fresh.query_stock_position(ACC, "000001.SZ").volume == 700
    asset = fresh.query_stock_asset(ACC)
    assert asset.frozen_cash == 0.0 and asset.cash == CASH - 1050.0 - 5.0 + 3570.0 - 5.0

    # The old session stays dead: no push reached it, none does now, its requests fail.
    fresh_mark = fresh_events.mark()
    fresh.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50, "s", "after")
    desk.flush(fresh)
    assert "trade" in shape(fresh_events.since(fresh_mark))
    assert old.query_stock_asset(ACC) is None and old.query_stock_orders(ACC) is None
    assert old.subscribe(ACC) != 0
    desk.flush(fresh)
    assert old_events.since(mark) == []


def walk_table(tmp_path: Any) -> str:
    """The held codes and 600000.SH: the walk tests step a few quotes, not the full table's thousands."""
    path = tmp_path / "walk.csv"
    path.write_text("code,name,prev_close\n000001.SZ,平安银行,11.80\n600000.SH,浦发银行,10.60\n"
                    "600519.SH,贵州茅台,1460.00\n688981.SH,中芯国际,88.00\n", encoding="utf-8")
    return str(path)


def test_the_walk_fills_resting_orders_during_an_outage(make_desk: Callable[..., Desk], tmp_path: Any) -> None:
    # Seed 164 walks 600000.SH (from the order on) from 10.60 to 10.29 on step 29, never below 10.39 before.
    desk = make_desk(price_model="walk", tick_interval=0.02, walk_step=0.01, seed=164,
                     instruments_file=walk_table(tmp_path))
    old, old_events = desk.trader(ACCOUNT)
    buy = old.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.30, "s", "walk-buy")
    desk.counter.drop_connections()
    assert desk.counter.books(ACCOUNT)["orders"][buy]["order_status"] == C.ORDER_REPORTED, "filled before the drop"
    old_events.wait_for(lambda events: events[-1][0] == "disconnected")
    mark = old_events.mark()
    deadline = time.monotonic() + 5.0
    while desk.counter.books(ACCOUNT)["orders"][buy]["order_status"] != C.ORDER_SUCCEEDED:
        assert time.monotonic() < deadline, "the walk never filled the resting buy"
        time.sleep(0.02)
    fresh, _ = desk.trader(ACCOUNT)
    (trade,) = fresh.query_stock_trades(ACC)
    assert (trade.order_id, trade.traded_price, trade.order_remark) == (buy, 10.29, "walk-buy")
    desk.flush(fresh)
    assert old_events.since(mark) == []


def test_refuse_connections_for_a_while(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    desk.counter.drop_connections()
    desk.counter.refuse_connections_for(0.3)
    started = time.monotonic()
    retry = new_trader(desk.path, Recorder())
    retry.start()
    desk.traders.append(retry)
    assert retry.connect() != 0
    deadline = started + 5.0
    while retry.connect() != 0:
        assert time.monotonic() < deadline, "still refused"
        time.sleep(0.02)
    assert time.monotonic() - started >= 0.3
    assert retry.subscribe(ACC) == 0 and retry.query_stock_asset(ACC).cash == CASH
    desk.counter.refuse_connections_for(60.0)
    late = new_trader(desk.path, Recorder())
    late.start()
    desk.traders.append(late)
    assert late.connect() != 0
    desk.counter.refuse_connections(False)  # ends a timed refusal early
    assert late.connect() == 0
    assert desk.counter.connected_sessions() == 2 and recorder.of("disconnected") == [None]


def test_closed_counter_answers_with_failures(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    desk.counter.close()
    recorder.wait_for(lambda events: ("disconnected", None) in events)
    assert trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60) == -1
    assert trader.query_stock_orders(ACC) is None
    assert trader.subscribe(ACC) != 0
    late = new_trader(desk.path, Recorder())
    late.start()
    desk.traders.append(late)
    assert late.connect() != 0
    assert late.query_stock_asset(ACC) is None  # never connected: still answered, never hangs


# -- days, queries, books ------------------------------------------------------------------------


def test_next_day_expires_orders_and_moves_the_band(desk: Desk) -> None:
    trader, recorder = desk.trader(ACCOUNT)
    resting = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.40)
    trader.order_stock(ACC, "688981.SH", C.STOCK_SELL, 300, C.FIX_PRICE, 88.00)  # sells the whole position
    desk.counter.set_price("600000.SH", 11.00)
    desk.flush(trader)
    assert trader.query_stock_position(ACC, "688981.SH").volume == 0  # listed at zero for the day
    mark = recorder.mark()
    desk.counter.next_day()
    desk.flush(trader)
    assert [(o.order_id, o.order_status) for o in recorder.of("order", mark)] == [(resting, C.ORDER_CANCELED)]
    assert trader.query_stock_orders(ACC) == [] and trader.query_stock_trades(ACC) == []
    assert trader.query_stock_position(ACC, "688981.SH") is None
    assert desk.counter.price_limits("600000.SH") == (9.9, 12.1)
    asset = trader.query_stock_asset(ACC)
    assert asset.frozen_cash == 0.0 and asset_tuple(recorder.of("asset")[-1]) == asset_tuple(asset)
    assert trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 12.10) > resting


def test_account_queries(desk: Desk) -> None:
    trader, _ = desk.trader(ACCOUNT)
    infos = trader.query_account_infos()
    assert [(i.account_id, i.account_type, i.broker_type, i.login_status) for i in infos] == [
        (ACCOUNT, 2, 2, 0),
        (OTHER, 2, 2, 0),
    ]
    assert all(hasattr(i, "platform_id") and hasattr(i, "account_classification") for i in infos)
    assert [(s.account_id, s.account_type, s.status) for s in trader.query_account_status()] == [
        (ACCOUNT, 2, 0),
        (OTHER, 2, 0),
    ]
    placed = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50)
    assert trader.query_stock_order(ACC, -1) is None  # a failed order's id never matches "all"
    assert trader.query_stock_order(ACC, 0) is None
    assert trader.query_stock_order(ACC, 12345) is None
    assert trader.query_stock_order(ACC, placed).order_id == placed
    assert trader.query_stock_position(ACC, "300750.SZ") is None
    positions = {p.stock_code: p for p in trader.query_stock_positions(ACC)}
    assert set(positions) == {"000001.SZ", "600519.SH", "688981.SH"}
    held = positions["600519.SH"]
    assert (held.volume, held.can_use_volume, held.yesterday_volume, held.avg_price) == (1050, 1050, 1050, 1460.0)
    assert held.market_value == 1050 * 1460.0 and held.float_profit == 0.0
    asset = trader.query_stock_asset(ACC)
    assert asset.cash + asset.frozen_cash == CASH and asset.market_value == 11800.0 + 1533000.0 + 26400.0
    assert asset.total_asset == CASH + asset.market_value
    assert trader.query_stock_asset(StockAccount(OTHER)) is None  # not subscribed in this session


def test_books_snapshot_matches_queries(desk: Desk) -> None:
    trader, _ = desk.trader(ACCOUNT)
    order_id = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    books = desk.counter.books(ACCOUNT)
    assert books["orders"][order_id] == vars(trader.query_stock_order(ACC, order_id))
    assert books["positions"]["600000.SH"] == vars(trader.query_stock_position(ACC, "600000.SH"))
    assert books["trades"] == [vars(t) for t in trader.query_stock_trades(ACC)]
    assert asset_tuple(types.SimpleNamespace(**books)) == asset_tuple(trader.query_stock_asset(ACC))


def test_accounting_stays_consistent(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(fill_volume=200, commission_rate=0.0003, commission_min=5.0)
    trader, recorder = desk.trader(ACCOUNT)
    counter = desk.counter
    script = [
        ("600000.SH", C.STOCK_BUY, 1000, 10.70),
        ("600000.SH", C.STOCK_BUY, 500, 10.40),
        ("000001.SZ", C.STOCK_SELL, 700, 11.70),
        ("300750.SZ", C.STOCK_BUY, 300, 266.00),
        ("600519.SH", C.STOCK_SELL, 250, 1461.00),
        ("510300.SH", C.STOCK_BUY, 10000, 3.962),
        ("688981.SH", C.STOCK_SELL, 250, 87.50),
    ]
    ids = [trader.order_stock(ACC, *order[:3], C.FIX_PRICE, order[3]) for order in script]
    counter.set_price("600000.SH", 10.40)
    counter.step()
    trader.cancel_order_stock(ACC, ids[3])
    counter.set_price("600519.SH", 1461.00)
    counter.step()
    counter.set_price("510300.SH", 3.950)
    desk.flush(trader)
    assert recorder.of("order_error") == []

    books = counter.books(ACCOUNT)
    cents = lambda value: Decimal(str(value)).quantize(Decimal("0.01"))  # noqa: E731
    flow = Decimal(0)
    for trade in books["trades"]:
        amount = cents(trade["traded_amount"])
        fee = cents(trade["commission"])
        assert fee == rules.commission(amount, Decimal("0.0003"), 5)
        flow += -(amount + fee) if trade["order_type"] == C.STOCK_BUY else amount - fee
    assert cents(books["cash"]) + cents(books["frozen_cash"]) == Decimal("1000000.00") + flow
    expected_frozen = sum(
        (
            rules.trade_amount(o["price"], o["order_volume"] - o["traded_volume"])
            + rules.commission(rules.trade_amount(o["price"], o["order_volume"] - o["traded_volume"]), "0.0003", 5)
            for o in books["orders"].values()
            if o["order_type"] == C.STOCK_BUY and o["order_status"] in (50, 55)
        ),
        Decimal(0),
    )
    assert cents(books["frozen_cash"]) == expected_frozen
    start = {"000001.SZ": 1000, "600519.SH": 1050, "688981.SH": 300}
    for code, position in books["positions"].items():
        bought = sum(t["traded_volume"] for t in books["trades"] if t["stock_code"] == code and t["order_type"] == 23)
        sold = sum(t["traded_volume"] for t in books["trades"] if t["stock_code"] == code and t["order_type"] == 24)
        assert position["volume"] == start.get(code, 0) + bought - sold
        open_sells = sum(
            o["order_volume"] - o["traded_volume"]
            for o in books["orders"].values()
            if o["stock_code"] == code and o["order_type"] == 24 and o["order_status"] in (50, 55)
        )
        assert position["frozen_volume"] == open_sells
        assert position["can_use_volume"] == start.get(code, 0) - sold - open_sells
    market_value = sum(cents(p["market_value"]) for p in books["positions"].values())
    assert cents(books["market_value"]) == market_value
    assert cents(books["total_asset"]) == cents(books["cash"]) + cents(books["frozen_cash"]) + market_value
    # the last pushes agree with the books
    last_asset = recorder.of("asset")[-1]
    assert asset_tuple(last_asset) == asset_tuple(types.SimpleNamespace(**books))
    moving = ("market_value", "last_price", "float_profit", "profit_rate")  # follow later price moves
    last_positions = {p.stock_code: vars(p) for p in recorder.of("position")}
    for code, pushed in last_positions.items():
        booked = books["positions"][code]
        assert {k: v for k, v in pushed.items() if k not in moving} == {k: v for k, v in booked.items() if k not in moving}


# -- instruments and the price walk ----------------------------------------------------------


def test_instruments_file_replaces_the_table(make_desk: Callable[..., Desk], tmp_path: Any) -> None:
    table = tmp_path / "instruments.csv"
    table.write_text("code,name,prev_close,last_price\n000001.SZ,平安银行,11.80,11.90\n", encoding="utf-8")
    desk = make_desk(instruments_file=str(table), positions={})
    trader, recorder = desk.trader(ACCOUNT)
    trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)
    filled = trader.order_stock(ACC, "000001.SZ", C.STOCK_BUY, 100, C.FIX_PRICE, 12.00)
    desk.flush(trader)
    assert [(e.error_id, "[120100]" in e.error_msg) for e in recorder.of("order_error")] == [(-61, True)]
    assert trader.query_stock_order(ACC, filled).traded_price == 11.9
    with pytest.raises(ValueError):
        sim.SimCounter(SimConfig(instruments_file=str(table), positions={ACCOUNT: {"600000.SH": 100}}), [ACCOUNT])


def test_walk_is_seeded_and_stays_inside_the_band(make_desk: Callable[..., Desk], tmp_path: Any) -> None:
    table = walk_table(tmp_path)
    paths = []
    for _ in range(2):
        desk = make_desk(price_model="walk", tick_interval=3600.0, walk_step=0.01, seed=11, instruments_file=table)
        prices = []
        for _ in range(40):
            desk.counter.step()
            prices.append(desk.counter.last_price("600000.SH"))
        paths.append(prices)
        down, up = desk.counter.price_limits("600000.SH")
        assert all(down <= p <= up and rules.is_on_tick(p, "600000.SH") for p in prices)
    assert paths[0] == paths[1] and len(set(paths[0])) > 3
    other = make_desk(price_model="walk", tick_interval=3600.0, walk_step=0.01, seed=12, instruments_file=table)
    assert [other.counter.step() or other.counter.last_price("600000.SH") for _ in range(40)] != paths[0]


def test_walk_timer_moves_prices_and_fills_resting_orders(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(price_model="walk", tick_interval=0.002, walk_step=0.01, seed=3)
    trader, recorder = desk.trader(ACCOUNT)
    order_id = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.49)  # one step down
    recorder.wait_for(
        lambda events: any(k == "order" and d.order_id == order_id and d.order_status == 56 for k, d in events)
    )
    trade = recorder.of("trade")[-1]
    assert trade.order_id == order_id and trade.traded_price <= 10.49


def test_a_failing_handler_still_answers(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    trader, _ = desk.trader(ACCOUNT)

    def broken(*_args: Any) -> None:
        raise KeyError("bug")

    monkeypatch.setitem(desk.counter._handlers, "queryStockOrdersWithSeq", broken)
    assert trader.query_stock_orders(ACC) is None  # answered, not hanging
    assert trader.query_stock_asset(ACC).cash == CASH


class _Listener:
    """A native client that records what the counter delivers to it, in order."""

    def __init__(self, takes_parts: bool) -> None:
        self.takes_parts = takes_parts
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def deliver(self, callback: str, *args: Any) -> None:  # the counter's thread
        with self.lock:
            self.calls.append((callback, args))

    def seen(self) -> list[tuple[str, tuple[Any, ...]]]:
        with self.lock:
            return list(self.calls)


def _request(req_class: Any, **fields: Any) -> Any:
    from adapter.sim.counter import STOCK_ACCOUNT
    from adapter.sim.native import RequestFields

    req = req_class()
    req.m_strAccountID, req.m_nAccountType = ACCOUNT, STOCK_ACCOUNT
    for name, value in fields.items():
        setattr(req, name, value)
    return RequestFields(req)


@pytest.mark.parametrize("takes_parts", [False, True])
def test_a_long_query_is_answered_in_parts_and_orders_are_served_between_them(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, takes_parts: bool
) -> None:
    """A day of orders is built a part at a time; an order sent after the query is answered before
    the query's last part, and the answer holds every order of the day, in order, once."""
    from adapter.sim import counter as counter_module
    from adapter.sim import native
    from adapter.sim.wire import PART, PARTS_DONE

    from ..conftest import wait_for

    monkeypatch.setattr(counter_module, "QUERY_PART", 3)
    trader, _ = desk.trader(ACCOUNT)
    placed = [trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.50, "s", f"r{i}")
              for i in range(10)]
    listener = _Listener(takes_parts)
    session = desk.counter.attach(listener)  # type: ignore[arg-type]
    assert session is not None
    desk.counter.submit_request(session, "subscribeWithSeq", 900, _request(native.SubscribeReq))
    desk.counter.submit_request(session, "queryStockOrdersWithSeq", 901, _request(native.QueryStockOrdersReq))
    desk.counter.submit_request(session, "orderStockWithSeq", 902, _request(
        native.OrderStockReq, m_strStockCode="600000.SH", m_nOrderVolume=100, m_dPrice=10.5, m_strOrderRemark="late"))
    done = "OnQueryStockOrdersCallback" if not takes_parts else PARTS_DONE
    calls = wait_for(lambda: (c := listener.seen()) and any(name == done for name, _ in c) and c, 10.0)
    names = [name for name, _ in calls]
    answered = names.index(done)
    late = next(i for i, (name, args) in enumerate(calls) if args and args[0] == 902)
    assert late < answered  # served between the parts, not after the whole day
    if takes_parts:
        parts = [args for name, args in calls if name == PART]
        assert len(parts) == 4 and {answer for answer, _ in parts} == {calls[answered][1][2]}
        orders = [order for _, chunk in parts for order in chunk]
        assert calls[answered][1][:2] == ("OnQueryStockOrdersCallback", 901)
    else:
        seq, orders = calls[answered][1]
        assert seq == 901
    assert [o.order_id for o in orders] == placed  # the day as it was asked for, each once, in order
    desk.counter.detach(session)


def test_a_counter_process_sends_a_long_answer_one_acknowledged_part_at_a_time(tmp_path: Any) -> None:
    """Across the process link, a part of a long answer goes only once the client has decoded the
    one before ("pack"): a slow reader never has a day of parts queued ahead of an order's answer,
    which overtakes the parts still held."""
    import os

    import zmq

    from adapter.sim import wire
    from adapter.sim.counter import QUERY_PART, STOCK_ACCOUNT
    from adapter.sim.remote import read_endpoint

    process = sim.start_counter_process(tmp_path / "qmt", SimConfig(cash=1e12, persist=False), [ACCOUNT])
    context = zmq.Context()
    token = os.urandom(8)
    sub, req = context.socket(zmq.DEALER), context.socket(zmq.DEALER)
    sub.routing_id, req.routing_id = b"s" + token, b"q" + token
    try:
        endpoint = read_endpoint(tmp_path / "qmt")
        assert endpoint is not None
        for socket in (sub, req):
            socket.linger = 0
            socket.connect(endpoint)
        sub.send_multipart([b"attach", wire.pack({"session": 4242, "name": "link-test"})])
        assert sub.poll(5000) and sub.recv_multipart()[0] == b"attached"

        def request(method: str, seq: int, **values: Any) -> None:
            fields = {"m_strAccountID": ACCOUNT, "m_nAccountType": STOCK_ACCOUNT, **values}
            req.send_multipart([b"req", wire.pack([method, seq, native.RequestFields.from_values(fields, fields)])])

        def receive(timeout_ms: int) -> tuple[bytes, Any] | None:
            if not sub.poll(timeout_ms):
                return None
            kind, body = sub.recv_multipart()
            return kind, wire.unpack(body)

        request("subscribeWithSeq", 1)
        orders = 2 * QUERY_PART + 1  # three parts
        for seq in range(10, 10 + orders):
            request("orderStockWithSeq", seq, m_strStockCode="600000.SH", m_nOrderType=C.STOCK_BUY,
                    m_nOrderVolume=100, m_nPriceType=C.FIX_PRICE, m_dPrice=10.0)
        answered = 0
        for _ in range(20 * orders):  # bounded: every order's response, among its pushes
            got = receive(10_000)
            assert got is not None, f"{answered} of {orders} orders answered"
            kind, (callback, args) = got
            answered += callback == native.CB_ORDER_RESP
            if answered == orders:
                break
        while receive(200) is not None:  # the last pushes
            pass
        request("queryStockOrdersWithSeq", 5)
        request("orderStockWithSeq", 6, m_strStockCode="600000.SH", m_nOrderType=C.STOCK_BUY,
                m_nOrderVolume=100, m_nPriceType=C.FIX_PRICE, m_dPrice=10.0)
        seen: list[bytes] = []
        late_answered = False
        for _ in range(200):  # bounded: until the late order is answered and nothing more comes
            got = receive(1000)
            if got is None:
                break
            kind, body = got
            seen.append(kind)
            late_answered |= kind == b"cb" and body[0] == native.CB_ORDER_RESP and body[1][0] == 6
        assert late_answered and seen.count(b"cbpart") == 1  # the rest waits for "pack"
        rows = 0
        for _ in range(10):  # bounded: three parts, then the answer's end
            sub.send_multipart([b"pack", b""])
            got = receive(5000)
            assert got is not None
            kind, body = got
            if kind == b"cbdone":
                break
            if kind == b"cbpart":
                rows += len(body[1])
        assert kind == b"cbdone" and rows + QUERY_PART == orders  # the day as asked for: the late order is not in it
    finally:
        sub.close(0)
        req.close(0)
        context.term()
        process.close()


def test_resting_orders_fill_in_a_step_taken_in_parts(make_desk: Callable[..., Desk]) -> None:
    """With more codes walking than one part holds, the timed step goes in parts; each part
    matches the resting orders of its codes (found once for the step), buys and sells alike."""
    from adapter.sim.counter import STEP_PART
    from adapter.sim.instruments import load_instruments

    desk = make_desk(price_model="walk", walk_step=0.01, tick_interval=3600.0)
    counter = desk.counter
    codes = [code for code, instrument in load_instruments().items() if not instrument.is_index][:3 * STEP_PART]
    counter.full_tick(codes)  # these walk from now on
    trader, recorder = desk.trader(ACCOUNT)
    buy_at = round(counter.last_price("600000.SH") * 0.97, 2)
    sell_at = round(counter.last_price("000001.SZ") * 1.03, 2)
    buy = trader.order_stock(ACC, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, buy_at, "s", "buy")
    sell = trader.order_stock(ACC, "000001.SZ", C.STOCK_SELL, 100, C.FIX_PRICE, sell_at, "s", "sell")
    assert buy > 0 and sell > 0
    parted = 0
    for _ in range(300):  # bounded: the seeded walk crosses both limits well before this
        parted = max(parted, counter._call(lambda: (counter._timer_tick(), counter._parts_left)[1]))
        wait_parts = time.monotonic() + 10
        while counter._call(lambda: counter._parts_left) and time.monotonic() < wait_parts:  # bounded
            time.sleep(0.002)
        desk.flush(trader)
        traded = {data.order_id: data for kind, data in recorder.events if kind == "trade"}
        if buy in traded and sell in traded:
            break
    assert parted >= 3  # the step did go in parts (the codes asked for, held and ordered)
    assert traded[buy].traded_price <= buy_at and traded[sell].traded_price >= sell_at
