"""Protocol v1: envelope, op table, codec and error codes. Pure: no sockets, no xtquant."""

from . import errors, events, mapping, ops
from .codec import (
    PROTOCOL_VERSION,
    Request,
    RequestError,
    decode_request,
    encode_error,
    encode_event,
    encode_ok,
    encode_ok_packed,
    encode_quote,
    encode_request,
    event_topic,
    pack,
    quote_topic,
    unpack,
)
from .errors import ProtocolError

# The gateway's default endpoints (loopback): clients and the server's configuration share them.
DEFAULT_ROUTER = "tcp://127.0.0.1:5555"
DEFAULT_PUB = "tcp://127.0.0.1:5556"

__all__ = [
    "DEFAULT_PUB",
    "DEFAULT_ROUTER",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "Request",
    "RequestError",
    "decode_request",
    "encode_error",
    "encode_event",
    "encode_ok",
    "encode_ok_packed",
    "encode_quote",
    "encode_request",
    "errors",
    "event_topic",
    "events",
    "mapping",
    "ops",
    "pack",
    "quote_topic",
    "unpack",
]
