"""The client's one exception family.

Every failure of a gateway call surfaces as :class:`GatewayError` whose ``code`` is a stable
string: either a protocol error code sent by the gateway (``adapter.protocol.errors``) or one
of the client-side codes below, so a strategy can branch on ``exc.code`` without parsing text.
"""

from __future__ import annotations

from typing import Any, Final

CLIENT_TIMEOUT: Final = "client_timeout"  # no reply within the call's time-out
CLIENT_CLOSED: Final = "client_closed"  # the client was closed before or during the call
INVALID_REPLY: Final = "invalid_reply"  # the gateway's reply to this call was malformed

CLIENT_CODES: Final = (CLIENT_TIMEOUT, CLIENT_CLOSED, INVALID_REPLY)


class GatewayError(Exception):
    """A call that did not succeed: refused by the gateway or failed on the client side.

    ``code`` is the protocol error code string (e.g. ``"invalid_argument"``,
    ``"broker_timeout"``) or a client-side code (``"client_timeout"``, ``"client_closed"``,
    ``"invalid_reply"``); ``request_id`` is the id of the request it answers, when known;
    ``details`` the error's further fields (``risk_denied``: ``rule``, ``limit``, ``value``).
    """

    def __init__(self, code: str, message: str, request_id: Any = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details or {}  # further fields of the error, e.g. rule, limit, value of risk_denied

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the exception picklable (e.g. across multiprocessing) despite the custom __init__.
        return (GatewayError, (self.code, self.message, self.request_id, self.details))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, request_id={self.request_id!r})"


class GatewayTimeout(GatewayError):
    """No reply arrived within the call's time-out (code ``"client_timeout"``).

    ``sent`` tells whether the request left the client. ``sent=False`` means it never did
    (no connection to the gateway, or the client was busy with other calls), so the gateway
    cannot act on it. ``sent=True`` means the outcome is *unknown*: an order may well have
    reached the counter, so reconcile through queries or events before retrying it.
    """

    def __init__(self, message: str, request_id: Any = None, *, sent: bool = True) -> None:
        super().__init__(CLIENT_TIMEOUT, message, request_id)
        self.sent = sent

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_timeout, (self.message, self.request_id, self.sent))

    def __repr__(self) -> str:
        return f"GatewayTimeout(message={self.message!r}, request_id={self.request_id!r}, sent={self.sent!r})"


def _make_timeout(message: str, request_id: Any, sent: bool) -> GatewayTimeout:
    return GatewayTimeout(message, request_id, sent=sent)
