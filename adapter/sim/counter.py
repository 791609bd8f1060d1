"""The simulated broker counter: accounts, order book, matching and A-share rules.

One thread (the counter's, which plays the native client's network thread) owns every
piece of book state. Other threads only enqueue work: native clients post requests and do
not wait; the test/ops hooks (``set_price``, ``step`` ...) wait for their work to be done.
Every callback into a native client is made from that thread.

Accounting choices (the brief left them open):

* ``avg_price`` is the holding cost per share *including* buy commissions (weighted
  average); sells do not change it. ``open_price`` is the same without commissions.
* A position sold down to zero stays listed, with volume 0, until ``next_day()``.
* A market-type buy freezes cash at the last price (where the simulator fills it), not at
  the up-limit price a real counter would use.
* Commission is frozen for a buy once, as estimated for the whole order; partial fills
  each pay at least ``commission_min``, so many small fills may cost more than was frozen.
* Queries and orders need the account to be subscribed in the requesting session; a
  query that cannot be served answers ``None`` (never an empty list).

Delivery and durability: every task on the counter thread (a request, a price move, a
matching pass, an ops hook) queues its responses and pushes; when the task is done its book
changes are written to the state file (``state_path``, see ``adapter.sim.store``) in one
transaction, and only then are the queued callbacks delivered. So whatever a client has been
told (an accepted order, a fill) is already on disk when it learns it, and a counter killed
at any point restarts from books that are at least as new as anything any client saw.

Connection loss (``drop_connections``) only affects sessions: the counter keeps matching
(price moves, the walk, resting orders fill), and the pushes of that time are lost for the
dropped sessions, as with a real disconnect. A dropped session never comes back: a client
reconnects with a new session (``connect()``), best from a new ``XtQuantTrader``, subscribes
again and queries to learn what happened meanwhile.
"""

from __future__ import annotations

import collections
import copy
import concurrent.futures
import functools
import heapq
import itertools
import logging
import os
import queue
import threading
import time
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable, TypeVar

from adapter.config import SimConfig
from adapter import market as rules
from adapter.sim.instruments import Instrument, load_instruments
from adapter.sim.native import (
    CB_ACCOUNT_STATUS,
    CB_ASSET,
    CB_CANCEL_ERROR,
    CB_CANCEL_RESP,
    CB_DISCONNECTED,
    CB_ORDER,
    CB_ORDER_ERROR,
    CB_ORDER_RESP,
    CB_POSITION,
    CB_SUBSCRIBE,
    CB_TRADE,
    CB_UNSUBSCRIBE,
    CREDIT_QUERIES,
    RESPONSE_CALLBACKS,
    AccountInfo,
    AccountStatusPush,
    CancelOrderStockResp,
    OrderStockResp,
    RequestFields,
    XtQuantAsyncClient,
    failure_deliveries,
    make_cancel_error,
    make_order_error,
)
from adapter.sim.prices import PriceWalk
from adapter.sim.store import ORDER_COLUMNS, TRADE_COLUMNS, Changes, StateFile
from xtquant import xtconstant, xttype

log = logging.getLogger(__name__)

# XtOrderError.error_id of an order the counter refused: QMT reports -61 and puts the counter's
# code in error_msg ("order_id=10231, error_id=-61, error_msg=限价买入 [SZ162411] [COUNTER]
# [12313][...]", shidenggui/easytrader easytrader/miniqmt/miniqmt_trader.py docstrings).
ORDER_REFUSED_ERROR_ID = -61

T = TypeVar("T")

STOCK_ACCOUNT = xtconstant.SECURITY_ACCOUNT
BUY = xtconstant.STOCK_BUY
SELL = xtconstant.STOCK_SELL

UNREPORTED = xtconstant.ORDER_UNREPORTED
REPORTED = xtconstant.ORDER_REPORTED
REPORTED_CANCEL = xtconstant.ORDER_REPORTED_CANCEL
PARTSUCC_CANCEL = xtconstant.ORDER_PARTSUCC_CANCEL
PART_CANCEL = xtconstant.ORDER_PART_CANCEL
CANCELED = xtconstant.ORDER_CANCELED
PART_SUCC = xtconstant.ORDER_PART_SUCC
SUCCEEDED = xtconstant.ORDER_SUCCEEDED
JUNK = xtconstant.ORDER_JUNK
OPEN_STATUSES = frozenset({UNREPORTED, REPORTED, PART_SUCC})

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


def counter_message(error: tuple[int, str], **checked: object) -> str:
    """The counter's text for a refusal: ``[COUNTER] [id][text][key=value,...]``."""
    text = f"[COUNTER] [{error[0]}][{error[1]}]"
    if checked:
        text += "[" + ",".join(f"{key}={value}" for key, value in checked.items()) + "]"
    return text


def order_error_message(order_type: int, price_type: int, code: str, status_msg: str) -> str:
    """``XtOrderError.error_msg`` of a refused order: the counter's price-type name and side, the
    market and code, then the counter's text -- "限价买入 [SZ162411] [COUNTER] [12313][当前时间不允许此类
    证券交易]" (error_id -61) in shidenggui/easytrader docs/miniqmt.md, "最优五档即时成交剩余撤销卖出
    [SH688121] [COUNTER] [251005][证券可用数量不足]" (error_id -61) in a live log quoted in
    mlhjyx/quantmind-v2's docs. The order's own ``status_msg`` carries the counter's text alone
    (QMT's 废单原因 column, see above). Real terminals report such errors with error_id -61; the sim
    still reports the counter's own code as error_id (the integration tests expect it)."""
    side = {BUY: "买入", SELL: "卖出"}.get(order_type, "")
    label = rules.BROKER_PRICE_TYPE_NAMES.get(rules.broker_price_type(price_type), "") + side
    digits, _, suffix = code.rpartition(".")
    where = f"[{suffix}{digits}]" if digits else f"[{code}]"
    return f"{label} {where} {status_msg}" if label else f"{where} {status_msg}"


_Outbox = collections.deque[tuple[XtQuantAsyncClient, str, tuple[Any, ...]]]


class Session:
    """One native client's connection; pushes go to active sessions that subscribed the account."""

    ACTIVE = "active"
    DROPPED = "dropped"  # connection lost: requests are answered with failures only; never active again
    CLOSED = "closed"  # client stopped: nothing is delivered any more

    def __init__(self, session_id: int, client: XtQuantAsyncClient, outbox: _Outbox) -> None:
        self.session_id = session_id
        self.client = client
        self.subscribed: set[str] = set()
        self.state = Session.ACTIVE
        self._outbox = outbox

    @property
    def active(self) -> bool:
        return self.state == Session.ACTIVE

    def deliver(self, callback: str, *args: Any) -> None:
        """Queue a callback; the counter delivers it once the current task's changes are on disk."""
        if self.state != Session.CLOSED:
            self._outbox.append((self.client, callback, args))


@dataclass
class _Quote:
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
class _Position:
    code: str
    volume: int = 0
    can_use: int = 0
    frozen: int = 0
    yesterday: int = 0
    cost: Decimal = Decimal(0)  # incl. buy commissions
    open_cost: Decimal = Decimal(0)  # traded amounts only


class _Item:
    """A native result row: attributes named as xtquant's C++ fields (m_str..., m_n...)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


@dataclass
class _Order:
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
    status: int = UNREPORTED
    status_msg: str = ""
    traded_volume: int = 0
    traded_amount: Decimal = Decimal(0)
    frozen_cash: Decimal = Decimal(0)

    @property
    def remaining(self) -> int:
        return self.volume - self.traded_volume

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass
class _Account:
    account_id: str
    cash: Decimal
    frozen_cash: Decimal = Decimal(0)
    positions: dict[str, _Position] = field(default_factory=dict)
    orders: dict[int, _Order] = field(default_factory=dict)
    trades: list[xttype.XtTrade] = field(default_factory=list)


def _secu_account(account_id: str, market: int) -> str:
    """A stable shareholder code per market: "A" + 9 digits on SH, "0" + 9 digits on SZ.

    Beijing securities are held in the Shenzhen securities account, so BJ shares SZ's code.
    """
    digits = f"{zlib.crc32(account_id.encode('utf-8')) % 1_000_000_000:09d}"
    return f"A{digits}" if market == rules.MARKET_SH else f"0{digits}"


class _Stop:
    pass


_STOP = _Stop()
_BATCH = 64  # at most this many queued tasks share one state-file transaction (and delivery round)


class SimCounter:
    """A simulated A-share broker counter serving native clients of ``XtQuantTrader``."""

    def __init__(
        self,
        config: SimConfig,
        accounts: Iterable[str],
        clock: Callable[[], float] | None = None,
        state_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """``state_path``: the books live in this file (``adapter.sim.store``) and survive a
        restart, also after a kill; a new file is seeded from ``config.cash`` and
        ``config.positions``, an existing one is loaded and those settings only seed accounts
        it does not hold yet. None keeps the books in memory only.

        Raises ``StateFileError`` when the file is in use by another counter, or is not a
        counter state file; ValueError when it holds positions or open orders in codes the
        instrument table lacks.
        """
        config.validate()
        self.config = config
        self._clock = clock or time.time
        self._rate = rules.to_decimal(config.commission_rate)
        self._minimum = rules.to_decimal(config.commission_min)
        self._walk = PriceWalk(config.seed, config.walk_step)
        self._quotes: dict[str, _Quote] = {}
        for code, instrument in sorted(load_instruments(config.instruments_file or None).items()):
            tick = rules.tick_size(code)
            self._quotes[code] = _Quote(instrument, instrument.prev_close, instrument.last_price, tick)
        self._accounts: dict[str, _Account] = {}
        for account_id in accounts:
            account_id = str(account_id)
            self._accounts[account_id] = _Account(account_id, rules.to_decimal(config.cash).quantize(rules.CENT))
        if not self._accounts:
            raise ValueError("a counter needs at least one account")
        self._load_positions(config.positions)
        self._next_order_id = FIRST_ORDER_ID
        self._next_sysid = FIRST_SYSID
        self._next_trade_id = FIRST_TRADE_ID
        self._session_ids = itertools.count(1)
        self._sessions: dict[int, Session] = {}
        self._outbox: _Outbox = collections.deque()
        self._settling = False
        self._refusing = False
        self._refuse_until = 0.0  # time.monotonic() before which connect() is refused
        self._order_latency = float(config.order_latency)
        self._ack_delay = float(config.ack_delay)
        # (due, tie-break, task): requests served later, touched only on the counter thread
        self._deferred: list[tuple[float, int, Callable[[], None]]] = []
        self._deferred_ids = itertools.count()
        self._queue: queue.SimpleQueue[Callable[[], None] | _Stop] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _thread and _closed
        self._thread: threading.Thread | None = None
        self._closed = False
        self._handlers: dict[str, Callable[[Session, int, RequestFields], None]] = {
            "subscribeWithSeq": self._on_subscribe,
            "unsubscribeWithSeq": self._on_unsubscribe,
            "orderStockWithSeq": self._on_order,
            "cancelOrderStockWithSeq": self._on_cancel,
            "queryStockAssetWithSeq": self._on_query_asset,
            "queryStockOrdersWithSeq": self._on_query_orders,
            "queryStockTradesWithSeq": self._on_query_trades,
            "queryStockPositionsWithSeq": self._on_query_positions,
            "queryAccountInfosWithSeq": self._on_query_account_infos,
            "queryAccountStatusWithSeq": self._on_query_account_status,
            **{method: functools.partial(self._on_query_credit, method) for method in CREDIT_QUERIES},
            "queryNewPurchaseLimitWithSeq": self._on_query_new_purchase_limit,
            "queryIPODataWithSeq": self._on_query_ipo_data,
        }
        assert set(self._handlers) == set(RESPONSE_CALLBACKS)
        # Write-through state: what the file holds, so each task writes only what changed.
        self._store: StateFile | None = None
        self._store_failing = False
        self.store_errors = 0  # failed writes (the books stay in memory; the write is retried)
        self._dirty_orders: dict[int, _Order] = {}
        self._cleared: set[str] = set()  # accounts whose day was cleared (next_day)
        self._saved_accounts: dict[str, tuple[Decimal, Decimal]] = {}
        self._saved_positions: dict[tuple[str, str], tuple[int, int, int, int, Decimal, Decimal]] = {}
        self._saved_trades: dict[str, int] = {}
        self._saved_quotes: dict[str, tuple[Decimal, Decimal]] = {}
        self._saved_ids: tuple[int, int, int] | None = None
        if state_path is not None:
            self._open_state(state_path)

    def _load_positions(self, positions: dict[str, dict[str, int]]) -> None:
        for account_id, holdings in positions.items():
            account = self._accounts.get(str(account_id))
            if account is None:
                raise ValueError(f"sim.positions names account {account_id!r}, which the counter does not serve")
            for code, shares in holdings.items():
                quote = self._quotes.get(code)
                if quote is None:
                    raise ValueError(f"sim.positions: {code!r} is not in the instrument table")
                if not isinstance(shares, int) or isinstance(shares, bool) or shares < 0:
                    raise ValueError(f"sim.positions: shares of {code} must be a non-negative int, got {shares!r}")
                if shares == 0:
                    continue
                cost = quote.prev_close * shares
                account.positions[code] = _Position(code, shares, shares, 0, shares, cost, cost)

    # -- the state file ------------------------------------------------------------------

    def _open_state(self, state_path: str | os.PathLike[str]) -> None:
        store = StateFile(state_path)
        try:
            if not store.is_new:
                self._load_books(store)
            self._store = store
            self._write(self._changes())  # seeds a new file; adds accounts the file lacked
        except BaseException:
            self._store = None
            store.close()
            raise
        log.info("sim counter books in %s (%s)", store.path, "new" if store.is_new else "loaded")

    def _load_books(self, store: StateFile) -> None:
        """Replace the seeded books by the file's (accounts the file lacks stay seeded)."""
        for code, (prev_close, last) in store.quotes().items():
            quote = self._quotes.get(code)
            if quote is not None:  # else: dropped from the instrument table; nothing refers to it
                quote.last = Decimal(last)
                quote.rebase(Decimal(prev_close))
        for account_id in list(self._accounts):
            saved = store.account(account_id)
            if saved is None:
                continue
            account = _Account(account_id, Decimal(saved[0]), Decimal(saved[1]))
            for row in store.positions(account_id):
                code = row["code"]
                if code not in self._quotes:
                    raise ValueError(
                        f"{store.path}: account {account_id} holds {code}, which the instrument table lacks"
                    )
                account.positions[code] = _Position(
                    code,
                    row["volume"],
                    row["can_use"],
                    row["frozen"],
                    row["yesterday"],
                    Decimal(row["cost"]),
                    Decimal(row["open_cost"]),
                )
            for row in store.orders(account_id):
                for name in ("price", "traded_amount", "frozen_cash"):
                    row[name] = Decimal(row[name])
                order = _Order(**row)
                if order.is_open and order.code not in self._quotes:
                    raise ValueError(
                        f"{store.path}: open order {order.order_id} is in {order.code}, "
                        "which the instrument table lacks"
                    )
                account.orders[order.order_id] = order
            account.trades = [xttype.XtTrade(**row) for row in store.trades(account_id)]
            self._accounts[account_id] = account
            self._saved_trades[account_id] = len(account.trades)
        top_order, top_sysid, top_trade = store.max_ids()
        saved_ids = store.next_ids() or (FIRST_ORDER_ID, FIRST_SYSID, FIRST_TRADE_ID)
        self._next_order_id = max(saved_ids[0], top_order + 1, FIRST_ORDER_ID)
        self._next_sysid = max(saved_ids[1], top_sysid + 1, FIRST_SYSID)
        self._next_trade_id = max(saved_ids[2], top_trade + 1, FIRST_TRADE_ID)

    def _touch(self, order: _Order) -> None:
        """Note a new or changed order for the next write (other books are diffed)."""
        if self._store is not None:
            self._dirty_orders[order.order_id] = order

    def _changes(self) -> tuple[Changes, Callable[[], None]]:
        """What changed since the last write, and how to note it as written."""
        changes = Changes()
        accounts: dict[str, tuple[Decimal, Decimal]] = {}
        positions: dict[tuple[str, str], tuple[int, int, int, int, Decimal, Decimal]] = {}
        trades: dict[str, int] = {}
        quotes: dict[str, tuple[Decimal, Decimal]] = {}
        changes.clear_day = sorted(self._cleared)
        for account_id, account in self._accounts.items():
            money = (account.cash, account.frozen_cash)
            if self._saved_accounts.get(account_id) != money:
                accounts[account_id] = money
                changes.accounts.append((account_id, str(money[0]), str(money[1])))
            for code, p in account.positions.items():
                key = (account_id, code)
                snap = (p.volume, p.can_use, p.frozen, p.yesterday, p.cost, p.open_cost)
                if self._saved_positions.get(key) != snap:
                    positions[key] = snap
                    changes.positions.append((account_id, code, *snap[:4], str(p.cost), str(p.open_cost)))
            written = 0 if account_id in self._cleared else self._saved_trades.get(account_id, 0)
            if len(account.trades) != written:
                trades[account_id] = len(account.trades)
                changes.trades.extend(
                    tuple(getattr(t, c) for c in TRADE_COLUMNS) for t in account.trades[written:]
                )
            elif account_id in self._cleared:
                trades[account_id] = 0
        gone = [key for key in self._saved_positions if self._accounts[key[0]].positions.get(key[1]) is None]
        changes.delete_positions = gone
        for order in self._dirty_orders.values():
            if self._accounts[order.account_id].orders.get(order.order_id) is order:  # else cleared by next_day
                changes.orders.append(
                    tuple(str(v) if isinstance(v, Decimal) else v for v in (getattr(order, c) for c in ORDER_COLUMNS))
                )
        for code, quote in self._quotes.items():
            snap_quote = (quote.prev_close, quote.last)
            if self._saved_quotes.get(code) != snap_quote:
                quotes[code] = snap_quote
                changes.quotes.append((code, str(quote.prev_close), str(quote.last)))
        ids = (self._next_order_id, self._next_sysid, self._next_trade_id)
        if ids != self._saved_ids:
            changes.ids = ids

        def written_now() -> None:
            self._saved_accounts.update(accounts)
            for key in gone:
                del self._saved_positions[key]
            self._saved_positions.update(positions)
            self._saved_trades.update(trades)
            self._saved_quotes.update(quotes)
            self._saved_ids = ids
            self._dirty_orders.clear()
            self._cleared.clear()

        return changes, written_now

    def _write(self, pending: tuple[Changes, Callable[[], None]]) -> None:
        assert self._store is not None
        changes, written_now = pending
        self._store.write(changes)
        written_now()

    def _persist(self) -> None:
        """Write what changed (one transaction); a failure is logged and retried next time."""
        if self._store is None:
            return
        try:
            self._write(self._changes())
        except Exception:
            self.store_errors += 1
            if not self._store_failing:
                log.exception(
                    "sim counter: writing the state file %s failed; retrying at the next change", self._store.path
                )
            self._store_failing = True
            return
        if self._store_failing:
            log.warning("sim counter: the state file %s is written again", self._store.path)
            self._store_failing = False

    def _settle(self) -> None:
        """End of a task: write the changes, then deliver the queued callbacks (in order)."""
        if self._settling:  # a callback ran counter work inline: the outer loop takes it
            return
        self._settling = True
        try:
            while True:
                self._persist()
                if not self._outbox:
                    return
                if self._ack_delay > 0:  # the books are written; the answers are late
                    batch = list(self._outbox)
                    self._outbox.clear()
                    due = time.monotonic() + self._ack_delay
                    heapq.heappush(self._deferred, (due, next(self._deferred_ids), lambda: _deliver(batch)))
                    return
                for _ in range(len(self._outbox)):
                    client, callback, args = self._outbox.popleft()
                    client.deliver(callback, *args)
        finally:
            self._settling = False

    def _close_store(self) -> None:
        if self._store is not None:
            self._persist()
            self._store.close()
            self._store = None

    # -- thread plumbing -----------------------------------------------------------------

    @property
    def accounts(self) -> tuple[str, ...]:
        return tuple(self._accounts)

    def start(self) -> None:
        """Start the counter thread (also done lazily on first use)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the counter is closed")
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sim-counter", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect every active session and stop the thread; later requests get failures."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(self._disconnect_all)
                self._queue.put(_STOP)
        if thread is None:
            self._close_store()
        elif thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> SimCounter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _post(self, task: Callable[[], None]) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._ensure_thread()
            self._queue.put(task)
        return True

    def _call(self, work: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``work`` on the counter thread and return its result (or raise its exception)."""
        if threading.current_thread() is self._thread:
            return work()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def task() -> None:
            try:
                result = work()
            except BaseException as exc:  # handed to the waiting caller
                self._settle()
                future.set_exception(exc)
                return
            self._settle()  # the caller returns once the change is on disk and delivered
            future.set_result(result)

        if not self._post(task):
            raise RuntimeError("the counter is closed")
        return future.result(timeout)

    def _run(self) -> None:
        interval = self.config.tick_interval
        walking = self.config.price_model == "walk"
        next_tick = time.monotonic() + interval if walking else None
        while True:
            deadlines = [t for t in (next_tick, self._deferred[0][0] if self._deferred else None) if t is not None]
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                task = self._queue.get(timeout=wait)
            except queue.Empty:
                task = None
            if isinstance(task, _Stop):
                self._close_store()
                return
            if task is not None:
                # Requests that queued up meanwhile share one write (and then their deliveries).
                for done in itertools.count(1):
                    self._run_task(task)
                    if done >= _BATCH:
                        break
                    try:
                        task = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(task, _Stop):
                        self._settle()
                        self._close_store()
                        return
                self._settle()
            now = time.monotonic()
            while self._deferred and self._deferred[0][0] <= now:
                self._guarded(heapq.heappop(self._deferred)[2])
            if next_tick is not None and next_tick <= now:
                self._guarded(self._tick)
                next_tick += interval
                if next_tick < now:  # fell behind (slow host): skip missed ticks instead of bursting
                    next_tick = now + interval

    def _guarded(self, task: Callable[[], object]) -> None:
        self._run_task(task)
        self._settle()

    @staticmethod
    def _run_task(task: Callable[[], object]) -> None:
        try:
            task()
        except Exception:  # one bad task must not stop the counter
            log.exception("simulated counter task failed")

    # -- native client side (called by adapter.sim.native) -------------------------------

    def attach(self, client: XtQuantAsyncClient) -> Session | None:
        """A new session for ``client``; None while connections are refused."""

        def work() -> Session | None:
            if self._refusing or time.monotonic() < self._refuse_until:
                return None
            session = Session(next(self._session_ids), client, self._outbox)
            self._sessions[session.session_id] = session
            return session

        return self._call(work)

    def detach(self, session: Session) -> None:
        """Forget a session; after this returns it receives nothing."""

        def work() -> None:
            session.state = Session.CLOSED
            session.subscribed.clear()
            self._sessions.pop(session.session_id, None)

        self._call(work)

    def submit_request(self, session: Session, method: str, seq: int, fields: RequestFields) -> bool:
        """Queue a native request; False when the counter is closed (the caller answers it)."""
        return self._post(lambda: self._serve_or_defer(session, method, seq, fields))

    def _serve_or_defer(self, session: Session, method: str, seq: int, fields: RequestFields) -> None:
        if method == "orderStockWithSeq" and self._order_latency > 0:
            due = time.monotonic() + self._order_latency
            heapq.heappush(self._deferred, (due, next(self._deferred_ids), lambda: self._serve(session, method, seq, fields)))
        else:
            self._serve(session, method, seq, fields)

    # -- test / ops hooks ----------------------------------------------------------------

    def set_price(self, code: str, price: float) -> None:
        """Move the last price (rounded to tick, must be inside the band), then match resting orders."""

        def work() -> None:
            quote = self._quote(code)
            value = rules.round_to_tick(rules.to_decimal(price), quote.tick)
            if not quote.down <= value <= quote.up:
                raise ValueError(f"{value} is outside the daily limits [{quote.down}, {quote.up}] of {code}")
            quote.last = value
            self._match_code(code)

        self._call(work)

    def step(self) -> None:
        """One price-walk step (model "walk" only) and one matching pass over every open order."""
        self._call(self._tick)

    def push_assets(self, account_id: str, count: int) -> None:
        """Push the account's asset record ``count`` times to its subscribers, as the counter
        does when cash moves: a load source for measuring the event path end to end."""

        def work() -> None:
            account = self._accounts[account_id]
            asset = self._xt_asset(account)  # valued once: the load is the push path, not the valuation
            for _ in range(count):
                self._push(account, CB_ASSET, copy.copy(asset))

        self._call(work, timeout=60.0)

    def last_price(self, code: str) -> float:
        return self._call(lambda: float(self._quote(code).last))

    def price_limits(self, code: str) -> tuple[float, float]:
        """(down, up) limit prices of today."""
        return self._call(lambda: (float(self._quote(code).down), float(self._quote(code).up)))

    def drop_connections(self, reason: str = "connection lost") -> int:
        """Every active session gets the disconnected push and loses its subscriptions.

        A dropped session is dead for good: it is never delivered a push again, and requests
        still sent on it are answered with failures. The counter itself goes on: prices move,
        resting orders fill, and those pushes are lost for the dropped sessions. ``connect()``
        (from a new ``XtQuantTrader``, or the old one) opens a new session, unless connections
        are refused (``refuse_connections``, ``refuse_connections_for``); after subscribing it
        queries the true books. Returns how many sessions dropped.
        """

        def work() -> int:
            dropped = 0
            for session in list(self._sessions.values()):
                if session.active:
                    session.state = Session.DROPPED
                    session.subscribed.clear()
                    session.deliver(CB_DISCONNECTED)
                    dropped += 1
            log.info("dropped %s session(s): %s", dropped, reason)
            return dropped

        return self._call(work)

    def set_ack_delay(self, seconds: float) -> None:
        """Hold responses and pushes ``seconds`` after the books are written (a slow link back:
        an acknowledgement is lost if the gateway dies meanwhile). 0 delivers at once."""

        def work() -> None:
            self._ack_delay = max(0.0, float(seconds))

        self._call(work)

    def set_order_latency(self, seconds: float) -> None:
        """Serve order requests ``seconds`` after they arrive (a slow exchange link); other
        requests are served at once meanwhile. 0 restores immediate service."""

        def work() -> None:
            self._order_latency = max(0.0, float(seconds))

        self._call(work)

    def refuse_connections(self, flag: bool = True) -> None:
        """While set, ``connect()`` fails (non-zero). ``False`` also ends ``refuse_connections_for``."""

        def work() -> None:
            self._refusing = bool(flag)
            if not flag:
                self._refuse_until = 0.0

        self._call(work)

    def refuse_connections_for(self, seconds: float) -> None:
        """``connect()`` fails (non-zero) for the next ``seconds`` (a counter that is down for a
        while); existing sessions are not touched (combine with ``drop_connections``)."""

        def work() -> None:
            self._refuse_until = time.monotonic() + max(0.0, float(seconds))

        self._call(work)

    def connected_sessions(self) -> int:
        return self._call(lambda: sum(1 for s in self._sessions.values() if s.active))

    def next_day(self) -> None:
        """Roll to the next trading day.

        Open orders expire (pushed as cancelled / part-cancelled, funds and shares unfrozen);
        the day's orders and trades are cleared; today's buys become sellable; positions at
        zero are dropped; prev_close := last, so the limit bands move. With a state file the
        new day is written in one transaction; the id sequences go on (ids never repeat).
        """

        def work() -> None:
            for order in self._open_orders():
                self._finish_cancel(self._accounts[order.account_id], order)
            for quote in self._quotes.values():
                quote.rebase(quote.last)
            for account in self._accounts.values():
                account.orders.clear()
                account.trades.clear()
                if self._store is not None:
                    self._cleared.add(account.account_id)
                for code, position in list(account.positions.items()):
                    if position.volume == 0:
                        del account.positions[code]
                        continue
                    position.yesterday = position.can_use = position.volume
                    position.frozen = 0
                for position in account.positions.values():
                    self._push(account, CB_POSITION, self._xt_position(account, position))
                self._push(account, CB_ASSET, self._xt_asset(account))

        self._call(work)

    def books(self, account_id: str) -> dict[str, Any]:
        """A plain-dict snapshot of one account: asset fields, positions, orders and trades."""

        def work() -> dict[str, Any]:
            account = self._accounts.get(account_id)
            if account is None:
                raise ValueError(f"unknown account {account_id!r}")
            snapshot: dict[str, Any] = dict(vars(self._xt_asset(account)))
            snapshot["positions"] = {
                code: dict(vars(self._xt_position(account, p))) for code, p in account.positions.items()
            }
            snapshot["orders"] = {oid: dict(vars(self._xt_order(o))) for oid, o in account.orders.items()}
            snapshot["trades"] = [dict(vars(t)) for t in account.trades]
            return snapshot

        return self._call(work)

    # -- everything below runs on the counter thread -------------------------------------

    def _quote(self, code: str) -> _Quote:
        quote = self._quotes.get(code)
        if quote is None:
            raise ValueError(f"unknown code {code!r}")
        return quote

    def _disconnect_all(self) -> None:
        for session in list(self._sessions.values()):
            if session.active:
                session.deliver(CB_DISCONNECTED)
            session.state = Session.CLOSED
        self._sessions.clear()

    def _serve(self, session: Session, method: str, seq: int, fields: RequestFields) -> None:
        if session.state == Session.CLOSED:
            return
        if not session.active:
            self._deliver_all(session, failure_deliveries(method, seq, fields, "[SIM] connection lost"))
            return
        try:
            self._handlers[method](session, seq, fields)
        except Exception as exc:
            # A bug here must not leave a synchronous xttrader caller waiting forever. If the
            # response already went out, xttrader ignores this second one (its seq is consumed).
            log.exception("simulated counter failed to serve %s (seq %s)", method, seq)
            self._deliver_all(session, failure_deliveries(method, seq, fields, f"[SIM] internal error: {exc}"))

    @staticmethod
    def _deliver_all(session: Session, deliveries: list[tuple[str, tuple[Any, ...]]]) -> None:
        for callback, args in deliveries:
            session.deliver(callback, *args)

    def _push(self, account: _Account, callback: str, data: object) -> None:
        for session in self._sessions.values():
            if session.active and account.account_id in session.subscribed:
                session.deliver(callback, data)

    def _account_for(self, session: Session, fields: RequestFields) -> tuple[_Account | None, str]:
        """The account a request names, if this session may use it; else why not."""
        account_id = str(fields.get("m_strAccountID", ""))
        account = self._accounts.get(account_id)
        if account is None:
            return None, f"[SIM] unknown account {account_id!r}"
        if fields.get("m_nAccountType") != STOCK_ACCOUNT:
            return None, f"[SIM] account type {fields.get('m_nAccountType')!r} is not served (STOCK only)"
        if account_id not in session.subscribed:
            return None, f"[SIM] account {account_id} is not subscribed in this session"
        return account, ""

    # -- subscriptions -------------------------------------------------------------------

    def _on_subscribe(self, session: Session, seq: int, fields: RequestFields) -> None:
        account_id = str(fields.get("m_strAccountID", ""))
        if account_id not in self._accounts or fields.get("m_nAccountType") != STOCK_ACCOUNT:
            session.deliver(CB_SUBSCRIBE, seq, -1)
            return
        session.subscribed.add(account_id)
        session.deliver(CB_SUBSCRIBE, seq, 0)
        session.deliver(CB_ACCOUNT_STATUS, AccountStatusPush(account_id, STOCK_ACCOUNT, xtconstant.ACCOUNT_STATUS_OK))

    def _on_unsubscribe(self, session: Session, seq: int, fields: RequestFields) -> None:
        account_id = str(fields.get("m_strAccountID", ""))
        if account_id not in self._accounts:
            session.deliver(CB_UNSUBSCRIBE, seq, -1)
            return
        session.subscribed.discard(account_id)
        session.deliver(CB_UNSUBSCRIBE, seq, 0)

    # -- orders --------------------------------------------------------------------------

    def _on_order(self, session: Session, seq: int, fields: RequestFields) -> None:
        account, problem = self._account_for(session, fields)
        if account is None:
            self._deliver_all(session, failure_deliveries("orderStockWithSeq", seq, fields, problem))
            return
        code = str(fields.get("m_strStockCode", "")).strip()
        quote = self._quotes.get(code)
        market = rules.MARKET_ENUM_BY_SUFFIX.get(code.rpartition(".")[2], -1)
        order_id = self._next_order_id
        self._next_order_id += 1
        order = _Order(
            order_id=order_id,
            # The contract number comes with the counter's answer (status 50 or 57); until then it is
            # empty (https://github.com/litaolemo/xtquant_big_convert/issues/152: "order_sys_id is
            # briefly empty" while the order is live).
            sysid="",
            account_id=account.account_id,
            code=code,
            name=quote.instrument.name if quote else "",
            market=market,
            secu_account=_secu_account(account.account_id, market) if market >= 0 else "",
            order_type=_int(fields.get("m_nOrderType")),
            volume=_int(fields.get("m_nOrderVolume")),
            price_type=_int(fields.get("m_nPriceType")),
            price=Decimal(0),
            strategy_name=str(fields.get("m_strStrategyName", "")),
            order_remark=rules.truncate_remark(str(fields.get("m_strOrderRemark", ""))),
            order_time=int(self._clock()),
        )
        account.orders[order.order_id] = order
        self._touch(order)
        refusal = self._refusal(account, order, quote, fields.get("m_dPrice"))
        response = OrderStockResp(account.account_id, order.order_id, order.strategy_name, order.order_remark, "")
        session.deliver(CB_ORDER_RESP, seq, response)
        if refusal is not None:
            error_id, message = refusal
            # A junk order never got a contract number: QMT shows "xt" + the order id in its place
            # (合同编号 xt1090533590 for 订单编号 1090533590 in liqimore/quant-qmt-proxy issue #21).
            order.sysid = f"xt{order.order_id}"
            order.status, order.status_msg = JUNK, message
            self._push(account, CB_ORDER, self._xt_order(order))
            error = make_order_error(
                seq,
                account.account_id,
                order.order_id,
                ORDER_REFUSED_ERROR_ID,  # the counter's own code stays in the message
                order_error_message(order.order_type, order.price_type, order.code, message),
                order.strategy_name,
                order.order_remark,
            )
            session.deliver(CB_ORDER_ERROR, error)  # errors go to the requester only: seqs are per client
            return
        self._push(account, CB_ORDER, self._xt_order(order))  # 48 unreported
        if order.order_type == BUY:
            order.frozen_cash = self._buy_freeze(order.price, order.volume)
            account.cash -= order.frozen_cash
            account.frozen_cash += order.frozen_cash
        else:
            position = account.positions[order.code]
            position.can_use -= order.volume
            position.frozen += order.volume
        order.sysid = str(self._next_sysid)  # digits, as counters number contracts ('635093411' in #152)
        self._next_sysid += 1
        order.status = REPORTED
        self._push(account, CB_ORDER, self._xt_order(order))  # 50 reported
        if order.order_type == SELL:
            self._push(account, CB_POSITION, self._xt_position(account, account.positions[order.code]))
        self._push(account, CB_ASSET, self._xt_asset(account))
        assert quote is not None
        self._match_order(account, order, quote)
        if order.price_type in rules.CANCEL_REST_PRICE_TYPES and order.is_open:
            self._finish_cancel(account, order)  # immediate-or-cancel: the exchange drops the rest

    def _refusal(
        self, account: _Account, order: _Order, quote: _Quote | None, raw_price: Any
    ) -> tuple[int, str] | None:
        """Why the counter junks this order (error id, message), or None; sets ``order.price``."""
        if order.price_type == rules.FIX_PRICE:
            try:  # a junk order still shows the price that was sent
                order.price = rules.to_decimal(raw_price)
            except ValueError:
                pass
        if quote is None:
            return ERR_UNKNOWN_CODE[0], counter_message(ERR_UNKNOWN_CODE, stock_code=order.code)
        code = order.code
        if order.order_type not in (BUY, SELL):
            return ERR_ORDER_TYPE[0], counter_message(ERR_ORDER_TYPE, order_type=order.order_type)
        if not rules.is_supported_price_type(order.price_type):
            return ERR_PRICE_TYPE[0], counter_message(ERR_PRICE_TYPE, price_type=order.price_type)
        if not rules.price_type_allowed(order.price_type, code):
            message = counter_message(ERR_PRICE_TYPE_MARKET, price_type=order.price_type, stock_code=code)
            return ERR_PRICE_TYPE_MARKET[0], message
        if order.order_type == BUY and not rules.is_valid_buy_volume(code, order.volume):
            return ERR_LOT[0], counter_message(ERR_LOT, entrust_amount=order.volume)
        if order.volume <= 0:
            return ERR_LOT[0], counter_message(ERR_LOT, entrust_amount=order.volume)
        if order.price_type == rules.FIX_PRICE:
            try:
                price = rules.to_decimal(raw_price)
            except ValueError:
                return ERR_TICK[0], counter_message(ERR_TICK, entrust_price=raw_price)
            if not rules.is_on_tick(price, code):
                return ERR_TICK[0], counter_message(ERR_TICK, entrust_price=price, price_step=quote.tick)
            if not quote.down <= price <= quote.up:
                return ERR_LIMIT[0], counter_message(
                    ERR_LIMIT, entrust_price=price, down_price=quote.down, up_price=quote.up
                )
            order.price = price.quantize(quote.tick)
        else:
            order.price = quote.last  # latest-price and market orders are priced at the last price
        if order.order_type == BUY:
            need = self._buy_freeze(order.price, order.volume)
            if need > account.cash:
                return ERR_CASH[0], counter_message(ERR_CASH, occur_balance=need, enable_balance=account.cash)
        else:
            position = account.positions.get(code)
            sellable = position.can_use if position else 0
            if order.volume > sellable:
                return ERR_SHARES[0], counter_message(ERR_SHARES, occur_amount=order.volume, enable_amount=sellable)
            if not rules.is_valid_sell_volume(code, order.volume, sellable):
                return ERR_LOT[0], counter_message(ERR_LOT, entrust_amount=order.volume, enable_amount=sellable)
        cap = self.config.fill_volume
        if order.price_type == rules.MARKET_SZ_FULL_OR_CANCEL and 0 < cap < order.volume:
            return ERR_FOK[0], counter_message(ERR_FOK, entrust_amount=order.volume, match_amount=cap)
        return None

    def _buy_freeze(self, price: Decimal, volume: int) -> Decimal:
        if volume <= 0:
            return Decimal(0)
        amount = rules.trade_amount(price, volume)
        return amount + rules.commission(amount, self._rate, self._minimum)

    # -- matching ------------------------------------------------------------------------

    def _open_orders(self, code: str | None = None) -> list[_Order]:
        found = [
            order
            for account in self._accounts.values()
            for order in account.orders.values()
            if order.is_open and (code is None or order.code == code)
        ]
        return sorted(found, key=lambda o: o.order_id)

    def _tick(self) -> None:
        if self.config.price_model == "walk":
            for quote in self._quotes.values():  # insertion order is sorted by code: reproducible
                quote.last = self._walk.next_price(quote.last, quote.tick, quote.down, quote.up)
        for order in self._open_orders():
            self._match_order(self._accounts[order.account_id], order, self._quotes[order.code])

    def _match_code(self, code: str) -> None:
        quote = self._quotes[code]
        for order in self._open_orders(code):
            self._match_order(self._accounts[order.account_id], order, quote)

    def _match_order(self, account: _Account, order: _Order, quote: _Quote) -> None:
        """One matching pass for one order: fill up to ``fill_volume`` at the last price."""
        if not order.is_open or not rules.is_marketable(order.order_type, order.price, quote.last):
            return
        cap = self.config.fill_volume
        volume = order.remaining if cap == 0 else min(cap, order.remaining)
        self._fill(account, order, quote.last, volume)

    def _fill(self, account: _Account, order: _Order, price: Decimal, volume: int) -> None:
        amount = rules.trade_amount(price, volume)
        fee = rules.commission(amount, self._rate, self._minimum)
        position = account.positions.get(order.code)
        if position is None:
            position = account.positions[order.code] = _Position(order.code)
        self._touch(order)
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
        order.status = SUCCEEDED if order.remaining == 0 else PART_SUCC
        trade = xttype.XtTrade(
            order.account_id,
            order.code,
            order.order_type,
            # A digit string of fixed width, e.g. '0303222200422222' in shidenggui/easytrader docs/miniqmt.md.
            f"{self._take_trade_id():016d}",
            int(self._clock()),
            float(price),
            volume,
            float(amount),
            order.order_id,
            order.sysid,
            order.strategy_name,
            order.order_remark,
            xtconstant.DIRECTION_FLAG_LONG,
            _offset_flag(order.order_type),
            float(fee),
            order.secu_account,
            order.name,
        )
        account.trades.append(trade)
        self._push(account, CB_TRADE, trade)
        self._push(account, CB_ORDER, self._xt_order(order))
        self._push(account, CB_POSITION, self._xt_position(account, position))
        self._push(account, CB_ASSET, self._xt_asset(account))

    def _take_trade_id(self) -> int:
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        return trade_id

    def _finish_cancel(self, account: _Account, order: _Order) -> None:
        """Make an open order final (cancelled / part-cancelled) and unfreeze what it held."""
        self._touch(order)
        order.status = PART_CANCEL if order.traded_volume else CANCELED
        if order.order_type == BUY:
            account.frozen_cash -= order.frozen_cash
            account.cash += order.frozen_cash
            order.frozen_cash = Decimal(0)
        else:
            position = account.positions[order.code]
            position.frozen -= order.remaining
            position.can_use += order.remaining
        self._push(account, CB_ORDER, self._xt_order(order))
        if order.order_type == SELL:
            self._push(account, CB_POSITION, self._xt_position(account, account.positions[order.code]))
        self._push(account, CB_ASSET, self._xt_asset(account))

    # -- cancels -------------------------------------------------------------------------

    def _on_cancel(self, session: Session, seq: int, fields: RequestFields) -> None:
        account, problem = self._account_for(session, fields)
        if account is None:
            self._deliver_all(session, failure_deliveries("cancelOrderStockWithSeq", seq, fields, problem))
            return
        sysid = str(fields.get("m_strOrderSysID", "") or "")
        market = _int(fields.get("m_nMarket", -1))
        order: _Order | None
        if sysid:
            order = next((o for o in account.orders.values() if o.sysid == sysid and o.market == market), None)
            requested_id = order.order_id if order else -1
        else:
            requested_id = _int(fields.get("m_nOrderID", -1))
            order = account.orders.get(requested_id)
        if order is None:
            message = (
                counter_message(ERR_CANCEL_UNKNOWN, entrust_no=sysid)
                if sysid
                else counter_message(ERR_CANCEL_UNKNOWN, order_id=requested_id)
            )
            session.deliver(
                CB_CANCEL_RESP, seq, CancelOrderStockResp(account.account_id, -1, requested_id, sysid, message)
            )
            error = make_cancel_error(
                seq, account.account_id, requested_id, market, sysid, ERR_CANCEL_UNKNOWN[0], message
            )
            session.deliver(CB_CANCEL_ERROR, error)
            return
        # The response echoes how the cancel was addressed (xttrader matches errors that way).
        session.deliver(CB_CANCEL_RESP, seq, CancelOrderStockResp(account.account_id, 0, order.order_id, sysid, ""))
        if not order.is_open:
            message = counter_message(
                ERR_CANCEL_FINAL, entrust_no=order.sysid, order_status=order.status
            )
            error = make_cancel_error(
                seq, account.account_id, order.order_id, order.market, order.sysid, ERR_CANCEL_FINAL[0], message
            )
            session.deliver(CB_CANCEL_ERROR, error)
            return
        self._touch(order)
        order.status = PARTSUCC_CANCEL if order.traded_volume else REPORTED_CANCEL
        self._push(account, CB_ORDER, self._xt_order(order))
        self._finish_cancel(account, order)

    # -- queries -------------------------------------------------------------------------

    def _query_account(self, session: Session, method: str, seq: int, fields: RequestFields) -> _Account | None:
        account, problem = self._account_for(session, fields)
        if account is None:
            self._deliver_all(session, failure_deliveries(method, seq, fields, problem))
        return account

    def _on_query_asset(self, session: Session, seq: int, fields: RequestFields) -> None:
        method = "queryStockAssetWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is not None:
            session.deliver(RESPONSE_CALLBACKS[method], seq, [self._xt_asset(account)])

    def _on_query_orders(self, session: Session, seq: int, fields: RequestFields) -> None:
        method = "queryStockOrdersWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is None:
            return
        orders: Iterable[_Order] = account.orders.values()
        if fields.is_set("m_nOrderID"):
            wanted = _int(fields.get("m_nOrderID"))
            orders = [o for o in orders if o.order_id == wanted]
        elif fields.get("m_bCanCancel"):
            orders = [o for o in orders if o.is_open]
        session.deliver(RESPONSE_CALLBACKS[method], seq, [self._xt_order(o) for o in orders])

    def _on_query_trades(self, session: Session, seq: int, fields: RequestFields) -> None:
        method = "queryStockTradesWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is not None:
            session.deliver(RESPONSE_CALLBACKS[method], seq, list(account.trades))

    def _on_query_positions(self, session: Session, seq: int, fields: RequestFields) -> None:
        method = "queryStockPositionsWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is None:
            return
        positions: Iterable[_Position] = account.positions.values()
        if fields.is_set("m_strStockCode"):
            wanted = str(fields.get("m_strStockCode"))
            positions = [p for p in positions if p.code == wanted]
        session.deliver(RESPONSE_CALLBACKS[method], seq, [self._xt_position(account, p) for p in positions])

    def _on_query_account_infos(self, session: Session, seq: int, fields: RequestFields) -> None:
        infos = [AccountInfo(a, STOCK_ACCOUNT, xtconstant.ACCOUNT_STATUS_OK) for a in self._accounts]
        session.deliver(RESPONSE_CALLBACKS["queryAccountInfosWithSeq"], seq, infos)

    def _on_query_credit(self, method: str, session: Session, seq: int, fields: RequestFields) -> None:
        """The sim's accounts are cash accounts: a counter answers their credit queries empty."""
        if self._query_account(session, method, seq, fields) is not None:
            session.deliver(RESPONSE_CALLBACKS[method], seq, [])

    def _on_query_new_purchase_limit(self, session: Session, seq: int, fields: RequestFields) -> None:
        """IPO subscription quota from today's holdings (the exchanges use a 20-day average):
        SH 1,000 shares per 10,000 CNY of SH market value, SZ 500 per 5,000 of SZ."""
        method = "queryNewPurchaseLimitWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is None:
            return
        value = {"SH": Decimal(0), "SZ": Decimal(0)}
        for code, position in account.positions.items():
            suffix = code.rsplit(".", 1)[-1]
            if suffix in value and rules.classify(code) not in rules.FUND_BOARDS:
                value[suffix] += position.volume * self._quote(code).last
        limits = {"SH": int(value["SH"] // 10_000) * 1_000, "SZ": int(value["SZ"] // 5_000) * 500}
        items = [_Item(m_strNewPurchaseLimitKey=key, m_nNewPurchaseLimitValue=amount) for key, amount in limits.items()]
        session.deliver(RESPONSE_CALLBACKS[method], seq, items)

    def _on_query_ipo_data(self, session: Session, seq: int, fields: RequestFields) -> None:
        """The sim lists no new issues."""
        session.deliver(RESPONSE_CALLBACKS["queryIPODataWithSeq"], seq, [])

    def _on_query_account_status(self, session: Session, seq: int, fields: RequestFields) -> None:
        statuses = [xttype.XtAccountStatus(a, STOCK_ACCOUNT, xtconstant.ACCOUNT_STATUS_OK) for a in self._accounts]
        session.deliver(RESPONSE_CALLBACKS["queryAccountStatusWithSeq"], seq, statuses)

    # -- xttype snapshots (new objects each time: receivers read them on other threads) --

    def _xt_order(self, order: _Order) -> xttype.XtOrder:
        average = order.traded_amount / order.traded_volume if order.traded_volume else Decimal(0)
        return xttype.XtOrder(
            order.account_id,
            order.code,
            order.order_id,
            order.sysid,
            order.order_time,
            order.order_type,
            order.volume,
            rules.broker_price_type(order.price_type),  # the counter's code, not the request's (rules)
            float(order.price),
            order.traded_volume,
            float(average.quantize(Decimal("0.0001"))),
            order.status,
            order.status_msg,
            order.strategy_name,
            order.order_remark,
            xtconstant.DIRECTION_FLAG_LONG,
            _offset_flag(order.order_type),
            order.secu_account,
            order.name,
        )

    def _xt_position(self, account: _Account, position: _Position) -> xttype.XtPosition:
        quote = self._quotes[position.code]
        market_value = rules.trade_amount(quote.last, position.volume)
        cost = position.cost.quantize(rules.CENT)
        float_profit = market_value - cost
        market = rules.market_enum(position.code)
        xt = xttype.XtPosition(
            account.account_id,
            position.code,
            position.volume,
            position.can_use,
            float(position.open_cost / position.volume) if position.volume else 0.0,
            float(market_value),
            position.frozen,
            0,
            position.yesterday,
            float(position.cost / position.volume) if position.volume else 0.0,
            xtconstant.DIRECTION_FLAG_LONG,
            float(quote.last),
            float(float_profit / cost) if cost else 0.0,
            _secu_account(account.account_id, market),
            quote.instrument.name,
        )
        # Fields the manual's XtPosition table lists and xttype's class lacks (the native object has them).
        xt.float_profit = float(float_profit)  # type: ignore[attr-defined]
        xt.open_date = ""  # type: ignore[attr-defined]  # "开仓日期，股票不需要": not kept for stocks
        xt.position_profit = 0.0  # type: ignore[attr-defined]  # "持仓盈亏，股票不需要"
        return xt

    def _xt_asset(self, account: _Account) -> xttype.XtAsset:
        market_value = sum(
            (rules.trade_amount(self._quotes[p.code].last, p.volume) for p in account.positions.values()),
            Decimal(0),
        )
        total = account.cash + account.frozen_cash + market_value
        return xttype.XtAsset(
            account.account_id,
            float(account.cash),
            float(account.frozen_cash),
            float(market_value),
            float(total),
            float(account.cash),
        )


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _offset_flag(order_type: int) -> int:
    return xtconstant.OFFSET_FLAG_OPEN if order_type == BUY else xtconstant.OFFSET_FLAG_CLOSE


def _deliver(batch: list[tuple[Any, str, tuple[Any, ...]]]) -> None:
    for client, callback, args in batch:
        client.deliver(callback, *args)
