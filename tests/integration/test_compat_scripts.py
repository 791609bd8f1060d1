"""Existing xtquant scripts, untouched, through `qmt-adapter run` against a sim gateway.

- tests/scripts/qmt_quickstart.py: the product's seed quick-start, verbatim.
- xtquant's own manual quick-start (xtquant/doc/xttrader.md, 快速入门), read from the
  installed package at test time.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from adapter.compat import XtQuantTrader
from adapter.compat.xttypes import UNSUPPORTED_METHODS

from .test_cli import Server

SEED = Path(__file__).resolve().parents[1] / "scripts" / "qmt_quickstart.py"


def manual_quickstart(target: Path) -> Path:
    from adapter.xtimport import import_xtquant

    doc = Path(import_xtquant().__file__).parent / "doc" / "xttrader.md"
    text = doc.read_text(encoding="utf-8")
    section = text.split("### 创建策略", 1)[1]
    code = section.split("```Python", 1)[1].split("```", 1)[0]
    target.write_text(code, encoding="utf-8")
    return target


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


_running: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def no_script_left() -> Iterator[None]:
    """A script a failed test leaves running is ended (none outlives its test)."""
    yield
    while _running:
        proc = _running.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _default_sigint() -> None:
    # A shell's background job starts with SIGINT ignored, and children inherit that; the
    # manual quick-start is ended with SIGINT, as a person would with Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Script:
    def __init__(self, server: Server, script: Path, module: bool = False) -> None:
        runner = ["-m", "adapter.compat"] if module else ["-m", "adapter", "run"]
        self.proc = subprocess.Popen(
            [sys.executable, *runner, "--router", server.router, "--pub", server.pub, str(script)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=script.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_default_sigint,
        )
        _running.append(self.proc)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.output):
            assert time.monotonic() < deadline, f"no {text!r} in:\n{''.join(self.output)}"
            assert self.proc.poll() is None or self.lines.qsize() or any(text in line for line in self.output), \
                f"ended without {text!r}:\n{''.join(self.output)}"
            time.sleep(0.02)

    def finish(self, timeout: float = 30.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the script did not end within {timeout} s:\n{self.text}") from None
        self._pump_thread.join(10)  # the last lines are read
        return code

    @property
    def text(self) -> str:
        return "".join(self.output)


@pytest.mark.parametrize("module", [False, True], ids=["qmt-adapter run", "python -m adapter.compat"])
def test_the_seed_quickstart_runs_unchanged(server: Server, module: bool) -> None:
    script = Script(server, SEED, module)
    assert script.finish() == 0, script.text
    out = script.text
    for line in ("connect: 0", "subscribe: 0", "cash: 1000000.0", "positions_cnt: 0", "orders_cnt: 0",
                 "trades_cnt: 0", "cancel_ret: 0"):
        assert line in out, out
    # Callbacks print from their own thread, so a line may be interleaved with another: no anchors.
    order_id = int(re.search(r"order_id: (-?\d+)", out).group(1))  # type: ignore[union-attr]
    assert order_id > 0
    assert f"order_cb: 1000000365 600000.SH 50 {order_id}" in out  # the order reached the counter and was reported
    assert "is ignored: trading through the gateway" in out  # the Windows path, logged once


def test_the_xtquant_manual_quickstart_runs_unchanged(server: Server, tmp_path: Path) -> None:
    script = Script(server, manual_quickstart(tmp_path / "manual_quickstart.py"))
    script.wait_for_line("query position:")
    script.proc.send_signal(signal.SIGINT)  # it ends in run_forever(), like any xtquant strategy
    assert script.finish() == 130, script.text
    lines = [line.rstrip("\n") for line in script.output if " INFO " not in line and " WARNING " not in line]

    def number_after(marker: str) -> int:
        """The first bare integer printed after ``marker`` (callbacks print in between)."""
        rest = lines[lines.index(marker) + 1:]
        return int(next(line for line in rest if re.fullmatch(r"-?\d+", line)))

    assert number_after("demo test") == 0  # connect
    assert lines[lines.index("demo test") + 1:].count("0") >= 2  # and subscribe
    order_id = number_after("order using the fix price:")
    assert order_id > 0
    assert number_after("cancel order:") == 0
    # The manual sends the same order again at once (labelled async, with order_stock): with the
    # default configuration it is placed too; both orders are on the books.
    second = number_after("order using async api:")
    assert second > order_id and "order.duplicate" not in script.text
    assert "orders: 2" in lines and f"order {order_id}" in lines
    cash = float(next(line for line in lines if line.startswith("cash ")).split()[1])
    assert cash < 1_000_000.0  # the second order rests, its cash frozen
    assert "trades: 0" in lines and "positions: 0" in lines
    assert "on order callback:" in lines and "600000.SH 54 " in script.text  # the cancel, reported


def test_unsupported_methods_raise_naming_themselves() -> None:
    trader = XtQuantTrader("tcp://127.0.0.1:1", 1)
    for name in sorted(UNSUPPORTED_METHODS):
        with pytest.raises(NotImplementedError, match=rf"XtQuantTrader\.{name} is not supported"):
            getattr(trader, name)()
    with pytest.raises(AttributeError):
        trader.no_such_method  # noqa: B018


def test_every_genuine_method_is_offered_or_refused_by_name() -> None:
    from adapter.sim import install

    install()
    from xtquant.xttrader import XtQuantTrader as Genuine

    public = {name for name in vars(Genuine) if not name.startswith("_") and callable(getattr(Genuine, name))}
    offered = {name for name in vars(XtQuantTrader) if not name.startswith("_")}
    assert public - offered <= UNSUPPORTED_METHODS, sorted(public - offered - UNSUPPORTED_METHODS)
