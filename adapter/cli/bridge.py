"""``qmt-adapter bridge``: one gateway on NATS with JetStream (PROTOCOL §18, docs/topology.md)."""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

from ..config import DEFAULT_PUB, DEFAULT_ROUTER
from .common import EXIT_USAGE, add_command, err


def register(commands: Any) -> None:
    env = os.environ.get
    bridge = add_command(
        commands, "bridge", "put a gateway on NATS: events into JetStream, commands from qmt.cmd.<account>",
        description="Run beside a gateway: publish every journaled event into the JetStream stream "
                    "(qmt.evt.<account>.<type>, once each, in seq order; a restart resumes where the stream "
                    "ends), serve the gateway's accounts on qmt.cmd.<account> (queue group per account, so a "
                    "standby bridge takes over) and report liveness on qmt.health.<name>. The gateway stays "
                    "as it is: the bridge is one of its clients. SIGINT / SIGTERM stop it (exit 0).",
        examples=["qmt-adapter bridge --nats nats://127.0.0.1:4222 --name gw1",
                  "qmt-adapter bridge --nats nats://n1:4222,nats://n2:4222 --name gw1 --replicas 3 "
                  "--max-age 604800 --creds /etc/qmt/bridge.creds --tls-ca /etc/qmt/ca.pem"])
    bridge.add_argument("--nats", required=True, metavar="URL",
                        help="NATS server URL, or several comma-separated (a cluster)")
    bridge.add_argument("--router", default=env("QMT_ADAPTER_ROUTER") or DEFAULT_ROUTER,
                        help=f"gateway ROUTER endpoint (env QMT_ADAPTER_ROUTER; default {DEFAULT_ROUTER})")
    bridge.add_argument("--pub", default=env("QMT_ADAPTER_PUB") or DEFAULT_PUB,
                        help=f"gateway PUB endpoint (env QMT_ADAPTER_PUB; default {DEFAULT_PUB})")
    bridge.add_argument("--name", metavar="GATEWAY",
                        help="this gateway's name in subjects and headers (default: the host name)")
    bridge.add_argument("--stream", default="QMT_EVENTS", help="JetStream stream (default QMT_EVENTS)")
    bridge.add_argument("--replicas", type=int, default=1, help="stream replicas when the bridge creates it (default 1)")
    bridge.add_argument("--max-age", type=float, default=0.0, metavar="SECONDS",
                        help="stream retention by age when the bridge creates it (default: unlimited)")
    bridge.add_argument("--max-bytes", type=int, default=-1, metavar="N",
                        help="stream retention by size when the bridge creates it (default: unlimited)")
    bridge.add_argument("--duplicate-window", type=float, default=600.0, metavar="SECONDS",
                        help="the stream's de-duplication window when the bridge creates it (default 600)")
    bridge.add_argument("--creds", metavar="FILE", help="NATS credentials file (JWT and NKey seed)")
    bridge.add_argument("--nkey-seed", metavar="FILE", help="NATS NKey seed file")
    bridge.add_argument("--user", help="NATS user name (with --password-file)")
    bridge.add_argument("--password-file", metavar="FILE", help="file holding the NATS password")
    bridge.add_argument("--tls-ca", metavar="FILE", help="CA certificate to verify the NATS server (TLS)")
    bridge.add_argument("--client-key", metavar="FILE", default=env("QMT_ADAPTER_CLIENT_KEY") or None,
                        help="this client's NAME.key_secret, for a CURVE gateway (env QMT_ADAPTER_CLIENT_KEY)")
    bridge.add_argument("--server-key", metavar="FILE", default=env("QMT_ADAPTER_SERVER_KEY") or None,
                        help="the gateway's server.key (env QMT_ADAPTER_SERVER_KEY)")
    bridge.add_argument("--max-message-size", type=int, default=65536, metavar="BYTES",
                        help="the gateway's max_message_size: larger commands are refused here (default 65536)")
    bridge.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO")
    bridge.set_defaults(handler=bridge_command)


def bridge_command(args: argparse.Namespace) -> int:
    from ..keys import KeyFileError, client_curve_keys
    from ..logs import configure
    from ..nats.bridge import BridgeConfig, run_bridge
    from ..nats.subjects import check_token

    configure(args.log_level)
    name = args.name or socket.gethostname().split(".")[0]
    try:
        check_token(name, "--name")
        curve = client_curve_keys(args.client_key, args.server_key)
    except (ValueError, KeyFileError) as exc:
        err(str(exc))
        return EXIT_USAGE
    if args.replicas < 1:
        err(f"--replicas must be at least 1, got {args.replicas}")
        return EXIT_USAGE
    if (args.user is None) != (args.password_file is None):
        err("--user and --password-file go together")
        return EXIT_USAGE
    password = None
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as file:
                password = file.read().strip()
        except OSError as exc:
            err(f"--password-file {args.password_file}: {exc.strerror}")
            return EXIT_USAGE
    for flag, path in (("--creds", args.creds), ("--nkey-seed", args.nkey_seed), ("--tls-ca", args.tls_ca)):
        if path and not os.path.isfile(path):
            err(f"{flag} {path}: no such file")
            return EXIT_USAGE
    config = BridgeConfig(
        nats=args.nats, router=args.router, pub=args.pub, name=name, stream=args.stream, replicas=args.replicas,
        max_age=args.max_age, max_bytes=args.max_bytes, duplicate_window=args.duplicate_window,
        user=args.user, password=password, creds=args.creds, nkey_seed=args.nkey_seed, tls_ca=args.tls_ca,
        curve=curve, max_message_size=args.max_message_size,
    )
    run_bridge(config)
    return 0
