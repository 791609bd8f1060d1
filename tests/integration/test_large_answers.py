"""Long query answers are linked and encoded off the I/O thread: the same answer, byte for byte,
as the inline path, and other clients are answered meanwhile."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.protocol import encode_ok, encode_ok_packed, pack, unpack
from adapter.server import admin as admin_module
from adapter.server import encoding as encoding_module

from ..conftest import ACCOUNT, trading_session


@pytest.mark.parametrize("request_id", [1, 2**40, "abc", None, -7])
def test_a_packed_result_makes_the_same_reply(request_id: Any) -> None:
    result = [{"order_id": 1, "stock_code": "600000.SH", "price": 10.5}, {"x": None}]
    assert encode_ok_packed(request_id, pack(result)) == encode_ok(request_id, result)


@pytest.mark.parametrize("length", [0, 1, 15, 16, 65535, 65536])
def test_an_answer_packed_item_by_item_is_the_same_bytes(length: int) -> None:
    items = [{"n": n} for n in range(length)]
    by_item = b"".join([encoding_module.array_header(length), *(pack(item) for item in items)])
    assert by_item == pack(items)


def test_long_answers_come_from_the_encoder_with_client_order_ids(gateway_factory: Any, monkeypatch: Any) -> None:
    gateway = gateway_factory()
    with trading_session(gateway) as (client, log):
        for n in range(6):
            client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.00 + n / 100, "s", f"remark-{n}",
                               client_order_id=f"big-{n}")
        log.wait("order", count=12)
        inline = [o.to_dict() for o in client.query_stock_orders(ACCOUNT)]
        trades_inline = client.query_stock_trades(ACCOUNT)
        monkeypatch.setattr(encoding_module, "LARGE_RESULT", 3)
        encoded = [o.to_dict() for o in client.query_stock_orders(ACCOUNT)]
        assert encoded == inline and len(encoded) == 6
        assert [(o["client_order_id"], o["order_remark"]) for o in encoded] == \
            [(f"big-{n}", f"remark-{n}") for n in range(6)]
        assert client.query_stock_trades(ACCOUNT) == trades_inline
        assert client.ping().connected and gateway.encoder.busy == 0


def test_replay_pages_are_bounded_in_bytes_and_lose_nothing(gateway_factory: Any, monkeypatch: Any) -> None:
    gateway = gateway_factory()
    with trading_session(gateway) as (client, log):
        for n in range(4):
            client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.70, client_order_id=f"page-{n}")
        log.wait("trade", count=4)
        last = client.ping().last_seq
        monkeypatch.setattr(admin_module, "MAX_REPLAY_BYTES", 2000)
        seen, from_seq = [], 1
        for _ in range(last + 1):  # bounded: one event at least per page
            page = client.replay(from_seq, limit=10_000)
            sizes = [len(payload) for _topic, payload in page.events]
            assert sum(sizes[:-1]) <= 2000 and page.events
            seen += [unpack(payload)["seq"] for _topic, payload in page.events]
            from_seq = page.next_seq
            if not page.more:
                break
        assert seen == list(range(1, last + 1))
