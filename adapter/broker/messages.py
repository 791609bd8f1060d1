"""What the broker thread and xtquant's callback thread hand to the I/O thread, as types.

Each is posted to the gateway's ``Inbox`` and handled on the I/O thread only
(docs/architecture.md §2). ``token`` names the command the gateway handed to the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from ..protocol.events import to_map


@dataclass(slots=True)
class Pushed:
    """A counter push (order, trade, position, asset, account status, order/cancel error)."""

    event_type: str
    account_id: str | None
    data: dict[str, Any]
    ts: int


@dataclass(slots=True)
class Responded:
    """An async order or cancel response; ``token``/``kind`` when it answers a command of ours."""

    token: int | None
    kind: str | None
    event_type: str
    account_id: str | None
    data: dict[str, Any]
    ts: int


@dataclass(slots=True)
class Sent:
    """xtquant took an order or cancel and numbered it ``seq``."""

    token: int
    kind: str
    seq: int


@dataclass(slots=True)
class Answered:
    """A query's result, converted to wire records (or ``Records``, converted later)."""

    token: int
    result: Any


@dataclass(slots=True)
class Records:
    """A client's list query (a day's orders or trades) as xtquant's own objects: converted
    where the answer is encoded, off xtquant's callback thread, which carries every push and
    response too. The objects are made for this answer alone, so another thread may read them."""

    objects: list[Any]
    fields: tuple[str, ...]

    def maps(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        fields = self.fields
        return [to_map(obj, fields) for obj in self.objects[start:stop]]


@dataclass(slots=True)
class Failed:
    """The broker call for ``token`` failed before or instead of an answer."""

    token: int
    code: str
    message: str


@dataclass(slots=True)
class Books:
    """An account's books read from the counter, to reconcile against (after a (re)connect)."""

    account_id: str
    books: dict[str, Any]


@dataclass(slots=True)
class Connection:
    connected: bool
    reason: str
    ts: int


BrokerMessage = Union[Pushed, Responded, Sent, Answered, Failed, Books, Connection]
