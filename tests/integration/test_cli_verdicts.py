"""What the CLI says when things go wrong, as a person runs it: the counter refusing an order (the
sim's real rules), an order sent without waiting, the counter connection lost (ping), the
gateway falling silent under a running `tail` and being heard again."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import zmq

from ..conftest import ACCOUNT
from ..support.market import counter_process
from .test_cli import Server, cli, read_lines


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def test_a_sell_without_shares_is_refused_by_the_counter_with_its_message(server: Server) -> None:
    # The account holds nothing by default: the counter junks the order (57) and says why.
    sell = cli(server, "sell", ACCOUNT, "600000.SH", "100", "10.50", "--wait", "20")
    assert sell.returncode == 4, sell.stdout + sell.stderr
    order_id = re.match(r"order (\d+) sent: 卖出 sell 600000.SH 100 @ 10.50 ", sell.stdout).group(1)
    assert sell.stderr.strip().splitlines() == [
        f"qmt-adapter: order {order_id} refused by the counter: 57 废单 rejected: "
        "[COUNTER] [120149][证券可用数量不足][occur_amount=100,enable_amount=0]"]
    orders = cli(server, "orders", ACCOUNT)
    assert re.search(rf"{order_id} .*卖出 sell .*57 废单 rejected", orders.stdout), orders.stdout


def test_a_buy_beyond_the_cash_is_refused_and_a_no_wait_order_only_sent(server: Server) -> None:
    # 1,000,000 CNY of cash by default; 100,000 shares at 10.70 need 1,070,000 and more.
    big = cli(server, "buy", ACCOUNT, "600000.SH", "100000", "10.70", "--wait", "20")
    assert big.returncode == 4 and "57 废单 rejected" in big.stderr and "资金可用金额不足" in big.stderr, big.stderr
    blind = cli(server, "buy", ACCOUNT, "600000.SH", "100000", "10.70", "--no-wait")
    assert blind.returncode == 0 and blind.stderr == ""
    assert re.fullmatch(r"order \d+ sent: 买入 buy 600000.SH 100000 @ 10.70 \(client_order_id \w+\)\n", blind.stdout)


def test_a_repeated_client_order_id_gets_the_first_verdict_from_the_counters_books(server: Server) -> None:
    first = cli(server, "buy", ACCOUNT, "600000.SH", "100", "10.70", "--client-order-id", "cli-v1", "--wait", "20")
    again = cli(server, "buy", ACCOUNT, "600000.SH", "100", "10.70", "--client-order-id", "cli-v1", "--wait", "20")
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert first.stdout == again.stdout and "56 已成 filled" in again.stdout  # no new events: read from the books
    assert len(re.findall(r"^filled 100 @ 10.60", again.stdout, re.M)) == 1


def test_ping_exits_6_when_the_counter_connection_is_lost(gateway_factory: Any) -> None:
    gateway = gateway_factory(sim_process=True)
    common = ["--router", gateway.router_endpoint, "--pub", gateway.pub_endpoint, "--timeout", "5"]

    def ping() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "adapter", "ping", *common], capture_output=True, text=True,
                              timeout=30)

    assert ping().returncode == 0
    counter_process(gateway).kill()
    deadline = time.monotonic() + 20
    result = ping()
    while result.returncode == 0 and time.monotonic() < deadline:
        result = ping()  # until the gateway has noticed the lost counter
    assert result.returncode == 6, result.stdout + result.stderr
    assert "counter NOT connected" in result.stdout and "the counter is not connected" in result.stderr


@pytest.mark.timeout(90)  # ~5 s idle: 3 s of silence, then the heartbeat again
def test_tail_says_when_the_gateway_falls_silent_and_when_it_is_heard_again(server: Server) -> None:
    tail = subprocess.Popen(
        [sys.executable, "-m", "adapter", "tail", "--router", server.router, "--pub", server.pub, "--timeout", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    stopped = False
    try:
        assert tail.stdout is not None
        lines = read_lines(tail.stdout)

        seen: list[str] = []

        def next_line(what: str) -> str:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    break
                seen.append(line)
                if what in line:
                    return line
            pytest.fail(f"tail never printed a line with {what!r}: {seen}")

        next_line("# subscribed")
        # The stream watches for silence once it has heard a heartbeat: one heard here, on a SUB
        # that joined after tail's proven subscription, has reached tail too.
        heartbeat = zmq.Context.instance().socket(zmq.SUB)
        try:
            heartbeat.setsockopt(zmq.SUBSCRIBE, b"gateway.heartbeat")
            heartbeat.connect(server.pub)
            assert heartbeat.poll(20_000), "no heartbeat from the gateway"
        finally:
            heartbeat.close(linger=0)
        server.proc.send_signal(signal.SIGSTOP)  # the gateway hangs: no heartbeat, no event
        stopped = True
        silent = next_line("gateway.liveness")
        assert silent.startswith("!! ") and "no heartbeat from the gateway for " in silent, silent
        server.proc.send_signal(signal.SIGCONT)
        stopped = False
        back = next_line("gateway.liveness")
        assert back.startswith("!! ") and back.rstrip().endswith("the gateway is heard again"), back
    finally:
        if stopped:
            server.proc.send_signal(signal.SIGCONT)
        tail.kill()
        tail.wait(10)
