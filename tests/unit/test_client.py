"""The client library against a fake gateway: a ROUTER and an XPUB served by one thread.

The fake speaks raw pyzmq on random loopback ports. Its PUB side is an XPUB so a test can
wait until the client's subscription has reached it (no slow-joiner guessing). Like the real
gateway it journals what it publishes and answers ``replay`` and ``journal_info`` from that
journal. Every loop is bounded and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import itertools
import json
import logging
import pathlib
import queue
import random
import socket
import threading
import time
from typing import Any, Callable

import pytest
import zmq

from adapter.client import (
    CLIENT_CLOSED,
    INVALID_REPLY,
    AsyncClient,
    Client,
    Event,
    GatewayError,
    GatewayTimeout,
    Record,
)
from adapter.client._market import MarketMethods
from adapter.client._ops import OpMethods
from adapter.client.records import EventFormatError, parse_event, replayed_events, to_result
from adapter.protocol import decode_request, encode_error, encode_event, encode_ok, ops, pack, unpack

from .test_recovery import JournalModel

ACCOUNT = "1000000365"
EPOCH = "epoch-1"  # the fake's journal identity
VECTORS = pathlib.Path(__file__).resolve().parents[2] / "proto" / "vectors"
WAIT = 5.0  # generous deadline for anything that should happen at once

Handler = Callable[["FakeGateway", bytes, dict[str, Any]], None]


class FakeGateway:
    """ROUTER + XPUB on 127.0.0.1; one thread owns both sockets and runs ``handler`` per request.

    Other threads act on the sockets only through :meth:`run`, which queues a function for the
    server thread.
    """

    def __init__(self, handler: Handler | None = None, max_life: float = 30.0, pub_url: str | None = None) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router_url = f"tcp://127.0.0.1:{self.router.bind_to_random_port('tcp://127.0.0.1')}"
        self.pub_url = pub_url or ""
        self._pub_ctx, self.pub = self._open_pub()
        self.handler: Handler = handler or reply_from_table
        self.results: dict[str, Any] = {}
        self.errors: dict[str, tuple[str, str]] = {}
        self.held: list[tuple[bytes, Any]] = []  # server thread only
        self.requests: list[bytes] = []  # raw payloads, in arrival order
        self.subscriptions: list[bytes] = []  # XPUB messages: b"\x01" + prefix / b"\x00" + prefix
        self.answer_pongs = True  # publish gateway.pong for ping(publish=true), as the gateway does
        self.pongs = 0
        self.journal = JournalModel(EPOCH)  # what was published, for replay; server thread only
        self.heartbeat_interval = 0.0  # > 0: publish gateway.heartbeat that often, as the gateway does
        self._cond = threading.Condition()
        self._commands: queue.Queue[Callable[[FakeGateway], object]] = queue.Queue()
        self._stop = threading.Event()
        self._max_life = max_life
        self._thread = threading.Thread(target=self._serve, name="fake-gateway", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        poller = self._poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pub, zmq.POLLIN)
        deadline = time.monotonic() + self._max_life
        next_heartbeat = 0.0
        while not self._stop.is_set() and time.monotonic() < deadline:
            ready = dict(poller.poll(10))
            if self.heartbeat_interval > 0 and time.monotonic() >= next_heartbeat:
                next_heartbeat = time.monotonic() + self.heartbeat_interval
                self._send_heartbeat(None)
            while True:
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    break
                command(self)
            if self.router in ready:
                frames = self.router.recv_multipart()
                identity, payload = frames[0], frames[-1]
                with self._cond:
                    self.requests.append(payload)
                    self._cond.notify_all()
                request = unpack(payload)
                if request.get("op") == "ping" and request.get("publish") and self.answer_pongs:
                    self.pongs += 1
                    pong = encode_event(None, 1, "gateway.pong", None, {"id": request["id"]}, self.journal.epoch)
                    self.pub.send_multipart(pong)
                self.handler(self, identity, request)
            if self.pub in ready:
                message = self.pub.recv()
                with self._cond:
                    self.subscriptions.append(message)
                    self._cond.notify_all()

    # -- server thread ------------------------------------------------------------------

    def _open_pub(self) -> tuple[zmq.Context[Any], zmq.Socket[Any]]:
        """The XPUB, in a context of its own so that :meth:`restart_pub` can end it completely."""
        ctx: zmq.Context[Any] = zmq.Context()
        pub = ctx.socket(zmq.XPUB)
        pub.linger = 0
        pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        if self.pub_url:
            pub.bind(self.pub_url)
        else:
            self.pub_url = f"tcp://127.0.0.1:{pub.bind_to_random_port('tcp://127.0.0.1')}"
        return ctx, pub

    def restart_pub(self) -> None:
        """Close the PUB side and open it again on the same endpoint, as a restarted gateway
        does: subscribers are disconnected and ZeroMQ reconnects them by themselves."""
        self._poller.unregister(self.pub)
        self.pub.close()
        self._pub_ctx.term()
        self._pub_ctx, self.pub = self._open_pub()
        self._poller.register(self.pub, zmq.POLLIN)

    def reply(self, identity: bytes, payload: bytes) -> None:
        self.router.send_multipart([identity, payload])

    # -- any thread ---------------------------------------------------------------------

    def run(self, command: Callable[[FakeGateway], object]) -> None:
        self._commands.put(command)

    def publish(
        self, seq: int, event_type: str, account_id: str | None, data: dict[str, Any], *, live: bool = True
    ) -> None:
        """Journal the event, then publish it (``live=False``: journaled only, as if the PUB dropped it)."""

        def command(gateway: FakeGateway) -> None:
            frames = gateway.journal.append(seq, event_type, account_id, data)
            if live:
                gateway.pub.send_multipart(frames)

        self.run(command)

    def heartbeat(self, last_seq: int | None = None) -> None:
        """Publish a gateway.heartbeat; ``last_seq`` defaults to the newest journaled seq."""
        self.run(lambda gateway: gateway._send_heartbeat(last_seq))

    def _send_heartbeat(self, last_seq: int | None) -> None:
        data = {"last_seq": self.journal.newest if last_seq is None else last_seq, "connected": True, "interval": 1.0}
        self.pub.send_multipart(encode_event(None, 1, "gateway.heartbeat", None, data, self.journal.epoch))

    def flush(self) -> None:
        """Return once every command queued before has run (e.g. the publishes have been sent)."""
        done = threading.Event()
        self.run(lambda gateway: done.set())
        assert done.wait(WAIT), "fake gateway: commands not run in time"

    def publish_raw(self, frames: list[bytes]) -> None:
        self.run(lambda gateway: gateway.pub.send_multipart(frames))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), "fake gateway: condition not met in time"

    def wait_subscribed(self, *prefixes: bytes) -> None:
        self.wait_for(lambda: all(b"\x01" + prefix in self.subscriptions for prefix in prefixes))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self.router.close()
        self.pub.close()
        self.ctx.term()
        self._pub_ctx.term()


def reply_from_table(gateway: FakeGateway, identity: bytes, request: dict[str, Any]) -> None:
    """Answer from ``gateway.errors`` / ``gateway.results``, replay and journal_info from the
    journal; echo the request otherwise."""
    op = request["op"]
    if op in gateway.errors:
        gateway.reply(identity, encode_error(request["id"], *gateway.errors[op]))
        return
    if op in ("replay", "journal_info") and op not in gateway.results:
        args = {key: value for key, value in request.items() if key not in ("v", "id", "op")}
        try:
            result = gateway.journal.answer(op, args)
        except GatewayError as exc:
            gateway.reply(identity, encode_error(request["id"], exc.code, exc.message))
        else:
            gateway.reply(identity, encode_ok(request["id"], result))
        return
    result = gateway.results.get(op, {"echo": request})
    if callable(result):
        result = result(request)
    gateway.reply(identity, encode_ok(request["id"], result))


def reply_with(wire: bytes, gateway: FakeGateway, identity: bytes, request: dict[str, Any]) -> None:
    """Answer every request with the same bytes."""
    gateway.reply(identity, wire)


def hold_first_then_answer(gateway: FakeGateway, identity: bytes, request: dict[str, Any]) -> None:
    """Hold the first request; on each later one, send the held (now late) replies first."""
    if not gateway.held and not gateway.requests[:-1]:
        gateway.held.append((identity, request["id"]))
        return
    for held_identity, held_id in gateway.held:
        gateway.reply(held_identity, encode_ok(held_id, {"late": True}))
    gateway.held.clear()
    gateway.reply(identity, encode_ok(request["id"], {"echo": request}))


def unused_endpoint() -> str:
    """A loopback endpoint nobody listens on.

    A plain socket is bound (never listening) and closed at once; a zmq probe would keep
    listening for a moment after close(). The port is below the ephemeral range, so a
    connecting socket is never handed it as its source port and connected to itself.
    """
    for port in random.sample(range(20000, 30000), 200):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            probe.close()
        return f"tcp://127.0.0.1:{port}"
    raise RuntimeError("no free loopback port between 20000 and 30000")


@pytest.fixture
def gateway() -> Any:
    fake = FakeGateway()
    yield fake
    fake.close()


@pytest.fixture
def client(gateway: FakeGateway) -> Any:
    with Client(gateway.router_url, gateway.pub_url, timeout=WAIT) as blocking:
        yield blocking


ORDER = {"account_id": ACCOUNT, "stock_code": "600000.SH", "order_id": 7}


# -- values ---------------------------------------------------------------------------------


def test_record_reads_like_an_xttype_object() -> None:
    record = Record({"cash": 1000.5, "account_id": ACCOUNT, "legs": [{"volume": 100}], "meta": {"a": 1}})
    assert record.cash == 1000.5
    assert record["account_id"] == ACCOUNT
    assert record.legs == [Record(volume=100)]
    assert record.meta.a == 1
    assert "cash" in record and "price" not in record
    assert record.get("price", 0) == 0
    assert list(record) == ["cash", "account_id", "legs", "meta"] == list(record.keys())
    assert dict(record)["cash"] == 1000.5
    assert len(record) == 4
    assert "cash" in dir(record)
    with pytest.raises(AttributeError, match="no field 'price'"):
        _ = record.price
    with pytest.raises(AttributeError):
        record.cash = 1
    copy = record.to_dict()
    copy["legs"][0]["volume"] = 1
    assert record.legs[0].volume == 100, "to_dict must not share state with the record"
    assert record == Record(record.to_dict())
    assert record != Record(cash=1)
    assert record != record.to_dict(), "a Record equals Records only"
    assert repr(Record(cash=1.5, account_id="1")) == "Record(cash=1.5, account_id='1')"


def test_results_convert_maps_lists_and_nil() -> None:
    assert to_result(None) is None
    assert to_result({"seq": 3}) == Record(seq=3)
    assert to_result([{"a": 1}, {"a": 2}]) == [Record(a=1), Record(a=2)]
    assert to_result([]) == []
    assert to_result(5) == 5


def test_parse_event_and_reject_malformed() -> None:
    frames = list(encode_event(9, 123, "order", ACCOUNT, ORDER, EPOCH))
    event = parse_event(frames)
    assert event == Event(f"order.{ACCOUNT}.", 9, 123, "order", ACCOUNT, Record(ORDER), EPOCH)
    assert event.data.order_id == 7
    connection = parse_event(list(encode_event(1, 2, "gateway.connection", None, {"connected": True}, EPOCH)))
    assert (connection.topic, connection.account_id, connection.data.connected) == ("gateway.connection", None, True)
    for bad in (
        [b"order.1"],
        [b"order.1", b"\xc1"],
        [b"order.1", pack([1, 2])],
        [b"order.1", pack({"v": 2, "seq": 1, "ts": 1, "type": "order", "data": {}})],
        [b"order.1", pack({"v": 1, "seq": "x", "ts": 1, "type": "order", "data": {}})],
    ):
        with pytest.raises(EventFormatError):
            parse_event(bad)


def test_gateway_timeout_is_a_gateway_error() -> None:
    timeout = GatewayTimeout("slow", 4, sent=False)
    assert isinstance(timeout, GatewayError)
    assert (timeout.code, timeout.message, timeout.request_id, timeout.sent) == ("client_timeout", "slow", 4, False)
    assert str(GatewayError("unknown_op", "no such op", 1)) == "unknown_op: no such op"


# -- the op surface -------------------------------------------------------------------------


def test_methods_match_the_protocol_op_table() -> None:
    for name, spec in ops.OPS.items():
        if spec.kind == ops.MARKET:
            continue  # xtdata's signatures: test_market_methods_keep_xtdatas_parameters
        method = getattr(OpMethods, name)
        params = list(inspect.signature(method).parameters.values())[1:]  # skip self
        positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        keyword_only = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        keyword_params = ("account_type", "client_order_id", "intentional")
        expected = [p for p in spec.all_params if p.name not in keyword_params]
        assert [p.name for p in positional] == [p.name for p in expected], name
        for param, wire in zip(positional, expected):
            wanted = inspect.Parameter.empty if wire.required else wire.default
            assert param.default == wanted, f"{name}.{param.name}"
        assert keyword_only.pop("timeout") is None
        wanted_keywords = {"account_type": "STOCK"} if spec.takes_account else {}
        if "client_order_id" in spec.param_names:
            wanted_keywords["client_order_id"] = None
        if "intentional" in spec.param_names:
            wanted_keywords["intentional"] = False
        assert keyword_only == wanted_keywords, name
        assert getattr(Client, name) is method and getattr(AsyncClient, name) is method


# Market ops (PROTOCOL §16) keep xtdata's parameters where the wire's differ: its defaults for
# the lists, a progress callback beside the wire's task.
XTDATA_DEFAULTS = {("get_market_data_ex", "stock_list"): (), ("get_local_data", "stock_list"): ()}
NOT_ON_THE_WIRE = {"callback", "quote_pub", "timeout"}


def test_market_methods_keep_xtdatas_parameters() -> None:
    for name, spec in ops.OPS.items():
        if spec.kind != ops.MARKET:
            continue
        method = getattr(MarketMethods, name)
        assert getattr(Client, name) is method and getattr(AsyncClient, name) is method
        params = dict(list(inspect.signature(method).parameters.items())[1:])  # skip self
        assert set(params) - spec.param_names <= NOT_ON_THE_WIRE, name
        for wire in spec.params:
            param = params[wire.name]
            wanted = XTDATA_DEFAULTS.get((name, wire.name), inspect.Parameter.empty if wire.required else wire.default)
            assert param.default == wanted, f"{name}.{wire.name}"
        assert params["timeout"].kind is inspect.Parameter.KEYWORD_ONLY and params["timeout"].default is None


MARKET_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]] = [
    ("get_full_tick", ("600000.SH",), {}, {"code_list": ["600000.SH"]}),
    ("get_market_data_ex", ([], "600000.SH"), {"count": 5},
     {"field_list": [], "stock_list": ["600000.SH"], "period": "1d", "start_time": "", "end_time": "", "count": 5,
      "dividend_type": "none", "fill_data": True}),
    ("get_local_data", (("close",), ["600000.SH"], "1m", "20250101"), {},
     {"field_list": ["close"], "stock_list": ["600000.SH"], "period": "1m", "start_time": "20250101",
      "end_time": "", "count": -1, "dividend_type": "none", "fill_data": True}),
    ("get_instrument_detail", ("600000.SH",), {}, {"stock_code": "600000.SH", "iscomplete": False}),
    ("get_sector_list", (), {}, {}),
    ("get_stock_list_in_sector", ("沪深A股",), {}, {"sector_name": "沪深A股"}),
    ("get_trading_dates", ("SH",), {"count": 3}, {"market": "SH", "start_time": "", "end_time": "", "count": 3}),
    ("download_history_data", ("600000.SH", "1d"), {},
     {"stock_code": "600000.SH", "period": "1d", "start_time": "", "end_time": "", "incrementally": None,
      "task": ""}),
    ("download_history_data2", (["600000.SH"], "1d", "20250101", "", None, True), {"task": "t1"},
     {"stock_list": ["600000.SH"], "period": "1d", "start_time": "20250101", "end_time": "", "incrementally": True,
      "task": "t1"}),
    ("subscribe_quote", ("600000.SH",), {}, {"stock_code": "600000.SH", "period": "1d", "count": 0}),
    ("subscribe_whole_quote", (["SH", "000001.SZ"],), {}, {"code_list": ["SH", "000001.SZ"]}),
    ("unsubscribe_quote", (3,), {}, {"seq": 3}),
    ("renew_quotes", ((1, 2),), {}, {"seqs": [1, 2]}),
]

CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]] = MARKET_CALLS + [
    # method, positional args, keyword args, expected wire arguments
    ("ping", (), {}, {"publish": False}),
    (
        "order_stock",
        (ACCOUNT, "600000.SH", 23, 100, 11, 10.5),
        {"order_remark": "r1", "client_order_id": "c1"},
        {"account_id": ACCOUNT, "stock_code": "600000.SH", "order_type": 23, "order_volume": 100,
         "price_type": 11, "price": 10.5, "strategy_name": "", "order_remark": "r1", "client_order_id": "c1"},
    ),
    (
        "order_stock_async",
        (ACCOUNT, "000001.SZ", "sell", 200, "latest", 0.0, "s1"),
        {"account_type": "CREDIT", "client_order_id": "c2", "intentional": True},
        {"account_id": ACCOUNT, "account_type": "CREDIT", "stock_code": "000001.SZ", "order_type": "sell",
         "order_volume": 200, "price_type": "latest", "price": 0.0, "strategy_name": "s1", "order_remark": "",
         "client_order_id": "c2", "intentional": True},
    ),
    ("cancel_order_stock", (ACCOUNT, 7), {}, {"account_id": ACCOUNT, "order_id": 7}),
    ("cancel_order_stock_async", (ACCOUNT, 8), {}, {"account_id": ACCOUNT, "order_id": 8}),
    (
        "cancel_order_stock_sysid",
        (ACCOUNT, "SH", "S1"),
        {},
        {"account_id": ACCOUNT, "market": "SH", "sysid": "S1"},
    ),
    (
        "cancel_order_stock_sysid_async",
        (ACCOUNT, 1, "S2"),
        {},
        {"account_id": ACCOUNT, "market": 1, "sysid": "S2"},
    ),
    ("query_stock_asset", (ACCOUNT,), {}, {"account_id": ACCOUNT}),
    ("query_stock_positions", (ACCOUNT,), {}, {"account_id": ACCOUNT}),
    (
        "query_stock_position",
        (ACCOUNT, "600000.SH"),
        {},
        {"account_id": ACCOUNT, "stock_code": "600000.SH"},
    ),
    (
        "query_stock_orders",
        (ACCOUNT,),
        {},
        {"account_id": ACCOUNT, "cancelable_only": False},
    ),
    ("query_stock_order", (ACCOUNT, 7), {}, {"account_id": ACCOUNT, "order_id": 7}),
    ("query_stock_trades", (ACCOUNT,), {}, {"account_id": ACCOUNT}),
    ("query_account_infos", (), {}, {}),
    ("query_account_status", (), {}, {}),
    ("replay", (5,), {}, {"from_seq": 5, "prefixes": [], "limit": 1000}),
    (
        "replay",
        (5, 9, ["order.", "trade."], 10),
        {},
        {"from_seq": 5, "to_seq": 9, "prefixes": ["order.", "trade."], "limit": 10},
    ),
    ("snapshot", (ACCOUNT,), {}, {"account_id": ACCOUNT}),
    ("snapshot", (ACCOUNT,), {"account_type": 3}, {"account_id": ACCOUNT, "account_type": 3}),
    ("journal_info", (), {}, {}),
    ("order_outcomes", (ACCOUNT,), {}, {"account_id": ACCOUNT}),
    ("reload", (), {}, {}),
    ("risk", (), {}, {}),
    *[(name, (ACCOUNT,), {}, {"account_id": ACCOUNT}) for name in (
        "query_credit_detail", "query_stk_compacts", "query_credit_subjects", "query_credit_slo_code",
        "query_credit_assure", "query_new_purchase_limit")],
    ("query_ipo_data", (), {}, {}),
    ("halt", (), {}, {"cancel_open": False, "reason": ""}),
    ("halt", (True, "fat finger"), {}, {"cancel_open": True, "reason": "fat finger"}),
    ("reduce_only", (), {}, {"reason": ""}),
    ("resume", ("checked",), {}, {"reason": "checked"}),
    ("sim", ("position", "600000.SH", None, None, ACCOUNT, None, 500), {}, {"action": "position", "stock_code": "600000.SH", "account_id": ACCOUNT, "volume": 500}),
]


def test_every_op_is_encoded_as_the_protocol_envelope(gateway: FakeGateway, client: Client) -> None:
    assert {name for name, *_ in CALLS} == set(ops.OPS)
    for index, (name, args, kwargs, wire_args) in enumerate(CALLS):
        getattr(client, name)(*args, **kwargs)
        raw = gateway.requests[index]
        assert unpack(raw) == {"v": 1, "id": index + 1, "op": name, **wire_args}, name
        request = decode_request(raw)  # the gateway's own decoder accepts it ...
        assert (request.id, request.op, request.args) == (index + 1, name, wire_args)
        ops.validate_args(ops.lookup(name), request.args)  # ... and so does its validation


def test_none_arguments_are_left_off_the_wire(gateway: FakeGateway, client: Client) -> None:
    client.replay(3, None)
    client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.5, None, "r")  # type: ignore[arg-type]
    assert "to_seq" not in unpack(gateway.requests[0])
    assert "strategy_name" not in unpack(gateway.requests[1]) and unpack(gateway.requests[1])["order_remark"] == "r"


def test_generic_call_sends_any_op(gateway: FakeGateway, client: Client) -> None:
    result = client.call("replay_events", since_seq=5, timeout=2)
    assert result.echo.to_dict() == {"v": 1, "id": 1, "op": "replay_events", "since_seq": 5}


def test_requests_and_replies_match_the_protocol_vectors(gateway: FakeGateway, client: Client) -> None:
    """Byte for byte: what the client sends for each op is proto/vectors/request.<op>.msgpack,
    and the client reads reply.<op>.msgpack as the vector's result."""
    bodies = [json.loads(path.read_text(encoding="utf-8")) for path in VECTORS.glob("request.*.json")]
    assert {body["op"] for body in bodies} <= set(ops.OPS)  # test_vectors.py checks every op has one

    def reply_with_vector(gateway: FakeGateway, identity: bytes, request: dict[str, Any]) -> None:
        gateway.reply(identity, (VECTORS / f"reply.{request['op']}.msgpack").read_bytes())

    gateway.handler = reply_with_vector
    for body in sorted(bodies, key=lambda body: body["id"]):
        op = body["op"]
        args = {key: value for key, value in body.items() if key not in ("v", "id", "op")}
        client._ids = itertools.count(body["id"])  # the vector's request id
        result = getattr(client, op)(**args)
        assert gateway.requests[-1] == (VECTORS / f"request.{op}.msgpack").read_bytes(), op
        reply = from_vector_json(json.loads((VECTORS / f"reply.{op}.json").read_text(encoding="utf-8")))
        if ops.OPS[op].kind == ops.MARKET:  # xtdata's plain values
            assert result == reply["result"], op
        else:
            assert result == to_result(reply["result"]), op
        if op == "replay":  # a replayed event is the PUB frames: it parses like a live one
            events, wire = replayed_events(result), reply["result"]["events"]
            assert [(event.topic, event.type) for event in events] == [(topic, "trade") for topic, _ in wire]
            assert all(event.seq is not None and event.epoch == reply["result"]["epoch"] for event in events)


def from_vector_json(value: Any) -> Any:
    """A vector's JSON rendering as msgpack values: ``{"$bin": "<hex>"}`` is bytes."""
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        return {key: from_vector_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_vector_json(item) for item in value]
    return value


def test_error_and_event_vectors(gateway: FakeGateway, client: Client) -> None:
    for path in sorted(VECTORS.glob("error.*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        if body["id"] is None:
            continue  # a reply the gateway could not address to a request: nothing to match
        wire = path.with_suffix(".msgpack").read_bytes()
        gateway.handler = functools.partial(reply_with, wire)
        client._ids = itertools.count(body["id"])
        with pytest.raises(GatewayError) as caught:
            client.ping()
        assert (caught.value.code, caught.value.message) == (body["error"]["code"], body["error"]["message"])
    for path in sorted(VECTORS.glob("event.*.json")):
        rendering = json.loads(path.read_text(encoding="utf-8"))
        payload = rendering["payload"]
        event = parse_event([rendering["topic"].encode(), path.with_suffix(".msgpack").read_bytes()])
        assert event == Event(
            rendering["topic"], payload["seq"], payload["ts"], payload["type"], payload["account_id"],
            Record(payload["data"]), payload["epoch"], payload.get("reconciled", False),
        )


def test_results_become_records(gateway: FakeGateway, client: Client) -> None:
    asset = {"account_type": 2, "account_id": ACCOUNT, "cash": 1e6, "frozen_cash": 0.0}
    gateway.results.update(
        {
            "ping": {"server_version": "0.1.0", "protocol_version": 1, "accounts": [ACCOUNT], "connected": True},
            "query_stock_asset": asset,
            "query_stock_positions": [{"stock_code": "600000.SH", "volume": 100}, {"stock_code": "000001.SZ"}],
            "query_stock_position": None,
            "query_account_infos": [],
            "order_stock_async": {"seq": 12},
        }
    )
    pong = client.ping()
    assert isinstance(pong, Record) and pong.protocol_version == 1 and pong.accounts == [ACCOUNT]
    fetched = client.query_stock_asset(ACCOUNT)
    assert fetched == Record(asset)
    assert fetched is not None and fetched.cash == 1e6
    positions = client.query_stock_positions(ACCOUNT)
    assert [p.stock_code for p in positions] == ["600000.SH", "000001.SZ"]
    assert all(isinstance(p, Record) for p in positions)
    assert client.query_stock_position(ACCOUNT, "600000.SH") is None
    assert client.query_account_infos() == []
    assert client.order_stock_async(ACCOUNT, "600000.SH", 23, 100, 11, 10.0).seq == 12


def test_error_reply_raises_gateway_error_with_code(gateway: FakeGateway, client: Client) -> None:
    gateway.errors["order_stock"] = ("invalid_argument", "price: must be a finite number >= 0")
    with pytest.raises(GatewayError) as caught:
        client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, -1.0)
    assert not isinstance(caught.value, GatewayTimeout)
    assert caught.value.code == "invalid_argument"
    assert caught.value.message == "price: must be a finite number >= 0"
    assert caught.value.request_id == 1
    gateway.results["ping"] = lambda request: None
    assert client.ping() is None  # the client goes on after an error reply


def test_malformed_reply_raises_invalid_reply(gateway: FakeGateway, client: Client) -> None:
    def handler(gateway: FakeGateway, identity: bytes, request: dict[str, Any]) -> None:
        gateway.reply(identity, b"\xc1")  # not msgpack: dropped, cannot be matched
        gateway.reply(identity, pack({"v": 1, "id": request["id"], "result": 1}))  # no "ok"

    gateway.handler = handler
    with pytest.raises(GatewayError) as caught:
        client.ping()
    assert caught.value.code == INVALID_REPLY


def test_timeout_then_late_reply_is_discarded(gateway: FakeGateway, client: Client) -> None:
    gateway.handler = hold_first_then_answer
    started = time.monotonic()
    with pytest.raises(GatewayTimeout) as caught:
        client.query_stock_asset(ACCOUNT, timeout=0.2)
    assert 0.15 <= time.monotonic() - started < WAIT
    assert (caught.value.code, caught.value.request_id, caught.value.sent) == ("client_timeout", 1, True)
    # The gateway now answers request 1 (late) and then request 2: only request 2's reply counts.
    result = client.query_stock_order(ACCOUNT, 42)
    assert result is not None and "late" not in result and result.echo.id == 2 and result.echo.order_id == 42


def test_unreachable_gateway_times_out_without_sending() -> None:
    with Client(unused_endpoint(), timeout=0.2) as lonely:
        with pytest.raises(GatewayTimeout) as caught:
            lonely.ping()
    assert caught.value.sent is False


def test_invalid_timeouts_and_closed_client(gateway: FakeGateway) -> None:
    blocking = Client(gateway.router_url, gateway.pub_url)
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            blocking.ping(timeout=bad)
    blocking.close()
    blocking.close()  # idempotent
    assert blocking.closed
    with pytest.raises(GatewayError) as caught:
        blocking.ping()
    assert caught.value.code == CLIENT_CLOSED
    with pytest.raises(GatewayError):
        blocking.events()


def test_threads_share_one_client_and_replies_match_by_id(gateway: FakeGateway, client: Client) -> None:
    def decoy_first(gateway: FakeGateway, identity: bytes, request: dict[str, Any]) -> None:
        # Replies for ids nobody waits for arrive first; the right one comes last.
        gateway.reply(identity, encode_ok(request["id"] + 1000, {"decoy": True}))
        gateway.reply(identity, encode_ok("someone-else", {"decoy": True}))
        gateway.reply(identity, encode_ok(request["id"], {"order_id": request["order_id"]}))

    gateway.handler = decoy_first
    calls_per_thread = 25
    failures: list[str] = []

    def worker(base: int) -> None:
        for offset in range(calls_per_thread):
            order_id = base + offset
            try:
                result = client.query_stock_order(ACCOUNT, order_id)
            except Exception as exc:  # reported below, not lost in the thread
                failures.append(repr(exc))
                return
            if result is None or result.to_dict() != {"order_id": order_id}:
                failures.append(f"asked for {order_id}, got {result!r}")

    threads = [threading.Thread(target=worker, args=(base,)) for base in (1, 10_001)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert len(gateway.requests) == 2 * calls_per_thread
    ids = [unpack(raw)["id"] for raw in gateway.requests]
    assert sorted(ids) == list(range(1, 2 * calls_per_thread + 1))


# -- events, blocking -----------------------------------------------------------------------


def test_events_iterator_filters_by_prefix(gateway: FakeGateway, client: Client) -> None:
    with client.events("order.", "gateway.", timeout=WAIT) as stream:
        assert not stream.subscribed
        assert stream.wait_subscribed(WAIT)  # ping(publish=true) until a pong arrives
        assert stream.subscribed and gateway.pongs >= 1
        gateway.wait_subscribed(b"")  # the fake's own view agrees: one subscription, to everything
        gateway.publish(1, "trade", ACCOUNT, {"traded_id": "T1"})
        gateway.publish(2, "order", ACCOUNT, ORDER)
        gateway.publish_raw([b"order.bad", b"\xc1"])  # malformed: logged and skipped
        gateway.publish(3, "asset", ACCOUNT, {"cash": 1.0})
        gateway.publish(4, "gateway.connection", None, {"connected": False, "reason": "test"})
        gateway.publish(5, "order", "2000", {**ORDER, "account_id": "2000"})
        received: list[Event] = []
        pongs: list[Event] = []
        for event in stream:
            (pongs if event.type == "gateway.pong" else received).append(event)
            if len(received) == 3:
                break
        sub_socket = stream._sub
    assert sub_socket.closed
    assert [event.seq for event in received] == [2, 4, 5]
    assert pongs and pongs[0].topic == "gateway.pong"  # "gateway." matches pongs too: they are kept
    first = received[0]
    assert (first.topic, first.type, first.account_id) == (f"order.{ACCOUNT}.", "order", ACCOUNT)
    assert first.ts == 1_700_000_000_000_000_002
    assert first.data == Record(ORDER) and first.data.order_id == 7
    assert received[1].topic == "gateway.connection" and received[1].account_id is None
    assert received[2].topic == "order.2000."


def test_wait_subscribed_keeps_events_and_hides_unasked_pongs(gateway: FakeGateway, client: Client) -> None:
    stream = client.events(f"trade.{ACCOUNT}")
    gateway.wait_subscribed(b"")
    gateway.publish(1, "trade", ACCOUNT, {"traded_id": "T1"})  # arrives while wait_subscribed reads
    assert stream.wait_subscribed(WAIT)
    event = stream.receive(WAIT)
    assert event is not None and event.seq == 1
    assert stream.receive(0.05) is None  # the pongs did not match the stream's prefix
    stream.close()


def test_wait_subscribed_gives_up_after_its_timeout(gateway: FakeGateway, client: Client) -> None:
    gateway.answer_pongs = False
    with client.events("order.") as stream:
        started = time.monotonic()
        assert stream.wait_subscribed(0.3) is False
        assert 0.25 <= time.monotonic() - started < WAIT
    assert len(gateway.requests) >= 2, "it pings again while it waits"


def test_events_iterator_stops_after_idle_timeout(gateway: FakeGateway, client: Client) -> None:
    stream = client.events(timeout=0.2)
    started = time.monotonic()
    assert list(stream) == []
    assert 0.15 <= time.monotonic() - started < WAIT
    assert stream.closed
    with pytest.raises(RuntimeError):
        stream.receive(0.1)


def test_events_receive_and_socket_closed_when_dropped(gateway: FakeGateway, client: Client) -> None:
    stream = client.events()  # no prefix: everything
    gateway.wait_subscribed(b"")
    assert stream.receive(0.05) is None
    gateway.publish(1, "position", ACCOUNT, {"stock_code": "600000.SH"})
    event = stream.receive(WAIT)
    assert event is not None and event.topic == f"position.{ACCOUNT}."
    sub_socket = stream._sub
    del stream
    gc.collect()
    assert sub_socket.closed


def test_subscribe_delivers_matching_events_and_survives_callback_errors(
    gateway: FakeGateway, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    delivered: queue.Queue[Event] = queue.Queue()
    threads: set[str] = set()

    def callback(event: Event) -> None:
        threads.add(threading.current_thread().name)
        if event.seq == 1:
            raise RuntimeError("strategy bug")
        delivered.put(event)

    with caplog.at_level(logging.ERROR, logger="adapter.client.sync"):
        handle = client.subscribe(callback, f"trade.{ACCOUNT}")
        assert handle.wait_subscribed(WAIT) and handle.subscribed
        gateway.publish(1, "trade", ACCOUNT, {"traded_id": "T1"})
        gateway.publish(2, "order", ACCOUNT, ORDER)
        gateway.publish(3, "trade", ACCOUNT, {"traded_id": "T3"})
        gateway.publish(4, "trade", "2000", {"traded_id": "other account"})
        gateway.publish(5, "trade", ACCOUNT, {"traded_id": "T5"})
        got = [delivered.get(timeout=WAIT).seq for _ in range(2)]
    assert got == [3, 5]  # 1 raised, 2 and 4 and the pongs did not match; delivery is in order
    assert delivered.empty()
    assert any("event callback failed" in record.getMessage() for record in caplog.records)
    assert len(threads) == 1 and threading.current_thread().name not in threads
    handle.close()
    assert handle.closed and not handle.alive


def test_closing_the_client_closes_its_subscriptions(gateway: FakeGateway) -> None:
    blocking = Client(gateway.router_url, gateway.pub_url)
    handle = blocking.subscribe(lambda event: None)
    assert handle.alive
    blocking.close()
    assert handle.closed and not handle.alive


# -- asyncio --------------------------------------------------------------------------------


def test_async_many_calls_in_flight_answered_out_of_order(gateway: FakeGateway) -> None:
    count = 40

    def answer_in_reverse(gateway: FakeGateway, identity: bytes, request: dict[str, Any]) -> None:
        gateway.held.append((identity, request))
        if len(gateway.held) == count:  # every call is in flight at once: answer last-first
            for held_identity, held in reversed(gateway.held):
                gateway.reply(held_identity, encode_ok(held["id"], {"order_id": held["order_id"]}))
            gateway.held.clear()

    gateway.handler = answer_in_reverse

    async def main() -> list[Any]:
        async with AsyncClient(gateway.router_url, gateway.pub_url, timeout=WAIT) as client:
            return await asyncio.gather(*(client.query_stock_order(ACCOUNT, 100 + n) for n in range(count)))

    results = asyncio.run(main())
    assert [result.order_id for result in results] == [100 + n for n in range(count)]
    assert len(gateway.requests) == count


def test_async_errors_timeouts_and_close(gateway: FakeGateway) -> None:
    gateway.handler = hold_first_then_answer

    async def main() -> None:
        client = AsyncClient(gateway.router_url, gateway.pub_url, timeout=WAIT)
        with pytest.raises(GatewayTimeout) as caught:
            await client.ping(timeout=0.2)
        assert (caught.value.request_id, caught.value.sent) == (1, True)
        result = await client.query_stock_order(ACCOUNT, 5)  # the late reply to 1 is dropped
        assert result is not None and result.echo.id == 2 and result.echo.order_id == 5

        gateway.handler = reply_from_table
        gateway.errors["cancel_order_stock"] = ("unknown_account", "no account 9")
        with pytest.raises(GatewayError) as error:
            await client.cancel_order_stock("9", 5)
        assert (error.value.code, error.value.request_id) == ("unknown_account", 3)
        gateway.results["query_stock_trades"] = [{"traded_id": "T1"}]
        assert await client.query_stock_trades(ACCOUNT) == [Record(traded_id="T1")]

        gateway.handler = lambda gateway, identity, request: None  # never answers
        pending = asyncio.ensure_future(client.ping())
        await asyncio.to_thread(gateway.wait_for, lambda: len(gateway.requests) == 5)
        await client.close()
        with pytest.raises(GatewayError) as closed:
            await pending
        assert closed.value.code == CLIENT_CLOSED
        with pytest.raises(GatewayError) as after:
            await client.ping()
        assert after.value.code == CLIENT_CLOSED

    asyncio.run(asyncio.wait_for(main(), 3 * WAIT))


def test_async_unreachable_gateway_times_out_without_sending() -> None:
    endpoint = unused_endpoint()

    async def main() -> GatewayTimeout:
        async with AsyncClient(endpoint, timeout=0.2) as client:
            with pytest.raises(GatewayTimeout) as caught:
                await client.ping()
            return caught.value

    assert asyncio.run(main()).sent is False


def test_async_events_and_subscription(gateway: FakeGateway) -> None:
    async def main() -> None:
        async with AsyncClient(gateway.router_url, gateway.pub_url, timeout=WAIT) as client:
            delivered: asyncio.Queue[Event] = asyncio.Queue()

            async def callback(event: Event) -> None:
                if event.seq == 1:
                    raise RuntimeError("strategy bug")
                await delivered.put(event)

            handle = client.subscribe(callback, "trade.")
            stream = client.events("order.", timeout=WAIT)
            assert await stream.wait_subscribed(WAIT) and stream.subscribed
            assert await handle.wait_subscribed(WAIT) and handle.subscribed
            gateway.publish(1, "trade", ACCOUNT, {"traded_id": "T1"})
            gateway.publish(2, "asset", ACCOUNT, {"cash": 1.0})
            gateway.publish(3, "order", ACCOUNT, ORDER)
            gateway.publish(4, "trade", ACCOUNT, {"traded_id": "T4"})
            gateway.publish(5, "order", ACCOUNT, {**ORDER, "order_id": 8})
            seqs = []
            async for event in stream:
                seqs.append(event.seq)
                if len(seqs) == 2:
                    break
            assert seqs == [3, 5]
            assert (await asyncio.wait_for(delivered.get(), WAIT)).seq == 4
            stream.close()
            assert stream.closed
            idle = client.events(timeout=0.1)
            assert [event async for event in idle] == [] and idle.closed
        assert handle.closed  # closed with the client

    asyncio.run(asyncio.wait_for(main(), 3 * WAIT))


def test_no_pickle_on_the_wire() -> None:
    package = pathlib.Path(__file__).resolve().parents[2] / "adapter" / "client"
    for source in package.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "send_pyobj" not in text and "recv_pyobj" not in text, source.name


def test_orders_always_carry_a_client_order_id(gateway: FakeGateway, client: Client) -> None:
    client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.5)
    client.order_stock_async(ACCOUNT, "600000.SH", 23, 100, 11, 10.5)
    first, second = (unpack(raw)["client_order_id"] for raw in gateway.requests[-2:])
    assert first and second and first != second and len(first) <= 64


def test_the_client_imports_nothing_of_the_server() -> None:
    """A strategy machine needs the protocol and the client only: no server config, no sim."""
    import ast
    import subprocess
    import sys

    code = ("import sys, adapter.client; "
            "print(sorted(m for m in sys.modules if m.startswith('adapter')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    modules = ast.literal_eval(loaded.stdout)
    assert modules and not [m for m in modules if m.startswith(("adapter.server", "adapter.config", "adapter.sim",
                                                                 "adapter.broker", "adapter.server.risk"))], modules
