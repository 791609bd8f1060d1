"""adapter.display: the words, widths, tables and sentences people read in the CLI and the console."""

from __future__ import annotations

import datetime as dt

import pytest

from adapter.client.records import Event, Record
from adapter.display import (
    ORDERS_WIDTH, describe_event, fmt, format_event, format_quote, format_size, orders_table, pad, side_name,
    status_name, table_lines, time_of_day, truncate, width, zone_label,
)

# 2026-03-02 09:31:02 in Shanghai is 01:31:02 UTC.
OPEN_TS = dt.datetime(2026, 3, 2, 1, 31, 2, tzinfo=dt.timezone.utc).timestamp()


def order(**fields: object) -> Record:
    base = {
        "account_id": "1000000365", "stock_code": "600000.SH", "order_id": 1082130433, "order_time": int(OPEN_TS),
        "order_type": 23, "order_volume": 200, "price_type": 50, "price": 10.7, "traded_volume": 0,
        "traded_price": 0.0, "order_status": 50, "status_msg": "", "order_remark": "", "instrument_name": "浦发银行",
        "client_order_id": "d6734ca93a3a5b93",
    }
    base.update(fields)
    return Record(base)


def event(etype: str, data: dict[str, object], seq: int | None = 7, account: str | None = "1000000365") -> Event:
    return Event(f"{etype}.{account}." if account else etype, seq, int(OPEN_TS * 1e9) + 123_000_000, etype, account,
                 Record(data))


@pytest.mark.parametrize("status, text", [
    (48, "48 未报 unreported"), (49, "49 待报 pending"), (50, "50 已报 reported"), (51, "51 已报待撤 cancel pending"),
    (52, "52 部成待撤 part filled, cancel pending"), (53, "53 部撤 part cancelled"), (54, "54 已撤 cancelled"),
    (55, "55 部成 part filled"), (56, "56 已成 filled"), (57, "57 废单 rejected"), (255, "255 未知 unknown"),
    (77, "77 ?"), (None, "None ?"),
])
def test_status_names_are_qmts_words_and_a_traders_english(status: object, text: str) -> None:
    assert status_name(status) == text


def test_sides() -> None:
    assert (side_name(23), side_name(24), side_name(99)) == ("买入 buy", "卖出 sell", "99")


def test_widths_count_a_chinese_character_as_two_columns() -> None:
    assert width("浦发银行") == 8 and width("600000.SH") == 9 and width("a\x1bb") == 2
    assert pad("浦发银行", 10) == "浦发银行  " and width(pad("平安银行", 10)) == 10
    assert truncate("浦发银行", 5) == "浦发…" and width(truncate("浦发银行", 5)) == 5
    assert truncate("short", 10) == "short" and truncate("abcdef", 4) == "abc…"


def test_tables_align_chinese_names_and_right_align_numbers() -> None:
    lines = table_lines(("code", "name", "volume", "avg_price"),
                        [("600000.SH", "浦发银行", 200, 10.625), ("510300.SH", "沪深300ETF华泰柏瑞", 1000, 4.1),
                         ("000001.SZ", "平安银行", 5, None)])
    header, *rows = lines
    volume_end = width(header[:header.index("volume") + len("volume")])
    for line, name, volume in zip(rows, ("浦发银行", "沪深300ETF华泰柏瑞", "平安银行"), ("200", "1000", "5")):
        assert width(line[:line.index(name)]) == header.index("name")  # columns start on the same column
        assert width(line[:line.index(volume, line.index(name) + len(name)) + len(volume)]) == volume_end
    assert len({width(line) for line in lines}) == 1  # numbers end at the right edge of their column
    assert rows[0].endswith("  10.625") and rows[1].endswith("   4.10") and rows[2].endswith("      -")
    assert [line.split()[-2] for line in rows] == ["200", "1000", "5"]
    assert table_lines(("a", "b"), []) == ["a  b", "(none)"]


def test_the_orders_table_fits_120_columns_and_cuts_with_an_ellipsis() -> None:
    message = "[COUNTER] [120149][证券可用数量不足][occur_amount=100,enable_amount=0]"
    orders = [
        order(),
        order(order_id=1082130434, order_type=24, order_status=57, status_msg=message,
              client_order_id="my-strategy-2026-03-02-very-long-id-0001", order_remark="grid level 7"),
        order(order_id=1082130435, order_status=56, traded_volume=200, traded_price=10.6),
        order(order_id=1082130436, order_status=52, traded_volume=100, traded_price=10.6),
    ]
    lines = orders_table(orders[:3])
    assert max(width(line) for line in lines) <= ORDERS_WIDTH
    assert lines[0].split()[:3] == ["time", "(UTC+8)", "order_id"]
    assert lines[0].endswith("message") and "client_ord…" in lines[0] and "remark" not in lines[0]
    assert lines[1].startswith("09:31:02") and "买入 buy" in lines[1] and "50 已报 reported" in lines[1]
    assert "卖出 sell" in lines[2] and "57 废单 rejected" in lines[2] and "my-strateg…" in lines[2]
    assert lines[2].endswith("…") and "[COUNTER]" in lines[2]
    assert "56 已成 filled" in lines[3] and lines[3].split()[7:9] == ["200", "10.60"]
    crowded = orders_table(orders)  # the longest status takes what the id and the message had
    assert max(width(line) for line in crowded) <= ORDERS_WIDTH and "52 部成待撤 part filled" in crowded[4]
    wide = orders_table(orders, wide=True)
    assert message in wide[2] and "my-strategy-2026-03-02-very-long-id-0001" in wide[2] and "grid level 7" in wide[2]
    assert "remark" in wide[0] and max(width(line) for line in wide) > ORDERS_WIDTH
    utc = orders_table(orders[:1], dt.timezone.utc)
    assert utc[0].startswith("time (UTC+0)") and utc[1].startswith("01:31:02")


def test_times_are_exchange_time_whatever_the_hosts_zone() -> None:
    assert time_of_day(OPEN_TS) == "09:31:02" and time_of_day(OPEN_TS, dt.timezone.utc) == "01:31:02"
    assert time_of_day(0) == "-" and time_of_day(None) == "-"
    assert zone_label() == "UTC+8" and zone_label(dt.timezone(dt.timedelta(hours=-5, minutes=-30))) == "UTC-5:30"
    line = format_event(event("asset", {"cash": 1000.0, "frozen_cash": 0.0, "market_value": 0.0, "total_asset": 1000.0}))
    assert line.startswith("#7 09:31:02.123 asset")
    assert format_event(event("asset", {}), dt.timezone.utc).startswith("#7 01:31:02.123")
    tick = {"lastPrice": 10.6, "lastClose": 10.5, "bidPrice": [10.59], "askPrice": [10.6], "volume": 12,
            "time": int(OPEN_TS * 1000)}
    assert format_quote("600000.SH", "浦发银行", tick).endswith(" 09:31:02 UTC+8")


def test_order_and_trade_events_read_as_sentences() -> None:
    placed = describe_event("order", order())
    assert placed == "600000.SH 浦发银行 买入 buy 200 @ 10.70: 50 已报 reported; order 1082130433"
    refused = describe_event("order", order(order_type=24, order_status=57, status_msg="证券可用数量不足"))
    assert refused.endswith("57 废单 rejected; order 1082130433 (证券可用数量不足)")
    filled = describe_event("order", order(order_status=56, traded_volume=200, traded_price=10.6))
    assert "56 已成 filled, 200 traded @ 10.60" in filled
    market = describe_event("order", order(price_type=88, price=0.0))
    assert "200 @ best5_cancel" in market
    trade = describe_event("trade", {"stock_code": "600000.SH", "order_type": 23, "traded_volume": 200,
                                     "traded_price": 10.6, "traded_amount": 2120.0, "commission": 5.0,
                                     "order_id": 12, "traded_id": "T1"})
    assert trade == "600000.SH 买入 buy filled 200 @ 10.60 = 2120.00, commission 5.00 (trade T1); order 12"
    error = describe_event("order_error", {"order_id": 12, "error_id": -61, "error_msg": "资金不足"})
    assert error == "order 12 refused by the counter (error -61): 资金不足"
    cancel = describe_event("cancel_error", {"order_id": 12, "error_id": 110003, "error_msg": "已成交"})
    assert cancel == "cancel of order 12 refused by the counter (error 110003): 已成交"
    status = describe_event("account_status", {"status": 0})
    assert status == "account status 0 正常 ok"


def test_gateway_events_read_as_sentences_not_reprs() -> None:
    denied = describe_event("risk_denied", {
        "rule": "order.max_volume", "message": "volume 2000 is over the limit of 1000", "limit": 1000, "value": 2000,
        "op": "order_stock", "stock_code": "600000.SH", "order_type": 23, "order_volume": 2000, "price": 10.6,
        "order_id": None})
    assert denied == ("risk rule order.max_volume refused 买入 buy 600000.SH 2000 @ 10.60: "
                      "volume 2000 is over the limit of 1000")
    assert describe_event("risk_denied", {"rule": "rate.per_second", "message": "too fast", "op": "cancel_order_stock",
                                          "order_id": 9}) == "risk rule rate.per_second refused cancel of order 9: too fast"
    assert describe_event("gateway.trading", {"state": "halted", "reason": "fat finger", "cancel_open": True}) == (
        "trading HALTED: no new orders until 'qmt-adapter resume' (fat finger); cancelling every open order")
    assert describe_event("gateway.trading", {"state": "reduce_only", "reason": "", "cancel_open": False}) == (
        "trading REDUCE-ONLY: only orders that shrink positions")
    assert describe_event("gateway.connection", {"connected": False, "reason": "disconnected"}) == (
        "counter connection LOST (disconnected); orders are refused until it is back")
    assert describe_event("gateway.connection", {"connected": True, "reason": ""}) == "counter connected"
    storage = describe_event("gateway.storage", {"ok": False, "store": "journal", "error": "disk I/O error"})
    assert storage.startswith("storage FAILED: the journal store: disk I/O error; order entry is halted")
    assert describe_event("gateway.storage", {"ok": True, "store": "journal", "error": ""}) == (
        "storage: the journal store works again")
    silent = describe_event("gateway.liveness", {"alive": False, "silent_for": 3.2, "last_seq": 41})
    assert silent.startswith("no heartbeat from the gateway for 3.20 s") and "last seq 41" in silent
    assert describe_event("gateway.liveness", {"alive": True, "silent_for": 0.0}) == "the gateway is heard again"
    assert "take a fresh snapshot" in describe_event("gateway.gap", {"from_seq": 3, "to_seq": 9, "first_kept": 10})
    other = describe_event("gateway.something_new", {"name": "x", "ratio": 0.5, "missing": None})
    assert other == "name x, ratio 0.50, missing -" and "'" not in other
    broken = describe_event("order", {"order_status": 50})  # fields missing: still a line, no exception
    assert "50 已报 reported" in broken


def test_tail_lines_carry_seq_type_account_and_reconciled_marks() -> None:
    line = format_event(event("gateway.connection", {"connected": True, "reason": "connected and subscribed"},
                              account=None))
    assert line == "#7 09:31:02.123 gateway.connection -           counter connected (connected and subscribed)"
    notice = format_event(event("gateway.liveness", {"alive": True}, seq=None, account=None))
    assert notice.startswith("#- 09:31:02.123 gateway.liveness")
    found = Event("asset.1.", 3, int(OPEN_TS * 1e9), "asset", "1", Record({"cash": 1.0}), None, True)
    assert format_event(found).endswith("[reconciled]")


def test_numbers_and_sizes() -> None:
    assert (fmt(10.6), fmt(10.625), fmt(3), fmt(None), fmt(0.00001)) == ("10.60", "10.625", "3", "-", "0.00")
    assert format_size(1_234_567) == "1.2 MB" and format_size(None) == "-"
