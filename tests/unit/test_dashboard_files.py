"""The monitoring profile's files, checked without a Docker engine: the compose files parse and
name files that exist, images are pinned, Prometheus scrapes the port the gateway serves metrics
on, Grafana is provisioned with that Prometheus and the dashboard file, and the dashboard's
PromQL names only metrics (tests/integration/test_dashboard.py scrapes a real gateway for them)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "qmt-adapter.json"
PROFILE = "monitoring"
PROMETHEUS_PORT = 9090  # Prometheus's own default listen address, :9090

# PromQL words that are not metric names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range and subquery windows
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    expr = re.sub(r"\boffset\s+\S+", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("(") or match.group() in KEYWORDS:
            continue  # a function or aggregation
        names.add(match.group())
    return names


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return out


def expressions(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(board) for target in panel.get("targets", [])]


def dashboard_metrics(board: dict[str, Any]) -> set[str]:
    """Every metric the dashboard's panels and variables query."""
    names = set().union(*(metric_names(expr) for expr in expressions(board)))
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        names |= set(re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,", text))
    return names


def compose() -> tuple[dict[str, Any], dict[str, Any]]:
    main = load_yaml(DOCKER / "compose.yaml")
    services = dict(main["services"])
    for included in main.get("include", []):
        path = included if isinstance(included, str) else included["path"]
        other = load_yaml(DOCKER / path)
        assert not set(other["services"]) & set(services), "an included service repeats one of compose.yaml"
        services.update(other["services"])
    return main, services


def dockerfile_cmd() -> list[str]:
    text = re.sub(r"\\\n\s*", " ", (DOCKER / "Dockerfile").read_text(encoding="utf-8"))
    [cmd] = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("CMD ")]
    return list(json.loads(cmd))


def gateway_metrics_port(services: dict[str, Any]) -> int:
    command = services["gateway"]["command"]
    return int(command[command.index("--metrics-port") + 1])


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (relative to docker/)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out[target] = (DOCKER / source).resolve()
    return out


def test_metric_names_are_read_from_promql() -> None:
    expr = ('histogram_quantile(0.99, sum by (op, le) (rate(qmt_adapter_command_seconds_bucket'
            '{instance=~"$instance", op!="ping"}[$__rate_interval]))) / on (op) group_left '
            'max without (le) (qmt_adapter_x_total offset 5m) or vector(0) > bool 1e3')
    assert metric_names(expr) == {"qmt_adapter_command_seconds_bucket", "qmt_adapter_x_total"}
    assert metric_names('up{job="qmt-adapter"} == 1') == {"up"}


def test_the_monitoring_services_are_a_profile_with_pinned_images_and_existing_files() -> None:
    main, services = compose()
    assert set(main["services"]) == {"gateway", "strategy", "tail"}  # a plain "up" starts only these
    monitoring = {name for name, service in services.items() if PROFILE in service.get("profiles", [])}
    assert monitoring == {"prometheus", "grafana"}
    assert all(service.get("profiles") == [PROFILE] for name, service in services.items() if name in monitoring)
    for name in monitoring:
        image = services[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+", image), f"{name}: image {image} is not pinned by version"
        for target, source in mounts(services[name]).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
        for port in services[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} is not on the host's loopback"
        for dependency in services[name].get("depends_on", []):
            assert dependency in services, f"{name} depends on {dependency}, which no compose file defines"


def test_the_gateway_runs_the_images_command_with_metrics() -> None:
    _main, services = compose()
    port = gateway_metrics_port(services)
    assert services["gateway"]["command"] == dockerfile_cmd() + ["--metrics-port", str(port)]


def test_prometheus_scrapes_the_gateways_metrics_port() -> None:
    _main, services = compose()
    prometheus = services["prometheus"]
    # The gateway serves metrics on its loopback: Prometheus shares its network to reach it.
    assert prometheus["network_mode"] == "service:gateway"
    config_path = mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    config = load_yaml(config_path)
    [job] = config["scrape_configs"]
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    assert targets == [f"127.0.0.1:{gateway_metrics_port(services)}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # The dashboard's scrape-health panel asks for this job by name.
    jobs = set(re.findall(r'\bup\{[^}]*job="([^"]+)"', "\n".join(expressions(dashboard()))))
    assert jobs == {job["job_name"]}


def test_grafana_is_provisioned_with_that_prometheus_and_the_dashboard() -> None:
    _main, services = compose()
    grafana = mounts(services["grafana"])
    provisioning = grafana["/etc/grafana/provisioning"]
    [datasource] = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    url = urlsplit(datasource["url"])
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    network = services["prometheus"]["network_mode"].removeprefix("service:")
    assert "command" not in services["prometheus"]  # so it listens on its default port
    assert (url.hostname, url.port) == (network, PROMETHEUS_PORT)
    [provider] = load_yaml(provisioning / "dashboards" / "qmt-adapter.yaml")["providers"]
    assert provider["type"] == "file"
    assert grafana[provider["options"]["path"]] == DASHBOARD.parent.resolve()


def test_the_dashboard_is_well_formed_and_queries_every_metric_asked_for() -> None:
    board = dashboard()
    all_panels = panels(board)
    assert len({panel["id"] for panel in all_panels}) == len(all_panels)
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]  # importable anywhere
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for expr in expressions(board):
        if "qmt_adapter_" in expr:
            assert 'instance=~"$instance"' in expr, expr  # the gateway picker applies to every panel
    names = dashboard_metrics(board)
    assert {
        "qmt_adapter_commands_total", "qmt_adapter_command_seconds_bucket", "qmt_adapter_events_published_total",
        "qmt_adapter_journal_bytes", "qmt_adapter_last_seq", "qmt_adapter_counter_connected",
        "qmt_adapter_unknown_orders", "qmt_adapter_risk_denials_total", "qmt_adapter_trading_state",
        "qmt_adapter_connected_clients", "qmt_adapter_storage_failed",
    } <= names
    assert {name for name in names if not name.startswith("qmt_adapter_")} == {"up"}  # Prometheus's own series
