"""The console's model (books from a snapshot and events, bounds, P&L) and its command line."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from adapter.client import Event, Record
from adapter.console.model import ConsoleModel
from adapter.console.text import money, signed, signed_pct

ACCOUNT = "1000000365"


def event(seq: int | None, etype: str, account: str | None = ACCOUNT, **data: Any) -> Event:
    topic = f"{etype}.{account}." if account else etype
    return Event(topic, seq, time.time_ns(), etype, account, Record(data))


def order(order_id: int, status: int, **more: Any) -> dict[str, Any]:
    return {"order_id": order_id, "order_status": status, "stock_code": "600000.SH", "order_type": 23,
            "order_volume": 100, "price": 10.5, "order_time": order_id, **more}


def snapshot(seq: int = 10) -> Record:
    return Record({
        "account_id": ACCOUNT, "seq": seq, "epoch": "e",
        "asset": {"cash": 1_000_000.0, "total_asset": 1_010_600.0},
        "positions": [{"stock_code": "600000.SH", "volume": 1000, "can_use_volume": 1000, "avg_price": 10.0,
                       "last_price": 10.6, "instrument_name": "浦发银行"},
                      {"stock_code": "000001.SZ", "volume": 0}],
        "orders": [order(1, 50), order(2, 56)],
        "trades": [{"traded_id": "t1", "order_id": 2, "traded_time": 5, "stock_code": "600000.SH"}],
    })


def loaded(**kwargs: Any) -> ConsoleModel:
    model = ConsoleModel(**kwargs)
    model.on_ping(Record({"connected": True, "accounts": [ACCOUNT], "last_seq": 10, "backend": "sim"}))
    model.load(snapshot())
    return model


def test_a_snapshot_gives_working_orders_held_positions_and_fills() -> None:
    model = loaded()
    assert [o.order_id for o in model.working_orders(ACCOUNT)] == [1]  # 56 (succeeded) is not working
    assert model.held_codes() == ["600000.SH"]  # a zero position is not shown
    assert [t.traded_id for t in model.fills(ACCOUNT)] == ["t1"]
    row = model.positions(ACCOUNT)[0]
    assert (row.volume, row.last, row.pnl) == (1000, 10.6, pytest.approx(600.0))
    assert row.pnl_pct == pytest.approx(6.0)


def test_events_after_the_snapshot_move_the_books_and_older_ones_do_not() -> None:
    model = loaded()
    model.apply(event(9, "order", **order(3, 50)))  # before the snapshot: already in it (or gone)
    assert 3 not in model.books[ACCOUNT].orders
    model.apply(event(11, "order", **order(3, 50)))
    model.apply(event(12, "order", **order(1, 54)))  # cancelled: leaves the working list
    assert [o.order_id for o in model.working_orders(ACCOUNT)] == [3]
    model.apply(event(13, "trade", traded_id="t2", order_id=3, traded_time=9))
    model.apply(event(14, "position", stock_code="600000.SH", volume=1100, avg_price=10.1))
    model.apply(event(15, "asset", cash=998_950.0))
    assert [t.traded_id for t in model.fills(ACCOUNT)] == ["t2", "t1"]  # newest first
    assert model.positions(ACCOUNT)[0].volume == 1100
    assert model.books[ACCOUNT].asset.cash == 998_950.0
    assert model.last_seq == 15


def test_gateway_events_set_the_trading_state_connection_and_denials() -> None:
    model = loaded()
    model.apply(event(11, "gateway.trading", None, state="halted", reason="by ops", cancel_open=False))
    assert (model.trading_state, model.trading_reason) == ("halted", "by ops")
    model.apply(event(12, "gateway.connection", None, connected=False, reason="lost"))
    assert model.counter_connected is False
    model.apply(event(13, "risk_denied", rule="order.max_volume", message="volume 2000000 is over the limit",
                      op="order_stock", stock_code="600000.SH", order_type=23, order_volume=2_000_000, price=10.5))
    time_, account, rule, what, message = model.denials[0]
    assert (account, rule) == (ACCOUNT, "order.max_volume")
    assert "600000.SH" in what and "2000000@10.50" in what and "over the limit" in message
    model.apply(event(None, "gateway.liveness", None, alive=False, silent_for=3.2))
    assert model.reachable is False and "heartbeat" in model.problem


def test_history_replayed_on_start_does_not_undo_what_ping_said() -> None:
    model = ConsoleModel()
    model.on_ping(Record({"connected": True, "accounts": [ACCOUNT], "last_seq": 20, "trading_state": "halted"}))
    model.apply(event(5, "gateway.trading", None, state="halted", reason="by ops"))
    model.apply(event(12, "gateway.trading", None, state="normal", reason="resumed"))
    model.apply(event(15, "gateway.trading", None, state="halted", reason="again by ops"))
    model.apply(event(16, "gateway.connection", None, connected=False, reason="lost"))
    assert (model.trading_state, model.trading_reason, model.counter_connected) == ("halted", "again by ops", True)
    model.apply(event(21, "gateway.trading", None, state="normal", reason="resumed"))
    assert (model.trading_state, model.trading_reason) == ("normal", "resumed")


def test_heartbeats_and_pongs_are_not_shown_and_a_new_journal_asks_for_new_books() -> None:
    model = loaded()
    assert model.apply(event(None, "gateway.heartbeat", None, interval=1.0, last_seq=10)) is False
    assert model.apply(event(None, "gateway.pong", None, id=1)) is False
    assert not model.events
    assert model.apply(event(None, "gateway.epoch", None, epoch="new")) is True
    assert model.apply(event(None, "gateway.gap", None, first_seq=100)) is True


def test_everything_kept_is_bounded() -> None:
    model = loaded(events_kept=5, denials_kept=3, fills_kept=4)
    for seq in range(11, 61):
        model.apply(event(seq, "trade", traded_id=f"x{seq}", order_id=seq, traded_time=seq))
        model.apply(event(None, "risk_denied", rule="rate.per_second", message="burst"))
        model.apply(event(seq, "order", **order(1000 + seq, 56)))  # finished at once: never held
    assert len(model.events) == 5 and len(model.denials) == 3
    assert [t.traded_id for t in model.fills(ACCOUNT)] == ["x60", "x59", "x58", "x57"]
    assert [o.order_id for o in model.working_orders(ACCOUNT)] == [1]


def test_quotes_set_the_last_price_and_only_held_codes_are_kept() -> None:
    model = loaded()
    model.on_ticks({"600000.SH": {"lastPrice": 11.0, "lastClose": 10.0}, "000002.SZ": {"lastPrice": 5.0}})
    assert set(model.ticks) == {"600000.SH"}
    row = model.positions(ACCOUNT)[0]
    assert (row.last, row.market_value, row.pnl) == (11.0, 11_000.0, pytest.approx(1000.0))
    assert model.pnl(ACCOUNT) == pytest.approx(1000.0)


def test_rights_come_from_the_key_and_without_curve_there_is_none() -> None:
    model = loaded()
    assert model.may("admin") and model.may("trade")
    model.on_ping(Record({"connected": True, "accounts": [ACCOUNT], "key": {"name": "watcher", "permissions": ["read"]}}))
    assert not model.may("admin") and not model.may("trade") and model.key_name == "watcher"


def test_the_gateway_unreachable_since_the_first_failure() -> None:
    model = loaded()
    model.on_unreachable("no answer", now=100.0)
    model.on_unreachable("no answer", now=105.0)
    assert (model.reachable, model.unreachable_since) == (False, 100.0)
    model.on_ping(Record({"connected": True, "accounts": [ACCOUNT]}))
    assert model.reachable is True and model.unreachable_since is None


def test_money_and_signed_figures() -> None:
    assert money(1234567.891) == "1,234,567.89" and money(None) == "-" and money(True) == "-"
    assert signed(1500) == "+1,500.00" and signed(-5) == "-5.00" and signed(None) == "-"
    assert signed_pct(-0.2356) == "-0.24%" and signed_pct(None) == "-"


def test_web_mode_refuses_a_non_loopback_address_without_insecure(capsys: pytest.CaptureFixture[str]) -> None:
    from adapter.cli import main

    assert main(["console", "--web", "--host", "0.0.0.0"]) == 2
    assert "--insecure" in capsys.readouterr().err
    assert main(["console", "--events", "0"]) == 2


def test_the_page_runs_the_same_console_with_the_same_flags(tmp_path: Path) -> None:
    import argparse
    import shlex

    from adapter.cli.console import _app_args
    from adapter.console.web import app_command, is_loopback

    key = tmp_path / "ops.key_secret"
    key.write_text("x")
    args = argparse.Namespace(router="tcp://gw:5555", pub="tcp://gw:5556", timeout=5.0, events=50,
                              client_key=str(key.relative_to(tmp_path)), server_key="Z85KEY", account=["1", "2"])
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        argv = _app_args(args)
    finally:
        os.chdir(here)
    assert argv[argv.index("--client-key") + 1] == str(key)  # absolute: the page's process may start elsewhere
    assert argv[argv.index("--server-key") + 1] == "Z85KEY"
    assert argv.count("--account") == 2 and "--web" not in argv
    command = shlex.split(app_command(argv))
    assert command[0] == "exec"  # the shell becomes the app: the server is its parent (end_with_server)
    assert command[2:5] == ["-m", "adapter", "console"] and command[5:] == argv
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("gw.example")


def test_a_page_process_ends_when_the_web_server_is_killed(tmp_path: Path) -> None:
    """The server killed with -9: its page's app is told by the kernel (PR_SET_PDEATHSIG), not left orphaned."""
    import signal
    import subprocess
    import sys
    import time

    if sys.platform != "linux":
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    child = tmp_path / "child.pid"
    # A stand-in server: a shell that execs a Python which calls end_with_server and then waits.
    code = ("import os, time; os.environ['TEXTUAL_DRIVER'] = 'textual.drivers.web_driver:WebDriver'; "
            "from adapter.console.web import end_with_server; end_with_server(); "
            f"open({str(child)!r}, 'w').write(str(os.getpid())); time.sleep(60)")
    server = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time; "
                               f"subprocess.Popen([sys.executable, '-c', {code!r}]); time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while not (child.exists() and child.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(child.read_text())
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the page's process outlived the killed server")
    finally:
        server.kill()
