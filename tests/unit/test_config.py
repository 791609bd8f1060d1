"""Configuration: TOML, overrides, validation, and the safe default for endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.config import ConfigError, is_local_endpoint, load_config


def test_toml_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('accounts = ["1", "2"]\nbroker_timeout = 3\n[sim]\nprice_model = "walk"\ncash = 5\n', encoding="utf-8")
    config = load_config(path, router="tcp://127.0.0.1:7000")
    assert config.accounts == ("1", "2") and config.broker_timeout == 3.0 and config.router == "tcp://127.0.0.1:7000"
    assert config.sim.price_model == "walk" and config.sim.cash == 5.0


@pytest.mark.parametrize(
    "text, words",
    [
        ("routerr = 1\n", "unknown setting routerr"),
        ("broker_timeout = 'x'\n", "broker_timeout must be float"),
        ("insecure = 1\n", "insecure must be bool"),
        ("[sim]\nprice_model = 'jump'\n", "sim.price_model"),
        ("backend = 'qmt'\n", "needs qmt_path"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "endpoint, local",
    [
        ("tcp://127.0.0.1:5555", True), ("tcp://127.0.0.1:*", True), ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True), ("ipc:///tmp/gw", True), ("inproc://gw", True),
        ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://10.1.2.3:5555", False),
        ("tcp://eth0:5555", False), ("tcp://[::]:5555", False), ("udp://127.0.0.1:5555", False),
    ],
)
def test_which_endpoints_are_local(endpoint: str, local: bool) -> None:
    assert is_local_endpoint(endpoint) is local


def test_a_network_bind_without_encryption_needs_insecure() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, router="tcp://0.0.0.0:5555")
    assert "refusing to bind router tcp://0.0.0.0:5555 without CURVE" in str(info.value)
    assert "--insecure" in str(info.value)
    assert load_config(None, router="tcp://0.0.0.0:5555", insecure=True).insecure


def test_the_readme_lists_every_setting(tmp_path: Path) -> None:
    from dataclasses import fields

    from adapter.config import Config, SimConfig

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Configuration", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    listed = {line.split("=", 1)[0].strip() for line in block.splitlines() if "=" in line and not line.startswith("[")}
    from adapter.server.risk import Limits

    wanted = {f.name for f in fields(Config) if f.name not in ("sim", "risk")}
    wanted |= {f.name for f in fields(SimConfig) if f.name != "positions"} | {f.name for f in fields(Limits)}
    assert wanted <= listed, sorted(wanted - listed)
    assert "[risk]" in block and "[risk.accounts." in block and "[risk.keys." in block
    example = tmp_path / "readme-config.toml"  # the block is a working config file
    example.write_text(block, encoding="utf-8")
    assert load_config(example).risk_config().keys == {"strategy-1": {"orders_per_second": 5.0}}
    # The block is the configuration reference: every value in it is the definition's default
    # (the [risk.accounts] / [risk.keys] / [sim.positions] tables are examples, not defaults).
    from dataclasses import asdict

    listed_config = load_config(example)
    defaults = asdict(Config())
    for name, value in asdict(listed_config).items():
        if name == "sim":
            for sim_name, sim_value in value.items():
                if sim_name != "positions":
                    assert sim_value == defaults["sim"][sim_name], f"README sim.{sim_name}"
        elif name == "risk":
            limits = listed_config.risk_config().base
            assert limits == Limits(), "README [risk] differs from adapter/server/risk.py Limits defaults"
        else:
            assert value == defaults[name], f"README {name} = {value!r}, the default is {defaults[name]!r}"


def test_a_config_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_bytes("\ufeffaccounts = [\"1000000365\"]\n".encode("utf-8"))  # as Windows PowerShell 5.1 writes it
    assert load_config(path).accounts == ("1000000365",)
