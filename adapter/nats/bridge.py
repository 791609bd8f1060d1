"""The NATS bridge (``qmt-adapter bridge``, PROTOCOL §18): one gateway on NATS with JetStream.

The bridge is a client of its gateway like any other (ROUTER for commands, PUB for events), so
the gateway stays as it is. Three jobs:

- events: the gateway's journal is read page by page with ``replay`` (the exact payload bytes,
  every seq once, in order) and each event is published into the JetStream stream with
  ``Nats-Msg-Id`` = ``<epoch>:<seq>``. The PUB is only a doorbell: any message on it (an event
  or a heartbeat) says "read again". A publish is acked before the next one is sent, so the
  stream holds one gateway's events in seq order; on start the bridge resumes after the last seq
  the stream holds for this gateway in the journal's current epoch.
- commands: ``qmt.cmd.<account>`` (queue group per account) and ``qmt.cmd._gw.<gateway>`` are
  forwarded to the ROUTER as they are, the reply bytes sent back as they are.
- health: ``qmt.health.<gateway>`` about every second.

Thread rule: everything runs on the one asyncio loop thread of :func:`run_bridge` (the NATS
client's callbacks, the ZeroMQ sockets, the follower); nothing else touches the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from adapter.keys import CurveKeys, apply_client_curve
from adapter.protocol import PROTOCOL_VERSION, ProtocolError, encode_error, errors, pack, unpack
from adapter.protocol.codec import DEFAULT_MAX_MESSAGE_SIZE, RequestError, decode_request

from . import subjects

logger = logging.getLogger(__name__)

MAX_REPLY_SIZE = 1 << 30  # the gateway is trusted; a day's orders can be large
PAGE_LIMIT = 1000  # events per replay page
DOORBELL_WAIT = 1.0  # seconds: read the journal again at least this often, doorbell or not
HEALTH_INTERVAL = 1.0
PUBLISH_TIMEOUT = 5.0  # seconds to wait for one JetStream ack before trying it again
STOP_GRACE = 10.0  # seconds a stopping bridge may take before it exits regardless
RETRY_PAUSE = 0.5  # seconds between attempts while the gateway or NATS is away
OWN_CALL_TIMEOUT = 5.0  # the bridge's own ping / replay / journal_info


@dataclass
class BridgeConfig:
    nats: str  # one URL or several, comma-separated
    router: str
    pub: str
    name: str
    stream: str = subjects.STREAM
    replicas: int = 1
    max_age: float = 0.0  # seconds; 0: no limit
    max_bytes: int = -1  # -1: no limit
    duplicate_window: float = 600.0  # seconds; must cover a bridge restart
    user: str | None = None
    password: str | None = None
    creds: str | None = None  # a .creds file (JWT + NKey seed)
    nkey_seed: str | None = None  # a file holding an NKey seed
    tls_ca: str | None = None
    curve: CurveKeys | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE  # the gateway's; a larger command is refused here
    max_inflight: int = 1000  # commands forwarded and not answered yet
    command_timeout: float = 60.0  # seconds a forwarded command may wait for its reply
    extra: dict[str, Any] = field(default_factory=dict)


class _Router:
    """Commands to the gateway's ROUTER over a few DEALERs, replies matched by request id.

    Requests from different NATS clients can carry the same id; each is sent on a DEALER that
    has no request of that id in flight, so the bytes travel unchanged both ways."""

    def __init__(self, context: zmq.asyncio.Context, endpoint: str, curve: CurveKeys | None, max_inflight: int) -> None:
        self._context = context
        self._endpoint = endpoint
        self._curve = curve
        self._sockets: list[Any] = []
        self._pending: list[dict[Any, asyncio.Future[bytes]]] = []
        self._readers: list[asyncio.Task[None]] = []
        self.slots = asyncio.Semaphore(max_inflight)
        self._own_id = 0

    def _socket_for(self, request_id: Any) -> int:
        for index, pending in enumerate(self._pending):
            if request_id not in pending:
                return index
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        apply_client_curve(socket, self._curve)
        socket.connect(self._endpoint)
        self._sockets.append(socket)
        self._pending.append({})
        index = len(self._sockets) - 1
        self._readers.append(asyncio.get_running_loop().create_task(self._read(index)))
        return index

    async def _read(self, index: int) -> None:
        socket, pending = self._sockets[index], self._pending[index]
        while True:
            frames = await socket.recv_multipart()
            payload = frames[-1]
            try:
                body = unpack(payload, max_size=MAX_REPLY_SIZE)
                request_id = body["id"]
            except (ProtocolError, TypeError, KeyError):
                logger.warning("dropping an unreadable reply from the gateway (%d bytes)", len(payload))
                continue
            future = pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(payload)

    async def forward(self, request_id: Any, payload: bytes, timeout: float) -> bytes:
        """The gateway's reply bytes; asyncio.TimeoutError when none comes in ``timeout`` s."""
        index = self._socket_for(request_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[index][request_id] = future
        try:
            await asyncio.wait_for(self._sockets[index].send(payload), timeout)
            return await asyncio.wait_for(future, timeout)
        finally:
            if self._pending[index].get(request_id) is future:
                del self._pending[index][request_id]

    async def call(self, op: str, args: dict[str, Any], timeout: float = OWN_CALL_TIMEOUT) -> Any:
        """The bridge's own call: the result, or ProtocolError with the gateway's code."""
        self._own_id += 1
        request_id = f"bridge-{self._own_id}"
        payload = pack({"v": PROTOCOL_VERSION, "id": request_id, "op": op, **args})
        body = unpack(await self.forward(request_id, payload, timeout), max_size=MAX_REPLY_SIZE)
        if body.get("ok") is True:
            return body.get("result")
        error = body.get("error") or {}
        raise ProtocolError(str(error.get("code", errors.INTERNAL_ERROR)), str(error.get("message", "")))

    def close(self) -> None:
        for task in self._readers:
            task.cancel()
        for socket in self._sockets:
            socket.close(linger=0)


class Bridge:
    """One gateway on NATS. ``await run()`` until cancelled; all on the calling loop."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        subjects.check_token(config.name, "gateway name (--name)")
        self.accounts: list[str] = []
        self.epoch: str | None = None
        self.last_seq = 0  # the last seq acked by JetStream
        self.connected = False  # the gateway's counter connection, from the last ping
        self.gateway_up = False
        self._nc: Any = None
        self._js: Any = None
        self._context = zmq.asyncio.Context()
        self._router = _Router(self._context, config.router, config.curve, config.max_inflight)
        self._doorbell = asyncio.Event()
        self._subscriptions: dict[str, Any] = {}

    # ---- NATS ----

    async def _connect_nats(self) -> None:
        import nats

        cfg = self.config
        options: dict[str, Any] = {
            "servers": [url.strip() for url in cfg.nats.split(",") if url.strip()],
            "name": f"qmt-bridge-{cfg.name}",
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": RETRY_PAUSE,
            "connect_timeout": 2,
            "allow_reconnect": True,
            "error_cb": self._nats_error,
            "disconnected_cb": self._nats_disconnected,
            "reconnected_cb": self._nats_reconnected,
        }
        if cfg.user is not None:
            options["user"], options["password"] = cfg.user, cfg.password
        if cfg.creds:
            options["user_credentials"] = cfg.creds
        if cfg.nkey_seed:
            options["nkeys_seed"] = cfg.nkey_seed
        if cfg.tls_ca:
            options["tls"] = ssl.create_default_context(cafile=cfg.tls_ca)
        options.update(cfg.extra)
        # With max_reconnect_attempts -1, nats-py also keeps trying a first connection (reported
        # through error_cb): a bridge started before its leaf node or cluster waits for it.
        self._nc = await nats.connect(**options)
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT)

    async def _nats_error(self, exc: Exception) -> None:
        logger.warning("NATS: %s", exc)

    async def _nats_disconnected(self) -> None:
        logger.warning("NATS connection lost; reconnecting")

    async def _nats_reconnected(self) -> None:
        logger.info("NATS connection back (%s)", self._nc.connected_url.netloc if self._nc else "?")

    async def _ensure_stream(self) -> None:
        from nats.js import api
        from nats.js.errors import NotFoundError

        cfg = self.config
        try:
            await self._js.stream_info(cfg.stream)
            return
        except NotFoundError:
            pass
        config = api.StreamConfig(
            name=cfg.stream,
            subjects=[f"{subjects.EVENTS}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            num_replicas=cfg.replicas,
            max_age=cfg.max_age or None,
            max_bytes=cfg.max_bytes,
            duplicate_window=cfg.duplicate_window,
        )
        await self._js.add_stream(config)  # the same config from two bridges at once is accepted
        logger.info("created stream %s (replicas %d)", cfg.stream, cfg.replicas)

    async def _stream_position(self) -> tuple[str | None, int]:
        """(epoch, seq) of the newest event of this gateway the stream holds; (None, 0) if none."""
        from nats.js.errors import NotFoundError

        filters = [subjects.gateway_events(self.config.name)] + [subjects.account_events(a) for a in self.accounts]
        best: tuple[int, str | None, int] = (0, None, 0)  # (stream seq, epoch, gateway seq)
        for subject in filters:
            try:
                msg = await self._js.get_last_msg(self.config.stream, subject)
            except NotFoundError:
                continue
            headers = msg.headers or {}
            if headers.get(subjects.GATEWAY) != self.config.name:
                continue  # the account was served by another gateway then
            if (msg.seq or 0) > best[0]:
                best = (msg.seq or 0, headers.get(subjects.EPOCH), int(headers.get(subjects.SEQ, "0")))
        return best[1], best[2]

    # ---- events ----

    async def _doorbell_loop(self) -> None:
        sub = self._context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        apply_client_curve(sub, self.config.curve)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 1000)  # only a wake-up: losing some costs nothing
        sub.connect(self.config.pub)
        try:
            while True:
                await sub.recv_multipart()
                self._doorbell.set()
        finally:
            sub.close(linger=0)

    async def _start_cursor(self, epoch: str) -> int:
        stream_epoch, stream_seq = await self._stream_position()
        if stream_epoch == epoch and stream_seq > 0:
            logger.info("resuming after seq %d of epoch %s (the stream's last)", stream_seq, epoch)
            self.last_seq = stream_seq
            return stream_seq + 1
        info = await self._router.call("journal_info", {})
        first = max(int(info.get("first_seq") or 1), 1)
        logger.info("epoch %s new to the stream: publishing from the journal's first seq %d", epoch, first)
        return first

    async def _follow(self) -> None:
        cursor: int | None = None
        while True:
            try:
                if cursor is None:
                    self.epoch = str((await self._router.call("ping", {}))["epoch"])
                    cursor = await self._start_cursor(self.epoch)
                self._doorbell.clear()
                page = await self._router.call("replay", {"from_seq": cursor, "limit": PAGE_LIMIT})
            except ProtocolError as exc:
                if exc.code == errors.SEQ_EXPIRED:
                    logger.warning("events the stream lacks are gone from the journal: %s", exc.message)
                    with contextlib.suppress(asyncio.TimeoutError, ProtocolError):
                        info = await self._router.call("journal_info", {})
                        cursor = max(int(info.get("first_seq") or 1), 1)
                        continue
                    await asyncio.sleep(RETRY_PAUSE)
                    continue
                logger.warning("replay refused: %s %s", exc.code, exc.message)
                await asyncio.sleep(RETRY_PAUSE)
                continue
            except asyncio.TimeoutError:
                await asyncio.sleep(RETRY_PAUSE)  # the gateway is away; the cursor stays
                continue
            if page.get("epoch") != self.epoch:
                logger.warning("the gateway's journal epoch changed (%s -> %s)", self.epoch, page.get("epoch"))
                cursor = None
                continue
            for topic, payload in page.get("events") or []:
                await self._publish(topic, payload)
            cursor = int(page["next_seq"])
            if not page.get("more"):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._doorbell.wait(), DOORBELL_WAIT)

    async def _publish(self, topic: str, payload: bytes) -> None:
        body = unpack(payload, max_size=max(len(payload), 1))
        seq, epoch = int(body["seq"]), str(body.get("epoch") or self.epoch)
        account = body.get("account_id")
        subject = subjects.event_subject(str(body["type"]), None if account is None else str(account), self.config.name)
        headers = {
            subjects.MSG_ID: subjects.msg_id(epoch, seq),
            subjects.GATEWAY: self.config.name,
            subjects.EPOCH: epoch,
            subjects.SEQ: str(seq),
        }
        while True:  # acked before the next one: the stream keeps the seq order
            try:
                await self._js.publish(subject, payload, timeout=PUBLISH_TIMEOUT, headers=headers)
                self.last_seq = seq
                return
            except Exception as exc:  # nats raises timeouts, no-responders, connection errors
                logger.warning("publishing seq %d to %s failed (%s); trying again", seq, subject, type(exc).__name__)
                await asyncio.sleep(RETRY_PAUSE)

    # ---- commands ----

    async def _serve_command(self, msg: Any, account: str | None) -> None:
        payload: bytes = msg.data
        if not msg.reply:
            return
        try:
            request = decode_request(payload, self.config.max_message_size)
        except RequestError as exc:
            await msg.respond(encode_error(exc.request_id, exc.code, exc.message))
            return
        given = request.args.get("account_id")
        if account is not None and str(given) != account:
            await msg.respond(encode_error(
                request.id, errors.WRONG_SUBJECT,
                f"account_id {given!r} does not match the subject's account {account!r} ({msg.subject})"))
            return
        if account is None and given is not None:
            await msg.respond(encode_error(
                request.id, errors.WRONG_SUBJECT,
                f"op {request.op!r} names account_id {given!r}: send it on {subjects.command_subject(str(given))}"))
            return
        if self._router.slots.locked():
            await msg.respond(encode_error(
                request.id, errors.TOO_MANY_REQUESTS,
                f"the bridge has max_inflight={self.config.max_inflight} commands waiting; nothing was sent"))
            return
        async with self._router.slots:
            try:
                reply = await self._router.forward(request.id, payload, self.config.command_timeout)
            except asyncio.TimeoutError:
                return  # no reply: the requester times out, as with a silent gateway over ZeroMQ
        await msg.respond(reply)

    async def _subscribe(self, accounts: list[str]) -> None:
        wanted: dict[str, tuple[str | None, str]] = {
            subjects.command_subject(a): (a, subjects.queue_group(a)) for a in accounts}
        gw = subjects.gateway_command_subject(self.config.name)
        wanted[gw] = (None, f"qmt-gw-{self.config.name}")
        for subject in list(self._subscriptions):
            if subject not in wanted:
                await self._subscriptions.pop(subject).unsubscribe()
                logger.info("no longer serving %s", subject)
        for subject, (account, queue) in wanted.items():
            if subject in self._subscriptions:
                continue

            async def handle(msg: Any, account: str | None = account) -> None:
                # Each command in its own task: a slow order never holds up the others.
                asyncio.get_running_loop().create_task(self._serve_command(msg, account))

            self._subscriptions[subject] = await self._nc.subscribe(subject, queue=queue, cb=handle)
            logger.info("serving %s (queue %s)", subject, queue)

    # ---- health ----

    async def _health(self) -> None:
        while True:
            try:
                result = await self._router.call("ping", {}, timeout=HEALTH_INTERVAL * 2)
                self.gateway_up, self.connected = True, bool(result.get("connected"))
                accounts = [str(a) for a in result.get("accounts") or []]
                if accounts != self.accounts:
                    self.accounts = accounts
                    await self._subscribe(accounts)
            except (asyncio.TimeoutError, ProtocolError):
                self.gateway_up = self.connected = False
            report = {
                "gateway": self.config.name, "accounts": self.accounts, "router": self.config.router,
                "last_seq": self.last_seq, "epoch": self.epoch, "connected": self.connected and self.gateway_up,
                "ts": time.time_ns(),
            }
            with contextlib.suppress(Exception):  # NATS away: the next one goes out when it is back
                await self._nc.publish(subjects.health_subject(self.config.name), pack(report))
            await asyncio.sleep(HEALTH_INTERVAL)

    # ---- the whole ----

    async def _wait_for_gateway(self) -> None:
        while True:
            try:
                result = await self._router.call("ping", {}, timeout=2.0)
            except asyncio.TimeoutError:
                logger.warning("no answer from the gateway at %s yet", self.config.router)
                continue
            self.accounts = [str(a) for a in result.get("accounts") or []]
            self.epoch = str(result.get("epoch"))
            self.gateway_up, self.connected = True, bool(result.get("connected"))
            for account in self.accounts:
                subjects.check_token(account, "account id")
            return

    async def run(self) -> None:
        await self._connect_nats()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._wait_for_gateway()
            while True:
                try:
                    await self._ensure_stream()
                    break
                except Exception as exc:  # JetStream not ready yet (a cluster electing its leader)
                    logger.warning("stream %s not ready: %s", self.config.stream, exc)
                    await asyncio.sleep(RETRY_PAUSE)
            await self._subscribe(self.accounts)
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(self._doorbell_loop()), loop.create_task(self._follow()),
                     loop.create_task(self._health())]
            logger.info("bridge %s: gateway %s, accounts %s, NATS %s", self.config.name, self.config.router,
                        ",".join(self.accounts), self.config.nats)
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            nc = self._nc
            if nc is not None and not nc.is_closed:
                # drain only a live connection; while nats-py is reconnecting, close it. Neither is
                # waited for past 2 s (a cancelled drain may not end).
                ending = asyncio.ensure_future(nc.drain() if nc.is_connected else nc.close())
                await asyncio.wait({ending}, timeout=2.0)
            self._router.close()
            self._context.term()


def _give_up() -> None:
    logger.error("the bridge did not stop within %.0f s of the signal; exiting now", STOP_GRACE)
    logging.shutdown()
    os._exit(1)


def run_bridge(config: BridgeConfig) -> None:
    """Run until SIGINT / SIGTERM, on this thread's own event loop."""
    import signal

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        def stop() -> None:
            task.cancel()
            # Whatever a library does with the cancellation, a service manager's stop ends the process.
            loop.call_later(STOP_GRACE, _give_up)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows: KeyboardInterrupt instead
                loop.add_signal_handler(sig, stop)
        with contextlib.suppress(asyncio.CancelledError):
            await Bridge(config).run()

    asyncio.run(main())
