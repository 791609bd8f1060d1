"""The gateway's sockets: the ROUTER for commands, the XPUB for events, their monitors.

Made on the control thread, then owned by the I/O thread alone (docs/architecture.md §2).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

import zmq

from ..config import Config
from ..monitors import close_monitor
from . import access as rights
from .access import Access
from .bounds import SubscriptionBounds

log = logging.getLogger(__name__)


@dataclass
class Sockets:
    context: zmq.Context
    router: zmq.Socket
    pub: zmq.Socket
    router_endpoint: str
    pub_endpoint: str
    quotes: zmq.Socket  # the quote PUB: owned by the quote thread, not the I/O thread
    quotes_endpoint: str
    monitors: list[tuple[zmq.Socket, str]] = field(default_factory=list)  # (monitor, "router" | "pub")

    def close_monitors(self) -> None:
        for monitor, name in self.monitors:
            close_monitor(self.router if name == "router" else self.pub, monitor)


def bind(config: Config, access: Access, subscription_frame_cap: int, monitored: bool) -> Sockets:
    """Bind both sockets with their security and bounds; ZAP is up before either binds."""
    context = zmq.Context()
    try:
        access.start(context)
    except BaseException:
        context.term()
        raise
    router = context.socket(zmq.ROUTER)
    # XPUB in manual mode: the I/O thread grants each subscription from the subscriber's key.
    pub = context.socket(zmq.XPUB)
    quotes = context.socket(zmq.XPUB)
    try:
        pub.setsockopt(zmq.XPUB_MANUAL, 1)
        pub.setsockopt(zmq.MAXMSGSIZE, subscription_frame_cap)  # a longer prefix drops its sender
        access.secure(router)
        access.secure(pub)
        router.linger = 0
        router.setsockopt(zmq.MAXMSGSIZE, config.max_message_size)
        router.sndhwm = config.router_hwm  # a client that stops reading loses replies, not our memory
        router.bind(config.router)
        pub.linger = 0
        pub.sndhwm = config.pub_hwm
        pub.bind(config.pub)
        quotes.setsockopt(zmq.XPUB_MANUAL, 1)
        quotes.setsockopt(zmq.MAXMSGSIZE, subscription_frame_cap)
        access.secure(quotes)
        quotes.linger = 0
        quotes.sndhwm = config.quote_hwm  # latest-value data: a slow subscriber loses old quotes
        bind_quotes(quotes, config)
        sockets = Sockets(context, router, pub, router.getsockopt_string(zmq.LAST_ENDPOINT),
                          pub.getsockopt_string(zmq.LAST_ENDPOINT), quotes,
                          quotes.getsockopt_string(zmq.LAST_ENDPOINT))
        if monitored:
            events_mask = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
            sockets.monitors = [(router.get_monitor_socket(events_mask), "router"),
                                (pub.get_monitor_socket(events_mask), "pub")]
        return sockets
    except BaseException:
        router.close()
        pub.close()
        quotes.close()
        access.stop()
        context.term()
        raise


def bind_quotes(socket: zmq.Socket, config: Config) -> None:
    """The quote PUB at ``quote_pub``, else at the PUB's port + 1; when that port is taken, at
    any free port of the same host (clients learn it from ``ping``'s ``quote_pub``)."""
    endpoint = config.quote_endpoint()
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        if config.quote_pub or exc.errno != zmq.EADDRINUSE:
            raise
        fallback = endpoint.rpartition(":")[0] + ":*"
        log.warning("quote PUB: %s is in use; listening at a free port instead (ping reports it)", endpoint)
        socket.bind(fallback)


def rebind(socket: zmq.Socket, endpoint: str) -> None:
    """Close every connection of ``socket`` by unbinding and binding again: libzmq cannot
    close one peer's. Clients reconnect at once and pass ZAP with the keys now in force."""
    socket.unbind(endpoint)
    for attempt in range(50):  # the old listener closes asynchronously
        try:
            socket.bind(endpoint)
            return
        except zmq.ZMQError:
            if attempt == 49:
                raise
            time.sleep(0.02)


def peer_changes(monitor: zmq.Socket) -> int:
    """Connections made minus connections lost, from a socket monitor's queued events."""
    from zmq.utils.monitor import recv_monitor_message

    change = 0
    while monitor.poll(0):
        event = recv_monitor_message(monitor)["event"]
        change += 1 if event == zmq.EVENT_HANDSHAKE_SUCCEEDED else -1
    return change


@dataclass(slots=True)
class SubscriptionRequest:
    subscribe: bool  # False: an unsubscription
    prefix: bytes
    subscriber: str | None  # the subscriber's CURVE key (User-Id), if any


def subscription_requests(socket: zmq.Socket, limit: int, curve: bool) -> Iterator[SubscriptionRequest]:
    """The (un)subscriptions waiting on an XPUB in manual mode, at most ``limit``."""
    for _ in range(limit):
        try:
            frame = socket.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        data = frame.bytes
        if not data or data[0] not in (0, 1):
            continue
        subscriber = user_id(frame)
        if curve and subscriber is None:
            continue  # libzmq's own notice that a subscriber left; its subscriptions are gone already
        yield SubscriptionRequest(data[0] == 1, data[1:], subscriber)


def grant_subscriptions(pub: zmq.Socket, endpoint: str, access: Access, bounds: SubscriptionBounds,
                        limit: int) -> None:
    """Grant each waiting (un)subscription what the subscriber's key may see (XPUB manual mode),
    within the per-key bounds; a key past them is cut off by re-binding the PUB."""
    for request in subscription_requests(pub, limit, access.curve):
        subscriber = request.subscriber
        key = access.identify(subscriber)
        allowed = rights.allowed_prefixes(key) if key is not None else []
        prefix = request.prefix.decode("utf-8", "replace")
        option = zmq.SUBSCRIBE if request.subscribe else zmq.UNSUBSCRIBE
        verdict = bounds.request(subscriber, request.subscribe, request.prefix)
        if verdict == bounds.CUT_OFF:  # only ending the connections frees what libzmq keeps of them
            access.suspend(subscriber, bounds.cut_off_seconds)
            rebind(pub, endpoint)
            bounds.reset()
            return
        for granted in bounds.grantable(verdict, request.subscribe, rights.narrow(prefix, allowed)):
            pub.setsockopt(option, granted.encode())
        if key is not rights.LOCAL:
            log.debug("subscription %r from %s", prefix, key.name if key else "an unknown key")


def user_id(frame: zmq.Frame) -> str | None:
    """The CURVE key libzmq authenticated this message's connection with, if any."""
    try:
        value = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    return value if isinstance(value, str) else None
