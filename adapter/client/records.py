"""Result and event values handed to strategy code.

The wire carries xttype objects as plain msgpack maps. :class:`Record` gives them back the
attribute access strategies already write against xtquant (``asset.cash``,
``order.order_status``) without a class per xttype, so a field the gateway adds later is
readable without a client upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from adapter.protocol import PROTOCOL_VERSION, ProtocolError, unpack


class Record:
    """A read-only view of one result or event map, with attribute access.

    Attribute names are the xttype field names. Nested maps come back as Records and lists of
    maps as lists of Records. ``record["field"]``, ``"field" in record``, ``record.get(...)``,
    ``record.keys()`` and ``dict(record)`` work as for a mapping; :meth:`to_dict` returns an
    independent plain copy. Two Records are equal when their fields are.
    """

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        merged: dict[str, Any] = dict(data or {})
        merged.update(fields)
        object.__setattr__(self, "_data", merged)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, i.e. for field names.
        if name.startswith("__") or name == "_data":
            raise AttributeError(name)
        try:
            return _wrap(self._data[name])
        except KeyError:
            fields = ", ".join(self._data) or "none"
            raise AttributeError(f"record has no field {name!r} (fields: {fields})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Record is read-only; use to_dict() for a mutable copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Record is read-only; use to_dict() for a mutable copy")

    def __getitem__(self, name: str) -> Any:
        return _wrap(self._data[name])

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._data))

    def keys(self) -> Any:
        """The field names, in wire order."""
        return self._data.keys()

    def get(self, name: str, default: Any = None) -> Any:
        """The field's value, or ``default`` when the record has no such field."""
        if name in self._data:
            return _wrap(self._data[name])
        return default

    def to_dict(self) -> dict[str, Any]:
        """A deep, plain (dict / list) copy that the caller may change freely."""
        copy: dict[str, Any] = _plain_copy(self._data)
        return copy

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return self._data == other._data
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # values may be lists; equality is by content

    def __repr__(self) -> str:
        inner = ", ".join(f"{key}={value!r}" for key, value in self._data.items())
        return f"Record({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Record, (self._data,))


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Record(value)
    if isinstance(value, list):  # a fresh list, so callers cannot change the record
        return [_wrap(item) for item in value]
    return value


def _plain_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_copy(item) for item in value]
    return value


def to_result(value: Any) -> Any:
    """Turn a reply's ``result`` into client values: map → Record, list → list, nil → None."""
    if isinstance(value, dict):
        return Record(value)
    if isinstance(value, list):
        return [to_result(item) for item in value]
    return value


@dataclass(frozen=True)
class Event:
    """One event from the gateway's PUB socket (or a replay page, which carries the same frames).

    ``topic`` is the PUB topic (``"order.1000000365."``, ``"gateway.connection"``), ``seq`` the
    gateway-wide sequence number (strictly increasing over the gateway's life, also across
    restarts), ``ts`` the gateway's timestamp in nanoseconds since the epoch, ``type`` the event
    type (``"order"``, ``"trade"``, ...), ``account_id`` the account or None for gateway events,
    ``data`` the xttype fields and ``epoch`` the journal's identity (the same epoch means the
    same seq stream); ``reconciled`` is set on events the gateway found in the counter's books
    after a reconnection or restart instead of receiving them live. ``seq`` is None for events outside the journaled stream: the gateway's
    control events (``gateway.pong``, ``gateway.heartbeat``) and the client's own notices
    (``gateway.epoch``, ``gateway.gap``).
    """

    topic: str
    seq: int | None
    ts: int
    type: str
    account_id: str | None
    data: Record
    epoch: str | None = None
    reconciled: bool = False  # found in the counter's books after a reconnection or restart


class EventFormatError(ValueError):
    """A PUB message that is not a protocol v1 event; receivers log and skip it."""


def parse_event(frames: Sequence[bytes]) -> Event:
    """Decode the ``[topic, payload]`` frames of one PUB message (or one replayed event)."""
    if len(frames) != 2:
        raise EventFormatError(f"expected 2 frames [topic, payload], got {len(frames)}")
    topic = frames[0].decode("utf-8", errors="replace")
    try:
        body = unpack(frames[1], max_size=max(len(frames[1]), 1))
    except ProtocolError as exc:
        raise EventFormatError(f"topic {topic!r}: {exc.message}") from None
    if not isinstance(body, dict):
        raise EventFormatError(f"topic {topic!r}: payload is not a map")
    if body.get("v") != PROTOCOL_VERSION:
        raise EventFormatError(f"topic {topic!r}: unsupported protocol version {body.get('v')!r}")
    seq, ts, event_type = body.get("seq"), body.get("ts"), body.get("type")
    account_id, data, epoch = body.get("account_id"), body.get("data"), body.get("epoch")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise EventFormatError(f"topic {topic!r}: seq must be an integer or nil")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise EventFormatError(f"topic {topic!r}: ts must be an integer")
    if not isinstance(event_type, str):
        raise EventFormatError(f"topic {topic!r}: type must be a string")
    if epoch is not None and not isinstance(epoch, str):
        raise EventFormatError(f"topic {topic!r}: epoch must be a string")
    if account_id is not None and not isinstance(account_id, str):
        account_id = str(account_id)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EventFormatError(f"topic {topic!r}: data must be a map")
    return Event(topic, seq, ts, event_type, account_id, Record(data), epoch, body.get("reconciled") is True)


def replayed_events(result: Record | Mapping[str, Any]) -> list[Event]:
    """The events of one ``replay`` result page, decoded like live ones.

    Each element of ``result["events"]`` is ``[topic, payload]``: the two PUB frames, the
    topic as text and the payload as the msgpack bytes. Malformed entries raise
    :class:`EventFormatError`.
    """
    entries = result.get("events")
    if not isinstance(entries, list):
        raise EventFormatError("replay result has no 'events' list")
    return [parse_event(_replayed_frames(entry)) for entry in entries]


def _replayed_frames(entry: Any) -> list[bytes]:
    if not isinstance(entry, list) or len(entry) != 2:
        raise EventFormatError(f"replayed event must be [topic, payload], got {entry!r:.100}")
    topic, payload = entry
    if not isinstance(topic, str) or not isinstance(payload, bytes):
        raise EventFormatError("replayed event must be [topic: str, payload: bin]")
    return [topic.encode("utf-8"), payload]
