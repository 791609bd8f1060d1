"""A lost order ledger is refused at start, never silently replaced (PROTOCOL §9.6).

Before this check, a gateway whose orders.sqlite3 was deleted, truncated or had lost its -wal
started without a word, and re-sending the same client_order_ids placed every order twice,
although the journal named those ids and the counter's orders carried the old tags. Each test
takes a real gateway (in this process or as ``qmt-adapter serve``) through that loss.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from adapter.broker import XtBroker
from adapter.client import Client
from adapter.server.ledger import LedgerUnreadable
from adapter.server import stores
from adapter.server.stores import StoresMismatch

from ..conftest import ACCOUNT, free_port, make_config, subscribed_log, trading_session, wait_for
from ..support.market import market

BUY, LIMIT = 23, 11
# (client order id, op, volume, remark): a filled order, an async one, one the counter numbers and
# then refuses (an odd lot: status 57).
ORDERS = (("L1", "order_stock", 100, "first"), ("L2", "order_stock_async", 200, ""), ("L3", "order_stock", 150, "odd"))
FINAL = {"L1": "acknowledged", "L2": "acknowledged", "L3": "rejected"}
# A gateway process runs the default instrument checks, which refuse an odd lot before the counter.
KILL_ORDERS = ORDERS[:2] + (("K3", "order_stock", 300, "third"),)
KILL_FINAL = {"L1": "acknowledged", "L2": "acknowledged", "K3": "acknowledged"}


def send(client: Client, cid: str, op: str, volume: int, remark: str) -> Any:
    return getattr(client, op)(ACCOUNT, "600000.SH", BUY, volume, LIMIT, 10.70, "s", remark, client_order_id=cid)


def place(client: Client, log: Any, orders: tuple[tuple[str, str, int, str], ...] = ORDERS,
          answers: dict[str, Any] | None = None) -> dict[str, int]:
    """Send the orders, wait until each is settled and its events are journaled; their order ids
    (and in ``answers`` what each send returned)."""
    for order in orders:
        answer = send(client, *order)
        if answers is not None:
            answers[order[0]] = answer
    wanted = {cid: (FINAL | KILL_FINAL)[cid] for cid, *_ in orders}
    wait_for(lambda: {r.client_order_id: r.state for r in client.order_outcomes(ACCOUNT)
                      if r.client_order_id in wanted} == wanted, timeout=10.0, what="the orders to settle")
    for cid in wanted:  # published, so journaled first
        log.wait("order", timeout=10.0, client_order_id=cid)
    return {r.client_order_id: r.order_id for r in client.order_outcomes(ACCOUNT) if r.client_order_id in wanted}


def counter_order_ids(gateway: Any) -> list[int]:
    return sorted(market(gateway).books(ACCOUNT)["orders"])


def broker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "qmt-broker" and t.is_alive()]


def assert_refusal(message: str, data_dir: Path) -> None:
    assert "refusing to start" in message
    assert str(data_dir / "orders.sqlite3") in message and str(data_dir / "journal.sqlite3") in message
    assert f"qmt-adapter ledger rebuild --data-dir {data_dir}" in message
    assert "qmt-adapter serve --reset-ledger" in message


def run_cli(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapter", *args], capture_output=True, text=True, timeout=timeout)


def lose_ledger(data_dir: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{data_dir / 'orders.sqlite3'}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def history(gateway_factory: Any, tmp_path: Path) -> tuple[Path, dict[str, int], list[int], dict[str, Any]]:
    """A data dir whose gateway placed ORDERS and was stopped: (dir, order ids, the counter's
    orders, the first answers)."""
    data_dir = tmp_path / "gw"
    gateway = gateway_factory(data_dir=str(data_dir))
    answers: dict[str, Any] = {}
    with trading_session(gateway) as (client, log):
        placed = place(client, log, answers=answers)
    orders = counter_order_ids(gateway)
    gateway.stop()
    return data_dir, placed, orders, answers


def test_a_deleted_ledger_is_refused_with_the_files_and_the_ways_out(gateway_factory: Any, history: Any) -> None:
    data_dir, *_ = history
    lose_ledger(data_dir)
    with pytest.raises(StoresMismatch) as refused:
        gateway_factory(data_dir=str(data_dir))
    message = str(refused.value)
    assert_refusal(message, data_dir)
    assert "is missing" in message and all(f"{ACCOUNT}/{cid}" in message for cid in FINAL)
    assert not (data_dir / "orders.sqlite3").exists()  # the refused start left the dir as it was
    wait_for(lambda: not broker_threads(), what="the refused start to stop its broker")

    # The same through the CLI: a non-zero exit, the message on stderr, nothing served.
    run = run_cli("serve", "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*", "--data-dir", str(data_dir))
    assert run.returncode != 0 and "serving:" not in run.stderr
    assert_refusal(run.stderr, data_dir)
    assert not (data_dir / "orders.sqlite3").exists()


def test_a_ledger_cut_short_is_refused(gateway_factory: Any, history: Any) -> None:
    data_dir, *_ = history
    path = data_dir / "orders.sqlite3"
    os.truncate(path, path.stat().st_size // 2)  # a file cut short: SQLite cannot read it
    with pytest.raises(LedgerUnreadable) as unreadable:
        gateway_factory(data_dir=str(data_dir))
    assert "cannot be read" in str(unreadable.value) and str(path) in str(unreadable.value)
    assert "ledger rebuild" in str(unreadable.value) and "--reset-ledger" in str(unreadable.value)


def test_a_ledger_with_its_newest_records_gone_is_refused(gateway_factory: Any, history: Any) -> None:
    data_dir, *_ = history
    gateway_factory(data_dir=str(data_dir)).stop()  # a start notes the ledger's numbers in the journal
    db = sqlite3.connect(data_dir / "orders.sqlite3")  # what a restored older copy looks like
    db.execute("DELETE FROM orders WHERE client_order_id != 'L1'")
    db.commit()
    db.close()
    with pytest.raises(StoresMismatch) as refused:
        gateway_factory(data_dir=str(data_dir))
    message = str(refused.value)
    assert_refusal(message, data_dir)
    assert "has lost records" in message and f"{ACCOUNT}/L2" in message and f"{ACCOUNT}/L1" not in message
    assert "up to number 3" in message  # the journal's note of the ledger at the last start


@pytest.mark.timeout(180)  # two gateway processes
def test_a_ledger_that_lost_its_wal_to_kill_9_is_refused_then_rebuilt(gateway_factory: Any, tmp_path: Path) -> None:
    from ..support.processes import GatewayProcess, pings

    router, pub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    first = GatewayProcess(tmp_path, router, pub)
    second = None
    try:
        with Client(router, pub, timeout=10.0) as client, subscribed_log(client) as log:
            wait_for(lambda: pings(client), timeout=30.0, interval=0.1, what="the gateway to start")
            placed = place(client, log, KILL_ORDERS[:1])  # L1 reaches the main file: the stop checkpoints it
        GatewayProcess.stop_all(first)
        assert first.proc.returncode == 0
        second = GatewayProcess(tmp_path, router, pub)
        with Client(router, pub, timeout=10.0) as client, subscribed_log(client) as log:
            wait_for(lambda: pings(client), timeout=30.0, interval=0.1, what="the gateway to restart")
            placed |= place(client, log, KILL_ORDERS[1:])  # L2, K3 only in the ledger's -wal
        second.proc.send_signal(signal.SIGKILL)
        second.proc.wait(10)
    finally:
        GatewayProcess.stop_all(first, second)
    wal = tmp_path / "orders.sqlite3-wal"
    assert wal.exists() and wal.stat().st_size > 0
    wal.unlink()  # lost with the machine, or left behind by a copy of the data dir
    (tmp_path / "orders.sqlite3-shm").unlink(missing_ok=True)

    with pytest.raises(StoresMismatch) as refused:
        gateway_factory(data_dir=str(tmp_path))
    message = str(refused.value)
    assert_refusal(message, tmp_path)
    assert "has lost records" in message and f"{ACCOUNT}/L2" in message and f"{ACCOUNT}/K3" in message
    assert "tagged by this ledger" in message  # the counter's orders carry the lost records' tags

    # The rebuild keeps L1 as it is and recovers L2 and K3 from the journal and the counter.
    config = make_config(data_dir=str(tmp_path))

    def counter_view() -> Any:
        broker = XtBroker(config, lambda item: None)
        try:
            broker.start()
            return dict(broker.view)
        finally:
            broker.stop()

    report = stores.rebuild(tmp_path, counter_view)
    assert report.written and any("recovered 2 records" in line for line in report.lines), report.lines
    assert not report.warnings, report.warnings
    gateway = gateway_factory(data_dir=str(tmp_path))
    before = counter_order_ids(gateway)
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as client:
        for order in KILL_ORDERS:
            assert send(client, *order).order_id == placed[order[0]]
        outcomes = {r.client_order_id: r.state for r in client.order_outcomes(ACCOUNT)}
    assert outcomes == KILL_FINAL and counter_order_ids(gateway) == before


@pytest.mark.timeout(120)
def test_after_a_rebuild_the_same_ids_return_their_first_outcomes(gateway_factory: Any, history: Any) -> None:
    data_dir, placed, orders, first = history
    lose_ledger(data_dir)

    run = run_cli("ledger", "rebuild", "--data-dir", str(data_dir))
    assert run.returncode == 0, run.stderr
    assert "recovered 3 records (2 acknowledged, 1 rejected)" in run.stdout and "done:" in run.stdout
    assert "WARNING" not in run.stderr, run.stderr

    gateway = gateway_factory(data_dir=str(data_dir))
    assert counter_order_ids(gateway) == orders
    with trading_session(gateway) as (client, log):
        for cid, op, volume, remark in ORDERS:
            again = send(client, cid, op, volume, remark)
            if op == "order_stock":
                expected = first[cid].to_dict() | {"seq": None}  # xtquant's seq is not kept by a rebuild
                assert again.to_dict() == expected, cid
            else:
                assert (again.client_order_id, again.order_id) == (cid, placed[cid])
        # The same ids under both ops, and once more after the first repeat: still no new order.
        assert send(client, "L1", "order_stock_async", 100, "first").order_id == placed["L1"]
        assert counter_order_ids(gateway) == orders
        assert {r.client_order_id: r.state for r in client.order_outcomes(ACCOUNT)} == FINAL
        # The counter's orders map back to the recovered records: their ids and the users' remarks.
        mapped = {o.order_id: (o.client_order_id, o.order_remark) for o in client.query_stock_orders(ACCOUNT)}
        assert {mapped[placed[cid]] for cid in FINAL} == {("L1", "first"), ("L2", ""), ("L3", "odd")}
        # A new id is a new order, with a tag no earlier order has.
        fresh = send(client, "L4", "order_stock", 100, "new")
        assert fresh.order_id not in orders and len(counter_order_ids(gateway)) == len(orders) + 1
        record = gateway.ledger.get(ACCOUNT, "L4")
        assert record is not None and record.id == 4
        tags = [o["order_remark"] for o in market(gateway).books(ACCOUNT)["orders"].values()]
        assert tags.count(record.tag) == 1


@pytest.mark.timeout(120)  # two gateway processes
def test_reset_ledger_starts_fresh_and_says_so(history: Any) -> None:
    from .test_cli import Server

    data_dir, *_ = history
    db = sqlite3.connect(data_dir / "orders.sqlite3")
    db.execute("DELETE FROM orders WHERE client_order_id = 'L3'")
    db.commit()
    db.close()

    server = Server(data_dir, "--reset-ledger")
    try:
        with Client(server.router, server.pub, timeout=5.0) as client:
            assert client.order_outcomes(ACCOUNT) == []  # the new ledger knows nothing
    finally:
        assert server.stop() == 0
    said = "".join(server.output)
    assert "order ledger RESET" in said and "ORDER LEDGER RESET by the operator" in said
    assert f"{ACCOUNT}/L1" in said and "NEW order" in said  # what is no longer known, in so many words
    archived = sorted(data_dir.glob("orders.sqlite3.reset-*"))
    assert len(archived) == 1 and str(archived[0]) in said
    kept = sqlite3.connect(archived[0])
    assert {row[0] for row in kept.execute("SELECT client_order_id FROM orders")} == {"L1", "L2"}
    kept.close()

    again = Server(data_dir)  # accepted for good: the next start needs no flag
    try:
        with Client(again.router, again.pub, timeout=5.0) as client:
            assert client.ping().connected
    finally:
        assert again.stop() == 0
    assert "RESET" not in "".join(again.output)


def test_a_fresh_data_dir_starts_and_notes_its_ledger(gateway_factory: Any, tmp_path: Path) -> None:
    gateway = gateway_factory(data_dir=str(tmp_path / "new"))
    assert gateway.journal.meta("ledger_prefix") == gateway.ledger.tag_prefix
    with trading_session(gateway) as (client, log):
        placed = place(client, log, ORDERS[:1])
    gateway.stop()
    restarted = gateway_factory(data_dir=str(tmp_path / "new"))  # an intact ledger starts as before
    with Client(restarted.router_endpoint, restarted.pub_endpoint, timeout=5.0) as client:
        assert send(client, *ORDERS[0]).order_id == placed["L1"]
    assert restarted.journal.meta("ledger_high_water") == "1"


def test_neither_repair_touches_the_stores_of_a_running_gateway(gateway_factory: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "live"
    gateway = gateway_factory(data_dir=str(data_dir))
    rebuild = run_cli("ledger", "rebuild", "--data-dir", str(data_dir), "--journal-only")
    assert rebuild.returncode == 1 and "stop the gateway" in rebuild.stderr
    reset = run_cli("serve", "--reset-ledger", "--router", "tcp://127.0.0.1:*", "--pub", "tcp://127.0.0.1:*",
                    "--data-dir", str(data_dir))
    assert reset.returncode == 1 and "cannot reset the order ledger" in reset.stderr
    assert not list(data_dir.glob("orders.sqlite3.*")) and gateway.ledger is not None
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as client:
        assert client.ping().connected
