"""Pure-Python stand-in for ``xtquant.xtpythonclient``, the Windows-only compiled client.

``xtquant.xttrader.XtQuantTrader`` drives this module exactly as it drives the real one:
it builds request objects (``OrderStockReq`` ...), binds callbacks by name
(``bindOnStockOrderCallback`` ...), and calls ``*WithSeq`` methods. Requests are handed to
the ``SimCounter`` registered at the client's path; every callback is invoked later from
the counter's own thread (the "native network thread"), never inside the ``*WithSeq`` call.

With no counter registered in this process for the path, ``connect()`` looks for a counter
process serving it (``adapter.sim.remote``) and talks to it over a local socket; callbacks then
come from the link's delivery thread instead.

A request that cannot reach a live counter (never connected, counter closed) still gets
its failure answer, from a small shared responder thread, so synchronous callers in
xttrader never hang.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from typing import Any, Callable, ClassVar, Protocol

from adapter.xtimport import import_xtquant

import_xtquant()  # before any xtquant submodule: skips the package's network update check

from xtquant import xtconstant, xttype  # noqa: E402

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# Callback names (the part after "bind") used for responses and pushes.

CB_SUBSCRIBE = "OnSubscribeRespCallback"
CB_UNSUBSCRIBE = "OnUnsubscribeRespCallback"
CB_ORDER_RESP = "OnOrderStockRespCallback"
CB_CANCEL_RESP = "OnCancelOrderStockRespCallback"
CB_DISCONNECTED = "OnDisconnectedCallback"
CB_ACCOUNT_STATUS = "OnUpdateAccountStatusCallback"
CB_ASSET = "OnStockAssetCallback"
CB_ORDER = "OnStockOrderCallback"
CB_TRADE = "OnStockTradeCallback"
CB_POSITION = "OnStockPositionCallback"
CB_ORDER_ERROR = "OnOrderErrorCallback"
CB_CANCEL_ERROR = "OnCancelErrorCallback"

# The served requests and the callback that carries each one's response.
RESPONSE_CALLBACKS: dict[str, str] = {
    "subscribeWithSeq": CB_SUBSCRIBE,
    "unsubscribeWithSeq": CB_UNSUBSCRIBE,
    "orderStockWithSeq": CB_ORDER_RESP,
    "cancelOrderStockWithSeq": CB_CANCEL_RESP,
    "queryStockAssetWithSeq": "OnQueryStockAssetCallback",
    "queryStockOrdersWithSeq": "OnQueryStockOrdersCallback",
    "queryStockTradesWithSeq": "OnQueryStockTradesCallback",
    "queryStockPositionsWithSeq": "OnQueryStockPositionsCallback",
    "queryAccountInfosWithSeq": "OnQueryAccountInfosCallback",
    "queryAccountStatusWithSeq": "OnQueryAccountStatusCallback",
    "queryCreditDetailWithSeq": "OnQueryCreditDetailRespCallback",
    "queryStkCompactsWithSeq": "OnQueryStkCompactsRespCallback",
    "queryCreditSubjectsWithSeq": "OnQueryCreditSubjectsRespCallback",
    "queryCreditSloCodeWithSeq": "OnQueryCreditSloCodeRespCallback",
    "queryCreditAssureWithSeq": "OnQueryCreditAssureRespCallback",
    "queryNewPurchaseLimitWithSeq": "OnQueryNewPurchaseLimitCallback",
    "queryIPODataWithSeq": "OnQueryIPODataCallback",
}
# Queries whose requests name an account (queryIPODataWithSeq does not).
CREDIT_QUERIES = ("queryCreditDetailWithSeq", "queryStkCompactsWithSeq", "queryCreditSubjectsWithSeq",
                  "queryCreditSloCodeWithSeq", "queryCreditAssureWithSeq")

# connect() results; anything non-zero is a failure, as in xtquant.
CONNECT_OK = 0
CONNECT_NO_COUNTER = -1
CONNECT_REFUSED = -2
CONNECT_NOT_STARTED = -3

# ---------------------------------------------------------------------------------------
# Request objects: attribute bags. Defaults are class attributes, so ``vars(req)`` holds
# exactly the fields the caller set; the counter uses that to tell "query one order" from
# "query all" (``m_nOrderID`` / ``m_strStockCode`` left unset means all).


class _Request:
    m_nAccountType: int = xtconstant.SECURITY_ACCOUNT
    m_strAccountID: str = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({vars(self)!r})"


class SubscribeReq(_Request):
    pass


class UnsubscribeReq(_Request):
    pass


class OrderStockReq(_Request):
    m_strStockCode: str = ""
    m_nOrderType: int = xtconstant.STOCK_BUY
    m_nOrderVolume: int = 0
    m_nPriceType: int = xtconstant.FIX_PRICE
    m_dPrice: float = 0.0
    m_strStrategyName: str = ""
    m_strOrderRemark: str = ""
    m_strOrderRemarkNew: str = ""
    m_dOrderAmount: float = 0.0
    m_strStockCode1: str = ""
    m_strAccountID1: str = ""


class CancelOrderStockReq(_Request):
    m_nOrderID: int = -1
    m_strOrderSysID: str = ""
    m_nMarket: int = -1
    m_strMarket: str = ""


class QueryStockAssetReq(_Request):
    pass


class QueryStockOrdersReq(_Request):
    m_nOrderID: int = -1  # unset: all orders of the day
    m_bCanCancel: bool = False  # True: only orders that can still be cancelled


class QueryStockTradesReq(_Request):
    pass


class QueryStockPositionsReq(_Request):
    m_strStockCode: str = ""  # unset: all positions
    m_strStockCode1: str = ""


class QueryAccountInfosReq(_Request):
    pass


class QueryAccountStatusReq(_Request):
    pass


_dynamic_requests: dict[str, type] = {}
_dynamic_lock = threading.Lock()


def __getattr__(name: str) -> type:
    """Any other ``*Req`` / ``*Param`` class xttrader names: an empty attribute bag."""
    if name.endswith(("Req", "Param")) and not name.startswith("_"):
        with _dynamic_lock:
            cls = _dynamic_requests.get(name)
            if cls is None:
                cls = type(name, (_Request,), {"__module__": __name__})
                _dynamic_requests[name] = cls
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RequestFields:
    """A snapshot of a request object, taken on the caller's thread."""

    __slots__ = ("explicit", "_values")

    def __init__(self, req: object) -> None:
        own = dict(vars(req)) if hasattr(req, "__dict__") else {}
        self.explicit = frozenset(own)
        values: dict[str, Any] = {}
        for klass in reversed(type(req).__mro__):
            values.update({k: v for k, v in vars(klass).items() if k.startswith("m_")})
        values.update(own)
        self._values = values

    @classmethod
    def from_values(cls, values: dict[str, Any], explicit: Any) -> "RequestFields":
        """The snapshot again, as the counter process receives it."""
        fields = cls.__new__(cls)
        fields.explicit = frozenset(explicit)
        fields._values = dict(values)
        return fields

    def values(self) -> dict[str, Any]:
        return dict(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def is_set(self, name: str) -> bool:
        return name in self.explicit


# ---------------------------------------------------------------------------------------
# Native response and push objects (the shapes xttrader reads).


class OrderStockResp:
    def __init__(self, account_id: str, order_id: int, strategy_name: str, order_remark: str, error_msg: str) -> None:
        self.m_strAccountID = account_id
        self.m_nOrderID = order_id
        self.m_strStrategyName = strategy_name
        self.m_strOrderRemark = order_remark
        self.m_strErrorMsg = error_msg


class CancelOrderStockResp:
    def __init__(self, account_id: str, cancel_result: int, order_id: int, order_sysid: str, error_msg: str) -> None:
        self.m_strAccountID = account_id
        self.m_nCancelResult = cancel_result
        self.m_nOrderID = order_id
        self.m_strOrderSysID = order_sysid
        self.m_strErrorMsg = error_msg


class AccountStatusPush:
    def __init__(self, account_id: str, account_type: int, status: int) -> None:
        self.m_strAccountID = account_id
        self.m_nAccountType = account_type
        self.m_nStatus = status


class AccountInfo:
    """One entry of ``query_account_infos`` (fields of the manual's XtAccountInfo)."""

    def __init__(self, account_id: str, account_type: int, login_status: int) -> None:
        self.account_type = account_type
        self.account_id = account_id
        self.broker_type = account_type
        self.platform_id = 0
        self.account_classification = 0
        self.login_status = login_status


def make_order_error(
    seq: int, account_id: str, order_id: int, error_id: int, error_msg: str, strategy_name: str, order_remark: str
) -> xttype.XtOrderError:
    error = xttype.XtOrderError(account_id, order_id, error_id, error_msg, strategy_name, order_remark)
    error.seq = seq  # type: ignore[attr-defined]  # xttrader matches errors to requests by it
    return error


def make_cancel_error(
    seq: int, account_id: str, order_id: int, market: int, order_sysid: str, error_id: int, error_msg: str
) -> xttype.XtCancelError:
    error = xttype.XtCancelError(account_id, order_id, market, order_sysid, error_id, error_msg)
    error.seq = seq  # type: ignore[attr-defined]
    return error


Delivery = tuple[str, tuple[Any, ...]]


def failure_deliveries(method: str, seq: int, fields: RequestFields, message: str) -> list[Delivery]:
    """What a request that found no service gets: a failed response (and an error push).

    Subscribe answers non-zero, queries answer ``None`` (not an empty list, which would
    look like "no orders"), orders answer order_id -1 plus an order-error push, cancels
    answer -1 plus a cancel-error push.
    """
    account_id = str(fields.get("m_strAccountID", ""))
    callback = RESPONSE_CALLBACKS[method]
    if method in ("subscribeWithSeq", "unsubscribeWithSeq"):
        return [(callback, (seq, -1))]
    if method == "orderStockWithSeq":
        strategy = str(fields.get("m_strStrategyName", ""))
        remark = str(fields.get("m_strOrderRemark", ""))
        return [
            (callback, (seq, OrderStockResp(account_id, -1, strategy, remark, message))),
            (CB_ORDER_ERROR, (make_order_error(seq, account_id, -1, -1, message, strategy, remark),)),
        ]
    if method == "cancelOrderStockWithSeq":
        order_id = int(fields.get("m_nOrderID", -1))
        sysid = str(fields.get("m_strOrderSysID", ""))
        market = int(fields.get("m_nMarket", -1))
        return [
            (callback, (seq, CancelOrderStockResp(account_id, -1, order_id, sysid, message))),
            (CB_CANCEL_ERROR, (make_cancel_error(seq, account_id, order_id, market, sysid, -1, message),)),
        ]
    return [(callback, (seq, None))]


# ---------------------------------------------------------------------------------------
# Counter registry: XtQuantTrader(path, ...) reaches the counter registered at that path.


class Connection(Protocol):
    """Where a connected client's requests go: a counter in this process, or a counter process's link."""

    def detach(self, session: Any) -> None: ...

    def submit_request(self, session: Any, method: str, seq: int, fields: RequestFields) -> bool: ...


class CounterLike(Connection, Protocol):
    def attach(self, client: "XtQuantAsyncClient") -> Any: ...


_registry: dict[str, CounterLike] = {}
_registry_lock = threading.Lock()


def register_counter(path: str, counter: CounterLike) -> None:
    """Make ``counter`` reachable as ``XtQuantTrader(path, ...)``; a path holds one counter."""
    with _registry_lock:
        existing = _registry.get(path)
        if existing is not None and existing is not counter:
            raise ValueError(f"a different counter is already registered at {path!r}")
        _registry[path] = counter


def unregister_counter(path: str) -> None:
    with _registry_lock:
        _registry.pop(path, None)


def lookup_counter(path: str) -> CounterLike | None:
    with _registry_lock:
        return _registry.get(path)


class _OfflineResponder:
    """Delivers failure answers for clients that have no live counter, off the caller's thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[XtQuantAsyncClient, list[Delivery]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def post(self, client: "XtQuantAsyncClient", deliveries: list[Delivery]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sim-native-offline", daemon=True)
                self._thread.start()
        self._queue.put((client, deliveries))

    def _run(self) -> None:
        while True:
            client, deliveries = self._queue.get()
            for callback, args in deliveries:
                client.deliver(callback, *args)


_offline = _OfflineResponder()


# ---------------------------------------------------------------------------------------


class XtQuantAsyncClient:
    """The native client XtQuantTrader wraps: one per trader, one session per connect()."""

    _SERVED: ClassVar[frozenset[str]] = frozenset(RESPONSE_CALLBACKS)

    def __init__(self, path: bytes | str, name: str, session: int) -> None:
        self.path = path.decode("gb18030") if isinstance(path, bytes) else str(path)
        self.name = name
        self.session_id = int(session)
        self._callbacks: dict[str, Callable[..., Any]] = {}
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self._lock = threading.Lock()  # guards _counter and _session
        self._counter: Connection | None = None
        self._session: Any = None
        self._started = False
        self.timeout_ms = 0

    # -- lifecycle -----------------------------------------------------------------------

    def init(self) -> int:
        return 0

    def start(self) -> int:
        self._started = True
        return 0

    def stop(self) -> int:
        """Leave the counter: after this returns no callback of this client runs again."""
        with self._lock:
            counter, session = self._counter, self._session
            self._counter = self._session = None
            self._started = False
        if counter is not None and session is not None:
            try:
                counter.detach(session)
            except RuntimeError:  # counter already closed: nothing left to detach from
                pass
        return 0

    def connect(self) -> int:
        """0 when the counter at our path took a new session; a negative int otherwise."""
        if not self._started:
            return CONNECT_NOT_STARTED
        counter = lookup_counter(self.path)
        if counter is None:
            return self._connect_process()
        with self._lock:
            current = self._session
        if current is not None and getattr(current, "active", False) and self._counter is counter:
            return CONNECT_OK
        try:
            session = counter.attach(self)
        except Exception:  # a closed or broken counter is a failed connect, never an exception
            log.debug("connect to %s failed", self.path, exc_info=True)
            return CONNECT_NO_COUNTER
        if session is None:
            return CONNECT_REFUSED
        with self._lock:
            old_counter, old_session = self._counter, self._session
            self._counter, self._session = counter, session
        self._leave(old_counter, old_session, session)
        return CONNECT_OK

    def _connect_process(self) -> int:
        """No counter in this process: the counter process serving the path, as QMT is found."""
        from adapter.sim import remote

        with self._lock:
            current = self._counter
        if isinstance(current, remote.RemoteLink) and current.active:
            return CONNECT_OK
        endpoint = remote.read_endpoint(self.path)
        if endpoint is None:
            return CONNECT_NO_COUNTER
        link = remote.RemoteLink(self, endpoint)
        result = link.attach()
        if result != CONNECT_OK:
            link.detach()
            return result
        with self._lock:
            old_counter, old_session = self._counter, self._session
            self._counter, self._session = link, link
        self._leave(old_counter, old_session, link)
        return CONNECT_OK

    @staticmethod
    def _leave(counter: Connection | None, session: Any, new_session: Any) -> None:
        if counter is not None and session is not None and session is not new_session:
            try:
                counter.detach(session)
            except RuntimeError:
                pass

    def nextSeq(self) -> int:  # noqa: N802 (native API name)
        with self._seq_lock:
            return next(self._seq)

    def setTimeout(self, timeout_ms: int) -> None:  # noqa: N802
        self.timeout_ms = int(timeout_ms)

    # -- requests ------------------------------------------------------------------------

    def subscribeWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("subscribeWithSeq", seq, req)

    def unsubscribeWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("unsubscribeWithSeq", seq, req)

    def orderStockWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("orderStockWithSeq", seq, req)

    def cancelOrderStockWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("cancelOrderStockWithSeq", seq, req)

    def queryStockAssetWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryStockAssetWithSeq", seq, req)

    def queryStockOrdersWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryStockOrdersWithSeq", seq, req)

    def queryStockTradesWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryStockTradesWithSeq", seq, req)

    def queryStockPositionsWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryStockPositionsWithSeq", seq, req)

    def queryAccountInfosWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryAccountInfosWithSeq", seq, req)

    def queryAccountStatusWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryAccountStatusWithSeq", seq, req)

    def queryCreditDetailWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryCreditDetailWithSeq", seq, req)

    def queryStkCompactsWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryStkCompactsWithSeq", seq, req)

    def queryCreditSubjectsWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryCreditSubjectsWithSeq", seq, req)

    def queryCreditSloCodeWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryCreditSloCodeWithSeq", seq, req)

    def queryCreditAssureWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryCreditAssureWithSeq", seq, req)

    def queryNewPurchaseLimitWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryNewPurchaseLimitWithSeq", seq, req)

    def queryIPODataWithSeq(self, seq: int, req: object) -> None:  # noqa: N802
        self._request("queryIPODataWithSeq", seq, req)

    def _request(self, method: str, seq: int, req: object) -> None:
        fields = RequestFields(req)
        with self._lock:
            counter, session = self._counter, self._session
        if counter is not None and session is not None and counter.submit_request(session, method, seq, fields):
            return
        reason = "not connected to the counter" if session is None else "the counter is closed"
        _offline.post(self, failure_deliveries(method, seq, fields, f"[SIM] {reason}"))

    # -- callbacks -----------------------------------------------------------------------

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        if name.startswith("bind"):
            key = name[len("bind") :]

            def bind(callback: Callable[..., Any]) -> None:
                self._callbacks[key] = callback

            return bind
        if name.endswith("WithSeq"):

            def unsupported(*_args: Any) -> None:
                raise NotImplementedError(f"{name} is not supported by the simulated counter")

            return unsupported
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def deliver(self, callback: str, *args: Any) -> None:
        """Invoke a bound callback (called on the counter's thread); errors are logged, not raised."""
        function = self._callbacks.get(callback)
        if function is None:
            return
        try:
            function(*args)
        except Exception:
            log.exception("callback %s of session %s raised", callback, self.session_id)
