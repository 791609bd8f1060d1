"""Operations: the Prometheus endpoint scraped for real, and JSON log lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from adapter.client import Client, GatewayError

from ..conftest import ACCOUNT, free_port, trading_session, wait_filled, wait_for
from .test_cli import Server


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_the_metrics_endpoint_reports_what_the_gateway_did(gateway_factory: Any) -> None:
    gateway = gateway_factory(metrics_port=free_port(), risk={"max_order_volume": 1000}, heartbeat_interval=0.1)
    assert gateway.metrics_port > 0
    with trading_session(gateway) as (client, log):
        order_id = client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.60, "m", "").order_id
        with pytest.raises(GatewayError):
            client.order_stock(ACCOUNT, "600000.SH", "buy", 2000, "limit", 10.60, "m", "")
        with pytest.raises(GatewayError):
            client.query_stock_asset("nobody")
        # The fill's events come after the reply, and may come after the denial's: wait for both.
        last_seq = max(wait_filled(log, order_id), log.wait("risk_denied")[0].seq)
        assert client.ping().last_seq == last_seq
        values = wait_for(lambda: (lambda v: v if v.get("qmt_adapter_last_seq") == last_seq
                                   and v.get('qmt_adapter_connected_clients{socket="router"}', 0) >= 1 else None)(
            scrape(gateway.metrics_port)), what="the gauges after a heartbeat")
    assert values['qmt_adapter_commands_total{op="order_stock",outcome="ok"}'] == 1.0
    assert values['qmt_adapter_commands_total{op="order_stock",outcome="risk_denied"}'] == 1.0
    assert values['qmt_adapter_commands_total{op="query_stock_asset",outcome="unknown_account"}'] == 1.0
    assert values['qmt_adapter_risk_denials_total{rule="order.max_volume"}'] == 1.0
    assert values['qmt_adapter_command_seconds_count{op="order_stock"}'] == 2.0
    assert values["qmt_adapter_events_published_total"] >= 4  # order, trade, position, asset, the denial...
    assert values["qmt_adapter_counter_connected"] == 1.0
    assert values["qmt_adapter_journal_bytes"] > 0 and values["qmt_adapter_unknown_orders"] == 0
    assert values['qmt_adapter_trading_state{state="normal"}'] == 1.0


def test_metrics_are_off_by_default(gateway: Any) -> None:
    assert gateway.metrics is None and gateway.metrics_port == 0


def test_json_log_lines_carry_the_order_fields(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", "--log-json")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "adapter", "buy", "--router", server.router, "--pub", server.pub, ACCOUNT,
             "600000.SH", "100", "10.60", "--client-order-id", "json-log-1"],
            capture_output=True, text=True, timeout=30, env={**os.environ},
        )
        assert result.returncode == 0, result.stderr
        wait_for(lambda: any("json-log-1" in line for line in server.output), what="the order's log line")
    finally:
        assert server.stop() == 0
    records = [json.loads(line) for line in server.output if line.strip()]  # every line is JSON
    order = next(r for r in records if r.get("client_order_id") == "json-log-1")
    assert order["account_id"] == ACCOUNT and isinstance(order["request_id"], int) and order["request_id"] >= 1 and order["level"] == "INFO"
    assert "order_stock" in order["message"] and order["logger"] == "adapter.server.desk"
