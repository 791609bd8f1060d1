"""Commands handed to the broker and not yet answered, counted per client.

The counts bound what one client (a ROUTER routing id) and all clients together may have
in flight, so a flooding or stuck client cannot grow the gateway's memory without bound.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from ..keys import ClientKey
from .ledger import OrderRecord
from ..protocol import ops


@dataclass
class Pending:
    """A command handed to the broker, waiting for its answer."""

    token: int
    envelope: list[bytes]
    request_id: Any
    spec: ops.OpSpec
    args: dict[str, Any]
    deadline: float
    seq: int | None = None
    started: float = field(default_factory=time.monotonic)
    record: OrderRecord | None = None  # the ledger record of an order command
    on_result: Callable[[Any], None] | None = None  # the gateway's own query: no client to answer
    key: ClientKey | None = None  # who asked: results are limited to its accounts


class PendingTable:
    def __init__(self) -> None:
        self._by_token: dict[int, Pending] = {}
        self._per_client: Counter[bytes] = Counter()

    def add(self, pending: Pending) -> None:
        self._by_token[pending.token] = pending
        self._per_client[pending.envelope[0]] += 1

    def get(self, token: int | None) -> Pending | None:
        return self._by_token.get(token) if token is not None else None

    def pop(self, token: int | None, default: None = None) -> Pending | None:
        pending = self._by_token.pop(token, None) if token is not None else None
        if pending is None:
            return default
        client = pending.envelope[0]
        self._per_client[client] -= 1
        if not self._per_client[client]:
            del self._per_client[client]
        return pending

    def values(self) -> list[Pending]:
        return list(self._by_token.values())

    def clear(self) -> None:
        self._by_token.clear()
        self._per_client.clear()

    def count_for(self, client: bytes) -> int:
        return self._per_client.get(client, 0)

    def __len__(self) -> int:
        return len(self._by_token)
