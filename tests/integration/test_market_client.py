"""Market data through the client library against a real gateway over the sim (PROTOCOL §16):
every op on Client and AsyncClient, to_frames, and Quotes (callbacks' shapes, unsubscribing,
lease renewal, re-subscribing after the gateway forgot or restarted, two clients, a slow
callback, CURVE)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from adapter.client import AsyncClient, Client, GatewayError, Quotes, to_frames
from adapter.config import SimConfig
from adapter.keys import ensure_server_key, new_client_key, parse_accounts, parse_permissions

from ..conftest import ACCOUNT, free_port, wait_for
from ..support.market import market

WALK = SimConfig(price_model="walk", tick_interval=0.02, persist=False)
BAR_FIELDS = ["time", "open", "high", "low", "close", "volume", "amount", "settelementPrice", "openInterest",
              "preClose", "suspendFlag"]


class Calls:
    """What a quote callback got, from its thread."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, datas: Any) -> None:
        with self._lock:
            self.got.append(datas)
            self.threads.add(threading.current_thread().name)

    def count(self) -> int:
        with self._lock:
            return len(self.got)

    def wait(self, count: int = 1, timeout: float = 10.0, what: str = "quote callbacks") -> list[Any]:
        wait_for(lambda: self.count() >= count, timeout, interval=0.01, what=f"{count} {what}")
        with self._lock:
            return list(self.got)


def client_for(gateway: Any, **options: Any) -> Client:
    return Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0, **options)


def test_every_query_op_on_the_client(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK)
    with client_for(gateway) as client:
        ticks = client.get_full_tick(["600000.SH", "000001.SZ"])
        assert set(ticks) == {"600000.SH", "000001.SZ"} and isinstance(ticks, dict)  # plain, as xtdata's
        tick = ticks["600000.SH"]
        assert isinstance(tick["time"], int) and isinstance(tick["lastPrice"], float) and len(tick["askPrice"]) == 5
        assert tick["lastPrice"] == pytest.approx(market(gateway).last_price("600000.SH"), abs=0.05)
        assert len(client.get_full_tick("SZ")) > 1000  # a market stands for its codes
        assert list(client.get_full_tick("600000.SH")) == ["600000.SH"]  # one code where a list is taken

        bars = client.get_market_data_ex([], ["600000.SH", "000001.SZ"], "1d", count=20)
        assert set(bars) == {"600000.SH", "000001.SZ"}
        columns = bars["600000.SH"]
        assert list(columns) == BAR_FIELDS and all(len(values) == 20 for values in columns.values())
        assert columns["time"] == sorted(columns["time"])
        close_only = client.get_market_data_ex(["close"], "600000.SH", "1m", count=5)["600000.SH"]
        assert set(close_only) == {"time", "close"} and len(close_only["close"]) == 5  # time always there
        local = client.get_local_data([], ["600000.SH"], "1d", count=20)
        assert local["600000.SH"]["close"][:-1] == columns["close"][:-1]  # today's bar moves meanwhile

        detail = client.get_instrument_detail("600000.SH")
        assert detail["InstrumentName"] and detail["PriceTick"] == 0.01 and detail["UpStopPrice"] > detail["PreClose"]
        assert client.get_instrument_detail("999999.SH") is None
        assert set(client.get_instrument_detail("600000.SH", True)) >= set(detail) - {"ProductTradeQuota"}

        sectors = client.get_sector_list()
        assert "沪深A股" in sectors and all(isinstance(name, str) for name in sectors)
        assert "600000.SH" in client.get_stock_list_in_sector("沪深A股")
        assert client.get_stock_list_in_sector("no such sector") == []

        days = client.get_trading_dates("SH", "20251001", "20251010")
        assert [time.strftime("%m%d", time.gmtime(d / 1000 + 8 * 3600)) for d in days] == ["1009", "1010"]
        assert len(client.get_trading_dates("SZ", count=5)) == 5

        assert client.download_history_data("600000.SH", "1d", "20250101") is None
        assert client.download_history_data2(["600000.SH", "000001.SZ"], "1m") is None

        with pytest.raises(GatewayError) as unknown:
            client.get_market_data_ex([], ["999999.SH"], "1d", count=1)
        assert unknown.value.code == "invalid_argument" and "999999.SH" in unknown.value.message
        with pytest.raises(GatewayError, match="period"):
            client.get_market_data_ex([], ["600000.SH"], "2m")


def test_download_progress_reaches_the_callback_before_the_call_returns(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK)
    codes = ["600000.SH", "000001.SZ", "300750.SZ"]
    with client_for(gateway) as client:
        progress = Calls()
        assert client.download_history_data2(codes, "1d", "20250101", callback=progress) is None
        got = progress.got  # complete now: no wait
        assert got and all(set(p) >= {"finished", "total", "stockcode", "message"} for p in got)
        assert got[-1]["finished"] == got[-1]["total"] == 3
        assert [p["finished"] for p in got] == sorted(p["finished"] for p in got)
        assert progress.threads and threading.current_thread().name not in progress.threads


def test_the_async_client_has_the_same_ops(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK)

    async def main() -> None:
        async with AsyncClient(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
            ticks, bars, detail = await asyncio.gather(
                client.get_full_tick(["600000.SH"]),
                client.get_market_data_ex(["close"], ["600000.SH"], "1d", count=3),
                client.get_instrument_detail("000001.SZ"),
            )
            assert ticks["600000.SH"]["lastPrice"] > 0 and len(bars["600000.SH"]["close"]) == 3
            assert detail["InstrumentID"] == "000001"
            assert "沪深A股" in await client.get_sector_list()
            assert len(await client.get_trading_dates("SH", count=3)) == 3
            lease = await client.subscribe_quote("600000.SH", "tick")
            assert await client.renew_quotes([lease["seq"]]) == {"unknown": []}
            assert await client.unsubscribe_quote(lease["seq"]) is None
            assert (await client.renew_quotes([lease["seq"]]))["unknown"] == [lease["seq"]]
            progress = Calls()
            assert await client.download_history_data2(["600000.SH"], "1d", callback=progress) is None
            assert progress.got[-1]["finished"] == progress.got[-1]["total"] == 1

    asyncio.run(asyncio.wait_for(main(), 60))


def test_to_frames_builds_xtdatas_frames(gateway_factory: Callable[..., Any]) -> None:
    import pandas as pd  # installed with exchange-calendars, a dependency: never skipped
    gateway = gateway_factory(WALK)
    with client_for(gateway) as client:
        daily = to_frames(client.get_market_data_ex([], ["600000.SH", "000001.SZ"], "1d", count=5), "1d")
        frame = daily["600000.SH"]
        assert isinstance(frame, pd.DataFrame) and list(frame.columns) == BAR_FIELDS and len(frame) == 5
        assert all(len(label) == 8 and label.isdigit() for label in frame.index)  # 'YYYYMMDD'
        china = pd.to_datetime(frame["time"], unit="ms") + pd.Timedelta(hours=8)
        assert list(frame.index) == list(china.dt.strftime("%Y%m%d"))
        assert frame["volume"].dtype.kind == "i" and frame["close"].dtype.kind == "f"

        minutes = to_frames(client.get_market_data_ex(["close", "volume"], ["600000.SH"], "1m", count=3), "1m",
                            ["close", "volume"])["600000.SH"]
        assert list(minutes.columns) == ["close", "volume"]  # no time column unless asked, as xtdata
        assert all(len(label) == 14 for label in minutes.index)  # 'YYYYMMDDhhmmss'

        ticks = to_frames(client.get_market_data_ex([], ["600000.SH"], "tick", count=3), "tick")["600000.SH"]
        assert "lastPrice" in ticks.columns and all(len(label) == 14 for label in ticks.index)


def test_quote_callbacks_get_xtdatas_shapes_and_stop_after_unsubscribe(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK)
    with client_for(gateway) as client, Quotes(client) as quotes:
        client.get_full_tick(client.get_stock_list_in_sector("深证A股")[:30])  # the sim walks codes once asked
        ticks, bars, whole, market_ticks = Calls(), Calls(), Calls(), Calls()
        tick_seq = quotes.subscribe_quote("600000.SH", "tick", callback=ticks)
        bar_seq = quotes.subscribe_quote("000001.SZ", "1m", callback=bars)
        whole_seq = quotes.subscribe_whole_quote(["600036.SH", "000002.SZ"], callback=whole)
        market_seq = quotes.subscribe_whole_quote(["SZ"], callback=market_ticks)
        assert len({tick_seq, bar_seq, whole_seq, market_seq}) == 4

        datas = ticks.wait()[0]
        assert list(datas) == ["600000.SH"] and isinstance(datas["600000.SH"], list)
        assert {"time", "lastPrice", "askPrice", "bidVol"} <= set(datas["600000.SH"][-1])
        bar = bars.wait()[0]["000001.SZ"][-1]
        assert set(BAR_FIELDS) <= set(bar)
        wait_for(lambda: any(len(d) == 2 for d in whole.got) or
                 {code for d in whole.got for code in d} == {"600036.SH", "000002.SZ"}, 10, what="both codes")
        assert all(isinstance(tick, dict) and "lastPrice" in tick for d in whole.got for tick in d.values())
        wait_for(lambda: len({code for d in market_ticks.got for code in d}) > 10, 10, what="a market's codes")
        assert all(code.endswith(".SZ") for d in market_ticks.got for code in d)  # that market, nothing else
        assert ticks.threads == bars.threads == {"qmt-quotes-callbacks"}

        held = dict(quotes.seqs)
        assert set(held) == {tick_seq, bar_seq, whole_seq, market_seq} and all(held.values())
        assert set(gateway.market.leases) >= set(held.values())
        quotes.unsubscribe_quote(tick_seq)
        assert held[tick_seq] not in gateway.market.leases
        assert ("600000.SH", "tick") not in gateway.market.refs
        settled = ticks.count()
        bars.wait(bars.count() + 2)  # other quotes keep coming meanwhile
        assert ticks.count() <= settled + 1  # at most one already taken in
        quotes.unsubscribe_quote(12345)  # unknown: ignored, as xtdata
    assert not gateway.market.leases  # close() gave everything back


def test_leases_are_renewed_and_made_again_once_the_gateway_forgot(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK, quote_lease=0.6)
    with client_for(gateway) as client:
        with Quotes(client) as kept:  # renews every lease / 3
            seq = kept.subscribe_quote("600000.SH", "tick", callback=Calls())
            first = kept.seqs[seq]
            wait_for(lambda: kept.stats["renewals"] >= 6, 10, what="renewals over a few leases")
            assert kept.seqs[seq] == first and first in gateway.market.leases and kept.stats["resubscribed"] == 0

        # Renewing slower than the lease: the gateway lets it go, the next renewal hears
        # "unknown" and subscribes again with the same parameters.
        with Quotes(client, renew_every=1.5) as late:
            calls = Calls()
            seq = late.subscribe_quote("000001.SZ", "5m", count=3, callback=calls)
            first = late.seqs[seq]
            wait_for(lambda: first not in gateway.market.leases, 5, what="the lease to run out")
            wait_for(lambda: late.stats["resubscribed"] >= 1, 10, what="the subscription made again")
            again = late.seqs[seq]
            assert again is not None and again != first
            lease = gateway.market.leases[again]
            assert (lease.codes, lease.period) == (("000001.SZ",), "5m")
            settled = calls.count()
            calls.wait(settled + 1)  # quotes flow again


def test_a_restarted_gateway_gets_the_subscriptions_again(gateway_factory: Callable[..., Any], tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    settings = dict(router=f"tcp://127.0.0.1:{ports[0]}", pub=f"tcp://127.0.0.1:{ports[1]}",
                    quote_pub=f"tcp://127.0.0.1:{ports[2]}", data_dir=str(tmp_path / "data"))
    first = gateway_factory(WALK, **settings)
    with client_for(first) as client, Quotes(client) as quotes:
        calls = Calls()
        seq = quotes.subscribe_whole_quote(["600000.SH", "000001.SZ"], callback=calls)
        calls.wait()
        first.stop()
        second = gateway_factory(WALK, **settings)
        wait_for(lambda: quotes.seqs[seq] in second.market.leases, 20, interval=0.05,
                 what="the subscription at the new gateway")
        assert second.market.leases[quotes.seqs[seq]].codes == ("600000.SH", "000001.SZ")
        settled = calls.count()
        calls.wait(settled + 2, what="quotes from the new gateway")


def test_two_clients_share_a_code_and_each_unsubscribes_its_own(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK)
    with client_for(gateway) as one, client_for(gateway) as two, Quotes(one) as a, Quotes(two) as b:
        got_a, got_b = Calls(), Calls()
        seq_a = a.subscribe_quote("600000.SH", "tick", callback=got_a)
        b.subscribe_quote("600000.SH", "tick", callback=got_b)
        assert gateway.market.refs[("600000.SH", "tick")] == 2
        got_a.wait()
        got_b.wait()
        a.unsubscribe_quote(seq_a)
        assert gateway.market.refs[("600000.SH", "tick")] == 1
        settled = got_b.count()
        got_b.wait(settled + 3)  # b still hears it
        # The price a quote shows is the price an order fills at.
        market(gateway).set_price("600000.SH", 10.77)
        wait_for(lambda: any(d["600000.SH"][-1]["lastPrice"] == 10.77 for d in got_b.got[settled:]), 10,
                 what="the set price quoted")
        reply = one.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.77)
        assert reply.order_id > 0


def test_a_slow_callback_sees_fewer_newer_quotes_never_a_queue(gateway_factory: Callable[..., Any]) -> None:
    fast = SimConfig(price_model="walk", tick_interval=0.005, persist=False)
    gateway = gateway_factory(fast)
    release = threading.Event()
    seen: list[dict[str, Any]] = []

    def slow(datas: dict[str, Any]) -> None:
        seen.append(datas)
        release.wait(10)

    with client_for(gateway) as client, Quotes(client) as quotes:
        quotes.subscribe_whole_quote(["600000.SH", "000001.SZ", "600036.SH"], callback=slow)
        wait_for(lambda: seen, 10, what="the first callback")
        wait_for(lambda: quotes.stats["conflated"] > 100, 20, what="quotes arriving while the callback blocks")
        assert len(quotes._pending) <= 3  # one per code, however many came
        newest = {code: tick["time"] for code, tick in client.get_full_tick(["600000.SH"]).items()}
        release.set()
        wait_for(lambda: len(seen) >= 3, 10, what="deliveries after the release")
        after = seen[1]
        assert len(after) >= 1 and all(isinstance(t, dict) for t in after.values())
        if "600000.SH" in after:
            assert after["600000.SH"]["time"] >= newest["600000.SH"] - 1000  # newest, not the oldest queued


def test_quotes_over_curve_use_the_clients_keys(gateway_factory: Callable[..., Any], tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    new_client_key(keys, "watcher", parse_accounts(ACCOUNT), parse_permissions("quote"))
    ensure_server_key(keys)
    gateway = gateway_factory(WALK, curve=True, keys_dir=str(keys))
    with client_for(gateway, client_key=keys / "private" / "watcher.key_secret",
                    server_key=keys / "server.key") as client, Quotes(client) as quotes:
        calls = Calls()
        quotes.subscribe_quote("600000.SH", "tick", callback=calls)
        assert calls.wait()[0]["600000.SH"][-1]["lastPrice"] > 0


def test_codes_in_lower_case_are_the_gateways_upper_case_ones(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK)
    with client_for(gateway) as client, Quotes(client) as quotes:
        one, whole = Calls(), Calls()
        quotes.subscribe_quote("600000.sh", "tick", callback=one)
        quotes.subscribe_whole_quote(["000001.sz", "sh"], callback=whole)
        assert list(one.wait()[0]) == ["600000.SH"]
        wait_for(lambda: any("000001.SZ" in d for d in whole.got) and any(c.endswith(".SH") for d in whole.got
                                                                           for c in d), 10, what="both")
