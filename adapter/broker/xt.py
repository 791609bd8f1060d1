"""The broker worker: owns one ``XtQuantTrader`` on a dedicated thread.

Threads (docs/architecture.md §2):
- the broker thread constructs the trader (its ``__init__`` sets an asyncio loop on the
  calling thread), connects, subscribes, and makes every trader call; it only uses the
  non-blocking ``*_async`` forms after start-up, so a slow counter never blocks it;
- xtquant's single callback thread runs ``_Forwarder`` methods, which only turn the xttype
  object into a plain map and ``post`` it to the I/O thread;
- the I/O thread (the server) receives everything through ``post``.

What is posted: the types in ``messages.py``.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ..config import Config
from ..protocol import errors, events, ops
from .messages import Answered, Books, BrokerMessage, Connection, Failed, Pushed, Records, Responded, Sent

log = logging.getLogger(__name__)

Post = Callable[[BrokerMessage], None]


class BrokerStartError(RuntimeError):
    """The counter could not be started, connected or subscribed."""


_RECONNECT = object()  # a broker-queue item: reconnect now
RECONNECT_FIRST_DELAY = 0.5  # seconds; doubles per failed try
RECONNECT_MAX_DELAY = 30.0


def _warn_unapplied_positions(config: Config, state: Path) -> None:
    """Configured positions seed only new books (or an account they lack): when saved books win,
    say so at start, and how to begin from the configuration again."""
    from ..sim.store import saved_accounts

    held = sorted(str(a) for a in config.sim.positions if str(a) in saved_accounts(state))
    if held:
        log.warning(
            "sim.positions of account(s) %s are not applied: the saved books in %s are used (the "
            "configuration seeds only new books or an account they lack); to start again from the "
            "configuration run 'qmt-adapter sim reset', or stop the gateway and delete that file",
            ", ".join(held), state,
        )


def new_session_id() -> int:
    # Real terminals refuse a session id reused within seconds or shared by two processes.
    return random.SystemRandom().randint(100_000, 2**31 - 1)


class XtBroker:
    """Runs ``XtQuantTrader`` calls on its own thread and forwards callbacks via ``post``."""

    def __init__(self, config: Config, post: Post) -> None:
        self.config = config
        self.backend = config.backend
        self.session_id = config.session_id or new_session_id()
        self.view: dict[str, dict[str, Any]] = {}  # account -> start-up query results
        self.counter: Any = None  # the SimCounter with backend "sim" (a CounterProcess with sim_process)
        self._post = post
        self._commands: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._trader: Any = None
        self._accounts: dict[tuple[str, str], Any] = {}
        # seq -> (token, kind) of the order/cancel that used it; guards the race where the
        # counter answers before order_stock_async has returned its seq to this thread.
        self._owners: dict[int, tuple[int, str]] = {}
        self._owners_lock = threading.Lock()
        self._sim_path = ""
        self._path = ""
        self._controls: _ControlWorker | None = None  # the sim op's worker, made at its first use

    # -- life cycle (called from the gateway's control thread) ------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start, connect, subscribe every account and query the books; raises on failure."""
        self._thread = threading.Thread(target=self._run, name="qmt-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise BrokerStartError(f"counter did not come up within {timeout:.0f} s")
        if self._start_error is not None:
            raise BrokerStartError(str(self._start_error)) from self._start_error

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._commands.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("broker thread did not stop within %.0f s", timeout)
        self._thread = None

    def submit(self, token: int, spec: ops.OpSpec, args: dict[str, Any], raw: bool = False) -> None:
        """Queue one validated command for the broker thread (thread-safe). ``raw``: a list query's
        answer comes as ``Records``, converted by whoever encodes it."""
        self._commands.put((token, spec, args, raw))

    def reconnect(self) -> None:
        """After ``on_disconnected``: reconnect from the broker thread, never inside a callback."""
        self._commands.put(_RECONNECT)

    # -- broker thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._path = self._native_path()
            self._trader = self._new_trader()
            self._open()
        except BaseException as exc:  # reported to start()'s caller
            self._start_error = exc
            self._close_trader()
            self._started.set()
            return
        self._started.set()
        while True:
            item = self._commands.get()
            if item is None:
                break
            if item is _RECONNECT:
                if not self._reconnect():
                    break
                continue
            token, spec, args, raw = item
            try:
                self._execute(token, spec, args, raw)
            except Exception as exc:
                log.exception("broker call %s failed (token %s)", spec.name, token)
                self._post(Failed(token, errors.BROKER_ERROR, f"{spec.name} failed: {exc}"))
        self._close_trader()

    def _reconnect(self) -> bool:
        """Fresh trader and session, back-off between tries; False if asked to stop meanwhile."""
        delay = RECONNECT_FIRST_DELAY
        while True:
            self._stop_trader()
            self.session_id = new_session_id()  # a counter refuses a session id reused within seconds
            try:
                self._trader = self._new_trader()
                self._open()
                break
            except Exception as exc:
                log.warning("reconnect failed (%s); next try in %.1f s", exc, delay)
            if not self._idle(delay):
                return False
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
        log.info("reconnected with session %s", self.session_id)
        for account_id, books in self.view.items():
            self._post(Books(account_id, books))
        self._post(Connection(True, "reconnected and reconciled", time.time_ns()))
        return True

    def _idle(self, seconds: float) -> bool:
        """Wait between reconnection tries, refusing commands; False when stop is asked."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = self._commands.get(timeout=remaining)
            except queue.Empty:
                return True
            if item is None:
                return False
            if item is not _RECONNECT:
                token, spec, _, _ = item
                self._post(Failed(token, errors.BROKER_UNAVAILABLE, f"{spec.name}: the counter is not connected"))
        return True

    def _native_path(self) -> str:
        """Where XtQuantTrader connects: the sim counter's registry path, or QMT's userdata."""
        if self.backend == "sim":
            from .. import sim

            sim.install()
            # The sim's books persist beside the journal, as a real counter's do across restarts.
            state = Path(self.config.data_dir) / "sim-counter.sqlite3"
            if self.config.sim.persist:
                _warn_unapplied_positions(self.config, state)
            if self.config.sim_process:  # its own process, found through the path as QMT is
                self.counter = sim.start_counter_process(
                    Path(self.config.data_dir) / "sim-qmt", self.config.sim, self.config.accounts,
                    state_path=state if self.config.sim.persist else None,
                )
                return str(self.counter.path)
            self.counter = sim.SimCounter(
                self.config.sim, self.config.accounts, state_path=state if self.config.sim.persist else None
            )
            self._sim_path = f"sim://{uuid.uuid4().hex}"
            sim.register_counter(self._sim_path, self.counter)
            return self._sim_path
        from ..xtimport import import_xtquant

        import_xtquant()
        try:
            import xtquant.xttrader  # noqa: F401  # loads the native client
        except ImportError as exc:
            raise BrokerStartError(
                "backend qmt needs xtquant's native client, which ships only as Windows .pyd files "
                f"for the Python versions xtquant supports ({exc}); on this machine use --backend sim"
            ) from None
        return self.config.qmt_path

    def _new_trader(self) -> Any:
        path = self._path
        from xtquant.xttrader import XtQuantTrader

        class Trader(XtQuantTrader):
            def __del__(self) -> None:
                # xtquant's __del__ restores an event loop it saved only when built on the main
                # thread; built here and collected elsewhere, it raises. Nothing to restore.
                pass

        trader = Trader(path, self.session_id)
        trader.register_callback(_make_forwarder(self._post, self._owners, self._owners_lock))
        return trader

    def _open(self) -> None:
        """Seed guide order: start -> connect -> subscribe -> query, all before serving."""
        trader = self._trader
        trader.start()
        result = trader.connect()
        if result != 0:
            raise BrokerStartError(
                f"connect() returned {result}: is QMT running and logged in, and is "
                f"{self.config.qmt_path or 'the path'} its userdata_mini folder?"
            )
        for account_id in self.config.accounts:
            result = trader.subscribe(self._account(account_id, "STOCK"))
            if result != 0:
                raise BrokerStartError(f"subscribe({account_id}) returned {result}")
        for account_id in self.config.accounts:
            account = self._account(account_id, "STOCK")
            self.view[account_id] = {
                "asset": _record(trader.query_stock_asset(account), events.ASSET_FIELDS),
                "positions": _records(trader.query_stock_positions(account), events.POSITION_FIELDS),
                "orders": _records(trader.query_stock_orders(account), events.ORDER_FIELDS),
                "trades": _records(trader.query_stock_trades(account), events.TRADE_FIELDS),
            }

    def _close_trader(self) -> None:
        self._stop_trader()
        if self._controls is not None:
            self._controls.stop()
        if self.counter is not None:
            from .. import sim

            sim.unregister_counter(self._sim_path)
            self.counter.close()

    def _stop_trader(self) -> None:
        if self._trader is not None:
            try:
                if self._trader.executor is not None:
                    self._trader.stop()
                # xtquant never runs this loop and never closes it; left to the garbage
                # collector at exit it is finalized after its own self-pipe and raises.
                if not self._trader.loop.is_running():
                    self._trader.loop.close()
            except Exception:
                log.exception("XtQuantTrader.stop() failed")
            self._trader = None

    def _account(self, account_id: str, account_type: str) -> Any:
        key = (account_id, account_type)
        account = self._accounts.get(key)
        if account is None:
            from xtquant.xttype import StockAccount

            account = self._accounts[key] = StockAccount(account_id, account_type)
        return account

    def _execute(self, token: int, spec: ops.OpSpec, args: dict[str, Any], raw: bool = False) -> None:
        if spec.kind == ops.CONTROL:
            self._control(token, spec, args)
            return
        trader = self._trader
        account = self._account(args["account_id"], args["account_type"]) if spec.takes_account else None
        kind = spec.kind
        if kind in (ops.ORDER, ops.ORDER_ASYNC, ops.CANCEL, ops.CANCEL_ASYNC):
            with self._owners_lock:
                if kind in (ops.ORDER, ops.ORDER_ASYNC):
                    seq = trader.order_stock_async(
                        account,
                        args["stock_code"],
                        args["order_type"],
                        args["order_volume"],
                        args["price_type"],
                        args["price"],
                        args["strategy_name"],
                        args["order_remark"],
                    )
                elif "sysid" in args:
                    seq = trader.cancel_order_stock_sysid_async(account, args["market"], args["sysid"])
                else:
                    seq = trader.cancel_order_stock_async(account, args["order_id"])
                if not isinstance(seq, int) or seq < 0:
                    self._post(Failed(token, errors.BROKER_ERROR, f"{spec.name}: xtquant refused the call (seq {seq})"))
                    return
                self._owners[seq] = (token, kind)
                # Posted under the lock so the reply with the seq precedes its response.
                self._post(Sent(token, kind, seq))
            return
        deliver = _query_delivery(self._post, token, spec.name, args, raw)
        name = spec.name
        if name == "query_stock_asset":
            trader.query_stock_asset_async(account, deliver)
        elif name in ("query_stock_positions", "query_stock_position"):
            trader.query_stock_positions_async(account, deliver)
        elif name in ("query_stock_orders", "query_stock_order"):
            trader.query_stock_orders_async(account, deliver, args.get("cancelable_only", False))
        elif name == "query_stock_trades":
            trader.query_stock_trades_async(account, deliver)
        elif name == "query_account_infos":
            trader.query_account_infos_async(deliver)
        elif name == "query_account_status":
            trader.query_account_status_async(deliver)
        elif name in _CREDIT_CALLS:
            getattr(trader, f"{name}_async")(account, deliver)
        elif name == "query_new_purchase_limit":
            trader.query_new_purchase_limit_async(account, deliver)
        elif name == "query_ipo_data":
            trader.query_ipo_data_async(deliver)
        else:  # the op table and this dispatch disagree: a bug, reported, not hidden
            raise NotImplementedError(f"no broker call for op {name}")


    def _control(self, token: int, spec: ops.OpSpec, args: dict[str, Any]) -> None:
        """The simulator's controls (PROTOCOL §17): the counter does the work on its own thread;
        the wait for its answer is the control worker's, never this thread's nor the I/O thread's."""
        action = args["action"]
        if self.counter is None:
            self._post(Failed(token, errors.INVALID_REQUEST,
                              f"{spec.name} {action}: this gateway's backend is {self.backend!r}, a real terminal, "
                              "not the simulator: there is nothing to control (sim ops need backend sim)"))
            return
        if self._controls is None:
            self._controls = _ControlWorker(self.counter, self._post)
        self._controls.put(token, action, {k: v for k, v in args.items() if k != "action" and v is not None})


class _ControlWorker:
    """One thread that hands the sim op's actions to the counter, one at a time, and posts each
    answer (``Answered``) or refusal (``Failed``) to the I/O thread."""

    def __init__(self, counter: Any, post: Post) -> None:
        self._counter = counter
        self._post = post
        self._work: queue.SimpleQueue[tuple[int, str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="qmt-sim-control", daemon=True)
        self._thread.start()

    def put(self, token: int, action: str, args: dict[str, Any]) -> None:
        self._work.put((token, action, args))

    def stop(self) -> None:
        self._work.put(None)

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            token, action, args = item
            try:
                result = self._counter.control(action, args)
            except ValueError as exc:  # the sim's own refusal: it names the code, account, tick or limit
                self._post(Failed(token, errors.INVALID_ARGUMENT, f"sim {action}: {exc}"))
            except (RuntimeError, TimeoutError, OSError) as exc:  # closed, or its process gone or silent
                self._post(Failed(token, errors.BROKER_UNAVAILABLE, f"sim {action}: the simulator did not answer: {exc}"))
            except Exception as exc:
                log.exception("sim %s failed", action)
                self._post(Failed(token, errors.BROKER_ERROR, f"sim {action} failed: {exc}"))
            else:
                self._post(Answered(token, result))


_CREDIT_CALLS = frozenset({
    "query_credit_detail", "query_stk_compacts", "query_credit_subjects", "query_credit_slo_code", "query_credit_assure",
})


def _public(obj: Any) -> dict[str, Any]:
    """A credit record as a map of its public attributes (their names differ by record type)."""
    return {k: events.plain(v) for k, v in vars(obj).items() if not k.startswith("_")}


def _record(obj: Any, fields: tuple[str, ...]) -> dict[str, Any] | None:
    return None if obj is None else events.to_map(obj, fields)


def _records(objs: Any, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    return [events.to_map(obj, fields) for obj in objs or ()]


def _query_delivery(post: Post, token: int, op: str, args: dict[str, Any], raw: bool = False) -> Callable[[Any], None]:
    """The callback xtquant runs (on its callback thread) with a query's response.

    The single-item queries have no async form in xttrader, so they use the list query
    and pick the item here: same answer, and the broker thread never blocks.
    """
    fields = events.QUERY_FIELDS.get(op, ())

    def deliver(response: Any) -> None:
        try:
            if op in _CREDIT_CALLS:
                result: Any = [_public(item) for item in response or ()]
            elif op == "query_new_purchase_limit":  # as xttrader's sync form shapes it
                result = {item.m_strNewPurchaseLimitKey: item.m_nNewPurchaseLimitValue for item in response or ()}
            elif op == "query_ipo_data":
                result = {
                    item.m_strIPOCode: {
                        "name": item.m_strIPOName, "type": item.m_strIPOType, "maxPurchaseNum": item.m_nMaxPurchaseNum,
                        "minPurchaseNum": item.m_nMinPurchaseNum, "purchaseDate": item.m_strPurchaseDate,
                        "issuePrice": item.m_dIssuePrice,
                    }
                    for item in response or ()
                }
            elif op == "query_stock_asset":
                result = _record(response, fields)
            elif op == "query_stock_position":
                code = args["stock_code"]
                result = next((events.to_map(p, fields) for p in response or () if p.stock_code == code), None)
            elif op == "query_stock_order":
                order_id = args["order_id"]
                result = next((events.to_map(o, fields) for o in response or () if o.order_id == order_id), None)
            elif raw:
                result = Records(list(response or ()), fields)
            else:
                result = _records(response, fields)
            post(Answered(token, result))
        except Exception as exc:
            log.exception("could not convert the %s response", op)
            post(Failed(token, errors.BROKER_ERROR, f"{op}: unreadable response: {exc}"))

    return deliver


def _make_forwarder(post: Post, owners: dict[int, tuple[int, str]], lock: threading.Lock) -> Any:
    """An ``XtQuantTraderCallback`` whose every method only converts and posts."""
    from xtquant.xttrader import XtQuantTraderCallback

    def forward(event_type: str, fields: tuple[str, ...]) -> Callable[[Any, Any], None]:
        def method(self: Any, obj: Any) -> None:
            ts = time.time_ns()
            data = events.to_map(obj, fields)
            post(Pushed(event_type, data.get("account_id"), data, ts))

        return method

    def respond(event_type: str, fields: tuple[str, ...]) -> Callable[[Any, Any], None]:
        def method(self: Any, obj: Any) -> None:
            ts = time.time_ns()
            data = events.to_map(obj, fields)
            seq = data.get("seq")
            owner = None
            if isinstance(seq, int):
                with lock:
                    owner = owners.pop(seq, None)
            token, kind = owner if owner is not None else (None, None)
            post(Responded(token, kind, event_type, data.get("account_id"), data, ts))

        return method

    namespace: dict[str, Any] = {}
    for callback_name, (event_type, fields) in events.CALLBACK_EVENTS.items():
        maker = respond if event_type in ("order_response", "cancel_response") else forward
        namespace[callback_name] = maker(event_type, fields)
    namespace["on_connected"] = lambda self: post(Connection(True, "connected", time.time_ns()))
    namespace["on_disconnected"] = lambda self: post(
        Connection(False, "counter connection lost", time.time_ns())
    )
    return type("Forwarder", (XtQuantTraderCallback,), namespace)()
