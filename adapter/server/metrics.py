"""Prometheus metrics (``prometheus-client``), served on a loopback port when ``metrics_port`` is set.

The I/O thread updates every metric; the client library's HTTP thread only reads them (its
metric objects are thread-safe). Values that need the journal or the ledger are refreshed by
the I/O thread at each heartbeat, never read from the HTTP thread.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter("qmt_adapter_commands", "Commands answered, by op and outcome (ok or error code)",
                                ["op", "outcome"], registry=r)
        self.latency = Histogram("qmt_adapter_command_seconds", "From command read to reply sent, by op",
                                 ["op"], buckets=LATENCY_BUCKETS, registry=r)
        self.events = Counter("qmt_adapter_events_published", "Numbered events published", registry=r)
        self.journal_bytes = Gauge("qmt_adapter_journal_bytes", "Journal size on disk", registry=r)
        self.last_seq = Gauge("qmt_adapter_last_seq", "The newest event seq", registry=r)
        self.connected = Gauge("qmt_adapter_counter_connected", "1 while the counter (QMT) is connected", registry=r)
        self.unknown_orders = Gauge("qmt_adapter_unknown_orders", "Orders whose outcome is unknown", registry=r)
        self.denials = Counter("qmt_adapter_risk_denials", "Orders and cancels denied, by rule", ["rule"], registry=r)
        self.clients = Gauge("qmt_adapter_connected_clients", "Open connections, by socket", ["socket"], registry=r)
        self.trading_halted = Gauge("qmt_adapter_trading_state", "Kill switch: 1 for the current state",
                                    ["state"], registry=r)
        self.storage_failed = Gauge("qmt_adapter_storage_failed", "1 while a store cannot be written, by store",
                                    ["store"], registry=r)
        self._server: Any = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the HTTP endpoint; returns the port (0 picks a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        bound = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
