"""The NATS contract (PROTOCOL §18): subject names, headers and message ids, in one place.

Both sides use these: the bridge (``qmt-adapter bridge``, beside each gateway) and the clients
that reach gateways through NATS. Payloads are the gateway's own: a command is the ROUTER's
request map, a reply the ROUTER's reply, an event the PUB's event payload (msgpack, PROTOCOL §2-§4).
"""

from __future__ import annotations

import re

STREAM = "QMT_EVENTS"  # the JetStream stream every bridge publishes into (created if missing)
EVENTS = "qmt.evt"  # qmt.evt.<account>.<type>, gateway events qmt.evt._gw.<gateway>.<type>
COMMANDS = "qmt.cmd"  # qmt.cmd.<account>; gateway-wide ops qmt.cmd._gw.<gateway>
HEALTH = "qmt.health"  # qmt.health.<gateway>: the bridge's liveness (core NATS, not journaled)
GATEWAY_TOKEN = "_gw"

# Headers of every event message in the stream.
MSG_ID = "Nats-Msg-Id"  # "<epoch>:<seq>": JetStream drops a second publish of the same event
GATEWAY = "Qmt-Gateway"  # the gateway's name (bridge --name): which gateway's seq this is
EPOCH = "Qmt-Epoch"  # the gateway journal's epoch (PROTOCOL §4)
SEQ = "Qmt-Seq"  # the gateway's event seq, decimal

# A token of a subject: no dots, spaces or wildcards (NATS), and not empty.
_TOKEN = re.compile(r"[^.\s*>]+")


def check_token(value: str, what: str) -> str:
    """``value`` if it can stand as one subject token, else ValueError naming ``what``."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value) or value == GATEWAY_TOKEN:
        raise ValueError(f"{what} {value!r} cannot be a NATS subject token (no dots, spaces, * or >)")
    return value


def event_subject(event_type: str, account_id: str | None, gateway: str) -> str:
    """Where one event goes: an account's events under the account, the rest under the gateway.
    Event types keep their dots (``gateway.storage`` -> ``qmt.evt._gw.<gateway>.gateway.storage``)."""
    if account_id and not event_type.startswith("gateway."):
        return f"{EVENTS}.{account_id}.{event_type}"
    return f"{EVENTS}.{GATEWAY_TOKEN}.{gateway}.{event_type}"


def account_events(account_id: str) -> str:
    """The filter for every event of one account."""
    return f"{EVENTS}.{account_id}.>"


def gateway_events(gateway: str) -> str:
    """The filter for one gateway's own events (connection, trading state, storage, ...)."""
    return f"{EVENTS}.{GATEWAY_TOKEN}.{gateway}.>"


def command_subject(account_id: str) -> str:
    return f"{COMMANDS}.{account_id}"


def gateway_command_subject(gateway: str) -> str:
    return f"{COMMANDS}.{GATEWAY_TOKEN}.{gateway}"


def queue_group(account_id: str) -> str:
    """Bridges serving one account share a queue group: one of them answers, a standby takes over."""
    return f"qmt-{account_id}"


def health_subject(gateway: str) -> str:
    return f"{HEALTH}.{gateway}"


def msg_id(epoch: str, seq: int) -> str:
    return f"{epoch}:{seq}"
