"""The counter process's link format: xttype and native objects by class name + fields, no pickle."""

from __future__ import annotations

import msgpack
import pytest

from adapter.sim import native, wire
from xtquant import xttype


def test_xttype_and_native_objects_come_back_as_the_same_classes_with_the_same_fields() -> None:
    order = xttype.XtOrder("1000000365", "600000.SH", 1082130433, "100001", 1700000000, 23, 100, 50, 10.4,
                           0, 0.0, 50, "", "s", "r", 48, 48, "A123", "浦发银行")
    error = native.make_order_error(7, "1000000365", -1, -61, "refused", "s", "r")
    response = native.OrderStockResp("1000000365", 1082130433, "s", "r", "")
    callback, args = wire.unpack(wire.pack(["OnStockOrderCallback", (order, error, response, None, [1, 2.5, "x"])]))
    again, error_again, response_again, nothing, plain = args
    assert callback == "OnStockOrderCallback" and nothing is None and plain == [1, 2.5, "x"]
    assert type(again) is xttype.XtOrder and vars(again) == vars(order)
    assert type(error_again) is xttype.XtOrderError and error_again.seq == 7  # extra attributes travel too
    assert type(response_again) is native.OrderStockResp and vars(response_again) == vars(response)


def test_request_fields_keep_what_the_caller_set() -> None:
    req = native.QueryStockOrdersReq()
    req.m_strAccountID = "1000000365"
    fields = wire.unpack(wire.pack(native.RequestFields(req)))
    assert isinstance(fields, native.RequestFields)
    assert fields.is_set("m_strAccountID") and not fields.is_set("m_nOrderID")  # "all orders", not order -1
    assert fields.get("m_nOrderID") == -1 and fields.get("m_strAccountID") == "1000000365"


def test_other_objects_are_attribute_bags_and_unknown_classes_are_refused() -> None:
    class Limit:
        def __init__(self) -> None:
            self.m_strNewPurchaseLimitKey = "SH"
            self.m_nNewPurchaseLimitValue = 1000

    bag = wire.unpack(wire.pack(Limit()))
    assert isinstance(bag, wire.Record) and bag.m_nNewPurchaseLimitValue == 1000
    forged = msgpack.ExtType(wire.EXT_OBJECT, wire.pack(["x", "StockAccountX", {}]))
    with pytest.raises(ValueError):
        wire.unpack(msgpack.packb(forged))
    forged = msgpack.ExtType(wire.EXT_OBJECT, wire.pack(["n", "XtQuantAsyncClient", {}]))
    with pytest.raises(ValueError):
        wire.unpack(msgpack.packb(forged))
    with pytest.raises(TypeError):
        wire.pack(object())


def _order(order_id: int) -> xttype.XtOrder:
    return xttype.XtOrder("1000000365", "600000.SH", order_id, str(order_id), 1700000000, 23, 100, 50, 10.4,
                          0, 0.0, 50, "", "s", "r", 48, 48, "A123", "浦发银行")


def test_a_long_answer_of_one_class_travels_as_rows_and_comes_back_as_the_same_objects() -> None:
    orders = [_order(i) for i in range(1, wire.ROWS_AT + 5)]
    packed = wire.pack(wire.rows(orders))
    assert len(packed) < len(wire.pack(orders)) / 2  # field names once, not per object
    again = wire.unpack(packed)
    assert isinstance(again, list) and [type(o) for o in again] == [xttype.XtOrder] * len(orders)
    assert [vars(o) for o in again] == [vars(o) for o in orders]


def test_short_mixed_or_uneven_lists_travel_object_by_object() -> None:
    short = [_order(1)]
    mixed = [_order(i) for i in range(wire.ROWS_AT)] + [native.OrderStockResp("1000000365", 1, "s", "r", "")]
    uneven = [_order(i) for i in range(wire.ROWS_AT)]
    uneven[-1].extra = 1  # a different attribute set: rows would lose it
    for value in (short, mixed, uneven, "text", None):
        assert wire.rows(value) is value
    back = wire.unpack(wire.pack(wire.rows(uneven)))
    assert back[-1].extra == 1 and [vars(o) for o in back] == [vars(o) for o in uneven]


def test_rows_of_an_unknown_class_are_refused() -> None:
    data = msgpack.ExtType(wire.EXT_ROWS, msgpack.packb(["NotAClass", ["a"], [[1]]]))
    with pytest.raises(ValueError, match="unknown xttype class"):
        wire.unpack(msgpack.packb(data))
