"""Parity: one scenario run with the genuine XtQuantTrader over the sim in-process, and with the
compatible class over the gateway over the sim. Return values, query results and the callbacks
must match, ids and times aside (they must differ between two counters)."""

from __future__ import annotations

import asyncio
import difflib
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from adapter import sim
from adapter.compat import StockAccount, XtQuantTrader as CompatTrader
from adapter.compat.xttypes import GATEWAY_FIELDS
from adapter.config import SimConfig

from ..conftest import ACCOUNT
from ..support.market import market

SIM = SimConfig(fill_volume=100, positions={ACCOUNT: {"000001.SZ": 500}})
# Differ between two counters by nature: ids, times, the counter's sequence numbers.
VOLATILE = {"order_id", "order_sysid", "traded_id", "order_time", "traded_time", "seq"}
DEADLINE = 10.0
# An account neither counter serves. The terminal refuses its requests itself, the gateway before
# they reach the terminal: the same callbacks, each with its refuser's own error_id and text
# (the gateway's are documented in PROTOCOL.md §15), so those two fields are compared by shape.
STRANGER = "999999"


class Recorder:
    """Every callback, in order, as (method, fields)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.threads: set[int] = set()
        self.inside: Callable[[Any], None] | None = None  # called from the next on_stock_order
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Callable[..., None]:
        if not name.startswith("on_"):
            raise AttributeError(name)

        def record(*args: Any) -> None:
            with self._lock:
                self.calls.append((name, dict(vars(args[0])) if args else {}))
                self.threads.add(threading.get_ident())
                inside, self.inside = (self.inside, None) if name == "on_stock_order" else (None, self.inside)
            if inside is not None:
                inside(args[0])

        return record

    def count(self, method: str, **match: Any) -> int:
        with self._lock:
            return sum(1 for m, f in self.calls if m == method and all(f.get(k) == v for k, v in match.items()))

    def wait(self, method: str, count: int = 1, **match: Any) -> None:
        deadline = time.monotonic() + DEADLINE
        while self.count(method, **match) < count:
            assert time.monotonic() < deadline, f"no {method} {match} (have {self.calls[-5:]})"
            time.sleep(0.005)


def scenario(trader: Any, step: Callable[[], None]) -> tuple[list[Any], Recorder]:
    """The strategy: returns what each call returned, in order, and the callbacks."""
    out: list[Any] = []
    recorder = Recorder()
    acc = StockAccount(ACCOUNT)
    trader.register_callback(recorder)
    trader.start()
    out.append(("connect", trader.connect()))
    out.append(("subscribe", trader.subscribe(acc)))
    out.append(("asset", trader.query_stock_asset(acc)))
    out.append(("positions", trader.query_stock_positions(acc)))
    out.append(("orders", trader.query_stock_orders(acc)))
    # A fill in three parts (100 per matching pass).
    filled = trader.order_stock(acc, "600000.SH", 23, 300, 11, 10.60, "parity", "fill")
    out.append(("filled", filled))
    recorder.wait("on_stock_trade", order_id=filled)
    step()
    recorder.wait("on_stock_trade", 2, order_id=filled)
    step()
    recorder.wait("on_stock_order", order_id=filled, order_status=56)
    # A resting order, cancelled synchronously.
    resting = trader.order_stock(acc, "600000.SH", 23, 200, 11, 10.00, "parity", "rest")
    out.append(("resting", resting))
    out.append(("cancel", trader.cancel_order_stock(acc, resting)))
    recorder.wait("on_stock_order", order_id=resting, order_status=54)
    # An async order that fills, and an async cancel of a resting one.
    seq = trader.order_stock_async(acc, "000001.SZ", 24, 100, 11, 11.80, "parity", "async sell")
    out.append(("async order seq > 0", seq > 0))
    recorder.wait("on_order_stock_async_response", seq=seq)
    resting2 = trader.order_stock(acc, "600000.SH", 23, 100, 11, 10.10, "parity", "rest2")
    cancel_seq = trader.cancel_order_stock_async(acc, resting2)
    out.append(("async cancel seq > 0", cancel_seq > 0))
    recorder.wait("on_cancel_order_stock_async_response", seq=cancel_seq)
    recorder.wait("on_stock_order", order_id=resting2, order_status=54)
    # Refusals: outside the daily band, more than held, and cancelling a finished order.
    rejected = trader.order_stock(acc, "600000.SH", 23, 100, 11, 20.00, "parity", "too high")
    out.append(("rejected", rejected))
    recorder.wait("on_order_error")
    oversold = trader.order_stock(acc, "000001.SZ", 24, 10_000, 11, 11.80, "parity", "oversell")
    out.append(("oversold", oversold))
    recorder.wait("on_order_error", 2)
    out.append(("cancel filled", trader.cancel_order_stock(acc, filled)))
    async_cancel = trader.cancel_order_stock_async(acc, filled)
    recorder.wait("on_cancel_order_stock_async_response", seq=async_cancel)
    recorder.wait("on_cancel_error")
    out.append(("cancel unknown id", trader.cancel_order_stock(acc, 999_999_999)))
    recorder.wait("on_cancel_error", order_id=999_999_999)
    # Prices xtquant ignores: latest-price and market orders with 0 or -1, as public code sends them.
    latest = trader.order_stock(acc, "600000.SH", 23, 100, 5, -1, "parity", "latest -1")
    out.append(("latest", latest))
    recorder.wait("on_stock_order", order_id=latest, order_status=56)
    best5 = trader.order_stock_async(acc, "600000.SH", 23, 100, 42, 0, "parity", "best5 0")
    recorder.wait("on_order_stock_async_response", seq=best5)
    recorder.wait("on_stock_trade", order_remark="best5 0")
    # Cancels by the counter's contract number, and of one it does not know.
    resting3 = trader.order_stock(acc, "600000.SH", 23, 100, 11, 10.20, "parity", "rest3")
    sysid = trader.query_stock_order(acc, resting3).order_sysid
    out.append(("cancel sysid", trader.cancel_order_stock_sysid(acc, 0, sysid)))
    recorder.wait("on_stock_order", order_id=resting3, order_status=54)
    unknown_sysid = trader.cancel_order_stock_sysid_async(acc, 0, "no-such-sysid")
    out.append(("unknown sysid async seq > 0", unknown_sysid > 0))
    recorder.wait("on_cancel_order_stock_async_response", seq=unknown_sysid)
    recorder.wait("on_cancel_error", order_sysid="no-such-sysid")
    out.append(("unknown sysid", trader.cancel_order_stock_sysid(acc, 0, "no-such-sysid-2")))
    recorder.wait("on_cancel_error", order_sysid="no-such-sysid-2")
    # Refused before the counter: -1 and on_order_error (seq for async), -1 and on_cancel_error.
    stranger = StockAccount(STRANGER)
    out.append(("stranger order", trader.order_stock(stranger, "600000.SH", 23, 100, 11, 10.60, "parity", "x")))
    recorder.wait("on_order_error", account_id=STRANGER)
    stranger_seq = trader.order_stock_async(stranger, "600000.SH", 23, 100, 11, 10.60, "parity", "y")
    out.append(("stranger async seq > 0", stranger_seq > 0))
    recorder.wait("on_order_stock_async_response", seq=stranger_seq)
    recorder.wait("on_order_error", seq=stranger_seq)
    out.append(("stranger cancel", trader.cancel_order_stock(stranger, filled)))
    recorder.wait("on_cancel_error", account_id=STRANGER)
    stranger_cancel = trader.cancel_order_stock_async(stranger, filled)
    recorder.wait("on_cancel_order_stock_async_response", seq=stranger_cancel)
    recorder.wait("on_cancel_error", seq=stranger_cancel)
    # The books at the end.
    out.append(("order", trader.query_stock_order(acc, filled)))
    out.append(("no order", trader.query_stock_order(acc, 999_999_999)))
    out.append(("orders", trader.query_stock_orders(acc)))
    out.append(("cancelable", trader.query_stock_orders(acc, True)))
    out.append(("trades", trader.query_stock_trades(acc)))
    out.append(("positions", trader.query_stock_positions(acc)))
    out.append(("position", trader.query_stock_position(acc, "600000.SH")))
    out.append(("no position", trader.query_stock_position(acc, "600036.SH")))
    out.append(("asset", trader.query_stock_asset(acc)))
    out.append(("status", trader.query_account_status()))
    for query in ("query_credit_detail", "query_stk_compacts", "query_credit_subjects", "query_credit_slo_code",
                  "query_credit_assure", "query_new_purchase_limit"):
        out.append((query, getattr(trader, query)(acc)))
    out.append(("ipo", trader.query_ipo_data()))
    answered: list[Any] = []
    done = threading.Event()
    trader.query_stock_asset_async(acc, lambda asset: (answered.append(asset), done.set()))
    assert done.wait(DEADLINE)
    out.append(("asset async", answered[0]))
    done.clear()
    trader.query_new_purchase_limit_async(acc, lambda limits: (answered.append(limits), done.set()))
    assert done.wait(DEADLINE)
    out.append(("purchase limit async", answered[1]))
    # *_async queries answer on the callback thread, in call order.
    order: list[tuple[str, bool]] = []
    done.clear()

    def note(label: str, last: bool = False) -> Callable[[Any], None]:
        def answer(result: Any) -> None:
            order.append((label, threading.get_ident() in recorder.threads and result is not None))
            if last:
                done.set()
        return answer

    trader.query_stock_orders_async(acc, note("orders"))
    trader.query_stock_positions_async(acc, note("positions"))
    trader.query_stock_trades_async(acc, note("trades"))
    trader.query_account_status_async(note("status", last=True))
    assert done.wait(DEADLINE)
    out.append(("async queries", order))
    # With relaxed response order, a synchronous query inside a callback answers.
    trader.set_relaxed_response_order_enabled(True)
    inside: list[Any] = []
    recorder.inside = lambda _order: inside.append(trader.query_stock_asset(acc))
    relaxed = trader.order_stock(acc, "600000.SH", 23, 100, 11, 10.30, "parity", "relaxed")
    recorder.wait("on_stock_order", order_id=relaxed)
    deadline = time.monotonic() + DEADLINE
    while not inside:
        assert time.monotonic() < deadline, "the query inside the callback never answered"
        time.sleep(0.005)
    out.append(("query inside a callback", inside[0]))
    trader.set_relaxed_response_order_enabled(False)
    out.append(("cancel relaxed", trader.cancel_order_stock(acc, relaxed)))
    recorder.wait("on_stock_order", order_id=relaxed, order_status=54)
    settle = time.monotonic() + 0.5  # let late pushes arrive before comparing (bounded)
    while time.monotonic() < settle:
        time.sleep(0.05)
    return out, recorder


def normal(value: Any, ids: dict[Any, str]) -> Any:
    """Objects to field dicts with ids replaced by their order of first appearance."""
    if isinstance(value, list):
        return [normal(v, ids) for v in value]
    if isinstance(value, tuple):
        return tuple(normal(v, ids) for v in value)
    if hasattr(value, "__dict__") and not isinstance(value, type):
        value = dict(vars(value))
    if isinstance(value, dict):
        out = {}
        refused = value.get("account_id") == STRANGER
        for key, item in value.items():
            if key in GATEWAY_FIELDS or key in VOLATILE - {"order_id"}:
                continue
            if refused and key in ("error_id", "error_msg"):
                out[key] = (type(item).__name__, bool(item))
                continue
            out[key] = _id(item, ids) if key == "order_id" else normal(item, ids)
        return out
    return value


def _id(value: Any, ids: dict[Any, str]) -> Any:
    if not isinstance(value, int) or value <= 0:
        return value
    return ids.setdefault(value, f"order#{len(ids) + 1}")


def run_genuine(tmp_path: Path) -> tuple[list[Any], Recorder]:
    sim.install()
    from xtquant.xttrader import XtQuantTrader

    # xttrader reads the main thread's event loop, which a fresh interpreter has and an earlier
    # asyncio.run() in the same process has cleared.
    main_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(main_loop)
    counter = sim.SimCounter(SIM, [ACCOUNT], state_path=tmp_path / "genuine.sqlite3")
    path = f"sim://{uuid.uuid4().hex}"
    sim.register_counter(path, counter)
    trader = XtQuantTrader(path, 4242)
    try:
        return scenario(trader, counter.step)
    finally:
        trader.stop()
        sim.unregister_counter(path)
        counter.close()
        main_loop.close()


def run_compat(gateway_factory: Any, monkeypatch: Any) -> tuple[list[Any], Recorder]:
    gateway = gateway_factory(sim=SIM)
    monkeypatch.setenv("QMT_ADAPTER_ROUTER", gateway.router_endpoint)
    monkeypatch.setenv("QMT_ADAPTER_PUB", gateway.pub_endpoint)
    trader = CompatTrader(r"D:\QMT\userdata_mini", 4242)  # a Windows path, ignored
    try:
        return scenario(trader, market(gateway).step)
    finally:
        trader.stop()


def test_the_compatible_trader_matches_the_genuine_one(gateway_factory: Any, tmp_path: Path, monkeypatch: Any) -> None:
    genuine_out, genuine_calls = run_genuine(tmp_path)
    compat_out, compat_calls = run_compat(gateway_factory, monkeypatch)
    ids_genuine: dict[Any, str] = {}
    ids_compat: dict[Any, str] = {}
    assert normal(compat_out, ids_compat) == normal(genuine_out, ids_genuine)
    got, want = normal(compat_calls.calls, ids_compat), normal(genuine_calls.calls, ids_genuine)
    methods = {method for method, _ in want}
    assert methods >= {"on_account_status", "on_stock_order", "on_stock_trade", "on_stock_asset", "on_stock_position",
                       "on_order_error", "on_cancel_error", "on_order_stock_async_response",
                       "on_cancel_order_stock_async_response"}, methods
    assert got == want, "\n" + "\n".join(difflib.unified_diff(
        [_line(call) for call in want], [_line(call) for call in got], "genuine", "compat", lineterm="", n=1))


def _line(call: tuple[str, dict[str, Any]]) -> str:
    return repr((call[0], sorted(call[1].items())))
