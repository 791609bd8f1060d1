"""The sim's order status table: every legal change is allowed, every other pair raises."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from adapter.sim import status
from xtquant import xtconstant as C

STATUSES = [
    C.ORDER_UNREPORTED,
    C.ORDER_WAIT_REPORTING,
    C.ORDER_REPORTED,
    C.ORDER_REPORTED_CANCEL,
    C.ORDER_PARTSUCC_CANCEL,
    C.ORDER_PART_CANCEL,
    C.ORDER_CANCELED,
    C.ORDER_PART_SUCC,
    C.ORDER_SUCCEEDED,
    C.ORDER_JUNK,
]

# Written out independently of status.TRANSITIONS: what the counter does, change by change.
LEGAL = {
    (C.ORDER_UNREPORTED, C.ORDER_REPORTED),  # accepted
    (C.ORDER_UNREPORTED, C.ORDER_JUNK),  # refused
    (C.ORDER_REPORTED, C.ORDER_PART_SUCC),  # first partial fill
    (C.ORDER_REPORTED, C.ORDER_SUCCEEDED),  # filled at once
    (C.ORDER_REPORTED, C.ORDER_REPORTED_CANCEL),  # cancel requested, nothing filled
    (C.ORDER_REPORTED, C.ORDER_CANCELED),  # IOC rest / next_day expiry, nothing filled
    (C.ORDER_PART_SUCC, C.ORDER_PART_SUCC),  # a further partial fill
    (C.ORDER_PART_SUCC, C.ORDER_SUCCEEDED),  # the last fill
    (C.ORDER_PART_SUCC, C.ORDER_PARTSUCC_CANCEL),  # cancel requested after fills
    (C.ORDER_PART_SUCC, C.ORDER_PART_CANCEL),  # IOC rest / next_day expiry after fills
    (C.ORDER_REPORTED_CANCEL, C.ORDER_CANCELED),
    (C.ORDER_PARTSUCC_CANCEL, C.ORDER_PART_CANCEL),
}
ILLEGAL = sorted(set(itertools.product(STATUSES, STATUSES)) - LEGAL)


@dataclass
class _Order:
    order_id: int
    status: int


def test_the_table_covers_every_order_status_of_xtquant_but_unknown() -> None:
    assert set(status.TRANSITIONS) == set(STATUSES)
    assert {(old, new) for old, targets in status.TRANSITIONS.items() for new in targets} == LEGAL
    assert all(status.name(s) == n for s, n in ((C.ORDER_JUNK, "ORDER_JUNK"), (C.ORDER_PART_SUCC, "ORDER_PART_SUCC")))


@pytest.mark.parametrize(("old", "new"), sorted(LEGAL), ids=lambda s: status.name(s))
def test_a_legal_change_is_made(old: int, new: int) -> None:
    order = _Order(7, old)
    status.advance(order, new)
    assert order.status == new
    assert status.is_legal(old, new)


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=lambda s: status.name(s))
def test_an_illegal_change_raises_and_leaves_the_status(old: int, new: int) -> None:
    order = _Order(7, old)
    with pytest.raises(status.IllegalStatusTransition) as caught:
        status.advance(order, new)
    assert order.status == old
    assert (caught.value.order_id, caught.value.old, caught.value.new) == (7, old, new)
    assert status.name(old) in str(caught.value) and status.name(new) in str(caught.value)
    assert not status.is_legal(old, new)


def test_an_unknown_status_is_illegal_either_way() -> None:
    with pytest.raises(status.IllegalStatusTransition, match="ORDER_REPORTED"):
        status.advance(_Order(1, C.ORDER_UNKNOWN), C.ORDER_REPORTED)
    with pytest.raises(status.IllegalStatusTransition, match="255"):
        status.advance(_Order(1, C.ORDER_REPORTED), C.ORDER_UNKNOWN)


def test_open_statuses_are_those_that_can_still_fill_or_be_cancelled() -> None:
    assert status.OPEN_STATUSES == {C.ORDER_UNREPORTED, C.ORDER_REPORTED, C.ORDER_PART_SUCC}
    final = {s for s in STATUSES if not status.TRANSITIONS[s]} - {C.ORDER_WAIT_REPORTING}
    assert final == {C.ORDER_PART_CANCEL, C.ORDER_CANCELED, C.ORDER_SUCCEEDED, C.ORDER_JUNK}
