"""The simulated counter's books: accounts, positions, orders, trades, quotes and the A-share rules.

Pure state and rules: no threads, no sessions, no delivery, no persistence. Each operation
returns what it changed as an ordered list of events (snapshots taken when the change was
made); ``SimCounter`` turns them into pushes and state-file rows, and is the only caller (on
its thread).

Accounting choices (the brief left them open):

* ``avg_price`` is the holding cost per share *including* buy commissions (weighted
  average); sells do not change it. ``open_price`` is the same without commissions.
* A position sold down to zero stays listed, with volume 0, until ``next_day()``.
* A market-type buy freezes cash at the last price (where the simulator fills it), not at
  the up-limit price a real counter would use.
* Commission is frozen for a buy once, as estimated for the whole order; partial fills
  each pay at least ``commission_min``, so many small fills may cost more than was frozen.

Market hours and suspensions (the feed's ``session``, ``adapter.sim.feed``): an order in a
suspended code is refused; with ``sim.market_hours = "exchange"`` so is one before 09:15, after
15:00 or on a non-trading day. In the call auctions and the breaks (09:25-09:30, lunch) a limit
order is accepted and rests, reported at once (in a break a real counter holds it unreported until
the exchange takes orders again). It matches at the first continuous step, at the last price: the
sim has no auction book to match it in; one resting through the closing auction stays open until
``next_day``. Market-type orders are refused outside continuous trading, where the exchanges take
none. Cancels are refused while the exchange takes none (09:20-09:25, the closing auction).
"""

from __future__ import annotations

import copy
import hashlib
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Collection, Iterable, Union

from adapter import market as rules
from adapter.config import SimConfig
from adapter.sim import status
from adapter.sim.feed import ALWAYS_OPEN, CLOSED, CONTINUOUS, PRE_OPEN, SUSPENDED, CodeSession
from adapter.sim.instruments import Instrument, load_instruments, unknown_code
from adapter.sim.prices import PriceWalk
from xtquant import xtconstant  # imported by adapter.sim.status without its update check

BUY = xtconstant.STOCK_BUY
SELL = xtconstant.STOCK_SELL

FIRST_ORDER_ID = 1082130433  # real QMT order ids are large ints of this shape
FIRST_SYSID = 100001
FIRST_TRADE_ID = 20000001

# Counter error ids and texts. A real counter's text reads "[COUNTER] [id][text]", followed by
# the values it checked as "[key=value,...]": "[COUNTER][260200][可用资金不足][fund_account=...,
# money_type=0,p_occur_balance=7180.50,v_enable_balance_t=360.82]" as a junk order's 废单原因
# (status_msg) in QMT's own order export (https://github.com/liqimore/quant-qmt-proxy/issues/21),
# "[COUNTER][251005][证券可用数量不足][v_stock_code=000506,v_occur_amount=100.00,p_enable_amount=0.00,
# ...]" (https://github.com/litaolemo/xtquant_big_convert/issues/60). The ids, texts and keys below
# are the sim's own: each broker's counter has its own.
ERR_UNKNOWN_CODE = (120100, "证券代码不存在或不允许交易")
ERR_INDEX = (120101, "指数不能交易")
ERR_ORDER_TYPE = (120120, "不支持的委托类型")
ERR_CASH = (120147, "资金可用金额不足")
ERR_SHARES = (120149, "证券可用数量不足")
ERR_PRICE_TYPE = (130001, "不支持的报价类型")
ERR_PRICE_TYPE_MARKET = (130002, "该市场不支持此报价类型")
ERR_LOT = (130003, "委托数量不符合交易单位要求")
ERR_TICK = (130004, "委托价格不符合最小价格变动单位")
ERR_LIMIT = (130006, "委托价格超出涨跌停限制")
ERR_FOK = (130009, "全额成交或撤销委托无法全部成交")
ERR_CANCEL_UNKNOWN = (110002, "未找到该委托，不能撤单")
ERR_CANCEL_FINAL = (110003, "该委托已成交或已撤单，不能撤单")
# Hours and suspensions. ERR_TIME is a real counter's refusal of an order sent out of hours, as QMT
# reports it: "限价买入 [SZ162411] [COUNTER] [12313][当前时间不允许此类证券交易]" (shidenggui/easytrader
# docs/miniqmt.md). No QMT counter's text was found for the other three: the suspended and market
# order texts are those of a broker order system (OES errors 1232 证券停牌, 1224 当前时段不支持市价委托,
# vnpy/vnpy vnpy/api/oes/include/oes/oes_api/errors/oes_errors.h); their ids, and the cancel's text, are the sim's own.
ERR_SUSPENDED = (120102, "证券停牌")
ERR_TIME = (12313, "当前时间不允许此类证券交易")
ERR_MARKET_SESSION = (130010, "当前时段不支持市价委托")
ERR_CANCEL_TIME = (110004, "当前时间不允许撤单")


def counter_message(error: tuple[int, str], **checked: object) -> str:
    """The counter's text for a refusal: ``[COUNTER] [id][text][key=value,...]``."""
    text = f"[COUNTER] [{error[0]}][{error[1]}]"
    if checked:
        text += "[" + ",".join(f"{key}={value}" for key, value in checked.items()) + "]"
    return text


def secu_account(account_id: str, market: int) -> str:
    """A stable shareholder code per market: "A" + 9 digits on SH, "0" + 9 digits on SZ.

    Beijing securities are held in the Shenzhen securities account, so BJ shares SZ's code.
    """
    digits = f"{zlib.crc32(account_id.encode('utf-8')) % 1_000_000_000:09d}"
    return f"A{digits}" if market == rules.MARKET_SH else f"0{digits}"


def offset_flag(order_type: int) -> int:
    return xtconstant.OFFSET_FLAG_OPEN if order_type == BUY else xtconstant.OFFSET_FLAG_CLOSE


@dataclass
class Quote:
    instrument: Instrument
    prev_close: Decimal
    last: Decimal
    tick: Decimal
    down: Decimal = Decimal(0)
    up: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        self.rebase(self.prev_close)

    def rebase(self, prev_close: Decimal) -> None:
        self.prev_close = prev_close
        self.down, self.up = rules.price_limits(self.instrument.code, self.instrument.name, prev_close)


@dataclass
class Position:
    code: str
    volume: int = 0
    can_use: int = 0
    frozen: int = 0
    yesterday: int = 0
    cost: Decimal = Decimal(0)  # incl. buy commissions
    open_cost: Decimal = Decimal(0)  # traded amounts only


@dataclass
class Order:
    order_id: int
    sysid: str
    account_id: str
    code: str
    name: str
    market: int
    secu_account: str
    order_type: int
    volume: int
    price_type: int
    price: Decimal
    strategy_name: str
    order_remark: str
    order_time: int
    status: int = status.UNREPORTED  # changed only by status.advance
    status_msg: str = ""
    traded_volume: int = 0
    traded_amount: Decimal = Decimal(0)
    frozen_cash: Decimal = Decimal(0)

    @property
    def remaining(self) -> int:
        return self.volume - self.traded_volume

    @property
    def is_open(self) -> bool:
        return self.status in status.OPEN_STATUSES


@dataclass(frozen=True)
class Trade:
    """One fill, with ``XtTrade``'s fields and values (floats, as the pushes carry them)."""

    account_id: str
    stock_code: str
    order_type: int
    traded_id: str
    traded_time: int
    traded_price: float
    traded_volume: int
    traded_amount: float
    order_id: int
    order_sysid: str
    strategy_name: str
    order_remark: str
    direction: int
    offset_flag: int
    commission: float
    secu_account: str
    instrument_name: str


@dataclass
class Account:
    account_id: str
    cash: Decimal
    frozen_cash: Decimal = Decimal(0)
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)


@dataclass(frozen=True)
class Asset:
    account_id: str
    cash: Decimal
    frozen_cash: Decimal
    market_value: Decimal


# Events: what an operation changed, in the order a counter reports it.
@dataclass(frozen=True)
class OrderChanged:
    order: Order  # a copy as of the change


@dataclass(frozen=True)
class TradeMade:
    trade: Trade


@dataclass(frozen=True)
class PositionChanged:
    account_id: str
    position: Position  # a copy as of the change


@dataclass(frozen=True)
class AssetChanged:
    asset: Asset


Event = Union[OrderChanged, TradeMade, PositionChanged, AssetChanged]


@dataclass(frozen=True)
class Refusal:
    """Why the counter refused an order or a cancel: its error id and text."""

    error_id: int
    message: str


@dataclass
class Placed:
    """``Books.place``: the order as it stands after the round (a copy), the refusal if junked."""

    order: Order
    refusal: Refusal | None
    events: list[Event]


@dataclass
class Cancelled:
    """``Books.cancel``: ``order`` is None when none matched (then ``order_id`` is what was asked)."""

    order_id: int
    order: Order | None
    refusal: Refusal | None
    events: list[Event]


class Books:
    """Every account's books and the quotes, under the A-share rules of ``adapter.market``."""

    def __init__(
        self,
        config: SimConfig,
        accounts: Iterable[str],
        clock: Callable[[], float],
        session: Callable[[str], CodeSession] | None = None,
    ) -> None:
        """``session(code)``: the code's phase now (the counter asks its feed); None: always open."""
        self.config = config
        self._clock = clock
        self._session_of = session
        self._rate = rules.to_decimal(config.commission_rate)
        self._minimum = rules.to_decimal(config.commission_min)
        self._walks: dict[str, PriceWalk] = {}  # code -> its own generator (_walk_of)
        self.quotes: dict[str, Quote] = {}
        self.moved: set[str] = set()  # codes whose quote changed since the counter last saved them
        self._watched: set[str] = set()  # codes asked for by quote(): the walk moves them
        self._market_values: dict[str, Decimal] = {}  # account -> value of its positions at the last prices
        for code, instrument in sorted(load_instruments(config.instruments_file or None).items()):
            tick = rules.tick_size(code)
            self.quotes[code] = Quote(instrument, instrument.prev_close, instrument.last_price, tick)
        self.accounts: dict[str, Account] = {}
        for account_id in accounts:
            account_id = str(account_id)
            self.accounts[account_id] = Account(account_id, rules.to_decimal(config.cash).quantize(rules.CENT))
        if not self.accounts:
            raise ValueError("a counter needs at least one account")
        self._load_positions(config.positions)
        self.next_order_id = FIRST_ORDER_ID
        self.next_sysid = FIRST_SYSID
        self.next_trade_id = FIRST_TRADE_ID

    def _load_positions(self, positions: dict[str, dict[str, int]]) -> None:
        for account_id, holdings in positions.items():
            account = self.accounts.get(str(account_id))
            if account is None:
                raise ValueError(f"sim.positions names account {account_id!r}, which the counter does not serve")
            for code, shares in holdings.items():
                quote = self.quotes.get(code)
                if quote is None:
                    raise ValueError(f"sim.positions: {code!r} is not in the instrument table")
                if quote.instrument.is_index:
                    raise ValueError(f"sim.positions: {code} is an index, which cannot be held")
                if not isinstance(shares, int) or isinstance(shares, bool) or shares < 0:
                    raise ValueError(f"sim.positions: shares of {code} must be a non-negative int, got {shares!r}")
                if shares == 0:
                    continue
                cost = quote.prev_close * shares
                account.positions[code] = Position(code, shares, shares, 0, shares, cost, cost)

    # -- reading -------------------------------------------------------------------------

    def quote(self, code: str) -> Quote:
        quote = self.quotes.get(code)
        if quote is None:
            raise ValueError(f"unknown code {code!r}")
        self._watched.add(code)
        return quote

    def account(self, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            raise ValueError(f"unknown account {account_id!r}")
        return account

    def asset(self, account_id: str) -> Asset:
        account = self.account(account_id)
        market_value = self._market_values.get(account_id)
        if market_value is None:  # valued again only after a fill or a price move (revalue)
            market_value = self._market_values[account_id] = sum(
                (rules.trade_amount(self.quotes[p.code].last, p.volume) for p in account.positions.values()),
                Decimal(0),
            )
        return Asset(account_id, account.cash, account.frozen_cash, market_value)

    def revalue(self) -> None:
        """Positions or prices changed: market values are computed again when next asked."""
        self._market_values.clear()

    def open_orders(self, code: str | None = None) -> list[Order]:
        found = [
            order
            for account in self.accounts.values()
            for order in account.orders.values()
            if order.is_open and (code is None or order.code == code)
        ]
        return sorted(found, key=lambda o: o.order_id)

    def purchase_limits(self, account_id: str) -> dict[str, int]:
        """IPO subscription quota from today's holdings (the exchanges use a 20-day average):
        SH 1,000 shares per 10,000 CNY of SH market value, SZ 500 per 5,000 of SZ."""
        value = {"SH": Decimal(0), "SZ": Decimal(0)}
        for code, position in self.account(account_id).positions.items():
            suffix = code.rsplit(".", 1)[-1]
            if suffix in value and rules.classify(code) not in rules.FUND_BOARDS:
                value[suffix] += position.volume * self.quote(code).last
        return {"SH": int(value["SH"] // 10_000) * 1_000, "SZ": int(value["SZ"] // 5_000) * 500}

    # -- orders --------------------------------------------------------------------------

    def place(
        self,
        account_id: str,
        code: str,
        order_type: int,
        volume: int,
        price_type: int,
        price: Any,
        strategy_name: str = "",
        order_remark: str = "",
    ) -> Placed:
        """A new order: junked (57) with the refusal, or reported (50), frozen and matched once;
        the unfilled rest of an immediate-or-cancel type is cancelled at once."""
        account = self.account(account_id)
        code = code.strip()
        quote = self.quotes.get(code)
        market = rules.MARKET_ENUM_BY_SUFFIX.get(code.rpartition(".")[2], -1)
        order = Order(
            order_id=self._take_order_id(),
            # The contract number comes with the counter's answer (status 50 or 57); until then it is
            # empty (https://github.com/litaolemo/xtquant_big_convert/issues/152: "order_sys_id is
            # briefly empty" while the order is live).
            sysid="",
            account_id=account_id,
            code=code,
            name=quote.instrument.name if quote else "",
            market=market,
            secu_account=secu_account(account_id, market) if market >= 0 else "",
            order_type=order_type,
            volume=volume,
            price_type=price_type,
            price=Decimal(0),
            strategy_name=strategy_name,
            order_remark=rules.truncate_remark(order_remark),
            order_time=int(self._clock()),
        )
        account.orders[order.order_id] = order
        events: list[Event] = []
        session = self._session(code) if quote is not None else ALWAYS_OPEN
        refusal = self._refusal(account, order, quote, price, session)
        if refusal is not None:
            # A junk order never got a contract number: QMT shows "xt" + the order id in its place
            # (合同编号 xt1090533590 for 订单编号 1090533590 in liqimore/quant-qmt-proxy issue #21).
            order.sysid = f"xt{order.order_id}"
            status.advance(order, status.JUNK)
            order.status_msg = refusal.message
            events.append(OrderChanged(copy.copy(order)))
            return Placed(copy.copy(order), refusal, events)
        events.append(OrderChanged(copy.copy(order)))  # 48 unreported
        if order.order_type == BUY:
            order.frozen_cash = self._buy_freeze(order.price, order.volume)
            account.cash -= order.frozen_cash
            account.frozen_cash += order.frozen_cash
        else:
            position = account.positions[order.code]
            position.can_use -= order.volume
            position.frozen += order.volume
        order.sysid = str(self.next_sysid)  # digits, as counters number contracts ('635093411' in #152)
        self.next_sysid += 1
        status.advance(order, status.REPORTED)
        events.append(OrderChanged(copy.copy(order)))  # 50 reported
        if order.order_type == SELL:
            events.append(self._position_changed(account, account.positions[order.code]))
        events.append(AssetChanged(self.asset(account_id)))
        assert quote is not None
        if session.phase == CONTINUOUS:  # else it rests until continuous trading
            self._match_order(account, order, quote, events)
        if order.price_type in rules.CANCEL_REST_PRICE_TYPES and order.is_open:
            self._finish_cancel(account, order, events)  # immediate-or-cancel: the exchange drops the rest
        return Placed(copy.copy(order), None, events)

    def _session(self, code: str) -> CodeSession:
        return ALWAYS_OPEN if self._session_of is None else self._session_of(code)

    def _take_order_id(self) -> int:
        order_id = self.next_order_id
        self.next_order_id += 1
        return order_id

    def _refusal(
        self, account: Account, order: Order, quote: Quote | None, raw_price: Any, session: CodeSession
    ) -> Refusal | None:
        """Why the counter junks this order, or None; sets ``order.price``."""
        if order.price_type == rules.FIX_PRICE:
            try:  # a junk order still shows the price that was sent
                order.price = rules.to_decimal(raw_price)
            except ValueError:
                pass
        if quote is None:
            refusal = _refuse(ERR_UNKNOWN_CODE, stock_code=order.code)  # then the simulator's own note
            return Refusal(refusal.error_id, f"{refusal.message} ({unknown_code(order.code, self.config.instruments_file)})")
        if quote.instrument.is_index:
            return _refuse(ERR_INDEX, stock_code=order.code)
        code = order.code
        if session.phase == SUSPENDED:
            return _refuse(ERR_SUSPENDED, stock_code=code)
        if session.phase in (PRE_OPEN, CLOSED):
            return _refuse(ERR_TIME, stock_code=code)
        if order.order_type not in (BUY, SELL):
            return _refuse(ERR_ORDER_TYPE, order_type=order.order_type)
        if not rules.is_supported_price_type(order.price_type):
            return _refuse(ERR_PRICE_TYPE, price_type=order.price_type)
        if not rules.price_type_allowed(order.price_type, code):
            return _refuse(ERR_PRICE_TYPE_MARKET, price_type=order.price_type, stock_code=code)
        if order.price_type in rules.MARKET_PRICE_TYPES and session.phase != CONTINUOUS:
            # "市价申报只适用于有价格涨跌幅限制证券连续竞价期间的交易" (the SSE's and SZSE's trading rules)
            return _refuse(ERR_MARKET_SESSION, price_type=order.price_type, stock_code=code)
        if order.order_type == BUY and not rules.is_valid_buy_volume(code, order.volume):
            return _refuse(ERR_LOT, entrust_amount=order.volume)
        if order.volume <= 0:
            return _refuse(ERR_LOT, entrust_amount=order.volume)
        if order.price_type == rules.FIX_PRICE:
            try:
                price = rules.to_decimal(raw_price)
            except ValueError:
                return _refuse(ERR_TICK, entrust_price=raw_price)
            if not rules.is_on_tick(price, code):
                return _refuse(ERR_TICK, entrust_price=price, price_step=quote.tick)
            if not quote.down <= price <= quote.up:
                return _refuse(ERR_LIMIT, entrust_price=price, down_price=quote.down, up_price=quote.up)
            order.price = price.quantize(quote.tick)
        else:
            order.price = quote.last  # latest-price and market orders are priced at the last price
        if order.order_type == BUY:
            need = self._buy_freeze(order.price, order.volume)
            if need > account.cash:
                return _refuse(ERR_CASH, occur_balance=need, enable_balance=account.cash)
        else:
            position = account.positions.get(code)
            sellable = position.can_use if position else 0
            if order.volume > sellable:
                return _refuse(ERR_SHARES, occur_amount=order.volume, enable_amount=sellable)
            if not rules.is_valid_sell_volume(code, order.volume, sellable):
                return _refuse(ERR_LOT, entrust_amount=order.volume, enable_amount=sellable)
        cap = self.config.fill_volume
        if order.price_type == rules.MARKET_SZ_FULL_OR_CANCEL and 0 < cap < order.volume:
            return _refuse(ERR_FOK, entrust_amount=order.volume, match_amount=cap)
        return None

    def _buy_freeze(self, price: Decimal, volume: int) -> Decimal:
        if volume <= 0:
            return Decimal(0)
        amount = rules.trade_amount(price, volume)
        return amount + rules.commission(amount, self._rate, self._minimum)

    # -- cancels -------------------------------------------------------------------------

    def find_order(self, account_id: str, sysid: str, market: int) -> Order | None:
        """The order with this contract number on this market."""
        orders = self.account(account_id).orders.values()
        return next((o for o in orders if o.sysid == sysid and o.market == market), None)

    def cancel(self, account_id: str, order_id: int = -1, sysid: str = "", market: int = -1) -> Cancelled:
        """Cancel an order named by its contract number (``sysid`` and ``market``) if given, else
        by ``order_id``: pushed cancel-pending (51/52), then final (54/53), the rest unfrozen."""
        account = self.account(account_id)
        if sysid:
            order = self.find_order(account_id, sysid, market)
            requested_id = order.order_id if order else -1
        else:
            requested_id = order_id
            order = account.orders.get(order_id)
        if order is None:
            if sysid:
                refusal = _refuse(ERR_CANCEL_UNKNOWN, entrust_no=sysid)
            else:
                refusal = _refuse(ERR_CANCEL_UNKNOWN, order_id=requested_id)
            return Cancelled(requested_id, None, refusal, [])
        if not order.is_open:
            refusal = _refuse(ERR_CANCEL_FINAL, entrust_no=order.sysid, order_status=order.status)
            return Cancelled(requested_id, copy.copy(order), refusal, [])
        if not self._session(order.code).cancels:  # the order stays as it is
            refusal = _refuse(ERR_CANCEL_TIME, entrust_no=order.sysid, stock_code=order.code)
            return Cancelled(requested_id, copy.copy(order), refusal, [])
        status.advance(order, status.PARTSUCC_CANCEL if order.traded_volume else status.REPORTED_CANCEL)
        events: list[Event] = [OrderChanged(copy.copy(order))]
        self._finish_cancel(account, order, events)
        return Cancelled(requested_id, copy.copy(order), None, events)

    def _finish_cancel(self, account: Account, order: Order, events: list[Event]) -> None:
        """Make an open order final (cancelled / part-cancelled) and unfreeze what it held."""
        status.advance(order, status.PART_CANCEL if order.traded_volume else status.CANCELED)
        if order.order_type == BUY:
            account.frozen_cash -= order.frozen_cash
            account.cash += order.frozen_cash
            order.frozen_cash = Decimal(0)
        else:
            position = account.positions[order.code]
            position.frozen -= order.remaining
            position.can_use += order.remaining
        events.append(OrderChanged(copy.copy(order)))
        if order.order_type == SELL:
            events.append(self._position_changed(account, account.positions[order.code]))
        events.append(AssetChanged(self.asset(account.account_id)))

    # -- prices and matching -------------------------------------------------------------

    def set_price(self, code: str, price: float) -> list[Event]:
        """Move the last price (rounded to tick, must be inside the band), then match resting orders
        (in continuous trading only)."""
        quote = self.quote(code)
        value = rules.round_to_tick(rules.to_decimal(price), quote.tick)
        self._check_band(quote, value)
        quote.last = value
        self.moved.add(code)
        self.revalue()
        events: list[Event] = []
        if self._session(code).phase != CONTINUOUS:
            return events
        for order in self.open_orders(code):
            self._match_order(self.accounts[order.account_id], order, quote, events)
        return events

    def check_price(self, code: str, price: Any) -> Decimal:
        """A last price as the exchange would take it: on the code's tick and inside today's band;
        else ValueError naming the tick or the limit."""
        quote = self.known_quote(code)
        value = rules.to_decimal(price)
        if not rules.is_on_tick(value, code):
            raise ValueError(f"price {_plain(value)} of {code} is not on its tick of {quote.tick}")
        self._check_band(quote, value)
        return value.quantize(quote.tick)

    @staticmethod
    def _check_band(quote: Quote, value: Decimal) -> None:
        code = quote.instrument.code
        ratio = rules.limit_ratio(code, quote.instrument.name) * 100
        band = f"prev_close {quote.prev_close}, ±{_plain(ratio)}%"
        if value > quote.up:
            raise ValueError(f"{_plain(value)} is outside the daily limits of {code}: above the up limit (涨停) "
                             f"{quote.up} ({band})")
        if value < quote.down:
            raise ValueError(f"{_plain(value)} is outside the daily limits of {code}: below the down limit (跌停) "
                             f"{quote.down} ({band})")

    def known_quote(self, code: str) -> Quote:
        """``quote`` with the counter's own words for a code it does not list."""
        if code not in self.quotes:
            raise ValueError(unknown_code(code, self.config.instruments_file))
        return self.quote(code)

    def walking(self, frozen: Collection[str] = (), open_orders: list[Order] | None = None) -> set[str]:
        """The codes a step moves: in use (watched, with an open order, or held), not frozen."""
        orders = self.open_orders() if open_orders is None else open_orders
        live = self._watched.union(order.code for order in orders)
        for account in self.accounts.values():
            live.update(account.positions)
        live.difference_update(frozen)
        return live

    def step(self, frozen: Collection[str] = (), only: Collection[str] | None = None,
             orders: list[Order] | None = None) -> list[Event]:
        """One price-walk step (model "walk" only) and one matching pass over every open order.

        The walk moves the quotes in use: held, with an open order, or asked for (``quote``); the
        rest of a table of thousands stays at its last price, so a step costs what is in use.
        ``frozen``: codes the walk leaves alone this step (suspended, or not trading now); their
        orders are not matched either. ``only``: this part of the codes in use, and their orders
        (the counter steps a large table in parts, taking requests in between). ``orders``: the
        open orders of ``only``'s codes, in order id order, when the caller has them (finding them
        looks at every order of the day: a step in parts does it once, not once a part).
        """
        if orders is not None:
            open_orders = orders
        else:
            open_orders = self.open_orders()
            if only is not None:
                open_orders = [order for order in open_orders if order.code in only]
        if self.config.price_model == "walk":
            live = set(only) if only is not None else self.walking(frozen, open_orders)
            for code in live:
                quote = self.quotes[code]
                quote.last = self._walk_of(code).next_price(quote.last, quote.tick, quote.down, quote.up)
            self.moved |= live
            self.revalue()
        events: list[Event] = []
        for order in open_orders:
            if order.code not in frozen:
                self._match_order(self.accounts[order.account_id], order, self.quotes[order.code], events)
        return events

    def _walk_of(self, code: str) -> PriceWalk:
        """Each code walks on its own generator, seeded by the seed and the code: its path does
        not depend on which other codes move, nor on when they started to."""
        walk = self._walks.get(code)
        if walk is None:
            digest = hashlib.blake2b(f"{self.config.seed}:{code}".encode(), digest_size=8).digest()
            walk = self._walks[code] = PriceWalk(int.from_bytes(digest, "big"), self.config.walk_step)
        return walk

    def _match_order(self, account: Account, order: Order, quote: Quote, events: list[Event]) -> None:
        """One matching pass for one order: fill up to ``fill_volume`` at the last price."""
        if not order.is_open or not rules.is_marketable(order.order_type, order.price, quote.last):
            return
        cap = self.config.fill_volume
        volume = order.remaining if cap == 0 else min(cap, order.remaining)
        self._fill(account, order, quote.last, volume, events)

    def _fill(self, account: Account, order: Order, price: Decimal, volume: int, events: list[Event]) -> None:
        self._market_values.pop(account.account_id, None)  # its holding changes
        amount = rules.trade_amount(price, volume)
        fee = rules.commission(amount, self._rate, self._minimum)
        position = account.positions.get(order.code)
        if position is None:
            position = account.positions[order.code] = Position(order.code)
        order.traded_volume += volume
        order.traded_amount += amount
        if order.order_type == BUY:
            # Keep frozen exactly what the unfilled rest still needs; release the difference.
            still_frozen = self._buy_freeze(order.price, order.remaining)
            release = order.frozen_cash - still_frozen
            order.frozen_cash = still_frozen
            account.frozen_cash -= release
            account.cash += release - amount - fee
            position.volume += volume  # T+1: bought shares are not sellable today (can_use unchanged)
            position.cost += amount + fee
            position.open_cost += amount
        else:
            account.cash += amount - fee
            before = position.volume
            position.volume -= volume
            position.frozen -= volume
            if position.volume == 0:
                position.cost = position.open_cost = Decimal(0)
            else:  # sells leave the cost per share unchanged
                position.cost = position.cost * position.volume / before
                position.open_cost = position.open_cost * position.volume / before
        status.advance(order, status.SUCCEEDED if order.remaining == 0 else status.PART_SUCC)
        trade = Trade(
            account_id=order.account_id,
            stock_code=order.code,
            order_type=order.order_type,
            # A digit string of fixed width, e.g. '0303222200422222' in shidenggui/easytrader docs/miniqmt.md.
            traded_id=f"{self._take_trade_id():016d}",
            traded_time=int(self._clock()),
            traded_price=float(price),
            traded_volume=volume,
            traded_amount=float(amount),
            order_id=order.order_id,
            order_sysid=order.sysid,
            strategy_name=order.strategy_name,
            order_remark=order.order_remark,
            direction=xtconstant.DIRECTION_FLAG_LONG,
            offset_flag=offset_flag(order.order_type),
            commission=float(fee),
            secu_account=order.secu_account,
            instrument_name=order.name,
        )
        account.trades.append(trade)
        events.append(TradeMade(trade))
        events.append(OrderChanged(copy.copy(order)))
        events.append(self._position_changed(account, position))
        events.append(AssetChanged(self.asset(account.account_id)))

    def _take_trade_id(self) -> int:
        trade_id = self.next_trade_id
        self.next_trade_id += 1
        return trade_id

    # -- the day -------------------------------------------------------------------------

    def next_day(self) -> list[Event]:
        """Roll to the next trading day.

        Open orders expire (cancelled / part-cancelled, funds and shares unfrozen); the day's
        orders and trades are cleared; today's buys become sellable; positions at zero are
        dropped; prev_close := last, so the limit bands move. The id sequences go on.
        """
        events: list[Event] = []
        for order in self.open_orders():
            self._finish_cancel(self.accounts[order.account_id], order, events)
        for code, quote in self.quotes.items():
            if quote.prev_close != quote.last:  # else the band stays
                quote.rebase(quote.last)
                self.moved.add(code)
        for account in self.accounts.values():
            account.orders.clear()
            account.trades.clear()
            for code, position in list(account.positions.items()):
                if position.volume == 0:
                    del account.positions[code]
                    continue
                position.yesterday = position.can_use = position.volume
                position.frozen = 0
            for position in account.positions.values():
                events.append(self._position_changed(account, position))
            events.append(AssetChanged(self.asset(account.account_id)))
        return events

    # -- the operator's controls (the gateway's sim op) ------------------------------------

    def reset(self) -> list[Event]:
        """Back to the configured start: open orders expire as at a day's end (pushed, unfrozen),
        then every account holds ``cash`` and ``positions`` again with no orders or trades, and every
        quote is back at the instrument table's prices. The id sequences go on (ids never repeat)."""
        events: list[Event] = []
        for order in self.open_orders():
            self._finish_cancel(self.accounts[order.account_id], order, events)
        for code, quote in self.quotes.items():
            table = quote.instrument
            if quote.prev_close != table.prev_close or quote.last != table.last_price:
                quote.last = table.last_price
                quote.rebase(table.prev_close)
                self.moved.add(code)
        self._walks.clear()  # the walk starts again from the seed
        held = {account_id: account.positions for account_id, account in self.accounts.items()}
        for account in self.accounts.values():
            account.orders.clear()
            account.trades.clear()
            account.cash = rules.to_decimal(self.config.cash).quantize(rules.CENT)
            account.frozen_cash = Decimal(0)
            account.positions = {}
        self._load_positions(self.config.positions)
        self.revalue()
        for account in self.accounts.values():
            for code in held[account.account_id]:
                if code not in account.positions:  # gone: pushed at zero, as a position sold out
                    events.append(PositionChanged(account.account_id, Position(code)))
            for position in account.positions.values():
                events.append(self._position_changed(account, position))
            events.append(AssetChanged(self.asset(account.account_id)))
        return events

    def deposit(self, account_id: str, amount: Any) -> list[Event]:
        """Cash in (a bank transfer, 银证转账), or out when negative, up to the available cash."""
        account = self.account(account_id)
        value = rules.to_decimal(amount).quantize(rules.CENT)
        if value == 0:
            raise ValueError(f"amount {amount} is less than a cent")
        if account.cash + value < 0:
            raise ValueError(f"withdrawing {-value} is more than the available cash {account.cash} of account "
                             f"{account_id} (frozen for open buys: {account.frozen_cash})")
        account.cash += value
        return [AssetChanged(self.asset(account_id))]

    def set_position(self, account_id: str, code: str, volume: int) -> list[Event]:
        """Hold ``volume`` shares of ``code`` since yesterday: sellable today, less what open sells
        have frozen; the cost is the previous close, as for configured positions. Cash is unchanged."""
        account = self.account(account_id)
        quote = self.known_quote(code)
        if quote.instrument.is_index:
            raise ValueError(f"{code} is an index, which cannot be held")
        if volume < 0:
            raise ValueError(f"volume must be >= 0, got {volume}")
        position = account.positions.get(code)
        frozen = position.frozen if position is not None else 0
        if volume < frozen:
            raise ValueError(f"{frozen} shares of {code} are frozen by open sell orders of account {account_id}: "
                             f"cancel them first, or set at least {frozen}")
        if position is None:
            position = account.positions[code] = Position(code)
        position.volume = position.yesterday = volume
        position.can_use = volume - frozen
        position.cost = position.open_cost = quote.prev_close * volume
        self._market_values.pop(account_id, None)
        return [self._position_changed(account, position), AssetChanged(self.asset(account_id))]

    @staticmethod
    def _position_changed(account: Account, position: Position) -> PositionChanged:
        return PositionChanged(account.account_id, copy.copy(position))


def _plain(value: Decimal) -> str:
    """12 for 12.000000, 10.555 for 10.555000: a number as typed."""
    return format(value.normalize(), "f")


def _refuse(error: tuple[int, str], **checked: object) -> Refusal:
    return Refusal(error[0], counter_message(error, **checked))
