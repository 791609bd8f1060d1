"""Every example runs against a sim gateway, as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapter.client import Client
from adapter.config import SimConfig

from ..conftest import ACCOUNT, free_port, trading_session, wait_filled

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(example: str, gateway: Any, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / example), "--router", gateway.router_endpoint, "--pub", gateway.pub_endpoint,
         *args],
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def sim_gateway(gateway_factory: Any) -> Any:
    return gateway_factory(risk={}, sim=SimConfig(positions={ACCOUNT: {"600000.SH": 1000}}))  # shipped risk limits


def test_the_client_strategy(sim_gateway: Any) -> None:
    result = run("strategy_client.py", sim_gateway)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cash before: 1000000.00" in result.stdout
    assert "bought 100 @ 10.6" in result.stdout and "sell order" in result.stdout  # 1000 held since yesterday
    with Client(sim_gateway.router_endpoint, sim_gateway.pub_endpoint) as client:
        assert client.query_stock_position(ACCOUNT, "600000.SH").volume == 1000  # bought 100, sold 100


def test_the_async_strategy(sim_gateway: Any) -> None:
    result = run("strategy_async.py", sim_gateway)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("filled ") == 3 and "positions:" in result.stdout


def test_the_event_recorder_resumes_where_it_stopped(sim_gateway: Any, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = run("event_recorder.py", sim_gateway, str(path), "--idle", "1")
    assert first.returncode == 0, first.stderr
    with trading_session(sim_gateway) as (client, log):
        order_id = client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.60, "rec", "").order_id  # while it is down
        # The reply comes before the fill is published: wait for the fill's last event (trade,
        # order 56, position, asset), then nothing more is on its way.
        last = wait_filled(log, order_id)
        assert client.ping().last_seq == last
    second = run("event_recorder.py", sim_gateway, str(path), "--idle", "1")
    assert second.returncode == 0, second.stderr
    seqs = [json.loads(line)["seq"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert seqs == list(range(1, last + 1))  # every event once, in order, across the two runs
    assert any(json.loads(line)["type"] == "trade" for line in path.read_text(encoding="utf-8").splitlines())


def test_the_monitor(gateway_factory: Any) -> None:
    port = free_port()
    gateway = gateway_factory(metrics_port=port)
    result = run("monitor.py", gateway, "--metrics-port", str(port))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: seq ") and "commands served" in result.stdout
    with Client(gateway.router_endpoint, gateway.pub_endpoint) as client:
        client.halt(reason="monitor test")
    halted = run("monitor.py", gateway)
    assert halted.returncode == 1 and "trading halted" in halted.stdout
