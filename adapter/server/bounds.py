"""Per-client bounds in bytes: subscriptions, whole command messages, replay pages in flight.

Pure bookkeeping, no sockets of its own; the gateway's I/O thread asks and obeys
(PROTOCOL.md §5). Why each bound looks as it does, given what libzmq lets us see:

* Subscriptions: in XPUB manual mode libzmq stores *every* prefix a subscriber sends in a
  per-connection trie (to unsubscribe it when the subscriber leaves), granted or not, until
  that connection ends. The gateway can refuse to grant, but only ending the connection frees
  that memory, and libzmq cannot end one XPUB connection: the gateway rebinds the socket
  (everyone reconnects). So: prefixes longer than any topic drop their sender inside libzmq
  (``ZMQ_MAXMSGSIZE`` on the XPUB); only prefixes of a topic the gateway can publish are
  granted; and past ``max_subscriptions`` distinct prefixes a subscriber is cut off. Without
  CURVE subscribers cannot be told apart (no per-connection identity reaches the
  application), so they share one pool.
* Commands: libzmq hands a multipart message over only once all its frames have arrived
  (frames of an incomplete message do not count toward any high-water mark), so the whole
  message is in libzmq's memory before the gateway can look at it. The gateway reads it frame
  by frame, keeps at most ``MAX_COMMAND_FRAMES`` frames and refuses the message, copying
  nothing more.
* Replay: a ROUTER's queue is bounded in messages, and the gateway cannot see when a client
  reads. A page counts as in flight until the client continues after it (a replay from its
  ``next_seq`` or later, which only a reader of the page knows), or ``replay_hold`` seconds.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from ..protocol import event_topic, events
from .access import ACCOUNT_EVENT_TYPES, GATEWAY_PREFIX

log = logging.getLogger(__name__)

GATEWAY_EVENT_TYPES = tuple(sorted(t for t in events.EVENT_FIELDS if t.startswith(GATEWAY_PREFIX)))
# ZMTP 3.1 sends a subscription as a command frame: "\x09SUBSCRIBE" + prefix (older peers: "\x01").
SUBSCRIBE_OVERHEAD = 10
CURVE_OVERHEAD = 33  # a CURVE MESSAGE command: name, nonce, box
MIN_FRAME_CAP = 1024
# A command is [routing id, optional empty delimiter, payload]; one more frame is kept so
# that "got 2 payload frames" is still reported as such.
MAX_COMMAND_FRAMES = 4
ROUTING_ID_BYTES = 256  # libzmq routing ids are 1..255 bytes
REFUSAL_LOG_INTERVAL = 60.0  # seconds: one warning per subscriber per interval, with a count
CUT_OFF_SECONDS = 60.0  # a CURVE key cut off for its subscriptions may not reconnect for this long
MIN_PAGE_CHARGE = 4096  # bytes: an empty page still costs an entry; this bounds the entries
SWEEP_INTERVAL = 1.0  # seconds between sweeps of expired replay charges


def topics(accounts: Iterable[str]) -> frozenset[str]:
    """Every topic the gateway can publish: ``<type>.<account>.`` for the served accounts, the
    bare type of an account event without an account, and the ``gateway.*`` types."""
    served = sorted(set(accounts))
    return frozenset(
        [event_topic(etype, account) for etype in ACCOUNT_EVENT_TYPES for account in served]
        + list(ACCOUNT_EVENT_TYPES)
        + list(GATEWAY_EVENT_TYPES)
    )


class SubscriptionBounds:
    """Which subscriptions to grant, and when a subscriber must be cut off.

    ``subscriber``: the CURVE key (User-Id) or None (no CURVE: every subscriber, one pool).
    The distinct prefixes a subscriber asked for are counted whether granted or not, since
    libzmq keeps them all."""

    GRANT, REFUSE, CUT_OFF = "grant", "refuse", "cut_off"
    cut_off_seconds = CUT_OFF_SECONDS

    def __init__(self, accounts: Iterable[str], max_bytes: int, max_count: int) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count
        self._useful = frozenset(topic[:n] for topic in topics(accounts) for n in range(len(topic) + 1))
        self._held: dict[str | None, set[bytes]] = {}
        self._suspended: dict[str, float] = {}  # key -> until (monotonic)
        self._logged: dict[str | None, tuple[float, int]] = {}  # subscriber -> (last warning, refusals since)
        self.refused = 0
        self.cut_offs = 0

    @property
    def frame_cap(self) -> int:
        """``ZMQ_MAXMSGSIZE`` for the XPUB: a longer subscription drops its sender in libzmq. The
        handshake goes through the same check (a CURVE INITIATE is some 300 bytes), hence the floor."""
        return max(self.max_bytes + SUBSCRIBE_OVERHEAD + CURVE_OVERHEAD, MIN_FRAME_CAP)

    def useful(self, prefix: str) -> bool:
        """Whether ``prefix`` starts some publishable topic; no other prefix can ever match."""
        return prefix in self._useful

    def suspended(self, subscriber: str | None, now: float | None = None) -> bool:
        if subscriber is None:
            return False
        until = self._suspended.get(subscriber)
        if until is None:
            return False
        if (time.monotonic() if now is None else now) >= until:
            del self._suspended[subscriber]
            return False
        return True

    def request(self, subscriber: str | None, subscribe: bool, prefix: bytes, now: float | None = None) -> str:
        """GRANT (grant what ``useful`` lets through), REFUSE or CUT_OFF (end the connections)."""
        now = time.monotonic() if now is None else now
        held = self._held.get(subscriber)
        if not subscribe:
            if held is not None:
                held.discard(prefix)
            return self.GRANT
        if self.suspended(subscriber, now):
            return self._refuse(subscriber, "its key is cut off for now", now)
        if held is None:
            held = self._held[subscriber] = set()
        if prefix not in held and len(held) >= self.max_count:
            self.cut_offs += 1
            self._held.pop(subscriber, None)
            if subscriber is not None:
                self._suspended[subscriber] = now + CUT_OFF_SECONDS
            log.warning(
                "%s asked for more than %d subscriptions (max_subscriptions): cutting off every subscriber%s",
                _who(subscriber), self.max_count,
                f"; that key may not reconnect for {CUT_OFF_SECONDS:g} s" if subscriber is not None else
                " (without CURVE subscribers cannot be told apart)",
            )
            return self.CUT_OFF
        held.add(prefix)
        if len(prefix) > self.max_bytes:
            return self._refuse(subscriber, f"a prefix of {len(prefix)} bytes (max_subscription_bytes "
                                            f"{self.max_bytes})", now)
        if not self.useful(prefix.decode("utf-8", "replace")):
            return self._refuse(subscriber, f"prefix {prefix[:64]!r}, which starts no topic this gateway publishes", now)
        return self.GRANT

    def grantable(self, verdict: str, subscribe: bool, prefixes: Iterable[str]) -> list[str]:
        """Of the (narrowed) prefixes of a request, those to pass to libzmq's matching trie."""
        if verdict != self.GRANT:
            return []
        return [p for p in prefixes if not subscribe or self.useful(p)]

    def reset(self) -> None:
        """Every subscriber's connection has ended (a rebind): libzmq holds nothing now."""
        self._held.clear()

    def held(self, subscriber: str | None) -> int:
        return len(self._held.get(subscriber, ()))

    def _refuse(self, subscriber: str | None, why: str, now: float) -> str:
        self.refused += 1
        logged, count = self._logged.get(subscriber, (0.0, 0))
        if now - logged >= REFUSAL_LOG_INTERVAL or not logged:
            more = f" ({count} more refusals since the last report)" if count else ""
            log.warning("subscription refused from %s: %s%s", _who(subscriber), why, more)
            self._logged[subscriber] = (now, 0)
        else:
            self._logged[subscriber] = (logged, count + 1)
        return self.REFUSE


def _who(subscriber: str | None) -> str:
    return f"key {subscriber}" if subscriber is not None else "a subscriber (no CURVE)"


class _Socket(Protocol):
    def recv(self, flags: int = ..., copy: bool = ...) -> Any: ...


@dataclass
class Received:
    """One command message: the frames kept, and what the whole message held."""

    frames: list[bytes] = field(default_factory=list)
    last: Any = None  # the last frame as libzmq gave it (its metadata carries the CURVE User-Id)
    count: int = 0
    size: int = 0
    refusal: str = ""  # why the message is refused whole; "" when within the bounds

    def split(self) -> tuple[list[bytes], list[bytes]]:
        """(envelope, body): the routing id, and a REQ client's empty delimiter (mirrored in the reply)."""
        identity, body = self.frames[0], self.frames[1:]
        if body and body[0] == b"":
            return [identity, b""], body[1:]
        return [identity], body


def receive(socket: _Socket, max_bytes: int, flags: int = 0, max_frames: int = MAX_COMMAND_FRAMES) -> Received:
    """Read one multipart message a frame at a time, without copying frames past the bounds.

    Raises what ``socket.recv`` raises for the first frame (``zmq.Again`` when none waits)."""
    message = Received()
    frame = socket.recv(flags, copy=False)
    while True:
        message.last = frame
        message.count += 1
        size = len(frame.buffer)
        message.size += size
        if message.count <= max_frames and message.size <= max_bytes:
            message.frames.append(frame.bytes)
        if not frame.more:
            break
        frame = socket.recv(flags, copy=False)  # the rest is here: libzmq delivers whole messages
    if message.count > max_frames or message.size > max_bytes:
        # The routing id (and a REQ client's empty delimiter), to address the refusal.
        message.frames = message.frames[:2] if message.frames[1:2] == [b""] else message.frames[:1]
        message.refusal = (
            f"message of {message.count} frames and {message.size} bytes exceeds the bound of {max_frames} "
            f"frames and {max_bytes} bytes (routing id, optional empty delimiter, one payload frame)"
        )
    return message


class ReplayBudget:
    """Replay bytes in flight, per client and in all; ``client`` is the CURVE key or the routing id."""

    def __init__(self, client_bytes: int, total_bytes: int, hold: float) -> None:
        self.client_bytes = client_bytes
        self.total_bytes = total_bytes
        self.hold = hold
        self._pages: dict[bytes, collections.deque[tuple[float, int, int]]] = {}  # client -> (sent, next_seq, bytes)
        self._in_flight: dict[bytes, int] = {}
        self.total = 0
        self.refused = 0
        self._next_sweep = 0.0

    def in_flight(self, client: bytes) -> int:
        return self._in_flight.get(client, 0)

    def check(self, client: bytes, from_seq: int, now: float | None = None) -> str:
        """Why a replay from ``client`` must wait, or ''. Asking from a page's ``next_seq`` or
        later releases that page: the client has read it."""
        now = time.monotonic() if now is None else now
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            for other in list(self._pages):
                self._release(other, lambda sent, _next: sent + self.hold <= now)
        self._release(client, lambda sent, next_seq: next_seq <= from_seq or sent + self.hold <= now)
        mine = self.in_flight(client)
        if mine >= self.client_bytes:
            why = (f"this client has {mine} bytes of replay pages not yet continued "
                   f"(replay_client_bytes {self.client_bytes})")
        elif self.total >= self.total_bytes:
            why = (f"all clients have {self.total} bytes of replay pages not yet continued "
                   f"(replay_total_bytes {self.total_bytes})")
        else:
            return ""
        self.refused += 1
        oldest = min((pages[0][0] for pages in self._pages.values() if pages), default=now)
        wait = max(0.0, oldest + self.hold - now)
        return f"{why}; read the pages and continue from their next_seq, or retry within {wait:.0f} s"

    def charge(self, client: bytes, next_seq: int, size: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        size = max(size, MIN_PAGE_CHARGE)
        self._pages.setdefault(client, collections.deque()).append((now, next_seq, size))
        self._in_flight[client] = self.in_flight(client) + size
        self.total += size

    def _release(self, client: bytes, done: Any) -> None:
        pages = self._pages.get(client)
        if not pages:
            return
        kept = collections.deque(page for page in pages if not done(page[0], page[1]))
        freed = sum(page[2] for page in pages) - sum(page[2] for page in kept)
        self.total -= freed
        if kept:
            self._pages[client] = kept
            self._in_flight[client] -= freed
        else:
            del self._pages[client]
            self._in_flight.pop(client, None)


def page_bytes(page_events: Iterable[tuple[str, bytes]]) -> int:
    """What a replay page costs in the reply, about: its topics and payloads, a little framing."""
    return sum(len(topic) + len(payload) + 8 for topic, payload in page_events) + 256


class Bounds:
    """The gateway's bounds, made from its config; owned by the I/O thread."""

    def __init__(self, config: Any) -> None:
        self.subscriptions = SubscriptionBounds(config.accounts, config.max_subscription_bytes,
                                                config.max_subscriptions)
        self.replay = ReplayBudget(config.replay_client_bytes, config.replay_total_bytes, config.replay_hold)
        self.message_bytes = config.max_message_size + ROUTING_ID_BYTES
        self.messages_refused = 0

    def receive(self, socket: _Socket, flags: int = 0) -> Received:
        """One command message from the ROUTER, bounded (see ``receive``)."""
        message = receive(socket, self.message_bytes, flags)
        if message.refusal:
            self.messages_refused += 1
        return message

    @staticmethod
    def client_of(key_public: str, routing_id: bytes) -> bytes:
        """Whom a replay is charged to: the CURVE key, else the connection's routing id."""
        return key_public.encode() if key_public else routing_id

    def report(self) -> dict[str, int]:
        """For ``ping``: what the bounds refused, and the replay bytes now counted in flight."""
        return {
            "subscriptions_refused": self.subscriptions.refused,
            "subscribers_cut_off": self.subscriptions.cut_offs,
            "messages_refused": self.messages_refused,
            "replays_refused": self.replay.refused,
            "replay_bytes_in_flight": self.replay.total,
        }
