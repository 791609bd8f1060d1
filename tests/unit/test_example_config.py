"""examples/gateway.toml, the annotated configuration: every setting of adapter/config.py and
adapter/server/risk.py at its default, and each "# example:" block a working change of only
the settings it names, so the file cannot drift from the definitions."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from adapter.config import Config, SimConfig, load_config
from adapter.server.risk import Limits, parse_risk

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gateway.toml"
MARK = "# example:"
TABLES = ("sim", "risk")


def example_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, end) line indexes of each example's commented-out TOML, the lines after its mark."""
    blocks = []
    for index, line in enumerate(lines):
        if line.startswith(MARK):
            end = index + 1
            while end < len(lines) and lines[end].startswith("# "):
                end += 1
            assert end > index + 1, f"line {index + 1}: an example mark with no example under it"
            blocks.append((index + 1, end))
    return blocks


def uncommented(lines: list[str], block: tuple[int, int]) -> list[str]:
    return [line[2:] for line in lines[block[0]:block[1]]]


def named(body: dict) -> set[str]:
    """The settings an example sets, as dotted names (a nested table counts as one setting)."""
    out = set()
    for key, value in body.items():
        if key in TABLES:
            out |= {f"{key}.{inner}" for inner in value}
        else:
            out.add(key)
    return out


def with_example(lines: list[str], block: tuple[int, int]) -> str:
    """The file with one example uncommented in place; a top-level setting it names replaces
    the active line for it (TOML allows a key once)."""
    body = uncommented(lines, block)
    first_table = next(i for i, line in enumerate(lines) if line.startswith("["))
    replaced: set[str] = set()
    if not body[0].startswith("["):
        assert block[0] < first_table, "a top-level example must come before the first [table]"
        replaced = set(tomllib.loads("\n".join(body)))
    out = []
    for index, line in enumerate(lines):
        if block[0] <= index < block[1]:
            out.append(line[2:])
        elif index < first_table and line.split("=", 1)[0].strip() in replaced:
            continue
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def changed(config: Config) -> set[str]:
    """Dotted names of the settings where ``config`` differs from the definitions' defaults."""
    default = Config()
    out = {f.name for f in fields(Config) if f.name not in TABLES and getattr(config, f.name) != getattr(default, f.name)}
    out |= {f"sim.{f.name}" for f in fields(SimConfig) if getattr(config.sim, f.name) != getattr(default.sim, f.name)}
    risk = config.risk_config()
    out |= {f"risk.{f.name}" for f in fields(Limits) if getattr(risk.base, f.name) != getattr(Limits(), f.name)}
    out |= {name for name, level in (("risk.accounts", risk.accounts), ("risk.keys", risk.keys)) if level}
    return out


def test_the_example_file_is_exactly_the_defaults() -> None:
    config = load_config(EXAMPLE)
    assert changed(config) == set()
    assert config.sim == SimConfig()
    assert config.risk_config() == parse_risk({})


def test_every_setting_of_the_definitions_is_in_the_example_file() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    active = tomllib.loads(text)
    assert set(active) - set(TABLES) == {f.name for f in fields(Config)} - set(TABLES)
    assert set(active["sim"]) == {f.name for f in fields(SimConfig)} - {"positions"}  # positions: an example
    assert set(active["risk"]) == {f.name for f in fields(Limits)}
    lines = text.splitlines()
    in_examples = set().union(*(named(tomllib.loads("\n".join(uncommented(lines, block))))
                                for block in example_blocks(lines)))
    assert {"sim.positions", "risk.accounts", "risk.keys", "curve"} <= in_examples


def test_each_example_loads_and_changes_only_the_settings_it_names(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    blocks = example_blocks(lines)
    assert len(blocks) >= 4  # CURVE, positions, one account's and one key's limits
    for number, block in enumerate(blocks):
        path = tmp_path / f"example-{number}.toml"
        path.write_text(with_example(lines, block), encoding="utf-8")
        body = tomllib.loads("\n".join(uncommented(lines, block)))
        config = load_config(path)  # validates: a CURVE example on 0.0.0.0 must turn CURVE on
        assert changed(config) == named(body), lines[block[0] - 1]


def test_the_readme_configuration_section_points_at_the_example_file() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert "examples/gateway.toml" in section
