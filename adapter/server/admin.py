"""The gateway's own ops (``kind: gateway`` in the op table), one handler each.

Each handler runs on the I/O thread with a ``Call`` (the admitted arguments, the caller's key, its connection) and
returns the result, or raises ``ProtocolError`` for an error reply. ``HANDLERS`` covers
every gateway op of ``protocol/ops.py`` (a test checks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import __version__
from ..config import ConfigError, load_risk
from .journal import SeqExpired
from ..keys import ClientKey, KeyFileError
from ..protocol import PROTOCOL_VERSION, ProtocolError, errors, events
from .risk import HALTED, NORMAL, REDUCE_ONLY
from . import access
from .bounds import page_bytes

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger(__name__)
MAX_REPLAY_BYTES = 1 << 20  # event payload bytes per replay page: a page of 10,000 large events stays small



@dataclass(slots=True)
class Call:
    """One admitted gateway op: its arguments, who asked, and on which connection."""

    args: dict[str, Any]
    key: ClientKey
    request_id: Any
    routing_id: bytes


Handler = Callable[["Gateway", Call], Any]


def ping(gateway: Gateway, call: Call) -> dict[str, Any]:
    if call.args["publish"]:
        gateway.publish_control(events.PONG, {"id": call.request_id, "last_seq": gateway.outbox.published_seq})
    identity = {}
    if gateway.access.curve:
        identity = {"key": {"name": call.key.name, "accounts": call.key.describe_accounts(),
                            "permissions": sorted(call.key.permissions)}}
    desk = gateway.desk
    return {
        **identity,
        "server_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "backend": gateway.config.backend,
        "session_id": gateway.broker.session_id,
        "accounts": [a for a in gateway.config.accounts if access.may_use(call.key, a)],
        "last_seq": gateway.outbox.published_seq,
        "epoch": gateway.epoch(),
        "journal_errors": gateway.outbox.journal_errors,
        **desk.status(),
        "storage": {"ok": not desk.storage_problems, "failed": dict(desk.storage_problems),
                    "unjournaled": gateway.outbox.unjournaled},
        "uptime": gateway.uptime(),
        "quote_pub": gateway.quote_endpoint,
        "bounds": gateway.bounds.report(),
    }


def replay(gateway: Gateway, call: Call) -> dict[str, Any]:
    journal = gateway.journal
    assert journal is not None
    client = gateway.bounds.client_of(call.key.public_key, call.routing_id)
    wait = gateway.bounds.replay.check(client, call.args["from_seq"])  # pages not yet read stay bounded in bytes
    if wait:
        raise ProtocolError(errors.TOO_MANY_REQUESTS, f"replay: {wait}")
    try:
        page = journal.read(call.args["from_seq"], call.args["to_seq"], call.args["prefixes"], call.args["limit"],
                            access.allowed_prefixes(call.key), max_bytes=MAX_REPLAY_BYTES)
    except SeqExpired as exc:
        raise ProtocolError(errors.SEQ_EXPIRED, f"{exc}; rebuild from the snapshot op") from None
    gateway.bounds.replay.charge(client, page.next_seq, page_bytes(page.events))
    return {
        "epoch": journal.epoch,
        "first_seq": journal.first_seq,
        "last_seq": journal.last_seq,
        "next_seq": page.next_seq,
        "more": page.more,
        "events": [[topic, payload] for topic, payload in page.events],
    }


def snapshot(gateway: Gateway, call: Call) -> dict[str, Any]:
    # The view is applied as events are numbered: it is the books as of the newest seq.
    return {"epoch": gateway.epoch(), "seq": gateway.outbox.numbered_seq, **gateway.desk.view.snapshot(call.args["account_id"])}


def journal_info(gateway: Gateway, call: Call) -> dict[str, Any]:
    assert gateway.journal is not None
    return gateway.journal.info()


def order_outcomes(gateway: Gateway, call: Call) -> list[dict[str, Any]]:
    return [
        {name: getattr(record, name) for name in events.OUTCOME_FIELDS}
        for record in gateway.desk.ledger.records(call.args["account_id"])
    ]


def reload_now(gateway: Gateway) -> dict[str, Any]:
    """Read the risk limits and the keys again; if any key lost a right, drop every connection."""
    risk_config = None
    if gateway.config_path:  # checked whole before anything changes
        risk_config = load_risk(gateway.config_path)
    admitted, lost = gateway.access.reload()
    if risk_config is not None:
        gateway.risk.update(risk_config)
        log.info("risk limits reloaded from %s", gateway.config_path)
    if lost:
        # No event published from now on reaches a revoked key; commands are refused by key already.
        gateway.drop_connections_soon()
    log.info("keys reloaded: %d admitted%s", len(admitted),
             f"; {', '.join(lost)} lost rights: dropping connections" if lost else "")
    return {"admitted": admitted, "revoked": lost, "dropping_connections": bool(lost),
            "risk_limits": "reloaded" if risk_config is not None else "unchanged (no config file)"}


def reload(gateway: Gateway, call: Call) -> dict[str, Any]:
    try:
        return reload_now(gateway)
    except (KeyFileError, ConfigError) as exc:
        raise ProtocolError(errors.INVALID_ARGUMENT, f"reload: {exc}; the old keys and limits stay") from None


def _trading(state: str) -> Handler:
    def handler(gateway: Gateway, call: Call) -> dict[str, Any]:
        reason = call.args["reason"] or f"{_OP_OF[state]} by {call.key.name}"
        return gateway.desk.set_trading(state, reason, cancel_open=call.args.get("cancel_open", False))

    return handler


_OP_OF = {HALTED: "halt", REDUCE_ONLY: "reduce_only", NORMAL: "resume"}


def risk(gateway: Gateway, call: Call) -> dict[str, Any]:
    desk = gateway.desk
    accounts = [a for a in gateway.config.accounts if access.may_use(call.key, a)]
    report = desk.risk.report(accounts, desk.view.books)
    if call.key.accounts is not None:
        report["limits"].pop("default", None)
    return {"trading": desk.killswitch.as_map(), **report}


HANDLERS: dict[str, Handler] = {
    "ping": ping,
    "replay": replay,
    "snapshot": snapshot,
    "journal_info": journal_info,
    "order_outcomes": order_outcomes,
    "reload": reload,
    "halt": _trading(HALTED),
    "reduce_only": _trading(REDUCE_ONLY),
    "resume": _trading(NORMAL),
    "risk": risk,
}
