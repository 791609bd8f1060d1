"""The CLI as a person runs it: `qmt-adapter serve` in one process, commands in others."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Iterator

import pytest

from ..conftest import ACCOUNT, free_port, wait_for

SERVING = re.compile(r"serving: router (\S+), pub (\S+),")


class Server:
    def __init__(self, data_dir: "os.PathLike[str] | str", *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adapter", "serve", "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*",
             "--data-dir", str(data_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.router, self.pub = self._endpoints(timeout=30.0)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def _endpoints(self, timeout: float) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = SERVING.search(line)
            if match:
                return match.group(1), match.group(2)
        self.proc.kill()
        pytest.fail("gateway did not start:\n" + "".join(self.output))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


@pytest.fixture
def server(tmp_path: "os.PathLike[str]") -> Iterator[Server]:
    srv = Server(tmp_path)
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def cli(server: Server, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter", args[0], "--router", server.router, "--pub", server.pub, "--timeout", "5", *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.strip().splitlines()


def test_cli_session(server: Server) -> None:
    ping = cli(server, "ping")
    assert ping.returncode == 0 and "backend sim" in ping.stdout and "counter connected" in ping.stdout
    assert ping.stderr == ""

    tail = subprocess.Popen(
        [sys.executable, "-m", "adapter", "tail", "--router", server.router, "--pub", server.pub, "--count", "4", "--idle", "20", "order.", "trade."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # tail returns only once it is subscribed, proven by a pong; wait for its first line.
        buy = None
        deadline = time.monotonic() + 20
        assert tail.stdout is not None
        ready = tail.stdout.readline()
        assert "subscribed" in ready and "times are exchange time (UTC+8)" in ready, ready
        buy = cli(server, "buy", ACCOUNT, "600000.SH", "200", "10.70", "--wait", "20")
        assert buy.returncode == 0, buy.stderr
        sent, fill, verdict = buy.stdout.strip().splitlines()
        order_id = int(re.match(r"order (\d+) sent: 买入 buy 600000.SH 200 @ 10.70 \(client_order_id \w+\)$", sent).group(1))
        assert re.match(r"filled 200 @ 10.60 = 2120.00, commission 5.00 \(trade \w+\)$", fill), fill
        assert verdict == f"order {order_id}: 56 已成 filled, 200 @ 10.60"
        out, _ = tail.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if tail.poll() is None:
            tail.kill()
    lines = out.strip().splitlines()
    assert len(lines) == 4, out
    assert all(str(order_id) in line for line in lines), out
    assert " trade " in out and "56 已成 filled" in out and "600000.SH 浦发银行 买入 buy 200 @ 10.70" in out
    assert re.match(r"#\d+ \d\d:\d\d:\d\d\.\d{3} order +1000000365 +600000.SH 浦发银行 买入 buy 200 @ 10.70: "
                    r"48 未报 unreported; order \d+$", lines[0]), lines[0]

    orders = cli(server, "orders", ACCOUNT)
    assert orders.returncode == 0 and str(order_id) in orders.stdout and "56 已成 filled" in orders.stdout
    assert orders.stdout.startswith("time (UTC+8)") and "买入 buy" in orders.stdout
    positions = cli(server, "positions", ACCOUNT)
    assert positions.returncode == 0 and re.search(r"600000\.SH  浦发银行 +200 ", positions.stdout), positions.stdout
    trades = cli(server, "trades", ACCOUNT)
    assert trades.returncode == 0 and str(order_id) in trades.stdout and "买入 buy" in trades.stdout
    asset = cli(server, "asset", ACCOUNT)
    assert asset.returncode == 0 and re.search(r"cash\s+997875", asset.stdout), asset.stdout

    # An order that rests is a success once the counter has reported it; its cancel waits for 54.
    resting = cli(server, "buy", ACCOUNT, "600000.SH", "100", "10.50", "--wait", "1")
    assert resting.returncode == 0, resting.stderr
    resting_id = re.search(r"order (\d+) sent", resting.stdout).group(1)
    assert f"order {resting_id} rests at the counter: 50 已报 reported, 0 of 100 filled" in resting.stdout
    cancel = cli(server, "cancel", ACCOUNT, resting_id, "--wait", "20")
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.strip().splitlines()[-1] == f"order {resting_id} cancelled: 54 已撤 cancelled"
    again = cli(server, "cancel", ACCOUNT, resting_id, "--wait", "20")
    assert again.returncode == 4 and f"cancel of order {resting_id} refused by the counter" in again.stderr
    assert "不能撤单" in again.stderr and stderr_lines(again)[-1].startswith("qmt-adapter: cancel of order")

    assert server.stop() == 0
    log = "".join(server.output)
    assert "stopped" in log and "Traceback" not in log


def test_cli_errors_are_one_line_and_non_zero(server: Server) -> None:
    unknown = cli(server, "asset", "999")
    assert unknown.returncode == 1
    assert len(stderr_lines(unknown)) == 1 and "unknown_account" in unknown.stderr
    bad = cli(server, "buy", ACCOUNT, "600000", "100", "10.5")
    assert bad.returncode == 1 and "stock_code" in bad.stderr and "exchange suffix" in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "adapter", "buy"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2


def read_lines(stream: "IO[str]") -> "queue.Queue[str]":
    """The lines of a child's pipe, as they come, on a queue (read on a thread)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_cli_without_a_gateway_says_at_once_where_it_tries_and_then_asks_about_serve() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    waiting = subprocess.Popen([sys.executable, "-m", "adapter", "ping", "--router", endpoint, "--timeout", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert waiting.stderr is not None
        first = read_lines(waiting.stderr).get(timeout=30)
        assert waiting.poll() is None  # said long before its time-out ends
        assert first.startswith(f"qmt-adapter: no answer yet from the gateway at {endpoint}; trying for ")
    finally:
        waiting.kill()
        waiting.wait(10)
    result = subprocess.run([sys.executable, "-m", "adapter", "ping", "--router", endpoint, "--timeout", "1.5"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert stderr_lines(result)[-1] == (f"qmt-adapter: no answer from the gateway at {endpoint} within 1.5 s: nothing "
                                        f"answers there: is 'qmt-adapter serve' running with --router {endpoint}?")
    assert "key" not in result.stderr  # keys are no lead when nothing listens


def test_serve_refuses_a_bad_config(tmp_path: "os.PathLike[str]") -> None:
    config = os.path.join(tmp_path, "gw.toml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write('backend = "sim"\nrouterr = "tcp://127.0.0.1:5555"\n')
    result = subprocess.run(
        [sys.executable, "-m", "adapter", "serve", "--config", config], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "unknown setting routerr" in result.stderr


def test_serve_reads_accounts_from_config(tmp_path: "os.PathLike[str]") -> None:
    config = os.path.join(tmp_path, "gw.toml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write('accounts = ["1000000365", "2000000001"]\n[sim]\ncash = 50000.0\n')
    srv = Server(tmp_path, "--config", config)
    try:
        ping = cli(srv, "ping")
        assert "1000000365, 2000000001" in ping.stdout
        asset = cli(srv, "asset", "2000000001")
        assert re.search(r"cash\s+50000", asset.stdout), asset.stdout
    finally:
        assert srv.stop() == 0


def test_qmt_backend_without_the_native_client_says_why(tmp_path: "os.PathLike[str]") -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adapter", "serve", "--qmt-path", "/nonexistent/userdata_mini",
         "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "native client" in result.stderr and "--backend sim" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_network_bind_without_insecure(tmp_path: "os.PathLike[str]") -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adapter", "serve", "--router", "tcp://0.0.0.0:5555", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and "without CURVE" in result.stderr and "--insecure" in result.stderr and "--curve" in result.stderr


@pytest.mark.timeout(180)  # ~6 s idle: some 15 CLI processes
def test_secure_deployment_as_the_readme_shows(tmp_path: "os.PathLike[str]") -> None:
    """keys new / list / revoke, serve --curve, client keys by flag and by env, SIGHUP."""
    keys = os.path.join(tmp_path, "keys")

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "adapter", *args], capture_output=True, text=True, timeout=30,
                              env=env)

    def as_client(name: str) -> list[str]:
        return ["--client-key", os.path.join(keys, "private", f"{name}.key_secret"),
                "--server-key", os.path.join(keys, "server.key")]

    new = run("keys", "new", "strategy-1", "--accounts", ACCOUNT, "--permissions", "read,trade", "--keys-dir", keys)
    assert new.returncode == 0, new.stderr
    assert "created the server key pair" in new.stdout and "strategy-1.key_secret" in new.stdout
    assert run("keys", "new", "ops", "--accounts", "*", "--permissions", "read,admin", "--keys-dir", keys).returncode == 0
    again = run("keys", "new", "ops", "--accounts", "*", "--keys-dir", keys)
    assert again.returncode == 1 and "exists" in again.stderr
    listed = run("keys", "list", "--keys-dir", keys)
    assert re.search(rf"strategy-1\s+{ACCOUNT}\s+read,trade", listed.stdout), listed.stdout
    assert re.search(r"ops\s+\*\s+admin,read", listed.stdout) and "server key" in listed.stdout
    assert oct(os.stat(os.path.join(keys, "private", "ops.key_secret")).st_mode)[-3:] == "600"

    server = Server(os.path.join(tmp_path, "data"), "--curve", "--keys-dir", keys)
    try:
        keyless = cli(server, "ping", "--timeout", "1")
        assert keyless.returncode == 3 and "no answer" in keyless.stderr
        assert "the gateway there runs CURVE: pass --client-key and --server-key" in keyless.stderr
        ping = cli(server, "ping", *as_client("strategy-1"))
        assert ping.returncode == 0, ping.stderr
        assert ping.stdout.startswith(f"key strategy-1 (read, trade on {ACCOUNT})")
        env = {**os.environ, "QMT_ADAPTER_CLIENT_KEY": as_client("strategy-1")[1],
               "QMT_ADAPTER_SERVER_KEY": as_client("strategy-1")[3]}
        buy = subprocess.run(
            [sys.executable, "-m", "adapter", "buy", "--router", server.router, "--pub", server.pub, ACCOUNT,
             "600000.SH", "100", "10.70", "--client-order-id", "env-keys-1"],
            capture_output=True, text=True, timeout=30, env=env,
        )
        assert buy.returncode == 0 and "56 已成 filled" in buy.stdout, buy.stderr
        ops_buy = cli(server, "buy", ACCOUNT, "600000.SH", "100", "10.70", *as_client("ops"))
        assert ops_buy.returncode == 1 and "permission_denied" in ops_buy.stderr

        revoke = run("keys", "revoke", "strategy-1", "--keys-dir", keys)
        assert revoke.returncode == 0 and "revoked strategy-1" in revoke.stdout
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: cli(server, "ping", "--timeout", "1", *as_client("strategy-1")).returncode != 0,
                 timeout=15.0, interval=0.05, what="the revoked key to get no answer after SIGHUP")
        revoked = cli(server, "ping", "--timeout", "1", *as_client("strategy-1"))
        assert revoked.returncode == 3 and "the gateway there refuses this key" in revoked.stderr, revoked.stderr
        reload = cli(server, "reload", *as_client("ops"))
        assert reload.returncode == 0 and "keys admitted: ops" in reload.stdout, reload.stderr
    finally:
        assert server.stop() == 0
    log = "".join(server.output)
    assert "CURVE on" in log and "strategy-1 lost rights" in log
    assert "secret-key" not in log
    for name in ("ops", "strategy-1"):  # no secret key ever reaches the log
        with open(os.path.join(keys, "private", f"{name}.key_secret")) as handle:
            secret = re.search(r'secret-key = "(.+)"', handle.read())
        assert secret and secret.group(1) not in log


@pytest.mark.timeout(180)  # ~5 s idle: some 15 CLI processes
def test_kill_switch_and_risk_from_the_cli(tmp_path: "os.PathLike[str]") -> None:
    config = os.path.join(tmp_path, "gateway.toml")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write("[risk]\nmax_order_volume = 1000\n")
    server = Server(os.path.join(tmp_path, "data"), "--config", config)
    try:
        big = cli(server, "buy", ACCOUNT, "600000.SH", "2000", "10.60")
        assert big.returncode == 1 and "risk_denied: order.max_volume" in big.stderr
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("[risk]\nmax_order_volume = 5000\n")
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: cli(server, "buy", ACCOUNT, "600000.SH", "2000", "10.60", "--wait", "20").returncode == 0,
                 timeout=15.0, interval=0.05, what="the new limit to be picked up after SIGHUP")
        resting = cli(server, "buy", ACCOUNT, "600000.SH", "100", "10.00", "--no-wait")
        assert resting.returncode == 0 and "sent" in resting.stdout
        halt = cli(server, "halt", "--cancel-open", "--reason", "fat finger")
        assert halt.returncode == 0 and "trading halted (was normal): fat finger" in halt.stdout
        refused = cli(server, "buy", ACCOUNT, "600000.SH", "100", "10.00", "--intentional")
        assert refused.returncode == 1 and "trading.halted" in refused.stderr
        halted = cli(server, "ping")
        assert halted.returncode == 7 and "trading HALTED" in halted.stdout and "trading is halted" in halted.stderr
        assert cli(server, "ping", "--ignore-trading-state").returncode == 0
        wait_for(lambda: "(none)" in cli(server, "orders", ACCOUNT, "--cancelable").stdout,
                 timeout=15.0, interval=0.05, what="the open order to be cancelled")
        report = cli(server, "risk")
        assert report.returncode == 0 and "trading: halted (fat finger)" in report.stdout
        assert re.search(r"max_order_volume\s+5000", report.stdout)
        assert re.search(r"order\.max_volume\s+1", report.stdout) and re.search(r"trading\.halted\s+1", report.stdout)
        assert cli(server, "reduce-only").returncode == 0
        reducing = cli(server, "ping")
        assert reducing.returncode == 8 and "trading REDUCE-ONLY" in reducing.stdout, reducing.stdout
        assert cli(server, "resume").returncode == 0
        assert cli(server, "ping").returncode == 0
        assert cli(server, "buy", ACCOUNT, "600000.SH", "100", "10.00", "--intentional", "--no-wait").returncode == 0
    finally:
        assert server.stop() == 0
    log = "".join(server.output)
    assert "risk limits reloaded" in log and "HALTED" in log


def test_serve_stops_cleanly_on_a_second_signal_during_the_first(tmp_path: "os.PathLike[str]") -> None:
    """Two stop signals at once (a supervisor and a terminal, ``timeout`` passing its own on, Ctrl-C
    pressed twice): the gateway stops once, with exit code 0."""
    server = Server(tmp_path)
    try:
        os.kill(server.proc.pid, signal.SIGTERM)
        os.kill(server.proc.pid, signal.SIGINT)
        assert server.proc.wait(timeout=20) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
    wait_for(lambda: any("gateway: stopped" in line for line in server.output), what="the stop's last line")
    assert sum("signal received, stopping" in line for line in server.output) == 1, "".join(server.output)
