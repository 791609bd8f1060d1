"""``qmt-adapter sim ...``: drive the simulated counter behind a gateway (the ``sim`` op, PROTOCOL §17)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..display import fmt, table
from .common import client_parser

# action -> (the CLI's value names, the wire arguments they fill)
ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "status": ((), ()),
    "reset": ((), ()),
    "next-day": ((), ()),
    "price": (("CODE", "PRICE"), ("stock_code", "price")),
    "move": (("CODE", "PCT"), ("stock_code", "percent")),
    "deposit": (("ACCOUNT", "AMOUNT"), ("account_id", "amount")),
    "position": (("ACCOUNT", "CODE", "VOLUME"), ("account_id", "stock_code", "volume")),
}
DESCRIPTION = """\
Drive the simulated counter behind a gateway (backend sim; under CURVE the key needs the admin
right). Every change reaches strategies as a real counter's would: fills, expired orders,
positions and asset are pushed as events, and quotes show the new prices.

  status                          the sim's clock and trading day, market hours, accounts, prices in use
  reset                           back to the configured start: open orders expire, cash and positions
                                  as configured, no orders or trades, the table's prices
  price CODE PRICE                set the last price (on tick, inside the daily band); resting orders
                                  it reaches fill
  move CODE PCT                   the same, PCT percent from the last price (rounded to the tick)
  next-day                        roll the trading day: open orders expire, today's buys become
                                  sellable, prev_close := last (the band moves)
  deposit ACCOUNT AMOUNT          cash in (negative: out, up to the available cash)
  position ACCOUNT CODE VOLUME    hold VOLUME shares since yesterday (sellable now), cost at prev_close"""
EXAMPLES = """\
examples:
  qmt-adapter sim status
  qmt-adapter sim position 1000000365 600000.SH 1000   # then: qmt-adapter sell 1000000365 600000.SH 500 10.60
  qmt-adapter sim price 600000.SH 10.50                # a resting buy at 10.50 fills
  qmt-adapter sim move 600000.SH -2.5
  qmt-adapter sim next-day
  qmt-adapter sim deposit 1000000365 50000
  qmt-adapter sim reset"""


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None


def _wire(action: str, values: list[str]) -> dict[str, Any]:
    """The op's arguments from the command line; ValueError says what is wrong."""
    names, fields = ACTIONS[action]
    if len(values) != len(names):
        usage = " ".join(("sim", action, *names))
        raise ValueError(f"usage: qmt-adapter {usage}")
    args: dict[str, Any] = {}
    for name, field, text in zip(names, fields, values):
        if field in ("price", "percent", "amount"):
            args[field] = _number(text, name)
        elif field == "volume":
            if not text.isdigit():
                raise ValueError(f"VOLUME must be a whole number of shares, got {text!r}")
            args[field] = int(text)
        else:
            args[field] = text
    return args


def _cmd_sim(client: Any, args: argparse.Namespace) -> int:
    try:
        wire = _wire(args.action, args.values)
    except ValueError as exc:
        print(f"qmt-adapter: {exc}", file=sys.stderr)
        return 2
    result = client.sim(args.action.replace("-", "_"), **wire)
    _show(args.action, result)
    return 0


def _accounts(rows: Any) -> None:
    table(("account", "cash", "frozen", "market_value", "total_asset", "positions", "open_orders"),
          [(a["account_id"], a["cash"], a["frozen_cash"], a["market_value"], a["total_asset"], a["positions"],
            a["open_orders"]) for a in rows])


def _clock(result: Any) -> str:
    state = "trading" if result.open_now else "closed"
    return (f"sim clock {result.time} China time, trading day {result.trading_day}, "
            f"market_hours {result.market_hours} ({state} now)")


def _show(action: str, result: Any) -> None:
    if action == "status":
        print(_clock(result) + f", price_model {result.price_model}, books {result.books}")
        _accounts(result.accounts)
        if result.codes:
            print()
            table(("code", "name", "last", "prev_close", "down", "up"),
                  [(q["stock_code"], q["name"], q["last"], q["prev_close"], q["down"], q["up"]) for q in result.codes])
        more = result.codes_in_use - len(result.codes)
        print(f"\n{result.codes_in_use} code(s) in use (held, ordered or quoted)" + (f", {more} not listed" if more > 0 else ""))
    elif action in ("reset", "next-day"):
        what = "books reset to the configured start" if action == "reset" else "rolled to the next trading day"
        print(f"{what}: {result.expired_orders} open order(s) expired; " + _clock(result))
        _accounts(result.accounts)
    elif action in ("price", "move"):
        note = "" if result.matched else " (not matched now: outside continuous trading)"
        print(f"{result.stock_code} {result.name} last {fmt(result.last)} (prev_close {fmt(result.prev_close)}, "
              f"band {fmt(result.down)}-{fmt(result.up)}); {result.trades} fill(s){note}")
    elif action == "deposit":
        print(f"account {result.account_id}: {fmt(result.amount)} CNY {'in' if result.amount > 0 else 'out'}; "
              f"cash {fmt(result.cash)}, total_asset {fmt(result.total_asset)}")
    else:
        print(f"account {result.account_id} holds {result.volume} {result.stock_code} "
              f"({result.can_use_volume} sellable, {result.frozen_volume} frozen), avg_price {fmt(result.avg_price)}")


def register(commands: Any) -> None:
    sub = client_parser(commands, "sim", "drive the simulated counter (admin): prices, days, cash, positions",
                        _cmd_sim)
    sub.description = DESCRIPTION
    sub.epilog = EXAMPLES
    sub.formatter_class = argparse.RawDescriptionHelpFormatter
    sub.add_argument("action", choices=list(ACTIONS), help="what to do (see above)")
    sub.add_argument("values", nargs="*", metavar="VALUE", help="the action's values (see above)")
