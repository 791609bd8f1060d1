"""``XtQuantTrader`` and ``XtQuantTraderCallback`` that talk to a gateway instead of a terminal.

Same constructor, method names, signatures, return values and callback threading as
``xtquant.xttrader``: pushes and responses are delivered one at a time on one callback thread
(a second one for responses with ``set_relaxed_response_order_enabled(True)``), ``run_forever()``
blocks, ``stop()`` ends it. Records are xtquant's own ``xttype`` classes when xtquant is
installed. The behaviour is checked against the genuine trader over the simulated counter by
tests/integration/test_compat_parity.py; docs/architecture.md and README say what differs.

What the gateway adds stays underneath: every order carries a client order id (a time-out is
retried with the same id, so it never orders twice), events are recovered across gaps, and the
gateway's risk checks apply. A request the gateway refuses looks like a request the terminal
refused: -1 (or a seq for ``*_async``) and an ``on_order_error`` / ``on_cancel_error`` whose
``error_id`` is one of ``GATEWAY_ERROR_IDS``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import inspect
import itertools
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator

from ..client import Client, GatewayError, GatewayTimeout
from ..client._ops import new_client_order_id
from ..client._stream import LIVENESS_EVENT
from ..protocol import DEFAULT_PUB, DEFAULT_ROUTER
from ..protocol import events
from . import xttypes

log = logging.getLogger("adapter.compat")

ROUTER_ENV, PUB_ENV = "QMT_ADAPTER_ROUTER", "QMT_ADAPTER_PUB"
NATS_ENV, GATEWAY_ENV = "QMT_ADAPTER_NATS", "QMT_ADAPTER_GATEWAY"  # trade through NATS (PROTOCOL §18)
_ENDPOINT_SCHEMES = ("tcp://", "ipc://", "inproc://")
_path_logged = False

# event type -> callback method
_CALLBACKS = {etype: method for method, (etype, _) in events.CALLBACK_EVENTS.items()}

# error_id of an XtOrderError / XtCancelError for a request the gateway refused or could not
# carry (PROTOCOL.md §15, README). Negative: a counter's own error ids are positive.
UNREACHABLE = -1  # no answer from the gateway, or it fell silent: as a terminal with no counter
GATEWAY_ERROR_IDS: dict[str, int] = {
    "invalid_argument": -1001, "missing_argument": -1001, "unknown_argument": -1001, "invalid_request": -1001,
    "unknown_op": -1001,
    "unknown_account": -1002,
    "permission_denied": -1003,
    "risk_denied": -1004,
    "too_many_requests": -1005,
    "broker_unavailable": -1006,
    "outcome_unknown": -1007, "broker_timeout": -1007, "client_timeout": -1007,
    "order_not_placed": -1008,
    "duplicate_client_order_id": -1009,
}
OTHER_GATEWAY_ERROR = -1099  # any other refusal (broker_error, ...)
_ORDER_ATTEMPTS = 3  # sends of one order (same client order id) while its outcome is unknown
_REMEMBERED = 10_000  # this trader's recent orders and cancels kept for matching their events


class XtQuantTraderCallback:
    """Override the methods you need; they run on the trader's callback thread."""

    def on_connected(self) -> None: ...
    def on_disconnected(self) -> None: ...
    def on_account_status(self, status: Any) -> None: ...
    def on_stock_asset(self, asset: Any) -> None: ...
    def on_stock_order(self, order: Any) -> None: ...
    def on_stock_trade(self, trade: Any) -> None: ...
    def on_stock_position(self, position: Any) -> None: ...
    def on_order_error(self, order_error: Any) -> None: ...
    def on_cancel_error(self, cancel_error: Any) -> None: ...
    def on_order_stock_async_response(self, response: Any) -> None: ...
    def on_cancel_order_stock_async_response(self, response: Any) -> None: ...
    def on_smt_appointment_async_response(self, response: Any) -> None: ...
    def on_bank_transfer_async_response(self, response: Any) -> None: ...
    def on_ctp_internal_transfer_async_response(self, response: Any) -> None: ...
    def on_smart_algo_order_async_response(self, response: Any) -> None: ...
    def on_operate_smart_task_async_response(self, response: Any) -> None: ...


def endpoints(path: str | None = None) -> tuple[str, str]:
    """(router, pub): a ZeroMQ ``path`` is the router; else QMT_ADAPTER_ROUTER / _PUB, else defaults."""
    global _path_logged
    router = os.environ.get(ROUTER_ENV) or DEFAULT_ROUTER
    pub = os.environ.get(PUB_ENV) or ""
    if path and str(path).startswith(_ENDPOINT_SCHEMES):
        router = str(path)
    elif path and not _path_logged:
        log.info("XtQuantTrader path %r is ignored: trading through the gateway at %s", path, router)
        _path_logged = True
    if not pub:
        pub = DEFAULT_PUB if router == DEFAULT_ROUTER else _next_port(router)
    return router, pub


def _new_client(router: str, pub: str, options: dict[str, Any]) -> Client:
    """The gateway's client: over NATS when QMT_ADAPTER_NATS names a server (the gateway for
    ops without an account from QMT_ADAPTER_GATEWAY when several are on it), else ZeroMQ."""
    nats = os.environ.get(NATS_ENV)
    if nats:
        extra: dict[str, Any] = {"gateway": os.environ[GATEWAY_ENV]} if os.environ.get(GATEWAY_ENV) else {}
        return Client(nats=nats, **options, **extra)
    return Client(router, pub, **options)


def _next_port(router: str) -> str:
    """The PUB beside a ROUTER on port N is on N + 1 (the gateway's default layout)."""
    head, _, port = router.rpartition(":")
    return f"{head}:{int(port) + 1}" if port.isdigit() else router


def refusal(exc: GatewayError) -> tuple[int, str]:
    """(error_id, error_msg) of an xtquant error record for a request the gateway did not carry."""
    if isinstance(exc, GatewayTimeout) and not exc.sent:
        return UNREACHABLE, f"[unreachable] {exc.message}"
    rule = exc.details.get("rule")
    label = f"{exc.code}: {rule}" if rule else exc.code
    return GATEWAY_ERROR_IDS.get(exc.code, OTHER_GATEWAY_ERROR), f"[{label}] {exc.message}"


class _Remembered(collections.OrderedDict):  # type: ignore[type-arg]
    """A dict that forgets its oldest entries beyond ``_REMEMBERED`` (bounded through a long day)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if len(self) > _REMEMBERED:
            self.popitem(last=False)


class _Worker:
    """One thread running posted work in order (xtquant's single-worker executors, and the one
    connection its requests travel on in order)."""

    def __init__(self, name: str) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def post(self, work: Callable[[], None]) -> None:
        self._queue.put(work)

    def drained(self, timeout: float) -> bool:
        """Wait until everything posted before this call has run (False after ``timeout``)."""
        done = threading.Event()
        self._queue.put(done.set)
        return done.wait(timeout)

    def run(self, work: Callable[[], Any], limit: float) -> Any:
        """Run ``work`` on this thread (at once when already on it) and return what it returns."""
        if threading.current_thread() is self.thread:
            return work()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def job() -> None:
            try:
                future.set_result(work())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        self._queue.put(job)
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            raise GatewayTimeout(f"the request thread did not answer within {limit:g}s", sent=False) from None

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                work()
            except Exception:  # a strategy's bug must not stop its other callbacks
                log.exception("callback raised")


class XtQuantTrader:
    """``xtquant.xttrader.XtQuantTrader`` over a qmt-zmq-adapter gateway.

    ``client_options`` go to :class:`adapter.client.Client` (``timeout``, keys,
    ``liveness_timeout``). Threads: every request goes to the gateway from one request thread,
    in call order (xtquant's one connection); a synchronous call waits for its answer there,
    an ``*_async`` one returns its seq at once. Events arrive on the client's subscription
    thread, which only converts them and posts them to the callback thread.
    """

    def __init__(self, path: str, session: int, callback: Any = None, **client_options: Any) -> None:
        self.path = path
        self.session = session
        self.callback = callback
        self._router, self._pub = endpoints(path)
        self._client_options = {"timeout": 10.0, **client_options}
        self._client: Client | None = None
        self._subscription: Any = None
        self._resume_from: int | None = None  # the stream position kept across stop() / start()
        self._accounts: set[str] = set()
        self._lock = threading.Lock()  # this trader's tables
        self._life = threading.Lock()  # start() against itself
        self._deliver_lock = threading.RLock()  # one event (or held batch) handed on at a time, in order
        self._seqs = itertools.count(1)  # request seqs, one series per trader as in xtquant
        # What this trader sent, so that session-specific callbacks reach only it (as in xtquant):
        self._orders: _Remembered = _Remembered()  # client order id -> (seq, async)
        self._cancels: _Remembered = _Remembered()  # the gateway's cancel seq -> (seq, async)
        self._gated = 0  # this trader's orders and cancels awaiting their reply
        self._held: list[tuple[str, dict[str, Any]]] = []  # events held meanwhile, in order
        self._callbacks: _Worker | None = None
        self._responses: _Worker | None = None  # relaxed response order: a thread of its own
        self._requests: _Worker | None = None  # every request to the gateway, in call order
        self._relaxed = False
        self._stopped = threading.Event()
        self._down = False  # the gateway fell silent: calls fail fast until connect() succeeds
        self._warned_inside = False
        self.connected = False

    # -- life cycle --------------------------------------------------------------------

    def register_callback(self, callback: Any) -> None:
        self.callback = callback

    def set_timeout(self, timeout: int = 0) -> None:
        """Milliseconds, as in xtquant; 0 keeps the default (10 s)."""
        if timeout:
            self._client_options["timeout"] = timeout / 1000.0
            if self._client is not None:
                self._client.timeout = timeout / 1000.0

    def set_relaxed_response_order_enabled(self, enabled: bool) -> None:
        """As in xtquant: off (the default), a synchronous call returns only after the callbacks
        of everything received before its answer have run; on, answers and ``*_async`` query
        results come from a thread of their own, so a synchronous query inside a callback works."""
        self._relaxed = bool(enabled)

    def start(self) -> None:
        with self._life:  # called from the strategy's threads and the request thread alike
            self._stopped.clear()
            if self._callbacks is None:
                self._callbacks = _Worker("xtquant-compat-callbacks")
                self._responses = _Worker("xtquant-compat-responses")
                self._requests = _Worker("xtquant-compat-requests")
            if self._client is None:
                self._client = _new_client(self._router, self._pub, self._client_options)

    def stop(self) -> None:
        if self._subscription is not None:
            self._resume_from = _next_seq(self._subscription.last_seq) or self._resume_from
            self._subscription.close()
            self._subscription = None
        if self._client is not None:
            self._client.close()
            self._client = None
        for worker in (self._requests, self._responses, self._callbacks):
            if worker is not None:
                worker.stop()
        self._callbacks = self._responses = self._requests = None
        self.connected = False
        self._stopped.set()

    def connect(self) -> int:
        """0 when the gateway answers and its counter is connected; -1 otherwise."""
        self.start()
        assert self._client is not None
        try:
            info = self._client.ping()
        except GatewayError as exc:
            log.error("connect: the gateway at %s does not answer (%s)", self._router, exc)
            return -1
        self.connected = bool(info.connected)
        if not self.connected:
            log.error("connect: the gateway at %s is up but its counter is not connected", self._router)
            return -1
        if self._resume_from is None and isinstance(info.get("last_seq"), int):
            self._resume_from = info.last_seq + 1  # every event from now on, even one the SUB misses
        if not self._ensure_subscription():
            return -1
        self._down = False
        return 0

    def run_forever(self) -> None:
        """Block until ``stop()`` (xtquant's never returns; Ctrl-C still ends it)."""
        try:
            while not self._stopped.wait(1.0):
                pass
        except KeyboardInterrupt:
            self.stop()
            raise

    def sleep(self, time: float) -> None:  # noqa: A002 - xtquant's parameter name
        _sleep(time)

    def subscribe(self, account: Any) -> int:
        if self._down or not self._ensure_subscription():
            return -1
        statuses = self.query_account_status()
        if statuses is None:
            return -1
        mine = [status for status in statuses if status.account_id == account.account_id]
        if not mine:  # the gateway does not serve it: the counter answers -1 then
            log.error("subscribe: the gateway at %s does not serve account %s", self._router, account.account_id)
            return -1
        with self._lock:
            self._accounts.add(account.account_id)
        # The terminal pushes the account's login status to a new subscriber; so does this.
        for status in mine:
            self._call_back("on_account_status", status)
        return 0

    def unsubscribe(self, account: Any) -> int:
        with self._lock:
            self._accounts.discard(account.account_id)
        return 0

    # -- orders ------------------------------------------------------------------------
    # While one of this trader's orders or cancels awaits its reply, events are held in order
    # (the gate): only the reply tells which async responses and cancel errors are this
    # session's, and holding everything keeps the callbacks in the counter's order.

    def order_stock(self, account: Any, stock_code: str, order_type: int, order_volume: int, price_type: int,
                    price: float, strategy_name: str = "", order_remark: str = "") -> int:
        seq = self._order(account, stock_code, order_type, order_volume, price_type, price, strategy_name,
                          order_remark, False)
        return seq

    def order_stock_async(self, account: Any, stock_code: str, order_type: int, order_volume: int, price_type: int,
                          price: float, strategy_name: str = "", order_remark: str = "") -> int:
        return self._order(account, stock_code, order_type, order_volume, price_type, price, strategy_name,
                           order_remark, True)

    def _order(self, account: Any, stock_code: str, order_type: int, order_volume: int, price_type: int,
               price: float, strategy_name: str, order_remark: str, is_async: bool) -> int:
        seq = next(self._seqs)
        coid = new_client_order_id()
        op = "order_stock_async" if is_async else "order_stock"
        refused = {"account_type": account.account_type, "account_id": account.account_id, "order_id": -1,
                   "strategy_name": strategy_name, "order_remark": order_remark}

        def send() -> int:  # on the request thread
            with self._gate():
                with self._lock:
                    self._orders[coid] = (seq, is_async)
                try:
                    response = self._send_order(op, coid, lambda c: getattr(c, op)(
                        account.account_id, stock_code, order_type, int(order_volume), price_type, price,
                        strategy_name, order_remark, client_order_id=coid, account_type=account.account_type))
                except GatewayError as exc:
                    error_id, message = refusal(exc)
                    log.warning("%s %s refused: %s", op, stock_code, message)
                    with self._deliver_lock:
                        if is_async:
                            self._respond_push("on_order_stock_async_response", "XtOrderResponse",
                                               {**refused, "error_msg": message, "seq": seq})
                        self._call_back("on_order_error", xttypes.make("XtOrderError", {
                            **refused, "error_id": error_id, "error_msg": message, "seq": seq}))
                    return -1
            return 0 if is_async else int(response.order_id)  # an async order's id comes in its response

        if is_async:  # as xtquant's: the seq now, everything else through callbacks
            self._submit(send)
            return seq
        order_id = self._on_requests(send)
        self._settle()
        return int(order_id)

    def _send_order(self, op: str, coid: str, call: Callable[[Client], Any]) -> Any:
        """Send one order; while its outcome is unknown, send it again under the same client
        order id (the gateway never orders twice) a bounded number of times."""
        for attempt in range(1, _ORDER_ATTEMPTS + 1):
            try:
                return self._do(call)
            except GatewayError as exc:
                unknown = exc.code == "outcome_unknown" or (isinstance(exc, GatewayTimeout) and exc.sent)
                if not unknown or attempt == _ORDER_ATTEMPTS or self._down:
                    raise
                log.warning("%s %s: outcome unknown (%s); asking again with the same client order id",
                            op, coid, exc.code)
        raise AssertionError("unreachable")

    def cancel_order_stock(self, account: Any, order_id: int) -> int:
        return self._cancel(account, lambda c: c.cancel_order_stock(
            account.account_id, order_id, account_type=account.account_type), order_id, -1, "", False)

    def cancel_order_stock_async(self, account: Any, order_id: int) -> int:
        return self._cancel(account, lambda c: c.cancel_order_stock_async(
            account.account_id, order_id, account_type=account.account_type), order_id, -1, "", True)

    def cancel_order_stock_sysid(self, account: Any, market: Any, sysid: str) -> int:
        return self._cancel(account, lambda c: c.cancel_order_stock_sysid(
            account.account_id, market, sysid, account_type=account.account_type), -1, market, sysid, False)

    def cancel_order_stock_sysid_async(self, account: Any, market: Any, sysid: str) -> int:
        return self._cancel(account, lambda c: c.cancel_order_stock_sysid_async(
            account.account_id, market, sysid, account_type=account.account_type), -1, market, sysid, True)

    def _cancel(self, account: Any, call: Callable[[Client], Any], order_id: int, market: Any, sysid: str,
                is_async: bool) -> int:
        seq = next(self._seqs)

        def send() -> int:  # on the request thread
            with self._gate():
                try:
                    result = self._do(call)
                except GatewayError as exc:
                    error_id, message = refusal(exc)
                    log.warning("cancel of %s refused: %s", sysid or order_id, message)
                    market_id = market if isinstance(market, int) else -1
                    with self._deliver_lock:
                        if is_async:
                            self._respond_push("on_cancel_order_stock_async_response", "XtCancelOrderResponse", {
                                "account_type": account.account_type, "account_id": account.account_id,
                                "cancel_result": -1, "order_id": order_id, "order_sysid": sysid, "seq": seq,
                                "error_msg": message})
                        self._call_back("on_cancel_error", xttypes.make("XtCancelError", {
                            "account_type": account.account_type, "account_id": account.account_id,
                            "order_id": order_id, "market": market_id, "order_sysid": sysid, "error_id": error_id,
                            "error_msg": message, "seq": seq}))
                    return -1
                if result.get("seq") is not None:
                    with self._lock:
                        self._cancels[int(result.seq)] = (seq, is_async)
            return 0 if is_async else int(result.cancel_result)

        if is_async:
            self._submit(send)
            return seq
        cancel_result = self._on_requests(send)
        self._settle()
        return int(cancel_result)

    @contextlib.contextmanager
    def _gate(self) -> Iterator[None]:
        with self._lock:
            self._gated += 1
        try:
            yield
        finally:
            # Release under the delivery lock: a newer event from the subscription thread
            # waits for it, so it cannot overtake what was held.
            with self._deliver_lock:
                with self._lock:
                    self._gated -= 1
                    released = list(self._held) if not self._gated else []
                    if released:
                        self._held.clear()
                for data in released:
                    self._dispatch(*data)

    # -- queries -----------------------------------------------------------------------

    def query_stock_asset(self, account: Any) -> Any:
        return self._query("query_stock_asset", "XtAsset", account)

    def query_stock_orders(self, account: Any, cancelable_only: bool = False) -> Any:
        return self._query("query_stock_orders", "XtOrder", account, cancelable_only)

    def query_stock_order(self, account: Any, order_id: int) -> Any:
        return self._query("query_stock_order", "XtOrder", account, order_id)

    def query_stock_trades(self, account: Any) -> Any:
        return self._query("query_stock_trades", "XtTrade", account)

    def query_stock_positions(self, account: Any) -> Any:
        return self._query("query_stock_positions", "XtPosition", account)

    def query_stock_position(self, account: Any, stock_code: str) -> Any:
        return self._query("query_stock_position", "XtPosition", account, stock_code)

    def query_account_infos(self) -> Any:
        return self._query("query_account_infos", "XtAccountInfo", None)

    query_account_info = query_account_infos  # xtquant's alias

    def query_account_status(self) -> Any:
        return self._query("query_account_status", "XtAccountStatus", None)

    def query_credit_detail(self, account: Any) -> Any:
        return self._query("query_credit_detail", "XtCreditDetail", account)

    def query_stk_compacts(self, account: Any) -> Any:
        return self._query("query_stk_compacts", "XtStkCompacts", account)

    def query_credit_subjects(self, account: Any) -> Any:
        return self._query("query_credit_subjects", "XtCreditSubjects", account)

    def query_credit_slo_code(self, account: Any) -> Any:
        return self._query("query_credit_slo_code", "XtCreditSloCode", account)

    def query_credit_assure(self, account: Any) -> Any:
        return self._query("query_credit_assure", "XtCreditAssure", account)

    def query_new_purchase_limit(self, account: Any) -> Any:
        return self._query("query_new_purchase_limit", "", account)

    def query_ipo_data(self) -> Any:
        return self._query("query_ipo_data", "", None)

    def _query(self, op: str, kind: str, account: Any, *args: Any, settle: bool = True) -> Any:
        def call(client: Client) -> Any:
            method = getattr(client, op)
            if account is None:
                return method(*args)
            return method(account.account_id, *args, account_type=account.account_type)

        try:
            result = self._do(call)
        except GatewayError as exc:
            log.warning("%s failed: %s", op, refusal(exc)[1])
            return None
        if settle and not self._relaxed:
            self._settle()
        if result is None:
            return None
        if not kind:  # answered as a plain dict, as xttrader's own method shapes it
            return result.to_dict()
        if isinstance(result, list):
            return [xttypes.make(kind, r.to_dict()) for r in result]
        return xttypes.make(kind, result.to_dict())

    def _async_query(self, sync: Callable[..., Any], args: tuple[Any, ...], callback: Callable[[Any], None]) -> int:
        """Run ``sync`` on the request thread (in call order) and its callback as a response."""
        seq = next(self._seqs)

        def run() -> None:
            result = sync(*args)
            self._respond(lambda: callback(result))

        self._submit(run)
        return seq

    def query_stock_asset_async(self, account: Any, callback: Callable[[Any], None]) -> None:
        self._async_query(self._unsettled("query_stock_asset", "XtAsset"), (account,), callback)
        return None  # xtquant's returns nothing here (its other *_async queries return the seq)

    def query_stock_orders_async(self, account: Any, callback: Callable[[Any], None], cancelable_only: bool = False) -> int:
        return self._async_query(self._unsettled("query_stock_orders", "XtOrder"), (account, cancelable_only), callback)

    def query_stock_trades_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self._unsettled("query_stock_trades", "XtTrade"), (account,), callback)

    def query_stock_positions_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self._unsettled("query_stock_positions", "XtPosition"), (account,), callback)

    def query_credit_detail_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self._unsettled("query_credit_detail", "XtCreditDetail"), (account,), callback)

    def query_stk_compacts_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self._unsettled("query_stk_compacts", "XtStkCompacts"), (account,), callback)

    def query_credit_subjects_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self._unsettled("query_credit_subjects", "XtCreditSubjects"), (account,), callback)

    def query_credit_slo_code_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self._unsettled("query_credit_slo_code", "XtCreditSloCode"), (account,), callback)

    def query_credit_assure_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self._unsettled("query_credit_assure", "XtCreditAssure"), (account,), callback)

    def query_new_purchase_limit_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        # xttrader hands the async callback the native rows, not the dict its sync form builds.
        def rows(account: Any) -> Any:
            limits = self._query("query_new_purchase_limit", "", account, settle=False)
            return None if limits is None else [
                xttypes.make("NewPurchaseLimitItem", {"m_strNewPurchaseLimitKey": k, "m_nNewPurchaseLimitValue": v})
                for k, v in limits.items()
            ]

        return self._async_query(rows, (account,), callback)

    def query_ipo_data_async(self, callback: Callable[[Any], None]) -> int:
        def rows() -> Any:
            issues = self._query("query_ipo_data", "", None, settle=False)
            return None if issues is None else [
                xttypes.make("IPOItem", {
                    "m_strIPOCode": code, "m_strIPOName": d["name"], "m_strIPOType": d["type"],
                    "m_nMaxPurchaseNum": d["maxPurchaseNum"], "m_nMinPurchaseNum": d["minPurchaseNum"],
                    "m_strPurchaseDate": d["purchaseDate"], "m_dIssuePrice": d["issuePrice"],
                })
                for code, d in issues.items()
            ]

        return self._async_query(rows, (), callback)

    def query_account_infos_async(self, callback: Callable[[Any], None]) -> int:
        return self._async_query(self._unsettled("query_account_infos", "XtAccountInfo", False), (), callback)

    def query_account_status_async(self, callback: Callable[[Any], None]) -> int:
        return self._async_query(self._unsettled("query_account_status", "XtAccountStatus", False), (), callback)

    def _unsettled(self, op: str, kind: str, takes_account: bool = True) -> Callable[..., Any]:
        """The query for the request thread: its answer is queued as a response, not waited for."""
        if takes_account:
            return lambda account, *args: self._query(op, kind, account, *args, settle=False)
        return lambda: self._query(op, kind, None, settle=False)

    # -- plumbing ----------------------------------------------------------------------

    def _do(self, call: Callable[[Client], Any]) -> Any:
        """The gateway's answer, asked on the request thread; GatewayError when it refused, did
        not answer, or is gone."""
        def ask() -> Any:
            if self._down:
                raise GatewayTimeout(f"the gateway at {self._router} fell silent; call connect() again", sent=False)
            client = self._client
            if client is None:
                raise GatewayTimeout("the trader is stopped; call start()", sent=False)
            return call(client)

        return self._on_requests(ask)

    def _on_requests(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` on the request thread, after the requests made before it."""
        self.start()
        requests = self._requests
        assert requests is not None
        # Each request there is bounded by the client's time-out (an order: a few sends).
        return requests.run(work, float(self._client_options["timeout"]) * (4 * _ORDER_ATTEMPTS + 4))

    def _submit(self, work: Callable[[], Any]) -> None:
        """Queue ``work`` on the request thread and return at once (the ``*_async`` calls)."""
        self.start()
        requests = self._requests
        assert requests is not None
        requests.post(work)

    def _settle(self) -> None:
        """Return only after the callbacks of what arrived before the answer have run, as
        xtquant's answers queue behind its pushes. Never on a callback thread: xtquant would
        block there for good; this carries on and says so once."""
        callbacks = self._callbacks
        if callbacks is None:
            return
        current = threading.current_thread()
        if current is callbacks.thread or (self._responses is not None and current is self._responses.thread):
            if not self._warned_inside:
                self._warned_inside = True
                log.warning("a synchronous call inside a callback: genuine xtquant would block here for good "
                            "unless set_relaxed_response_order_enabled(True); the gateway's trader answers")
            return
        if not callbacks.drained(float(self._client_options["timeout"])):
            log.warning("callbacks still busy after %s s: answering anyway", self._client_options["timeout"])

    def _ensure_subscription(self) -> bool:
        if self._subscription is not None and not self._subscription.closed:
            return True
        self.start()
        assert self._client is not None
        try:
            self._subscription = self._client.subscribe(self._on_event, from_seq=self._resume_from)
            if not self._subscription.wait_subscribed(self._client.timeout):
                log.error("no event stream from %s within %g s", self._pub, self._client.timeout)
                return False
        except GatewayError as exc:
            log.error("cannot subscribe to events at %s: %s", self._pub, exc)
            return False
        return True

    def _post(self, work: Callable[[], None]) -> None:
        callbacks = self._callbacks
        if callbacks is not None:
            callbacks.post(work)

    def _respond(self, work: Callable[[], None]) -> None:
        """Answers to requests: on the callback thread, or their own one when relaxed."""
        worker = self._responses if self._relaxed else self._callbacks
        if worker is not None:
            worker.post(work)

    def _call_back(self, method: str, obj: Any) -> None:
        target = getattr(self.callback, method, None) if self.callback is not None else None
        if target is not None:
            self._post(lambda: target(obj))

    def _respond_push(self, method: str, kind: str, data: dict[str, Any]) -> None:
        self._call_back(method, xttypes.make(kind, data))

    def _on_event(self, event: Any) -> None:
        """Runs on the client's event thread: filter, convert, hand to the callback thread."""
        etype = event.type
        if etype == LIVENESS_EVENT:
            self._on_liveness(bool(event.data.get("alive")))
            return
        if etype == events.CONNECTION:
            if not event.data.connected:
                self.connected = False
                self._post_disconnected()
            return
        if etype not in _CALLBACKS or event.account_id not in self._accounts:
            return
        item = (etype, event.data.to_dict())
        with self._deliver_lock:
            with self._lock:
                if self._gated or self._held:
                    self._held.append(item)  # in order, until this trader's reply is in
                    return
            self._dispatch(*item)

    def _on_liveness(self, alive: bool) -> None:
        if alive:
            log.warning("the gateway at %s is heard again: call connect() to trade", self._router)
            return
        if self._down:
            return
        self._down = True
        self.connected = False
        log.error("the gateway at %s fell silent: calls fail until connect() succeeds", self._router)
        self._post_disconnected()

    def _post_disconnected(self) -> None:
        target = getattr(self.callback, "on_disconnected", None) if self.callback is not None else None
        if target is not None:
            self._post(target)

    def _dispatch(self, etype: str, data: dict[str, Any]) -> None:
        """Session-specific callbacks reach only this session, as xtquant gives them."""
        if etype in ("order_response", "order_error"):
            with self._lock:
                mine = self._orders.get(data.get("client_order_id"))
            if mine is None:
                return  # another session's: xtquant never delivers those
            seq, is_async = mine
            if etype == "order_response":
                if is_async:
                    self._respond_push("on_order_stock_async_response", "XtOrderResponse", {**data, "seq": seq})
                return
            self._call_back("on_order_error", xttypes.make("XtOrderError", {**data, "seq": seq}))
            return
        if etype in ("cancel_response", "cancel_error"):
            with self._lock:
                mine = self._cancels.get(data.get("seq"))
            if mine is None:
                return
            seq, is_async = mine
            if etype == "cancel_response":
                if is_async:
                    self._respond_push("on_cancel_order_stock_async_response", "XtCancelOrderResponse",
                                       {**data, "seq": seq})
                return
            self._call_back("on_cancel_error", xttypes.make("XtCancelError", {**data, "seq": seq}))
            return
        self._call_back(_CALLBACKS[etype], xttypes.make(xttypes.EVENT_KINDS[etype], data))


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _next_seq(last_seq: int | None) -> int | None:
    return None if last_seq is None else last_seq + 1


# XtQuantTrader methods this class does not offer, with xtquant's parameters: each raises
# NotImplementedError naming itself.
_UNSUPPORTED_PARAMETERS: dict[str, str] = {
    "fund_transfer": "account transfer_direction price",
    "secu_transfer": "account transfer_direction stock_code volume transfer_type",
    "query_com_fund": "account", "query_com_position": "account", "smt_query_quoter": "account",
    "smt_negotiate_order_async": "account src_group_id order_code date amount apply_rate dict_param={}",
    "smt_appointment_order_async": "account order_code date amount apply_rate",
    "smt_appointment_cancel_async": "account apply_id", "smt_query_order": "account", "smt_query_compact": "account",
    "smt_compact_renewal_async": "account cash_compact_id order_code defer_days defer_num apply_rate",
    "smt_compact_return_async": "account src_group_id cash_compact_id order_code occur_amount",
    "query_position_statistics": "account",
    "export_data": "account result_path data_type start_time=None end_time=None user_param={}",
    "query_data": "account result_path data_type start_time=None end_time=None user_param={}",
    "sync_transaction_from_external": "operation data_type account deal_list",
    "bank_transfer_in": "account bank_no bank_account balance bank_pwd='' fund_pwd=''",
    "bank_transfer_in_async": "account bank_no bank_account balance bank_pwd='' fund_pwd=''",
    "bank_transfer_out": "account bank_no bank_account balance bank_pwd='' fund_pwd=''",
    "bank_transfer_out_async": "account bank_no bank_account balance bank_pwd='' fund_pwd=''",
    "query_bank_info": "account", "query_bank_amount": "account bank_no bank_account bank_pwd",
    "query_bank_transfer_stream": "account start_date end_date bank_no='' bank_account=''",
    "query_secu_account": "account",
    "ctp_transfer_option_to_future": "opt_account_id ft_account_id balance",
    "ctp_transfer_option_to_future_async": "opt_account_id ft_account_id balance",
    "ctp_transfer_future_to_option": "opt_account_id ft_account_id balance",
    "ctp_transfer_future_to_option_async": "opt_account_id ft_account_id balance",
    "get_smart_algo_param": "algo_name_list", "query_smart_algo_task": "account",
    "cancel_smart_algo_task_async": "account task_id",
    "smart_algo_order_async": "account stock_code order_type order_volume price_type price strategy_name "
                              "order_remark algo_name start_time end_time algo_param",
    "common_op_async_with_seq": "seq callable callback", "common_op_sync_with_seq": "seq callable",
}
_DEFAULTS: dict[str, Any] = {"{}": {}, "None": None, "''": ""}


def _unsupported(name: str, parameters: str) -> Callable[..., Any]:
    def unsupported(self: XtQuantTrader, *_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError(f"XtQuantTrader.{name} is not supported through the qmt-zmq-adapter gateway")

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for word in parameters.split():
        pname, _, default = word.partition("=")
        params.append(inspect.Parameter(pname, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=_DEFAULTS[default] if default else inspect.Parameter.empty))
    unsupported.__name__ = unsupported.__qualname__ = name
    unsupported.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return unsupported


assert set(_UNSUPPORTED_PARAMETERS) == xttypes.UNSUPPORTED_METHODS
for _name, _parameters in _UNSUPPORTED_PARAMETERS.items():
    setattr(XtQuantTrader, _name, _unsupported(_name, _parameters))
