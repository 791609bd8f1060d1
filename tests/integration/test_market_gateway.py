"""Market data through a real gateway over the sim, at the wire (PROTOCOL §16): every op, the
quote PUB, reference counts across clients, leases, a stuck quote subscriber, rights."""

from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import msgpack
import pytest
import zmq

from adapter.client import Client
from adapter.config import SimConfig
from adapter.keys import ensure_server_key, new_client_key, parse_accounts, parse_permissions

from ..conftest import ACCOUNT, trading_session, wait_for
from ..support.market import market

WALK = SimConfig(price_model="walk", tick_interval=0.02, persist=False)


class Wire:
    """A bare DEALER speaking the protocol, so the server is tested apart from the client library."""

    def __init__(self, context: zmq.Context, endpoint: str, curve: dict[str, bytes] | None = None) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.linger = 0
        for option, value in (curve or {}).items():
            self.socket.setsockopt(getattr(zmq, option), value)
        self.socket.connect(endpoint)
        self._ids = itertools.count(1)

    def call(self, op: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        self.socket.send(msgpack.packb({"v": 1, "id": request_id, "op": op, **args}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # bounded: replies to earlier requests are skipped
            if self.socket.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                reply = msgpack.unpackb(self.socket.recv(), strict_map_key=False)
                if reply["id"] == request_id:
                    return dict(reply)
        raise AssertionError(f"no reply to {op} within {timeout} s")

    def ok(self, op: str, **args: Any) -> Any:
        reply = self.call(op, **args)
        assert reply["ok"], reply
        return reply["result"]


@contextlib.contextmanager
def wires(gateway: Any) -> Iterator[Callable[..., Any]]:
    context = zmq.Context()
    sockets: list[zmq.Socket] = []

    def make(kind: str = "router", prefix: bytes | None = b"quote.", curve: dict[str, bytes] | None = None) -> Any:
        if kind == "router":
            wire = Wire(context, gateway.router_endpoint, curve)
            sockets.append(wire.socket)
            return wire
        sub = context.socket(zmq.SUB)
        sub.linger = 0
        for option, value in (curve or {}).items():
            sub.setsockopt(getattr(zmq, option), value)
        sub.connect(gateway.quote_endpoint)
        if prefix is not None:
            sub.subscribe(prefix)
        sockets.append(sub)
        return sub

    try:
        yield make
    finally:
        for socket in sockets:
            socket.close(0)
        context.term()


def next_quote(sub: zmq.Socket, timeout: float = 10.0, topic: bytes = b"") -> tuple[bytes, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded by the deadline
        if sub.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            got, payload = sub.recv_multipart()
            if got.startswith(topic):
                return got, msgpack.unpackb(payload, strict_map_key=False)
    raise AssertionError(f"no quote {topic!r} within {timeout} s")


def test_every_query_op_answers_in_xtdatas_shapes(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK)
    with wires(gateway) as make:
        wire = make()
        assert wire.ok("ping")["quote_pub"] == gateway.quote_endpoint
        tick = wire.ok("get_full_tick", code_list=["600000.SH", "000001.SZ"])["600000.SH"]
        assert isinstance(tick["time"], int) and isinstance(tick["lastPrice"], float)
        assert len(tick["askPrice"]) == len(tick["bidVol"]) == 5 and isinstance(tick["volume"], int)
        bars = wire.ok("get_market_data_ex", stock_list=["600000.SH"], period="1d", count=250)["600000.SH"]
        assert len(bars["time"]) == 250 and {"open", "high", "low", "close", "volume", "amount"} <= set(bars)
        assert all(low <= close <= high for low, close, high in zip(bars["low"], bars["close"], bars["high"]))
        closes = wire.ok("get_market_data_ex", field_list=["close"], stock_list=["600000.SH"], period="1m",
                         count=30)["600000.SH"]
        assert set(closes) == {"time", "close"} and len(closes["close"]) == 30
        assert wire.ok("get_local_data", stock_list=["600000.SH"], count=5)["600000.SH"]["time"] == bars["time"][-5:]
        detail = wire.ok("get_instrument_detail", stock_code="600036.SH")
        assert detail["InstrumentName"] == "招商银行" and detail["UpStopPrice"] > detail["PreClose"]
        assert wire.ok("get_instrument_detail", stock_code="999999.SH") is None
        sectors = wire.ok("get_sector_list")
        assert "沪深A股" in sectors and "000002.SZ" in wire.ok("get_stock_list_in_sector", sector_name="沪深A股")
        days = wire.ok("get_trading_dates", market="SH", start_time="20251001", end_time="20251010")
        assert [time.strftime("%m%d", time.gmtime(d / 1000 + 8 * 3600)) for d in days] == ["1009", "1010"]


def test_downloads_report_progress_on_the_quote_pub_then_answer(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK)
    with wires(gateway) as make:
        wire, sub = make(), make("sub", b"download.dl-7.")
        wait_for(lambda: wire.ok("download_history_data2", stock_list=["600000.SH"], period="1d", task="probe")
                 is None and True, what="a download")  # the subscription has reached the gateway meanwhile
        deadline = time.monotonic() + 10
        progress: list[dict[str, Any]] = []
        while not progress and time.monotonic() < deadline:  # the SUB may join late: bounded retries
            assert wire.ok("download_history_data2", stock_list=["600000.SH", "000001.SZ"], period="1d",
                           start_time="20250101", task="dl-7") is None
            if sub.poll(1000):
                progress = [msgpack.unpackb(sub.recv_multipart()[1])]
        assert progress and set(progress[0]) == {"finished", "total", "stockcode", "message"}
        assert progress[0]["total"] == 2


def test_bad_input_is_named_and_the_gateway_keeps_serving(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK)
    with wires(gateway) as make:
        wire = make()
        cases = [
            ({"op": "get_market_data_ex", "stock_list": ["999999.SH"]}, "999999.SH"),
            ({"op": "get_market_data_ex", "stock_list": ["600000.SH"], "period": "2m"}, "period"),
            ({"op": "get_market_data_ex", "stock_list": ["600000.SH"], "start_time": "20250105",
              "end_time": "20250101"}, "start_time"),
            ({"op": "get_market_data_ex", "stock_list": "600000.SH", "start_time": "yesterday"}, "start_time"),
            ({"op": "get_full_tick", "code_list": ["600000.SH"] * 6001}, "code_list"),
            ({"op": "get_full_tick", "code_list": 5}, "code_list"),
            ({"op": "subscribe_quote", "stock_code": "600000", "period": "tick"}, "stock_code"),
            ({"op": "renew_quotes", "seqs": ["x"]}, "seqs[0]"),
            ({"op": "download_history_data", "stock_code": "600000.SH", "period": "1d", "task": "a b"}, "task"),
            ({"op": "get_market_data_ex", "stock_list": ["600000.SH"] * 3000, "period": "1m", "count": 100_000},
             "values"),
        ]
        for args, named in cases:
            op = args.pop("op")
            reply = wire.call(op, **args)
            assert not reply["ok"] and reply["error"]["code"] == "invalid_argument", (op, reply)
            assert named in reply["error"]["message"], (op, reply)
        assert wire.ok("get_full_tick", code_list=["600000.SH"])["600000.SH"]["lastPrice"] > 0


def test_subscriptions_are_counted_across_clients_and_quotes_show_the_fill_price(
        gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(SimConfig(persist=False))
    with wires(gateway) as make, trading_session(gateway) as (client, log):
        first, second, sub = make(), make(), make("sub", b"quote.tick.600000.SH.")
        a = first.ok("subscribe_quote", stock_code="600000.SH", period="tick")
        b = second.ok("subscribe_quote", stock_code="600000.SH", period="tick")
        assert gateway.market.refs == {("600000.SH", "tick"): 2} and a["lease"] > 0
        first.ok("unsubscribe_quote", seq=a["seq"])
        assert gateway.market.refs == {("600000.SH", "tick"): 1}

        def quoted(price: float) -> bool:
            market(gateway).set_price("600000.SH", price)
            if not sub.poll(200):
                return False
            return bool(msgpack.unpackb(sub.recv_multipart()[1])["data"][0]["lastPrice"] == price)

        wait_for(lambda: quoted(10.71), 10, interval=0.05, what="a quote at 10.71 for the subscriber left")
        # The quote a strategy sees is the price its order fills at.
        order_id = client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.71).order_id
        trade = log.wait("trade", 10, order_id=order_id)[0]
        assert trade.data.traded_price == pytest.approx(10.71)
        second.ok("unsubscribe_quote", seq=b["seq"])
        assert gateway.market.refs == {}


@pytest.mark.parametrize("sim_process", [False, True], ids=["in-process", "own-process"])
def test_whole_market_and_bar_subscriptions_push_their_topics(gateway_factory: Callable[..., Any],
                                                              sim_process: bool) -> None:
    gateway = gateway_factory(WALK, sim_process=sim_process)
    with wires(gateway) as make:
        wire, sub = make(), make("sub", b"quote.")
        wire.ok("get_full_tick", code_list=["600000.SH", "000001.SZ"])  # these codes walk from now on
        wire.ok("subscribe_whole_quote", code_list=["SZ"])
        wire.ok("subscribe_quote", stock_code="600000.SH", period="1m")
        seen: set[bytes] = set()
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:  # bounded by the deadline
            topic, body = next_quote(sub, deadline - time.monotonic())
            seen.add(topic)
            assert body["code"] in topic.decode() and len(body["data"]) == 1
        assert {b"quote.tick.000001.SZ.", b"quote.1m.600000.SH."} <= seen
        assert all(not topic.endswith(b".SH.") or topic.startswith(b"quote.1m.") for topic in seen)


def test_leases_run_out_and_renewals_report_what_is_gone(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK, quote_lease=0.5)
    with wires(gateway) as make:
        wire = make()
        kept = wire.ok("subscribe_quote", stock_code="600000.SH", period="tick")["seq"]
        lost = wire.ok("subscribe_quote", stock_code="000001.SZ", period="tick")["seq"]
        deadline = time.monotonic() + 10
        while lost in gateway.market.leases and time.monotonic() < deadline:  # renew one lease only
            assert wire.ok("renew_quotes", seqs=[kept]) == {"unknown": []}
            time.sleep(0.1)
        assert wire.ok("renew_quotes", seqs=[kept, lost]) == {"unknown": [lost]}
        assert set(gateway.market.leases) == {kept}


def test_a_stuck_quote_subscriber_never_delays_order_events(gateway_factory: Callable[..., Any]) -> None:
    fast = SimConfig(price_model="walk", tick_interval=0.01, persist=False)
    gateway = gateway_factory(fast, quote_hwm=100)
    with wires(gateway) as make, trading_session(gateway) as (client, log):
        wire, stuck = make(), make("sub", b"quote.")  # subscribed and never read
        wire.ok("get_full_tick", code_list=wire.ok("get_stock_list_in_sector", sector_name="北证A股")[:100])
        wire.ok("subscribe_whole_quote", code_list=["BJ"])  # the 100 codes asked for walk every 10 ms
        # far more than the stuck subscriber's queue (quote_hwm) and socket buffers hold
        wait_for(lambda: gateway.quotes.sent > 3_000, 30, interval=0.05, what="a flood of quotes")
        for n in range(10):  # bounded: 10 orders, each answered and announced while quotes flood
            order_id = client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 11.0).order_id
            log.wait("order", 10, order_id=order_id)
        assert stuck.poll(0)  # quotes were there for the taking all along


def test_quotes_need_the_quote_right(gateway_factory: Callable[..., Any], tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    for name, permissions in (("trader", "trade"), ("watcher", "quote"), ("reader", "read")):
        new_client_key(keys, name, parse_accounts(ACCOUNT), parse_permissions(permissions))
    ensure_server_key(keys)
    gateway = gateway_factory(WALK, curve=True, keys_dir=str(keys))
    server = (keys / "server.key").read_text().split('public-key = "')[1].split('"')[0].encode()

    def curve(name: str) -> dict[str, bytes]:
        import zmq.auth

        public, secret = zmq.auth.load_certificate(str(keys / "private" / f"{name}.key_secret"))
        assert secret is not None
        return {"CURVE_SERVERKEY": server, "CURVE_PUBLICKEY": public, "CURVE_SECRETKEY": secret}

    with wires(gateway) as make:
        refused = make(curve=curve("trader")).call("get_full_tick", code_list=["600000.SH"])
        assert refused["error"]["code"] == "permission_denied" and "quote" in refused["error"]["message"]
        for name in ("watcher", "reader"):
            assert make(curve=curve(name)).ok("get_full_tick", code_list=["600000.SH"])["600000.SH"]
        watcher = make(curve=curve("watcher"))
        watcher.ok("get_full_tick", code_list=["600000.SH"])
        watcher.ok("subscribe_quote", stock_code="600000.SH", period="tick")
        allowed, denied = make("sub", b"", curve("watcher")), make("sub", b"", curve("trader"))
        next_quote(allowed, 10, b"quote.tick.600000.SH.")
        assert not denied.poll(500)  # the trader's subscription was never granted
        # a quote key reads no account
        reply = watcher.call("query_stock_asset", account_id=ACCOUNT)
        assert reply["error"]["code"] == "permission_denied"


def test_the_quote_pub_listens_next_to_the_pub(gateway_factory: Callable[..., Any]) -> None:
    from ..conftest import free_port

    # Another process may take port + 1 between the probe and the bind (two suites at once): the
    # gateway then rightly moves the quote PUB, so try again with another port, a bounded number of times.
    for _ in range(5):
        port = free_port()
        gateway = gateway_factory(WALK, pub=f"tcp://127.0.0.1:{port}", quote_pub="")
        if gateway.quote_endpoint == f"tcp://127.0.0.1:{port + 1}":
            break
        gateway.stop()
    assert gateway.quote_endpoint == f"tcp://127.0.0.1:{port + 1}"
    assert gateway.pub_endpoint == f"tcp://127.0.0.1:{port}"  # the event PUB is untouched: its own endpoint


def test_a_taken_port_next_to_the_pub_moves_the_quote_pub_elsewhere(gateway_factory: Callable[..., Any]) -> None:
    from ..conftest import free_port

    port = free_port()
    with zmq.Context() as context, context.socket(zmq.PUB) as squatter:
        squatter.bind(f"tcp://127.0.0.1:{port + 1}")
        gateway = gateway_factory(WALK, pub=f"tcp://127.0.0.1:{port}")
        assert gateway.quote_endpoint.startswith("tcp://127.0.0.1:")
        assert gateway.quote_endpoint != f"tcp://127.0.0.1:{port + 1}"
        with wires(gateway) as make:
            assert make().ok("ping")["quote_pub"] == gateway.quote_endpoint
        squatter.close(0)


def test_subscription_prefixes_on_the_quote_pub_are_bounded(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(WALK, max_subscriptions=3)
    with wires(gateway) as make:
        wire = make()
        sub = make("sub", None)
        for code in ("600000.SH", "000001.SZ", "600036.SH", "000002.SZ"):  # one past the bound
            sub.subscribe(f"quote.tick.{code}.".encode())
            wire.ok("subscribe_quote", stock_code=code, period="tick")
        wire.ok("get_full_tick", code_list=["600000.SH", "000001.SZ", "600036.SH", "000002.SZ"])
        seen: set[bytes] = set()
        deadline = time.monotonic() + 3  # the walk moves each code within a few steps of 20 ms
        while time.monotonic() < deadline:  # bounded by the deadline
            if sub.poll(200):
                seen.add(sub.recv_multipart()[0])
        assert seen and b"quote.tick.000002.SZ." not in seen  # the fourth prefix was never granted
        assert len(seen) <= 3


def test_a_counter_process_pushes_the_same_ticks_as_one_in_the_gateway(gateway_factory: Callable[..., Any]) -> None:
    """A counter in its own process packs each tick for the quote PUB itself; the subscriber
    gets the same message, field for field and type for type, as from a counter in-process."""
    fixed = SimConfig(persist=False)
    bodies = []
    for sim_process in (False, True):
        gateway = gateway_factory(fixed, sim_process=sim_process)
        with wires(gateway) as make:
            wire, sub = make(), make("sub", b"quote.tick.600000.SH.")
            wire.ok("subscribe_quote", stock_code="600000.SH", period="tick")

            prices = itertools.cycle((10.71, 10.72))  # each set moves the price: a tick every time

            def quoted() -> dict[str, Any] | None:
                price = next(prices)
                market(gateway).set_price("600000.SH", price)
                if not sub.poll(200):
                    return None
                body = msgpack.unpackb(sub.recv_multipart()[1], strict_map_key=False)
                return dict(body) if body["data"][0]["lastPrice"] == price else None

            bodies.append(wait_for(quoted, 10, interval=0.05, what="a tick at the price just set"))
    local, remote = bodies
    assert remote["code"] == local["code"] == "600000.SH" and remote["period"] == local["period"] == "tick"
    assert {k: type(v) for k, v in remote["data"][0].items()} == {k: type(v) for k, v in local["data"][0].items()}
    for field in ("lastClose", "stockStatus", "openInt", "settlementPrice"):
        assert remote["data"][0][field] == local["data"][0][field], field
