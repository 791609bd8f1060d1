"""Who may do what: CURVE authentication (ZAP) and per-key authorisation.

With ``curve`` on, the ZAP handler admits only listed client keys, and libzmq stamps every
message of a connection with its key (the ``User-Id`` property, the Z85 public key). The
I/O thread authorises each command and each event subscription from that property, never
from the ROUTER routing id, which the client chooses. Without ``curve`` (loopback only)
every peer is the local user with every right.

Threads: the ZAP handler runs on pyzmq's authenticator thread and only reads ``keys``,
a dict that is replaced whole on reload, never changed in place.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..config import Config
from ..keys import (
    PERMISSIONS,
    ClientKey,
    check_libzmq,
    load_client_keys,
    load_server_secret,
)
from ..protocol import event_topic, events, ops

log = logging.getLogger(__name__)

ZAP_DOMAIN = "qmt-adapter"
LOCAL = ClientKey(name="local", public_key="", accounts=None, permissions=frozenset(PERMISSIONS))
GATEWAY_PREFIX = "gateway."
REFUSAL_LOG_INTERVAL = 60.0  # seconds: a refused client retries every 100 ms; log it once a minute
# Event types that belong to an account; their topics are "<type>.<account_id>.".
ACCOUNT_EVENT_TYPES = tuple(sorted(t for t in events.EVENT_FIELDS if not t.startswith(GATEWAY_PREFIX)))


def permission_for(spec: ops.OpSpec) -> str | None:
    """The permission an op needs; None: any authenticated key (``ping``)."""
    if spec.name == "ping":
        return None
    if spec.name in ops.ADMIN_OPS:  # gateway controls and the simulator's (ops.CONTROL)
        return "admin"
    if spec.kind == ops.GATEWAY:
        return "admin" if spec.name in ops.ADMIN_OPS else "read"
    if spec.kind == ops.QUERY:
        return "read"
    if spec.kind == ops.MARKET:
        return "quote"
    return "trade"


def has_permission(key: ClientKey, permission: str) -> bool:
    """``read`` implies ``quote`` (PROTOCOL §13.3)."""
    return permission in key.permissions or (permission == "quote" and "read" in key.permissions)


def may_use(key: ClientKey, account_id: str | None) -> bool:
    return key.accounts is None or account_id in key.accounts


def allowed_prefixes(key: ClientKey) -> list[str] | None:
    """Topic prefixes a key may receive; None: every topic."""
    if "read" not in key.permissions:
        return []
    if key.accounts is None:
        return None
    return [GATEWAY_PREFIX] + [event_topic(etype, account) for account in sorted(key.accounts) for etype in ACCOUNT_EVENT_TYPES]


def narrow(prefix: str, allowed: list[str] | None) -> list[str]:
    """The subscriptions that give ``prefix``'s events, limited to ``allowed``."""
    if allowed is None:
        return [prefix]
    out = []
    for grant in allowed:
        if grant.startswith(prefix):
            out.append(grant)  # the request is wider than the grant: the grant
        elif prefix.startswith(grant):
            out.append(prefix)  # the request is inside the grant: as asked
    return sorted(set(out))


class Access:
    """The key table and the ZAP handler; owned by the gateway."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.curve = config.curve
        self.keys: dict[str, ClientKey] = {}
        self.server_public = b""
        self._server_secret = b""
        self._auth: ThreadAuthenticator | None = None
        self._refusals: dict[str, tuple[float, int]] = {}  # key -> (last logged, refused since); ZAP thread only
        # key -> until (monotonic): keys cut off for abuse (bounds.py); replaced whole by the I/O thread
        self._suspended: dict[str, float] = {}

    def start(self, context: zmq.Context[Any]) -> None:
        """Load the keys and start ZAP; must run before any socket binds."""
        if not self.curve:
            return
        check_libzmq()
        self.server_public, self._server_secret = load_server_secret(self.config.keys_dir)
        self.keys = load_client_keys(self.config.keys_dir)
        auth = ThreadAuthenticator(context, log=logging.getLogger("adapter.zap"))
        auth.start()
        auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self)
        self._auth = auth
        log.info(
            "CURVE on: server key %s, %d client key%s (%s)",
            self.server_public.decode(), len(self.keys), "" if len(self.keys) == 1 else "s",
            ", ".join(sorted(k.name for k in self.keys.values())) or "none yet",
        )

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: admit a listed key (authenticator thread)."""
        text = key.decode("ascii", "replace")
        client = self.keys.get(text)
        if client is not None and self._suspended.get(text, 0.0) > time.monotonic():
            log.debug("refused key %s: cut off for now", client.name)
            return False
        if client is None:
            now = time.monotonic()
            logged, count = self._refusals.get(text, (0.0, 0))
            if now - logged >= REFUSAL_LOG_INTERVAL:
                more = f" ({count} more refusals since the last report)" if count else ""
                log.warning("refused a connection with an unknown or revoked key %s%s", text, more)
                self._refusals[text] = (now, 0)
            else:
                self._refusals[text] = (logged, count + 1)
            if len(self._refusals) > 10_000:  # many strangers: forget, do not grow
                self._refusals.clear()
            return False
        log.debug("admitted key %s", client.name)
        return True

    def secure(self, socket: zmq.Socket[Any]) -> None:
        """Make a server socket CURVE-only with ZAP enforced; before bind."""
        if not self.curve:
            return
        socket.curve_server = True
        socket.curve_secretkey = self._server_secret
        socket.curve_publickey = self.server_public
        socket.zap_domain = ZAP_DOMAIN.encode()
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)

    def suspend(self, user_id: str | None, seconds: float) -> None:
        """Refuse new connections with this key for ``seconds`` (it was cut off for abuse)."""
        if not self.curve or not user_id:
            return
        now = time.monotonic()
        live = {k: until for k, until in self._suspended.items() if until > now}
        live[user_id] = now + seconds
        self._suspended = live  # one reference swap, as with keys

    def identify(self, user_id: str | None) -> ClientKey | None:
        """The key a message came with; None: not (or no longer) authorised."""
        if not self.curve:
            return LOCAL
        return self.keys.get(user_id) if user_id else None

    def reload(self) -> tuple[list[str], list[str]]:
        """Read the keys again; (names now admitted, names that lost any right)."""
        if not self.curve:
            return [], []
        fresh = load_client_keys(self.config.keys_dir)
        lost = sorted(
            old.name for pub, old in self.keys.items() if pub not in fresh or _narrower(fresh[pub], old)
        )
        self.keys = fresh  # one reference swap: the ZAP thread sees old or new, never half
        return sorted(k.name for k in fresh.values()), lost


def _narrower(new: ClientKey, old: ClientKey) -> bool:
    if not new.permissions >= old.permissions:
        return True
    if old.accounts is None:
        return new.accounts is not None
    return new.accounts is not None and not new.accounts >= old.accounts


def filter_accounts(rows: Iterable[dict[str, Any]], key: ClientKey) -> list[dict[str, Any]]:
    return [row for row in rows if may_use(key, row.get("account_id"))]
