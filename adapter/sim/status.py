"""The simulated counter's order status progression: one table, one function that changes a status.

Statuses are xtquant's ``xtconstant.ORDER_*`` (the manual's 委托状态 table, ``xtquant/doc/xttrader.md``
in the installed package: 48 未报, 49 待报, 50 已报, 51 已报待撤, 52 部成待撤, 53 部撤, 54 已撤, 55 部成,
56 已成, 57 废单). ``TRANSITIONS`` lists every change the sim makes:

* an order is born ``ORDER_UNREPORTED``; in the same round it is refused (``ORDER_JUNK``) or
  reported (``ORDER_REPORTED``);
* a fill moves a reported or part-filled order to ``ORDER_PART_SUCC`` (again, for each further
  partial fill) or ``ORDER_SUCCEEDED``;
* a cancel request is pushed as pending (``ORDER_REPORTED_CANCEL`` unfilled,
  ``ORDER_PARTSUCC_CANCEL`` part-filled) and then made final (``ORDER_CANCELED`` /
  ``ORDER_PART_CANCEL``);
* an immediate-or-cancel rest and the open orders at ``next_day`` go straight to
  ``ORDER_CANCELED`` / ``ORDER_PART_CANCEL``.

The sim never uses ``ORDER_WAIT_REPORTING`` (its orders reach the exchange at once) nor
``ORDER_UNKNOWN``.
"""

from __future__ import annotations

from typing import Protocol

from adapter.xtimport import import_xtquant

import_xtquant()  # before any xtquant submodule: skips the package's network update check

from xtquant import xtconstant  # noqa: E402

UNREPORTED = xtconstant.ORDER_UNREPORTED
WAIT_REPORTING = xtconstant.ORDER_WAIT_REPORTING
REPORTED = xtconstant.ORDER_REPORTED
REPORTED_CANCEL = xtconstant.ORDER_REPORTED_CANCEL
PARTSUCC_CANCEL = xtconstant.ORDER_PARTSUCC_CANCEL
PART_CANCEL = xtconstant.ORDER_PART_CANCEL
CANCELED = xtconstant.ORDER_CANCELED
PART_SUCC = xtconstant.ORDER_PART_SUCC
SUCCEEDED = xtconstant.ORDER_SUCCEEDED
JUNK = xtconstant.ORDER_JUNK

NAMES: dict[int, str] = {
    UNREPORTED: "ORDER_UNREPORTED",
    WAIT_REPORTING: "ORDER_WAIT_REPORTING",
    REPORTED: "ORDER_REPORTED",
    REPORTED_CANCEL: "ORDER_REPORTED_CANCEL",
    PARTSUCC_CANCEL: "ORDER_PARTSUCC_CANCEL",
    PART_CANCEL: "ORDER_PART_CANCEL",
    CANCELED: "ORDER_CANCELED",
    PART_SUCC: "ORDER_PART_SUCC",
    SUCCEEDED: "ORDER_SUCCEEDED",
    JUNK: "ORDER_JUNK",
}

# status -> the statuses the sim may move an order to from there.
TRANSITIONS: dict[int, frozenset[int]] = {
    UNREPORTED: frozenset({REPORTED, JUNK}),
    WAIT_REPORTING: frozenset(),
    REPORTED: frozenset({PART_SUCC, SUCCEEDED, REPORTED_CANCEL, CANCELED}),
    PART_SUCC: frozenset({PART_SUCC, SUCCEEDED, PARTSUCC_CANCEL, PART_CANCEL}),
    REPORTED_CANCEL: frozenset({CANCELED}),
    PARTSUCC_CANCEL: frozenset({PART_CANCEL}),
    PART_CANCEL: frozenset(),
    CANCELED: frozenset(),
    SUCCEEDED: frozenset(),
    JUNK: frozenset(),
}
assert set(TRANSITIONS) == set(NAMES)

# Orders that can still fill or be cancelled. 48 is open only within the round that creates it.
OPEN_STATUSES = frozenset({UNREPORTED, REPORTED, PART_SUCC})


class IllegalStatusTransition(ValueError):
    """A status change the table does not allow (a bug in the sim, never a client's mistake)."""

    def __init__(self, order_id: int, old: int, new: int) -> None:
        super().__init__(f"order {order_id}: {name(old)} -> {name(new)} is not a legal status change")
        self.order_id = order_id
        self.old = old
        self.new = new


class _HasStatus(Protocol):
    order_id: int
    status: int


def name(status: int) -> str:
    return NAMES.get(status, str(status))


def is_legal(old: int, new: int) -> bool:
    return new in TRANSITIONS.get(old, frozenset())


def advance(order: _HasStatus, new: int) -> None:
    """Move ``order`` to status ``new``; the only place a status changes."""
    if not is_legal(order.status, new):
        raise IllegalStatusTransition(order.order_id, order.status, new)
    order.status = new
