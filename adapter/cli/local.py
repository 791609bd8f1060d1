"""Commands that run here rather than ask a gateway: serve, run, ledger, keys."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from typing import Any

from .. import __version__
from ..config import DEFAULT_KEYS_DIR, DEFAULT_PUB, DEFAULT_ROUTER, ConfigError, load_config
from ..display import table
from ..signals import StopSignals
from .common import add_command

log = logging.getLogger("adapter")


def serve_command(args: argparse.Namespace) -> int:
    from ..broker import BrokerStartError
    from ..server import Gateway

    backend = args.backend or ("qmt" if args.qmt_path else None)
    try:
        config = load_config(
            args.config,
            router=args.router,
            pub=args.pub,
            quote_pub=args.quote_pub,
            backend=backend,
            qmt_path=args.qmt_path,
            sim_process=True if args.sim_process else None,
            session_id=args.session_id,
            accounts=args.account or None,
            data_dir=args.data_dir,
            curve=True if args.curve else None,
            keys_dir=args.keys_dir,
            insecure=True if args.insecure else None,
            log_json=True if args.log_json else None,
            metrics_port=args.metrics_port,
            log_level=args.log_level,
        )
    except ConfigError as exc:
        print(f"qmt-adapter: {exc}", file=sys.stderr)
        return 2
    from ..logs import configure

    configure(config.log_level, config.log_json)
    log.info("qmt-adapter %s starting (backend %s)", __version__, config.backend)
    if args.reset_ledger:
        from ..server.ledger import reset

        try:
            reset(config.data_dir)  # archives orders.sqlite3 and says so loudly; the start records what is lost
        except (RuntimeError, OSError) as exc:
            log.error("cannot reset the order ledger: %s", exc)
            return 1
    stop = StopSignals()
    stop.install()
    if config.curve:
        from ..keys import KeyFileError, ensure_server_key

        try:
            public, created = ensure_server_key(config.keys_dir)
        except (KeyFileError, OSError) as exc:
            log.error("cannot start: %s", exc)
            return 1
        if created:
            log.info("created the server key pair; give %s to clients", public)
    gateway = Gateway(config, args.config)
    if hasattr(signal, "SIGHUP"):  # not on Windows: use 'qmt-adapter reload' there
        signal.signal(signal.SIGHUP, lambda *_: gateway.reload())
    from ..server.ledger import LedgerUnreadable
    from ..server.stores import StoresMismatch

    try:
        gateway.start()
    except (StoresMismatch, LedgerUnreadable) as exc:  # the message says what is wrong and the ways out
        log.critical("%s", exc)
        return 1
    except BrokerStartError as exc:
        log.error("cannot start: %s", exc)
        return 1
    except Exception as exc:  # zmq bind errors and the like: one line, not a trace
        log.error("cannot start: %s", exc)
        return 1
    # What start-up made (instrument tables, books, imports) lives as long as the process: the
    # cyclic collector leaves it alone from now on, so a full collection is not a stall.
    gc.freeze()
    for account_id, books in gateway.broker.view.items():
        asset = books["asset"] or {}
        log.info(
            "account %s: cash %s, %d positions, %d orders, %d trades today",
            account_id,
            asset.get("cash"),
            len(books["positions"]),
            len(books["orders"]),
            len(books["trades"]),
        )
    # Wake now and then so Ctrl-C is seen promptly on every platform.
    while stop.received is None:
        if gateway.wait(0.5):
            log.error("the I/O loop ended unexpectedly")
            gateway.stop()
            return 1
    log.info("signal received, stopping")
    gateway.stop()
    return 0


def run_script(args: argparse.Namespace) -> int:
    from ..compat.runner import run

    for value, name in ((args.client_key, "QMT_ADAPTER_CLIENT_KEY"), (args.server_key, "QMT_ADAPTER_SERVER_KEY")):
        if value:
            os.environ[name] = value
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args.script, args.args, args.router, args.pub, args.nats)


def ledger_command(args: argparse.Namespace) -> int:
    """``qmt-adapter ledger rebuild``: the order ledger recovered from the journal and the counter."""
    if args.ledger_command == "prune":
        return _ledger_prune(args)
    if args.ledger_command != "rebuild":
        args.ledger_parser.print_help()
        return 2
    backend = args.backend or ("qmt" if args.qmt_path else None)
    try:
        config = load_config(args.config, data_dir=args.data_dir, accounts=args.account or None, backend=backend,
                             qmt_path=args.qmt_path, log_level=args.log_level)
    except ConfigError as exc:
        print(f"qmt-adapter: {exc}", file=sys.stderr)
        return 2
    from ..logs import configure
    from ..server.stores import rebuild

    configure(config.log_level)

    def counter_view() -> Any:
        from ..broker import XtBroker

        broker = XtBroker(config, lambda item: None)  # only its start-up queries are wanted
        try:
            broker.start()
            return dict(broker.view)
        finally:
            broker.stop()

    from ..broker import BrokerStartError

    try:
        report = rebuild(config.data_dir, None if args.journal_only else counter_view, dry_run=args.dry_run)
    except Exception as exc:  # the counter unreachable, a store in use or unreadable: one line
        print(f"qmt-adapter: ledger rebuild failed: {exc}", file=sys.stderr)
        if isinstance(exc, BrokerStartError):
            print("qmt-adapter: --journal-only rebuilds from the journal alone, without the counter",
                  file=sys.stderr)
        return 1
    for line in report.lines:
        print(line)
    for warning in report.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if report.written:
        print(f"done: start the gateway on {config.data_dir} as before")
    return 0


def _ledger_prune(args: argparse.Namespace) -> int:
    """``qmt-adapter ledger prune --before DATE``: settled records of earlier days deleted."""
    import datetime as dt

    from ..server.stores import prune

    try:
        before = dt.date.fromisoformat(args.before)
        config = load_config(args.config, data_dir=args.data_dir)
        deleted, kept = prune(config.data_dir, before)
    except (ValueError, ConfigError, RuntimeError) as exc:  # a bad date, or a gateway still running
        print(f"qmt-adapter: ledger prune failed: {exc}", file=sys.stderr)
        return 1
    print(f"deleted {deleted} settled records created before {before}"
          + (f"; kept {kept} that the journal still names on or after that day" if kept else ""))
    return 0


def keys_command(args: argparse.Namespace) -> int:
    from ..keys import (
        KeyFileError, ensure_server_key, load_client_keys, load_server_secret, new_client_key, parse_accounts,
        parse_permissions, revoke_client_key,
    )

    try:
        if args.keys_command == "new":
            server, created = ensure_server_key(args.keys_dir)
            if created:
                print(f"created the server key pair: {server} (public, for clients) and its .key_secret")
            public, secret = new_client_key(
                args.keys_dir, args.name, parse_accounts(args.accounts), parse_permissions(args.permissions)
            )
            print(f"authorised {args.name}: {public}")
            print(f"its secret key: {secret}")
            print(f"give {secret.name} and {server.name} to that client, then delete {secret} here;")
            print("a running gateway admits the key after 'qmt-adapter reload' or SIGHUP")
        elif args.keys_command == "list":
            server_public, _ = load_server_secret(args.keys_dir)
            print(f"server key {server_public.decode()}  ({os.path.join(args.keys_dir, 'server.key')})")
            rows = [(k.name, k.describe_accounts(), ",".join(sorted(k.permissions)), k.public_key)
                    for k in sorted(load_client_keys(args.keys_dir).values(), key=lambda k: k.name)]
            table(("name", "accounts", "permissions", "public key"), rows)
        elif args.keys_command == "revoke":
            path = revoke_client_key(args.keys_dir, args.name)
            print(f"revoked {args.name} (moved to {path}); it is cut off at the gateway's next reload "
                  "('qmt-adapter reload' or SIGHUP)")
        else:
            args.keys_parser.print_help()
            return 2
    except (KeyFileError, OSError) as exc:
        print(f"qmt-adapter: {exc}", file=sys.stderr)
        return 1
    return 0


def register_serve(commands: Any) -> None:
    serve = add_command(
        commands, "serve", "run the gateway (simulated counter unless --qmt-path is given)",
        description="Run the gateway: commands on the ROUTER, events on the PUB, quotes on the quote PUB. "
                    "Without --qmt-path it runs over the simulated counter; with it, beside a logged-in "
                    "QMT / miniQMT. Off loopback it needs --curve (or --insecure). SIGHUP reloads the risk "
                    "limits and keys; SIGINT / SIGTERM stop it cleanly (exit 0).",
        examples=["qmt-adapter serve",
                  "qmt-adapter serve --data-dir gw-data --config gateway.toml",
                  'qmt-adapter serve --qmt-path "D:\\qmt\\userdata_mini" --account 1000000365',
                  "qmt-adapter serve --curve --router tcp://0.0.0.0:5555 --pub tcp://0.0.0.0:5556"])
    serve.add_argument("--router", help=f"ROUTER endpoint for commands (default {DEFAULT_ROUTER})")
    serve.add_argument("--pub", help=f"PUB endpoint for events (default {DEFAULT_PUB})")
    serve.add_argument("--quote-pub", help="PUB endpoint for market data quotes (default: the PUB's port + 1)")
    serve.add_argument("--backend", choices=("sim", "qmt"), help="default: sim, or qmt when --qmt-path is given")
    serve.add_argument("--qmt-path", help="QMT's userdata_mini folder (backend qmt)")
    serve.add_argument("--sim-process", action="store_true",
                       help="backend sim: run the simulated counter in its own process, as QMT runs")
    serve.add_argument("--session-id", type=int, help="xtquant session id (default: a fresh random one)")
    serve.add_argument("--account", action="append", metavar="ID", help="fund account to serve; repeatable (default 1000000365)")
    serve.add_argument("--data-dir", metavar="DIR", help="where the event journal lives (default ./qmt-adapter-data)")
    serve.add_argument("--config", metavar="FILE", help="TOML file with the same settings; flags override it")
    serve.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    serve.add_argument("--curve", action="store_true",
                       help="encrypt both sockets and admit only the client keys in --keys-dir")
    serve.add_argument("--keys-dir", metavar="DIR", help=f"server and client keys (default ./{DEFAULT_KEYS_DIR})")
    serve.add_argument("--log-json", action="store_true", help="log JSON lines instead of text")
    serve.add_argument("--metrics-port", type=int, metavar="PORT",
                       help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (default: off)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow non-loopback endpoints without CURVE (only on a network you trust)")
    serve.add_argument("--reset-ledger", action="store_true",
                       help="set the order ledger aside (kept as orders.sqlite3.reset-<time>) and start with an empty "
                            "one: repeats of earlier client_order_ids become NEW orders (see 'ledger rebuild')")
    serve.set_defaults(handler=serve_command)


def register(commands: Any) -> None:
    run = add_command(
        commands, "run", "run an xtquant strategy script unchanged against the gateway",
        description="Run a Python script written for xtquant unchanged: its xtquant.xttrader and xtdata talk "
                    "to the gateway at --router / --pub instead of a local QMT.",
        examples=["qmt-adapter run my_strategy.py",
                  "qmt-adapter run --router tcp://QMT_HOST:5555 --pub tcp://QMT_HOST:5556 my_strategy.py --its-flag"])
    run.add_argument("--router", help="gateway ROUTER endpoint (env QMT_ADAPTER_ROUTER; default tcp://127.0.0.1:5555)")
    run.add_argument("--pub", help="gateway PUB endpoint (env QMT_ADAPTER_PUB; default: the router's port + 1)")
    run.add_argument("--client-key", help="NAME.key_secret for a CURVE gateway (env QMT_ADAPTER_CLIENT_KEY)")
    run.add_argument("--server-key", help="the gateway's server.key (env QMT_ADAPTER_SERVER_KEY)")
    run.add_argument("--nats", metavar="URL", help="trade through NATS instead (env QMT_ADAPTER_NATS)")
    run.add_argument("script", help="a Python file that uses xtquant.xttrader")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    run.set_defaults(handler=run_script)

    ledger = add_command(
        commands, "ledger", "repair the order ledger (orders.sqlite3), with the gateway stopped",
        description="Repair or trim the order ledger (orders.sqlite3 in the data dir), which recognises a "
                    "repeated client_order_id. Run with the gateway stopped.",
        examples=["qmt-adapter ledger rebuild --data-dir gw-data",
                  "qmt-adapter ledger prune --before 2026-01-01 --data-dir gw-data"])
    ledger.set_defaults(ledger_parser=ledger, handler=ledger_command)
    ledger_commands = ledger.add_subparsers(dest="ledger_command", metavar="ACTION")
    rebuild = add_command(
        ledger_commands, "rebuild", "recover lost ledger records from the journal's events and the counter's "
                                    "tagged orders",
        examples=["qmt-adapter ledger rebuild --data-dir gw-data --dry-run",
                  "qmt-adapter ledger rebuild --data-dir gw-data --journal-only"])
    rebuild.add_argument("--data-dir", metavar="DIR", help="the gateway's data dir (default ./qmt-adapter-data)")
    rebuild.add_argument("--config", metavar="FILE", help="the gateway's TOML file (backend, accounts, data_dir)")
    rebuild.add_argument("--account", action="append", metavar="ID", help="fund account whose orders to read; repeatable")
    rebuild.add_argument("--backend", choices=("sim", "qmt"), help="default: sim, or qmt when --qmt-path is given")
    rebuild.add_argument("--qmt-path", help="QMT's userdata_mini folder (backend qmt)")
    rebuild.add_argument("--journal-only", action="store_true",
                         help="do not connect to the counter: recover from the journal alone")
    rebuild.add_argument("--dry-run", action="store_true", help="report what would be recovered, write nothing")
    rebuild.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="WARNING")

    prune = add_command(
        ledger_commands, "prune", "delete settled records created before a day (the ledger then answers "
                                  "order_outcomes and repeats of those client_order_ids no more)",
        examples=["qmt-adapter ledger prune --before 2026-01-01 --data-dir gw-data"])
    prune.add_argument("--before", required=True, metavar="YYYY-MM-DD", help="first day kept (China time)")
    prune.add_argument("--data-dir", metavar="DIR", help="the gateway's data dir (default ./qmt-adapter-data)")
    prune.add_argument("--config", metavar="FILE", help="the gateway's TOML file (its data_dir)")

    keys = add_command(
        commands, "keys", "create, list and revoke CURVE keys",
        description="Manage the CURVE keys of a gateway run with --curve: the server's key pair and one key per "
                    "client, each with its accounts and permissions (read, trade, admin).",
        examples=["qmt-adapter keys new strategy-1 --accounts 1000000365 --permissions read,trade",
                  "qmt-adapter keys list", "qmt-adapter keys revoke strategy-1"])
    keys.set_defaults(keys_parser=keys, handler=keys_command)
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    new = add_command(keys_commands, "new", "authorise a new client key (and create the server key if missing)",
                      examples=["qmt-adapter keys new strategy-1 --accounts 1000000365 --permissions read,trade",
                                "qmt-adapter keys new ops --accounts '*' --permissions read,admin"])
    new.add_argument("name", help="the client's name, shown in logs and ping")
    new.add_argument("--accounts", required=True, metavar="IDS",
                     help="comma list of the accounts it may use, or '*' for every account served")
    new.add_argument("--permissions", default="read", metavar="LIST",
                     help="comma list of read (queries, events), trade (orders, cancels), admin (reload); default read")
    listing = add_command(keys_commands, "list", "show the server key and the authorised client keys",
                          examples=["qmt-adapter keys list --keys-dir /etc/qmt-adapter/keys"])
    revoke = add_command(keys_commands, "revoke", "withdraw a client key (takes effect on reload)",
                         examples=["qmt-adapter keys revoke strategy-1 && qmt-adapter reload"])
    revoke.add_argument("name", help="the client's name, as 'keys list' shows it")
    for sub in (new, listing, revoke):
        sub.add_argument("--keys-dir", default=DEFAULT_KEYS_DIR, metavar="DIR",
                         help=f"the keys directory (default ./{DEFAULT_KEYS_DIR})")
