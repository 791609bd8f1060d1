"""``XtQuantTrader`` and ``XtQuantTraderCallback`` that talk to a gateway instead of a terminal.

Same constructor, method names, signatures, return values and callback threading as
``xtquant.xttrader``: callbacks run one at a time on one worker thread, ``run_forever()``
blocks, ``stop()`` ends it. Records come back as xtquant's own ``xttype`` classes when xtquant
is installed (attribute names as the manual gives them), otherwise as look-alikes.

What the gateway adds stays underneath: every order carries a client order id (a time-out
is retried safely, it never orders twice), events are recovered across gaps, and the
gateway's risk checks apply (a denied order returns -1, as a counter refusal would).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator

from ..client import Client, GatewayError
from ..client._ops import new_client_order_id
from ..config import DEFAULT_PUB, DEFAULT_ROUTER
from ..protocol import events
from . import xttypes

log = logging.getLogger("adapter.compat")

ROUTER_ENV, PUB_ENV = "QMT_ADAPTER_ROUTER", "QMT_ADAPTER_PUB"
_ENDPOINT_SCHEMES = ("tcp://", "ipc://", "inproc://")
_path_logged = False

# event type -> callback method
_CALLBACKS = {etype: method for method, (etype, _) in events.CALLBACK_EVENTS.items()}


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


def _next_port(router: str) -> str:
    """The PUB beside a ROUTER on port N is on N + 1 (the gateway's default layout)."""
    head, _, port = router.rpartition(":")
    return f"{head}:{int(port) + 1}" if port.isdigit() else router


class XtQuantTrader:
    """``xtquant.xttrader.XtQuantTrader`` over a qmt-zmq-adapter gateway."""

    def __init__(self, path: str, session: int, callback: Any = None, **client_options: Any) -> None:
        self.path = path
        self.session = session
        self.callback = callback
        self._router, self._pub = endpoints(path)
        self._client_options = {"timeout": 10.0, **client_options}
        self._client: Client | None = None
        self._subscription: Any = None
        self._accounts: set[str] = set()
        self._lock = threading.Lock()
        self._seqs = itertools.count(1)  # local seqs of the *_async queries
        # What this trader sent, so that session-specific callbacks reach only it (as in xtquant).
        self._async_orders: set[str] = set()  # client order ids awaiting their order_response
        self._cancel_seqs: set[int] = set()  # seqs of this trader's async cancels
        self._cancelled: set[int] = set()  # order ids this trader cancelled (its cancel errors are its)
        self._gated = 0  # this trader's orders and cancels awaiting their reply
        self._held: list[tuple[str, dict[str, Any]]] = []  # events held meanwhile, in order
        self._work: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._stopped = threading.Event()
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
        log.debug("set_relaxed_response_order_enabled(%s): callbacks are always delivered in order here", enabled)

    def start(self) -> None:
        if self._worker is None:
            self._stopped.clear()
            self._worker = threading.Thread(target=self._run_callbacks, name="xtquant-compat-callbacks", daemon=True)
            self._worker.start()
        if self._client is None:
            self._client = Client(self._router, self._pub, **self._client_options)

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._worker is not None:
            self._work.put(None)
            if threading.current_thread() is not self._worker:
                self._worker.join(10)
            self._worker = None
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
        self._ensure_subscription()
        return 0

    def run_forever(self) -> None:
        """Block until ``stop()`` (xtquant's never returns; Ctrl-C still ends it)."""
        try:
            while not self._stopped.wait(1.0):
                pass
        except KeyboardInterrupt:
            self.stop()
            raise

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def subscribe(self, account: Any) -> int:
        with self._lock:
            self._accounts.add(account.account_id)
        if not self._ensure_subscription():
            return -1
        # The terminal pushes the account's login status to a new subscriber; so does this.
        for status in self.query_account_status() or ():
            if status.account_id == account.account_id:
                self._call_back("on_account_status", status)
        return 0

    def unsubscribe(self, account: Any) -> int:
        with self._lock:
            self._accounts.discard(account.account_id)
        return 0

    # -- orders ------------------------------------------------------------------------
    # While one of this trader's orders or cancels awaits its reply, events are held in order
    # (the gate): only the reply tells which async responses and cancel errors are this
    # session's, and holding everything keeps the callbacks in the counter's order, as xtquant
    # delivers them.

    def order_stock(self, account: Any, stock_code: str, order_type: int, order_volume: int, price_type: int,
                    price: float, strategy_name: str = "", order_remark: str = "") -> int:
        coid = new_client_order_id()
        with self._gate():
            response = self._do("order_stock", lambda c: c.order_stock(
                account.account_id, stock_code, order_type, int(order_volume), price_type, price, strategy_name,
                order_remark, client_order_id=coid, account_type=account.account_type))
        return -1 if response is None else int(response.order_id)

    def order_stock_async(self, account: Any, stock_code: str, order_type: int, order_volume: int, price_type: int,
                          price: float, strategy_name: str = "", order_remark: str = "") -> int:
        coid = new_client_order_id()
        with self._gate():
            with self._lock:
                self._async_orders.add(coid)
            result = self._do("order_stock_async", lambda c: c.order_stock_async(
                account.account_id, stock_code, order_type, int(order_volume), price_type, price, strategy_name,
                order_remark, client_order_id=coid, account_type=account.account_type))
            if result is None or result.seq is None:
                with self._lock:
                    self._async_orders.discard(coid)
                return -1
        return int(result.seq)

    def cancel_order_stock(self, account: Any, order_id: int) -> int:
        with self._gate():
            with self._lock:
                self._cancelled.add(order_id)
            response = self._do("cancel_order_stock", lambda c: c.cancel_order_stock(
                account.account_id, order_id, account_type=account.account_type))
        return -1 if response is None else int(response.cancel_result)

    def cancel_order_stock_async(self, account: Any, order_id: int) -> int:
        with self._gate():
            with self._lock:
                self._cancelled.add(order_id)
            result = self._do("cancel_order_stock_async", lambda c: c.cancel_order_stock_async(
                account.account_id, order_id, account_type=account.account_type))
            return self._cancel_seq(result)

    def cancel_order_stock_sysid(self, account: Any, market: Any, sysid: str) -> int:
        with self._gate():
            response = self._do("cancel_order_stock_sysid", lambda c: c.cancel_order_stock_sysid(
                account.account_id, market, sysid, account_type=account.account_type))
            if response is not None:
                with self._lock:
                    self._cancelled.add(response.order_id)
        return -1 if response is None else int(response.cancel_result)

    def cancel_order_stock_sysid_async(self, account: Any, market: Any, sysid: str) -> int:
        with self._gate():
            result = self._do("cancel_order_stock_sysid_async", lambda c: c.cancel_order_stock_sysid_async(
                account.account_id, market, sysid, account_type=account.account_type))
            return self._cancel_seq(result)

    def _cancel_seq(self, result: Any) -> int:
        if result is None or result.seq is None:
            return -1
        seq = int(result.seq)
        with self._lock:
            self._cancel_seqs.add(seq)
        return seq

    @contextlib.contextmanager
    def _gate(self) -> Iterator[None]:
        with self._lock:
            self._gated += 1
        try:
            yield
        finally:
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

    def _query(self, op: str, kind: str, account: Any, *args: Any) -> Any:
        def call(client: Client) -> Any:
            method = getattr(client, op)
            if account is None:
                return method(*args)
            return method(account.account_id, *args, account_type=account.account_type)

        result = self._do(op, call)
        if result is None:
            return None
        if not kind:  # answered as a plain dict, as xttrader's own method shapes it
            return result.to_dict()
        if isinstance(result, list):
            return [xttypes.make(kind, r.to_dict()) for r in result]
        return xttypes.make(kind, result.to_dict())

    def _async_query(self, sync: Callable[..., Any], args: tuple[Any, ...], callback: Callable[[Any], None]) -> int:
        seq = next(self._seqs)

        def run() -> None:
            result = sync(*args)
            self._post(lambda: callback(result))

        threading.Thread(target=run, name=f"xtquant-compat-query-{seq}", daemon=True).start()
        return seq

    def query_stock_asset_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self.query_stock_asset, (account,), callback)

    def query_stock_orders_async(self, account: Any, callback: Callable[[Any], None], cancelable_only: bool = False) -> int:
        return self._async_query(self.query_stock_orders, (account, cancelable_only), callback)

    def query_stock_trades_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self.query_stock_trades, (account,), callback)

    def query_stock_positions_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self.query_stock_positions, (account,), callback)

    def query_credit_detail_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self.query_credit_detail, (account,), callback)

    def query_stk_compacts_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self.query_stk_compacts, (account,), callback)

    def query_credit_subjects_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self.query_credit_subjects, (account,), callback)

    def query_credit_slo_code_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self.query_credit_slo_code, (account,), callback)

    def query_credit_assure_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        return self._async_query(self.query_credit_assure, (account,), callback)

    def query_new_purchase_limit_async(self, account: Any, callback: Callable[[Any], None]) -> int:
        # xttrader hands the async callback the native rows, not the dict its sync form builds.
        def rows(account: Any) -> Any:
            limits = self.query_new_purchase_limit(account)
            return None if limits is None else [
                xttypes.make("NewPurchaseLimitItem", {"m_strNewPurchaseLimitKey": k, "m_nNewPurchaseLimitValue": v})
                for k, v in limits.items()
            ]

        return self._async_query(rows, (account,), callback)

    def query_ipo_data_async(self, callback: Callable[[Any], None]) -> int:
        def rows() -> Any:
            issues = self.query_ipo_data()
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
        return self._async_query(self.query_account_infos, (), callback)

    def query_account_status_async(self, callback: Callable[[Any], None]) -> int:
        return self._async_query(self.query_account_status, (), callback)

    # -- plumbing ----------------------------------------------------------------------

    def _do(self, op: str, call: Callable[[Client], Any]) -> Any:
        """The gateway's answer, or None after logging why (xtquant returns -1 / None then)."""
        if self._client is None:
            self.start()
        assert self._client is not None
        try:
            return call(self._client)
        except GatewayError as exc:
            detail = f" ({exc.details['rule']})" if exc.details.get("rule") else ""
            log.warning("%s failed: %s: %s%s", op, exc.code, exc.message, detail)
            return None

    def _ensure_subscription(self) -> bool:
        if self._subscription is not None:
            return True
        self.start()
        assert self._client is not None
        try:
            self._subscription = self._client.subscribe(self._on_event)
            if not self._subscription.wait_subscribed(self._client.timeout):
                log.error("no event stream from %s within %g s", self._pub, self._client.timeout)
                return False
        except GatewayError as exc:
            log.error("cannot subscribe to events at %s: %s", self._pub, exc)
            return False
        return True

    def _post(self, work: Callable[[], None]) -> None:
        self._work.put(work)

    def _run_callbacks(self) -> None:
        while True:
            work = self._work.get()
            if work is None:
                return
            try:
                work()
            except Exception:  # a strategy's bug must not stop its other callbacks
                log.exception("callback raised")

    def _call_back(self, method: str, obj: Any) -> None:
        target = getattr(self.callback, method, None) if self.callback is not None else None
        if target is not None:
            self._post(lambda: target(obj))

    def _on_event(self, event: Any) -> None:
        """Runs on the client's event thread: filter, convert, hand to the callback thread."""
        etype = event.type
        if etype == events.CONNECTION:
            if not event.data.connected and self.callback is not None and hasattr(self.callback, "on_disconnected"):
                self._post(self.callback.on_disconnected)
            return
        if etype not in _CALLBACKS or event.account_id not in self._accounts:
            return
        item = (etype, event.data.to_dict())
        with self._lock:
            if self._gated or self._held:
                self._held.append(item)  # in order, until this trader's reply is in
                return
        self._dispatch(*item)

    def _dispatch(self, etype: str, data: dict[str, Any]) -> None:
        """Session-specific callbacks reach only this session, as xtquant gives them."""
        if etype == "order_response":
            with self._lock:
                ours = data.get("client_order_id") in self._async_orders
                self._async_orders.discard(data.get("client_order_id"))
            if ours:
                self._call_back("on_order_stock_async_response", xttypes.make("XtOrderResponse", data))
            return
        if etype == "cancel_response":
            with self._lock:
                ours = data.get("seq") in self._cancel_seqs
                self._cancel_seqs.discard(data.get("seq"))
            if ours:
                self._call_back("on_cancel_order_stock_async_response", xttypes.make("XtCancelOrderResponse", data))
            return
        if etype == "cancel_error":
            with self._lock:
                ours = data.get("order_id") in self._cancelled
            if ours:  # xtquant never delivers another session's cancel errors
                self._call_back("on_cancel_error", xttypes.make("XtCancelError", data))
            return
        self._call_back(_CALLBACKS[etype], xttypes.make(xttypes.EVENT_KINDS[etype], data))

    def __getattr__(self, name: str) -> Any:
        if name in xttypes.UNSUPPORTED_METHODS:
            def unsupported(*_args: Any, **_kwargs: Any) -> Any:
                raise NotImplementedError(
                    f"XtQuantTrader.{name} is not supported through the qmt-zmq-adapter gateway"
                )
            return unsupported
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
