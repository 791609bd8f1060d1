"""The Grafana dashboard against a real gateway: every metric its PromQL names is on the gateway's
/metrics once the gateway has done what each panel shows (a filled order, a risk denial, an
error, a store that cannot be written), and every metric the gateway exports has a panel."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapter.client import GatewayError
from adapter.server.killswitch import FILE_NAME

from ..conftest import ACCOUNT, free_port, trading_session, wait_filled, wait_for
from ..unit.test_dashboard_files import dashboard, dashboard_metrics

PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself, not the gateway


def scrape(port: int) -> dict[str, set[str]]:
    """Family name -> the sample names it exported (counters and histograms have several)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    # A counter's or histogram's creation time comes as a family of its own: no panel needs it.
    return {family.name: {sample.name for sample in family.samples}
            for family in text_string_to_metric_families(text) if not family.name.endswith("_created")}


def test_every_metric_the_dashboard_queries_is_exported_and_every_export_has_a_panel(
        gateway_factory: Any, tmp_path: Path) -> None:
    wanted = dashboard_metrics(dashboard()) - PROMETHEUS_OWN
    data = tmp_path / "data"
    gateway = gateway_factory(metrics_port=free_port(), risk={"max_order_volume": 1000}, heartbeat_interval=0.1,
                              data_dir=str(data))
    with trading_session(gateway) as (client, log):
        order_id = client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.60, "dashboard", "").order_id
        with pytest.raises(GatewayError) as denied:
            client.order_stock(ACCOUNT, "600000.SH", "buy", 2000, "limit", 10.60, "dashboard", "")
        assert denied.value.code == "risk_denied"
        wait_filled(log, order_id)
        # A real storage fault: the trading-state file's temporary cannot be made, so the halt is
        # not saved and qmt_adapter_storage_failed{store="trading-state"} appears.
        (data / FILE_NAME).with_suffix(".tmp").mkdir()
        assert client.halt(reason="dashboard test").persisted is False

        def exported() -> dict[str, set[str]] | None:
            families = scrape(gateway.metrics_port)
            return families if wanted <= set().union(*families.values()) else None

        try:
            families = wait_for(exported, timeout=15.0, interval=0.1, what="every metric the dashboard queries")
        except pytest.fail.Exception:
            missing = wanted - set().union(*scrape(gateway.metrics_port).values())
            pytest.fail(f"the dashboard queries metrics the gateway does not export: {sorted(missing)}")
    missing_panels = {name for name, samples in families.items()
                      if name.startswith("qmt_adapter_") and not samples & wanted}
    assert not missing_panels, f"metrics the gateway exports with no panel in the dashboard: {sorted(missing_panels)}"
