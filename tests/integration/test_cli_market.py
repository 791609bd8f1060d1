"""The market data commands as a person runs them: `qmt-adapter serve` in one process (the sim's
prices walking), `quote`, `bars`, `sectors`, `instruments` in others."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from .test_cli import Server, cli


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = tmp_path / "gateway.toml"
    config.write_text('[sim]\nprice_model = "walk"\ntick_interval = 0.05\npersist = false\n', encoding="utf-8")
    srv = Server(tmp_path / "data", "--config", str(config))
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


QUOTE_LINE = re.compile(r"^(\d{6}\.(SH|SZ|BJ)) +(\S*) +(\d+\.\d+) +([+-]\d+\.\d\d%) +bid/ask (\S+)/(\S+) +vol (\d+) +"
                        r"(\d\d:\d\d:\d\d) UTC\+8$")


def test_quote_prints_one_line_per_code(server: Server) -> None:
    result = cli(server, "quote", "600000.SH", "000001.SZ", "510300.SH")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [QUOTE_LINE.match(line).group(1) for line in lines] == ["600000.SH", "000001.SZ", "510300.SH"], lines
    first = QUOTE_LINE.match(lines[0])
    assert first is not None and first.group(3) == "浦发银行"
    bid, ask = float(first.group(6)), float(first.group(7))
    assert bid < ask and float(first.group(4)) in (bid, ask)


def test_quote_watch_follows_the_quote_pub_for_the_seconds_given(server: Server) -> None:
    started = time.monotonic()
    result = cli(server, "quote", "600000.SH", "000001.SZ", "--watch", "--seconds", "2")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 2
    lines = result.stdout.strip().splitlines()
    assert all(QUOTE_LINE.match(line) for line in lines), lines
    assert len([line for line in lines if line.startswith("600000.SH")]) >= 3  # the snapshot, then updates
    assert len({QUOTE_LINE.match(line).group(4) for line in lines if line.startswith("600000.SH")}) >= 2
    assert "watching 600000.SH, 000001.SZ at tcp://127.0.0.1:" in result.stderr


def test_bars_is_a_table(server: Server) -> None:
    daily = cli(server, "bars", "600000.SH", "--count", "5")
    assert daily.returncode == 0, daily.stderr
    lines = daily.stdout.strip().splitlines()
    assert lines[0].split() == ["date", "open", "high", "low", "close", "volume", "amount"]
    assert len(lines) == 6 and all(re.match(r"^\d{4}-\d\d-\d\d +\d+\.\d\d", line) for line in lines[1:])
    assert [line.split()[0] for line in lines[1:]] == sorted(line.split()[0] for line in lines[1:])
    minutes = cli(server, "bars", "000001.SZ", "--period", "5m", "--count", "3")
    assert minutes.returncode == 0 and len(minutes.stdout.strip().splitlines()) == 4
    assert minutes.stdout.startswith("time (UTC+8)")
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d ", minutes.stdout.splitlines()[1])
    ranged = cli(server, "bars", "600000.SH", "--start", "20251001", "--end", "20251010", "--count", "-1")
    assert [line.split()[0] for line in ranged.stdout.strip().splitlines()[1:]] == ["2025-10-09", "2025-10-10"]
    ticks = cli(server, "bars", "600000.SH", "--period", "tick", "--count", "2")
    assert ticks.returncode == 0 and ticks.stdout.splitlines()[0].split()[:3] == ["time", "(UTC+8)", "lastPrice"]


def test_sectors_and_their_codes(server: Server) -> None:
    names = cli(server, "sectors")
    assert names.returncode == 0 and "沪深A股" in names.stdout.splitlines()
    codes = cli(server, "sectors", "沪深ETF")
    assert codes.returncode == 0 and "510300.SH" in codes.stdout.splitlines()
    missing = cli(server, "sectors", "no such sector")
    assert missing.returncode == 1 and "no sector 'no such sector'" in missing.stderr


def test_instruments_show_the_details(server: Server) -> None:
    table = cli(server, "instruments", "600000.SH", "000001.SZ")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.strip().splitlines()
    assert header.split()[:6] == ["code", "name", "exchange", "listed", "prev_close", "up_limit"]
    assert rows[0].split()[:3] == ["600000.SH", "浦发银行", "SH"] and rows[1].split()[0] == "000001.SZ"
    every = cli(server, "instruments", "600000.SH", "--all")
    assert every.returncode == 0 and re.search(r"^  UpStopPrice +\d+\.\d\d$", every.stdout, re.M)
    unknown = cli(server, "instruments", "600000.SH", "999999.SH")
    assert unknown.returncode == 1 and "600000.SH" in unknown.stdout and "unknown instrument 999999.SH" in unknown.stderr


def test_errors_are_one_line_and_non_zero(server: Server) -> None:
    unknown = cli(server, "quote", "999999.SH")
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert "invalid_argument" in unknown.stderr and "unknown to the simulator" in unknown.stderr
    period = cli(server, "bars", "600000.SH", "--period", "2m")
    assert period.returncode == 1 and "period" in period.stderr
    usage = subprocess.run([sys.executable, "-m", "adapter", "quote"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2
    gone = subprocess.run([sys.executable, "-m", "adapter", "quote", "--router", "tcp://127.0.0.1:1", "--timeout",
                           "0.5", "600000.SH"], capture_output=True, text=True, timeout=30)
    assert gone.returncode == 3 and "no answer from the gateway" in gone.stderr
