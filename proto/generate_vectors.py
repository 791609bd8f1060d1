"""Writes proto/vectors/: one request, one reply per op, one payload per event type.

Each vector is ``NAME.msgpack`` (the exact bytes on the wire) beside ``NAME.json`` (a
readable rendering; for events also the topic frame; msgpack bin as ``{"$bin": "<hex>"}``). Run from the repository root:
``python proto/generate_vectors.py``. tests/unit/test_vectors.py checks the codec
against every file, so a client in any language can be checked against the same files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.protocol import encode_error, encode_event, encode_ok, encode_request, events  # noqa: E402

ACCOUNT = "1000000365"
EPOCH = "5f0c1e2d3b4a6978"
OUT = Path(__file__).resolve().parent / "vectors"

ASSET = dict(zip(events.ASSET_FIELDS, [2, ACCOUNT, 997864.47, 0.0, 2120.0, 999984.47, 997864.47]))
ORDER = dict(
    zip(
        events.ORDER_FIELDS,
        [2, ACCOUNT, "600000.SH", 1082130433, "1000001", 1763884800, 23, 200, 50, 10.7, 200, 10.6, 56, "",
         "cli", "demo", 48, 48, "A123456789", "浦发银行", "c0ffee01"],
        strict=True,
    )
)
TRADE = dict(
    zip(
        events.TRADE_FIELDS,
        [2, ACCOUNT, "600000.SH", 23, "0000000020000001", 1763884800, 10.6, 200, 2120.0, 1082130433, "1000001",
         "cli", "demo", 48, 48, 5.0, "A123456789", "浦发银行", "c0ffee01"],
        strict=True,
    )
)
POSITION = dict(
    zip(
        events.POSITION_FIELDS,
        [2, ACCOUNT, "600000.SH", 200, 0, 10.625, 2120.0, 0, 0, 0, 10.625, 48, 10.6, -0.0024, -5.0, "", 0.0,
         "A123456789", "浦发银行"],
        strict=True,
    )
)
ORDER_ERROR = dict(
    zip(
        events.ORDER_ERROR_FIELDS,
        [2, ACCOUNT, 1082130434, -61, "限价买入 [SH600000] [COUNTER] [120147][资金可用金额不足]", "cli", "", 9,
         "c0ffee02"],
        strict=True,
    )
)
CANCEL_ERROR = dict(
    zip(
        events.CANCEL_ERROR_FIELDS,
        [2, ACCOUNT, 1082130433, 0, "1000001", -62, "[COUNTER] [110003][该委托已成交或已撤单，不能撤单]", 10],
        strict=True,
    )
)
ORDER_RESPONSE = dict(zip(events.ORDER_RESPONSE_FIELDS, [2, ACCOUNT, 1082130433, "demo", "first", "", 7, "c0ffee01"]))
CANCEL_RESPONSE = dict(zip(events.CANCEL_RESPONSE_FIELDS, [2, ACCOUNT, 0, 1082130433, "", 8, ""]))
ACCOUNT_STATUS = dict(zip(events.ACCOUNT_STATUS_FIELDS, [2, ACCOUNT, 0]))
ACCOUNT_INFO = dict(zip(events.ACCOUNT_INFO_FIELDS, [2, ACCOUNT, 2, 1, 0, 0]))

ORDER_ARGS = {
    "account_id": ACCOUNT,
    "stock_code": "600000.SH",
    "order_type": 23,
    "order_volume": 200,
    "price_type": 11,
    "price": 10.5,
    "strategy_name": "demo",
    "order_remark": "first",
    "client_order_id": "c0ffee01",
}
ACCOUNT_ARG = {"account_id": ACCOUNT}

RISK_LIMITS = {
    "max_order_volume": 1000000, "max_order_notional": 5000000.0, "max_position_notional": 20000000.0,
    "max_open_orders": 500, "orders_per_second": 50.0, "orders_per_day": 10000, "duplicate_window": 2.0,
    "allow_codes": [], "block_codes": [], "check_instrument": True, "trading_hours": False,
    "sessions": ["09:15-11:30", "13:00-15:00"],
}

TICK = {
    "time": 1796194958307, "timetag": "20261202 15:02:38", "lastPrice": 10.6, "open": 10.58, "high": 10.62,
    "low": 10.55, "lastClose": 10.6, "amount": 21404.0, "volume": 20, "pvolume": 2000, "stockStatus": 3,
    "openInt": 13, "transactionNum": 4, "settlementPrice": 0.0, "lastSettlementPrice": 10.6, "pe": 0.0,
    "askPrice": [10.61, 10.62, 10.63, 10.64, 10.65], "bidPrice": [10.6, 10.59, 10.58, 10.57, 10.56],
    "askVol": [12, 30, 8, 25, 40], "bidVol": [9, 14, 33, 20, 18], "volRatio": 0.0, "speed1Min": 0.0,
    "speed5Min": 0.0,
}
BARS_ARGS = {"field_list": [], "stock_list": ["600000.SH"], "period": "1d", "start_time": "", "end_time": "",
             "count": 2, "dividend_type": "none", "fill_data": True}
BARS = {"time": [1796054400000, 1796140800000], "open": [10.46, 10.6], "high": [10.71, 10.74], "low": [10.41, 10.6],
        "close": [10.6, 10.72], "volume": [581523, 20], "amount": [613216003.5, 21404.0],
        "settelementPrice": [0.0, 0.0], "openInterest": [0, 0], "preClose": [10.35, 10.6], "suspendFlag": [0, 0]}
DETAIL = {
    "ExchangeID": "SH", "InstrumentID": "600000", "InstrumentName": "浦发银行", "ProductID": "", "ProductName": "",
    "ProductType": -1, "ExchangeCode": "SH", "UniCode": "600000", "CreateDate": "0", "OpenDate": "19991110",
    "ExpireDate": "99999999", "TradingDay": "20261202", "PreClose": 10.6, "SettlementPrice": 10.6,
    "UpStopPrice": 11.66, "DownStopPrice": 9.54, "FloatVolume": 3752355800.0, "TotalVolume": 6894610800.0,
    "LongMarginRatio": 0.0, "ShortMarginRatio": 0.0, "PriceTick": 0.01, "VolumeMultiple": 1, "MainContract": 0,
    "LastVolume": 0, "InstrumentStatus": 0, "IsTrading": True, "IsRecent": False, "ProductTradeQuota": None,
    "ContractTradeQuota": None, "ProductOpenInterestQuota": None, "ContractOpenInterestQuota": None,
}

# op -> (arguments, result)
OPS = {
    "ping": (
        {"publish": False},
        {"server_version": "0.1.0", "protocol_version": 1, "backend": "sim", "session_id": 123456,
         "accounts": [ACCOUNT], "connected": True, "last_seq": 42, "epoch": EPOCH, "pending": 0,
         "journal_errors": 0, "unknown_orders": 0, "uptime": 12.5},
    ),
    "replay": (
        {"from_seq": 101, "to_seq": 102, "prefixes": ["trade."], "limit": 1000},
        {"epoch": EPOCH, "first_seq": 1, "last_seq": 110, "next_seq": 103, "more": False, "events": []},
    ),
    "snapshot": (
        ACCOUNT_ARG,
        {"epoch": EPOCH, "seq": 110, "account_id": ACCOUNT, "asset": ASSET, "positions": [POSITION],
         "orders": [ORDER], "trades": [TRADE]},
    ),
    "journal_info": (
        {},
        {"epoch": EPOCH, "first_seq": 1, "last_seq": 110, "count": 110, "size_bytes": 135168,
         "payload_bytes": 48230, "path": "qmt-adapter-data/journal.sqlite3", "retention_days": 7.0,
         "retention_bytes": 1073741824},
    ),
    "order_outcomes": (
        ACCOUNT_ARG,
        [{"client_order_id": "c0ffee01", "account_id": ACCOUNT, "state": "acknowledged", "order_id": 1082130433,
          "strategy_name": "demo", "order_remark": "first", "error_msg": "", "created_ns": 1763884800123456789}],
    ),
    "reload": ({}, {"admitted": ["alpha", "risk-desk"], "revoked": ["beta"], "dropping_connections": True}),
    "risk": ({}, {
        "trading": {"state": "normal", "reason": "", "since_ns": 0},
        "limits": {"default": RISK_LIMITS, "accounts": {ACCOUNT: RISK_LIMITS}, "keys": {"alpha": {"max_order_volume": 1000}}},
        "usage": {ACCOUNT: {"open_orders": 1, "today": 12, "tokens": 49.5}},
        "denials": {"order.max_volume": 1, "rate.per_second": 3},
    }),
    "halt": ({"cancel_open": True, "reason": "fat finger"},
             {"state": "halted", "reason": "fat finger", "since_ns": 1763884800123456789, "previous": "normal",
              "cancel_open": True}),
    "reduce_only": ({"reason": ""}, {"state": "reduce_only", "reason": "reduce_only by ops", "since_ns": 1763884800123456789,
                                     "previous": "halted", "cancel_open": False}),
    "resume": ({"reason": "checked"}, {"state": "normal", "reason": "checked", "since_ns": 1763884800123456789,
                                       "previous": "reduce_only", "cancel_open": False}),
    "query_credit_detail": (ACCOUNT_ARG, []),
    "query_stk_compacts": (ACCOUNT_ARG, []),
    "query_credit_subjects": (ACCOUNT_ARG, []),
    "query_credit_slo_code": (ACCOUNT_ARG, []),
    "query_credit_assure": (ACCOUNT_ARG, []),
    "query_new_purchase_limit": (ACCOUNT_ARG, {"SH": 5000, "SZ": 1000}),
    "query_ipo_data": ({}, {"732xxx": {"name": "示例申购", "type": "STOCK", "maxPurchaseNum": 10000,
                                       "minPurchaseNum": 1000, "purchaseDate": "20261124", "issuePrice": 12.5}}),
    "order_stock": (ORDER_ARGS, ORDER_RESPONSE),
    "order_stock_async": (ORDER_ARGS, {"seq": 7, "client_order_id": "c0ffee01", "order_id": None}),
    "cancel_order_stock": ({**ACCOUNT_ARG, "order_id": 1082130433}, CANCEL_RESPONSE),
    "cancel_order_stock_async": ({**ACCOUNT_ARG, "order_id": 1082130433}, {"seq": 8}),
    "cancel_order_stock_sysid": ({**ACCOUNT_ARG, "market": 0, "sysid": "1000001"},
                                 {**CANCEL_RESPONSE, "order_id": 0, "order_sysid": "1000001"}),
    "cancel_order_stock_sysid_async": ({**ACCOUNT_ARG, "market": "SH", "sysid": "1000001"}, {"seq": 9}),
    "query_stock_asset": (ACCOUNT_ARG, ASSET),
    "query_stock_positions": (ACCOUNT_ARG, [POSITION]),
    "query_stock_position": ({**ACCOUNT_ARG, "stock_code": "600000.SH"}, POSITION),
    "query_stock_orders": ({**ACCOUNT_ARG, "cancelable_only": False}, [ORDER]),
    "query_stock_order": ({**ACCOUNT_ARG, "order_id": 1082130433}, ORDER),
    "query_stock_trades": (ACCOUNT_ARG, [TRADE]),
    "query_account_infos": ({}, [ACCOUNT_INFO]),
    "query_account_status": ({}, [ACCOUNT_STATUS]),
    # market data (PROTOCOL §16)
    "get_full_tick": ({"code_list": ["600000.SH"]}, {"600000.SH": TICK}),
    "get_market_data_ex": (BARS_ARGS, {"600000.SH": BARS}),
    "get_local_data": (BARS_ARGS, {"600000.SH": BARS}),
    "get_instrument_detail": ({"stock_code": "600000.SH", "iscomplete": False}, DETAIL),
    "get_sector_list": ({}, ["上证A股", "创业板", "沪深A股", "沪深ETF", "沪深指数"]),
    "get_stock_list_in_sector": ({"sector_name": "沪深指数"}, ["000001.SH", "000300.SH", "399001.SZ"]),
    "get_trading_dates": ({"market": "SH", "start_time": "", "end_time": "", "count": 2},
                          [1796054400000, 1796140800000]),
    "download_history_data": ({"stock_code": "600000.SH", "period": "1d", "start_time": "20250101",
                               "end_time": "", "incrementally": None, "task": ""}, None),
    "download_history_data2": ({"stock_list": ["600000.SH", "000001.SZ"], "period": "1m", "start_time": "20261101",
                                "end_time": "", "incrementally": None, "task": "dl-1"}, None),
    "subscribe_quote": ({"stock_code": "600000.SH", "period": "tick", "count": 0}, {"seq": 1, "lease": 60.0}),
    "subscribe_whole_quote": ({"code_list": ["SH", "SZ"]}, {"seq": 2, "lease": 60.0}),
    "unsubscribe_quote": ({"seq": 1}, None),
    "renew_quotes": ({"seqs": [1, 2]}, {"unknown": [1]}),
    # the simulator's controls (PROTOCOL §17)
    "sim": ({"action": "price", "stock_code": "600000.SH", "price": 10.8},
            {"stock_code": "600000.SH", "name": "浦发银行", "last": 10.8, "prev_close": 10.6, "down": 9.54,
             "up": 11.66, "trades": 1, "matched": True}),
}

EVENTS = {
    "order": ORDER,
    "trade": TRADE,
    "order_error": ORDER_ERROR,
    "cancel_error": CANCEL_ERROR,
    "asset": ASSET,
    "position": POSITION,
    "account_status": ACCOUNT_STATUS,
    "order_response": ORDER_RESPONSE,
    "cancel_response": CANCEL_RESPONSE,
    "risk_denied": {"rule": "order.max_volume", "message": "volume 2000000 is over the limit of 1000000",
                    "limit": 1000000, "value": 2000000, "op": "order_stock", "client_order_id": "c0ffee02",
                    "stock_code": "600000.SH", "order_type": 23, "order_volume": 2000000, "price": 10.5,
                    "order_id": None},
    "gateway.connection": {"connected": True, "reason": "connected and subscribed"},
    "gateway.trading": {"state": "halted", "reason": "fat finger", "cancel_open": True},
    "gateway.pong": {"id": 1, "last_seq": 42},
    "gateway.heartbeat": {"last_seq": 110, "connected": True, "interval": 1.0},
    "gateway.storage": {"ok": False, "store": "journal", "error": "database or disk is full"},
}

ERRORS = {
    "invalid_argument": (3, "invalid_argument", "order_volume: expected an integer, got 'abc'"),
    "unknown_op": (4, "unknown_op", "unknown op 'order_stonk'"),
    "permission_denied": (10, "permission_denied", "key 'alpha' may not use account '1000000366'"),
    "risk_denied": (11, "risk_denied", "order.max_volume: volume 2000000 is over the limit of 1000000",
                    {"rule": "order.max_volume", "limit": 1000000, "value": 2000000}),
    "unknown_account": (5, "unknown_account", "account '999' is not served by this gateway (serving 1000000365)"),
    "invalid_message": (None, "invalid_message", "payload is not valid msgpack (ExtraData)"),
    "duplicate_client_order_id": (7, "duplicate_client_order_id",
                                  "client_order_id 'c0ffee01' was already used for a different order on account 1000000365"),
    "outcome_unknown": (8, "outcome_unknown",
                        "order 'c0ffee01': counter connection lost; its outcome is unknown until reconciliation reads "
                        "the counter's books. Retrying with the same client_order_id is safe: it returns the outcome "
                        "once known and never orders twice"),
    "order_not_placed": (9, "order_not_placed",
                         "order 'c0ffee01' never reached the counter (reconciled: not in the counter's orders of the "
                         "day); send it again with a new client_order_id"),
    "storage_failed": (12, "storage_failed",
                       "order_stock: the order could not be recorded, so it was not sent; the same client_order_id "
                       "may be sent again once storage works"),
    "seq_expired": (6, "seq_expired",
                    "seq 1 is no longer in the journal (first kept: 101); rebuild from the snapshot op"),
}


def vectors() -> dict[str, tuple[bytes, dict]]:
    """name -> (wire bytes, readable rendering)."""
    out: dict[str, tuple[bytes, dict]] = {}
    live = {etype: _event(seq, etype, data) for seq, (etype, data) in enumerate(EVENTS.items(), start=100)}
    for number, (op, (args, result)) in enumerate(OPS.items(), start=1):
        if op == "replay":  # the page holds the trade event's exact PUB frames
            topic, payload = live["trade"][0]
            result = {**result, "events": [[topic.decode(), payload]]}
        request = {"v": 1, "id": number, "op": op, **args}
        out[f"request.{op}"] = (encode_request(number, op, args), request)
        reply = {"v": 1, "id": number, "ok": True, "result": result}
        out[f"reply.{op}"] = (encode_ok(number, result), reply)
    for name, (request_id, code, message, *extra) in ERRORS.items():
        details = extra[0] if extra else None
        reply = {"v": 1, "id": request_id, "ok": False, "error": {"code": code, "message": message, **(details or {})}}
        out[f"error.{name}"] = (encode_error(request_id, code, message, details), reply)
    for etype, ((topic, payload), rendering) in live.items():
        out[f"event.{etype}"] = (payload, rendering)
    # A fill found in the counter's books after a reconnection: the same event, marked.
    ts = 1763884800123456789 + 111
    topic, payload = encode_event(111, ts, "trade", ACCOUNT, TRADE, EPOCH, reconciled=True)
    out["event.trade.reconciled"] = (payload, {"topic": topic.decode(), "payload": {
        "v": 1, "seq": 111, "ts": ts, "type": "trade", "account_id": ACCOUNT, "epoch": EPOCH, "data": TRADE,
        "reconciled": True}})
    return out


def _event(seq: int, etype: str, data: dict) -> tuple[tuple[bytes, bytes], dict]:
    account = None if etype.startswith("gateway.") else ACCOUNT
    number = None if etype in events.CONTROL_EVENTS else seq
    ts = 1763884800123456789 + seq
    frames = encode_event(number, ts, etype, account, data, EPOCH)
    rendering = {"topic": frames[0].decode(), "payload": {"v": 1, "seq": number, "ts": ts, "type": etype,
                                                          "account_id": account, "epoch": EPOCH, "data": data}}
    return frames, rendering


def render(value: object) -> object:
    """JSON has no binary type: msgpack bin is written as {"$bin": "<hex>"}."""
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, dict):
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v) for v in value]
    return value


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.*"):
        old.unlink()
    for name, (wire, rendering) in vectors().items():
        (OUT / f"{name}.msgpack").write_bytes(wire)
        text = json.dumps(render(rendering), ensure_ascii=False, indent=2)
        (OUT / f"{name}.json").write_text(text + "\n", encoding="utf-8")
    print(f"wrote {len(vectors())} vectors to {OUT}")


if __name__ == "__main__":
    main()
