"""The gateway's own ops (``kind: gateway`` in the op table), one handler each.

Each handler runs on the I/O thread with the admitted arguments and the caller's key and
returns the result, or raises ``ProtocolError`` for an error reply. ``HANDLERS`` covers
every gateway op of ``protocol/ops.py`` (a test checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .. import __version__
from ..config import ConfigError
from ..journal import SeqExpired
from ..keys import ClientKey, KeyFileError
from ..protocol import PROTOCOL_VERSION, ProtocolError, errors, events
from ..risk import HALTED, NORMAL, REDUCE_ONLY
from . import access
from .bounds import page_bytes

if TYPE_CHECKING:
    from .gateway import Gateway

MAX_REPLAY_BYTES = 1 << 20  # event payload bytes per replay page: a page of 10,000 large events stays small

Handler = Callable[["Gateway", dict[str, Any], ClientKey, Any], Any]


def ping(gateway: Gateway, args: dict[str, Any], key: ClientKey, request_id: Any) -> dict[str, Any]:
    if args["publish"]:
        gateway.publish_control(events.PONG, {"id": request_id, "last_seq": gateway.outbox.published_seq})
    identity = {}
    if gateway.access.curve:
        identity = {"key": {"name": key.name, "accounts": key.describe_accounts(),
                            "permissions": sorted(key.permissions)}}
    desk = gateway.desk
    return {
        **identity,
        "server_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "backend": gateway.config.backend,
        "session_id": gateway.broker.session_id,
        "accounts": [a for a in gateway.config.accounts if access.may_use(key, a)],
        "last_seq": gateway.outbox.published_seq,
        "epoch": gateway.epoch(),
        "journal_errors": gateway.outbox.journal_errors,
        **desk.status(),
        "storage": {"ok": not desk.storage_problems, "failed": dict(desk.storage_problems),
                    "unjournaled": gateway.outbox.unjournaled},
        "uptime": gateway.uptime(),
        "bounds": gateway.bounds.report(),
    }


def replay(gateway: Gateway, args: dict[str, Any], key: ClientKey, request_id: Any) -> dict[str, Any]:
    journal = gateway.journal
    assert journal is not None
    client = gateway.bounds.client_of(key.public_key)
    wait = gateway.bounds.replay.check(client, args["from_seq"])  # pages not yet read stay bounded in bytes
    if wait:
        raise ProtocolError(errors.TOO_MANY_REQUESTS, f"replay: {wait}")
    try:
        page = journal.read(args["from_seq"], args["to_seq"], args["prefixes"], args["limit"],
                            access.allowed_prefixes(key), max_bytes=MAX_REPLAY_BYTES)
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


def snapshot(gateway: Gateway, args: dict[str, Any], key: ClientKey, request_id: Any) -> dict[str, Any]:
    # The view is applied as events are numbered: it is the books as of the newest seq.
    return {"epoch": gateway.epoch(), "seq": gateway.outbox.numbered_seq, **gateway.desk.view.snapshot(args["account_id"])}


def journal_info(gateway: Gateway, args: dict[str, Any], key: ClientKey, request_id: Any) -> dict[str, Any]:
    assert gateway.journal is not None
    return gateway.journal.info()


def order_outcomes(gateway: Gateway, args: dict[str, Any], key: ClientKey, request_id: Any) -> list[dict[str, Any]]:
    return [
        {name: getattr(record, name) for name in events.OUTCOME_FIELDS}
        for record in gateway.desk.ledger.records(args["account_id"])
    ]


def reload(gateway: Gateway, args: dict[str, Any], key: ClientKey, request_id: Any) -> dict[str, Any]:
    try:
        return gateway.reload_now()
    except (KeyFileError, ConfigError) as exc:
        raise ProtocolError(errors.INVALID_ARGUMENT, f"reload: {exc}; the old keys and limits stay") from None


def _trading(state: str) -> Handler:
    def handler(gateway: Gateway, args: dict[str, Any], key: ClientKey, request_id: Any) -> dict[str, Any]:
        reason = args["reason"] or f"{_OP_OF[state]} by {key.name}"
        return gateway.desk.set_trading(state, reason, cancel_open=args.get("cancel_open", False))

    return handler


_OP_OF = {HALTED: "halt", REDUCE_ONLY: "reduce_only", NORMAL: "resume"}


def risk(gateway: Gateway, args: dict[str, Any], key: ClientKey, request_id: Any) -> dict[str, Any]:
    desk = gateway.desk
    accounts = [a for a in gateway.config.accounts if access.may_use(key, a)]
    report = desk.risk.report(accounts, desk.view.books)
    if key.accounts is not None:
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
