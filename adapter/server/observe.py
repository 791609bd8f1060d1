"""The I/O thread's Prometheus side: each command timed from read to reply, peers counted,
gauges refreshed on heartbeats. Every method is a no-op when metrics are off."""

from __future__ import annotations

import time
from typing import Any

import zmq

from ..protocol import ops
from .metrics import Metrics
from .risk import HALTED, NORMAL, REDUCE_ONLY
from .sockets import peer_changes

MAX_ASKED = 100_000  # commands timed at once; past it the table starts over (a client never answered)


class Observer:
    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self._asked: dict[tuple[bytes, Any], tuple[str, float]] = {}  # (client, request id) -> (op, read at)
        self._peers = {"router": 0, "pub": 0}

    def asked(self, client: bytes, request_id: Any, op: Any) -> None:
        if self.metrics is None:
            return
        # Only known op names become labels: a client cannot grow the label set.
        name = op if isinstance(op, str) and op in ops.OPS else "unknown"
        if len(self._asked) > MAX_ASKED:
            self._asked.clear()
        self._asked[(client, request_id)] = (name, time.perf_counter())

    def answered(self, client: bytes, request_id: Any, outcome: str) -> None:
        if self.metrics is None:
            return
        try:
            asked = self._asked.pop((client, request_id), None)
        except TypeError:  # an unhashable id never made it into the table
            asked = None
        op = asked[0] if asked else "invalid"
        self.metrics.commands.labels(op, outcome).inc()
        if asked:
            self.metrics.latency.labels(op).observe(time.perf_counter() - asked[1])

    def published(self, count: int) -> None:
        if self.metrics is not None and count:
            self.metrics.events.inc(count)

    def peers(self, monitor: zmq.Socket, name: str) -> None:
        self._peers[name] = max(self._peers[name] + peer_changes(monitor), 0)
        if self.metrics is not None:
            self.metrics.clients.labels(name).set(self._peers[name])

    def refresh(self, journal_bytes: int, last_seq: int, status: dict[str, Any]) -> None:
        """Gauges that read the stores (on heartbeats, on the I/O thread)."""
        metrics = self.metrics
        if metrics is None:
            return
        metrics.journal_bytes.set(float(journal_bytes))
        metrics.last_seq.set(last_seq)
        metrics.connected.set(1 if status["connected"] else 0)
        metrics.unknown_orders.set(status["unknown_orders"])
        for state in (NORMAL, HALTED, REDUCE_ONLY):
            metrics.trading_halted.labels(state).set(1 if status["trading_state"] == state else 0)
