"""A-share market rules, one place for the simulated counter and the gateway's risk checks
(pure functions, no threads, no I/O; nothing here imports the simulator).

Prices and money are ``Decimal`` so that limit prices, tick checks and cash stay exact;
every function also accepts a float or a string and converts it through ``to_decimal``.
The rules follow the exchanges' published ones, simplified where noted.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final, Union

Number = Union[Decimal, float, int, str]

# xtconstant values, copied so this module stays importable without xtquant.
STOCK_BUY: Final = 23
STOCK_SELL: Final = 24
LATEST_PRICE: Final = 5
FIX_PRICE: Final = 11
MARKET_SH_CONVERT_5_CANCEL: Final = 42
MARKET_SH_CONVERT_5_LIMIT: Final = 43
MARKET_PEER_PRICE_FIRST: Final = 44
MARKET_MINE_PRICE_FIRST: Final = 45
MARKET_SZ_INSTBUSI_RESTCANCEL: Final = 46
MARKET_SZ_CONVERT_5_CANCEL: Final = 47
MARKET_SZ_FULL_OR_CANCEL: Final = 48

MARKET_SH: Final = 0  # xtconstant.SH_MARKET
MARKET_SZ: Final = 1  # xtconstant.SZ_MARKET
MARKET_BJ: Final = 70  # xtconstant.MARKET_ENUM_BEIJING
MARKET_ENUM_BY_SUFFIX: Final[dict[str, int]] = {"SH": MARKET_SH, "SZ": MARKET_SZ, "BJ": MARKET_BJ}

# A-share trading days and sessions are in China Standard Time: UTC+8, no daylight saving since 1991.
CHINA: Final = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

CENT: Final = Decimal("0.01")
STOCK_TICK: Final = Decimal("0.01")
FUND_TICK: Final = Decimal("0.001")
BOARD_LOT: Final = 100
STAR_MIN_BUY: Final = 200


class Board(enum.Enum):
    SH_MAIN = "sh_main"
    SZ_MAIN = "sz_main"
    CHINEXT = "chinext"
    STAR = "star"
    BJ = "bj"
    SH_FUND = "sh_fund"
    SZ_FUND = "sz_fund"
    INDEX = "index"  # SH 000xxx, SZ 399xxx: quoted, never traded


FUND_BOARDS: Final = frozenset({Board.SH_FUND, Board.SZ_FUND})

# Instrument kinds (xtdata.get_instrument_type's names).
STOCK: Final = "stock"
FUND: Final = "fund"
INDEX: Final = "index"
KINDS: Final = (STOCK, FUND, INDEX)

_CODE_RE = re.compile(r"^(\d{6})\.(SH|SZ|BJ)$")


def to_decimal(value: Number) -> Decimal:
    """Exact decimal of a price or amount; floats go through their shortest repr (10.6 -> 10.6)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        # Six decimals absorb float noise such as 0.1 + 0.2 without hiding a real off-tick price.
        return Decimal(repr(value) if isinstance(value, float) else str(value)).quantize(Decimal("0.000001"))
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a number: {value!r}") from None


def split_code(code: str) -> tuple[str, str]:
    """``"600000.SH"`` -> ``("600000", "SH")``; ValueError for anything else."""
    match = _CODE_RE.match(code)
    if match is None:
        raise ValueError(f"not an A-share code with exchange suffix: {code!r}")
    return match.group(1), match.group(2)


@functools.lru_cache(maxsize=1 << 14)  # every check asks it; a table holds some 5,600 codes
def classify(code: str) -> Board:
    """The board a code trades on, from its digits and suffix; ValueError if not a supported kind.

    Index codes (SH 000xxx, SZ 399xxx) classify as ``Board.INDEX``: they are quoted, never traded.
    """
    digits, suffix = split_code(code)
    if suffix == "SH":
        if digits.startswith("60"):
            return Board.SH_MAIN
        if digits.startswith(("688", "689")):
            return Board.STAR
        if digits.startswith("5"):
            return Board.SH_FUND
        if digits.startswith("000"):
            return Board.INDEX
    elif suffix == "SZ":
        if digits.startswith(("000", "001", "002", "003")):
            return Board.SZ_MAIN
        if digits.startswith(("300", "301", "302")):
            return Board.CHINEXT
        if digits.startswith(("15", "16")):
            return Board.SZ_FUND
        if digits.startswith("399"):
            return Board.INDEX
    elif digits.startswith(("4", "8", "920")):
        return Board.BJ
    raise ValueError(f"unsupported security code: {code!r}")


def market_enum(code: str) -> int:
    """xtquant market number of a code: 0 SH, 1 SZ, 70 BJ."""
    return MARKET_ENUM_BY_SUFFIX[split_code(code)[1]]


def tick_size(code: str) -> Decimal:
    return FUND_TICK if classify(code) in FUND_BOARDS else STOCK_TICK


def is_st(name: str) -> bool:
    """ST and *ST names carry the risk-warning limit."""
    return name.lstrip("*").startswith("ST")


def limit_ratio(code: str, name: str) -> Decimal:
    """Daily limit as a fraction of the previous close.

    ST names are at ±5% on the main boards only; ChiNext and STAR keep ±20% for ST names,
    as the exchanges do.
    """
    board = classify(code)
    if board in (Board.CHINEXT, Board.STAR):
        return Decimal("0.20")
    if board is Board.BJ:
        return Decimal("0.30")
    if board in (Board.SH_MAIN, Board.SZ_MAIN) and is_st(name):
        return Decimal("0.05")
    return Decimal("0.10")


def round_to_tick(price: Number, tick: Number) -> Decimal:
    """Round half up to the tick, the way exchanges round limit prices."""
    step = to_decimal(tick)
    units = (to_decimal(price) / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return (units * step).quantize(step)


@functools.lru_cache(maxsize=1 << 14)  # each quote's band, computed again for each new set of books
def price_limits(code: str, name: str, prev_close: Number) -> tuple[Decimal, Decimal]:
    """(down limit, up limit) from the previous close, rounded half up to the tick."""
    base = to_decimal(prev_close)
    ratio = limit_ratio(code, name)
    tick = tick_size(code)
    down = max(round_to_tick(base * (1 - ratio), tick), tick)
    up = round_to_tick(base * (1 + ratio), tick)
    return down, up


def is_on_tick(price: Number, code: str) -> bool:
    value = to_decimal(price)
    return value > 0 and value % tick_size(code) == 0


def within_limits(price: Number, code: str, name: str, prev_close: Number) -> bool:
    """True when the price is inside the daily band, both limits included."""
    down, up = price_limits(code, name, prev_close)
    return down <= to_decimal(price) <= up


def is_valid_buy_volume(code: str, volume: int) -> bool:
    """Buys: multiples of 100 (BJ simplified to the same); STAR: at least 200, then steps of 1."""
    if volume <= 0:
        return False
    if classify(code) is Board.STAR:
        return volume >= STAR_MIN_BUY
    return volume % BOARD_LOT == 0


def is_valid_sell_volume(code: str, volume: int, sellable: int) -> bool:
    """Sells: whole lots, or an odd amount only when it clears the holding's odd remainder.

    STAR: at least 200 (steps of 1), or everything sellable when less than 200 would remain
    to be sold in one go. Volumes above ``sellable`` are the caller's "insufficient" case;
    this function only judges the lot shape.
    """
    if volume <= 0 or volume > sellable:
        return False
    if classify(code) is Board.STAR:
        return volume >= STAR_MIN_BUY or volume == sellable
    odd = volume % BOARD_LOT
    return odd == 0 or odd == sellable % BOARD_LOT


def is_marketable(order_type: int, price: Number, last: Number) -> bool:
    """A buy crosses at or above the last price, a sell at or below it."""
    if order_type == STOCK_BUY:
        return to_decimal(price) >= to_decimal(last)
    if order_type == STOCK_SELL:
        return to_decimal(price) <= to_decimal(last)
    raise ValueError(f"unknown order_type {order_type}")


MARKET_PRICE_TYPES: Final[dict[int, frozenset[str]]] = {
    MARKET_SH_CONVERT_5_CANCEL: frozenset({"SH", "BJ"}),
    MARKET_SH_CONVERT_5_LIMIT: frozenset({"SH", "BJ"}),
    MARKET_PEER_PRICE_FIRST: frozenset({"SH", "SZ", "BJ"}),
    MARKET_MINE_PRICE_FIRST: frozenset({"SH", "SZ", "BJ"}),
    MARKET_SZ_INSTBUSI_RESTCANCEL: frozenset({"SZ"}),
    MARKET_SZ_CONVERT_5_CANCEL: frozenset({"SZ"}),
    MARKET_SZ_FULL_OR_CANCEL: frozenset({"SZ"}),
}
SUPPORTED_PRICE_TYPES: Final = frozenset({LATEST_PRICE, FIX_PRICE, *MARKET_PRICE_TYPES})
# Market orders whose unfilled rest is cancelled at once (immediate-or-cancel).
CANCEL_REST_PRICE_TYPES: Final = frozenset(
    {MARKET_SH_CONVERT_5_CANCEL, MARKET_SZ_INSTBUSI_RESTCANCEL, MARKET_SZ_CONVERT_5_CANCEL}
)


# What a counter reports as ``XtOrder.price_type``: its own price-type code (QMT's
# EBrokerPriceType, https://dict.thinktrader.net/innerApi/enum_constants.html#enum-ebrokerpricetype),
# not the xtconstant the request carried. Observed: a limit order (FIX_PRICE) comes back as 50 and
# the best-5-then-cancel market orders (42 on SH, 47 on SZ) as 88 -- vnpy/vnpy_xt
# vnpy_xt/xt_gateway.py ("限价返回50，市价返回88", ORDERTYPE_XT2VT {50: LIMIT, 88: MARKET} in
# commit 39bc5be); shidenggui/easytrader docs/miniqmt.md shows a limit order's 'price_type': 50
# ('限价'). The other market types follow the same enum by name, as shidenggui/easytrader
# easytrader/miniqmt/miniqmt_trader.py (BROKER_PRICE_TYPE_MAP) decodes them; broker page
# https://qmt.hxquant.com/?id=48 lists XtOrder's price types as enum_EBrokerPriceType.
# LATEST_PRICE is priced by the terminal (at the last price) and reaches the counter as a limit
# order (no public example; the sim prices it the same way).
BROKER_PRICE_ANY: Final = 49  # 市价
BROKER_PRICE_LIMIT: Final = 50  # 限价
BROKER_PRICE_PEER_PRICE_FIRST: Final = 84  # 对手方最优价格
BROKER_PRICE_L5_FIRST_LIMITPX: Final = 85  # 最优五档即时成交剩余转限价
BROKER_PRICE_MINE_PRICE_FIRST: Final = 86  # 本方最优价格
BROKER_PRICE_INSTBUSI_RESTCANCEL: Final = 87  # 即时成交剩余撤销
BROKER_PRICE_L5_FIRST_CANCEL: Final = 88  # 最优五档即时成交剩余撤销
BROKER_PRICE_FULL_REAL_CANCEL: Final = 89  # 全额成交并撤单
BROKER_PRICE_TYPES: Final[dict[int, int]] = {
    LATEST_PRICE: BROKER_PRICE_LIMIT,
    FIX_PRICE: BROKER_PRICE_LIMIT,
    MARKET_SH_CONVERT_5_CANCEL: BROKER_PRICE_L5_FIRST_CANCEL,
    MARKET_SH_CONVERT_5_LIMIT: BROKER_PRICE_L5_FIRST_LIMITPX,
    MARKET_PEER_PRICE_FIRST: BROKER_PRICE_PEER_PRICE_FIRST,
    MARKET_MINE_PRICE_FIRST: BROKER_PRICE_MINE_PRICE_FIRST,
    MARKET_SZ_INSTBUSI_RESTCANCEL: BROKER_PRICE_INSTBUSI_RESTCANCEL,
    MARKET_SZ_CONVERT_5_CANCEL: BROKER_PRICE_L5_FIRST_CANCEL,
    MARKET_SZ_FULL_OR_CANCEL: BROKER_PRICE_FULL_REAL_CANCEL,
}
# The counter's names of its price types, as its texts use them ("限价买入", "最优五档即时成交剩余撤销卖出").
BROKER_PRICE_TYPE_NAMES: Final[dict[int, str]] = {
    BROKER_PRICE_ANY: "市价",
    BROKER_PRICE_LIMIT: "限价",
    BROKER_PRICE_PEER_PRICE_FIRST: "对手方最优价格",
    BROKER_PRICE_L5_FIRST_LIMITPX: "最优五档即时成交剩余转限价",
    BROKER_PRICE_MINE_PRICE_FIRST: "本方最优价格",
    BROKER_PRICE_INSTBUSI_RESTCANCEL: "即时成交剩余撤销",
    BROKER_PRICE_L5_FIRST_CANCEL: "最优五档即时成交剩余撤销",
    BROKER_PRICE_FULL_REAL_CANCEL: "全额成交并撤单",
}


def broker_price_type(price_type: int) -> int:
    """The counter's code for an order sent with xtconstant ``price_type``.

    A type the counter does not support has no code of its own (the order is junked); the
    value sent is kept, which no broker code collides with for the stock types.
    """
    return BROKER_PRICE_TYPES.get(price_type, price_type)


def is_supported_price_type(price_type: int) -> bool:
    return price_type in SUPPORTED_PRICE_TYPES


def price_type_allowed(price_type: int, code: str) -> bool:
    """Market price types belong to particular exchanges (42/43 SH+BJ, 46/47/48 SZ)."""
    exchanges = MARKET_PRICE_TYPES.get(price_type)
    if exchanges is None:
        return price_type in SUPPORTED_PRICE_TYPES
    return split_code(code)[1] in exchanges


def trade_amount(price: Number, volume: int) -> Decimal:
    """Traded amount in CNY, rounded half up to the cent."""
    return (to_decimal(price) * volume).quantize(CENT, rounding=ROUND_HALF_UP)


def commission(amount: Number, rate: Number, minimum: Number) -> Decimal:
    """Commission of one trade: ``max(rate * amount, minimum)``, rounded half up to the cent."""
    fee = (to_decimal(amount) * to_decimal(rate)).quantize(CENT, rounding=ROUND_HALF_UP)
    return max(fee, to_decimal(minimum).quantize(CENT, rounding=ROUND_HALF_UP))


def truncate_remark(remark: str, limit: int = 24) -> str:
    """Counters keep at most ``limit`` bytes (UTF-8) of a remark, never splitting a character."""
    return remark.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def default_kind(code: str) -> str:
    """The kind a code has unless its table says otherwise: by its board."""
    board = classify(code)
    if board is Board.INDEX:
        return INDEX
    return FUND if board in FUND_BOARDS else STOCK


@dataclass(frozen=True)
class Instrument:
    """A listed security or index: its code, name and reference prices (the previous close sets the band)."""

    code: str
    name: str
    prev_close: Decimal
    last_price: Decimal
    kind: str = ""  # STOCK, FUND (ETF) or INDEX; empty: by the code (default_kind)
    list_date: str = ""  # YYYYMMDD; empty when not known
    total_volume: int = 0  # shares; 0 when not known
    float_volume: int = 0

    def __post_init__(self) -> None:
        if not self.kind:
            try:
                kind = default_kind(self.code)
            except ValueError:
                kind = STOCK
            object.__setattr__(self, "kind", kind)

    @property
    def board(self) -> Board:
        return classify(self.code)

    @property
    def is_index(self) -> bool:
        """An index is quoted but never traded."""
        return self.kind == INDEX
