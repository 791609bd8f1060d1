"""The simulated broker counter: the counter thread, sessions, delivery and the state file.

The books themselves (accounts, orders, matching, A-share rules) are ``adapter.sim.books``;
their xtquant records are built by ``adapter.sim.records``. This module turns what each
books operation changed into pushes and state-file rows.

One thread (the counter's, which plays the native client's network thread) owns every
piece of book state. Other threads only enqueue work: native clients post requests and do
not wait; the test/ops hooks (``set_price``, ``step`` ...) wait for their work to be done.
Every callback into a native client is made from that thread.

Queries and orders need the account to be subscribed in the requesting session; a query
that cannot be served answers ``None`` (never an empty list).

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
import datetime as dt
import functools
import heapq
import itertools
import logging
import os
import queue
import threading
import time
from decimal import Decimal
from typing import Any, Callable, Iterable, TypeVar

from adapter import market as rules
from adapter.config import SimConfig
from adapter.sim import records
from adapter.sim.wire import PART, PARTS_DONE
from adapter.sim.books import (
    FIRST_ORDER_ID,
    FIRST_SYSID,
    FIRST_TRADE_ID,
    Account,
    AssetChanged,
    Books,
    Event,
    Order,
    OrderChanged,
    Position,
    PositionChanged,
    Trade,
    TradeMade,
)
from adapter.sim.feed import CONTINUOUS, SimFeed
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
from adapter.sim.store import ORDER_COLUMNS, TRADE_COLUMNS, Changes, StateFile
from xtquant import xtconstant, xttype

log = logging.getLogger(__name__)

T = TypeVar("T")

STOCK_ACCOUNT = xtconstant.SECURITY_ACCOUNT

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


class _Stop:
    pass


_STOP = _Stop()
STEP_PART = 100  # codes one part of a timed price step moves (~25 us each): an order waits ~3 ms at most
# Parts of one step start this far apart: a table too large for the cadence keeps the counter's
# thread about 70% busy, not all of it, so the host keeps time for orders and their answers.
PART_SPACING = 0.004
QUERY_PART = 2000  # records of a long query answer built per turn of the loop (~4 ms): orders go between
_BATCH = 64  # at most this many queued tasks share one state-file transaction (and delivery round)
STATUS_CODES = 200  # codes in use listed by the sim status control at most (the count says how many)


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
        # Orders are checked against the market's phase of their code (the feed is made below).
        self._books = Books(config, accounts, self._clock, lambda code: self.feed.session(code, self._now_ms()))
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
        self._parts_left = 0  # parts of the timed price step under way (a new step waits for them)
        self._answer_ids = itertools.count(1)
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
        self._dirty_orders: dict[int, Order] = {}  # live orders changed since the last write
        self._cleared: set[str] = set()  # accounts whose day was cleared (next_day)
        self._saved_accounts: dict[str, tuple[Decimal, Decimal]] = {}
        self._saved_positions: dict[tuple[str, str], tuple[int, int, int, int, Decimal, Decimal]] = {}
        self._saved_trades: dict[str, int] = {}
        self._saved_quotes: dict[str, tuple[Decimal, Decimal]] = {}
        self._saved_ids: tuple[int, int, int] | None = None
        if state_path is not None:
            self._open_state(state_path)
        # The market as xtdata shows it, over these books' quotes (after the file's prices are in).
        self.feed = SimFeed(config, self._books.quotes, self._clock)
        self._frozen_count = len(self.feed.frozen(self._now_ms()))  # "fixed" prices: see _matching_opens
        self._quote_callbacks: tuple[Callable[[dict[str, dict[str, Any]]], None], ...] = ()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

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
        books = self._books
        for code, (prev_close, last) in store.quotes().items():
            quote = books.quotes.get(code)
            if quote is not None:  # else: dropped from the instrument table; nothing refers to it
                quote.last = Decimal(last)
                quote.rebase(Decimal(prev_close))
        for account_id in list(books.accounts):
            saved = store.account(account_id)
            if saved is None:
                continue
            account = Account(account_id, Decimal(saved[0]), Decimal(saved[1]))
            for row in store.positions(account_id):
                code = row["code"]
                if code not in books.quotes:
                    raise ValueError(
                        f"{store.path}: account {account_id} holds {code}, which the instrument table lacks"
                    )
                account.positions[code] = Position(
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
                order = Order(**row)
                if order.is_open and order.code not in books.quotes:
                    raise ValueError(
                        f"{store.path}: open order {order.order_id} is in {order.code}, "
                        "which the instrument table lacks"
                    )
                account.orders[order.order_id] = order
            account.trades = [Trade(**row) for row in store.trades(account_id)]
            books.accounts[account_id] = account
            self._saved_trades[account_id] = len(account.trades)
        top_order, top_sysid, top_trade = store.max_ids()
        saved_ids = store.next_ids() or (FIRST_ORDER_ID, FIRST_SYSID, FIRST_TRADE_ID)
        books.next_order_id = max(saved_ids[0], top_order + 1, FIRST_ORDER_ID)
        books.next_sysid = max(saved_ids[1], top_sysid + 1, FIRST_SYSID)
        books.next_trade_id = max(saved_ids[2], top_trade + 1, FIRST_TRADE_ID)
        books.revalue()  # positions and prices came from the file

    def _touch(self, changed: Order) -> None:
        """Note a new or changed order for the next write (other books are diffed)."""
        if self._store is not None:
            order = self._books.accounts[changed.account_id].orders.get(changed.order_id)
            if order is not None:  # else cleared by next_day
                self._dirty_orders[order.order_id] = order

    def _changes(self) -> tuple[Changes, Callable[[], None]]:
        """What changed since the last write, and how to note it as written."""
        changes = Changes()
        accounts: dict[str, tuple[Decimal, Decimal]] = {}
        positions: dict[tuple[str, str], tuple[int, int, int, int, Decimal, Decimal]] = {}
        trades: dict[str, int] = {}
        quotes: dict[str, tuple[Decimal, Decimal]] = {}
        changes.clear_day = sorted(self._cleared)
        for account_id, account in self._books.accounts.items():
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
        gone = [key for key in self._saved_positions if self._books.accounts[key[0]].positions.get(key[1]) is None]
        changes.delete_positions = gone
        for order in self._dirty_orders.values():
            if self._books.accounts[order.account_id].orders.get(order.order_id) is order:  # else cleared by next_day
                changes.orders.append(
                    tuple(str(v) if isinstance(v, Decimal) else v for v in (getattr(order, c) for c in ORDER_COLUMNS))
                )
        for code in self._books.moved:  # the others are as the table or the file has them
            quote = self._books.quotes[code]
            snap_quote = (quote.prev_close, quote.last)
            if self._saved_quotes.get(code) != snap_quote:
                quotes[code] = snap_quote
                changes.quotes.append((code, str(quote.prev_close), str(quote.last)))
        ids = (self._books.next_order_id, self._books.next_sysid, self._books.next_trade_id)
        if ids != self._saved_ids:
            changes.ids = ids

        def written_now() -> None:
            self._saved_accounts.update(accounts)
            for key in gone:
                del self._saved_positions[key]
            self._saved_positions.update(positions)
            self._saved_trades.update(trades)
            self._saved_quotes.update(quotes)
            self._books.moved.clear()
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
        return tuple(self._books.accounts)

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
        next_tick = time.monotonic() + interval  # "fixed" too: the market's phases go on
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
            if self._deferred and self._deferred[0][0] <= now:  # one at a time: requests come between
                self._guarded(heapq.heappop(self._deferred)[2])
            if next_tick is not None and next_tick <= now:
                if walking or self._matching_opens():
                    self._guarded(self._timer_tick)
                else:
                    self._run_task(self._feed_tick)  # books untouched: nothing to write or deliver
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
            self._publish(self._books.set_price(code, price))
            self._feed_tick({code: self._books.quotes[code]})

        self._call(work)

    def step(self) -> None:
        """One price-walk step (model "walk" only) and one matching pass over every open order."""
        self._call(self._tick)

    def push_assets(self, account_id: str, count: int) -> None:
        """Push the account's asset record ``count`` times to its subscribers, as the counter
        does when cash moves: a load source for measuring the event path end to end."""

        def work() -> None:
            asset = records.xt_asset(self._books.asset(account_id))  # valued once: the load is the push path
            for _ in range(count):
                self._push(account_id, CB_ASSET, copy.copy(asset))

        self._call(work, timeout=60.0)

    def last_price(self, code: str) -> float:
        return self._call(lambda: float(self._books.quote(code).last))

    def price_limits(self, code: str) -> tuple[float, float]:
        """(down, up) limit prices of today."""
        return self._call(lambda: (float(self._books.quote(code).down), float(self._books.quote(code).up)))

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
            self._publish(self._books.next_day())
            if self._store is not None:
                self._cleared.update(self._books.accounts)
            self._quotes_out(self.feed.next_day(self._books.quotes, ticks=bool(self._quote_callbacks)))

        self._call(work)

    # -- the operator's controls (the gateway's ``sim`` op, PROTOCOL §17) ---------------------

    def control(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """One of the simulator's controls, run on the counter's thread as its orders are: what it
        changes is written and pushed (orders, trades, positions, asset, quotes) before this
        returns its answer. ``args``: the action's arguments (``ops.SIM_NEEDS``). ValueError
        names what is wrong (an unknown code or account, a price off tick or outside the band)."""
        handler = self._controls.get(action)
        if handler is None:
            raise ValueError(f"unknown simulator action {action!r}; use one of {', '.join(self._controls)}")
        return self._call(lambda: handler(args))

    @property
    def _controls(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {"status": self._control_status, "reset": self._control_reset, "price": self._control_price,
                "move": self._control_move, "next_day": self._control_next_day, "deposit": self._control_deposit,
                "position": self._control_position}

    def _clock_map(self) -> dict[str, Any]:
        from adapter.sim import calendar

        now = self._clock()
        local = dt.datetime.fromtimestamp(now, calendar.CHINA)
        trading = self.config.market_hours != "exchange" or calendar.is_trading_day(local.date())
        day = local.date() if trading else calendar.next_trading_day(local.date())
        return {"clock": int(now * 1000), "time": local.strftime("%Y-%m-%d %H:%M:%S"),
                "trading_day": day.strftime("%Y%m%d"), "market_hours": self.config.market_hours,
                "open_now": len(self.feed.frozen(int(now * 1000))) < len(self._books.quotes)}

    def _quote_map(self, code: str) -> dict[str, Any]:
        quote = self._books.quotes[code]
        return {"stock_code": code, "name": quote.instrument.name, "last": float(quote.last),
                "prev_close": float(quote.prev_close), "down": float(quote.down), "up": float(quote.up)}

    def _account_map(self, account_id: str) -> dict[str, Any]:
        asset = self._books.asset(account_id)
        account = self._books.accounts[account_id]
        return {"account_id": account_id, "cash": float(asset.cash), "frozen_cash": float(asset.frozen_cash),
                "market_value": float(asset.market_value),
                "total_asset": float(asset.cash + asset.frozen_cash + asset.market_value),
                "positions": sum(1 for p in account.positions.values() if p.volume),
                "open_orders": sum(1 for o in account.orders.values() if o.is_open)}

    def _control_status(self, args: dict[str, Any]) -> dict[str, Any]:
        in_use = sorted(self._books.walking())
        return {**self._clock_map(), "price_model": self.config.price_model,
                "books": str(self._store.path) if self._store is not None else "memory",
                "accounts": [self._account_map(a) for a in self._books.accounts],
                "codes": [self._quote_map(code) for code in in_use[:STATUS_CODES]], "codes_in_use": len(in_use)}

    def _control_reset(self, args: dict[str, Any]) -> dict[str, Any]:
        expired = len(self._books.open_orders())
        changed = sum(1 for q in self._books.quotes.values()
                      if (q.prev_close, q.last) != (q.instrument.prev_close, q.instrument.last_price))
        self._publish(self._books.reset())
        if self._store is not None:
            self._cleared.update(self._books.accounts)
        self._quotes_out(self.feed.next_day(self._books.quotes, ticks=bool(self._quote_callbacks)))
        log.warning("sim reset: books back to the configured start (%d open order(s) expired)", expired)
        return {**self._clock_map(), "expired_orders": expired, "prices_reset": changed,
                "accounts": [self._account_map(a) for a in self._books.accounts]}

    def _control_price(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._move_to(str(args["stock_code"]), self._books.check_price(str(args["stock_code"]), args["price"]))

    def _control_move(self, args: dict[str, Any]) -> dict[str, Any]:
        code = str(args["stock_code"])
        quote = self._books.known_quote(code)
        percent = rules.to_decimal(args["percent"])
        target = rules.round_to_tick(quote.last * (1 + percent / 100), quote.tick)
        return self._move_to(code, self._books.check_price(code, target))

    def _move_to(self, code: str, price: Decimal) -> dict[str, Any]:
        if code in self.config.suspended:
            raise ValueError(f"{code} is suspended today (sim.suspended): its price does not move")
        events = self._books.set_price(code, float(price))
        self._publish(events)
        self._feed_tick({code: self._books.quotes[code]})
        trades = sum(1 for event in events if isinstance(event, TradeMade))
        log.info("sim price: %s -> %s (%d fill(s))", code, price, trades)
        return {**self._quote_map(code), "trades": trades,
                "matched": self.feed.session(code, self._now_ms()).phase == CONTINUOUS}

    def _control_next_day(self, args: dict[str, Any]) -> dict[str, Any]:
        expired = len(self._books.open_orders())
        self._publish(self._books.next_day())
        if self._store is not None:
            self._cleared.update(self._books.accounts)
        self._quotes_out(self.feed.next_day(self._books.quotes, ticks=bool(self._quote_callbacks)))
        log.info("sim next day: %d open order(s) expired, today's buys sellable, prev_close := last", expired)
        return {**self._clock_map(), "expired_orders": expired,
                "accounts": [self._account_map(a) for a in self._books.accounts]}

    def _control_deposit(self, args: dict[str, Any]) -> dict[str, Any]:
        account_id = self._known_account(args["account_id"])
        self._publish(self._books.deposit(account_id, args["amount"]))
        log.info("sim deposit: %s CNY to account %s", args["amount"], account_id)
        return {**self._account_map(account_id), "amount": float(args["amount"])}

    def _control_position(self, args: dict[str, Any]) -> dict[str, Any]:
        account_id = self._known_account(args["account_id"])
        code = str(args["stock_code"])
        self._publish(self._books.set_position(account_id, code, int(args["volume"])))
        position = self._books.accounts[account_id].positions[code]
        log.info("sim position: account %s holds %d %s", account_id, position.volume, code)
        return {"account_id": account_id, "stock_code": code, "volume": position.volume,
                "can_use_volume": position.can_use, "frozen_volume": position.frozen,
                "avg_price": float(position.cost / position.volume) if position.volume else 0.0}

    def _known_account(self, account_id: Any) -> str:
        if str(account_id) not in self._books.accounts:
            raise ValueError(f"account {account_id!r} is not one of the simulator's "
                             f"({', '.join(self._books.accounts)})")
        return str(account_id)

    def books(self, account_id: str) -> dict[str, Any]:
        """A plain-dict snapshot of one account: asset fields, positions, orders and trades."""

        def work() -> dict[str, Any]:
            account = self._books.account(account_id)
            snapshot: dict[str, Any] = dict(vars(records.xt_asset(self._books.asset(account_id))))
            snapshot["positions"] = {
                code: dict(vars(self._xt_position(account_id, p))) for code, p in account.positions.items()
            }
            snapshot["orders"] = {oid: dict(vars(records.xt_order(o))) for oid, o in account.orders.items()}
            snapshot["trades"] = [dict(vars(records.xt_trade(t))) for t in account.trades]
            return snapshot

        return self._call(work)

    # -- market data (adapter.sim.feed; callable from any thread) ---------------------------

    def on_quotes(self, callback: Callable[[dict[str, dict[str, Any]]], None]) -> Callable[[], None]:
        """Call ``callback({code: tick})`` on the counter's thread after every price step (and
        ``set_price``, ``next_day``) with the ticks that changed; it must only hand them off (and
        not change them: every subscriber gets the same dicts). Returns the unsubscribe."""
        with self._lock:
            self._quote_callbacks += (callback,)

        def unsubscribe() -> None:
            with self._lock:
                self._quote_callbacks = tuple(c for c in self._quote_callbacks if c is not callback)

        return unsubscribe

    def full_tick(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        """``SimFeed.full_tick``; the codes named move with the walk from now on (a whole market
        asked as "SH" / "SZ" / "BJ" does not: thousands of codes would walk every step)."""
        ticks = self.feed.full_tick(codes)
        self._watch([code for code in codes if code in ticks])
        return ticks

    def record_ticks(self, codes: list[str]) -> None:
        """``SimFeed.record_ticks`` (a tick subscription); the codes move with the walk."""
        self.feed.record_ticks(codes)
        self._watch(codes)

    def market_data(self, *args: Any, **kwargs: Any) -> dict[str, dict[str, list[Any]]]:
        """``SimFeed.market_data`` (xtdata's get_market_data_ex arguments)."""
        return self.feed.market_data(*args, **kwargs)

    def local_data(self, *args: Any, **kwargs: Any) -> dict[str, dict[str, list[Any]]]:
        return self.feed.local_data(*args, **kwargs)

    def trading_dates(self, market: str, start_time: str = "", end_time: str = "", count: int = -1) -> list[int]:
        return self.feed.trading_dates(market, start_time, end_time, count)

    def download_history(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """``SimFeed.download_history``: the progress dicts (also given to a ``callback``)."""
        return self.feed.download_history(*args, **kwargs)

    def _watch(self, codes: list[str]) -> None:
        # Asking the books for a quote marks it as in use (the walk moves what is in use); on the
        # counter's thread, without waiting for it.
        def work() -> None:
            for code in codes:
                self._books.quote(code)

        self._post(work)

    # -- everything below runs on the counter thread -------------------------------------

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

    def _push(self, account_id: str, callback: str, data: object) -> None:
        for session in self._sessions.values():
            if session.active and account_id in session.subscribed:
                session.deliver(callback, data)

    def _publish(self, events: list[Event]) -> None:
        """Push what a books operation changed, in order, and note changed orders for the file."""
        for event in events:
            if isinstance(event, OrderChanged):
                self._touch(event.order)
                self._push(event.order.account_id, CB_ORDER, records.xt_order(event.order))
            elif isinstance(event, TradeMade):
                self._push(event.trade.account_id, CB_TRADE, records.xt_trade(event.trade))
            elif isinstance(event, PositionChanged):
                self._push(event.account_id, CB_POSITION, self._xt_position(event.account_id, event.position))
            elif isinstance(event, AssetChanged):
                self._push(event.asset.account_id, CB_ASSET, records.xt_asset(event.asset))

    def _xt_position(self, account_id: str, position: Position) -> xttype.XtPosition:
        return records.xt_position(account_id, position, self._books.quotes[position.code])

    def _account_for(self, session: Session, fields: RequestFields) -> tuple[Account | None, str]:
        """The account a request names, if this session may use it; else why not."""
        account_id = str(fields.get("m_strAccountID", ""))
        account = self._books.accounts.get(account_id)
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
        if account_id not in self._books.accounts or fields.get("m_nAccountType") != STOCK_ACCOUNT:
            session.deliver(CB_SUBSCRIBE, seq, -1)
            return
        session.subscribed.add(account_id)
        session.deliver(CB_SUBSCRIBE, seq, 0)
        session.deliver(CB_ACCOUNT_STATUS, AccountStatusPush(account_id, STOCK_ACCOUNT, xtconstant.ACCOUNT_STATUS_OK))

    def _on_unsubscribe(self, session: Session, seq: int, fields: RequestFields) -> None:
        account_id = str(fields.get("m_strAccountID", ""))
        if account_id not in self._books.accounts:
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
        placed = self._books.place(
            account.account_id,
            str(fields.get("m_strStockCode", "")),
            _int(fields.get("m_nOrderType")),
            _int(fields.get("m_nOrderVolume")),
            _int(fields.get("m_nPriceType")),
            fields.get("m_dPrice"),
            str(fields.get("m_strStrategyName", "")),
            str(fields.get("m_strOrderRemark", "")),
        )
        order = placed.order
        response = OrderStockResp(account.account_id, order.order_id, order.strategy_name, order.order_remark, "")
        session.deliver(CB_ORDER_RESP, seq, response)  # before the order's pushes
        self._publish(placed.events)
        if placed.refusal is not None:
            error = make_order_error(
                seq,
                account.account_id,
                order.order_id,
                records.ORDER_REFUSED_ERROR_ID,  # the counter's own code stays in the message
                records.order_error_message(order.order_type, order.price_type, order.code, placed.refusal.message),
                order.strategy_name,
                order.order_remark,
            )
            session.deliver(CB_ORDER_ERROR, error)  # errors go to the requester only: seqs are per client

    def _matching_opens(self) -> bool:
        """With "fixed" prices nothing steps, so orders that rested through an auction or a break get
        one matching pass when their code's continuous trading starts (fewer codes frozen than before)."""
        try:
            count = len(self.feed.frozen(self._now_ms()))
        except Exception:  # as a failing task: logged, the counter goes on
            log.exception("simulated counter task failed")
            return False
        opens = count < self._frozen_count
        self._frozen_count = count
        return opens

    def _timer_tick(self) -> None:
        """The timer's step: a large walk goes in parts of ``STEP_PART`` codes, each a task of its
        own, so orders that arrive meanwhile wait for one part (~15 ms), not the whole table."""
        if self._parts_left:  # the last step is still going (a cadence faster than a step): skip this one
            return
        frozen = self.feed.frozen(int(self._clock() * 1000))
        walking = self.config.price_model == "walk"
        orders = self._books.open_orders() if walking else []
        codes = sorted(self._books.walking(frozen, orders)) if walking else []
        if len(codes) <= STEP_PART or len(frozen) >= len(self._books.quotes):
            self._tick()
            return
        by_code: dict[str, list[Order]] = {}
        for order in orders:  # in order id order, as the books match them
            by_code.setdefault(order.code, []).append(order)
        now = time.monotonic()
        for number, start in enumerate(range(0, len(codes), STEP_PART)):
            part = codes[start:start + STEP_PART]
            task: Callable[[], None] = functools.partial(self._step_part, frozen, part, by_code)
            heapq.heappush(self._deferred, (now + number * PART_SPACING, next(self._deferred_ids), task))
            self._parts_left += 1

    def _step_part(self, frozen: frozenset[str] | set[str], part: list[str], by_code: dict[str, list[Order]]) -> None:
        """One part of a timed step. Its orders are those open when the step began and still
        open (an order placed meanwhile was matched when placed, and waits for the next step)."""
        self._parts_left -= 1
        orders = sorted((order for code in part for order in by_code.get(code, ()) if order.is_open),
                        key=lambda order: order.order_id)
        self._publish(self._books.step(frozen, only=part, orders=orders))
        self._feed_tick({code: self._books.quotes[code] for code in part})

    def _tick(self) -> None:
        # Suspended codes, and with sim.market_hours "exchange" all outside continuous trading, stay
        # where they are; while that is every code there is nothing to step.
        frozen = self.feed.frozen(int(self._clock() * 1000))
        if len(frozen) < len(self._books.quotes):
            self._publish(self._books.step(frozen))
        self._feed_tick()

    def _feed_tick(self, quotes: dict[str, Any] | None = None) -> None:
        """The market takes the quotes as they are now; subscribers get the ticks that changed."""
        callbacks = self._quote_callbacks
        ticks = self.feed.on_step(int(self._clock() * 1000), self._books.quotes if quotes is None else quotes,
                                  ticks=bool(callbacks))
        self._quotes_out(ticks)

    def _quotes_out(self, ticks: dict[str, dict[str, Any]]) -> None:
        if not ticks:
            return
        for callback in self._quote_callbacks:
            try:
                callback(ticks)
            except Exception:  # a subscriber's bug must not stop the counter
                log.exception("a quote subscriber failed")

    # -- cancels -------------------------------------------------------------------------

    def _on_cancel(self, session: Session, seq: int, fields: RequestFields) -> None:
        account, problem = self._account_for(session, fields)
        if account is None:
            self._deliver_all(session, failure_deliveries("cancelOrderStockWithSeq", seq, fields, problem))
            return
        sysid = str(fields.get("m_strOrderSysID", "") or "")
        market = _int(fields.get("m_nMarket", -1))
        cancelled = self._books.cancel(account.account_id, _int(fields.get("m_nOrderID", -1)), sysid, market)
        order, refusal = cancelled.order, cancelled.refusal
        if order is None:
            assert refusal is not None
            response = CancelOrderStockResp(account.account_id, -1, cancelled.order_id, sysid, refusal.message)
            session.deliver(CB_CANCEL_RESP, seq, response)
            error = make_cancel_error(
                seq, account.account_id, cancelled.order_id, market, sysid, refusal.error_id, refusal.message
            )
            session.deliver(CB_CANCEL_ERROR, error)
            return
        # The response echoes how the cancel was addressed (xttrader matches errors that way).
        session.deliver(CB_CANCEL_RESP, seq, CancelOrderStockResp(account.account_id, 0, order.order_id, sysid, ""))
        if refusal is not None:
            error = make_cancel_error(
                seq, account.account_id, order.order_id, order.market, order.sysid, refusal.error_id, refusal.message
            )
            session.deliver(CB_CANCEL_ERROR, error)
            return
        self._publish(cancelled.events)

    # -- queries -------------------------------------------------------------------------

    def _query_account(self, session: Session, method: str, seq: int, fields: RequestFields) -> Account | None:
        account, problem = self._account_for(session, fields)
        if account is None:
            self._deliver_all(session, failure_deliveries(method, seq, fields, problem))
        return account

    def _on_query_asset(self, session: Session, seq: int, fields: RequestFields) -> None:
        method = "queryStockAssetWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is not None:
            session.deliver(RESPONSE_CALLBACKS[method], seq, [records.xt_asset(self._books.asset(account.account_id))])

    def _on_query_orders(self, session: Session, seq: int, fields: RequestFields) -> None:
        method = "queryStockOrdersWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is None:
            return
        orders: Iterable[Order] = account.orders.values()
        if fields.is_set("m_nOrderID"):
            wanted = _int(fields.get("m_nOrderID"))
            orders = [o for o in orders if o.order_id == wanted]
        elif fields.get("m_bCanCancel"):
            orders = [o for o in orders if o.is_open]
        self._answer_long(session, method, seq, list(orders), records.xt_order)

    def _on_query_trades(self, session: Session, seq: int, fields: RequestFields) -> None:
        method = "queryStockTradesWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is not None:
            self._answer_long(session, method, seq, list(account.trades), records.xt_trade)

    def _answer_long(self, session: Session, method: str, seq: int, items: list[Any],
                     build: Callable[[Any], Any]) -> None:
        """A day of orders or trades, built ``QUERY_PART`` at a time, one part per turn of the loop,
        so orders and cancels are served between the parts instead of waiting for the whole day.
        Each part shows its records as they are when it is built. A client that takes parts (the
        counter process's link) gets each part as it is made; others get the whole list at the end."""
        callback = RESPONSE_CALLBACKS[method]
        if len(items) <= QUERY_PART:
            session.deliver(callback, seq, [build(item) for item in items])
            return
        in_parts = getattr(session.client, "takes_parts", False)
        answer_id, made = next(self._answer_ids), []

        def part(start: int) -> None:
            chunk = [build(item) for item in items[start:start + QUERY_PART]]
            if in_parts:
                session.deliver(PART, answer_id, chunk)
            else:
                made.extend(chunk)
            if start + QUERY_PART < len(items):
                heapq.heappush(self._deferred, (time.monotonic(), next(self._deferred_ids),
                                                lambda: part(start + QUERY_PART)))
            elif in_parts:
                session.deliver(PARTS_DONE, callback, seq, answer_id)
            else:
                session.deliver(callback, seq, made)

        part(0)

    def _on_query_positions(self, session: Session, seq: int, fields: RequestFields) -> None:
        method = "queryStockPositionsWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is None:
            return
        positions: Iterable[Position] = account.positions.values()
        if fields.is_set("m_strStockCode"):
            wanted = str(fields.get("m_strStockCode"))
            positions = [p for p in positions if p.code == wanted]
        session.deliver(RESPONSE_CALLBACKS[method], seq, [self._xt_position(account.account_id, p) for p in positions])

    def _on_query_account_infos(self, session: Session, seq: int, fields: RequestFields) -> None:
        infos = [AccountInfo(a, STOCK_ACCOUNT, xtconstant.ACCOUNT_STATUS_OK) for a in self._books.accounts]
        session.deliver(RESPONSE_CALLBACKS["queryAccountInfosWithSeq"], seq, infos)

    def _on_query_credit(self, method: str, session: Session, seq: int, fields: RequestFields) -> None:
        """The sim's accounts are cash accounts: a counter answers their credit queries empty."""
        if self._query_account(session, method, seq, fields) is not None:
            session.deliver(RESPONSE_CALLBACKS[method], seq, [])

    def _on_query_new_purchase_limit(self, session: Session, seq: int, fields: RequestFields) -> None:
        method = "queryNewPurchaseLimitWithSeq"
        account = self._query_account(session, method, seq, fields)
        if account is None:
            return
        limits = self._books.purchase_limits(account.account_id)
        items = [records.Item(m_strNewPurchaseLimitKey=key, m_nNewPurchaseLimitValue=amount) for key, amount in limits.items()]
        session.deliver(RESPONSE_CALLBACKS[method], seq, items)

    def _on_query_ipo_data(self, session: Session, seq: int, fields: RequestFields) -> None:
        """The sim lists no new issues."""
        session.deliver(RESPONSE_CALLBACKS["queryIPODataWithSeq"], seq, [])

    def _on_query_account_status(self, session: Session, seq: int, fields: RequestFields) -> None:
        statuses = [xttype.XtAccountStatus(a, STOCK_ACCOUNT, xtconstant.ACCOUNT_STATUS_OK) for a in self._books.accounts]
        session.deliver(RESPONSE_CALLBACKS["queryAccountStatusWithSeq"], seq, statuses)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _deliver(batch: list[tuple[Any, str, tuple[Any, ...]]]) -> None:
    for client, callback, args in batch:
        client.deliver(callback, *args)
