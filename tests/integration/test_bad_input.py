"""Bad input never hurts: each gets a clear error reply (where one can be addressed),
the loop keeps serving everyone else, and no state is lost."""

from __future__ import annotations

from typing import Any, Iterator

import msgpack
import pytest
import zmq

from adapter.protocol import encode_request

from ..conftest import ACCOUNT, EventLog, raw_dealer, wait_for

ORDER = {
    "account_id": ACCOUNT,
    "stock_code": "600000.SH",
    "order_type": 23,
    "order_volume": 200,
    "price_type": 11,
    "price": 10.5,
}


@pytest.fixture
def raw(gateway: Any) -> Iterator[zmq.Socket]:
    with raw_dealer(gateway.router_endpoint) as socket:
        yield socket


def exchange(socket: zmq.Socket, *frames: bytes) -> dict:
    socket.send_multipart(list(frames))
    return msgpack.unpackb(socket.recv_multipart()[-1], raw=False)


def assert_error(reply: dict, code: str, *words: str, request_id: Any = None) -> None:
    assert reply["v"] == 1 and reply["ok"] is False, reply
    assert reply["error"]["code"] == code, reply
    for word in words:
        assert word in reply["error"]["message"], reply
    assert reply["id"] == request_id


@pytest.fixture
def resting_order(client: Any, event_log: EventLog) -> int:
    """State that must survive the bad input: a resting order."""
    order_id = client.order_stock(ACCOUNT, "600000.SH", 23, 200, 11, 10.50).order_id
    event_log.wait("order", order_id=order_id, order_status=50)
    return order_id


def assert_still_serving(client: Any, order_id: int) -> None:
    assert client.ping().connected
    order = client.query_stock_order(ACCOUNT, order_id)
    assert order is not None and order.order_status == 50
    assert [o.order_id for o in client.query_stock_orders(ACCOUNT, cancelable_only=True)] == [order_id]


@pytest.mark.parametrize(
    "payload, code, words, request_id",
    [
        (b"\xc1\xc1 not msgpack", "invalid_message", ["not valid msgpack"], None),
        (msgpack.packb([1, 2, 3]), "invalid_message", ["must be a msgpack map", "array"], None),
        (msgpack.packb("ping"), "invalid_message", ["must be a msgpack map", "string"], None),
        (msgpack.packb({"v": 1, "id": 7}), "invalid_request", ["missing field 'op'"], 7),
        (msgpack.packb({"v": 1, "id": 8, "op": "order_stonk"}), "unknown_op", ["order_stonk"], 8),
        (msgpack.packb({"v": 3, "id": 9, "op": "ping"}), "unsupported_version", ["version 3"], 9),
        (encode_request(10, "order_stock", {**ORDER, "order_volume": "abc"}), "invalid_argument", ["order_volume", "'abc'"], 10),
        (encode_request(11, "order_stock", {**ORDER, "price": -1}), "invalid_argument", ["price", "> 0"], 11),
        (encode_request(12, "order_stock", {**ORDER, "order_type": 99}), "invalid_argument", ["order_type", "99"], 12),
        (encode_request(13, "order_stock", {**ORDER, "price_type": 99}), "invalid_argument", ["price_type", "99"], 13),
        (encode_request(14, "order_stock", {k: v for k, v in ORDER.items() if k != "order_volume"}), "missing_argument", ["order_volume"], 14),
        (encode_request(15, "order_stock", {**ORDER, "account_id": "42"}), "unknown_account", ["'42'"], 15),
        (encode_request(16, "cancel_order_stock", {"account_id": ACCOUNT, "order_id": "x"}), "invalid_argument", ["order_id"], 16),
        (encode_request(17, "query_stock_asset", {"account_id": ACCOUNT, "extra": 1}), "unknown_argument", ["'extra'"], 17),
        (encode_request(18, "query_stock_orders", {"account_id": 365}), "invalid_argument", ["account_id", "string"], 18),
    ],
)
def test_bad_command_gets_a_named_error_and_nothing_is_lost(
    raw: zmq.Socket, client: Any, resting_order: int, payload: bytes, code: str, words: list[str], request_id: Any
) -> None:
    assert_error(exchange(raw, payload), code, *words, request_id=request_id)
    assert_still_serving(client, resting_order)
    assert client.query_stock_asset(ACCOUNT).frozen_cash > 0  # the resting order still holds its cash


def test_extra_frames_are_refused(raw: zmq.Socket, client: Any, resting_order: int) -> None:
    ping = encode_request(1, "ping", {})
    assert_error(exchange(raw, ping, ping), "invalid_message", "exactly one payload frame", "got 2")
    assert_error(exchange(raw, b""), "invalid_message", "got 0")
    assert_still_serving(client, resting_order)


def test_req_client_with_delimiter_is_served(gateway: Any) -> None:
    context = zmq.Context()
    req = context.socket(zmq.REQ)
    req.linger = 0
    req.rcvtimeo = 5000
    try:
        req.connect(gateway.router_endpoint)
        req.send(encode_request("a", "ping", {}))
        reply = msgpack.unpackb(req.recv(), raw=False)
        assert reply["ok"] and reply["id"] == "a" and reply["result"]["connected"]
        req.send(b"junk\xc1")
        assert_error(msgpack.unpackb(req.recv(), raw=False), "invalid_message")
        req.send(encode_request("b", "query_stock_asset", {"account_id": ACCOUNT}))
        assert msgpack.unpackb(req.recv(), raw=False)["result"]["cash"] == 1_000_000.0
    finally:
        req.close()
        context.term()


def test_oversized_message_drops_only_that_connection(gateway: Any, client: Any, resting_order: int, raw: zmq.Socket) -> None:
    """ZMQ_MAXMSGSIZE: libzmq drops the sender's connection, so no reply can be addressed."""
    cap = gateway.config.max_message_size
    raw.rcvtimeo = 300
    raw.send(encode_request(1, "ping", {"pad": "x" * (cap + 1)}))
    with pytest.raises(zmq.Again):
        raw.recv()
    assert_still_serving(client, resting_order)
    # The DEALER reconnects by itself and is served again. A reply may come after its wait has
    # ended, so replies are matched by request id.
    raw.rcvtimeo = 200
    tries = iter(range(10, 10_000))

    def reply_to(request_id: int) -> dict | None:
        for _ in range(100):  # skips late replies to earlier tries
            try:
                reply = msgpack.unpackb(raw.recv(), raw=False)
            except zmq.Again:
                return None
            if reply["id"] == request_id:
                return reply
        return None

    def answered() -> bool:
        request_id = next(tries)
        raw.send(encode_request(request_id, "ping", {}))
        reply = reply_to(request_id)
        return bool(reply and reply["ok"])

    wait_for(answered, timeout=10.0, interval=0.05, what="the dropped client to be served again")
    # A message just under the cap is decoded and answered with a named error.
    raw.rcvtimeo = 5000
    raw.send(encode_request(3, "ping", {"pad": "x" * (cap - 100)}))
    reply = reply_to(3)
    assert reply is not None, "no reply to the message under the cap"
    assert_error(reply, "unknown_argument", "'pad'", request_id=3)


def test_hostile_msgpack_values(raw: zmq.Socket, client: Any, resting_order: int) -> None:
    hostile = [
        b"\xdd\xff\xff\xff\xff",  # array header claiming 4 billion items
        b"\xdf\xff\xff\xff\xff",  # map header claiming 4 billion pairs
        b"\x91" * 5000 + b"\xc0",  # deeply nested arrays
        msgpack.packb({"v": 1, "id": 1, "op": "ping", "publish": msgpack.ExtType(5, b"x")}),
        msgpack.packb({"v": 1, "id": -1, "op": b"ping"}),  # op as binary
        msgpack.packb({"v": True, "id": 1, "op": "ping"}),
        msgpack.packb({"v": 1, "id": 1.5, "op": "ping"}),
    ]
    for payload in hostile:
        reply = exchange(raw, payload)
        assert reply["ok"] is False and reply["error"]["code"] in (
            "invalid_message", "invalid_request", "invalid_argument", "unsupported_version"
        ), reply
    assert_still_serving(client, resting_order)
