"""The compatible XtQuantTrader where no genuine counter can be asked: the gateway's own refusals,
the gateway going away and coming back, callback order under load, signatures."""

from __future__ import annotations

import inspect
import threading
from dataclasses import replace
import time
from typing import Any, Callable, Iterator

import pytest

from adapter.client import Client
from adapter.compat import StockAccount, XtQuantTrader
from adapter.compat.trader import GATEWAY_ERROR_IDS, UNREACHABLE
from adapter.config import SimConfig
from adapter.server import Gateway

from ..conftest import ACCOUNT, free_port, make_config, wait_for
from ..support.market import market

DEADLINE = 10.0


class Callbacks:
    """Every callback in order, as (method, object)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.on_disconnect: Callable[[], None] | None = None

    def __getattr__(self, name: str) -> Callable[..., None]:
        if not name.startswith("on_"):
            raise AttributeError(name)

        def record(*args: Any) -> None:
            with self.lock:
                self.calls.append((name, args[0] if args else None))
            if name == "on_disconnected" and self.on_disconnect is not None:
                self.on_disconnect()

        return record

    def of(self, method: str, **match: Any) -> list[Any]:
        with self.lock:
            found = [obj for m, obj in self.calls if m == method]
        return [obj for obj in found if all(getattr(obj, k, None) == v for k, v in match.items())]

    def wait(self, method: str, count: int = 1, **match: Any) -> list[Any]:
        return wait_for(lambda: (lambda f: f if len(f) >= count else None)(self.of(method, **match)), DEADLINE,
                        what=f"{count} {method} {match}")


def connected_trader(gateway: Any, **options: Any) -> tuple[XtQuantTrader, Callbacks]:
    point_at(gateway.router_endpoint, gateway.pub_endpoint)
    trader = XtQuantTrader(r"D:\QMT\userdata_mini", 7, **{"timeout": 5.0, **options})
    callbacks = Callbacks()
    trader.register_callback(callbacks)
    trader.start()
    assert trader.connect() == 0
    assert trader.subscribe(StockAccount(ACCOUNT)) == 0
    return trader, callbacks


_monkeypatch: list[pytest.MonkeyPatch] = []


@pytest.fixture
def gateways() -> Iterator[list[Gateway]]:
    """Gateways on fixed ports (a restart comes back where the first one was); stopped at the end."""
    made: list[Gateway] = []
    yield made
    for gateway in made:
        gateway.stop()


def point_at(router: str, pub: str) -> None:
    """Where XtQuantTrader(path, ...) finds the gateway: the environment, as `qmt-adapter run` sets it."""
    _monkeypatch[-1].setenv("QMT_ADAPTER_ROUTER", router)
    _monkeypatch[-1].setenv("QMT_ADAPTER_PUB", pub)


@pytest.fixture
def traders(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[XtQuantTrader]]:
    _monkeypatch.append(monkeypatch)
    made: list[XtQuantTrader] = []
    yield made
    for trader in made:
        trader.stop()
    _monkeypatch.pop()


def test_a_risk_denial_is_minus_one_and_an_order_error_naming_the_rule(gateway_factory: Any, traders: list) -> None:
    gateway = gateway_factory(risk={"duplicate_window": 30.0, "max_order_volume": 1000, "orders_per_second": 0})
    trader, callbacks = connected_trader(gateway)
    traders.append(trader)
    acc = StockAccount(ACCOUNT)
    first = trader.order_stock(acc, "600000.SH", 23, 100, 11, 10.50, "grid", "one")
    assert first > 0
    assert trader.order_stock(acc, "600000.SH", 23, 100, 11, 10.50, "grid", "again") == -1
    error = callbacks.wait("on_order_error", order_remark="again")[0]
    assert (error.account_id, error.order_id, error.error_id) == (ACCOUNT, -1, GATEWAY_ERROR_IDS["risk_denied"])
    assert "order.duplicate" in error.error_msg and error.strategy_name == "grid" and error.seq > 0
    seq = trader.order_stock_async(acc, "600000.SH", 23, 5000, 11, 10.50, "grid", "big")
    assert seq > error.seq  # one series of request seqs per trader
    response = callbacks.wait("on_order_stock_async_response", seq=seq)[0]
    assert response.order_id == -1 and "order.max_volume" in response.error_msg
    big = callbacks.wait("on_order_error", seq=seq)[0]
    assert big.error_id == GATEWAY_ERROR_IDS["risk_denied"] and "order.max_volume" in big.error_msg
    with callbacks.lock:
        methods = [m for m, obj in callbacks.calls if getattr(obj, "seq", None) == seq]
    assert methods == ["on_order_stock_async_response", "on_order_error"]  # as xttrader orders them


def test_invalid_arguments_and_unknown_accounts_are_refused_with_their_error_ids(gateway: Any, traders: list) -> None:
    trader, callbacks = connected_trader(gateway)
    traders.append(trader)
    acc = StockAccount(ACCOUNT)
    assert trader.order_stock(acc, "600000.SH", 23, 100, 11, 0, "s", "no price") == -1
    error = callbacks.wait("on_order_error", order_remark="no price")[0]
    assert error.error_id == GATEWAY_ERROR_IDS["invalid_argument"] and "price" in error.error_msg
    assert trader.order_stock(acc, "600000.SH", 23, 100, 5, -1, "s", "latest") > 0  # the price is ignored
    stranger = StockAccount("424242")
    seq = trader.cancel_order_stock_async(stranger, 1)
    cancel = callbacks.wait("on_cancel_error", seq=seq)[0]
    assert (cancel.order_id, cancel.error_id) == (1, GATEWAY_ERROR_IDS["unknown_account"])
    assert callbacks.wait("on_cancel_order_stock_async_response", seq=seq)[0].cancel_result == -1
    assert trader.cancel_order_stock_sysid(stranger, "SH", "123") == -1
    assert callbacks.wait("on_cancel_error", order_sysid="123")[0].error_id == GATEWAY_ERROR_IDS["unknown_account"]
    assert trader.subscribe(stranger) == -1  # the gateway does not serve it


def test_only_this_sessions_errors_and_responses_reach_it(gateway_factory: Any, traders: list) -> None:
    gateway = gateway_factory(risk={"max_order_volume": 1000})
    mine, my_callbacks = connected_trader(gateway)
    other, other_callbacks = connected_trader(gateway)
    traders.extend([mine, other])
    acc = StockAccount(ACCOUNT)
    seq = mine.order_stock_async(acc, "600000.SH", 23, 100, 11, 20.00, "s", "out of band")  # the counter refuses
    my_callbacks.wait("on_order_error", seq=seq)
    rested = other.order_stock(acc, "600000.SH", 23, 100, 11, 10.00, "s", "theirs")
    assert other.cancel_order_stock_async(acc, rested) > 0
    other_callbacks.wait("on_stock_order", order_id=rested, order_status=54)
    my_callbacks.wait("on_stock_order", order_id=rested, order_status=54)  # pushes reach every session
    assert other_callbacks.of("on_order_error") == [] and other_callbacks.of("on_order_stock_async_response") == []
    assert my_callbacks.of("on_cancel_order_stock_async_response") == []


def test_a_counter_outage_is_broker_unavailable(gateway_factory: Any, traders: list) -> None:
    gateway = gateway_factory()
    trader, callbacks = connected_trader(gateway)
    traders.append(trader)
    counter = market(gateway)
    counter.refuse_connections(True)
    counter.drop_connections("exchange link down")
    try:
        callbacks.wait("on_disconnected")
        wait_for(lambda: trader.order_stock(StockAccount(ACCOUNT), "600000.SH", 23, 100, 11, 10.5, "s", "x") == -1,
                 DEADLINE, interval=0.05, what="orders to be refused")
        error = callbacks.wait("on_order_error")[0]
        assert error.error_id == GATEWAY_ERROR_IDS["broker_unavailable"] and "broker_unavailable" in error.error_msg
    finally:
        counter.refuse_connections(False)


def test_the_gateway_going_away_is_seen_and_a_strategy_reconnects_on_the_same_object(
    tmp_path: Any, traders: list, gateways: list
) -> None:
    router, pub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = replace(make_config(data_dir=str(tmp_path / "gw"), heartbeat_interval=0.2), router=router, pub=pub)
    gateway = Gateway(config)
    gateway.start()
    gateways.append(gateway)
    point_at(router, pub)
    trader = XtQuantTrader("userdata_mini", 7, timeout=20.0, liveness_timeout=1.0)
    traders.append(trader)
    callbacks = Callbacks()
    reconnected = threading.Event()
    acc = StockAccount(ACCOUNT)

    def reconnect() -> None:  # what strategies do in on_disconnected: bounded here
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            trader.start()
            if trader.connect() == 0 and trader.subscribe(acc) == 0:
                reconnected.set()
                return
            time.sleep(0.2)

    trader.register_callback(callbacks)
    trader.start()
    assert trader.connect() == 0 and trader.subscribe(acc) == 0
    gateway.stop()
    callbacks.on_disconnect = None
    callbacks.wait("on_disconnected")
    assert trader.connected is False
    started = time.monotonic()
    assert trader.order_stock(acc, "600000.SH", 23, 100, 11, 10.50, "s", "while away") == -1
    assert trader.query_stock_asset(acc) is None and trader.query_stock_orders(acc) is None
    assert time.monotonic() - started < 10.0, "calls must fail at once, not after the 20 s time-out"
    assert callbacks.wait("on_order_error", order_remark="while away")[0].error_id == UNREACHABLE
    # The gateway comes back; an order is placed by someone else before the strategy reconnects.
    callbacks.on_disconnect = reconnect
    back = Gateway(config)
    back.start()
    gateways.append(back)
    with Client(back.router_endpoint, back.pub_endpoint, timeout=5.0) as other:
        placed = other.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.40).order_id
    threading.Thread(target=reconnect, daemon=True).start()
    assert reconnected.wait(40)
    callbacks.wait("on_stock_order", order_id=placed)  # nothing missed while away
    order_id = trader.order_stock(acc, "600000.SH", 23, 100, 11, 10.70, "s", "after")
    assert order_id > 0
    callbacks.wait("on_stock_order", order_id=order_id, order_status=56)


def test_callbacks_keep_the_counters_order_while_orders_overlap(gateway_factory: Any, traders: list) -> None:
    """Orders from several threads gate the stream while the fills of earlier ones arrive: every
    order's statuses must still reach the callback in the counter's order (48, 50, 55..., 56)."""
    gateway = gateway_factory(sim=SimConfig(fill_volume=100))
    trader, callbacks = connected_trader(gateway)
    traders.append(trader)
    acc = StockAccount(ACCOUNT)
    placed: list[int] = []
    lock = threading.Lock()

    def place(n: int) -> None:
        for _ in range(n):
            order_id = trader.order_stock(acc, "600000.SH", 23, 300, 11, 10.70, "s", "load")
            with lock:
                placed.append(order_id)

    threads = [threading.Thread(target=place, args=(15,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    stepper_stop = threading.Event()

    def step() -> None:  # matching passes while orders are in flight
        for _ in range(2000):
            if stepper_stop.wait(0.002):
                return
            market(gateway).step()

    stepper = threading.Thread(target=step)
    stepper.start()
    for thread in threads:
        thread.join(60)
    wait_for(lambda: all(callbacks.of("on_stock_order", order_id=o, order_status=56) for o in placed), 30,
             what="every order to fill")
    stepper_stop.set()
    stepper.join(10)
    assert len(placed) == 60 and min(placed) > 0
    for order_id in placed:
        statuses = [o.order_status for o in callbacks.of("on_stock_order", order_id=order_id)]
        traded = [o.traded_volume for o in callbacks.of("on_stock_order", order_id=order_id)]
        assert statuses[0] == 48 and statuses[-1] == 56 and traded == sorted(traded), (order_id, statuses)


def test_async_calls_return_their_seq_before_any_of_their_callbacks(gateway_factory: Any, traders: list) -> None:
    """As xtquant's: the seq comes back at once, the answers later, so a strategy can file the
    seq before its response (vnpy's gateway does exactly that)."""
    gateway = gateway_factory(sim=SimConfig(order_latency=0.3))
    trader, callbacks = connected_trader(gateway)
    traders.append(trader)
    acc = StockAccount(ACCOUNT)
    filed: set[int] = set()
    early: list[tuple[str, int]] = []

    def check(name: str) -> Callable[[Any], None]:
        def callback(obj: Any) -> None:
            if obj.seq not in filed:
                early.append((name, obj.seq))
        return callback

    callbacks.on_order_stock_async_response = check("on_order_stock_async_response")  # type: ignore[method-assign]
    callbacks.on_cancel_order_stock_async_response = check("on_cancel_order_stock_async_response")  # type: ignore
    seqs = []
    for price in (10.00, 10.10, 10.20):
        seq = trader.order_stock_async(acc, "600000.SH", 23, 100, 11, price, "s", "rest")
        filed.add(seq)
        seqs.append(seq)
    refused = trader.order_stock_async(acc, "600000.SH", 23, 100, 11, 0, "s", "no price")  # refused by the gateway
    filed.add(refused)
    orders = wait_for(lambda: (lambda o: o if len(o) == 3 else None)(trader.query_stock_orders(acc, True)), DEADLINE)
    for order in orders:
        filed.add(trader.cancel_order_stock_async(acc, order.order_id))
    wait_for(lambda: trader.query_stock_orders(acc, True) == [], DEADLINE, what="the cancels")
    assert early == [] and len(filed) == 7


def test_every_method_has_xtquants_signature() -> None:
    from adapter.sim import install

    install()
    from xtquant.xttrader import XtQuantTrader as Genuine

    for name, genuine in vars(Genuine).items():
        if name.startswith("_") or not callable(genuine):
            continue
        ours = inspect.signature(getattr(XtQuantTrader, name))
        theirs = inspect.signature(genuine)
        assert [(p.name, p.default) for p in ours.parameters.values()] == \
            [(p.name, p.default) for p in theirs.parameters.values()], name
    init = inspect.signature(XtQuantTrader.__init__).parameters
    assert list(init)[:4] == ["self", "path", "session", "callback"] and init["callback"].default is None
