"""``qmt-adapter console``: the operator's live view; the console package (Textual) is imported
only when the command runs, so the rest of the CLI starts fast."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .common import client_parser

DESCRIPTION = """\
A live view of the gateway for the person watching it: the counter connection, the trading
state with the kill switch one key away, each account's asset, positions with P&L, working
orders (cancel the selected one), fills, the latest events, risk denials and quotes of the
codes held. It is a client like any other: a CURVE key's rights apply (a read-only key sees
everything; the kill switch and cancels need admin and trade). When the gateway does not
answer, the console says so and keeps trying.

Keys: k kill switch (halt, confirmed), r reduce-only, u resume, c cancel the selected
working order (confirmed), a next account, tab next panel, q quit.

--web serves the same app to a browser (textual-serve): one console process per page."""

EXAMPLES = [
    "qmt-adapter console",
    "qmt-adapter console --account 1000000365",
    "qmt-adapter console --router tcp://gw:5555 --pub tcp://gw:5556 --client-key ops.key_secret --server-key server.key",
    "qmt-adapter console --web                       # then open http://127.0.0.1:8080",
    "qmt-adapter console --web --host 127.0.0.1 --port 8081",
]


def _not_a_client_command(client: Any, args: argparse.Namespace) -> int:
    raise AssertionError("console runs its own client")  # the handler below replaces run_client


def register(commands: Any) -> None:
    sub = client_parser(commands, "console", "a live view of the gateway with the kill switch (terminal or --web)",
                        _not_a_client_command, description=DESCRIPTION, examples=EXAMPLES)
    sub.set_defaults(handler=run)  # its own client, on the console's event loop
    sub.add_argument("--account", action="append", default=[], metavar="ID",
                     help="show this account (repeat for more; default: every account the key may see)")
    sub.add_argument("--events", type=int, default=200, metavar="N",
                     help="rows the events view keeps (default 200)")
    sub.add_argument("--web", action="store_true", help="serve the console as a web page instead")
    sub.add_argument("--host", default="127.0.0.1", help="with --web: the address to listen on (default 127.0.0.1)")
    sub.add_argument("--port", type=int, default=8080, help="with --web: the port (default 8080)")
    sub.add_argument("--public-url", metavar="URL", default=None,
                     help="with --web: the page's address as browsers reach it (default http://HOST:PORT)")
    sub.add_argument("--insecure", action="store_true",
                     help="with --web: allow a --host other than loopback (the page has no login of its own)")


def _app_args(args: argparse.Namespace) -> list[str]:
    """The flags the console needs again in the process textual-serve starts per page."""
    argv = ["--router", args.router, "--pub", args.pub, "--timeout", f"{args.timeout:g}", "--events", str(args.events)]
    for flag, value in (("--client-key", args.client_key), ("--server-key", args.server_key)):
        if value:  # a file is named absolutely (the page's process may start elsewhere); a Z85 key as it is
            argv += [flag, os.path.abspath(value) if os.path.exists(value) else value]
    for account in args.account:
        argv += ["--account", account]
    return argv


def run(args: argparse.Namespace) -> int:
    if args.events < 1:
        print("qmt-adapter: --events must be at least 1", file=sys.stderr)
        return 2
    if args.web:
        from ..console.web import is_loopback, serve

        if not is_loopback(args.host) and not args.insecure:
            print(f"qmt-adapter: --host {args.host} is not loopback: anyone who reaches the page can halt trading "
                  "and cancel orders with this console's key. Put it behind a proxy that authenticates, or pass "
                  "--insecure", file=sys.stderr)
            return 2
        serve(_app_args(args), args.host, args.port, args.public_url)
        return 0
    from ..client import GatewayError
    from ..console import ConsoleApp
    from ..console.web import end_with_server
    from ..keys import KeyFileError

    end_with_server()
    try:
        app = ConsoleApp(args.router, args.pub, timeout=args.timeout, client_key=args.client_key,
                         server_key=args.server_key, accounts=args.account, events_kept=args.events)
        app.run()
    except KeyFileError as exc:
        print(f"qmt-adapter: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"qmt-adapter: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0
