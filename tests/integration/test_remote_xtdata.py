"""The remote xtdata module (``from xtquant import xtdata`` under the compat runner) against a
real gateway over the sim: the issue's acceptance test (a strategy reads a quote, orders at it,
sees the fill), and parity of the module's answers with the gateway's own op answers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from adapter.client import Client, to_frames
from adapter.compat import xtdata

from ..conftest import ACCOUNT, wait_for
from ..support.market import market

STRATEGY = '''
import sys, threading, time
from xtquant import xtdata
from xtquant import xtconstant
from xtquant.xttrader import XtQuantTrader, XtQuantTraderCallback
from xtquant.xttype import StockAccount

CODE = "600000.SH"
filled = threading.Event()
pushed = []


class Callback(XtQuantTraderCallback):
    def on_stock_trade(self, trade):
        print(f"TRADE {trade.order_id} {trade.stock_code} {trade.traded_volume} {trade.traded_price}", flush=True)
        filled.set()


tick = xtdata.get_full_tick([CODE])[CODE]
price = tick["lastPrice"]
print(f"QUOTE {CODE} {price} bid1 {tick['bidPrice'][0]} ask1 {tick['askPrice'][0]}", flush=True)
bars = xtdata.get_market_data_ex(["close"], [CODE], period="1d", count=5)[CODE]
print(f"BARS {type(bars).__name__} {list(bars.columns)} {len(bars)} {bars.index[-1]}", flush=True)
detail = xtdata.get_instrument_detail(CODE)
print(f"DETAIL {detail['InstrumentName']} {detail['UpStopPrice']} {detail['DownStopPrice']}", flush=True)

trader = XtQuantTrader("userdata_mini", 123456, Callback())
trader.start()
if trader.connect() != 0:
    sys.exit("no trader connection")
account = StockAccount(sys.argv[1])
trader.subscribe(account)
order_id = trader.order_stock(account, CODE, xtconstant.STOCK_BUY, 100, xtconstant.FIX_PRICE, price, "remote", "at quote")
print(f"ORDER {order_id} at {price}", flush=True)
if not filled.wait(20):
    sys.exit("no fill within 20 s")

seq = xtdata.subscribe_quote(CODE, period="tick", callback=pushed.append)
print(f"SUBSCRIBED {seq}", flush=True)
deadline = time.monotonic() + 20
while not pushed and time.monotonic() < deadline:
    time.sleep(0.02)
if not pushed:
    sys.exit("no quote pushed within 20 s")
datas = pushed[0]
print(f"PUSHED {list(datas)} {type(datas[CODE]).__name__} {datas[CODE][-1]['lastPrice']}", flush=True)
xtdata.unsubscribe_quote(seq)
trader.stop()
print("DONE", flush=True)
'''


class Strategy:
    """A strategy script run by the compat runner in a process of its own; lines as they come."""

    def __init__(self, gateway: Any, script: Path, module: bool = False) -> None:
        runner = ["-m", "adapter.compat"] if module else ["-m", "adapter", "run"]
        self.proc = subprocess.Popen(
            [sys.executable, *runner, "--router", gateway.router_endpoint, "--pub", gateway.pub_endpoint,
             str(script), ACCOUNT],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=script.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def line(self, head: str, timeout: float = 30.0) -> str:
        """The first output line starting with ``head``; fails at the deadline or when the script
        ended without one."""
        deadline = time.monotonic() + timeout
        while True:
            ended = self.proc.poll() is not None and not self._reader.is_alive()
            for line in list(self.lines):
                if line.startswith(head):
                    return line
            if ended or time.monotonic() > deadline:
                pytest.fail(f"no {head!r} line; the script said:\n" + "\n".join(self.lines))
            time.sleep(0.02)

    def finish(self, timeout: float = 30.0) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        return code


@pytest.mark.parametrize("module", [False, True], ids=["qmt-adapter run", "python -m adapter.compat"])
def test_a_strategy_reads_a_quote_orders_at_it_and_sees_it_fill(gateway: Any, tmp_path: Path, module: bool) -> None:
    script = tmp_path / "strategy.py"
    script.write_text(STRATEGY, encoding="utf-8")
    strategy = Strategy(gateway, script, module)
    try:
        quote = strategy.line("QUOTE ")
        price = float(quote.split()[2])
        assert price == market(gateway).last_price("600000.SH")
        assert strategy.line("BARS ").startswith("BARS DataFrame ['close'] 5 ")
        assert strategy.line("DETAIL ").startswith("DETAIL 浦发银行 ")
        order_id = int(strategy.line("ORDER ").split()[1])
        assert order_id > 0
        trade = strategy.line("TRADE ").split()
        assert (int(trade[1]), trade[2], trade[3], float(trade[4])) == (order_id, "600000.SH", "100", price)

        strategy.line("SUBSCRIBED ")
        # A moving price makes the quotes the subscription pushes (the sim's prices are fixed here).
        prices = [round(price + 0.01, 2), price]
        deadline = time.monotonic() + 20
        n = 0
        while not any(line.startswith("PUSHED") for line in strategy.lines) and time.monotonic() < deadline:
            market(gateway).set_price("600000.SH", prices[n % 2])
            n += 1
            time.sleep(0.1)  # pacing the price changes, not waiting for a result
        pushed = strategy.line("PUSHED ")
        assert pushed.startswith("PUSHED ['600000.SH'] list ") and float(pushed.split()[-1]) in prices
        strategy.line("DONE")
        assert strategy.finish() == 0, "\n".join(strategy.lines)
    finally:
        if strategy.proc.poll() is None:
            strategy.proc.kill()
            strategy.proc.wait(10)
    output = "\n".join(strategy.lines)
    assert "xtdata连接成功" in output and "Traceback" not in output


# -- parity with the gateway's own answers ----------------------------------------------------


@pytest.fixture
def remote(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The module on this process, pointed at ``gateway`` as the runner points it."""
    monkeypatch.setenv("QMT_ADAPTER_ROUTER", gateway.router_endpoint)
    monkeypatch.setenv("QMT_ADAPTER_PUB", gateway.pub_endpoint)
    monkeypatch.setattr(xtdata, "enable_hello", False)
    xtdata.disconnect()
    try:
        yield xtdata
    finally:
        xtdata.disconnect()


@pytest.fixture
def client(gateway: Any) -> Iterator[Client]:
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as c:
        yield c


def test_answers_are_the_gateways(remote: Any, client: Client) -> None:
    import pandas as pd  # installed with exchange-calendars, a dependency: never skipped
    codes = ["600000.SH", "000001.SZ", "300750.SZ"]
    assert remote.get_full_tick(codes) == client.get_full_tick(codes)
    assert remote.get_full_tick("600000.SH") == client.get_full_tick(["600000.SH"])

    for period, count in (("1d", 30), ("1m", 10), ("5m", 4), ("1h", 3)):
        frames = remote.get_market_data_ex([], codes, period, count=count)
        expected = to_frames(client.get_market_data_ex([], codes, period, count=count), period)
        assert list(frames) == codes
        for code in codes:
            pd.testing.assert_frame_equal(frames[code], expected[code])
    assert remote.gmd2 is remote.get_market_data_ex

    daily = remote.get_market_data_ex(["close", "volume"], ["600000.SH"], "1d", "20251001", "20251031")["600000.SH"]
    assert list(daily.columns) == ["close", "volume"]
    assert list(daily.index) == [label for label in daily.index if "20251001" <= label <= "20251031"]
    assert remote.get_market_data_ex(["close"], ["600000.SH"], "60m", count=2)["600000.SH"].shape == (2, 1)

    local = remote.get_local_data([], ["600000.SH"], "1d", count=5)["600000.SH"]
    pd.testing.assert_frame_equal(local, to_frames(client.get_local_data([], ["600000.SH"], "1d", count=5))["600000.SH"])

    panels = remote.get_market_data(["close", "open"], codes, "1d", count=5)  # xtdata's older shape
    assert set(panels) == {"close", "open"}
    ex = remote.get_market_data_ex(["close", "open"], codes, "1d", count=5)
    for code in codes:
        assert list(panels["close"].loc[code].dropna().index) == list(ex[code].index)
        assert list(panels["close"].loc[code].dropna()) == list(ex[code]["close"])
    ticks = remote.get_market_data([], ["600000.SH"], "tick", count=3)["600000.SH"]
    assert ticks.dtype.names is not None and "lastPrice" in ticks.dtype.names and ticks["askPrice"].shape[1:] == (5,)

    detail = remote.get_instrument_detail("600000.SH")
    assert detail == client.get_instrument_detail("600000.SH")
    assert remote.get_instrument_detail("600000.SH", True) == client.get_instrument_detail("600000.SH", True)
    assert remote.get_instrument_detail("999999.SH") is None
    assert remote.get_instrument_detail("not a code") is None  # as xtdata: no such instrument
    assert remote.get_instrument_detail_list(["600000.SH", "999999.SH"]) == {"600000.SH": detail, "999999.SH": None}

    assert remote.get_sector_list() == client.get_sector_list()
    assert remote.get_stock_list_in_sector("沪深A股") == client.get_stock_list_in_sector("沪深A股")
    assert remote.gsl("沪深ETF") == client.get_stock_list_in_sector("沪深ETF")
    assert remote.get_trading_dates("SH", "20250101", "20250131") == client.get_trading_dates("SH", "20250101", "20250131")
    assert remote.get_trading_dates("SZ", count=3) == client.get_trading_dates("SZ", count=3)


def test_downloads_and_their_progress(remote: Any) -> None:
    assert remote.download_history_data("600000.SH", "1d", "20250101") is None
    assert remote.supply_history_data is remote.download_history_data
    progress: list[dict[str, Any]] = []
    assert remote.download_history_data2(["600000.SH", "000001.SZ"], "1m", callback=progress.append) == {}
    assert progress and progress[-1]["finished"] == progress[-1]["total"] == 2
    assert all({"finished", "total", "stockcode", "message"} <= set(p) for p in progress)


def test_subscriptions_call_back_with_xtdatas_shapes(gateway: Any, remote: Any, client: Client) -> None:
    one: list[dict[str, Any]] = []
    whole: list[dict[str, Any]] = []
    seq = remote.subscribe_quote("600000.SH", "tick", callback=one.append)
    whole_seq = remote.subscribe_whole_quote(["600000.SH", "000001.SZ"], callback=whole.append)
    assert isinstance(seq, int) and isinstance(whole_seq, int) and seq != whole_seq
    quotes = remote.get_client().quotes()
    assert quotes.wait_ready(10)
    base = market(gateway).last_price("600000.SH")
    step = iter(range(1000))

    def moved() -> bool:  # each call moves the price; the quotes follow
        market(gateway).set_price("600000.SH", round(base + 0.01 * (1 + next(step) % 2), 2))
        return bool(one) and bool(whole)

    wait_for(moved, 20, interval=0.05, what="quotes on both subscriptions")
    datas = one[0]
    assert list(datas) == ["600000.SH"] and isinstance(datas["600000.SH"], list)
    tick = datas["600000.SH"][-1]
    assert set(tick) == set(client.get_full_tick(["600000.SH"])["600000.SH"])  # the same fields as a full tick
    assert set(whole[0]) <= {"600000.SH", "000001.SZ"} and isinstance(whole[0]["600000.SH"], dict)
    leases = set(gateway.market.leases)
    remote.unsubscribe_quote(seq)
    remote.unsubscribe_quote(whole_seq)
    remote.unsubscribe_quote(999)  # unknown: ignored, as xtdata
    assert not (leases & set(gateway.market.leases))


def test_connect_returns_a_connection_and_hello_says_where(gateway: Any, remote: Any,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(remote, "enable_hello", True)
    monkeypatch.setitem(remote.__dict__, "__hello_said", False)
    connection = remote.connect()
    assert connection is remote.get_client() and connection.is_connected()
    assert connection.get_peer_addr() == gateway.router_endpoint
    out = capsys.readouterr().out
    assert "xtdata连接成功" in out and gateway.router_endpoint in out
    assert remote.reconnect() is not connection
    remote.disconnect()
    assert not connection.is_connected()


def test_run_blocks_until_disconnected_or_the_gateway_is_gone(gateway_factory: Callable[..., Any], remote: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "_RUN_CHECK", 0.05)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            remote.run()
        except BaseException as exc:  # noqa: BLE001 - the test looks at what ended it
            outcome.append(exc)

    remote.connect()
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(0.3)
    assert runner.is_alive()  # blocks, as xtdata.run
    remote.disconnect()
    runner.join(5)
    assert not runner.is_alive() and "行情服务连接断开" in str(outcome[0])

    other = gateway_factory()
    monkeypatch.setenv("QMT_ADAPTER_ROUTER", other.router_endpoint)
    monkeypatch.setenv("QMT_ADAPTER_PUB", other.pub_endpoint)
    monkeypatch.setattr(remote, "_RUN_SILENCE", 0.5)
    monkeypatch.setattr(remote, "_PING_TIMEOUT", 0.2)
    remote.connect()
    outcome.clear()
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    other.stop()
    runner.join(10)
    assert not runner.is_alive() and "行情服务连接断开" in str(outcome[0])
