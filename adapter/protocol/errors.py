"""Stable error codes of protocol v1 (listed in proto/PROTOCOL.md)."""

from __future__ import annotations

from typing import Final

INVALID_MESSAGE: Final = "invalid_message"  # not msgpack, not a map, wrong frames
UNSUPPORTED_VERSION: Final = "unsupported_version"
INVALID_REQUEST: Final = "invalid_request"  # envelope fields missing or ill-typed
UNKNOWN_OP: Final = "unknown_op"
MISSING_ARGUMENT: Final = "missing_argument"
INVALID_ARGUMENT: Final = "invalid_argument"
UNKNOWN_ARGUMENT: Final = "unknown_argument"
UNKNOWN_ACCOUNT: Final = "unknown_account"
PERMISSION_DENIED: Final = "permission_denied"  # the client's key lacks the permission or the account
BROKER_UNAVAILABLE: Final = "broker_unavailable"
BROKER_TIMEOUT: Final = "broker_timeout"
BROKER_ERROR: Final = "broker_error"
SEQ_EXPIRED: Final = "seq_expired"  # replay asked for events the journal no longer keeps
DUPLICATE_CLIENT_ORDER_ID: Final = "duplicate_client_order_id"  # same id, different order
OUTCOME_UNKNOWN: Final = "outcome_unknown"  # sent, then time-out or disconnect: being reconciled
ORDER_NOT_PLACED: Final = "order_not_placed"  # reconciliation found it never reached the counter
TOO_MANY_REQUESTS: Final = "too_many_requests"  # in-flight limit reached; nothing was sent
RISK_DENIED: Final = "risk_denied"  # a pre-trade risk rule or the kill switch refused the order
STORAGE_FAILED: Final = "storage_failed"  # the ledger could not record it: not sent, or its outcome unrecorded
INTERNAL_ERROR: Final = "internal_error"
# NATS (PROTOCOL §18)
NO_RESPONDERS: Final = "no_responders"  # no bridge serves the account's (or gateway's) command subject
WRONG_SUBJECT: Final = "wrong_subject"  # the command's account_id is not its subject's account

ALL_CODES: Final = (
    INVALID_MESSAGE,
    UNSUPPORTED_VERSION,
    INVALID_REQUEST,
    UNKNOWN_OP,
    MISSING_ARGUMENT,
    INVALID_ARGUMENT,
    UNKNOWN_ARGUMENT,
    UNKNOWN_ACCOUNT,
    PERMISSION_DENIED,
    BROKER_UNAVAILABLE,
    BROKER_TIMEOUT,
    BROKER_ERROR,
    SEQ_EXPIRED,
    DUPLICATE_CLIENT_ORDER_ID,
    OUTCOME_UNKNOWN,
    ORDER_NOT_PLACED,
    TOO_MANY_REQUESTS,
    RISK_DENIED,
    STORAGE_FAILED,
    INTERNAL_ERROR,
    NO_RESPONDERS,
    WRONG_SUBJECT,
)


class ProtocolError(Exception):
    """A request the gateway refuses; becomes an error reply with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
