"""What every client command shares: exit codes, the connection flags and the call that runs one."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import time
from typing import Any, Callable, Sequence

from ..config import DEFAULT_PUB, DEFAULT_ROUTER

# Exit codes, the same for every command (README, CLI).
EXIT_OK = 0
EXIT_ERROR = 1  # the gateway answered with an error (a risk rule, a bad argument, ...)
EXIT_USAGE = 2  # bad flags or arguments, unreadable key files
EXIT_UNREACHABLE = 3  # no answer within the time-out
EXIT_REFUSED = 4  # buy/sell/cancel: the counter refused the order or the cancel
EXIT_NO_VERDICT = 5  # buy/sell/cancel: no verdict from the counter within --wait
EXIT_DISCONNECTED = 6  # ping: the gateway answers, its counter connection is down
EXIT_HALTED = 7  # ping: trading halted (kill switch, or a store failed)
EXIT_REDUCE_ONLY = 8  # ping: trading reduce-only

FIRST_CONTACT_GRACE = 1.0  # seconds a gateway may take to answer before the CLI says what it is trying

Command = Callable[[Any, argparse.Namespace], int]


def err(message: str) -> None:
    """One line on stderr, as every command reports a problem."""
    print(f"qmt-adapter: {message}", file=sys.stderr, flush=True)


def add_command(commands: Any, name: str, help_text: str, description: str = "",
                examples: Sequence[str] = ()) -> argparse.ArgumentParser:
    """A subcommand with ``--help`` that says what it does and shows how (``examples``: command
    lines, each with an optional ``# comment``)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    text = description or help_text[:1].upper() + help_text[1:] + "."
    # Paragraphs written as one line are wrapped here; lines laid out by hand are kept.
    text = "\n\n".join(p if "\n" in p else textwrap.fill(p, 80) for p in text.split("\n\n"))
    sub: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=text, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return sub


def client_parser(commands: Any, name: str, help_text: str, command: Command, *, description: str = "",
                  examples: Sequence[str] = ()) -> argparse.ArgumentParser:
    """A subcommand that talks to a gateway: the connection flags, and ``command(client, args)`` to run."""
    env = os.environ.get
    sub = add_command(commands, name, help_text, description, examples)
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
    if name == "console":  # the console reads the gateway's own sockets (quotes, liveness): ZeroMQ only
        return sub
    sub.add_argument("--nats", metavar="URL", default=env("QMT_ADAPTER_NATS") or None,
                     help="reach the gateway through NATS (env QMT_ADAPTER_NATS); commands go by account")
    sub.add_argument("--gateway", metavar="NAME", default=env("QMT_ADAPTER_GATEWAY") or None,
                     help="with --nats: the gateway for commands without an account (env QMT_ADAPTER_GATEWAY)")
    return sub


def run_client(args: argparse.Namespace) -> int:
    import zmq

    from ..client import Client, GatewayError, GatewayTimeout
    from ..keys import KeyFileError

    # The client library logs time-outs and silences as warnings; the CLI says these things itself.
    logging.getLogger("adapter.client").setLevel(logging.ERROR)
    try:
        if getattr(args, "nats", None):
            gateway = {"gateway": args.gateway} if args.gateway else {}
            client = Client(nats=args.nats, timeout=args.timeout, **gateway)
            args.router = f"{args.nats} (NATS)"  # what messages name as the gateway's address
        else:
            client = Client(
                args.router, args.pub, timeout=args.timeout, client_key=args.client_key, server_key=args.server_key
            )
    except KeyFileError as exc:
        err(str(exc))
        return EXIT_USAGE
    except zmq.ZMQError as exc:  # a malformed endpoint
        err(f"--router {args.router} / --pub {args.pub}: {exc}")
        return EXIT_USAGE
    except ValueError as exc:  # a malformed --nats or --gateway
        err(str(exc))
        return EXIT_USAGE
    try:
        with client:
            if not first_contact(client, args):
                return EXIT_UNREACHABLE
            return int(args.client_command(client, args))
    except GatewayTimeout as exc:
        err(f"{exc.message}" if exc.message else f"no answer from the gateway at {args.router}")
        return EXIT_UNREACHABLE
    except GatewayError as exc:
        err(f"{exc.code}: {exc.message}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def first_contact(client: Any, args: argparse.Namespace) -> bool:
    """Ping the gateway. Silent when it answers within a second; else say at once what is tried,
    and when no answer comes within ``--timeout``, why that may be (False)."""
    from ..client import GatewayTimeout
    from ..keys import client_curve_keys

    if getattr(args, "nats", None):
        return True  # over NATS each command names its own failure (no_responders, a time-out)
    router, timeout = args.router, args.timeout
    started = time.monotonic()
    grace = min(FIRST_CONTACT_GRACE, timeout)
    try:
        client.ping(timeout=grace)
        return True
    except GatewayTimeout:
        pass
    remaining = timeout - (time.monotonic() - started)
    if remaining > 0.05:
        err(f"no answer yet from the gateway at {router}; trying for {round(remaining, 1):g} s more (Ctrl-C stops)")
        try:
            client.ping(timeout=remaining)
            return True
        except GatewayTimeout:
            pass
    curve = client_curve_keys(args.client_key, args.server_key)  # read fine already: the client has them
    err(f"no answer from the gateway at {router} within {timeout:g} s: {diagnose(router, curve)}")
    return False


def diagnose(router: str, curve: Any = None, seconds: float = 1.0) -> str:
    """Why a gateway may not answer, from what a fresh connection to ``router`` sees within
    ``seconds`` (ZeroMQ's socket monitor): nothing listening, a handshake refused (CURVE on one
    side only, a key not authorised, the wrong server key) or a peer that accepts and stays
    silent. ``curve``: the client's CurveKeys, or None."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message

    from ..monitors import close_monitor

    # Decisive: the handshake done, refused by mechanism (CURVE on one side only) or by the key.
    decisive = {zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH}
    seen: set[int] = set()
    probe: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    probe.setsockopt(zmq.LINGER, 0)
    monitor = probe.get_monitor_socket()
    try:
        from ..keys import apply_client_curve

        apply_client_curve(probe, curve)
        probe.connect(router)
        deadline = time.monotonic() + seconds
        # A refused TCP connection is retried: nothing listens, no need to wait longer.
        while not seen & decisive and not (zmq.EVENT_CONNECT_RETRIED in seen and zmq.EVENT_CONNECTED not in seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not monitor.poll(int(remaining * 1000) + 1):
                break
            seen.add(int(recv_monitor_message(monitor)["event"]))
    except zmq.ZMQError as exc:  # a malformed endpoint, say
        return f"cannot connect to {router}: {exc}"
    finally:
        close_monitor(probe, monitor)
        probe.close(linger=0)
    keys = curve is not None
    if zmq.EVENT_HANDSHAKE_FAILED_AUTH in seen:
        return ("the gateway there refuses this key: check that it is authorised ('qmt-adapter keys list' on the "
                "gateway host, then 'qmt-adapter reload')")
    if zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL in seen:
        if keys:
            return ("the gateway there does not run CURVE: connect without --client-key and --server-key (and "
                    "without QMT_ADAPTER_CLIENT_KEY / QMT_ADAPTER_SERVER_KEY)")
        return ("the gateway there runs CURVE: pass --client-key and --server-key (or QMT_ADAPTER_CLIENT_KEY / "
                "QMT_ADAPTER_SERVER_KEY)")
    if zmq.EVENT_HANDSHAKE_SUCCEEDED in seen:
        return "a gateway accepts connections there but did not answer in time: busy or stuck? (see its log)"
    if zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL in seen:  # the peer hung up mid-handshake
        if keys:
            return ("something there closes the connection during the handshake: check that --server-key is that "
                    "gateway's server.key")
        return "something there accepts connections but closes them: is that the --router of 'qmt-adapter serve'?"
    if zmq.EVENT_CONNECTED in seen:
        return "something listens there but does not answer: is that the --router of 'qmt-adapter serve'?"
    return f"nothing answers there: is 'qmt-adapter serve' running with --router {router}?"
