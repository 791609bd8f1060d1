"""The benchmark harness runs end to end (a smoke test: figures are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)  # ~13 s idle; the bench subprocess may take up to 240 s
def test_python_m_bench_quick_runs_and_loses_no_event(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| raw DEALER→ROUTER echo (baseline) |" in result.stdout and "CURVE cost" in result.stdout
    [written] = list(tmp_path.glob("*.json"))
    report = json.loads(written.read_text(encoding="utf-8"))
    medians = report["medians"]
    expected = {"echo", "ping", "counter_resting", "order_stock", "counter_filling", "order_stock_filling",
                "query_stock_positions", "ping_curve", "order_stock_curve", "pipelined", "events_raw",
                "events_1", "events_4", "events_curve"}
    assert set(medians) == expected
    for name in ("events_1", "events_4", "events_curve"):
        assert medians[name]["lost"] == 0 and medians[name]["out_of_order"] == 0, name
