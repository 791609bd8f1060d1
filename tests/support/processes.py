"""Gateways in their own processes (``qmt-adapter serve``), and whether one answers."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


class GatewayProcess:
    def __init__(self, data_dir: Path, router: str, pub: str, sim_settings: str = "") -> None:
        config = data_dir / "gateway.toml"
        # The burst sends identical orders faster than the default rate limit: both off here.
        risk = "[risk]\norders_per_second = 0\norders_per_day = 0\nduplicate_window = 0\nmax_open_orders = 0\n"
        config.write_text(f"{risk}[sim]\ncash = 10000000000.0\n{sim_settings}\n", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adapter", "serve", "--router", router, "--pub", pub,
             "--data-dir", str(data_dir), "--config", str(config), "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @staticmethod
    def stop_all(*gateways: "GatewayProcess | None") -> None:
        for gateway in gateways:
            if gateway is not None and gateway.proc.poll() is None:
                gateway.proc.send_signal(signal.SIGTERM)
                try:
                    gateway.proc.wait(15)
                except subprocess.TimeoutExpired:
                    gateway.proc.kill()


def pings(client: Any) -> bool:
    """True when the gateway answers a ping within 0.5 s and its counter is connected."""
    from adapter.client import GatewayError

    try:
        return bool(client.ping(timeout=0.5).connected)
    except GatewayError:
        return False
