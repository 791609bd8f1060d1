"""The op table of protocol v1 and argument validation.

Op names are ``XtQuantTrader`` method names and argument names are its parameter names,
with the account object replaced by ``account_id`` (+ optional ``account_type``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from . import errors, mapping

MAX_TEXT_LENGTH = 256
MAX_REPLAY_LIMIT = 10_000
MAX_PREFIXES = 64
_STOCK_CODE = re.compile(r"^[0-9A-Za-z]{1,16}\.[A-Za-z]{2,4}$")
_CLIENT_ORDER_ID = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")

# How the gateway executes an op.
GATEWAY = "gateway"  # answered by the gateway itself
ORDER = "order"  # order_stock_async underneath; the reply waits for the counter's response
ORDER_ASYNC = "order_async"  # reply carries the xtquant seq at once
CANCEL = "cancel"
CANCEL_ASYNC = "cancel_async"
QUERY = "query"
MARKET = "market"  # xtdata's market data: answered by the gateway's market workers (PROTOCOL §16)
CONTROL = "control"  # the simulator's own controls (PROTOCOL §17): to the counter's thread, one answer

# Ops that need the admin permission.
ADMIN_OPS = frozenset({"reload", "halt", "reduce_only", "resume", "sim"})


def _fail(name: str, message: str) -> errors.ProtocolError:
    return errors.ProtocolError(errors.INVALID_ARGUMENT, f"{name}: {message}")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_text(name: str, value: Any, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _fail(name, f"expected a string, got {_describe(value)}")
    if not allow_empty and not value:
        raise _fail(name, "must not be empty")
    if len(value) > MAX_TEXT_LENGTH:
        raise _fail(name, f"longer than {MAX_TEXT_LENGTH} characters")
    return value


def as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _fail(name, f"expected an integer, got {_describe(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise _fail(name, f"expected an integer, got {_describe(value)}")


def as_positive_int(name: str, value: Any) -> int:
    number = as_int(name, value)
    if number <= 0:
        raise _fail(name, f"must be > 0, got {number}")
    if number >= 2**63:
        raise _fail(name, "too large")
    return number


MAX_PRICE = 1e9  # CNY per share: far above any listed price, small enough for exact decimal checks


def as_price(name: str, value: Any) -> float:
    """Any number: xtquant ignores the price of market and latest-price orders (public code sends
    0 or -1 there), so the limit-order checks are made in ``validate_args``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, f"expected a number, got {_describe(value)}")
    try:
        return float(value)
    except OverflowError:
        raise _fail(name, f"must be a finite number, got {_describe(value)}") from None


def as_client_order_id(name: str, value: Any) -> str | None:
    if value is None:
        return None
    text = as_text(name, value, allow_empty=False)
    if not _CLIENT_ORDER_ID.fullmatch(text):
        raise _fail(name, "1 to 64 characters from A-Z a-z 0-9 _ . : -")
    return text


def as_replay_limit(name: str, value: Any) -> int:
    limit = as_positive_int(name, value)
    if limit > MAX_REPLAY_LIMIT:
        raise _fail(name, f"at most {MAX_REPLAY_LIMIT}, got {limit}")
    return limit


def as_optional_seq(name: str, value: Any) -> int | None:
    return None if value is None else as_positive_int(name, value)


def as_prefixes(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_PREFIXES:
        raise _fail(name, f"expected an array of at most {MAX_PREFIXES} topic prefixes, got {_describe(value)}")
    return tuple(as_text(f"{name}[{i}]", prefix) for i, prefix in enumerate(value))


def as_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, f"expected true or false, got {_describe(value)}")
    return value


def _as_code(name: str, value: Any, by_name: dict[str, int], names: dict[int, str], what: str) -> int:
    if isinstance(value, str) and value.lower() in by_name:
        return by_name[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in names:
        return value
    known = ", ".join(f"{code} ({label})" for code, label in names.items())
    raise _fail(name, f"{_describe(value)} is not a known {what}; use one of {known}")


def as_order_type(name: str, value: Any) -> int:
    return _as_code(name, value, mapping.ORDER_TYPE_BY_NAME, mapping.ORDER_TYPE_NAMES, "stock order type")


def as_price_type(name: str, value: Any) -> int:
    return _as_code(name, value, mapping.PRICE_TYPE_BY_NAME, mapping.PRICE_TYPE_NAMES, "stock price type")


def as_market(name: str, value: Any) -> int:
    by_name = {k.lower(): v for k, v in mapping.MARKET_BY_NAME.items()}
    return _as_code(name, value, by_name, mapping.MARKET_NAMES, "market")


def as_account_type(name: str, value: Any) -> str:
    """Normalised to the xtquant name (``"STOCK"``), as ``StockAccount`` takes it."""
    if isinstance(value, str) and value.upper() in mapping.ACCOUNT_TYPE_BY_NAME:
        return value.upper()
    if isinstance(value, int) and not isinstance(value, bool) and value in mapping.ACCOUNT_TYPE_NAMES:
        return mapping.ACCOUNT_TYPE_NAMES[value]
    known = ", ".join(mapping.ACCOUNT_TYPE_BY_NAME)
    raise _fail(name, f"{_describe(value)} is not a known account type; use one of {known}")


def as_account_id(name: str, value: Any) -> str:
    return as_text(name, value, allow_empty=False)


def as_stock_code(name: str, value: Any) -> str:
    code = as_text(name, value, allow_empty=False).upper()  # the counter's codes are upper case
    if not _STOCK_CODE.match(code):
        raise _fail(name, f"{_describe(code)} must carry an exchange suffix, like 600000.SH")
    return code


# -- market data (PROTOCOL §16) ----------------------------------------------------------

PERIODS = ("tick", "1m", "5m", "15m", "30m", "1h", "1d")
DIVIDEND_TYPES = ("none", "front", "back", "front_ratio", "back_ratio")
MARKETS = ("SH", "SZ", "BJ")
MAX_QUOTE_CODES = 6000  # codes in one list: the whole A-share table fits
MAX_FIELDS = 64
MAX_SEQS = 1000
_TIME = re.compile(r"^(\d{8}|\d{14})?$")
_TASK = re.compile(r"^[0-9A-Za-z_.:-]{0,64}$")


def as_period(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in PERIODS:
        raise _fail(name, f"{_describe(value)} is not a period; use one of {', '.join(PERIODS)}")
    return value


def as_time(name: str, value: Any) -> str:
    """xtdata's time strings: '' (open), 'YYYYMMDD' or 'YYYYMMDDhhmmss'."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**14:
        value = str(value)  # xtdata accepts 20240102 as well as '20240102'
    if not isinstance(value, str) or not _TIME.match(value):
        raise _fail(name, f"expected '', 'YYYYMMDD' or 'YYYYMMDDhhmmss', got {_describe(value)}")
    return value


def as_count(name: str, value: Any) -> int:
    count = as_int(name, value)
    if count < -1:
        raise _fail(name, f"expected -1 (all) or a count >= 0, got {count}")
    return count


def as_dividend_type(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in DIVIDEND_TYPES:
        raise _fail(name, f"{_describe(value)} is not a dividend type; use one of {', '.join(DIVIDEND_TYPES)}")
    return value


def _as_list(name: str, value: Any, most: int, item: Callable[[str, Any], Any]) -> list[Any]:
    if isinstance(value, str):
        value = [value]  # xtdata takes one code where it takes a list
    if not isinstance(value, (list, tuple)):
        raise _fail(name, f"expected an array, got {_describe(value)}")
    if len(value) > most:
        raise _fail(name, f"at most {most} entries, got {len(value)}")
    return [item(f"{name}[{i}]", entry) for i, entry in enumerate(value)]


def as_code_or_market(name: str, value: Any) -> str:
    if isinstance(value, str) and value.upper() in MARKETS:
        return value.upper()
    return as_stock_code(name, value)


def as_code_list(name: str, value: Any) -> list[str]:
    """Codes, or markets (SH, SZ, BJ) standing for all their codes."""
    return _as_list(name, value, MAX_QUOTE_CODES, as_code_or_market)


def as_stock_list(name: str, value: Any) -> list[str]:
    return _as_list(name, value, MAX_QUOTE_CODES, as_stock_code)


def as_field_list(name: str, value: Any) -> list[str]:
    return _as_list(name, value, MAX_FIELDS, lambda n, v: as_text(n, v, allow_empty=False))


def as_seqs(name: str, value: Any) -> list[int]:
    return _as_list(name, value, MAX_SEQS, as_positive_int)


def as_optional_bool(name: str, value: Any) -> bool | None:
    return None if value is None else as_bool(name, value)


def as_task(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _TASK.match(value):
        raise _fail(name, f"expected up to 64 of 0-9 A-Z a-z _ . : -, got {_describe(value)}")
    return value


def as_exchange(name: str, value: Any) -> str:
    text = as_text(name, value, allow_empty=False).upper()
    if text not in MARKETS:
        raise _fail(name, f"{_describe(value)} is not a market; use one of {', '.join(MARKETS)}")
    return text


# -- the simulator's controls (PROTOCOL §17) ----------------------------------------------

SIM_ACTIONS = ("status", "reset", "price", "move", "next_day", "deposit", "position")
# What each action needs besides itself; the other arguments must be left out.
SIM_NEEDS: dict[str, tuple[str, ...]] = {
    "status": (), "reset": (), "next_day": (), "price": ("stock_code", "price"), "move": ("stock_code", "percent"),
    "deposit": ("account_id", "amount"), "position": ("account_id", "stock_code", "volume"),
}
MAX_AMOUNT = 1e12  # CNY moved by one deposit or withdrawal: far above any paper account


def as_sim_action(name: str, value: Any) -> str:
    if isinstance(value, str) and value.replace("-", "_") in SIM_ACTIONS:
        return value.replace("-", "_")
    raise _fail(name, f"{_describe(value)} is not a simulator action; use one of {', '.join(SIM_ACTIONS)}")


def _as_optional(convert: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else convert(name, value)


def as_sim_price(name: str, value: Any) -> float:
    price = as_price(name, value)
    if not math.isfinite(price) or price <= 0 or price > MAX_PRICE:
        raise _fail(name, f"must be > 0 and <= {MAX_PRICE:g}, got {_describe(value)}")
    return price


def as_percent(name: str, value: Any) -> float:
    percent = as_price(name, value)
    if not math.isfinite(percent) or not -100 < percent <= 1000:
        raise _fail(name, f"a change in percent above -100 and at most 1000, got {_describe(value)}")
    return percent


def as_amount(name: str, value: Any) -> float:
    amount = as_price(name, value)
    if not math.isfinite(amount) or amount == 0 or abs(amount) > MAX_AMOUNT:
        raise _fail(name, f"CNY, not 0, at most {MAX_AMOUNT:g} either way (negative withdraws), got {_describe(value)}")
    return amount


def as_volume(name: str, value: Any) -> int:
    volume = as_int(name, value)
    if not 0 <= volume < 2**53:
        raise _fail(name, f"shares >= 0, got {volume}")
    return volume


_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    name: str
    convert: Callable[[str, Any], Any]
    default: Any = _REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class OpSpec:
    name: str
    kind: str
    params: tuple[Param, ...] = ()
    takes_account: bool = True
    doc: str = ""
    param_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "param_names", frozenset(p.name for p in self.all_params))

    @property
    def all_params(self) -> tuple[Param, ...]:
        if not self.takes_account:
            return self.params
        return ACCOUNT_PARAMS + self.params


ACCOUNT_PARAMS = (
    Param("account_id", as_account_id, doc="fund account id, e.g. '1000000365'"),
    Param("account_type", as_account_type, "STOCK", "xtquant account type name or code"),
)

_ORDER_PARAMS = (
    Param("stock_code", as_stock_code, doc="code with exchange suffix, e.g. '600000.SH'"),
    Param("order_type", as_order_type, doc="23 (STOCK_BUY) / 24 (STOCK_SELL), or 'buy' / 'sell'"),
    Param("order_volume", as_positive_int, doc="shares"),
    Param("price_type", as_price_type, doc="11 (FIX_PRICE) / 'limit', 5 (LATEST_PRICE) / 'latest', ..."),
    Param("price", as_price, doc="limit price; 0 for market price types"),
    Param("strategy_name", as_text, "", "free text, kept by the counter"),
    Param("order_remark", as_text, "", "free text, kept by the gateway (the counter gets a tag)"),
    Param("client_order_id", as_client_order_id, None, "makes the order idempotent; the gateway makes one if absent"),
    Param("intentional", as_bool, False, "true: the same order again within the duplicate window is meant"),
)
_CANCEL_PARAMS = (Param("order_id", as_positive_int, doc="order id returned by order_stock"),)
_CANCEL_SYSID_PARAMS = (
    Param("market", as_market, doc="0 / 'SH', 1 / 'SZ', 70 / 'BJ'"),
    Param("sysid", lambda n, v: as_text(n, v, allow_empty=False), doc="counter contract number"),
)

_BARS_PARAMS = (
    Param("field_list", as_field_list, (), "fields wanted; none: all"),
    Param("stock_list", as_stock_list, doc="codes"),
    Param("period", as_period, "1d"),
    Param("start_time", as_time, ""),
    Param("end_time", as_time, ""),
    Param("count", as_count, -1, "-1: all; n: the last n up to end_time"),
    Param("dividend_type", as_dividend_type, "none"),
    Param("fill_data", as_bool, True),
)
_DOWNLOAD_PARAMS = (
    Param("start_time", as_time, ""),
    Param("end_time", as_time, ""),
    Param("incrementally", as_optional_bool, None),
    Param("task", as_task, "", "names the download.<task>. progress topic"),
)
OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec(
            "ping",
            GATEWAY,
            (Param("publish", as_bool, False, "also publish gateway.pong carrying this request's id"),),
            takes_account=False,
            doc="gateway health and identity",
        ),
        OpSpec(
            "replay",
            GATEWAY,
            (
                Param("from_seq", as_positive_int, doc="first seq wanted"),
                Param("to_seq", as_optional_seq, None, "last seq wanted (default: the newest)"),
                Param("prefixes", as_prefixes, (), "topic prefixes, as for SUB; none: every event"),
                Param("limit", as_replay_limit, 1000, f"events per page, at most {MAX_REPLAY_LIMIT}"),
            ),
            takes_account=False,
            doc="journaled events from a seq, a page at a time",
        ),
        OpSpec("snapshot", GATEWAY, doc="asset, positions, today's orders and trades, as of a seq"),
        OpSpec("journal_info", GATEWAY, takes_account=False, doc="the journal's span, size and epoch"),
        OpSpec("order_outcomes", GATEWAY, doc="the gateway's record of each order: client order id and outcome"),
        OpSpec("reload", GATEWAY, takes_account=False,
               doc="read the client keys and the risk limits again; drops connections of revoked keys"),
        OpSpec("risk", GATEWAY, takes_account=False, doc="risk limits, usage, denial counters and the trading state"),
        OpSpec(
            "halt",
            GATEWAY,
            (
                Param("cancel_open", as_bool, False, "also cancel every open order of every account"),
                Param("reason", as_text, "", "why, for the event and the log"),
            ),
            takes_account=False,
            doc="kill switch: no new orders until resume",
        ),
        OpSpec("reduce_only", GATEWAY, (Param("reason", as_text, "", "why"),), takes_account=False,
               doc="only orders that shrink a position (sells up to the sellable volume)"),
        OpSpec("resume", GATEWAY, (Param("reason", as_text, "", "why"),), takes_account=False,
               doc="lift halt or reduce-only"),
        OpSpec(
            "sim",
            CONTROL,
            (
                Param("action", as_sim_action, doc=", ".join(SIM_ACTIONS)),
                Param("stock_code", _as_optional(as_stock_code), None, "price, move, position"),
                Param("price", _as_optional(as_sim_price), None, "price: the new last price"),
                Param("percent", _as_optional(as_percent), None, "move: the change from the last price, in %"),
                Param("account_id", _as_optional(as_account_id), None, "deposit, position"),
                Param("amount", _as_optional(as_amount), None, "deposit: CNY in (negative: out)"),
                Param("volume", _as_optional(as_volume), None, "position: the shares held"),
            ),
            takes_account=False,
            doc="the simulated counter's controls (backend sim only)",
        ),
        OpSpec("order_stock", ORDER, _ORDER_PARAMS, doc="place an order; replies with its order id"),
        OpSpec("order_stock_async", ORDER_ASYNC, _ORDER_PARAMS, doc="place an order; replies with a seq"),
        OpSpec("cancel_order_stock", CANCEL, _CANCEL_PARAMS, doc="cancel by order id"),
        OpSpec("cancel_order_stock_async", CANCEL_ASYNC, _CANCEL_PARAMS, doc="cancel by order id, async"),
        OpSpec("cancel_order_stock_sysid", CANCEL, _CANCEL_SYSID_PARAMS, doc="cancel by counter contract number"),
        OpSpec(
            "cancel_order_stock_sysid_async", CANCEL_ASYNC, _CANCEL_SYSID_PARAMS, doc="cancel by sysid, async"
        ),
        OpSpec("query_stock_asset", QUERY, doc="the account's asset, or nil"),
        OpSpec("query_stock_positions", QUERY, doc="all positions"),
        OpSpec(
            "query_stock_position",
            QUERY,
            (Param("stock_code", as_stock_code, doc="code with exchange suffix"),),
            doc="one position, or nil",
        ),
        OpSpec(
            "query_stock_orders",
            QUERY,
            (Param("cancelable_only", as_bool, False, "only orders that can still be cancelled"),),
            doc="today's orders",
        ),
        OpSpec("query_stock_order", QUERY, _CANCEL_PARAMS, doc="one order, or nil"),
        OpSpec("query_stock_trades", QUERY, doc="today's trades"),
        OpSpec("query_account_infos", QUERY, takes_account=False, doc="accounts known to the terminal"),
        OpSpec("query_account_status", QUERY, takes_account=False, doc="login status of each account"),
        OpSpec("query_credit_detail", QUERY, doc="credit (margin) account asset details; [] for a cash account"),
        OpSpec("query_stk_compacts", QUERY, doc="margin contracts (负债合约)"),
        OpSpec("query_credit_subjects", QUERY, doc="margin-eligible securities (融资融券标的)"),
        OpSpec("query_credit_slo_code", QUERY, doc="securities available to borrow (可融券数据)"),
        OpSpec("query_credit_assure", QUERY, doc="collateral securities (标的担保品)"),
        OpSpec("query_new_purchase_limit", QUERY, doc="IPO subscription quota: {key: shares}"),
        OpSpec("query_ipo_data", QUERY, takes_account=False, doc="today's new issues: {code: {name, type, ...}}"),
        OpSpec("get_full_tick", MARKET, (Param("code_list", as_code_list, doc="codes, or SH / SZ / BJ"),),
               takes_account=False, doc="the latest tick of each code"),
        OpSpec("get_market_data_ex", MARKET, _BARS_PARAMS, takes_account=False,
               doc="bars or ticks per code, as plain columns"),
        OpSpec("get_local_data", MARKET, _BARS_PARAMS, takes_account=False,
               doc="the same, from the terminal's local data"),
        OpSpec("get_instrument_detail", MARKET,
               (Param("stock_code", as_stock_code), Param("iscomplete", as_bool, False, "every field")),
               takes_account=False, doc="an instrument's reference data, or nil"),
        OpSpec("get_sector_list", MARKET, takes_account=False, doc="the sector names"),
        OpSpec("get_stock_list_in_sector", MARKET, (Param("sector_name", as_text),), takes_account=False,
               doc="the codes of a sector"),
        OpSpec("get_trading_dates", MARKET,
               (Param("market", as_exchange), Param("start_time", as_time, ""), Param("end_time", as_time, ""),
                Param("count", as_count, -1)),
               takes_account=False, doc="trading days as ms timestamps"),
        OpSpec("download_history_data", MARKET,
               (Param("stock_code", as_stock_code), Param("period", as_period), *_DOWNLOAD_PARAMS),
               takes_account=False, doc="fetch history into the terminal; replies when done"),
        OpSpec("download_history_data2", MARKET,
               (Param("stock_list", as_stock_list), Param("period", as_period), *_DOWNLOAD_PARAMS),
               takes_account=False, doc="the same for many codes; progress on download.<task>."),
        OpSpec("subscribe_quote", MARKET,
               (Param("stock_code", as_stock_code), Param("period", as_period, "1d"), Param("count", as_count, 0)),
               takes_account=False, doc="quotes of one code and period on the quote PUB; a leased seq"),
        OpSpec("subscribe_whole_quote", MARKET, (Param("code_list", as_code_list),), takes_account=False,
               doc="ticks of many codes or whole markets; a leased seq"),
        OpSpec("unsubscribe_quote", MARKET, (Param("seq", as_int),), takes_account=False,
               doc="end a subscription"),
        OpSpec("renew_quotes", MARKET, (Param("seqs", as_seqs),), takes_account=False,
               doc="renew subscription leases; answers the seqs no longer held"),
    )
}


MARKET_OPS = frozenset(name for name, spec in OPS.items() if spec.kind == MARKET)


def validate_args(spec: OpSpec, raw: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise the arguments of one op; raises ProtocolError naming the field."""
    for key in raw:
        if key not in spec.param_names:
            raise errors.ProtocolError(
                errors.UNKNOWN_ARGUMENT, f"{spec.name} takes no argument {key!r}"
            )
    args: dict[str, Any] = {}
    for param in spec.all_params:
        if param.name in raw:
            args[param.name] = param.convert(param.name, raw[param.name])
        elif param.required:
            raise errors.ProtocolError(
                errors.MISSING_ARGUMENT, f"{spec.name} needs argument {param.name!r}"
            )
        else:
            args[param.name] = param.default
    if spec.kind in (ORDER, ORDER_ASYNC):
        price = args["price"]
        if args["price_type"] == mapping.FIX_PRICE:
            if not math.isfinite(price) or price <= 0 or price > MAX_PRICE:
                raise _fail("price", f"a limit order (price_type 11) needs a price > 0 and <= {MAX_PRICE:g}, "
                                     f"got {_describe(price)}")
        elif not math.isfinite(price) or not -MAX_PRICE <= price <= MAX_PRICE:
            args["price"] = 0.0  # ignored by the counter for this price type; keep it a plain number
    elif spec.kind == CONTROL:
        _check_sim(args)
    return args


def _check_sim(args: dict[str, Any]) -> None:
    """Each action takes exactly the arguments it uses: a stray one is a mistake, not ignored."""
    action = args["action"]
    needs = SIM_NEEDS[action]
    for name in needs:
        if args[name] is None:
            raise errors.ProtocolError(errors.MISSING_ARGUMENT, f"sim {action} needs argument {name!r}")
    for name, value in args.items():
        if name != "action" and name not in needs and value is not None:
            raise errors.ProtocolError(errors.UNKNOWN_ARGUMENT, f"sim {action} takes no argument {name!r}")


def lookup(op: Any) -> OpSpec:
    spec = OPS.get(op)
    if spec is None:
        raise errors.ProtocolError(errors.UNKNOWN_OP, f"unknown op {_describe(op)}")
    return spec
