"""The start-up check of the order ledger against the journal and the counter, the rebuild plan,
and the ledger's parts they use (adapter/server/stores.py, adapter/server/ledger.py). No sockets."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from adapter.config import ConfigError, load_config
from adapter.server.journal import Journal
from adapter.server.ledger import (
    ACKNOWLEDGED, REJECTED, Ledger, LedgerUnreadable, archive, fingerprint, in_use, make_tag, reset,
)
from adapter.protocol import encode_event, events
from adapter.server import stores
from adapter.server.stores import (
    UNKNOWN_ARGUMENTS, Evidence, Forgiven, JournalFacts, LedgerFacts, Sighting, StoresMismatch, assess,
    check_stores, client_order_keys, gather_evidence, plan_rebuild, refusal_message, sightings,
)

A = "1000000365"
ARGS = {"account_type": "STOCK", "stock_code": "600000.SH", "order_type": 23, "order_volume": 100,
        "price_type": 11, "price": 10.7, "strategy_name": "s", "order_remark": "mine"}


def ledger_facts(prefix: str = "K7P", records: dict[int, tuple[str, str, int | None]] | None = None,
                 existed: bool = True, high_water: int | None = None, forgiven: Forgiven = Forgiven()) -> LedgerFacts:
    records = records or {}
    return LedgerFacts("/d/orders.sqlite3", existed, prefix, records,
                       max(records, default=0) if high_water is None else high_water, forgiven)


def journal_facts(ids: dict[tuple[str, str], int] | None = None, prefix: str | None = None, high_water: int = 0,
                  epoch: str = "e1") -> JournalFacts:
    return JournalFacts("/d/journal.sqlite3", epoch, ids or {}, prefix, high_water)


def counter_order(tag: str, order_id: int, status: int = 50, **fields: Any) -> dict[str, Any]:
    order = {"account_type": 2, "account_id": A, "stock_code": "600000.SH", "order_id": order_id, "order_type": 23,
             "order_volume": 100, "price_type": 50, "price": 10.7, "order_status": status, "status_msg": "",
             "strategy_name": "s", "order_remark": tag}
    return order | fields


# -- the verdict -----------------------------------------------------------------------------


def test_a_ledger_that_holds_the_history_passes() -> None:
    ledger = ledger_facts(records={1: (A, "c1", 101), 2: (A, "c2", None)})
    journal = journal_facts({(A, "c1"): 5, (A, "c2"): 9}, prefix="K7P", high_water=2)
    counter = {A: [counter_order("QZK7P1", 101), counter_order("QZK7P2", 102), counter_order("plain remark", 103)]}
    verdict = assess(ledger, journal, counter)
    assert verdict.ok and not verdict.warnings


def test_a_fresh_data_dir_passes() -> None:
    assert assess(ledger_facts(existed=False), journal_facts(), {A: []}).ok


def test_a_missing_ledger_with_history_in_the_journal_is_refused_with_the_ways_out() -> None:
    ledger = ledger_facts(existed=False)
    verdict = assess(ledger, journal_facts({(A, "c1"): 5, (A, "c2"): 9}), {A: []})
    assert not verdict.ok and verdict.lost_ids == [(A, "c1"), (A, "c2")]
    message = refusal_message(verdict, ledger, "/d")
    assert "/d/orders.sqlite3 is missing" in message and "/d/journal.sqlite3" in message
    assert "1000000365/c1" in message and "2 client order ids" in message
    assert "qmt-adapter ledger rebuild --data-dir /d" in message and "qmt-adapter serve --reset-ledger" in message


def test_an_empty_ledger_with_tagged_orders_at_the_counter_is_refused() -> None:
    # The journal went too (or is not there): the counter's tags of another ledger are the evidence.
    verdict = assess(ledger_facts(prefix="NEW"), journal_facts(), {A: [counter_order("QZK7P1", 101)]})
    assert not verdict.ok and "prefix K7P" in verdict.problems[0] and "--reset-ledger" in verdict.problems[0]
    assert "has no records" in refusal_message(verdict, ledger_facts(prefix="NEW"), "/d")


def test_another_gateways_tags_are_only_a_warning_when_the_journal_knows_this_ledger() -> None:
    counter = {A: [counter_order("QZOTH1", 101)]}
    confirmed = assess(ledger_facts(prefix="K7P"), journal_facts(prefix="K7P"), counter)  # empty, but its own
    assert confirmed.ok and "prefix OTH" in confirmed.warnings[0]
    with_records = assess(ledger_facts(records={1: (A, "c1", 9)}), journal_facts({(A, "c1"): 3}), counter)
    assert with_records.ok and with_records.warnings


def test_a_truncated_ledger_is_refused_by_each_witness() -> None:
    ledger = ledger_facts(records={1: (A, "c1", 101), 2: (A, "c2", 102)})
    # The journal names an id the ledger lost.
    by_journal = assess(ledger, journal_facts({(A, "c1"): 3, (A, "c3"): 8}), {})
    assert by_journal.lost_ids == [(A, "c3")]
    # The counter has an order with this ledger's tag and a record number it no longer has.
    by_counter = assess(ledger, journal_facts(), {A: [counter_order("QZK7P1", 101), counter_order("QZK7P3", 103)]})
    assert not by_counter.ok and by_counter.lost_tags == [f"QZK7P3 (account {A}, order 103)"]
    # The journal noted a higher record number at an earlier start (a lost -wal loses ids and tags alike).
    by_note = assess(ledger, journal_facts(prefix="K7P", high_water=4), {})
    assert not by_note.ok and "up to number 4" in by_note.problems[0] and "ends at 2" in by_note.problems[0]
    assert "has lost records" in refusal_message(by_note, ledger, "/d")


def test_a_ledger_that_numbered_again_after_losing_records_is_refused() -> None:
    ledger = ledger_facts(records={1: (A, "new", 555)})
    verdict = assess(ledger, journal_facts(), {A: [counter_order("QZK7P1", 101)]})
    assert not verdict.ok and "gave those record numbers to other orders" in verdict.problems[0]


def test_a_replaced_ledger_is_refused() -> None:
    verdict = assess(ledger_facts(prefix="NEW", records={1: (A, "x", 1)}), journal_facts(prefix="K7P", high_water=3), {})
    assert not verdict.ok and "replaced or created anew" in verdict.problems[0]
    # A journal that knew a ledger with no records loses nothing when it is replaced.
    assert assess(ledger_facts(prefix="NEW"), journal_facts(prefix="K7P", high_water=0), {}).ok


def test_what_an_operator_accepted_is_not_held_against_the_ledger() -> None:
    forgiven = Forgiven("e1", 10, frozenset({"K7P"}), frozenset({"QZOLD7"}))
    ledger = ledger_facts(prefix="NEW", records={1: (A, "after", 11)}, forgiven=forgiven)
    counter = {A: [counter_order("QZK7P1", 101), counter_order("QZOLD7", 102), counter_order("QZNEW1", 11)]}
    journal = journal_facts({(A, "before"): 10, (A, "after"): 12})
    verdict = assess(ledger, journal, counter)
    assert verdict.ok and not verdict.warnings
    # In another epoch of the journal, the same seq is another event: not covered.
    assert not assess(ledger, journal_facts({(A, "before"): 10}, epoch="e2"), {}).ok
    assert Forgiven.load(json.loads(forgiven.dump())) == forgiven


# -- facts from real stores ------------------------------------------------------------------


def journal_with(directory: Path, items: list[tuple[str, str, dict[str, Any]]], reconciled: bool = False) -> Journal:
    journal = Journal(directory)
    rows = []
    for seq, (event_type, account, data) in enumerate(items, start=journal.last_seq + 1):
        topic, payload = encode_event(seq, time.time_ns(), event_type, account, data, journal.epoch, reconciled)
        rows.append((seq, time.time_ns(), topic.decode(), payload))
    journal.append(rows)
    return journal


def order_event(cid: str | None, order_id: int, status: int = 50, remark: str = "mine", **more: Any) -> dict[str, Any]:
    data = {name: None for name in events.ORDER_FIELDS}
    data.update(counter_order(remark, order_id, status), client_order_id=cid, **more)
    return data


def test_the_journal_scan_reads_the_ids_as_a_full_decode_would(tmp_path: Path) -> None:
    long_id = "x" * 64  # the longest id: a str8 in msgpack, not a fixstr
    tricky = "remark naming client_order_id " + "字" * 60  # a remark that spells the key, before it
    items = [
        ("order", A, order_event("c1", 101)),
        ("order", A, order_event(None, 102)),  # placed elsewhere
        ("trade", A, {name: None for name in events.TRADE_FIELDS} | {"order_id": 101, "client_order_id": "c1"}),
        ("order", A, order_event(long_id, 103, remark=tricky)),
        ("order_error", "99", {name: None for name in events.ORDER_ERROR_FIELDS}
         | {"order_id": -1, "error_msg": "no", "client_order_id": "e1"}),
        ("asset", A, {"cash": 1.0}),
    ]
    journal = journal_with(tmp_path, items)
    journal.close()
    journal = journal_with(tmp_path, [("order", A, order_event("c9", 109))], reconciled=True)
    keys = client_order_keys(journal)
    assert keys == {(A, "c1"): 3, (A, long_id): 4, ("99", "e1"): 5, (A, "c9"): 7}
    decoded = {(s.account_id, s.client_order_id): s.seq for s in sightings(journal)}
    assert decoded == keys
    journal.close()


def test_check_stores_refuses_a_lost_ledger_and_leaves_the_dir_as_it_was(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, [("order", A, order_event("c1", 101))])
    ledger = Ledger(tmp_path)  # created now: the old one was deleted
    with pytest.raises(StoresMismatch) as refused:
        check_stores(journal, ledger, {A: {"orders": [counter_order("QZK7P1", 101)]}})
    assert "is missing" in str(refused.value) and "1000000365/c1" in str(refused.value)
    assert not (tmp_path / "orders.sqlite3").exists()  # the refused start left nothing behind
    journal.close()


def test_check_stores_notes_the_ledgers_identity_in_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    ledger = Ledger(tmp_path)
    record = ledger.create(A, "c1", ARGS)
    check_stores(journal, ledger, {A: {"orders": []}})
    assert journal.meta("ledger_prefix") == ledger.tag_prefix and journal.meta("ledger_high_water") == "1"
    ledger.close()
    # The ledger loses its record (a truncation), the journal's note tells.
    db = sqlite3.connect(tmp_path / "orders.sqlite3")
    db.execute("DELETE FROM orders WHERE id = ?", (record.id,))
    db.commit()
    db.close()
    ledger = Ledger(tmp_path)
    with pytest.raises(StoresMismatch, match="up to number 1"):
        check_stores(journal, ledger, {A: {"orders": []}})
    assert (tmp_path / "orders.sqlite3").exists()  # an existing ledger is never removed
    ledger.close()
    journal.close()


def test_a_reset_is_accepted_once_recorded_and_announced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = journal_with(tmp_path, [("order", A, order_event("c1", 101))])
    old = Ledger(tmp_path)
    old.set_prefix("K7P")
    old.create(A, "c1", ARGS)
    old.close()
    journal.set_meta("ledger_prefix", "K7P")
    journal.set_meta("ledger_high_water", "1")
    journal.close()  # the gateway is stopped for a reset
    archived = reset(tmp_path)
    journal = Journal(tmp_path)
    assert archived is not None and archived.exists() and archived.name.startswith("orders.sqlite3.reset-")
    ledger = Ledger(tmp_path)
    counter = {A: {"orders": [counter_order("QZK7P1", 101)]}}
    with caplog.at_level("WARNING"):
        check_stores(journal, ledger, counter)
    said = caplog.text
    assert "ORDER LEDGER RESET" in said and str(archived) in said and "1000000365/c1" in said and "NEW order" in said
    assert ledger.tag_prefix != "K7P" and ledger.json_meta("reset_pending") is None
    ledger.close()
    ledger = Ledger(tmp_path)
    check_stores(journal, ledger, counter)  # the next start: accepted without a reset
    ledger.close()
    journal.close()


# -- the rebuild plan ------------------------------------------------------------------------


def sighting(seq: int, event_type: str, cid: str, data: dict[str, Any]) -> Sighting:
    return Sighting(seq, seq * 1000, event_type, A, cid, data)


def test_a_rebuild_recovers_numbers_states_responses_and_fingerprints() -> None:
    evidence = gather_evidence([
        sighting(1, "order", "c1", order_event("c1", 101, remark="mine")),
        sighting(2, "order_response", "c2", {"account_type": 2, "account_id": A, "order_id": 102, "strategy_name": "s",
                                             "order_remark": "", "error_msg": "", "seq": 7, "client_order_id": "c2"}),
        sighting(3, "order", "c2", order_event("c2", 102, remark="")),
        sighting(4, "order", "c3", order_event("c3", 103, remark="odd")),
        sighting(5, "order", "c3", order_event("c3", 103, status=57, remark="odd", status_msg="lot size")),
        sighting(6, "order_error", "c4", {"account_id": A, "order_id": -1, "error_msg": "no money",
                                          "strategy_name": "s", "order_remark": "r4", "client_order_id": "c4"}),
    ])
    counter = {A: [counter_order("QZK7P1", 101), counter_order("QZK7P2", 102), counter_order("QZK7P4", 103, 57),
                   counter_order("QZK7P6", 106), counter_order("QZOTH1", 900), counter_order("", 901)]}
    plan = plan_rebuild([], None, 0, evidence, counter)
    assert plan.prefix == "K7P"  # the lost ledger's, read from the counter's tags of the orders it placed
    by_cid = {r.client_order_id: r for r in plan.records}
    assert {cid: r.id for cid, r in by_cid.items()} == {"c1": 1, "c2": 2, "c3": 4, "c4": 7}
    assert plan.id_floor == 7  # above the orphan QZK7P6: new orders never get a number the counter has seen
    assert [r.state for r in plan.records] == [ACKNOWLEDGED, ACKNOWLEDGED, REJECTED, REJECTED]
    c1 = by_cid["c1"]
    assert c1.fingerprint == fingerprint(ARGS) and c1.order_remark == "mine" and c1.order_id == 101
    assert c1.response == {"account_type": 2, "account_id": A, "order_id": 101, "strategy_name": "s",
                           "order_remark": "mine", "error_msg": "", "seq": None, "client_order_id": "c1"}
    assert by_cid["c2"].response is not None and by_cid["c2"].response["seq"] == 7  # the event, as first answered
    assert by_cid["c3"].error_msg == "lot size" and by_cid["c3"].response["error_msg"] == ""  # type: ignore[index]
    c4 = by_cid["c4"]
    assert (c4.order_id, c4.error_msg, c4.fingerprint) == (None, "no money", UNKNOWN_ARGUMENTS)
    assert c4.response is not None and c4.response["order_id"] == -1
    assert plan.orphans and plan.orphans[0].startswith("QZK7P6 (") and "QZK7P6" in plan.forgiven_tags
    assert plan.foreign and plan.foreign[0].startswith("QZOTH1") and "QZOTH1" in plan.forgiven_tags


def test_a_rebuild_keeps_the_surviving_records_and_numbers_above_the_journals_note() -> None:
    from adapter.server.ledger import OrderRecord

    kept = OrderRecord(1, A, "c1", fingerprint(ARGS), "s", "mine", ACKNOWLEDGED, order_id=101)
    evidence = gather_evidence([sighting(1, "order", "c1", order_event("c1", 101)),
                                sighting(2, "order", "c2", order_event("c2", 102))])
    plan = plan_rebuild([kept], "K7P", 1, evidence, {}, journal_prefix="K7P", journal_high_water=5)
    assert [(r.client_order_id, r.id) for r in plan.records] == [("c2", 6)]  # journal-only: a fresh number
    assert plan.prefix == "K7P" and plan.id_floor == 6


def test_evidence_keeps_the_first_response_and_the_newest_order() -> None:
    found = Evidence(A, "c1")
    found.add(sighting(1, "order_response", "c1", {"order_id": 5, "seq": 1}))
    found.add(sighting(2, "order_response", "c1", {"order_id": 5, "seq": 2}))
    found.add(sighting(3, "order", "c1", {"order_id": 5, "order_status": 50}))
    found.add(sighting(4, "order", "c1", {"order_id": 5, "order_status": 56}))
    assert found.response == {"order_id": 5, "seq": 1} and found.order == {"order_id": 5, "order_status": 56}
    assert (found.first_seq, found.order_id) == (1, 5)


# -- the ledger's parts ----------------------------------------------------------------------


def test_new_records_are_numbered_above_the_floor_and_never_again_after_a_rollback(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.set_id_floor(6)
    first = ledger.create(A, "c1", ARGS)
    assert first.id == 7 and first.tag == make_tag(ledger.tag_prefix, 7)
    ledger.begin()
    lost = ledger.create(A, "c2", ARGS)
    ledger.rollback([lost])
    again = ledger.create(A, "c2", ARGS)
    assert again.id == lost.id + 1 and ledger.high_water == again.id
    ledger.close()
    reopened = Ledger(tmp_path)
    assert reopened.high_water == 9 and reopened.create(A, "c3", ARGS).id == 10
    with pytest.raises(ValueError):
        reopened.set_prefix("ABC")  # a ledger with records keeps its prefix
    reopened.close()


def test_an_unreadable_ledger_is_refused_with_the_ways_out(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    for number in range(3):
        ledger.create(A, f"c{number}", ARGS)
    ledger.close()
    path = tmp_path / "orders.sqlite3"
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(LedgerUnreadable) as refused:
        Ledger(tmp_path)
    assert str(path) in str(refused.value) and "ledger rebuild" in str(refused.value)
    assert "--reset-ledger" in str(refused.value)


def test_archive_keeps_the_file_with_its_wal(tmp_path: Path) -> None:
    assert archive(tmp_path, "reset") is None  # nothing to keep
    ledger = Ledger(tmp_path)
    ledger.create(A, "c1", ARGS)
    ledger.backup(tmp_path / "copy.sqlite3")
    ledger.close()
    target = archive(tmp_path, "reset")
    assert target is not None and target.exists() and not (tmp_path / "orders.sqlite3").exists()
    second = archive(tmp_path, "reset")
    assert second is None
    assert Ledger(tmp_path / "x").existed is False


def test_a_store_open_elsewhere_is_in_use(tmp_path: Path) -> None:
    assert not in_use(tmp_path / "orders.sqlite3")  # missing
    ledger = Ledger(tmp_path)
    ledger.create(A, "c1", ARGS)
    assert in_use(tmp_path / "orders.sqlite3")
    with pytest.raises(RuntimeError, match="stop the gateway"):
        reset(tmp_path)
    ledger.close()
    assert not in_use(tmp_path / "orders.sqlite3")


def test_ledger_sync_full_is_a_setting(tmp_path: Path) -> None:
    assert load_config(None).ledger_sync == "normal"
    assert load_config(None, ledger_sync="full").ledger_sync == "full"
    with pytest.raises(ConfigError, match="ledger_sync"):
        load_config(None, ledger_sync="always")
    for sync, level in (("normal", 1), ("full", 2)):
        ledger = Ledger(tmp_path / sync, sync=sync)
        assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == level
        ledger.close()


def test_an_account_id_with_dots_is_read_from_the_topic(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, [("order", "A.1", order_event("c1", 101) | {"account_id": "A.1"})])
    assert client_order_keys(journal) == {("A.1", "c1"): 1}
    journal.close()


def test_a_journal_only_rebuild_then_a_second_one_that_finds_nothing(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, [("order", A, order_event("c1", 101)), ("order", A, order_event("c2", 102))])
    journal.set_meta("ledger_prefix", "K7P")
    journal.set_meta("ledger_high_water", "5")  # records 3..5 left no trace (never reached the counter)
    journal.close()
    report = stores.rebuild(tmp_path, None)
    assert report.written and any("recovered 2 records" in line for line in report.lines)
    assert any("--journal-only" in warning for warning in report.warnings)
    ledger = Ledger(tmp_path)
    assert ledger.tag_prefix == "K7P" and ledger.high_water == 7  # numbered above the journal's note
    assert [(r.client_order_id, r.id) for r in ledger.records()] == [("c1", 6), ("c2", 7)]
    journal = Journal(tmp_path)
    check_stores(journal, ledger, {A: {"orders": []}})  # the next start accepts it
    ledger.close()
    journal.close()
    again = stores.rebuild(tmp_path, None)
    assert not again.written and any("nothing to recover" in line for line in again.lines)
    assert not list(tmp_path.glob("orders.sqlite3.before-rebuild-*"))  # there was no old file to keep
