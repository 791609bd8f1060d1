"""Market data at the gateway (PROTOCOL §16): the market desk and the quote thread.

- ``MarketDesk`` (the I/O thread's): market ops go to worker threads and come back through the
  inbox; leases on quote subscriptions, counted per (code, period) across clients and per key;
  time-outs. No sockets: the gateway carries out the ``Reply``/``Refuse`` actions it returns.
- ``QuoteThread``: owns the quote PUB (an XPUB granting ``quote.``/``download.`` to keys with
  the ``quote`` right). Sources hand quotes to it; it keeps the newest per (period, code) until
  it sends (conflation), packs and sends them, so a flood of quotes costs the I/O thread nothing.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from ..config import Config
from ..keys import ClientKey
from ..protocol import encode_quote, errors, ops, pack, quote_topic
from . import access
from .desk import Refuse, Reply
from .inbox import Inbox
from .marketdata import MarketSource, Quote
from .sockets import subscription_requests

log = logging.getLogger(__name__)

MARKETS = frozenset(ops.MARKETS)
MARKET_CODES = 3_000  # what one whole market counts for against a key's max_quote_codes
DOWNLOADS = frozenset({"download_history_data", "download_history_data2"})
SUBSCRIPTION_OPS = frozenset({"subscribe_quote", "subscribe_whole_quote", "unsubscribe_quote", "renew_quotes"})
MAX_VALUES = 5_000_000  # values one get_market_data_ex answer may hold (codes x rows x fields)
QUOTE_PREFIXES = ("quote.", "download.")
SEND_BATCH = 2_048  # quotes sent per turn of the quote thread before it looks at its socket again


@dataclass(slots=True)
class MarketAnswer:
    """An inbox item: a market op's outcome from a worker."""

    token: int
    packed: bytes = b""  # the result, packed on the worker (a day of bars is no work for the I/O thread)
    error: tuple[str, str] | None = None  # (code, message)


@dataclass(slots=True)
class PackedReply:
    """An ok reply whose result is packed already."""

    envelope: list[bytes]
    request_id: Any
    packed: bytes


@dataclass(slots=True)
class _Pending:
    envelope: list[bytes]
    request_id: Any
    op: str
    deadline: float


@dataclass(slots=True)
class Lease:
    seq: int
    key: str
    owner: bytes  # the routing id of the connection that subscribed: only it renews or ends the lease
    codes: tuple[str, ...]
    period: str
    expires: float
    weight: int = field(init=False)

    def __post_init__(self) -> None:
        self.weight = sum(MARKET_CODES if code in MARKETS else 1 for code in self.codes)


class MarketDesk:
    """The I/O thread's side of market data; see the module's doc."""

    def __init__(self, config: Config, post: Callable[[Any], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._post = post
        self._clock = clock
        self.source: MarketSource | None = None
        self.quotes: QuoteThread | None = None
        self._workers = concurrent.futures.ThreadPoolExecutor(config.market_workers,
                                                              thread_name_prefix="qmt-gateway-market")
        self._tokens = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        # Seqs of an earlier start are unknown here, never another client's (renewals say so).
        self._seqs = itertools.count(1 + secrets.randbelow(1 << 30))
        self.leases: dict[int, Lease] = {}
        # Leases are looked at on a timer, not each loop turn: a client may hold thousands.
        self._sweep_every = min(1.0, config.quote_lease / 4)
        self._next_sweep = 0.0
        self.refs: dict[tuple[str, str], int] = {}
        self._held: dict[str, int] = {}  # key name -> codes held

    def attach(self, source: MarketSource, quotes: QuoteThread | None) -> None:
        self.source = source
        self.quotes = quotes
        if quotes is not None:
            source.watch(quotes.put)

    # -- commands -------------------------------------------------------------------------

    def on_command(self, envelope: list[bytes], request_id: Any, spec: ops.OpSpec, args: dict[str, Any],
                   key: ClientKey) -> list[Reply | Refuse]:
        name = spec.name
        if name in SUBSCRIPTION_OPS:
            return [self._subscription(envelope, request_id, name, args, key)]
        if self.source is None:
            return [Refuse(envelope, request_id, errors.BROKER_UNAVAILABLE, f"{name}: market data is not available")]
        if name in ("get_market_data_ex", "get_local_data"):
            problem = _too_large(args)
            if problem:
                return [Refuse(envelope, request_id, errors.INVALID_ARGUMENT, f"{name}: {problem}")]
        if len(self._pending) >= self._config.market_queue:
            return [Refuse(envelope, request_id, errors.TOO_MANY_REQUESTS,
                           f"{name}: {len(self._pending)} market data requests wait already; retry when answers arrive")]
        token = next(self._tokens)
        timeout = self._config.download_timeout if name in DOWNLOADS else self._config.market_timeout
        self._pending[token] = _Pending(envelope, request_id, name, self._clock() + timeout)
        self._workers.submit(self._work, token, name, args)
        return []

    def _work(self, token: int, op: str, args: dict[str, Any]) -> None:
        """On a market worker: the source's answer, posted to the I/O thread."""
        source = self.source
        assert source is not None
        task = args.get("task") or ""
        quotes = self.quotes

        def progress(data: dict[str, Any]) -> None:
            if task and quotes is not None:
                quotes.progress(task, data)

        try:
            self._post(MarketAnswer(token, pack(source.call(op, args, progress))))
        except ValueError as exc:  # the source's word on the arguments (an unknown code, start after end)
            self._post(MarketAnswer(token, error=(errors.INVALID_ARGUMENT, f"{op}: {exc}")))
        except Exception as exc:
            log.exception("market data %s failed", op)
            self._post(MarketAnswer(token, error=(errors.BROKER_ERROR, f"{op}: the market data source failed: "
                                                                        f"{type(exc).__name__}")))

    def on_answer(self, answer: MarketAnswer) -> list[PackedReply | Refuse]:
        pending = self._pending.pop(answer.token, None)
        if pending is None:
            return []  # answered broker_timeout already
        if answer.error is not None:
            return [Refuse(pending.envelope, pending.request_id, *answer.error)]
        return [PackedReply(pending.envelope, pending.request_id, answer.packed)]

    # -- subscriptions (leases) -------------------------------------------------------------

    def _subscription(self, envelope: list[bytes], request_id: Any, name: str, args: dict[str, Any],
                      key: ClientKey) -> Reply | Refuse:
        now = self._clock()
        if name == "renew_quotes":
            unknown = []
            for seq in args["seqs"]:
                lease = self.leases.get(seq)
                if lease is None or lease.owner != envelope[0]:
                    unknown.append(seq)
                else:
                    lease.expires = now + self._config.quote_lease
            return Reply(envelope, request_id, {"unknown": unknown})
        if name == "unsubscribe_quote":
            lease = self.leases.get(args["seq"])
            if lease is not None and lease.owner == envelope[0]:
                self._end(lease)
            return Reply(envelope, request_id, None)
        if name == "subscribe_quote":
            codes, period = (args["stock_code"],), args["period"]
        else:
            codes, period = tuple(dict.fromkeys(args["code_list"])), "tick"
        lease = Lease(next(self._seqs), key.name, envelope[0], codes, period, now + self._config.quote_lease)
        held = self._held.get(key.name, 0)
        if held + lease.weight > self._config.max_quote_codes:
            return Refuse(envelope, request_id, errors.TOO_MANY_REQUESTS,
                          f"{name}: key {key.name!r} holds {held} codes in quote subscriptions; "
                          f"{lease.weight} more would pass max_quote_codes ({self._config.max_quote_codes}); "
                          "a whole market counts for {MARKET_CODES}".replace("{MARKET_CODES}", str(MARKET_CODES)))
        self.leases[lease.seq] = lease
        self._held[key.name] = held + lease.weight
        for code in codes:
            ref = (code, period)
            self.refs[ref] = self.refs.get(ref, 0) + 1
            if self.refs[ref] == 1:
                self._submit_source("subscribe", code, period)
        self._wanted_changed()
        return Reply(envelope, request_id, {"seq": lease.seq, "lease": self._config.quote_lease})

    def _end(self, lease: Lease) -> None:
        del self.leases[lease.seq]
        left = self._held.get(lease.key, 0) - lease.weight
        if left > 0:
            self._held[lease.key] = left
        else:
            self._held.pop(lease.key, None)
        for code in lease.codes:
            ref = (code, lease.period)
            count = self.refs.get(ref, 0) - 1
            if count > 0:
                self.refs[ref] = count
            else:
                self.refs.pop(ref, None)
                self._submit_source("unsubscribe", code, lease.period)
        self._wanted_changed()

    def resubscribe(self) -> None:
        """The connection to QMT came back: its subscriptions are gone, ours are not."""
        for code, period in list(self.refs):
            self._submit_source("subscribe", code, period)

    def _submit_source(self, change: str, code: str, period: str) -> None:
        """``source.subscribe`` or ``unsubscribe`` on a worker (xtdata's may block)."""
        source = self.source
        if source is None:
            return

        def run() -> None:
            try:
                getattr(source, change)(code, period)
            except Exception:
                log.exception("market data: %s %s %s failed", change, code, period)

        self._workers.submit(run)

    def _wanted_changed(self) -> None:
        if self.quotes is not None:
            self.quotes.want(frozenset(self.refs))

    # -- time -------------------------------------------------------------------------------

    def next_wake(self) -> float | None:
        deadlines = [pending.deadline for pending in self._pending.values()]  # at most market_queue
        if self.leases:
            deadlines.append(self._next_sweep)
        return min(deadlines) if deadlines else None

    def on_tick(self, now: float) -> list[Reply | Refuse]:
        actions: list[Reply | Refuse] = []
        for token, pending in list(self._pending.items()):
            if now >= pending.deadline:
                del self._pending[token]
                actions.append(Refuse(pending.envelope, pending.request_id, errors.BROKER_TIMEOUT,
                                      f"{pending.op}: the market data source did not answer in time"))
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            for lease in [lease for lease in self.leases.values() if now >= lease.expires]:
                log.info("quote subscription %d of key %s expired (not renewed)", lease.seq, lease.key)
                self._end(lease)
        return actions

    def stop(self) -> list[Refuse]:
        refusals = [Refuse(p.envelope, p.request_id, errors.BROKER_UNAVAILABLE, f"{p.op}: gateway is shutting down")
                    for p in self._pending.values()]
        self._pending.clear()
        self._workers.shutdown(wait=False, cancel_futures=True)
        if self.source is not None:
            try:
                self.source.close()
            except Exception:
                log.exception("closing the market data source failed")
        return refusals


def _too_large(args: dict[str, Any]) -> str:
    """A cheap upper bound of an answer's values, refused before any work is done."""
    codes = len(args["stock_list"])
    fields = len(args["field_list"]) or 12
    count = args["count"]
    if count > 0 and codes * count * fields > MAX_VALUES:
        return (f"{codes} codes x {count} rows x {fields} fields would pass {MAX_VALUES:,} values; "
                "ask for fewer codes, fields or rows")
    return ""


class QuoteThread:
    """Owns the quote PUB; see the module's doc. ``put``, ``progress``, ``want`` and ``stop``
    may be called from any thread; nothing else touches the socket."""

    def __init__(self, config: Config, socket: zmq.Socket, source_bars: Callable[[list[str], str], list[Quote]],
                 identify: Callable[[str | None], ClientKey | None], curve: bool) -> None:
        self._socket = socket
        self._bars = source_bars
        self._identify = identify
        self._curve = curve
        # distinct prefixes granted per subscriber key (all local subscribers share one count)
        self._prefixes: dict[str | None, set[str]] = {}
        self._max_prefixes = config.max_subscriptions
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], dict[str, Any] | bytes] = {}  # conflated: newest per (period, code)
        self._progress: list[tuple[str, dict[str, Any]]] = []
        self._wanted: frozenset[tuple[str, str]] = frozenset()
        self._wake = Inbox()
        self._stopping = False
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="qmt-gateway-quotes", daemon=True)

    def start(self) -> None:
        self._thread.start()  # the memory barrier that hands the socket over

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake.post(None)
        self._thread.join(timeout)
        self._wake.close()

    def want(self, wanted: frozenset[tuple[str, str]]) -> None:
        self._wanted = wanted  # replaced whole: the quote thread reads one or the other

    def put(self, quotes: list[Quote]) -> None:
        """From a source's thread: hand off, keeping only the newest per (period, code)."""
        with self._lock:
            latest = self._latest
            for period, code, record in quotes:
                latest[(period, code)] = record
        self._wake.post(None)

    def progress(self, task: str, data: dict[str, Any]) -> None:
        with self._lock:
            if len(self._progress) < 10_000:  # progress is advisory: beyond this, dropped
                self._progress.append((task, data))
        self._wake.post(None)

    # -- the quote thread -----------------------------------------------------------------

    def _run(self) -> None:
        socket = self._socket
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self._wake.fileno(), zmq.POLLIN)
        try:
            while not self._stopping:
                ready = dict(poller.poll(1000))
                if socket in ready:
                    self._grant(socket)
                if self._wake.fileno() in ready:
                    self._wake.drain(1 << 30)
                    self._send(socket)
        except Exception:
            log.exception("the quote thread failed; quotes stop, trading goes on")
        finally:
            socket.close(linger=0)

    def _send(self, socket: zmq.Socket) -> None:
        with self._lock:
            latest, self._latest = self._latest, {}
            progress, self._progress = self._progress, []
        for task, data in progress:
            socket.send_multipart([f"download.{task}.".encode(), pack(data)])
        wanted = self._wanted
        markets = {code for code, period in wanted if code in MARKETS and period == "tick"}
        bar_periods: dict[str, list[str]] = {}
        for code, period in wanted:
            if period != "tick" and code not in MARKETS and ("tick", code) in latest:
                bar_periods.setdefault(period, []).append(code)
        for period, codes in bar_periods.items():  # bars the source builds from the ticks just taken
            try:
                for bar_period, code, record in self._bars(codes, period):
                    latest[(bar_period, code)] = record
            except Exception:
                log.exception("reading the latest %s bars failed", period)
        sent = 0
        for (period, code), record in latest.items():
            if (code, period) in wanted or (period == "tick" and code.rpartition(".")[2] in markets):
                payload = record if isinstance(record, bytes) else encode_quote(period, code, record)
                socket.send_multipart([quote_topic(period, code).encode(), payload])
                sent += 1
                if sent % SEND_BATCH == 0:
                    self._grant(socket)
        self.sent += sent

    def _grant(self, socket: zmq.Socket) -> None:
        """Each (un)subscription: granted within quote./download. to keys with the quote right."""
        for request in subscription_requests(socket, 1024, self._curve):
            key = self._identify(request.subscriber) if self._curve else access.LOCAL
            if key is None or not access.has_permission(key, "quote"):
                continue
            held = self._prefixes.setdefault(request.subscriber, set())
            for granted in access.narrow(request.prefix.decode("utf-8", "replace"), list(QUOTE_PREFIXES)):
                if request.subscribe and granted not in held and len(held) >= self._max_prefixes:
                    log.warning("quote PUB: %s holds %d subscription prefixes (max_subscriptions); %r not granted",
                                request.subscriber or "a local subscriber", len(held), granted)
                    continue
                (held.add if request.subscribe else held.discard)(granted)
                socket.setsockopt(zmq.SUBSCRIBE if request.subscribe else zmq.UNSUBSCRIBE, granted.encode())
