"""The simulated market as strategies see it through xtdata: ticks, bars, trading days.

``SimFeed`` turns the counter's quotes (``adapter.sim.books.Quote``) into xtdata's shapes, so
the price a strategy is quoted is the price its order fills at: ``lastPrice`` is the counter's
last price after every step. It has no thread of its own: the counter calls ``on_step`` on its
thread after each price step and ``set_price``; the queries (``full_tick``, ``market_data``,
``trading_dates`` ...) may come from any thread (one lock guards the state; history bars are
generated outside it).

Cadence: pushes follow the counter's ``tick_interval`` (default 1 s); QMT pushes a snapshot
every 3 s. ``on_step`` returns the ticks that changed (price, volume or status).

Session phases (``SimConfig.market_hours``):

* ``"always"`` (default): continuous trading at any hour on any day, as the sim trades
  (paper trading at night works); today's 1m bars are stamped by the clock minute.
* ``"exchange"``: the exchanges' day (China time) on trading days (``adapter.sim.calendar``):
  before 09:15 pre-open, 09:15-09:25 opening call auction, 09:25-09:30 no matching,
  09:30-11:30 continuous, lunch break, 13:00-14:57 continuous, 14:57-15:00 closing call
  auction (SZ, BJ, and SH stocks since 2018-08-20; SH funds trade continuously to 15:00),
  then closed; other days closed. The auctions' volume is added when they end (09:25, 15:00).
  09:25-09:30 shows status 14 (break): no matching until 09:30 (the sim's choice; the manual
  does not say).

Suspended codes (``SimConfig.suspended``) never trade: no volume, and their tick says so.
The counter agrees (``adapter.sim.books``): it asks ``session(code, now)`` and refuses orders in
suspended codes, and with exchange hours those it would not take now, and matches only in
continuous trading.
``frozen(now)`` names the codes whose price must not move now (suspended, or not in continuous
trading): the counter's walk leaves them alone.

Tick fields and types are those of xtdata's ``get_full_tick`` (the manual's tick fields plus
what real answers carry: ``timetag``, ``settlementPrice``, ``pe``, ``volRatio``, ``speed1Min``,
``speed5Min``). ``volume`` and the book volumes are lots of 100 shares, ``pvolume`` shares.
The status: real ticks carry the manual's 证券状态 code (11 pre-open, 12 auction, 13
continuous, 14 break, 15 closed, 17 suspended, 18 closing auction) in ``openInt`` and that
code minus 10 in ``stockStatus`` (``'stockStatus': 3, 'openInt': 13`` at 10:58, ``2``/``12`` at
09:23, ``5``/``15`` after the close, in public get_full_tick answers); the sim does the same.
The book: the ask at the last price, the bid one tick below, five levels each, none past the
limits (at the up limit no asks, at the down limit no bids); during the opening auction one
level, the indicative price on both sides.

Memory: today's 1m bars are kept for every code (at most 241 a code: with "always" the last
241 minutes); the day's ticks only for codes someone asked ticks of (``record_ticks``, or a
``market_data`` of period "tick"): at most ``TICK_HISTORY`` a code, ``TICK_CODES`` codes.
"""

from __future__ import annotations

import datetime as dt
import random
import struct
import threading
import time
import zlib
from array import array
from collections import OrderedDict
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from adapter import market as rules
from adapter.config import SimConfig
from adapter.sim import history
from adapter.sim.history import BAR_FIELDS, INTRADAY_MINUTES, LOT
from adapter.sim.instruments import unknown_code

TICK_FIELDS = (
    "time", "timetag", "lastPrice", "open", "high", "low", "lastClose", "amount", "volume", "pvolume",
    "stockStatus", "openInt", "transactionNum", "settlementPrice", "lastSettlementPrice", "pe",
    "askPrice", "bidPrice", "askVol", "bidVol", "volRatio", "speed1Min", "speed5Min",
)
PERIODS = ("tick",) + history.BAR_PERIODS
DIVIDEND_TYPES = ("none", "front", "back", "front_ratio", "back_ratio")
MARKETS = ("SH", "SZ", "BJ")

# 证券状态 (xtdata manual, data dictionary), as ticks carry it in openInt.
PRE_OPEN, AUCTION, CONTINUOUS, BREAK, CLOSED, SUSPENDED, CLOSING_AUCTION = 11, 12, 13, 14, 15, 17, 18

MAX_CODES = 6000  # codes in one query (the whole built-in table fits)
MAX_BARS = 2_000_000  # bars in one market_data answer, all codes together
TICK_HISTORY = 4800  # ticks kept per recorded code: a session at QMT's 3 s
TICK_CODES = 200  # codes whose ticks are recorded at once (the longest unasked is dropped)
DEFAULT_DAYS = {"1d": 1000, "intraday": 20}  # depth of "everything" (no start, count -1) unless downloaded
BOOK_LEVELS = 5
_LEVEL_SHIFTS = tuple(range(0, 12 * BOOK_LEVELS, 6))  # a book's 2 x 5 volumes: 6 bits of one hash each

_AUCTION_SHARE, _CLOSING_SHARE = 0.012, 0.02  # of a day's volume, matched in the call auctions
_SESSION_SECONDS = 4 * 3600


def _seconds(hhmm: str) -> int:
    return int(hhmm[:2]) * 3600 + int(hhmm[3:]) * 60


_T0915, _T0920, _T0925 = _seconds("09:15"), _seconds("09:20"), _seconds("09:25")
_T0930, _T1130 = _seconds("09:30"), _seconds("11:30")
_T1300, _T1457, _T1500 = _seconds("13:00"), _seconds("14:57"), _seconds("15:00")


def exchange_phase(second_of_day: int, closing_auction: bool) -> int:
    """The phase of a trading day at a second of the day (China time)."""
    if second_of_day < _T0915:
        return PRE_OPEN
    if second_of_day < _T0925:
        return AUCTION
    if second_of_day < _T0930:
        return BREAK  # the opening price is out; matching starts at 09:30
    if second_of_day < _T1130:
        return CONTINUOUS
    if second_of_day < _T1300:
        return BREAK
    if second_of_day < _T1457:
        return CONTINUOUS
    if second_of_day < _T1500:
        return CLOSING_AUCTION if closing_auction else CONTINUOUS
    return CLOSED


class CodeSession(NamedTuple):
    """Where one code's trading stands now, as the counter checks orders and cancels against it."""

    phase: int  # the 证券状态 code its tick shows
    cancels: bool  # whether the exchange takes a cancel now


ALWAYS_OPEN = CodeSession(CONTINUOUS, True)


def _cancels_accepted(second_of_day: int, closing_auction: bool) -> bool:
    # "每个交易日9:20至9:25的开盘集合竞价阶段、14:57至15:00的收盘集合竞价阶段，本所交易主机不接受撤单申报"
    # (上海证券交易所交易规则 and 深圳证券交易所交易规则; the sim treats BJ alike). SH funds have no closing auction.
    if _T0920 <= second_of_day < _T0925:
        return False
    return not (closing_auction and _T1457 <= second_of_day < _T1500)


def _minute_index(second_of_day: int, exchange: bool) -> int:
    """The 1m bar a trade at this second belongs to: with exchange hours the trading minute whose
    end stamps it (0 = the 09:30 auction bar .. 240 = 15:00), else the clock minute's end (1..1440)."""
    if not exchange:
        return second_of_day // 60 + 1
    if second_of_day < _T0930:
        return 0
    if second_of_day < _T1130:
        return (second_of_day - _T0930) // 60 + 1
    if second_of_day < _T1300:
        return 120
    if second_of_day < _T1500:
        return 120 + (second_of_day - _T1300) // 60 + 1
    return 240


def _label_minute(index: int, exchange: bool) -> int:
    return history.minute_of_day(index) if exchange else index


def parse_time(text: Any, name: str, end: bool) -> int | None:
    """xtdata's 'YYYYMMDD[hhmmss]' (China time) as epoch ms; '' is open (None). A day alone ends
    at its last millisecond when it is an end."""
    if text is None or text == "":
        return None
    if not isinstance(text, str) or not text.isdigit() or len(text) not in (8, 14):
        raise ValueError(f"{name}: {text!r} is not a time 'YYYYMMDD' or 'YYYYMMDDhhmmss'")
    try:
        moment = dt.datetime.strptime(text, "%Y%m%d%H%M%S" if len(text) == 14 else "%Y%m%d")
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a valid date or time") from None
    from adapter.sim import calendar

    ms = int(moment.replace(tzinfo=calendar.CHINA).timestamp() * 1000)
    if end and len(text) == 8:
        ms += calendar.DAY_MS - 1
    return ms


def _count(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < -1:
        raise ValueError(f"count: {count!r} is not -1 (all), 0 or a positive int")
    return count


# A recorded tick: time, last, open, high, low (ticks), shares, amount (shares x ticks), trades, status.
_TICK = struct.Struct("<qqqqqqqqb")


class _TickRing:
    """The last ``TICK_HISTORY`` ticks of one code, packed (65 bytes each)."""

    def __init__(self) -> None:
        self._buffer = bytearray(TICK_HISTORY * _TICK.size)
        self._count = 0

    def add(self, *values: int) -> None:
        _TICK.pack_into(self._buffer, (self._count % TICK_HISTORY) * _TICK.size, *values)
        self._count += 1

    def rows(self) -> list[tuple[int, ...]]:
        if self._count <= TICK_HISTORY:
            return list(_TICK.iter_unpack(memoryview(self._buffer)[: self._count * _TICK.size]))
        cut = (self._count % TICK_HISTORY) * _TICK.size
        view = memoryview(self._buffer)
        return list(_TICK.iter_unpack(view[cut:])) + list(_TICK.iter_unpack(view[:cut]))


_BAR = 7  # a 1m bar in a code's array: index, open, high, low, close, shares, amount (shares x ticks)


class _Code:
    """One instrument's market today (prices in ticks of 1/scale CNY)."""

    __slots__ = (
        "code", "instrument", "scale", "kind", "closing_auction", "suspended", "_lots", "_steps_per_day", "key", "cash_price",
        "last_dec", "pre_dec", "last", "pre", "down", "up", "open", "high", "low", "shares", "amount",
        "trades", "status", "time", "opened", "closed", "bars", "ticks", "book_second", "book_volumes",
    )

    def __init__(self, code: str, quote: Any, suspended: bool, steps_per_day: float) -> None:
        self.code = code
        self.instrument = quote.instrument
        self.scale = 1000 if quote.tick == rules.FUND_TICK else 100
        self.kind = getattr(quote.instrument, "kind", "") or "stock"
        # the price (ticks) a trade's amount is counted at: its own, or an index's constituents'
        self.cash_price = int(history.INDEX_SHARE_PRICE * self.scale) if self.kind == "index" else 0
        # SZ and BJ close by call auction for everything, SH for stocks (not funds) since 2018-08-20.
        self.closing_auction = not (code.endswith(".SH") and self.scale == 1000)
        self.suspended = suspended
        self._lots: tuple[float, float] | None = None
        self._steps_per_day = steps_per_day
        self.key = zlib.crc32(code.encode("ascii")) * 0x9E3779B1
        self.last_dec = self.pre_dec = Decimal(0)
        self.last = self.pre = self.down = self.up = 0
        self.status = CONTINUOUS
        self.time = 0
        self.bars = array("q")
        self.ticks: _TickRing | None = None
        self.book_second = -1  # the second book_volumes were drawn for
        self.book_volumes: list[int] = []
        self.new_day()

    def _volumes(self) -> tuple[float, float]:
        # Worked out when first needed: thousands of codes start at once.
        if self._lots is None:
            lots = history.base_lots(self.instrument, float(self.pre_dec) or 1.0)
            self._lots = (lots, lots / self._steps_per_day)
        return self._lots

    @property
    def base_lots(self) -> float:
        """A day's volume (lots)."""
        return self._volumes()[0]

    @property
    def step_lots(self) -> float:
        """One step's volume (lots)."""
        return self._volumes()[1]

    def new_day(self) -> None:
        self.open = self.high = self.low = 0
        self.shares = self.amount = self.trades = 0
        self.opened = self.closed = False
        del self.bars[:]
        if self.ticks is not None:
            self.ticks = _TickRing()

    def price(self, ticks: int) -> float:
        return ticks / self.scale if ticks else 0.0


class SimFeed:
    """The simulated market over the counter's quotes (``{code: Quote}``)."""

    def __init__(
        self,
        config: SimConfig,
        quotes: Mapping[str, Any],
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or time.time
        self._exchange = config.market_hours == "exchange"
        self._lock = threading.Lock()
        self._rng = random.Random(f"{config.seed}:feed")
        suspended = set(config.suspended)
        unknown = sorted(suspended - set(quotes))
        if unknown:
            raise ValueError(f"sim.suspended: {', '.join(unknown)} not in the instrument table")
        # A day's volume spread over the steps of a day: a session, or the whole day with "always".
        steps_per_day = (_SESSION_SECONDS if self._exchange else 86_400) / max(config.tick_interval, 1e-6)
        self._codes: dict[str, _Code] = {}
        for code, quote in quotes.items():
            self._codes[code] = _Code(code, quote, code in suspended, steps_per_day)
        self._suspended = frozenset(suspended)
        self._all = frozenset(self._codes)
        self._by_market: dict[str, list[str]] = {m: [c for c in self._codes if c.endswith("." + m)] for m in MARKETS}
        self._recorded: OrderedDict[str, None] = OrderedDict()  # codes whose ticks are kept, oldest ask first
        self._downloaded: dict[tuple[str, str], int] = {}  # (code, period) -> first day asked (ordinal)
        self._day = -1  # ordinal of the feed's day
        self._trading_day = True
        if self._exchange:
            from adapter.sim import calendar

            calendar.covered()  # load the holidays now, not at the first step
        self.on_step(int(self._clock() * 1000), quotes, ticks=False)

    # -- driven by the counter -------------------------------------------------------

    def frozen(self, now_ms: int) -> frozenset[str] | set[str]:
        """Codes whose price the walk must leave alone now: suspended, or not in continuous trading."""
        if not self._exchange:
            return self._suspended
        with self._lock:
            self._roll(now_ms)
            if not self._trading_day:
                return self._all
            second = self._second(now_ms)
            if exchange_phase(second, True) == CONTINUOUS:
                return self._suspended
            if exchange_phase(second, False) != CONTINUOUS:
                return self._all
            # 14:57-15:00: SH funds trade on, the rest is in the closing auction
            return {c for c, st in self._codes.items() if st.suspended or st.closing_auction}

    def session(self, code: str, now_ms: int) -> CodeSession:
        """The phase ``code`` is in at ``now_ms`` and whether cancels are taken (unknown codes:
        open; the counter refuses those itself)."""
        st = self._codes.get(code)
        if st is None or not self._exchange:
            return CodeSession(SUSPENDED, True) if st is not None and st.suspended else ALWAYS_OPEN
        with self._lock:
            self._roll(now_ms)
            second = self._second(now_ms)
            cancels = not self._trading_day or _cancels_accepted(second, st.closing_auction)
            return CodeSession(self._phase(st.suspended, st.closing_auction, second), cancels)

    def on_step(self, now_ms: int, quotes: Mapping[str, Any], ticks: bool = True) -> dict[str, dict[str, Any]]:
        """Take the counter's quotes after a price step (or ``set_price``, with the one quote):
        trades at changed prices, phase changes, auction matches; ``{code: tick}`` of every code
        whose tick changed (``ticks=False``: the same work, an empty answer)."""
        changed: dict[str, dict[str, Any]] = {}
        with self._lock:
            self._roll(now_ms)
            second = self._second(now_ms)
            index = _minute_index(second, self._exchange)
            phases = {(s, c): self._phase(s, c, second) for s in (False, True) for c in (False, True)}
            can_open = not self._exchange or (self._trading_day and second >= _T0925 and second < _T1500)
            closing = self._exchange and self._trading_day and second >= _T1500
            timetag = None
            codes = self._codes
            for code, quote in quotes.items():
                st = codes.get(code)
                if st is None:
                    continue
                phase = phases[st.suspended, st.closing_auction]
                if (  # nothing new: most codes at most steps
                    quote.last == st.last_dec and phase == st.status and quote.prev_close == st.pre_dec
                    and (st.opened or st.suspended or not can_open) and not (closing and st.opened and not st.closed)
                ):
                    continue
                if self._update(st, quote, now_ms, index, phase, can_open, closing):
                    if st.ticks is not None:
                        st.ticks.add(now_ms, st.last, st.open, st.high, st.low, st.shares, st.amount, st.trades, st.status)
                    if ticks:
                        if timetag is None:
                            timetag = _timetag(now_ms)
                        changed[code] = self._tick(st, timetag)
        return changed

    def next_day(self, quotes: Mapping[str, Any], ticks: bool = True) -> dict[str, dict[str, Any]]:
        """The counter rolled its day (prev_close := last): today's market starts again; the
        ticks as ``on_step`` gives them."""
        with self._lock:
            for st in self._codes.values():
                st.new_day()
        return self.on_step(int(self._clock() * 1000), quotes, ticks=ticks)

    def _roll(self, now_ms: int) -> None:
        from adapter.sim.calendar import CHINA

        day = dt.datetime.fromtimestamp(now_ms / 1000, CHINA).date().toordinal()
        if day == self._day:
            return
        if self._day != -1:
            for st in self._codes.values():
                st.new_day()
        self._day = day
        if self._exchange:
            from adapter.sim import calendar

            self._trading_day = calendar.is_trading_day(dt.date.fromordinal(day))

    @staticmethod
    def _second(now_ms: int) -> int:
        return ((now_ms // 1000) + 8 * 3600) % 86_400

    def _phase(self, suspended: bool, closing_auction: bool, second: int) -> int:
        if not self._exchange:
            return SUSPENDED if suspended else CONTINUOUS
        if not self._trading_day:
            return CLOSED
        phase = exchange_phase(second, closing_auction)
        if suspended and phase not in (PRE_OPEN, CLOSED):
            return SUSPENDED
        return phase

    def _update(self, st: _Code, quote: Any, now_ms: int, index: int, phase: int, can_open: bool, closing: bool) -> bool:
        """Apply one quote; True when the code's tick changed."""
        changed = False
        if quote.prev_close != st.pre_dec:
            st.pre_dec = quote.prev_close
            st.pre = int(quote.prev_close * st.scale)
            st.down, st.up = int(quote.down * st.scale), int(quote.up * st.scale)
            changed = True
        moved = quote.last != st.last_dec
        if moved:
            st.last_dec = quote.last
            st.last = int(quote.last * st.scale)
            changed = True
        if phase != st.status:
            st.status = phase
            changed = True
        if st.suspended:
            if changed:
                st.time = now_ms
            return changed
        if not st.opened and can_open:  # the opening auction's match ("always": the day starts at the price it finds)
            st.opened = True
            st.open = st.high = st.low = st.last
            if self._exchange:
                self._trade(st, st.last, int(st.base_lots * _AUCTION_SHARE), 0)
            changed = True
        elif moved and phase == CONTINUOUS and st.opened:
            self._trade(st, st.last, max(1, int(st.step_lots * (0.5 + self._rng.random()))), index)
        elif moved and st.opened:  # moved outside matching (set_price): the quote follows, nothing trades
            st.high, st.low = max(st.high, st.last), min(st.low, st.last)
        if closing and st.opened and not st.closed:  # the closing auction's match, once a day
            st.closed = True
            if st.closing_auction and st.kind != "index":
                self._trade(st, st.last, int(st.base_lots * _CLOSING_SHARE), 240)
                changed = True
        if changed:
            st.time = now_ms
        return changed

    @staticmethod
    def _trade(st: _Code, price: int, lots: int, index: int) -> None:
        if lots <= 0:
            return
        shares = lots * LOT
        st.high, st.low = max(st.high, price), min(st.low, price) if st.low else price
        cash = shares * (st.cash_price or price)
        st.shares += shares
        st.amount += cash
        st.trades += 1 + lots // 50
        bars = st.bars
        if len(bars) and bars[-_BAR] == index:
            bars[-5] = max(bars[-5], price)
            bars[-4] = min(bars[-4], price)
            bars[-3] = price
            bars[-2] += shares
            bars[-1] += cash
        else:
            bars.extend((index, price, price, price, price, shares, cash))
            if len(bars) > 241 * _BAR:  # "always": the last 241 minutes
                del bars[:_BAR]

    # -- ticks -----------------------------------------------------------------------

    def _tick(self, st: _Code, timetag: str | None = None, row: tuple[int, ...] | None = None) -> dict[str, Any]:
        if row is None:
            row = (st.time, st.last, st.open, st.high, st.low, st.shares, st.amount, st.trades, st.status)
        when, last, opened, high, low, shares, amount, trades, status = row
        scale = st.scale
        pre = st.price(st.pre)
        ask, bid, ask_vol, bid_vol = self._book(st, when, last, status)
        return {
            "time": when,
            "timetag": timetag or _timetag(when),
            "lastPrice": last / scale,
            "open": opened / scale,
            "high": high / scale,
            "low": low / scale,
            "lastClose": pre,
            "amount": round(amount / scale, 2),
            "volume": shares // LOT,
            "pvolume": shares,
            "stockStatus": status - 10,
            "openInt": status,
            "transactionNum": trades,
            "settlementPrice": 0.0,
            "lastSettlementPrice": pre,
            "pe": 0.0,
            "askPrice": ask,
            "bidPrice": bid,
            "askVol": ask_vol,
            "bidVol": bid_vol,
            "volRatio": 0.0,
            "speed1Min": 0.0,
            "speed5Min": 0.0,
        }

    @staticmethod
    def _book(st: _Code, when: int, last: int, status: int) -> tuple[list[float], list[float], list[int], list[int]]:
        """Five levels a side around the last price, inside the limits; lots from a hash of the
        code and the second (the same tick always shows the same book)."""
        if st.kind == "index" or status in (SUSPENDED, CLOSED, PRE_OPEN) or not last:
            return [0.0] * BOOK_LEVELS, [0.0] * BOOK_LEVELS, [0] * BOOK_LEVELS, [0] * BOOK_LEVELS
        second = when // 1000
        if st.book_second == second:  # a flood steps a code several times a second
            volumes = st.book_volumes
        else:
            bits = ((st.key ^ second) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
            size = max(int(st.step_lots * 4), 1)
            volumes = [1 + (((bits >> shift) & 63) * size >> 6) for shift in _LEVEL_SHIFTS]  # 6 bits a level
            st.book_second, st.book_volumes = second, volumes
        scale = st.scale
        if status == AUCTION:  # the indicative price on both sides, one level
            price = [last / scale] + [0.0] * (BOOK_LEVELS - 1)
            return price, list(price), [volumes[0]] + [0] * (BOOK_LEVELS - 1), [volumes[1]] + [0] * (BOOK_LEVELS - 1)
        down, up = max(st.down, 1), st.up
        if last >= up:  # at the up limit nobody sells; buyers queue from the limit down
            asks, bids = 0, min(BOOK_LEVELS, last - down + 1)
            bid_top = last
        elif last <= down:  # at the down limit nobody buys
            asks, bids, bid_top = min(BOOK_LEVELS, up - last + 1), 0, 0
        else:
            asks, bids, bid_top = min(BOOK_LEVELS, up - last + 1), min(BOOK_LEVELS, last - down), last - 1
        if asks == bids == BOOK_LEVELS:  # most ticks: away from both limits
            return ([last / scale, (last + 1) / scale, (last + 2) / scale, (last + 3) / scale, (last + 4) / scale],
                    [bid_top / scale, (bid_top - 1) / scale, (bid_top - 2) / scale, (bid_top - 3) / scale,
                     (bid_top - 4) / scale],
                    volumes[:BOOK_LEVELS], volumes[BOOK_LEVELS:])
        pad_f, pad_i = [0.0] * BOOK_LEVELS, [0] * BOOK_LEVELS
        ask_prices = [(last + i) / scale for i in range(asks)] + pad_f[asks:]
        bid_prices = [(bid_top - i) / scale for i in range(bids)] + pad_f[bids:]
        return ask_prices, bid_prices, volumes[:asks] + pad_i[asks:], volumes[BOOK_LEVELS:BOOK_LEVELS + bids] + pad_i[bids:]

    # -- queries ---------------------------------------------------------------------

    def codes(self, market: str | None = None) -> list[str]:
        """Every code the market lists (of one market: "SH", "SZ", "BJ")."""
        return list(self._codes) if market is None else list(self._by_market.get(market, ()))

    def _check_codes(self, codes: Any, name: str, markets: bool = False) -> list[str]:
        if isinstance(codes, str):
            codes = [codes]
        if not isinstance(codes, (list, tuple)):
            raise ValueError(f"{name}: a list of codes, got {type(codes).__name__}")
        found: dict[str, None] = {}
        for code in codes:
            if markets and code in self._by_market:
                found.update(dict.fromkeys(self._by_market[code]))
            elif isinstance(code, str) and code in self._codes:
                found[code] = None
            elif isinstance(code, str):  # as the counter's refusal says it (adapter.sim.books)
                raise ValueError(f"{name}: unknown code {code!r} ({unknown_code(code, self.config.instruments_file)})")
            else:
                raise ValueError(f"{name}: {code!r} is not a code (a string such as '600000.SH')")
        if len(found) > MAX_CODES:
            raise ValueError(f"{name}: {len(found)} codes, at most {MAX_CODES} in one call")
        return list(found)

    def full_tick(self, codes: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``xtdata.get_full_tick``: the latest tick of each code; a market ("SH", "SZ", "BJ")
        stands for all its codes."""
        wanted = self._check_codes(codes, "code_list", markets=True)
        with self._lock:
            return {code: self._tick(self._codes[code]) for code in wanted}

    def record_ticks(self, codes: Sequence[str]) -> None:
        """Keep the day's ticks of these codes from now on (a tick subscription): ``market_data``
        of period "tick" answers what was kept."""
        wanted = self._check_codes(codes, "stock_list")
        with self._lock:
            self._record(wanted)

    def _record(self, codes: Iterable[str]) -> None:
        for code in codes:
            st = self._codes[code]
            self._recorded[code] = None
            self._recorded.move_to_end(code)
            if st.ticks is None:
                st.ticks = _TickRing()
                st.ticks.add(st.time, st.last, st.open, st.high, st.low, st.shares, st.amount, st.trades, st.status)
        while len(self._recorded) > TICK_CODES:
            dropped, _ = self._recorded.popitem(last=False)
            self._codes[dropped].ticks = None

    def trading_dates(self, market: str, start_time: str = "", end_time: str = "", count: int = -1) -> list[int]:
        """``xtdata.get_trading_dates``: the market's trading days in [start, end] as epoch ms of
        their midnight (China time), the last ``count`` of them (-1: all). An empty end is today."""
        from adapter.sim import calendar

        calendar.check_market(market)
        start = parse_time(start_time, "start_time", end=False)
        end = parse_time(end_time, "end_time", end=True)
        count = _count(count)
        _check_order(start, end)
        if count == 0:
            return []
        last = calendar.ms_day(end).toordinal() if end is not None else calendar.ms_day(int(self._clock() * 1000)).toordinal()
        first = calendar.ms_day(start).toordinal() if start is not None else history.FIRST_DAY
        if start is not None and calendar.ordinal_ms(first) < start:
            first += 1  # a start inside a day leaves that day out
        if count > 0 and start is None:
            days = calendar.last_trading_ordinals(last, count)
        else:
            days = calendar.trading_ordinals(first, last)
            if count > 0:
                days = days[-count:]
        return [calendar.ordinal_ms(d) for d in days if d >= history.FIRST_DAY]

    def download_history(
        self,
        stock_list: Any,
        period: str,
        start_time: str = "",
        end_time: str = "",
        callback: Callable[[dict[str, Any]], None] | None = None,
        incrementally: bool | None = None,
    ) -> list[dict[str, Any]]:
        """``xtdata.download_history_data(2)``: nothing to fetch in the sim, but what was asked
        becomes "local data" (an open-ended ``market_data`` reaches back to the earliest start
        downloaded). Progress as xtdata's callback gets it, once per code, also returned."""
        codes = self._check_codes(stock_list, "stock_list")
        _check_period(period)
        start = parse_time(start_time, "start_time", end=False)
        end = parse_time(end_time, "end_time", end=True)
        _check_order(start, end)
        progress = []
        if start is not None:
            from adapter.sim import calendar

            first = calendar.ms_day(start).toordinal()
            with self._lock:
                for code in codes:
                    key = (code, _depth_key(period))
                    self._downloaded[key] = min(first, self._downloaded.get(key, first))
        for done, code in enumerate(codes, 1):
            item = {"finished": done, "total": len(codes), "stockcode": code, "message": ""}
            progress.append(item)
            if callback is not None:
                callback(dict(item))
        return progress

    def local_data(self, *args: Any, **kwargs: Any) -> dict[str, dict[str, list[Any]]]:
        """``xtdata.get_local_data``: the same as ``market_data`` in the sim."""
        return self.market_data(*args, **kwargs)

    def market_data(
        self,
        field_list: Sequence[str] = (),
        stock_list: Sequence[str] = (),
        period: str = "1d",
        start_time: str = "",
        end_time: str = "",
        count: int = -1,
        dividend_type: str = "none",
        fill_data: bool = True,
    ) -> dict[str, dict[str, list[Any]]]:
        """``xtdata.get_market_data_ex``: ``{code: {field: [values]}}``, plain columns oldest
        first, ``time`` always among them. History and today joined; [start, end] both included
        (a day alone as the end means up to its end); the last ``count`` bars of that range (-1:
        all; with no start, all is ``DEFAULT_DAYS`` trading days of history and today, unless a
        download asked for more). ``fill_data`` fills minutes without trades today with flat bars."""
        codes = self._check_codes(stock_list, "stock_list")
        _check_period(period)
        fields = _check_fields(field_list, TICK_FIELDS if period == "tick" else BAR_FIELDS)
        start = parse_time(start_time, "start_time", end=False)
        end = parse_time(end_time, "end_time", end=True)
        count = _count(count)
        _check_order(start, end)
        if dividend_type not in DIVIDEND_TYPES:
            raise ValueError(f"dividend_type: {dividend_type!r} is not one of {', '.join(DIVIDEND_TYPES)}")
        if count == 0:
            return {code: {name: [] for name in fields} for code in codes}
        if period == "tick":
            return self._tick_data(codes, fields, start, end, count)
        return self._bar_data(codes, fields, period, start, end, count, bool(fill_data))

    def _tick_data(
        self, codes: list[str], fields: list[str], start: int | None, end: int | None, count: int
    ) -> dict[str, dict[str, list[Any]]]:
        out = {}
        with self._lock:
            self._record(codes)
            for code in codes:
                st = self._codes[code]
                assert st.ticks is not None
                rows = [r for r in st.ticks.rows() if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
                if count > 0:
                    rows = rows[-count:]
                ticks = [self._tick(st, None, r) for r in rows]
                out[code] = {name: [t[name] for t in ticks] for name in fields}
        return out

    def _bar_data(
        self, codes: list[str], fields: list[str], period: str, start: int | None, end: int | None, count: int,
        fill: bool,
    ) -> dict[str, dict[str, list[Any]]]:
        from adapter.sim import calendar

        now_ms = int(self._clock() * 1000)
        today = calendar.ms_day(now_ms)
        anchor = calendar.previous_trading_day(today).toordinal()
        with self._lock:  # what today holds, copied: history is made outside the lock
            todays = {code: self._today_bars(self._codes[code], period, fill) for code in codes}
            specs = {code: history.make_spec(self._codes[code].instrument, self._codes[code].pre_dec) for code in codes}
            downloaded = {code: self._downloaded.get((code, _depth_key(period))) for code in codes}
        last_day = anchor if end is None else min(anchor, calendar.ms_day(end).toordinal())
        per_day = 1 if period == "1d" else len(history.bar_minutes(period))
        plans = {}
        total = 0
        for code in codes:
            today_rows = [r for r in todays[code] if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
            if start is not None:
                first = calendar.ms_day(start).toordinal()
            elif count > 0:
                need = max(count - len(today_rows), 0)
                first = last_day + 1 if need == 0 else calendar.last_trading_ordinals(last_day, -(-need // per_day))[0]
            else:
                depth = DEFAULT_DAYS["1d" if period == "1d" else "intraday"]
                first = calendar.last_trading_ordinals(last_day, depth)[0]
                earliest = downloaded[code]
                if earliest is not None:
                    first = min(first, earliest)
            first = max(first, specs[code].first_day)
            days = len(calendar.trading_ordinals(first, last_day)) if first <= last_day else 0
            total += min(days * per_day, count if count > 0 else days * per_day) + len(today_rows)
            plans[code] = (first, today_rows)
        if total > MAX_BARS:
            raise ValueError(
                f"start_time/count: the answer would hold {total} bars, at most {MAX_BARS}; ask fewer codes or a shorter range"
            )
        out = {}
        seed = self.config.seed
        for code in codes:
            first, today_rows = plans[code]
            columns: dict[str, list[Any]]
            if first <= last_day:
                made = history.bars(specs[code], seed, period, first, last_day, anchor)
                times = made["time"]
                low = 0 if start is None else int(times.searchsorted(start, side="left"))
                high = len(times) if end is None else int(times.searchsorted(end, side="right"))
                columns = {name: made[name][low:high].tolist() for name in fields}
            else:
                columns = {name: [] for name in fields}
            positions = [BAR_FIELDS.index(name) for name in fields]
            for row in today_rows:
                for name, position in zip(fields, positions):
                    columns[name].append(row[position])
            if count > 0:
                columns = {name: values[-count:] for name, values in columns.items()}
            out[code] = columns
        return out

    def _today_bars(self, st: _Code, period: str, fill: bool) -> list[tuple[Any, ...]]:
        """Today's bars of one code as rows in ``BAR_FIELDS`` order (under the lock)."""
        from adapter.sim import calendar

        if self._day < 0 or not (st.opened or (st.suspended and st.status not in (PRE_OPEN, CLOSED))):
            return []
        if not self._trading_day:
            return []
        midnight = calendar.ordinal_ms(self._day)
        scale = st.scale
        if period == "1d":
            if st.suspended:
                p = st.pre / scale
                return [(midnight, p, p, p, p, 0, 0.0, 0.0, 0, p, 1)]
            return [(
                midnight, st.open / scale, st.high / scale, st.low / scale, st.last / scale,
                st.shares // LOT, round(st.amount / scale, 2), 0.0, 0, st.pre / scale, 0,
            )]
        raw = st.bars
        minutes = [tuple(raw[i:i + _BAR]) for i in range(0, len(raw), _BAR)]
        if fill and minutes:
            minutes = _fill_minutes(minutes, self._exchange)
        step = INTRADAY_MINUTES[period]
        grouped: list[list[int]] = []
        for index, o, h, lo, c, shares, amount in minutes:
            # the period's end; the 09:30 auction bar is a 1m bar of its own and joins the first of the others
            group = index if step == 1 else max(1, -(-index // step)) * step
            if grouped and grouped[-1][0] == group:
                bar = grouped[-1]
                bar[2], bar[3], bar[4] = max(bar[2], h), min(bar[3], lo), c
                bar[5] += shares
                bar[6] += amount
            else:
                grouped.append([group, o, h, lo, c, shares, amount])
        rows = []
        previous = st.pre
        for group, o, h, lo, c, shares, amount in grouped:
            rows.append((
                midnight + _label_minute(group, self._exchange) * 60_000, o / scale, h / scale, lo / scale, c / scale,
                shares // LOT, round(amount / scale, 2), 0.0, 0, previous / scale, 0,
            ))
            previous = c
        return rows


def _fill_minutes(minutes: list[tuple[int, ...]], exchange: bool) -> list[tuple[int, ...]]:
    """Flat bars (the close before, no volume) for minutes without trades between the first and the last."""
    out = [minutes[0]]
    for bar in minutes[1:]:
        gap_from = out[-1][0] + 1
        close = out[-1][4]
        out.extend((index, close, close, close, close, 0, 0) for index in range(gap_from, bar[0]))
        out.append(bar)
    return out


def _timetag(ms: int) -> str:
    from adapter.sim.calendar import CHINA

    return dt.datetime.fromtimestamp(ms / 1000, CHINA).strftime("%Y%m%d %H:%M:%S")


def _check_period(period: Any) -> None:
    if period not in PERIODS:
        raise ValueError(f"period: {period!r} is not one of {', '.join(PERIODS)}")


def _depth_key(period: str) -> str:
    return "1d" if period == "1d" else "intraday"


def _check_fields(field_list: Any, known: Sequence[str]) -> list[str]:
    if isinstance(field_list, str) or not isinstance(field_list, (list, tuple)):
        raise ValueError(f"field_list: a list of field names, got {field_list!r}")
    unknown = [name for name in field_list if name not in known]
    if unknown:
        raise ValueError(f"field_list: unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    fields = list(dict.fromkeys(field_list)) if field_list else list(known)
    if "time" not in fields:
        fields.insert(0, "time")
    return fields


def _check_order(start: int | None, end: int | None) -> None:
    if start is not None and end is not None and start > end:
        raise ValueError("start_time is after end_time")
