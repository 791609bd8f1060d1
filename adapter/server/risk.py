"""Pre-trade risk checks and the kill switch state; pure (no sockets, no xtquant).

Every check has a stable rule name. The gateway's I/O thread calls ``check_order`` and
``check_cancel`` before a command reaches the counter, with the account's books as the
gateway sees them; a denial carries the rule, the limit and the value that tripped it.

Limits come in levels: ``[risk]`` (every account), ``[risk.accounts.ID]`` (replaces single
settings for one account) and ``[risk.keys.NAME]`` (limits for one client key, checked in
addition: a key's limits can only tighten).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from .. import market as rules
from ..market import CHINA, Instrument

NORMAL, HALTED, REDUCE_ONLY = "normal", "halted", "reduce_only"
TRADING_STATES = (NORMAL, HALTED, REDUCE_ONLY)

# Stable rule names (documented in the README and PROTOCOL.md).
RULES = (
    "trading.halted",
    "trading.reduce_only",
    "code.format",
    "code.unknown",
    "code.blocked",
    "code.not_allowed",
    "instrument.lot",
    "instrument.tick",
    "instrument.price_limit",
    "hours.closed",
    "order.max_volume",
    "order.max_notional",
    "position.max_notional",
    "orders.max_open",
    "rate.per_second",
    "rate.per_day",
    "order.duplicate",
)

BUY, SELL = 23, 24
LIMIT_PRICE = 11
_CHINA_OFFSET = 8 * 3600


class RiskConfigError(ValueError):
    """A risk setting that is unknown or of the wrong type."""


class ReferenceUnavailable(Exception):
    """The reference data source cannot answer now: checks that need it are skipped."""


@dataclass(frozen=True)
class Limits:
    """One level of limits; 0 (or an empty list) switches a numeric (or list) check off."""

    max_order_volume: int = 1_000_000  # shares per order (the exchanges' own cap for limit orders)
    max_order_notional: float = 5_000_000.0  # CNY per order: volume x price
    max_position_notional: float = 20_000_000.0  # CNY per code: held value + open buys + this buy
    max_open_orders: int = 500  # working orders per account
    orders_per_second: float = 50.0  # orders + cancels per account (token bucket, burst of one second)
    orders_per_day: int = 10_000  # orders + cancels per account per day (China time)
    # Opt-in (0: off): slicing and grid strategies, and xtquant's own manual, repeat orders on purpose.
    duplicate_window: float = 0.0  # seconds: same account/code/side/volume/price again is denied
    allow_codes: tuple[str, ...] = ()  # if set, only these codes
    block_codes: tuple[str, ...] = ()  # never these codes
    check_instrument: bool = True  # code format, known code, lot, tick, daily price limits
    trading_hours: bool = False  # deny orders outside the sessions (China time)
    sessions: tuple[str, ...] = ("09:15-11:30", "13:00-15:00")  # call auction + continuous, both boards

    def windows(self) -> list[tuple[dt.time, dt.time]]:
        out = []
        for text in self.sessions:
            start, _, end = text.partition("-")
            out.append((dt.time.fromisoformat(start.strip()), dt.time.fromisoformat(end.strip())))
        return out


_LIMIT_FIELDS = {f.name: f for f in fields(Limits)}


def _parse_level(data: dict[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in _LIMIT_FIELDS:
            raise RiskConfigError(f"unknown risk setting {where}{name}")
        default = _LIMIT_FIELDS[name].default
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RiskConfigError(f"{where}{name} must be a list of strings")
            value = tuple(v.upper() if name.endswith("_codes") else v for v in value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise RiskConfigError(f"{where}{name} must be true or false")
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise RiskConfigError(f"{where}{name} must be a number >= 0")
            value = type(default)(value)
        values[name] = value
    try:
        replace(Limits(), **values).windows()
    except ValueError:
        raise RiskConfigError(f"{where}sessions must be like \"09:30-11:30\"") from None
    return values


@dataclass(frozen=True)
class RiskConfig:
    base: Limits = field(default_factory=Limits)
    accounts: dict[str, Limits] = field(default_factory=dict)  # full limits per account
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # only the settings a key sets
    key_limits: dict[str, Limits] = field(init=False)  # the same as Limits, every other check off

    def __post_init__(self) -> None:
        off = {name: (() if isinstance(f.default, tuple) else False if isinstance(f.default, bool) else 0)
               for name, f in _LIMIT_FIELDS.items() if name != "sessions"}
        object.__setattr__(self, "key_limits",
                           {name: replace(Limits(), **{**off, **level}) for name, level in self.keys.items()})

    def for_account(self, account_id: str) -> Limits:
        return self.accounts.get(account_id, self.base)


def parse_risk(data: dict[str, Any] | None) -> RiskConfig:
    """The ``[risk]`` table of the configuration."""
    data = dict(data or {})
    accounts = data.pop("accounts", {}) or {}
    keys = data.pop("keys", {}) or {}
    if not isinstance(accounts, dict) or not isinstance(keys, dict):
        raise RiskConfigError("risk.accounts and risk.keys must be tables")
    base = replace(Limits(), **_parse_level(data, "risk."))
    per_account = {}
    for account_id, level in accounts.items():
        if not isinstance(level, dict):
            raise RiskConfigError(f"risk.accounts.{account_id} must be a table")
        per_account[str(account_id)] = replace(base, **_parse_level(level, f"risk.accounts.{account_id}."))
    per_key = {}
    for name, level in keys.items():
        if not isinstance(level, dict):
            raise RiskConfigError(f"risk.keys.{name} must be a table")
        per_key[str(name)] = _parse_level(level, f"risk.keys.{name}.")
    return RiskConfig(base, per_account, per_key)


@dataclass
class Denial(Exception):
    rule: str
    message: str
    limit: Any = None
    value: Any = None

    def details(self) -> dict[str, Any]:
        return {"rule": self.rule, "limit": self.limit, "value": self.value}


@dataclass
class _Usage:
    """Rate state of one account or key."""

    tokens: float = -1.0  # -1: full on first use
    stamp: float = 0.0
    day: str = ""
    today: int = 0
    recent: deque[tuple[float, tuple[Any, ...]]] = field(default_factory=deque)


class RiskEngine:
    """Limits, usage and denial counters; used by the gateway's I/O thread only."""

    def __init__(
        self,
        config: RiskConfig,
        reference: Callable[[str], Instrument | None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._reference = reference
        self._clock = clock
        self._wall = wall
        self._usage: dict[str, _Usage] = {}
        self.denials: dict[str, int] = {}
        self._day = (-1, "")  # (days since the epoch in China time, its date): one strftime a day

    # -- checks ------------------------------------------------------------------------

    def check_order(
        self, account_id: str, key_name: str | None, args: dict[str, Any], books: dict[str, Any],
        state: str, in_flight: int = 0,
    ) -> None:
        """Raise ``Denial`` if the order must not reach the counter; otherwise count it."""
        try:
            self._check_order(account_id, key_name, args, books, state, in_flight)
        except Denial as denial:
            self.denials[denial.rule] = self.denials.get(denial.rule, 0) + 1
            raise

    def check_cancel(self, account_id: str, key_name: str | None) -> None:
        """Cancels are always allowed by the kill switch (they reduce risk) but count for the rate."""
        try:
            now = self._clock()
            levels = self._levels(account_id, key_name)
            for scope, limits in levels:
                self._check_rate(scope, limits, now)
            for scope, limits in levels:
                self._consume(scope, limits, now)
        except Denial as denial:
            self.denials[denial.rule] = self.denials.get(denial.rule, 0) + 1
            raise

    def _levels(self, account_id: str, key_name: str | None) -> list[tuple[str, Limits]]:
        levels = [(f"account:{account_id}", self.config.for_account(account_id))]
        key_limits = self.config.key_limits.get(key_name) if key_name is not None else None
        if key_limits is not None:  # a key level: only what the key sets is checked
            levels.append((f"key:{key_name}:{account_id}", key_limits))
        return levels

    def _check_order(
        self, account_id: str, key_name: str | None, args: dict[str, Any], books: dict[str, Any],
        state: str, in_flight: int,
    ) -> None:
        code = args["stock_code"]
        side = args["order_type"]
        volume = args["order_volume"]
        price = float(args["price"])
        now = self._clock()
        if state == HALTED:
            raise Denial("trading.halted", "trading is halted at the gateway (qmt-adapter resume lifts it)")
        position = books["positions"].get(code) or {}
        open_count = len(books["open"])  # the view's indexes: no scan of the day's orders
        if state == REDUCE_ONLY:
            if side != SELL:
                raise Denial("trading.reduce_only", "the gateway is reduce-only: only sells that shrink a position")
            # The counter's can_use_volume already excludes shares frozen by open sells.
            sellable = int(position.get("can_use_volume") or 0)
            if volume > sellable:
                raise Denial("trading.reduce_only", f"reduce-only: sell {volume} of {code} exceeds the "
                             f"{max(sellable, 0)} sellable", sellable, volume)
        reference = None
        for scope, limits in self._levels(account_id, key_name):
            if limits.block_codes and code in limits.block_codes:
                raise Denial("code.blocked", f"{code} is on the block list")
            if limits.allow_codes and code not in limits.allow_codes:
                raise Denial("code.not_allowed", f"{code} is not on the allow list")
            if limits.check_instrument:
                reference = self._check_instrument(code, side, volume, price, args["price_type"], position)
            if limits.trading_hours:
                self._check_hours(limits)
            notional = volume * (price if price > 0 else _reference_price(reference))
            if limits.max_order_volume and volume > limits.max_order_volume:
                raise Denial("order.max_volume", f"volume {volume} is over the limit of {limits.max_order_volume}",
                             limits.max_order_volume, volume)
            if limits.max_order_notional and notional > limits.max_order_notional:
                raise Denial("order.max_notional", f"notional {notional:.2f} is over the limit of "
                             f"{limits.max_order_notional:.2f}", limits.max_order_notional, round(notional, 2))
            if limits.max_position_notional and side == BUY:
                held = float(position.get("market_value") or 0.0)
                buying = max(books["buying"].get(code, 0.0), 0.0)
                total = held + buying + notional
                if total > limits.max_position_notional:
                    raise Denial("position.max_notional", f"{code}: held {held:.2f} + open buys {buying:.2f} + "
                                 f"this order {notional:.2f} is over the limit of {limits.max_position_notional:.2f}",
                                 limits.max_position_notional, round(total, 2))
            if limits.max_open_orders and open_count + in_flight >= limits.max_open_orders:
                raise Denial("orders.max_open", f"{open_count + in_flight} orders are open, the limit is "
                             f"{limits.max_open_orders}", limits.max_open_orders, open_count + in_flight + 1)
            self._check_rate(scope, limits, now)
            if limits.duplicate_window and not args.get("intentional"):
                fingerprint = (code, side, volume, round(price, 6))
                usage = self._usage_of(scope)
                while usage.recent and now - usage.recent[0][0] > limits.duplicate_window:
                    usage.recent.popleft()
                for stamp, seen in usage.recent:
                    if seen == fingerprint:
                        raise Denial("order.duplicate", f"the same order ({code} {_side(side)} {volume}@{price:g}) "
                                     f"was sent {now - stamp:.2f} s ago; resend with intentional=true if meant",
                                     limits.duplicate_window, round(now - stamp, 3))
        for scope, limits in self._levels(account_id, key_name):
            self._consume(scope, limits, now)
            if limits.duplicate_window:
                self._usage_of(scope).recent.append((now, (code, side, volume, round(price, 6))))

    def _check_instrument(
        self, code: str, side: int, volume: int, price: float, price_type: int, position: dict[str, Any]
    ) -> Instrument | None:
        try:
            board = rules.classify(code)
        except ValueError as exc:
            raise Denial("code.format", str(exc)) from None
        try:
            reference = self._reference(code)
        except ReferenceUnavailable:
            reference = None  # lot and tick are still checked; the price band needs the reference
        else:
            if reference is None:
                explain = getattr(self._reference, "unknown", None)  # the sim's table says how to add a code
                raise Denial("code.unknown", explain(code) if explain is not None
                             else f"{code}: no reference data (not a listed instrument)")
        if board is rules.Board.INDEX or (reference is not None and reference.is_index):
            raise Denial("code.format", f"{code} is an index: indices are quoted, not traded")
        if side == BUY and not rules.is_valid_buy_volume(code, volume):
            lot = "at least 200" if rules.classify(code) is rules.Board.STAR else "a multiple of 100"
            raise Denial("instrument.lot", f"buy volume {volume} of {code} must be {lot}", lot, volume)
        if side == SELL:
            sellable = int(position.get("can_use_volume") or 0)
            if volume <= sellable and not rules.is_valid_sell_volume(code, volume, sellable):
                raise Denial("instrument.lot", f"sell volume {volume} of {code}: odd lots only to clear the "
                             f"remainder of {sellable % 100}", sellable % 100, volume)
        if price_type == LIMIT_PRICE:
            if not rules.is_on_tick(price, code):
                tick = rules.tick_size(code)
                raise Denial("instrument.tick", f"price {price:g} of {code} is not a multiple of {tick}",
                             float(tick), price)
            if reference is None:
                return None
            down, up = rules.price_limits(code, reference.name, reference.prev_close)
            if not down <= rules.to_decimal(price) <= up:
                raise Denial("instrument.price_limit", f"price {price:g} of {code} is outside today's limits "
                             f"{down}..{up}", [float(down), float(up)], price)
        return reference

    def _check_hours(self, limits: Limits) -> None:
        now = dt.datetime.fromtimestamp(self._wall(), CHINA)
        clock = now.time()
        if now.weekday() >= 5 or not any(start <= clock <= end for start, end in limits.windows()):
            raise Denial("hours.closed", f"{now:%a %H:%M:%S} China time is outside the trading sessions "
                         f"{', '.join(limits.sessions)}", list(limits.sessions), f"{now:%H:%M:%S}")

    def _today(self) -> str:
        """The trading day's date in China time (checked per order: kept until it changes)."""
        wall = self._wall()
        number = int((wall + _CHINA_OFFSET) // 86_400)
        if number != self._day[0]:
            self._day = (number, dt.datetime.fromtimestamp(wall, CHINA).strftime("%Y-%m-%d"))
        return self._day[1]

    def _usage_of(self, scope: str) -> _Usage:
        usage = self._usage.get(scope)
        if usage is None:
            usage = self._usage[scope] = _Usage()
        return usage

    def _check_rate(self, scope: str, limits: Limits, now: float) -> None:
        usage = self._usage_of(scope)
        today = self._today()
        if usage.day != today:
            usage.day, usage.today = today, 0
        if limits.orders_per_day and usage.today >= limits.orders_per_day:
            raise Denial("rate.per_day", f"{usage.today} orders and cancels today, the limit is "
                         f"{limits.orders_per_day}", limits.orders_per_day, usage.today + 1)
        if limits.orders_per_second:
            rate = limits.orders_per_second
            capacity = max(rate, 1.0)
            if usage.tokens < 0:
                usage.tokens, usage.stamp = capacity, now
            usage.tokens = min(capacity, usage.tokens + (now - usage.stamp) * rate)
            usage.stamp = now
            if usage.tokens < 1.0:
                raise Denial("rate.per_second", f"more than {rate:g} orders and cancels per second",
                             rate, round(rate + (1.0 - usage.tokens), 3))

    def _consume(self, scope: str, limits: Limits, now: float) -> None:
        usage = self._usage_of(scope)
        usage.today += 1
        if limits.orders_per_second:
            usage.tokens -= 1.0

    # -- reporting ---------------------------------------------------------------------

    def update(self, config: RiskConfig) -> None:
        """New limits (a reload); usage and counters carry on."""
        self.config = config

    def report(self, accounts: list[str], books: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        usage = {}
        for account_id in accounts:
            mine = self._usage.get(f"account:{account_id}") or _Usage()
            usage[account_id] = {
                "open_orders": len(books(account_id)["open"]),
                "today": mine.today if mine.day == self._today() else 0,
                "tokens": round(max(mine.tokens, 0.0), 3) if mine.tokens >= 0 else None,
            }
        return {
            "limits": {
                "default": _as_map(self.config.base),
                "accounts": {a: _as_map(self.config.for_account(a)) for a in accounts},
                "keys": {name: dict(level) for name, level in self.config.keys.items()},
            },
            "usage": usage,
            "denials": dict(sorted(self.denials.items())),
        }


def _as_map(limits: Limits) -> dict[str, Any]:
    return {f.name: list(v) if isinstance(v := getattr(limits, f.name), tuple) else v for f in fields(Limits)}


def _reference_price(reference: Instrument | None) -> float:
    """A market order's notional is valued at the up limit (the worst case); unknown: 0."""
    if reference is None:
        return 0.0
    _, up = rules.price_limits(reference.code, reference.name, reference.prev_close)
    return float(up)


def _side(side: int) -> str:
    return {BUY: "buy", SELL: "sell"}.get(side, str(side))

