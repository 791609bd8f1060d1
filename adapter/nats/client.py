"""Clients that reach gateways through NATS (PROTOCOL §18): ``Client(nats=URL)`` and
``AsyncClient(nats=URL)``, with the same methods as over ZeroMQ.

Commands: each op's request map (the bytes the ZeroMQ client sends its DEALER) is a NATS request
on ``qmt.cmd.<account_id>``; an op without an account goes to ``qmt.cmd._gw.<gateway>``, the one
gateway the bridges' health messages name (or ``gateway=NAME``). The reply is the gateway's reply,
decoded as the ZeroMQ client decodes it, so results and errors are the same. A request nobody
serves raises ``GatewayError`` code ``no_responders`` naming the account or gateway.

Events come from a JetStream consumer on the accounts' subjects (and their gateways' own events):
per gateway in seq order, each (gateway, epoch, seq) once; ``from_seq`` starts each gateway's
events there, ``durable=NAME`` keeps the position on the server (an event is acknowledged once it
counts as delivered). The same :class:`~adapter.client.Event` objects as over ZeroMQ. After a
failure (NATS restarted, the connection back, the consumer gone) the consumer is made again from
where the stream stands, so nothing is skipped or repeated (PROTOCOL §18.4).

Liveness comes from the bridges' health messages (PROTOCOL §18.3): a gateway silent for 3 s
(``liveness_timeout``) or not connected makes ``gateway_alive`` False and puts a
``gateway.liveness`` notice in the streams watching it, as over ZeroMQ.

Threads. :class:`NatsClient` (blocking) runs the asyncio NATS client on one loop thread
(``qmt-nats-loop``) that owns the connection; calls hand their request to it and wait for the
reply. A subscription's callbacks run on one delivery thread of its own, in order; an event
stream belongs to the thread that iterates it. :class:`AsyncNatsClient` uses the event loop it is
first used on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Mapping, Sequence

from adapter.client import aio as client_aio
from adapter.client import sync as client_sync
from adapter.client._base import AsyncClosing, Closing
from adapter.client._stream import LIVENESS_EVENT, text_prefixes
from adapter.client._wire import check_timeout, decode_reply, reply_outcome
from adapter.client.errors import CLIENT_CLOSED, GatewayError, GatewayTimeout
from adapter.client.records import Event, EventFormatError, parse_event
from adapter.keys import CurveKeys
from adapter.client.recovery import _notice
from adapter.protocol import ProtocolError, event_topic, unpack

from . import subjects

logger = logging.getLogger(__name__)

NATS_ENV = "QMT_ADAPTER_NATS"
NO_RESPONDERS = "no_responders"  # nobody serves the subject: no bridge for that account or gateway
GATEWAY_UNKNOWN = "gateway_unknown"  # an op without an account, and no single gateway to send it to
HEALTH_SETTLE = 1.2  # seconds of health messages to hear before choosing "the one gateway" (bridges send ~1/s)
FETCH_BATCH = 256
MAX_BACKLOG = 1024  # messages fetched and not yet taken by the reader: beyond, the stream waits in JetStream
BACKLOG_WAIT = 0.01  # seconds between looks while the reader's backlog is full
FETCH_WAIT = 1.0  # seconds a pull waits for messages before asking again
RETRY_PAUSE = 0.25  # seconds between attempts to bind a consumer again (NATS server restart, ...)
INACTIVE_THRESHOLD = 60.0  # seconds after which the server removes an ephemeral consumer left behind
MAX_HEALTH_SIZE = 64 * 1024
IDLE_CHECKS = 5  # empty pulls in a row before asking the server whether the consumer still exists
SILENCE = 3.0  # seconds without a gateway's health message before it counts as gone (bridges send ~1/s)
LIVENESS_POLL = 0.25  # seconds a stream waits for a message before looking at the gateways' health again
LIVENESS_CHECK = 0.1  # seconds between two looks at the gateways' health by one stream


@dataclass(frozen=True)
class NatsSettings:
    """Where and how to connect: ``servers`` (one URL, or several of one cluster), credentials
    (``user``/``password``, a ``creds`` file, an NKey seed file ``nkey_seed``), TLS (``tls_ca``,
    and ``tls_cert``/``tls_key`` for a client certificate), ``gateway`` (the gateway for ops
    without an account) and ``accounts`` (whose events a stream follows by default)."""

    servers: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    creds: str | None = None
    nkey_seed: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    gateway: str | None = None
    accounts: tuple[str, ...] = ()

    @classmethod
    def make(cls, nats: str | Sequence[str], **options: Any) -> NatsSettings:
        servers = tuple(s.strip() for s in (nats.split(",") if isinstance(nats, str) else nats) if s.strip())
        if not servers:
            raise ValueError("nats: no server URL given")
        known = {"nats_user", "nats_password", "nats_creds", "nats_nkey_seed", "nats_tls_ca", "nats_tls_cert",
                 "nats_tls_key", "gateway", "accounts"}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown NATS option(s): {', '.join(sorted(unknown))}")
        gateway = options.get("gateway")
        if gateway is not None:
            subjects.check_token(gateway, "gateway")
        accounts = options.get("accounts") or ()
        accounts = (accounts,) if isinstance(accounts, str) else tuple(accounts)
        for account in accounts:
            subjects.check_token(account, "account")
        return cls(servers, options.get("nats_user"), options.get("nats_password"), _path(options.get("nats_creds")),
                   _path(options.get("nats_nkey_seed")), _path(options.get("nats_tls_ca")),
                   _path(options.get("nats_tls_cert")), _path(options.get("nats_tls_key")), gateway, accounts)

    @property
    def where(self) -> str:
        return ",".join(self.servers)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of ``nats.connect`` (no secret is ever logged from here)."""
        options: dict[str, Any] = {
            "servers": list(self.servers), "name": "qmt-adapter-client", "connect_timeout": 2,
            "allow_reconnect": True, "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
            "error_cb": _log_error, "disconnected_cb": _log_disconnected, "reconnected_cb": _log_reconnected,
        }
        if self.user is not None:
            options["user"], options["password"] = self.user, self.password
        if self.creds:
            options["user_credentials"] = self.creds
        if self.nkey_seed:
            options["nkeys_seed"] = self.nkey_seed
        if self.tls_ca or self.tls_cert:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            options["tls"] = context
        return options


def _path(value: Any) -> str | None:
    return None if value is None else str(value)


async def _log_error(exc: Exception) -> None:
    logger.debug("nats: %s", exc)


async def _log_disconnected() -> None:
    logger.info("nats: disconnected; reconnecting")


async def _log_reconnected() -> None:
    logger.info("nats: reconnected")


# -- what the bridges say about themselves ---------------------------------------------------


@dataclass
class Directory:
    """The gateways heard on ``qmt.health.*``: name -> the last health map and when it came."""

    gateways: dict[str, dict[str, Any]] = field(default_factory=dict)
    heard: dict[str, float] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)

    def on_health(self, payload: bytes, now: float | None = None) -> None:
        try:
            health = unpack(payload, max_size=MAX_HEALTH_SIZE)
        except ProtocolError:
            logger.debug("dropping an unreadable health message")
            return
        if not isinstance(health, dict) or not isinstance(health.get("gateway"), str):
            return
        self.gateways[health["gateway"]] = health
        self.heard[health["gateway"]] = time.monotonic() if now is None else now

    def alive(self, gateway: str, silence: float, now: float | None = None) -> bool | None:
        """Whether ``gateway`` is heard: its bridge spoke within ``silence`` seconds and says the
        gateway is connected; None when it was never heard."""
        heard = self.heard.get(gateway)
        if heard is None:
            return None
        now = time.monotonic() if now is None else now
        return now - heard <= silence and self.gateways[gateway].get("connected") is not False

    def silent_for(self, gateway: str, now: float | None = None) -> float:
        heard = self.heard.get(gateway)
        return 0.0 if heard is None else max(0.0, (time.monotonic() if now is None else now) - heard)

    def accounts(self) -> list[str]:
        found: list[str] = []
        for health in self.gateways.values():
            for account in health.get("accounts") or ():
                if isinstance(account, str) and account not in found:
                    found.append(account)
        return found

    def gateways_of(self, accounts: Sequence[str]) -> list[str]:
        wanted = set(accounts)
        return [name for name, health in self.gateways.items()
                if wanted & {str(a) for a in health.get("accounts") or ()}]


def command_route(op: str, args: Mapping[str, Any], gateway: str | None, directory: Directory) -> str:
    """The subject of one request: the account's, else the one gateway's (``gateway_unknown``
    when it is not clear which)."""
    account = args.get("account_id")
    if isinstance(account, str) and account:
        try:
            return subjects.command_subject(subjects.check_token(account, "account_id"))
        except ValueError as exc:
            raise GatewayError("invalid_argument", f"{op}: {exc}") from None
    if gateway is not None:
        return subjects.gateway_command_subject(gateway)
    names = sorted(directory.gateways)
    if len(names) == 1:
        return subjects.gateway_command_subject(names[0])
    if not names:
        raise GatewayError(NO_RESPONDERS, f"{op} has no account and no gateway is heard on NATS "
                                          f"({subjects.HEALTH}.*): is a bridge running? (or pass gateway=NAME)")
    raise GatewayError(GATEWAY_UNKNOWN, f"{op} has no account and {len(names)} gateways are on NATS "
                                        f"({', '.join(names)}): pass gateway=NAME to the client")


# -- events: exactly once per (gateway, epoch, seq) -------------------------------------------


def decode_message(subject: str, headers: Mapping[str, str] | None, payload: bytes) -> tuple[str, Event]:
    """(gateway, event) of one stream message; EventFormatError when it is not one."""
    tokens = subject.split(".")
    if len(tokens) < 4 or ".".join(tokens[:2]) != subjects.EVENTS:
        raise EventFormatError(f"subject {subject!r} is not an event subject")
    if tokens[2] == subjects.GATEWAY_TOKEN:
        if len(tokens) < 5:
            raise EventFormatError(f"subject {subject!r} is not an event subject")
        account, event_type, gateway = None, ".".join(tokens[4:]), tokens[3]
    else:
        account, event_type, gateway = tokens[2], ".".join(tokens[3:]), ""
    gateway = (headers or {}).get(subjects.GATEWAY) or gateway
    if not gateway:
        raise EventFormatError(f"subject {subject!r}: no {subjects.GATEWAY} header")
    event = parse_event([event_topic(event_type, account).encode("utf-8"), payload])
    if event.seq is None:
        raise EventFormatError(f"subject {subject!r}: an event without seq")
    return gateway, event


class EventGate:
    """Which events a stream hands out: per gateway, only seqs above the last one of the same
    epoch (a new epoch starts over), from ``from_seq`` on (an int for every gateway, or
    ``{gateway: seq}``; it applies until the gateway's first event is taken), and only topics
    starting with one of ``prefixes`` (none: all)."""

    def __init__(self, prefixes: Sequence[str | bytes] = (), from_seq: int | Mapping[str, int] | None = None) -> None:
        self.prefixes = text_prefixes(prefixes)
        self._from = from_seq
        self.positions: dict[str, tuple[str | None, int]] = {}  # gateway -> (epoch, last seq)
        self.duplicates = 0
        self.delivered = 0
        self.last: Event | None = None

    def admit(self, gateway: str, event: Event) -> bool:
        seq = event.seq
        if seq is None:
            return False
        last = self.positions.get(gateway)
        if last is None:
            start = self._from.get(gateway) if isinstance(self._from, Mapping) else self._from
            if start is not None and seq < start:
                return False
        elif last[0] == event.epoch and seq <= last[1]:
            self.duplicates += 1
            return False
        self.positions[gateway] = (event.epoch, seq)
        if self.prefixes and not event.topic.startswith(self.prefixes):
            return False
        self.delivered += 1
        self.last = event
        return True

    @property
    def last_seq(self) -> int | None:
        """The newest seq taken (with one gateway: that gateway's position)."""
        if len(self.positions) == 1:
            return next(iter(self.positions.values()))[1]
        return None if self.last is None else self.last.seq


def client_liveness(directory: Directory, settings: NatsSettings, silence: float | None) -> bool | None:
    """A client's verdict: its gateway (``gateway=``), else its accounts' gateways, else every
    gateway heard; None when none of them was ever heard (or ``liveness_timeout`` is 0)."""
    if silence == 0:
        return None
    if settings.gateway is not None:
        names = [settings.gateway]
    elif settings.accounts:
        names = directory.gateways_of(settings.accounts)
    else:
        names = list(directory.gateways)
    now = time.monotonic()
    verdicts = [directory.alive(name, SILENCE if silence is None else silence, now) for name in names]
    known = [v for v in verdicts if v is not None]
    return None if not known else all(known)


def watched_gateways(filters: Sequence[str], directory: Directory) -> list[str]:
    """The gateways whose events ``filters`` take: named by a gateway filter, or serving one of
    its accounts (as heard now)."""
    gateways: list[str] = []
    accounts: list[str] = []
    for subject in filters:
        tokens = subject.split(".")
        if len(tokens) >= 4 and tokens[2] == subjects.GATEWAY_TOKEN:
            gateways.append(tokens[3])
        elif len(tokens) >= 3:
            accounts.append(tokens[2])
    for name in directory.gateways_of(accounts):
        if name not in gateways:
            gateways.append(name)
    return gateways


class Liveness:
    """A stream's view of its gateways' health (PROTOCOL §18.3): a gateway silent for
    ``silence`` seconds, or whose bridge says ``connected: false``, is gone; heard again, alive.
    :meth:`check` returns the ``gateway.liveness`` notices for the verdicts that changed, the same
    notice a ZeroMQ stream gives (``alive``, ``silent_for``, ``last_seq``) plus ``gateway``."""

    def __init__(self, directory: Directory, silence: float | None) -> None:
        self.directory = directory
        self.silence = SILENCE if silence is None else float(silence)
        self.filters: tuple[str, ...] = ()
        self.verdicts: dict[str, bool] = {}
        self._checked = float("-inf")

    @property
    def alive(self) -> bool | None:
        """None until a gateway is heard (or with ``silence`` 0), else whether all are."""
        if self.silence == 0 or not self.verdicts:
            return None
        return all(self.verdicts.values())

    def check(self, gate: EventGate, now: float | None = None) -> list[Event]:
        now = time.monotonic() if now is None else now
        if self.silence == 0 or now - self._checked < LIVENESS_CHECK:
            return []  # a stream calls this for every message: the verdicts change on a scale of seconds
        self._checked = now
        notices = []
        for gateway in watched_gateways(self.filters, self.directory):
            verdict = self.directory.alive(gateway, self.silence, now)
            if verdict is None or self.verdicts.get(gateway) == verdict:
                continue
            first = gateway not in self.verdicts
            self.verdicts[gateway] = verdict
            if first and verdict:
                continue  # heard from the start: nothing changed
            silent_for = 0.0 if verdict else self.directory.silent_for(gateway, now)
            if verdict:
                logger.warning("gateway %s is heard again on NATS", gateway)
            else:
                logger.warning("gateway %s: no health for %.1f s or not connected: counting it as gone",
                               gateway, silent_for)
            epoch, last_seq = gate.positions.get(gateway, (None, None))
            notices.append(_notice(LIVENESS_EVENT, {"alive": verdict, "silent_for": round(silent_for, 3),
                                                    "last_seq": last_seq, "gateway": gateway}, epoch))
        return notices


# -- the connection, on one event loop --------------------------------------------------------


@dataclass(frozen=True)
class ConsumerSpec:
    """A JetStream consumer: the subjects, where to start, and its durable name (None: ephemeral)."""

    filters: tuple[str, ...]
    from_seq: int | Mapping[str, int] | None
    durable: str | None


class NatsLink:
    """One NATS connection and what runs over it; every method runs on the loop it first
    connected on."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.directory = Directory()
        self._nc: Any = None
        self._js: Any = None
        self._lock: asyncio.Lock | None = None
        self._closed = False
        self.reconnects = 0  # how many times the connection came back: consumers bind again after one
        self.held = 0  # times a consumer waited for its reader to take what it had fetched (MAX_BACKLOG)

    async def connect(self, seconds: float) -> Any:
        if self._nc is not None:
            return self._nc
        if self._closed:
            raise GatewayError(CLIENT_CLOSED, "the client is closed")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._nc is None:
                import nats

                options = self.settings.connect_options()
                options["reconnected_cb"] = self._on_reconnected
                nc = await asyncio.wait_for(nats.connect(**options), seconds)
                await nc.subscribe(f"{subjects.HEALTH}.*", cb=self._on_health)
                self.directory.since = time.monotonic()
                self._js = nc.jetstream()
                self._nc = nc
        return self._nc

    async def connect_quietly(self, seconds: float) -> None:
        """Connect now if the server is there; a call connects (and reports) otherwise."""
        try:
            await self.connect(seconds)
        except Exception as exc:
            logger.debug("nats: no connection yet: %s", exc)

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        await _log_reconnected()

    async def _on_health(self, msg: Any) -> None:
        self.directory.on_health(msg.data)

    async def request(self, op: str, args: Mapping[str, Any], request_id: int, payload: bytes,
                      seconds: float) -> dict[str, Any]:
        """The gateway's reply body to one request; GatewayError / GatewayTimeout as over ZeroMQ."""
        import nats.errors

        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        where = self.settings.where
        try:
            nc = await self.connect(seconds)
        except (OSError, asyncio.TimeoutError, nats.errors.Error) as exc:
            raise GatewayTimeout(f"{op}: no connection to NATS at {where} within {seconds:g}s ({exc or type(exc).__name__}); "
                                 f"request {request_id} not sent", request_id, sent=False) from None
        subject = await self._route(op, args, deadline)
        remaining = deadline - loop.time()
        if not nc.is_connected or remaining <= 0:
            raise GatewayTimeout(f"{op}: no connection to NATS at {where} within {seconds:g}s; "
                                 f"request {request_id} not sent", request_id, sent=False)
        try:
            reply = await nc.request(subject, payload, timeout=remaining)
        except nats.errors.NoRespondersError:
            who = f"account {args['account_id']}" if subject.startswith(subjects.COMMANDS + ".") and \
                not subject.startswith(f"{subjects.COMMANDS}.{subjects.GATEWAY_TOKEN}.") else \
                f"gateway {subject.rsplit('.', 1)[-1]}"
            raise GatewayError(NO_RESPONDERS, f"{op}: no bridge serves {who} on NATS ({subject})",
                               request_id) from None
        except nats.errors.TimeoutError:
            logger.warning("request %s (%s): no reply within %gs", request_id, op, seconds)
            raise GatewayTimeout(f"{op}: no reply to request {request_id} within {seconds:g}s; outcome unknown",
                                 request_id, sent=True) from None
        except nats.errors.ConnectionClosedError:
            raise GatewayError(CLIENT_CLOSED, f"{op}: the NATS connection was closed", request_id) from None
        decoded = decode_reply([reply.data])
        if decoded is None:
            raise GatewayError("invalid_reply", f"{op}: the reply could not be read", request_id)
        return decoded[1]

    async def _route(self, op: str, args: Mapping[str, Any], deadline: float) -> str:
        loop = asyncio.get_running_loop()
        if not args.get("account_id") and self.settings.gateway is None:
            # Hear every bridge once before choosing "the one gateway".
            settle = self.directory.since + HEALTH_SETTLE - time.monotonic()
            if settle > 0:
                await asyncio.sleep(min(settle, max(0.0, deadline - loop.time())))
        return command_route(op, args, self.settings.gateway, self.directory)

    async def filters(self, accounts: Sequence[str], seconds: float) -> tuple[str, ...]:
        """The subjects of a stream of ``accounts`` (none: the client's, else every account heard),
        with their gateways' own events."""
        await self.connect(seconds)
        accounts = list(accounts or self.settings.accounts)
        deadline = time.monotonic() + seconds
        given = bool(accounts)
        while True:  # bounded by the deadline
            accounts = accounts if given else self.directory.accounts()
            settled = self.directory.since + HEALTH_SETTLE <= time.monotonic()
            known = self.settings.gateway is not None or bool(self.directory.gateways_of(accounts))
            if (accounts and known and (given or settled)) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if not accounts:
            raise GatewayError(NO_RESPONDERS, "events: no account given and no gateway heard on NATS; "
                                              "pass accounts=[...]")
        gateways = [self.settings.gateway] if self.settings.gateway else self.directory.gateways_of(accounts)
        return tuple([subjects.account_events(a) for a in accounts] + [subjects.gateway_events(g) for g in gateways])

    async def consume(self, spec: ConsumerSpec, sink: Callable[[Any], None], ready: Callable[[], None],
                      backlog: Callable[[], int]) -> None:
        """Hand each message of the consumer to ``sink`` in stream order until cancelled, never
        more than ``MAX_BACKLOG`` ahead of the reader (``backlog()``: what it has not taken yet):
        a slow reader leaves the events in JetStream, not in this process's memory.

        After a failure (a NATS restart, the consumer gone) the consumer is made again so that
        nothing is skipped and nothing comes out of order: an ephemeral one from the stream seq
        after the last message handed on; a durable one from its ack floor (what its readers
        acknowledged), since messages delivered but unacknowledged would otherwise come back only
        after the ack wait, behind newer ones. Repeats are dropped by the stream's EventGate."""
        import nats.errors

        next_seq: int | None = None
        announced = False
        while True:
            sub = None
            try:
                await self.connect(10.0)
                reconnects = self.reconnects
                name, start = await self._bind(spec, next_seq)
                if next_seq is None or start is not None:
                    next_seq = start
                sub = await self._js.pull_subscribe_bind(consumer=name, stream=subjects.STREAM)
                if not announced:
                    announced = True
                    ready()
                idle = 0
                while True:
                    while (room := MAX_BACKLOG - backlog()) <= 0:
                        self.held += 1
                        await asyncio.sleep(BACKLOG_WAIT)
                    try:
                        messages = await sub.fetch(min(FETCH_BATCH, room), timeout=FETCH_WAIT)
                    except nats.errors.TimeoutError:
                        if self.reconnects != reconnects:
                            raise ConnectionError("the NATS connection came back") from None
                        idle += 1
                        if idle % IDLE_CHECKS == 0:  # a consumer lost without a reconnect seen (raises NotFound)
                            await self._js.consumer_info(subjects.STREAM, name)
                        continue
                    idle = 0
                    for message in messages:
                        if not message.subject.startswith(subjects.EVENTS + "."):
                            continue  # a status message
                        sink(message)
                        next_seq = message.metadata.sequence.stream + 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                logger.info("event consumer (%s): %s; binding again", ", ".join(spec.filters), exc or type(exc).__name__)
                await asyncio.sleep(RETRY_PAUSE)
            finally:
                if sub is not None:
                    try:
                        await sub.unsubscribe()
                    except Exception:
                        pass

    async def _bind(self, spec: ConsumerSpec, next_seq: int | None) -> tuple[str, int | None]:
        """Make the consumer; (its name, the stream seq it starts at, when known)."""
        from nats.js import api
        import nats.js.errors

        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.NEW, ack_policy=api.AckPolicy.NONE,
            inactive_threshold=INACTIVE_THRESHOLD, mem_storage=True, num_replicas=1)
        if spec.from_seq is not None:
            config.deliver_policy = api.DeliverPolicy.ALL
        if len(spec.filters) == 1:  # the consumer-create subject names it, for permissions
            config.filter_subject = spec.filters[0]
        else:
            config.filter_subjects = list(spec.filters)
        if spec.durable:
            config.durable_name = config.name = spec.durable
            # ALL: acknowledging an event acknowledges those before it, so the floor is the last one taken
            config.ack_policy = api.AckPolicy.ALL
            config.mem_storage, config.inactive_threshold, config.num_replicas = None, None, None
            try:
                info = await self._js.consumer_info(subjects.STREAM, spec.durable)
            except nats.js.errors.NotFoundError:
                info = None
            if info is not None:
                # Start again after what its readers acknowledged (delivered but unacknowledged
                # messages would otherwise come back after the ack wait, behind newer ones).
                await self._js.delete_consumer(subjects.STREAM, spec.durable)
                config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = info.ack_floor.stream_seq + 1
            await self._js.add_consumer(subjects.STREAM, config)
            return spec.durable, None
        if next_seq is not None:
            config.deliver_policy, config.opt_start_seq = api.DeliverPolicy.BY_START_SEQUENCE, next_seq
        config.name = self._nc._nuid.next().decode()
        made = await self._js.add_consumer(subjects.STREAM, config)
        # A consumer of new messages starts after the stream's last seq at creation: remember it,
        # so that one made again after a failure misses nothing in between.
        delivered = getattr(made, "delivered", None)
        stream_seq = getattr(delivered, "stream_seq", None)
        return config.name, (stream_seq + 1 if isinstance(stream_seq, int) and next_seq is None else None)

    async def close(self) -> None:
        self._closed = True
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await nc.close()
            except Exception as exc:
                logger.debug("nats close: %s", exc)


def _ack(message: Any) -> Awaitable[None] | None:
    """Acknowledge a durable consumer's message (None when there is nothing to do)."""
    if message.reply and message.reply.startswith("$JS.ACK.") and not message._ackd:
        result: Awaitable[None] = message.ack()
        return result
    return None


# -- the blocking client --------------------------------------------------------------------


class LoopThread:
    """One thread running the asyncio loop that owns the NATS connection."""

    def __init__(self, name: str = "qmt-nats-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Awaitable[Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def run(self, coro: Awaitable[Any], timeout: float) -> Any:
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        if threading.current_thread() is not self.thread:
            self.thread.join(5.0)
            if not self.thread.is_alive():
                self.loop.close()

    async def _shutdown(self) -> None:
        """End what still runs (a connect in progress, a consumer) before the loop stops, so
        nothing is left pending for the garbage collector to complain about."""
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=2.0) if tasks else None
        self.loop.stop()


class _NatsClientBase:
    """What the blocking and the asyncio NATS client share: settings, ids, the link, liveness."""

    _link: NatsLink
    _curve: CurveKeys | None  # never set over NATS: its TLS and credentials stand in
    settings: NatsSettings
    liveness_timeout: float | None

    def _init_nats(self, timeout: float, liveness_timeout: float | None, nats: str | Sequence[str],
                   options: dict[str, Any]) -> None:
        self.settings = NatsSettings.make(nats, **options)
        self.router = self.pub = self.settings.where  # what messages name as "the gateway at ..."
        self.timeout = check_timeout(timeout, timeout)
        self.liveness_timeout = liveness_timeout
        self._curve = None
        self._ids = itertools.count(1)
        self._closed = False
        self._link = NatsLink(self.settings)

    @property
    def gateway_alive(self) -> bool | None:
        """Whether the client's gateways are heard on NATS: their bridges' health (PROTOCOL §18.3)
        within ``liveness_timeout`` (default 3 s) saying ``connected``; None before one is heard."""
        return client_liveness(self._link.directory, self.settings, self.liveness_timeout)

    @property
    def gateways(self) -> dict[str, dict[str, Any]]:
        """The gateways heard on NATS: name -> the bridge's last health map."""
        return dict(self._link.directory.gateways)


class NatsClient(_NatsClientBase, client_sync.Client):
    """The blocking client over NATS; made by ``Client(nats=URL, ...)`` (see the module docstring)."""

    def __init__(self, router: str | None = None, pub: str | None = None, timeout: float = 10.0,
                 context: Any = None, *, client_key: Any = None, server_key: Any = None,
                 liveness_timeout: float | None = None, nats: str | Sequence[str] | None = None,
                 **nats_options: Any) -> None:
        if nats is None:
            raise TypeError("NatsClient needs nats=URL")
        self._init_nats(timeout, liveness_timeout, nats, nats_options)
        self._subscriptions: set[Any] = set()
        self._subscriptions_lock = threading.Lock()
        self._loop = LoopThread()
        self._loop.submit(self._link.connect_quietly(self.timeout))  # hear the bridges from now on

    def _call(self, op: str, args: dict[str, Any], timeout: float | None, plain: bool = False) -> Any:
        seconds = check_timeout(timeout, self.timeout)
        self._check_open()
        request_id, payload = self._encode(op, args)
        try:
            body = self._loop.run(self._link.request(op, args, request_id, payload, seconds), seconds + 5.0)
        except concurrent.futures.TimeoutError:
            raise GatewayTimeout(f"{op}: no reply to request {request_id} within {seconds:g}s; outcome unknown",
                                 request_id, sent=True) from None
        return reply_outcome(request_id, body, plain)

    def events(self, *prefixes: str | bytes, from_seq: int | Mapping[str, int] | None = None,  # type: ignore[override]
               timeout: float | None = None, state_file: Any = None, rcvhwm: int | None = None,
               accounts: Sequence[str] = (), durable: str | None = None) -> NatsEventStream:
        """Events of ``accounts`` (default: the client's ``accounts``, else every account heard)
        and their gateways from JetStream, each once, per gateway in seq order; see the module."""
        self._check_open()
        _no_state_file(state_file)
        return NatsEventStream(self, prefixes, from_seq, timeout, tuple(accounts), durable)

    def subscribe(self, callback: Callable[[Event], Any], *prefixes: str | bytes,  # type: ignore[override]
                  from_seq: int | Mapping[str, int] | None = None, state_file: Any = None,
                  rcvhwm: int | None = None, accounts: Sequence[str] = (),
                  durable: str | None = None) -> NatsSubscription:
        """``callback(event)`` for each event as :meth:`events` yields them, on one delivery thread."""
        self._check_open()
        _no_state_file(state_file)
        subscription = NatsSubscription(self, callback, prefixes, from_seq, tuple(accounts), durable)
        with self._subscriptions_lock:
            self._subscriptions.add(subscription)
        return subscription

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._subscriptions_lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()
        try:
            self._loop.run(self._link.close(), 5.0)
        except Exception as exc:
            logger.debug("nats close: %s", exc)
        self._loop.stop()

    def __repr__(self) -> str:
        return f"<Client nats={self.settings.where!r} {self._state()}>"


def _no_state_file(state_file: Any) -> None:
    if state_file is not None:
        raise ValueError("state_file is not used over NATS: pass durable=NAME to keep the position on the server")


class NatsEventStream(Closing):
    """Events of a JetStream consumer as a blocking iterator; made by :meth:`NatsClient.events`.

    The consumer runs on the client's loop thread and hands messages over a queue; this side
    decodes them, drops repeats and acknowledges (durable) once an event counts as delivered
    (when the next one is asked for, or the stream closes)."""

    def __init__(self, client: NatsClient, prefixes: Sequence[str | bytes], from_seq: int | Mapping[str, int] | None,
                 timeout: float | None, accounts: tuple[str, ...], durable: str | None) -> None:
        self._client = client
        self._gate = EventGate(prefixes, from_seq)
        self._idle_timeout = None if timeout is None else check_timeout(timeout, timeout)
        self._durable = durable
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._handed: Any = None
        self._closed = False
        link = client._link
        filters = client._loop.run(link.filters(accounts, client.timeout), client.timeout + 5.0)
        spec = ConsumerSpec(filters, from_seq, durable)
        self.filters = filters
        self._liveness = Liveness(link.directory, client.liveness_timeout)
        self._liveness.filters = filters
        self._notices: list[Event] = []
        self._acked: Any = None  # the last message acknowledged (durable)
        self._task = client._loop.submit(link.consume(spec, self._queue.put, self._ready.set, self._queue.qsize))

    prefixes = property(lambda self: self._gate.prefixes)
    positions = property(lambda self: dict(self._gate.positions), doc="gateway -> (epoch, last seq) taken")
    last_seq = property(lambda self: self._gate.last_seq)
    duplicates = property(lambda self: self._gate.duplicates)

    @property
    def gateway_alive(self) -> bool | None:
        """Whether this stream's gateways are heard on NATS (their bridges' health, PROTOCOL
        §18.3): False once one is silent for ``liveness_timeout`` (default 3 s) or says it is
        not connected, with a ``gateway.liveness`` notice in the stream; None until one is heard."""
        self._notices.extend(self._liveness.check(self._gate))
        return self._liveness.alive

    @property
    def subscribed(self) -> bool:
        """Whether the consumer exists: from then on no event is missed."""
        return self._ready.is_set()

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        return self._ready.wait(self._client.timeout if timeout is None else timeout)

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._closed:
            raise StopIteration
        event = self.receive(self._idle_timeout)
        if event is None:
            self.close()
            raise StopIteration
        return event

    def receive(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when ``timeout`` seconds (None: no limit) pass without one."""
        if self._closed:
            raise RuntimeError("the event stream is closed")
        self._commit()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._notices.extend(self._liveness.check(self._gate))
            if self._notices:
                return self._notices.pop(0)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:  # wake up now and then to look at the gateways' health
                message = self._queue.get(timeout=LIVENESS_POLL if remaining is None else min(remaining, LIVENESS_POLL))
            except queue.Empty:
                continue
            try:
                gateway, event = decode_message(message.subject, message.headers, message.data)
            except EventFormatError as exc:
                logger.warning("skipping a malformed event: %s", exc)
                self._acknowledge(message)
                continue
            if self._gate.admit(gateway, event):
                self._handed = message
                return event
            self._acknowledge(message)

    def _commit(self) -> None:
        message, self._handed = self._handed, None
        if message is not None:
            self._acknowledge(message)

    def _acknowledge(self, message: Any) -> None:
        if not self._durable:
            return  # an ephemeral consumer acknowledges nothing
        self._acked = message

        def ack() -> None:
            pending = _ack(message)
            if pending is not None:
                asyncio.ensure_future(pending)

        loop = self._client._loop.loop
        if loop.is_running():
            loop.call_soon_threadsafe(ack)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        message, self._handed = self._handed, None
        message = message or self._acked
        loop = self._client._loop
        if not loop.loop.is_running():
            return  # the client is closed: its consumers ended with it
        loop.loop.call_soon_threadsafe(self._task.cancel)
        if self._durable:
            # Acknowledged and confirmed before close returns: the next reader of the durable
            # starts right after the last event taken here.
            try:
                loop.run(_final_ack(self._client._link, message), self._client.timeout)
            except Exception as exc:
                logger.info("durable %s: the last acknowledgement is not confirmed (%s); its reader may see "
                            "the last event again", self._durable, exc or type(exc).__name__)


class NatsSubscription(Closing):
    """Events delivered to a callback on one thread of its own; made by :meth:`NatsClient.subscribe`."""

    def __init__(self, client: NatsClient, callback: Callable[[Event], Any], prefixes: Sequence[str | bytes],
                 from_seq: int | Mapping[str, int] | None, accounts: tuple[str, ...], durable: str | None) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self._client = client
        self._callback = callback
        self._stream = NatsEventStream(client, prefixes, from_seq, None, accounts, durable)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qmt-client-events-nats", daemon=True)
        self._thread.start()

    prefixes = property(lambda self: self._stream.prefixes)
    positions = property(lambda self: self._stream.positions)
    last_seq = property(lambda self: self._stream.last_seq)
    subscribed = property(lambda self: self._stream.subscribed)
    gateway_alive = property(lambda self: self._stream._liveness.alive)

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        return self._stream.wait_subscribed(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                event = self._stream.receive(0.05)
                if event is None:
                    continue
                try:
                    self._callback(event)
                except Exception:
                    logger.exception("event callback failed on %s seq %s", event.topic, event.seq)
        except Exception:
            logger.exception("event subscription over NATS stopped by an error")
        finally:
            self._stream.close()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with self._client._subscriptions_lock:
            self._client._subscriptions.discard(self)


# -- the asyncio client ---------------------------------------------------------------------


class AsyncNatsClient(_NatsClientBase, client_aio.AsyncClient):
    """The asyncio client over NATS; made by ``AsyncClient(nats=URL, ...)``. Use it from the one
    event loop it was first used in."""

    def __init__(self, router: str | None = None, pub: str | None = None, timeout: float = 10.0,
                 context: Any = None, *, client_key: Any = None, server_key: Any = None,
                 liveness_timeout: float | None = None, nats: str | Sequence[str] | None = None,
                 **nats_options: Any) -> None:
        if nats is None:
            raise TypeError("AsyncNatsClient needs nats=URL")
        self._init_nats(timeout, liveness_timeout, nats, nats_options)
        self._subscriptions: set[Any] = set()  # type: ignore[assignment]

    def _call(self, op: str, args: dict[str, Any], timeout: float | None, plain: bool = False) -> Awaitable[Any]:
        return self._nats_request(op, args, timeout, plain)

    async def _nats_request(self, op: str, args: dict[str, Any], timeout: float | None, plain: bool) -> Any:
        seconds = check_timeout(timeout, self.timeout)
        self._check_open()
        request_id, payload = self._encode(op, args)
        body = await self._link.request(op, args, request_id, payload, seconds)
        return reply_outcome(request_id, body, plain)

    def events(self, *prefixes: str | bytes, from_seq: int | Mapping[str, int] | None = None,  # type: ignore[override]
               timeout: float | None = None, state_file: Any = None, rcvhwm: int | None = None,
               accounts: Sequence[str] = (), durable: str | None = None) -> AsyncNatsEventStream:
        """As :meth:`NatsClient.events`, as an async iterator (``async for``)."""
        self._check_open()
        _no_state_file(state_file)
        return AsyncNatsEventStream(self, prefixes, from_seq, timeout, tuple(accounts), durable)

    def subscribe(self, callback: Callable[[Event], Any], *prefixes: str | bytes,  # type: ignore[override]
                  from_seq: int | Mapping[str, int] | None = None, state_file: Any = None,
                  rcvhwm: int | None = None, accounts: Sequence[str] = (),
                  durable: str | None = None) -> AsyncNatsSubscription:
        """``callback(event)`` (function or coroutine function) for each event, from one task."""
        self._check_open()
        _no_state_file(state_file)
        stream = AsyncNatsEventStream(self, prefixes, from_seq, None, tuple(accounts), durable)
        subscription = AsyncNatsSubscription(stream, callback, self._subscriptions.discard)
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self._link.close()

    aclose = close

    def _state(self) -> str:
        return "closed" if self._closed else "open"

    def __repr__(self) -> str:
        return f"<AsyncClient nats={self.settings.where!r} {self._state()}>"


class AsyncNatsEventStream(AsyncClosing):
    """Events of a JetStream consumer as an async iterator; made by :meth:`AsyncNatsClient.events`.
    The consumer is bound on first use (``wait_subscribed`` or the first ``receive``)."""

    def __init__(self, client: AsyncNatsClient, prefixes: Sequence[str | bytes],
                 from_seq: int | Mapping[str, int] | None, timeout: float | None, accounts: tuple[str, ...],
                 durable: str | None) -> None:
        self._client = client
        self._gate = EventGate(prefixes, from_seq)
        self._idle_timeout = None if timeout is None else check_timeout(timeout, timeout)
        self._from, self._accounts, self._durable = from_seq, accounts, durable
        self._queue: asyncio.Queue[Any] | None = None
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._handed: Any = None
        self._closed = False
        self._liveness = Liveness(client._link.directory, client.liveness_timeout)
        self._notices: list[Event] = []
        self._acked: Any = None  # the last message acknowledged (durable)

    prefixes = property(lambda self: self._gate.prefixes)
    positions = property(lambda self: dict(self._gate.positions))
    last_seq = property(lambda self: self._gate.last_seq)

    @property
    def gateway_alive(self) -> bool | None:
        """As :attr:`NatsEventStream.gateway_alive`."""
        self._notices.extend(self._liveness.check(self._gate))
        return self._liveness.alive

    async def _start(self) -> None:
        if self._task is not None:
            return
        self._queue, self._ready = asyncio.Queue(), asyncio.Event()
        link = self._client._link
        filters = await link.filters(self._accounts, self._client.timeout)
        spec = ConsumerSpec(filters, self._from, self._durable)
        self._liveness.filters = filters
        self._task = asyncio.get_running_loop().create_task(
            link.consume(spec, self._queue.put_nowait, self._ready.set, self._queue.qsize), name="qmt-nats-consumer")

    @property
    def subscribed(self) -> bool:
        return self._ready is not None and self._ready.is_set()

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        await self._start()
        assert self._ready is not None
        try:
            await asyncio.wait_for(self._ready.wait(), self._client.timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def __aiter__(self) -> AsyncNatsEventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        event = await self.receive(self._idle_timeout)
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    async def receive(self, timeout: float | None = None) -> Event | None:
        if self._closed:
            raise RuntimeError("the event stream is closed")
        await self._start()
        assert self._queue is not None
        await self._commit()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            self._notices.extend(self._liveness.check(self._gate))
            if self._notices:
                return self._notices.pop(0)
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:  # wake up now and then to look at the gateways' health
                message = await asyncio.wait_for(
                    self._queue.get(), LIVENESS_POLL if remaining is None else min(remaining, LIVENESS_POLL))
            except asyncio.TimeoutError:
                continue
            try:
                gateway, event = decode_message(message.subject, message.headers, message.data)
            except EventFormatError as exc:
                logger.warning("skipping a malformed event: %s", exc)
                await _ack_now(message, self._durable)
                continue
            if self._gate.admit(gateway, event):
                self._handed = message
                return event
            await _ack_now(message, self._durable)

    async def _commit(self) -> None:
        message, self._handed = self._handed, None
        if message is not None:
            await _ack_now(message, self._durable)
            self._acked = message

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        message, self._handed = self._handed, None
        if message is not None and self._durable:
            pending = _ack(message)
            if pending is not None:
                asyncio.ensure_future(pending)
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        """Close; a durable's last event is acknowledged and confirmed before this returns, so
        the next reader of the name starts right after it."""
        if self._closed:
            return
        message = self._handed or self._acked
        self._handed = None
        self.close()
        if self._durable and message is not None:
            try:
                await asyncio.wait_for(_final_ack(self._client._link, message), self._client.timeout)
            except Exception as exc:
                logger.info("durable %s: the last acknowledgement is not confirmed (%s); its reader may see "
                            "the last event again", self._durable, exc or type(exc).__name__)


async def _final_ack(link: NatsLink, message: Any) -> None:
    """Acknowledge ``message`` and wait for the server's confirmation (again, if it was already
    acknowledged: a second ack is harmless, and only a confirmed one proves the floor moved)."""
    if message is not None and message.reply and message.reply.startswith("$JS.ACK.") and link._nc is not None:
        await link._nc.request(message.reply, b"+ACK", timeout=5.0)
        message._ackd = True


async def _ack_now(message: Any, durable: str | None) -> None:
    pending = _ack(message) if durable else None
    if pending is not None:
        try:
            await pending
        except Exception as exc:  # the server will deliver it again; the gate drops the repeat
            logger.debug("ack failed: %s", exc)


class AsyncNatsSubscription(AsyncClosing):
    """Events delivered to a callback by one task; made by :meth:`AsyncNatsClient.subscribe`."""

    def __init__(self, stream: AsyncNatsEventStream, callback: Callable[[Event], Any],
                 on_close: Callable[[Any], None] | None = None) -> None:
        if not callable(callback):
            stream.close()
            raise TypeError(f"callback must be callable, got {callback!r}")
        self._stream = stream
        self._callback = callback
        self._on_close = on_close
        self._task = asyncio.get_running_loop().create_task(self._run(), name="qmt-client-events-nats")

    prefixes = property(lambda self: self._stream.prefixes)
    last_seq = property(lambda self: self._stream.last_seq)
    subscribed = property(lambda self: self._stream.subscribed)
    gateway_alive = property(lambda self: self._stream._liveness.alive)

    async def _run(self) -> None:
        while True:
            event = await self._stream.receive()
            if event is None:
                return
            try:
                result = self._callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("event callback failed on %s seq %s", event.topic, event.seq)

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        return await self._stream.wait_subscribed(timeout)

    @property
    def closed(self) -> bool:
        return self._stream.closed

    async def close(self) -> None:
        task = self._task
        if not task.done():
            task.cancel()
            if task is not asyncio.current_task():
                await asyncio.gather(task, return_exceptions=True)
        self._stream.close()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    aclose = close
