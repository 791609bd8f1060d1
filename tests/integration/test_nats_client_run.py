"""`qmt-adapter run --nats URL` runs the seed quick-start unchanged through NATS and places its order."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from adapter.client import Client

from ..conftest import ACCOUNT, wait_for
from ..support.nats import BridgeProcess, NatsServer

SEED = Path(__file__).resolve().parents[1] / "scripts" / "qmt_quickstart.py"


def test_the_seed_quickstart_runs_unchanged_through_nats(gateway_factory: Any, tmp_path: Path) -> None:
    server = NatsServer(tmp_path).start()
    gateway = gateway_factory(accounts=[ACCOUNT])
    bridge = BridgeProcess(tmp_path, server.url, gateway.router_endpoint, gateway.pub_endpoint, "gw-a").start()
    try:
        with Client(nats=server.url, timeout=10.0) as probe:
            wait_for(lambda: "gw-a" in probe.gateways, timeout=30.0, interval=0.1, what="the bridge's health")
        done = subprocess.run([sys.executable, "-m", "adapter", "run", "--nats", server.url, str(SEED)],
                              capture_output=True, text=True, timeout=90, cwd=SEED.parent)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        for line in ("connect: 0", "subscribe: 0", "cancel_ret: 0"):
            assert line in out, out
        order_id = int(re.search(r"order_id: (-?\d+)", out).group(1))  # type: ignore[union-attr]
        assert order_id > 0
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as local:
            assert [o.order_id for o in local.query_stock_orders(ACCOUNT)] == [order_id]
    finally:
        bridge.stop()
        server.stop()
