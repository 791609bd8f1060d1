"""What every client command shares: exit codes, the connection flags and the call that runs one."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

from ..config import DEFAULT_PUB, DEFAULT_ROUTER

EXIT_ERROR = 1  # the gateway answered with an error
EXIT_UNREACHABLE = 3  # no answer within the time-out

Command = Callable[[Any, argparse.Namespace], int]


def client_parser(commands: Any, name: str, help_text: str, command: Command) -> argparse.ArgumentParser:
    """A subcommand that talks to a gateway: the connection flags, and ``command(client, args)`` to run."""
    env = os.environ.get
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    sub.set_defaults(handler=run_client, client_command=command)
    sub.add_argument("--router", default=env("QMT_ADAPTER_ROUTER") or DEFAULT_ROUTER,
                     help=f"gateway ROUTER endpoint (env QMT_ADAPTER_ROUTER; default {DEFAULT_ROUTER})")
    sub.add_argument("--pub", default=env("QMT_ADAPTER_PUB") or DEFAULT_PUB,
                     help=f"gateway PUB endpoint (env QMT_ADAPTER_PUB; default {DEFAULT_PUB})")
    sub.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default 10)")
    sub.add_argument("--client-key", metavar="FILE", default=env("QMT_ADAPTER_CLIENT_KEY") or None,
                     help="this client's NAME.key_secret, for a CURVE gateway (env QMT_ADAPTER_CLIENT_KEY)")
    sub.add_argument("--server-key", metavar="FILE", default=env("QMT_ADAPTER_SERVER_KEY") or None,
                     help="the gateway's server.key or its Z85 public key (env QMT_ADAPTER_SERVER_KEY)")
    return sub


def run_client(args: argparse.Namespace) -> int:
    from ..client import Client, GatewayError, GatewayTimeout
    from ..keys import KeyFileError

    try:
        client = Client(
            args.router, args.pub, timeout=args.timeout, client_key=args.client_key, server_key=args.server_key
        )
    except KeyFileError as exc:
        print(f"qmt-adapter: {exc}", file=sys.stderr)
        return 2
    try:
        with client:
            return int(args.client_command(client, args))
    except GatewayTimeout:
        hint = (
            "; if it runs CURVE, check that this key is authorised and the server key is right"
            if client.uses_curve else "; if it runs CURVE, pass --client-key and --server-key"
        )
        print(f"qmt-adapter: no answer from the gateway at {args.router} within {args.timeout:g} s{hint}",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    except GatewayError as exc:
        print(f"qmt-adapter: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
