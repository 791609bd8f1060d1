"""Envelope decoding, argument validation and the constant tables."""

from __future__ import annotations

import msgpack
import pytest

from adapter.protocol import ProtocolError, RequestError, decode_request, encode_request, errors, mapping, ops, pack
from adapter.xtimport import import_xtquant

ORDER = {
    "account_id": "1000000365",
    "stock_code": "600000.SH",
    "order_type": 23,
    "order_volume": 200,
    "price_type": 11,
    "price": 10.5,
}


def validate(op: str, **args: object) -> dict:
    return ops.validate_args(ops.lookup(op), args)


def refused(op: str, **args: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        validate(op, **args)
    return info.value


@pytest.mark.parametrize(
    "payload, code, words",
    [
        (b"\xc1garbage", errors.INVALID_MESSAGE, "not valid msgpack"),
        (pack([1, 2]), errors.INVALID_MESSAGE, "must be a msgpack map, got array"),
        (pack({"v": 1, "id": 1}), errors.INVALID_REQUEST, "missing field 'op'"),
        (pack({"id": 1, "op": "ping"}), errors.INVALID_REQUEST, "missing field 'v'"),
        (pack({"v": 2, "id": 1, "op": "ping"}), errors.UNSUPPORTED_VERSION, "version 2"),
        (pack({"v": 1, "id": 1, "op": 5}), errors.INVALID_REQUEST, "op must be a string"),
        (pack({"v": 1.0, "id": 1, "op": "ping"}), errors.UNSUPPORTED_VERSION, "version 1.0"),
        (pack({"v": 1, "id": b"x", "op": "ping"}), errors.INVALID_REQUEST, "id must be"),
        (pack({"v": 1, "id": [1], "op": "ping"}), errors.INVALID_REQUEST, "id must be"),
        (pack({"v": 1, "id": 1, "op": "ping", 7: 1}), errors.INVALID_REQUEST, "argument names must be strings"),
        (pack({"v": 1, "id": 1, "op": "ping"}) + b"\x00", errors.INVALID_MESSAGE, "not valid msgpack"),
        (b"\x81\xa1v\xc4\xff", errors.INVALID_MESSAGE, "not valid msgpack"),  # truncated bin
    ],
)
def test_bad_envelopes_are_named(payload: bytes, code: str, words: str) -> None:
    with pytest.raises(RequestError) as info:
        decode_request(payload)
    assert info.value.code == code and words in info.value.message


def test_request_id_is_kept_when_the_envelope_is_refused() -> None:
    with pytest.raises(RequestError) as info:
        decode_request(pack({"v": 9, "id": "abc", "op": "ping"}))
    assert info.value.request_id == "abc"


def test_oversized_payload_is_refused_before_decoding() -> None:
    with pytest.raises(RequestError) as info:
        decode_request(pack({"v": 1, "id": 1, "op": "ping", "pad": "x" * 2000}), max_size=1024)
    assert info.value.code == errors.INVALID_MESSAGE and "1024-byte cap" in info.value.message


def test_non_utf8_string_is_invalid_message() -> None:
    raw = b"\x83\xa1v\x01\xa2id\x01\xa2op\xa4\xff\xfe\xfd\xfc"
    with pytest.raises(RequestError) as info:
        decode_request(raw)
    assert info.value.code == errors.INVALID_MESSAGE


def test_order_arguments_are_normalised() -> None:
    args = validate("order_stock", **{**ORDER, "order_type": "Buy", "price_type": "limit", "order_volume": 300.0})
    assert args["order_type"] == 23 and args["price_type"] == 11 and args["order_volume"] == 300
    assert args["account_type"] == "STOCK" and args["strategy_name"] == "" and args["order_remark"] == ""
    assert validate("order_stock", **{**ORDER, "account_type": 2})["account_type"] == "STOCK"
    assert validate("query_stock_position", account_id="1", stock_code="600000.sh")["stock_code"] == "600000.SH"


@pytest.mark.parametrize(
    "field, value, code, words",
    [
        ("order_volume", "abc", errors.INVALID_ARGUMENT, "order_volume: expected an integer, got 'abc'"),
        ("order_volume", 0, errors.INVALID_ARGUMENT, "order_volume: must be > 0"),
        ("order_volume", 100.5, errors.INVALID_ARGUMENT, "order_volume: expected an integer"),
        ("order_volume", True, errors.INVALID_ARGUMENT, "order_volume: expected an integer"),
        ("price", -1, errors.INVALID_ARGUMENT, "price: a limit order (price_type 11) needs a price > 0"),
        ("price", float("nan"), errors.INVALID_ARGUMENT, "price: a limit order (price_type 11) needs a price > 0"),
        ("price", 1e308, errors.INVALID_ARGUMENT, "price: a limit order (price_type 11) needs a price > 0"),
        ("price", "10.5", errors.INVALID_ARGUMENT, "price: expected a number"),
        ("order_type", 99, errors.INVALID_ARGUMENT, "order_type: 99 is not a known stock order type"),
        ("price_type", 99, errors.INVALID_ARGUMENT, "price_type: 99 is not a known stock price type"),
        ("stock_code", "600000", errors.INVALID_ARGUMENT, "stock_code: '600000' must carry an exchange suffix"),
        ("stock_code", 600000, errors.INVALID_ARGUMENT, "stock_code: expected a string"),
        ("account_id", "", errors.INVALID_ARGUMENT, "account_id: must not be empty"),
        ("account_type", "SAVINGS", errors.INVALID_ARGUMENT, "account_type: 'SAVINGS' is not a known account type"),
        ("order_remark", "x" * 300, errors.INVALID_ARGUMENT, "order_remark: longer than"),
    ],
)
def test_ill_typed_order_arguments_name_the_field(field: str, value: object, code: str, words: str) -> None:
    error = refused("order_stock", **{**ORDER, field: value})
    assert error.code == code and words in error.message


def test_limit_order_needs_a_price() -> None:
    error = refused("order_stock", **{**ORDER, "price": 0})
    assert error.code == errors.INVALID_ARGUMENT and error.message.startswith("price:")
    assert validate("order_stock", **{**ORDER, "price_type": "latest", "price": 0})["price"] == 0.0


@pytest.mark.parametrize("price_type", [5, 42, 44, 47])
@pytest.mark.parametrize("price", [0, -1, 10.5, 1e308, float("inf"), float("nan")])
def test_market_price_types_take_any_number_as_price(price_type: int, price: float) -> None:
    """xtquant ignores the price of these types, and public code sends 0 or -1."""
    args = validate("order_stock_async", **{**ORDER, "price_type": price_type, "price": price})
    assert args["price_type"] == price_type
    assert args["price"] == (price if price in (0, -1, 10.5) else 0.0)


def test_missing_and_unknown_arguments() -> None:
    missing = {k: v for k, v in ORDER.items() if k != "price"}
    error = refused("order_stock", **missing)
    assert error.code == errors.MISSING_ARGUMENT and "'price'" in error.message
    error = refused("order_stock", **ORDER, pirce=1)
    assert error.code == errors.UNKNOWN_ARGUMENT and "'pirce'" in error.message
    assert refused("ping", account_id="1").code == errors.UNKNOWN_ARGUMENT


def test_unknown_op() -> None:
    with pytest.raises(ProtocolError) as info:
        ops.lookup("order_stonk")
    assert info.value.code == errors.UNKNOWN_OP and "order_stonk" in info.value.message


def test_cancel_and_query_arguments() -> None:
    assert validate("cancel_order_stock_sysid", account_id="1", market="sz", sysid="9")["market"] == 1
    assert refused("cancel_order_stock_sysid", account_id="1", market=5, sysid="9").code == errors.INVALID_ARGUMENT
    assert refused("cancel_order_stock", account_id="1", order_id=-3).code == errors.INVALID_ARGUMENT
    assert validate("query_stock_orders", account_id="1")["cancelable_only"] is False
    assert refused("query_stock_orders", account_id="1", cancelable_only=1).code == errors.INVALID_ARGUMENT


def test_encode_request_round_trip() -> None:
    wire = encode_request("r1", "query_stock_asset", {"account_id": "1"})
    assert msgpack.unpackb(wire) == {"v": 1, "id": "r1", "op": "query_stock_asset", "account_id": "1"}
    request = decode_request(wire)
    assert (request.id, request.op, request.args) == ("r1", "query_stock_asset", {"account_id": "1"})


def test_constant_tables_agree_with_xtquant() -> None:
    import_xtquant()
    from xtquant import xtconstant as xc

    assert (mapping.STOCK_BUY, mapping.STOCK_SELL) == (xc.STOCK_BUY, xc.STOCK_SELL)
    assert (mapping.FIX_PRICE, mapping.LATEST_PRICE) == (xc.FIX_PRICE, xc.LATEST_PRICE)
    named = {
        "MARKET_SH_CONVERT_5_CANCEL": 42, "MARKET_SH_CONVERT_5_LIMIT": 43, "MARKET_PEER_PRICE_FIRST": 44,
        "MARKET_MINE_PRICE_FIRST": 45, "MARKET_SZ_INSTBUSI_RESTCANCEL": 46, "MARKET_SZ_CONVERT_5_CANCEL": 47,
        "MARKET_SZ_FULL_OR_CANCEL": 48,
    }
    for name, code in named.items():
        assert getattr(xc, name) == code and code in mapping.PRICE_TYPE_NAMES
    for code, name in mapping.ACCOUNT_TYPE_NAMES.items():
        assert xc.ACCOUNT_TYPE_DICT[code] == name
    statuses = {getattr(xc, n): n for n in dir(xc) if n.startswith("ORDER_") and isinstance(getattr(xc, n), int)}
    for code in mapping.ORDER_STATUS_NAMES:
        assert code in statuses
    assert (xc.SH_MARKET, xc.SZ_MARKET, xc.MARKET_ENUM_BEIJING) == (0, 1, 70)


def test_record_price_types_are_the_counters() -> None:
    from adapter import market as rules

    assert set(mapping.BROKER_PRICE_TYPE_NAMES) == set(rules.BROKER_PRICE_TYPE_NAMES)
    for sent, reported in rules.BROKER_PRICE_TYPES.items():  # every request type reads back as a counter code
        assert sent in mapping.PRICE_TYPE_NAMES and reported in mapping.BROKER_PRICE_TYPE_NAMES
