"""The order ledger checked against the journal and the counter at start-up, and rebuilt from them.

A ledger that lost records (deleted, emptied, truncated, its -wal lost after ``kill -9``, replaced)
takes a repeated client order id for a new order and places it twice. So before it serves, the
gateway compares the ledger with two witnesses that are kept apart from it (PROTOCOL §9.6):

- the journal: every ``order``, ``trade``, ``order_error`` and ``order_response`` event names the
  client order id the ledger mapped it to; and the journal keeps the identity of the ledger it was
  written with (its tag prefix and highest record number, written at every accepted start);
- the counter: its orders of the day carry the ledger's tags (``QZ`` + prefix + base36 number).

``assess`` is pure: plain facts in, a ``Verdict`` out. ``check_stores`` gathers the facts from the
open stores, refuses (``StoresMismatch``) or records the ledger's identity in the journal; it also
carries out an operator's reset (``serve --reset-ledger``). ``plan_rebuild`` is pure as well: what a
rebuilt ledger holds; ``rebuild`` does the reading and writing for ``qmt-adapter ledger rebuild``.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Container, Iterable, Iterator, Mapping, Sequence

import msgpack

from . import journal as journal_module
from . import ledger as ledger_module
from .ledger import ACKNOWLEDGED, REJECTED, Ledger, LedgerUnreadable, OrderRecord, make_tag, parse_tag
from .. import market
from ..protocol import mapping

log = logging.getLogger(__name__)

# Events whose data.client_order_id comes from a ledger record (risk_denied ones do not).
ORDER_TOPICS = ("order.", "trade.", "order_error.", "order_response.")
# Kept in the journal's meta: the ledger it was written with.
JOURNAL_LEDGER_PREFIX = "ledger_prefix"
JOURNAL_LEDGER_HIGH_WATER = "ledger_high_water"
# Kept in the ledger's meta.
RESET_PENDING = "reset_pending"  # written by ledger.reset(); the next start accepts and clears it
FORGIVEN = "forgiven"  # history the operator accepted as lost (a reset) or unrecoverable (a rebuild)
EXAMPLES = 5  # ids or tags named in a message
UNKNOWN_ARGUMENTS = "?rebuilt: arguments not known"  # a fingerprint no order's arguments ever match


class StoresMismatch(RuntimeError):
    """The ledger has lost order history the journal or the counter still shows."""


# -- facts and the verdict (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class Forgiven:
    """History an operator accepted: journal events through ``journal_seq`` of ``journal_epoch``
    (a reset), every tag of ``prefixes`` (a reset) and single ``tags`` (a rebuild's orphans)."""

    journal_epoch: str = ""
    journal_seq: int = 0
    prefixes: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    @classmethod
    def load(cls, value: Any) -> "Forgiven":
        value = value if isinstance(value, dict) else {}
        return cls(str(value.get("journal_epoch") or ""), int(value.get("journal_seq") or 0),
                   frozenset(value.get("prefixes") or ()), frozenset(value.get("tags") or ()))

    def dump(self) -> str:
        return json.dumps({"journal_epoch": self.journal_epoch, "journal_seq": self.journal_seq,
                           "prefixes": sorted(self.prefixes), "tags": sorted(self.tags)})

    def covers(self, tag: str, prefix: str) -> bool:
        return tag in self.tags or prefix in self.prefixes


@dataclass(frozen=True)
class LedgerFacts:
    path: str
    existed: bool  # the file was there before this start
    prefix: str
    records: Mapping[int, tuple[str, str, int | None]]  # record number -> (account, client order id, order id)
    high_water: int  # the highest record number used, or its floor after a rebuild
    forgiven: Forgiven = Forgiven()
    keys: Container[tuple[str, str]] | None = None  # (account, client order id) of every record; None: from records


@dataclass(frozen=True)
class JournalFacts:
    path: str
    epoch: str
    client_orders: Mapping[tuple[str, str], int]  # (account, client order id) -> the newest seq naming it
    ledger_prefix: str | None = None  # the identity recorded at the last accepted start
    ledger_high_water: int = 0


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)  # each one is a reason to refuse
    warnings: list[str] = field(default_factory=list)
    lost_ids: list[tuple[str, str]] = field(default_factory=list)  # named by the journal, not in the ledger
    lost_tags: list[str] = field(default_factory=list)  # own-prefix tags at the counter, not in the ledger
    foreign_prefixes: frozenset[str] = frozenset()  # other ledgers' tag prefixes at the counter

    @property
    def ok(self) -> bool:
        return not self.problems


def assess(ledger: LedgerFacts, journal: JournalFacts | None,
           counter: Mapping[str, Sequence[Mapping[str, Any]]]) -> Verdict:
    """Whether the ledger holds the order history the journal and the counter show."""
    verdict = Verdict()
    forgiven = ledger.forgiven
    keys = ledger.keys if ledger.keys is not None else {(account, cid) for account, cid, _ in ledger.records.values()}

    # 1. Every client order id the journal names must have its record.
    if journal is not None:
        same_epoch = journal.epoch == forgiven.journal_epoch
        verdict.lost_ids = sorted(
            key for key, seq in journal.client_orders.items()
            if key not in keys and not (same_epoch and seq <= forgiven.journal_seq)
        )
        if verdict.lost_ids:
            verdict.problems.append(
                f"the journal {journal.path} names {_count(len(verdict.lost_ids), 'client order id')} that the "
                f"ledger has no record of: {_examples(f'{a}/{c}' for a, c in verdict.lost_ids)}"
            )

    # 2. Every order at the counter tagged with this ledger's prefix must have its record.
    foreign: dict[str, list[str]] = {}
    reused: list[str] = []
    for account, orders in sorted(counter.items()):
        for order in orders:
            tag = order.get("order_remark")
            parsed = parse_tag(tag)
            if parsed is None:
                continue
            prefix, number = parsed
            assert isinstance(tag, str)
            if forgiven.covers(tag, prefix):
                continue
            where = f"{tag} (account {account}, order {order.get('order_id')})"
            if prefix != ledger.prefix:
                foreign.setdefault(prefix, []).append(where)
                continue
            record = ledger.records.get(number)
            if record is None:
                verdict.lost_tags.append(where)
            elif record[0] != account or (record[2] not in (None, -1) and order.get("order_id") not in (None, record[2])):
                reused.append(where)
    if verdict.lost_tags:
        verdict.problems.append(
            f"the counter's orders of the day include {_count(len(verdict.lost_tags), 'order')} tagged by this "
            f"ledger (QZ{ledger.prefix}...) whose records are missing: {_examples(verdict.lost_tags)}"
        )
    if reused:
        verdict.problems.append(
            f"{_count(len(reused), 'order')} at the counter carry this ledger's tags, but the ledger gave those "
            f"record numbers to other orders (it lost records and numbered again): {_examples(reused)}"
        )

    # 3. The journal's note of the ledger it was written with.
    known_prefix = journal.ledger_prefix if journal is not None else None
    if journal is not None and known_prefix:
        if known_prefix != ledger.prefix and journal.ledger_high_water > 0 and known_prefix not in forgiven.prefixes:
            verdict.problems.append(
                f"the journal was written with another ledger (tag prefix {known_prefix}, records up to number "
                f"{journal.ledger_high_water}); {ledger.path} has prefix {ledger.prefix} and "
                f"{_count(len(ledger.records), 'record')}: the ledger was replaced or created anew"
            )
        elif known_prefix == ledger.prefix and ledger.high_water < journal.ledger_high_water:
            verdict.problems.append(
                f"at an earlier start this ledger held records up to number {journal.ledger_high_water} (the "
                f"journal noted it); it now ends at {ledger.high_water}: it was truncated, restored from an older "
                "copy, or lost its -wal file"
            )

    # 4. Other ledgers' tags at the counter: another gateway's, or this data dir's lost ledger.
    verdict.foreign_prefixes = frozenset(foreign)
    if foreign:
        described = "; ".join(f"prefix {p}: {_examples(w)}" for p, w in sorted(foreign.items()))
        total = sum(len(w) for w in foreign.values())
        if not ledger.records and known_prefix != ledger.prefix:
            verdict.problems.append(
                f"the ledger has no records, but the counter's orders of the day include "
                f"{_count(total, 'order')} tagged by a gateway's ledger ({described}). If they were placed "
                "through this data dir, its ledger was lost. If another gateway with its own data_dir trades "
                "the account, they are its orders: start with --reset-ledger (the empty ledger is archived)"
            )
        else:
            verdict.warnings.append(
                f"the counter has {_count(total, 'order')} tagged by another ledger ({described}): another "
                "gateway's, or a ledger this data dir lost before; this ledger does not know their client order ids"
            )
    return verdict


def refusal_message(verdict: Verdict, ledger: LedgerFacts, data_dir: str | Path) -> str:
    if not ledger.existed:
        state = f"the order ledger {ledger.path} is missing"
    elif not ledger.records:
        state = f"the order ledger {ledger.path} has no records"
    else:
        state = f"the order ledger {ledger.path} has lost records"
    lines = [
        f"refusing to start: {state}, but the order history says otherwise. Starting now could place orders "
        "twice: a repeat of a client_order_id the ledger lost would be sent to the counter as a new order.",
        *(f"  - {problem}" for problem in verdict.problems),
        ledger_module.recovery_hint(data_dir),
    ]
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _examples(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:EXAMPLES])
    return shown + (f" and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else "")


# -- gathering the facts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sighting:
    """One journal event that names a client order id."""

    seq: int
    ts: int
    type: str
    account_id: str
    client_order_id: str
    data: Mapping[str, Any]


def sightings(journal: journal_module.Journal) -> Iterator[Sighting]:
    """The journal's order, trade, order_error and order_response events that name a client
    order id, oldest first, decoded whole (for a rebuild)."""
    for seq, ts, _topic, payload in journal.rows(ORDER_TOPICS):
        body = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        data = body.get("data") or {}
        cid = data.get("client_order_id")
        if isinstance(cid, str) and cid:
            yield Sighting(seq, ts, body.get("type") or "", str(body.get("account_id") or data.get("account_id") or ""),
                           cid, data)


# The msgpack bytes of the key: events put data.client_order_id last (PROTOCOL §6.3 field order),
# so its last occurrence in a payload is the key itself, whatever strings come before it.
_CID_KEY = msgpack.packb("client_order_id")
_TAIL = 160  # payload bytes read: the key, an id of up to 64 characters, and "reconciled": true after it


def client_order_keys(journal: journal_module.Journal) -> dict[tuple[str, str], int]:
    """(account, client order id) -> the newest seq naming it, over the journal's order events."""
    return {key: seq for seq, _ts, key in _named(journal)}


def _named(journal: journal_module.Journal) -> Iterator[tuple[int, int, tuple[str, str]]]:
    """``(seq, ts, (account, client order id))`` of each order event naming one, oldest first.

    Runs at every start, so it reads the one value it needs from each payload instead of
    decoding all of it (about 20x faster); anything unusual is decoded whole.
    """
    for seq, ts, topic, payload in journal.rows(ORDER_TOPICS, tail=_TAIL):
        at = payload.rfind(_CID_KEY)
        cid: Any = None
        if at >= 0:
            start = at + len(_CID_KEY)
            marker = payload[start] if start < len(payload) else 0
            if marker == 0xC0:  # nil: an order placed elsewhere
                continue
            if 0xA0 <= marker <= 0xBF:  # a str of up to 31 bytes
                cid = payload[start + 1:start + 1 + (marker & 0x1F)].decode("utf-8", "replace")
            elif marker == 0xD9 and start + 1 < len(payload):  # a str of up to 255 bytes
                cid = payload[start + 2:start + 2 + payload[start + 1]].decode("utf-8", "replace")
        if cid is None:  # not in the tail as expected: the whole event
            events = journal.read(seq, seq, (), 1).events
            body = msgpack.unpackb(events[0][1], raw=False, strict_map_key=False) if events else {}
            cid = (body.get("data") or {}).get("client_order_id")
        if isinstance(cid, str) and cid:
            yield seq, ts, (_topic_account(topic), cid)


def _topic_account(topic: str) -> str:
    """The account of an event topic ``<type>.<account_id>.`` (an account id may hold dots)."""
    for prefix in ORDER_TOPICS:
        if topic.startswith(prefix):
            rest = topic[len(prefix):]
            return rest[:-1] if rest.endswith(".") else rest
    return ""


def journal_facts(journal: journal_module.Journal) -> JournalFacts:
    return JournalFacts(str(journal.path), journal.epoch, client_order_keys(journal),
                        journal.meta(JOURNAL_LEDGER_PREFIX), int(journal.meta(JOURNAL_LEDGER_HIGH_WATER) or 0))


class _RecordsOnDisk(Mapping[int, tuple[str, str, "int | None"]]):
    """The ledger's records by number, each read by index when asked for: the start-up check
    reads the records the journal and the counter name, not the ledger's whole history."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __getitem__(self, number: int) -> tuple[str, str, int | None]:
        found = self._ledger.identity(number)
        if found is None:
            raise KeyError(number)
        return found

    def __iter__(self) -> Iterator[int]:
        return (record.id for record in self._ledger.iter_records())

    def __len__(self) -> int:
        return self._ledger.size()

    def __bool__(self) -> bool:
        return self._ledger.has_records()


class _KeysOnDisk:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and self._ledger.knows(key[0], key[1])


def ledger_facts(ledger: Ledger) -> LedgerFacts:
    return LedgerFacts(str(ledger.path), ledger.existed, ledger.tag_prefix, _RecordsOnDisk(ledger), ledger.high_water,
                       Forgiven.load(ledger.json_meta(FORGIVEN)), _KeysOnDisk(ledger))


def counter_orders(view: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The counter's orders of the day per account, from the broker's start-up queries."""
    return {account: list(books.get("orders") or ()) for account, books in view.items()}


# -- at start-up -----------------------------------------------------------------------------


def check_stores(journal: journal_module.Journal, ledger: Ledger, view: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a ledger that lost history; otherwise note its identity in the journal.

    Runs in ``Gateway.start()`` after the broker's start-up queries and before any command.
    """
    facts = ledger_facts(ledger)
    known = journal_facts(journal)
    counter = counter_orders(view)
    verdict = assess(facts, known, counter)
    reset = ledger.json_meta(RESET_PENDING)
    if reset is not None:
        _accept_reset(journal, ledger, verdict, counter, reset)
    elif not verdict.ok:
        if not ledger.existed and not facts.records:
            _discard(ledger)  # leave the data dir as it was found: the ledger is still missing
        raise StoresMismatch(refusal_message(verdict, facts, Path(ledger.path).parent))
    for warning in verdict.warnings:
        log.warning("order ledger: %s", warning)
    try:
        note_identity(journal, ledger)
    except sqlite3.Error as exc:  # the other two witnesses still hold; the first journal write will tell
        log.warning("could not note the order ledger's identity in the journal %s: %s", journal.path, exc)
    log.info("order ledger %s: tag prefix %s, records up to number %d, checked against the journal and the counter",
             ledger.path, ledger.tag_prefix, ledger.high_water)


def note_identity(journal: journal_module.Journal, ledger: Ledger) -> None:
    """The journal's note of the ledger it is written with: its tag prefix and highest number."""
    if journal.meta(JOURNAL_LEDGER_PREFIX) != ledger.tag_prefix:
        journal.set_meta(JOURNAL_LEDGER_PREFIX, ledger.tag_prefix)
    if int(journal.meta(JOURNAL_LEDGER_HIGH_WATER) or 0) != ledger.high_water:
        journal.set_meta(JOURNAL_LEDGER_HIGH_WATER, str(ledger.high_water))


def _accept_reset(journal: journal_module.Journal, ledger: Ledger, verdict: Verdict,
                  counter: Mapping[str, Sequence[Mapping[str, Any]]], reset: Any) -> None:
    """The operator reset the ledger: what it no longer knows is accepted, recorded and announced."""
    seen = {parsed[0] for orders in counter.values() for o in orders
            if (parsed := parse_tag(o.get("order_remark"))) is not None}
    old_prefix = journal.meta(JOURNAL_LEDGER_PREFIX)
    taken = frozenset(seen | ({old_prefix} if old_prefix else set()))
    if not ledger.has_records() and ledger.tag_prefix in taken:
        ledger.redraw_prefix(taken)  # the new ledger's tags must not be taken for the old orders
    previous = Forgiven.load(ledger.json_meta(FORGIVEN))
    forgiven = Forgiven(journal.epoch, journal.last_seq,
                        previous.prefixes | (taken - {ledger.tag_prefix}), previous.tags)
    ledger.set_meta(FORGIVEN, forgiven.dump())
    ledger.set_meta(RESET_PENDING, None)
    archived = reset.get("archived") if isinstance(reset, dict) else ""
    log.warning(
        "ORDER LEDGER RESET by the operator (--reset-ledger): %s; the gateway starts with an empty ledger "
        "(tag prefix %s).", f"the old ledger is kept as {archived}" if archived else "there was no ledger file",
        ledger.tag_prefix,
    )
    if verdict.lost_ids or verdict.lost_tags or verdict.foreign_prefixes or verdict.problems:
        log.warning(
            "ORDER LEDGER RESET: not known any more: %s named in the journal (%s) and the counter's orders tagged "
            "%s. A repeat of one of those client_order_ids is placed as a NEW order.",
            _count(len(verdict.lost_ids), "client order id"),
            _examples(f"{a}/{c}" for a, c in verdict.lost_ids) or "none",
            ", ".join(f"QZ{p}..." for p in sorted(taken - {ledger.tag_prefix})) or "by no other ledger",
        )


def _discard(ledger: Ledger) -> None:
    """Remove a ledger file this start created and then refused (it holds nothing)."""
    ledger.close()
    for suffix in ("-wal", "-shm", ""):
        Path(f"{ledger.path}{suffix}").unlink(missing_ok=True)


# -- rebuilding (pure plan) ------------------------------------------------------------------

# Order records carry the counter's price type (QMT's EBrokerPriceType), not the request's
# xtconstant (PROTOCOL §3.5, adapter/market.py BROKER_PRICE_TYPES): the request's, guessed back.
# 50 is sent for FIX_PRICE and LATEST_PRICE alike: taken as FIX_PRICE (a LATEST_PRICE order's
# repeat then gets duplicate_client_order_id, never a second order).
_REQUEST_PRICE_TYPE = {
    market.BROKER_PRICE_LIMIT: mapping.FIX_PRICE,
    market.BROKER_PRICE_PEER_PRICE_FIRST: market.MARKET_PEER_PRICE_FIRST,
    market.BROKER_PRICE_L5_FIRST_LIMITPX: market.MARKET_SH_CONVERT_5_LIMIT,
    market.BROKER_PRICE_MINE_PRICE_FIRST: market.MARKET_MINE_PRICE_FIRST,
    market.BROKER_PRICE_INSTBUSI_RESTCANCEL: market.MARKET_SZ_INSTBUSI_RESTCANCEL,
    market.BROKER_PRICE_FULL_REAL_CANCEL: market.MARKET_SZ_FULL_OR_CANCEL,
}
_ARGUMENT_FIELDS = ("account_type", "stock_code", "order_type", "order_volume", "price_type", "price")


@dataclass
class Evidence:
    """What the journal says about one client order id."""

    account_id: str
    client_order_id: str
    first_seq: int = 0
    first_ts: int = 0
    order_id: int | None = None  # the counter's number (> 0), once known
    order: dict[str, Any] | None = None  # the newest order event's data
    trade: dict[str, Any] | None = None
    response: dict[str, Any] | None = None  # an order_response event's data (async orders)
    error: dict[str, Any] | None = None  # an order_error event's data

    def add(self, sighting: Sighting) -> None:
        data = dict(sighting.data)
        if not self.first_seq:
            self.first_seq, self.first_ts = sighting.seq, sighting.ts
        order_id = data.get("order_id")
        if isinstance(order_id, int) and order_id > 0:
            self.order_id = order_id
        if sighting.type == "order":
            self.order = data
        elif sighting.type == "trade":
            self.trade = data
        elif sighting.type == "order_response":
            self.response = self.response or data  # the first answer is the one a repeat returns
        elif sighting.type == "order_error":
            self.error = data


def gather_evidence(events: Iterable[Sighting]) -> dict[tuple[str, str], Evidence]:
    found: dict[tuple[str, str], Evidence] = {}
    for sighting in events:
        key = (sighting.account_id, sighting.client_order_id)
        found.setdefault(key, Evidence(*key)).add(sighting)
    return found


@dataclass
class RebuildPlan:
    prefix: str | None  # None: draw a new prefix, none of ``avoid``
    avoid: frozenset[str]
    records: list[OrderRecord]  # to add (numbered); the existing records stay as they are
    id_floor: int  # record numbers up to this are never given to a new order
    forgiven_tags: frozenset[str]  # counter tags whose client order ids cannot be recovered
    orphans: list[str]  # this ledger's tags at the counter whose client order ids are unknown
    foreign: list[str]  # other ledgers' tags at the counter, mapped to no record
    conflicts: list[str]  # evidence that disagrees with a kept record

    def counts(self) -> Counter[str]:
        return Counter(r.state for r in self.records)


def plan_rebuild(
    existing: Sequence[OrderRecord],
    existing_prefix: str | None,
    existing_high_water: int,
    evidence: Mapping[tuple[str, str], Evidence],
    counter: Mapping[str, Sequence[Mapping[str, Any]]],
    journal_prefix: str | None = None,
    journal_high_water: int = 0,
) -> RebuildPlan:
    """The records a rebuilt ledger adds to ``existing`` (the records that survived), with their
    numbers, states, stored responses and order fingerprints, as far as the journal's events and
    the counter's orders of the day tell them."""
    tagged: dict[tuple[str, int], tuple[Mapping[str, Any], str, int]] = {}  # (account, order id) -> (order, prefix, n)
    counter_by_id: dict[tuple[str, int], Mapping[str, Any]] = {}
    seen_prefixes: set[str] = set()
    for account, orders in counter.items():
        for order in orders:
            order_id = order.get("order_id")
            if isinstance(order_id, int):
                counter_by_id[(account, order_id)] = order
            parsed = parse_tag(order.get("order_remark"))
            if parsed is not None:
                seen_prefixes.add(parsed[0])
                if isinstance(order_id, int):
                    tagged[(account, order_id)] = (order, *parsed)

    # The prefix: the surviving records', else the lost ledger's (journal note, counter tags).
    if existing:
        prefix: str | None = existing_prefix
    elif journal_prefix:
        prefix = journal_prefix
    else:
        votes = Counter(tagged[(e.account_id, e.order_id)][1] for e in evidence.values()
                        if e.order_id is not None and (e.account_id, e.order_id) in tagged)
        prefix = votes.most_common(1)[0][0] if votes else None
        if prefix is None and existing_prefix and existing_prefix not in seen_prefixes:
            prefix = existing_prefix
    avoid = frozenset(seen_prefixes | ({journal_prefix} if journal_prefix else set()))

    kept = {(r.account_id, r.client_order_id): r for r in existing}
    used = {r.id for r in existing}
    kept_order_ids = {(r.account_id, r.order_id) for r in existing if r.order_id}
    conflicts: list[str] = []
    planned: list[tuple[OrderRecord, int | None]] = []  # (record, its number from the counter's tag)
    for key, found in sorted(evidence.items(), key=lambda item: item[1].first_seq):
        if key in kept:
            record = kept[key]
            if found.order_id and record.order_id and found.order_id != record.order_id:
                conflicts.append(f"{key[0]}/{key[1]}: the ledger says order {record.order_id}, the journal "
                                 f"{found.order_id}; the ledger's record is kept")
            continue
        at_counter = counter_by_id.get((found.account_id, found.order_id)) if found.order_id else None
        number = None
        tag_info = tagged.get((found.account_id, found.order_id)) if found.order_id else None
        if tag_info is not None and tag_info[1] == prefix and tag_info[2] not in used:
            number = tag_info[2]
            used.add(number)
        planned.append((_rebuilt_record(found, at_counter), number))

    # Numbers of this ledger's tags that map to no record: their ids are lost, their numbers used.
    mapped_ids = kept_order_ids | {(r.account_id, r.order_id) for r, _ in planned if r.order_id}
    orphans: list[str] = []
    foreign: list[str] = []
    forgiven: set[str] = set()
    top_tag = 0
    for (account, order_id), (order, tag_prefix, number) in sorted(tagged.items()):
        tag = str(order.get("order_remark"))
        if tag_prefix == prefix:
            top_tag = max(top_tag, number)
            if number not in used:
                orphans.append(f"{tag} ({_describe_order(account, order)})")
                forgiven.add(tag)
        elif (account, order_id) not in mapped_ids:
            foreign.append(f"{tag} ({_describe_order(account, order)})")
            forgiven.add(tag)
    floor = max([existing_high_water, top_tag, *used,
                 journal_high_water if journal_prefix and journal_prefix == prefix else 0])
    records: list[OrderRecord] = []
    for record, number in planned:
        if number is None:
            floor += 1
            number = floor
        record.id = number
        records.append(record)
    records.sort(key=lambda r: r.id)
    return RebuildPlan(prefix, avoid, records, max([floor, *used]), frozenset(forgiven), orphans, foreign,
                       conflicts)


def _rebuilt_record(found: Evidence, at_counter: Mapping[str, Any] | None) -> OrderRecord:
    order = dict(at_counter or {}) | {k: v for k, v in (found.order or {}).items() if v is not None}
    if at_counter is not None:  # the counter's state of the day is the newest
        order["order_status"] = at_counter.get("order_status")
        order["status_msg"] = at_counter.get("status_msg") or order.get("status_msg")
    source = order or found.trade or found.response or found.error or {}
    strategy = str(source.get("strategy_name") or "")
    remark = next((str(d["order_remark"]) for d in (found.order, found.trade, found.response, found.error)
                   if d and isinstance(d.get("order_remark"), str)), "")
    account_type = source.get("account_type")
    if found.order_id:
        refused = order.get("order_status") == mapping.ORDER_JUNK
        state = REJECTED if refused else ACKNOWLEDGED
        error_msg = str(order.get("status_msg") or "") if refused else ""
        if not error_msg and refused and found.error:
            error_msg = str(found.error.get("error_msg") or "")
        # The first answer to a numbered order said no error, also when the counter refused it later.
        response = dict(found.response) if found.response else {
            "account_type": account_type, "account_id": found.account_id, "order_id": found.order_id,
            "strategy_name": strategy, "order_remark": remark, "error_msg": "", "seq": None,
            "client_order_id": found.client_order_id,
        }
    else:  # the counter said no before numbering it (order_id -1)
        state = REJECTED
        error_msg = str((found.response or {}).get("error_msg") or (found.error or {}).get("error_msg")
                        or "refused by the counter")
        response = dict(found.response) if found.response else {
            "account_type": account_type, "account_id": found.account_id, "order_id": -1,
            "strategy_name": strategy, "order_remark": remark, "error_msg": error_msg, "seq": None,
            "client_order_id": found.client_order_id,
        }
    return OrderRecord(
        0, found.account_id, found.client_order_id, _fingerprint(order, strategy, remark), strategy, remark, state,
        order_id=found.order_id, error_msg=error_msg, response=response, created_ns=found.first_ts,
    )


def _fingerprint(order: Mapping[str, Any], strategy: str, remark: str) -> str:
    """The order's arguments as the gateway validated them, as far as its order record shows them."""
    if any(order.get(name) is None for name in _ARGUMENT_FIELDS):
        return UNKNOWN_ARGUMENTS
    account_type = order["account_type"]
    if isinstance(account_type, int):
        account_type = mapping.ACCOUNT_TYPE_NAMES.get(account_type, account_type)
    price_type = order["price_type"]
    if price_type == 88:  # the best-five-then-cancel of either exchange
        price_type = 42 if str(order["stock_code"]).upper().endswith(".SH") else 47
    price_type = _REQUEST_PRICE_TYPE.get(price_type, price_type)
    args = {"account_type": account_type, "stock_code": str(order["stock_code"]).upper(),
            "order_type": order["order_type"], "order_volume": int(order["order_volume"]),
            "price_type": price_type, "price": float(order["price"]), "strategy_name": strategy,
            "order_remark": remark}
    return ledger_module.fingerprint(args)


def _describe_order(account: str, order: Mapping[str, Any]) -> str:
    side = mapping.ORDER_TYPE_NAMES.get(order.get("order_type"), order.get("order_type"))  # type: ignore[arg-type]
    return (f"account {account}, order {order.get('order_id')}: {order.get('stock_code')} {side} "
            f"{order.get('order_volume')} @ {order.get('price')}, status {order.get('order_status')}")


# -- rebuilding (reading and writing) --------------------------------------------------------


@dataclass
class RebuildReport:
    lines: list[str]
    warnings: list[str]
    plan: RebuildPlan
    written: bool


def rebuild(
    data_dir: str | Path,
    counter_view: Callable[[], Mapping[str, Mapping[str, Any]]] | None,
    *,
    dry_run: bool = False,
) -> RebuildReport:
    """``qmt-adapter ledger rebuild``: the ledger's lost records, recovered from the journal's
    events and the counter's orders of the day (``counter_view`` returns the broker's start-up
    queries; None: the journal alone). Run with the gateway stopped. The old ledger file is kept
    (``orders.sqlite3.before-rebuild-<time>``); records that survived in it are kept as they are."""
    directory = Path(data_dir)
    ledger_module.ensure_stopped(directory)
    lines: list[str] = []
    warnings: list[str] = []
    journal_path = directory / journal_module.FILE_NAME
    journal = journal_module.Journal(directory) if journal_path.exists() else None
    try:
        evidence: dict[tuple[str, str], Evidence] = {}
        journal_prefix, journal_high_water = None, 0
        if journal is not None:
            evidence = gather_evidence(sightings(journal))
            journal_prefix = journal.meta(JOURNAL_LEDGER_PREFIX)
            journal_high_water = int(journal.meta(JOURNAL_LEDGER_HIGH_WATER) or 0)
            span = f"seq {journal.first_seq}..{journal.last_seq}" if journal.count else "no events"
            lines.append(f"journal {journal.path}: epoch {journal.epoch}, {span}; "
                         f"{_count(len(evidence), 'client order id')} named in its order events")
        else:
            warnings.append(f"no journal at {journal_path}: only the counter's orders of the day can be read, and "
                            "they do not name client order ids")
        counter: dict[str, list[Mapping[str, Any]]] = {}
        if counter_view is not None:
            counter = counter_orders(counter_view())
            tagged = sum(1 for orders in counter.values() for o in orders if parse_tag(o.get("order_remark")))
            lines.append(f"counter: accounts {', '.join(sorted(counter)) or 'none'}; "
                         f"{sum(len(o) for o in counter.values())} orders of the day, {tagged} with a ledger tag")
        else:
            warnings.append("the counter was not consulted (--journal-only): tags of today's orders are not "
                            "checked, and recovered records get new numbers (their orders map back by order id)")

        ledger_path = directory / ledger_module.FILE_NAME
        existing: Ledger | None = None
        if ledger_path.exists():
            try:
                existing = Ledger(directory)
                lines.append(f"ledger {ledger_path}: tag prefix {existing.tag_prefix}, "
                             f"{_count(existing.size(), 'record')} kept as they are")
            except LedgerUnreadable as exc:
                warnings.append(f"the ledger {ledger_path} cannot be read ({exc.__cause__}); it is set aside and "
                                "rebuilt from nothing")
        else:
            lines.append(f"ledger {ledger_path}: missing")
        try:
            plan = plan_rebuild(
                list(existing.iter_records()) if existing else [], existing.tag_prefix if existing else None,
                existing.high_water if existing else 0, evidence, counter, journal_prefix, journal_high_water,
            )
            counts = plan.counts()
            lines.append(
                f"recovered {_count(len(plan.records), 'record')} ({counts[ACKNOWLEDGED]} acknowledged, "
                f"{counts[REJECTED]} rejected); new orders are numbered from {plan.id_floor + 1}"
            )
            unknown_args = [r for r in plan.records if r.fingerprint == UNKNOWN_ARGUMENTS]
            if unknown_args:
                warnings.append(
                    f"{_count(len(unknown_args), 'recovered record')} without the order's arguments (the journal "
                    "has only its response or error): a repeat of "
                    f"{_examples(r.client_order_id for r in unknown_args)} gets duplicate_client_order_id, "
                    "never a second order"
                )
            if plan.orphans:
                warnings.append(
                    f"{_count(len(plan.orphans), 'order')} at the counter carry this ledger's tags, but no journal "
                    f"event names their client order ids: {_examples(plan.orphans)}. A repeat of their ids would "
                    "be placed as a NEW order: tell their strategies"
                )
            if plan.foreign:
                warnings.append(f"{_count(len(plan.foreign), 'order')} at the counter carry another ledger's tags "
                                f"and map to no recovered record: {_examples(plan.foreign)}")
            warnings.extend(plan.conflicts)
            if dry_run:
                lines.append("dry run: nothing written")
                return RebuildReport(lines, warnings, plan, False)
            written = existing is None or _changes(existing, plan)
            if written:
                lines.extend(_write(directory, existing, plan))
                existing = None  # closed by _write
            else:
                lines.append("nothing to recover: the ledger already holds what the journal and the counter show")
        finally:
            if existing is not None:
                existing.close()
        if journal is not None:  # the rebuilt ledger is the one this journal is written with from now on
            ledger = Ledger(directory)
            try:
                noted = (journal.meta(JOURNAL_LEDGER_PREFIX), int(journal.meta(JOURNAL_LEDGER_HIGH_WATER) or 0))
                if noted[0] and noted[0] != ledger.tag_prefix:
                    lines.append(f"the journal noted ledger {noted[0]} with records up to number {noted[1]}; "
                                 f"it now notes this one ({ledger.tag_prefix}, up to {ledger.high_water})")
                note_identity(journal, ledger)
            finally:
                ledger.close()
        return RebuildReport(lines, warnings, plan, written)
    finally:
        if journal is not None:
            journal.close()


def _changes(existing: Ledger, plan: RebuildPlan) -> bool:
    """Whether applying the plan would change the readable ledger."""
    forgiven = Forgiven.load(existing.json_meta(FORGIVEN))
    prefix_change = not existing.has_records() and plan.prefix is not None and plan.prefix != existing.tag_prefix
    return bool(plan.records or plan.forgiven_tags - forgiven.tags or plan.id_floor > existing.high_water
                or prefix_change or existing.json_meta(RESET_PENDING) is not None)


def _write(directory: Path, existing: Ledger | None, plan: RebuildPlan) -> list[str]:
    """Apply the plan: into the readable ledger after a copy of it is kept, else into a new file."""
    lines = []
    path = directory / ledger_module.FILE_NAME
    if existing is not None:
        backup = ledger_module.archive_name(directory, "before-rebuild")
        existing.backup(backup)
        lines.append(f"the ledger as it was is kept as {backup}")
        ledger = existing
    else:
        archived = ledger_module.archive(directory, "before-rebuild")
        if archived is not None:
            lines.append(f"the unreadable ledger is kept as {archived}")
        tmp = directory / ".ledger-rebuild"
        shutil.rmtree(tmp, ignore_errors=True)
        ledger = Ledger(tmp)
    try:
        if not ledger.has_records():
            if plan.prefix is not None and plan.prefix != ledger.tag_prefix:
                ledger.set_prefix(plan.prefix)
            elif plan.prefix is None and ledger.tag_prefix in plan.avoid:
                ledger.redraw_prefix(plan.avoid)
        for record in plan.records:
            ledger.restore(record)
        ledger.set_id_floor(plan.id_floor)
        previous = Forgiven.load(ledger.json_meta(FORGIVEN))
        if plan.forgiven_tags - previous.tags:
            ledger.set_meta(FORGIVEN, Forgiven(previous.journal_epoch, previous.journal_seq, previous.prefixes,
                                               previous.tags | plan.forgiven_tags).dump())
        ledger.set_meta(RESET_PENDING, None)
        prefix = ledger.tag_prefix
    finally:
        ledger.close()
    if existing is None:
        for suffix in ("", "-wal", "-shm"):
            source = tmp / f"{ledger_module.FILE_NAME}{suffix}"
            if source.exists():
                source.replace(f"{path}{suffix}")
        shutil.rmtree(tmp, ignore_errors=True)
    lines.append(f"wrote {path}: tag prefix {prefix}")
    return lines


# -- pruning ---------------------------------------------------------------------------------


def prune(data_dir: str | Path, before: date, *, today: date | None = None) -> tuple[int, int]:
    """``qmt-adapter ledger prune``: delete the settled records created before ``before`` (a
    trading day, China time); the gateway must be stopped. Returns (deleted, kept because the
    journal still names them in an event of that day or later).

    Never today's records (the counter's orders of the day carry their tags) nor a record in
    flight. The record numbers stay used (the id floor), and the journal's events about the
    deleted records are noted as accepted history, so the start-up check does not take the
    pruned records for lost ones (the same note a reset writes, ``Forgiven``).
    """
    directory = Path(data_dir)
    if before > (today or ledger_module.trading_day()):
        raise ValueError(f"{before} is after today: today's records are still the counter's orders of the day")
    ledger_module.ensure_stopped(directory)
    if not (directory / ledger_module.FILE_NAME).exists():
        return 0, 0
    cutoff = ledger_module.day_start_ns(before)
    journal = journal_module.Journal(directory) if (directory / journal_module.FILE_NAME).exists() else None
    ledger = Ledger(directory)
    try:
        newest: dict[tuple[str, str], tuple[int, int]] = {}
        if journal is not None:
            newest = {key: (seq, ts) for seq, ts, key in _named(journal)}
        ledger.set_id_floor(ledger.high_water)  # deleted numbers are never given again
        deleted = kept = forgiven_seq = 0
        after = 0
        while True:  # in pages: one transaction each, never the whole history in memory
            rows = ledger.settled_before(cutoff, after, 5000)
            if not rows:
                break
            after = rows[-1][0]
            doomed: list[int] = []
            for number, account, cid in rows:
                seq, ts = newest.get((account, cid), (0, 0))
                if ts >= cutoff:
                    kept += 1
                    continue
                forgiven_seq = max(forgiven_seq, seq)
                doomed.append(number)
            ledger.delete(doomed)
            deleted += len(doomed)
        if journal is not None and forgiven_seq:
            previous = Forgiven.load(ledger.json_meta(FORGIVEN))
            seq = max(forgiven_seq, previous.journal_seq if previous.journal_epoch == journal.epoch else 0)
            ledger.set_meta(FORGIVEN, Forgiven(journal.epoch, seq, previous.prefixes, previous.tags).dump())
        return deleted, kept
    finally:
        ledger.close()
        if journal is not None:
            journal.close()
