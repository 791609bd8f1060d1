"""The order ledger on its own: records, tags, states and their counts, reopening."""

from __future__ import annotations

from pathlib import Path

from adapter.ledger import ACKNOWLEDGED, REJECTED, SENDING, UNKNOWN, Ledger, fingerprint

ARGS = {"account_type": "STOCK", "stock_code": "600000.SH", "order_type": 23, "order_volume": 100,
        "price_type": 11, "price": 10.5, "strategy_name": "s", "order_remark": "my remark"}


def test_records_tags_and_counts_survive_reopening(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    first = ledger.create("A", "c1", ARGS)
    second = ledger.create("A", "c2", {**ARGS, "order_volume": 200})
    assert first.tag.startswith("QZ" + ledger.tag_prefix) and len(first.tag) <= 24 and first.tag != second.tag
    assert ledger.by_tag(first.tag) is first and ledger.by_tag(first.tag + "0") is None
    other_prefix = "000" if ledger.tag_prefix != "000" else "001"
    assert ledger.by_tag("QZ" + other_prefix + first.tag[5:]) is None  # another ledger's tag
    assert (ledger.count(SENDING), len(ledger.in_flight())) == (2, 2)
    ledger.settle(first, ACKNOWLEDGED, order_id=77, response={"order_id": 77})
    ledger.settle(second, UNKNOWN, error_msg="time-out")
    assert (ledger.count(SENDING), ledger.count(ACKNOWLEDGED), ledger.count(UNKNOWN)) == (0, 1, 1)
    assert [r.client_order_id for r in ledger.in_flight()] == ["c2"]
    ledger.settle(first, REJECTED, error_msg="status 57")
    prefix = ledger.tag_prefix
    ledger.close()

    reopened = Ledger(tmp_path)
    assert reopened.tag_prefix == prefix
    again = reopened.get("A", "c1")
    assert again is not None and (again.state, again.order_id, again.response) == (REJECTED, 77, {"order_id": 77})
    assert again.order_remark == "my remark" and again.fingerprint == fingerprint(ARGS)
    assert reopened.by_order_id("A", 77) is again and reopened.by_tag(again.tag) is again
    assert (reopened.count(UNKNOWN), reopened.count(REJECTED)) == (1, 1)
    reopened.close()
    assert Ledger(tmp_path / "new").tag_prefix  # a new ledger draws its own prefix


def test_an_acknowledged_order_drops_an_old_reason(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    record = ledger.create("A", "c1", ARGS)
    ledger.settle(record, UNKNOWN, error_msg="time-out")
    ledger.settle(record, ACKNOWLEDGED, order_id=5)
    assert record.error_msg == "" and ledger.count(UNKNOWN) == 0
    ledger.close()
