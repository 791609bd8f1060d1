"""msgpack framing of requests, replies and events (protocol v1). No I/O here."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msgpack

from . import errors

PROTOCOL_VERSION = 1
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024


_packers = threading.local()  # a Packer per thread: packb builds a new one per call


def pack(obj: Any) -> bytes:
    """Encode with str as msgpack str and bytes as bin; never pickle."""
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(obj)  # type: ignore[no-any-return]


def unpack(data: bytes, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Any:
    """Decode one msgpack object; any malformation becomes ``invalid_message``."""
    if len(data) > max_size:
        raise errors.ProtocolError(
            errors.INVALID_MESSAGE, f"message of {len(data)} bytes exceeds the {max_size}-byte cap"
        )
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise errors.ProtocolError(
            errors.INVALID_MESSAGE, f"payload is not valid msgpack ({type(exc).__name__})"
        ) from None


@dataclass(frozen=True)
class Request:
    """A decoded command: its id (echoed), op name and raw arguments."""

    id: Any
    op: str
    args: dict[str, Any]


class RequestError(errors.ProtocolError):
    """A refused request, carrying the request id when it could be read."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(code, message)
        self.request_id = request_id


_ENVELOPE_KEYS = ("v", "id", "op")
_ID_TYPES = (int, str, type(None))


def decode_request(payload: bytes, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Request:
    """Parse and check the envelope of one command frame."""
    try:
        body = unpack(payload, max_size)
    except errors.ProtocolError as exc:
        raise RequestError(exc.code, exc.message) from None
    if not isinstance(body, dict):
        raise RequestError(
            errors.INVALID_MESSAGE, f"payload must be a msgpack map, got {_type_name(body)}"
        )
    request_id = body.get("id")
    if not isinstance(request_id, _ID_TYPES) or isinstance(request_id, bool):
        raise RequestError(
            errors.INVALID_REQUEST, f"id must be an integer or a string, got {_type_name(request_id)}"
        )
    version = body.get("v")
    if version is None:
        raise RequestError(errors.INVALID_REQUEST, "missing field 'v' (protocol version)", request_id)
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise RequestError(
            errors.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported; this gateway speaks v{PROTOCOL_VERSION}",
            request_id,
        )
    op = body.get("op")
    if op is None:
        raise RequestError(errors.INVALID_REQUEST, "missing field 'op'", request_id)
    if not isinstance(op, str):
        raise RequestError(
            errors.INVALID_REQUEST, f"op must be a string, got {_type_name(op)}", request_id
        )
    args = {}
    for key, value in body.items():
        if key in _ENVELOPE_KEYS:
            continue
        if not isinstance(key, str):
            raise RequestError(
                errors.INVALID_REQUEST, f"argument names must be strings, got {_type_name(key)}", request_id
            )
        args[key] = value
    return Request(request_id, op, args)


def encode_request(request_id: Any, op: str, args: dict[str, Any]) -> bytes:
    body = {"v": PROTOCOL_VERSION, "id": request_id, "op": op}
    body.update(args)
    return pack(body)


def encode_ok(request_id: Any, result: Any) -> bytes:
    return pack({"v": PROTOCOL_VERSION, "id": request_id, "ok": True, "result": result})


def encode_ok_packed(request_id: Any, packed_result: bytes) -> bytes:
    """``encode_ok`` with a result packed already (elsewhere, e.g. off the I/O thread): the same bytes."""
    head = b"\x84" + pack("v") + pack(PROTOCOL_VERSION) + pack("id") + pack(request_id) + pack("ok") + pack(True)
    return head + pack("result") + packed_result


def encode_error(request_id: Any, code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    """``details``: extra fields of the error map (``risk_denied`` carries rule, limit, value)."""
    return pack(
        {
            "v": PROTOCOL_VERSION,
            "id": request_id,
            "ok": False,
            "error": {"code": code, "message": message, **(details or {})},
        }
    )


_TOPICS: dict[tuple[str, str | None], bytes] = {}  # (type, account) -> topic frame
_TOPICS_MAX = 4096  # a few types times the served accounts; never grows past this


def event_topic(event_type: str, account_id: str | None) -> str:
    """``<type>.<account_id>.``; gateway events (``gateway.*``) have no account part.

    The closing dot makes ``order.100.`` a prefix of that account's topic only, not of
    ``order.1000.``'s: per-key event filtering relies on it.
    """
    if event_type.startswith("gateway.") or not account_id:
        return event_type
    return f"{event_type}.{account_id}."


def quote_topic(period: str, code: str) -> str:
    """``quote.<period>.<code>.`` (PROTOCOL §16); the closing dot as in ``event_topic``."""
    return f"quote.{period}.{code}."


def encode_quote(period: str, code: str, record: dict[str, Any]) -> bytes:
    """A quote PUB payload: one tick or bar as xtdata gives it (PROTOCOL §16)."""
    return pack({"code": code, "period": period, "data": [record]})


def encode_event(
    seq: int | None,
    ts: int,
    event_type: str,
    account_id: str | None,
    data: dict[str, Any],
    epoch: str,
    reconciled: bool = False,
) -> tuple[bytes, bytes]:
    """Return the two PUB frames ``[topic, payload]``; ``seq`` is None for control events.

    ``reconciled`` marks an event the gateway found in the counter's books after a
    reconnection or restart rather than from a live push; the key is present only then.
    """
    body = {
        "v": PROTOCOL_VERSION,
        "seq": seq,
        "ts": ts,
        "type": event_type,
        "account_id": account_id,
        "epoch": epoch,
        "data": data,
    }
    if reconciled:
        body["reconciled"] = True
    payload = pack(body)
    if account_id is not None and type(account_id) is not str:  # not a key to keep
        return event_topic(event_type, account_id).encode(), payload
    topic = _TOPICS.get((event_type, account_id))
    if topic is None:
        topic = event_topic(event_type, account_id).encode()
        if len(_TOPICS) < _TOPICS_MAX:
            _TOPICS[(event_type, account_id)] = topic
    return topic, payload


def _type_name(value: Any) -> str:
    return {
        dict: "map",
        list: "array",
        str: "string",
        bytes: "binary",
        int: "integer",
        float: "float",
        bool: "boolean",
        type(None): "nil",
    }.get(type(value), type(value).__name__)
