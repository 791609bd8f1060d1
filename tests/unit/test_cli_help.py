"""Every subcommand says what it does and shows how, and the README's CLI section names every
subcommand and every long flag: whatever subcommands exist when this runs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Iterator

from adapter.cli import _parser

README = Path(__file__).resolve().parents[2] / "README.md"


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every subcommand of the tree, by its path of names (``("keys", "new")``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from subcommands(sub, path + (name,))


def cli_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## CLI\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_the_tree_is_walked() -> None:
    names = {" ".join(path) for path, _ in subcommands(_parser())}
    assert {"serve", "buy", "tail", "ledger rebuild", "keys new", "quote"} <= names


def test_every_subcommand_has_a_description_and_an_example() -> None:
    missing = []
    for path, sub in subcommands(_parser()):
        epilog = sub.epilog or ""
        examples = [line.strip() for line in epilog.splitlines() if line.strip().startswith("qmt-adapter ")]
        if not (sub.description or "").strip() or "example" not in epilog or not examples:
            missing.append(" ".join(path))
        elif not all(line.split()[1:1 + len(path)] == list(path) for line in examples):
            missing.append(f"{' '.join(path)} (an example runs another command)")
        elif not issubclass(sub.formatter_class, argparse.RawDescriptionHelpFormatter):
            missing.append(f"{' '.join(path)} (the examples' lines are not kept)")
    assert not missing, f"subcommands without a description and an example: {missing}"


def test_help_shows_the_examples_as_written() -> None:
    for path, sub in subcommands(_parser()):
        text = sub.format_help()
        assert "example" in text and f"qmt-adapter {' '.join(path)}" in text, path


def test_the_readme_cli_section_names_every_subcommand_and_long_flag() -> None:
    section = cli_section()
    words = set(re.findall(r"[\w-]+", section))
    flags = set(re.findall(r"--[\w-]+", section))
    usage = set(re.findall(r"[\w-]+", "\n".join(line for line in section.splitlines()
                                                 if line.startswith("qmt-adapter "))))
    unnamed, unlisted = [], []
    for path, sub in subcommands(_parser()):
        if path[0] not in usage or path[-1] not in words:  # e.g. "qmt-adapter asset|positions ACCOUNT"
            unnamed.append(" ".join(path))
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in flags:
                    unlisted.append(f"{' '.join(path)} {option}")
    assert not unnamed, f"subcommands the README's CLI section does not name: {unnamed}"
    assert not unlisted, f"flags the README's CLI section does not name: {unlisted}"


def test_the_readme_lists_the_exit_codes_the_cli_uses() -> None:
    from adapter.cli import common

    section = cli_section()
    codes = {name: value for name, value in vars(common).items() if name.startswith("EXIT_")}
    assert len(set(codes.values())) == len(codes)  # one meaning per code
    for value in codes.values():
        assert re.search(rf"^\| {value} \| ", section, re.M), f"exit code {value} is not in the README's table"
