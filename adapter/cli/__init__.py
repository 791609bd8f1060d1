"""``qmt-adapter``: run the gateway, or talk to one. The only place that configures logging.

Each module registers its own subcommands; a subcommand's ``handler(args)`` runs it."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .. import __version__
from . import console, local, market, trading
from . import bridge, sim
from .common import EXIT_ERROR, EXIT_UNREACHABLE

__all__ = ["EXIT_ERROR", "EXIT_UNREACHABLE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        if getattr(args, "handler", None) is None:
            parser.print_help()
            return 2
        return int(args.handler(args))
    except BrokenPipeError:  # output piped into head or less, closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmt-adapter", description="ZeroMQ gateway for the QMT / miniQMT trading terminal."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    local.register_serve(commands)
    trading.register(commands)
    market.register(commands)
    local.register(commands)
    sim.register(commands)
    console.register(commands)
    bridge.register(commands)
    return parser
