"""Every field xtquant's manual lists for the trading records, with the manual's type.

The tables are read from the installed ``xtquant/doc/xttrader.md`` ("XtQuant数据结构说明"), so a
new xtquant whose manual adds a field fails here until the sim's objects and the wire's field
lists (``adapter.protocol.events``) carry it. Checked: the objects genuine xttrader hands to
callbacks and returns from queries when it runs over the sim, the maps the gateway makes of them,
and the records in proto/vectors.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from adapter import sim
from adapter.protocol import events

sim.install()

import xtquant  # noqa: E402
from xtquant import xtconstant as C  # noqa: E402
from xtquant.xttype import StockAccount  # noqa: E402

from .test_sim_counter import ACCOUNT, OTHER, Desk, make_desk  # noqa: E402,F401  # fixture

MANUAL = Path(xtquant.__file__).resolve().parent / "doc" / "xttrader.md"
VECTORS = Path(__file__).resolve().parents[2] / "proto" / "vectors"
TYPES = {"int": int, "float": float, "str": str, "string": str}

# The manual's structure -> the wire's field list for it.
WIRE = {
    "XtAsset": events.ASSET_FIELDS,
    "XtOrder": events.ORDER_FIELDS,
    "XtTrade": events.TRADE_FIELDS,
    "XtPosition": events.POSITION_FIELDS,
    "XtOrderResponse": events.ORDER_RESPONSE_FIELDS,
    "XtCancelOrderResponse": events.CANCEL_RESPONSE_FIELDS,
    "XtOrderError": events.ORDER_ERROR_FIELDS,
    "XtCancelError": events.CANCEL_ERROR_FIELDS,
    "XtAccountInfo": events.ACCOUNT_INFO_FIELDS,
    "XtAccountStatus": events.ACCOUNT_STATUS_FIELDS,
}
# Event types on the wire -> the manual's structure.
EVENT_STRUCTS = {
    "asset": "XtAsset",
    "order": "XtOrder",
    "trade": "XtTrade",
    "position": "XtPosition",
    "order_response": "XtOrderResponse",
    "cancel_response": "XtCancelOrderResponse",
    "order_error": "XtOrderError",
    "cancel_error": "XtCancelError",
    "account_status": "XtAccountStatus",
}


def manual_tables() -> dict[str, dict[str, type]]:
    """Structure name -> {field: type} from the manual's "### <title>XtName" tables."""
    tables: dict[str, dict[str, type]] = {}
    current: dict[str, type] | None = None
    for line in MANUAL.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#{2,4}\s*\S*?(Xt[A-Za-z]+)\s*$", line)
        if heading:
            current = tables.setdefault(heading.group(1), {}) if heading.group(1) in WIRE else None
            continue
        if line.startswith("#"):
            current = None
            continue
        if current is None or "|" not in line:
            continue
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[0] in ("属性", "") or set(cells[0]) <= set("-: "):
            continue
        current[cells[0]] = TYPES[cells[1]]
    return tables


TABLES = manual_tables()


def test_the_manual_tables_are_read() -> None:
    assert set(TABLES) == set(WIRE)
    assert all(TABLES.values())
    # Spot checks, so a parser gone wrong cannot pass silently.
    assert TABLES["XtPosition"]["position_profit"] is float and TABLES["XtPosition"]["open_date"] is str
    assert TABLES["XtOrder"]["order_sysid"] is str and TABLES["XtTrade"]["traded_id"] is str
    assert TABLES["XtAccountInfo"]["platform_id"] is int and TABLES["XtCancelError"]["market"] is int


@pytest.mark.parametrize("struct", sorted(WIRE))
def test_the_wire_lists_every_field_of_the_manual(struct: str) -> None:
    missing = [name for name in TABLES[struct] if name not in WIRE[struct]]
    assert not missing, f"{struct}: the wire's field list lacks {missing}"


def test_errors_carry_the_request_seq() -> None:
    # xttrader reads ``.seq`` of error pushes (not in the manual's tables, but on xtquant's objects).
    assert "seq" in events.ORDER_ERROR_FIELDS and "seq" in events.CANCEL_ERROR_FIELDS


def check(struct: str, obj: Any) -> None:
    """``obj`` has every field of the manual's table, of the manual's type, also as a wire map."""
    wire = events.to_map(obj, WIRE[struct])
    for name, kind in TABLES[struct].items():
        assert hasattr(obj, name), f"{struct} object lacks {name}"
        value = getattr(obj, name)
        assert isinstance(value, kind) and not isinstance(value, bool), f"{struct}.{name} = {value!r} is not {kind}"
        assert type(wire[name]) is type(value), f"{struct}.{name} changes type on the wire"
    if struct in ("XtOrderError", "XtCancelError"):
        assert isinstance(obj.seq, int) and type(wire["seq"]) is int


def collect(desk: Desk) -> dict[str, list[Any]]:
    """Every kind of object genuine xttrader gives a strategy, from one session over the sim."""
    trader, recorder = desk.trader(ACCOUNT)
    acc = StockAccount(ACCOUNT)
    filled = trader.order_stock(acc, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.70, "s", "fill")
    trader.order_stock_async(acc, "000001.SZ", C.STOCK_SELL, 100, C.MARKET_PEER_PRICE_FIRST, 0.0, "s", "mkt")
    resting = trader.order_stock(acc, "000001.SZ", C.STOCK_SELL, 100, C.FIX_PRICE, 12.50, "s", "rest")
    trader.cancel_order_stock_async(acc, resting)
    trader.order_stock_async(acc, "600000.SH", C.STOCK_BUY, 150, C.FIX_PRICE, 10.60, "s", "junk")  # counter refusal
    trader.order_stock(StockAccount(OTHER), "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, 10.60)  # not subscribed
    trader.cancel_order_stock(acc, filled)  # already filled
    trader.cancel_order_stock(StockAccount(OTHER), 1)  # refused before the counter
    desk.flush(trader)
    found: dict[str, list[Any]] = {struct: [] for struct in WIRE}
    for kind, data in recorder.events:
        struct = {"order_resp": "XtOrderResponse", "cancel_resp": "XtCancelOrderResponse"}.get(
            kind, EVENT_STRUCTS.get(kind, "")
        )
        if struct:
            found[struct].append(data)
    found["XtAsset"].append(trader.query_stock_asset(acc))
    found["XtOrder"] += trader.query_stock_orders(acc)
    found["XtTrade"] += trader.query_stock_trades(acc)
    found["XtPosition"] += trader.query_stock_positions(acc)
    found["XtAccountInfo"] += trader.query_account_infos()
    found["XtAccountStatus"] += trader.query_account_status()
    return found


def test_the_sim_objects_carry_every_field_with_its_type(make_desk: Callable[..., Desk]) -> None:
    found = collect(make_desk())
    for struct, objects in found.items():
        assert objects, f"the scenario produced no {struct}"
        for obj in objects:
            check(struct, obj)
    # Both kinds of error: the counter's refusals and the ones made before the counter.
    assert {e.error_id for e in found["XtOrderError"]} == {-61, -1}  # refused by the counter (QMT's -61), before it
    assert {e.error_id > 0 for e in found["XtCancelError"]} == {True, False}


@pytest.mark.parametrize("event_type", sorted(EVENT_STRUCTS))
def test_the_vectors_carry_every_field_with_its_type(event_type: str) -> None:
    data = json.loads((VECTORS / f"event.{event_type}.json").read_text(encoding="utf-8"))["payload"]["data"]
    struct = EVENT_STRUCTS[event_type]
    for name, kind in TABLES[struct].items():
        assert isinstance(data[name], kind) and not isinstance(data[name], bool), f"{event_type}.{name}"
    info = json.loads((VECTORS / "reply.query_account_infos.json").read_text(encoding="utf-8"))["result"][0]
    assert all(isinstance(info[name], kind) for name, kind in TABLES["XtAccountInfo"].items())
