"""``qmt-adapter``: run the gateway, or talk to one. The only place that configures logging."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
from typing import Any, Sequence

from . import __version__
from .config import DEFAULT_KEYS_DIR, DEFAULT_PUB, DEFAULT_ROUTER, ConfigError, load_config
from .protocol import mapping

log = logging.getLogger("adapter")

EXIT_ERROR = 1  # the gateway answered with an error
EXIT_UNREACHABLE = 3  # no answer within the time-out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # output piped into head or less, closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "serve":
        return _serve(args)
    if args.command == "keys":
        return _keys(args)
    if args.command == "run":
        return _run_script(args)
    if args.command == "ledger":
        return _ledger(args)
    return _client_command(args)


# -- serve -------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from .broker import BrokerStartError
    from .server import Gateway

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
    from .logs import configure

    configure(config.log_level, config.log_json)
    log.info("qmt-adapter %s starting (backend %s)", __version__, config.backend)
    if args.reset_ledger:
        from .server.ledger import reset

        try:
            reset(config.data_dir)  # archives orders.sqlite3 and says so loudly; the start records what is lost
        except (RuntimeError, OSError) as exc:
            log.error("cannot reset the order ledger: %s", exc)
            return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if config.curve:
        from .keys import KeyFileError, ensure_server_key

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
    from .server.ledger import LedgerUnreadable
    from .server.stores import StoresMismatch

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
    while not stop.wait(0.5):
        if gateway.wait(0):
            log.error("the I/O loop ended unexpectedly")
            gateway.stop()
            return 1
    log.info("signal received, stopping")
    gateway.stop()
    return 0


# -- client commands ---------------------------------------------------------------------


def _client_command(args: argparse.Namespace) -> int:
    from .client import Client, GatewayError, GatewayTimeout
    from .keys import KeyFileError

    try:
        client = Client(
            args.router, args.pub, timeout=args.timeout, client_key=args.client_key, server_key=args.server_key
        )
    except KeyFileError as exc:
        print(f"qmt-adapter: {exc}", file=sys.stderr)
        return 2
    try:
        with client:
            return _COMMANDS[args.command](client, args)
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


def _cmd_ping(client: Any, args: argparse.Namespace) -> int:
    info = client.ping()
    state = "connected" if info.connected else "NOT connected"
    unknown = info.get("unknown_orders") or 0
    key = info.get("key")
    print(
        (f"key {key.name} ({', '.join(key.permissions)} on {key.accounts}); " if key else "")
        + f"gateway {info.server_version} (protocol v{info.protocol_version}), backend {info.backend}, "
        f"counter {state}, accounts {', '.join(info.accounts)}, last seq {info.last_seq}"
        + (f", {unknown} order{'s' if unknown != 1 else ''} with unknown outcome" if unknown else "")
        + (f", trading {info.trading_state.upper()}" if info.get("trading_state", "normal") != "normal" else "")
    )
    return 0 if info.connected else EXIT_ERROR


def _cmd_asset(client: Any, args: argparse.Namespace) -> int:
    asset = client.query_stock_asset(args.account)
    if asset is None:
        print("no asset")
        return 0
    for name in ("account_id", "cash", "frozen_cash", "market_value", "total_asset", "fetch_balance"):
        print(f"{name:14} {_fmt(getattr(asset, name))}")
    return 0


def _cmd_positions(client: Any, args: argparse.Namespace) -> int:
    rows = [
        (p.stock_code, p.instrument_name, p.volume, p.can_use_volume, p.frozen_volume, p.avg_price, p.last_price, p.market_value)
        for p in client.query_stock_positions(args.account)
    ]
    _table(("code", "name", "volume", "can_use", "frozen", "avg_price", "last", "market_value"), rows)
    return 0


def _cmd_orders(client: Any, args: argparse.Namespace) -> int:
    orders = client.query_stock_orders(args.account, args.cancelable)
    rows = [
        (
            o.order_id,
            o.client_order_id,
            o.stock_code,
            mapping.ORDER_TYPE_NAMES.get(o.order_type, o.order_type),
            o.order_volume,
            o.price,
            o.traded_volume,
            o.traded_price,
            _status(o.order_status),
            o.status_msg,
            o.order_remark,
        )
        for o in orders
    ]
    _table(
        ("order_id", "client_order_id", "code", "side", "volume", "price", "traded", "avg_price", "status",
         "message", "remark"),
        rows,
    )
    # Orders the gateway sent that the counter does not list: their outcome, as recorded.
    at_counter = {o.client_order_id for o in orders}
    missing = [r for r in client.order_outcomes(args.account) if r.client_order_id not in at_counter]
    if missing and not args.cancelable:
        print("\nnot at the counter:")
        _table(
            ("client_order_id", "outcome", "order_id", "strategy", "remark", "message"),
            [(r.client_order_id, r.state, r.order_id, r.strategy_name, r.order_remark, r.error_msg) for r in missing],
        )
    return 0


def _cmd_trades(client: Any, args: argparse.Namespace) -> int:
    rows = [
        (
            t.traded_id,
            _time(t.traded_time),
            t.stock_code,
            mapping.ORDER_TYPE_NAMES.get(t.order_type, t.order_type),
            t.traded_volume,
            t.traded_price,
            t.traded_amount,
            t.commission,
            t.order_id,
        )
        for t in client.query_stock_trades(args.account)
    ]
    _table(("traded_id", "time", "code", "side", "volume", "price", "amount", "commission", "order_id"), rows)
    return 0


def _cmd_order(client: Any, args: argparse.Namespace) -> int:
    price_type = int(args.price_type) if args.price_type.isdigit() else args.price_type
    response = client.order_stock(
        args.account,
        args.code,
        args.command,
        args.volume,
        price_type,
        args.price,
        args.strategy,
        args.remark,
        client_order_id=args.client_order_id,
        intentional=args.intentional,
    )
    if response.order_id is None or response.order_id <= 0:
        print(f"qmt-adapter: order refused: {response.error_msg or 'no order id'}", file=sys.stderr)
        return EXIT_ERROR
    print(f"order_id {response.order_id} (client_order_id {response.client_order_id})")
    return 0


def _cmd_cancel(client: Any, args: argparse.Namespace) -> int:
    response = client.cancel_order_stock(args.account, args.order_id)
    if response.cancel_result != 0:
        print(f"qmt-adapter: cancel refused: {response.error_msg or response.cancel_result}", file=sys.stderr)
        return EXIT_ERROR
    print(f"cancel sent for order {args.order_id} (the outcome arrives as an order or cancel_error event)")
    return 0


def _cmd_journal(client: Any, args: argparse.Namespace) -> int:
    info = client.journal_info()
    span = f"seq {info.first_seq}..{info.last_seq}" if info.count else f"empty (next seq {info.last_seq + 1})"
    print(f"journal {info.path}: epoch {info.epoch}, {span}, {info.count} events")
    print(f"size {info.size_bytes / 1e6:.1f} MB on disk, {info.payload_bytes / 1e6:.1f} MB of events")
    limits = [f"{info.retention_days:g} days" if info.retention_days else "",
              f"{info.retention_bytes / 1e6:.0f} MB" if info.retention_bytes else ""]
    print(f"retention: {' and '.join(x for x in limits if x) or 'none'}")
    return 0


def _cmd_tail(client: Any, args: argparse.Namespace) -> int:
    count = 0
    with client.events(*args.prefix, timeout=args.idle, from_seq=args.from_seq) as stream:
        if not stream.wait_subscribed(args.timeout):
            print(f"qmt-adapter: could not subscribe at {args.pub} within {args.timeout:g} s", file=sys.stderr)
            return EXIT_UNREACHABLE
        topics = ", ".join(args.prefix) or "all events"
        print(f"# subscribed to {topics} at {args.pub}", flush=True)
        show_pongs = any(prefix.startswith("gateway.p") for prefix in args.prefix)
        for event in stream:
            if event.type == "gateway.pong" and not show_pongs:
                continue  # our own readiness probe
            print(format_event(event), flush=True)
            count += 1
            if args.count and count >= args.count:
                break
    return 0


def _cmd_trading(client: Any, args: argparse.Namespace) -> int:
    if args.command == "halt":
        result = client.halt(cancel_open=args.cancel_open, reason=args.reason)
    elif args.command == "reduce-only":
        result = client.reduce_only(reason=args.reason)
    else:
        result = client.resume(reason=args.reason)
    print(f"trading {result.state} (was {result.previous}): {result.reason}")
    if result.cancel_open:
        print("cancelling every open order; the outcomes arrive as order events")
    return 0


def _cmd_risk(client: Any, args: argparse.Namespace) -> int:
    report = client.risk().to_dict()
    trading = report["trading"]
    print(f"trading: {trading['state']}" + (f" ({trading['reason']})" if trading["reason"] else ""))
    limits = report["limits"]
    for account_id, usage in report["usage"].items():
        print(f"\naccount {account_id}: {usage['open_orders']} open orders, {usage['today']} orders+cancels today")
        rows = [(name, ", ".join(v) if isinstance(v, list) else v) for name, v in limits["accounts"][account_id].items()]
        _table(("limit", "value"), rows)
    for name, level in (limits.get("keys") or {}).items():
        print(f"\nkey {name}: " + ", ".join(f"{k}={v}" for k, v in level.items()))
    print("\ndenials by rule:")
    _table(("rule", "count"), sorted(report["denials"].items()))
    return 0


def _cmd_reload(client: Any, args: argparse.Namespace) -> int:
    result = client.reload()
    print(f"risk limits: {result.risk_limits}")
    print(f"keys admitted: {', '.join(result.admitted) or 'none'}")
    if result.revoked:
        print(f"lost rights: {', '.join(result.revoked)}; every connection is dropped and clients reconnect")
    return 0


# -- market data (PROTOCOL §16) ----------------------------------------------------------

_NAMES_AT_MOST = 50  # instrument names looked up one call each: only for a short list of codes


def _china(ms: Any, pattern: str) -> str:
    if not isinstance(ms, (int, float)) or ms <= 0:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone(dt.timedelta(hours=8))).strftime(pattern)


def _names(client: Any, codes: Sequence[str]) -> dict[str, str]:
    if len(codes) > _NAMES_AT_MOST:
        return {}
    names = {}
    for code in codes:
        detail = client.get_instrument_detail(code)
        names[code] = (detail or {}).get("InstrumentName") or ""
    return names


def format_quote(code: str, name: str, tick: dict[str, Any]) -> str:
    """One line per code, for ``quote``: last, change against the previous close, the book's
    best levels (0 there: no level, e.g. at a price limit), volume (lots), time (China)."""
    last, close = tick.get("lastPrice"), tick.get("lastClose")
    change = f"{(last - close) / close * 100:+.2f}%" if isinstance(last, float) and close else "-"
    bid = (tick.get("bidPrice") or [0])[0]
    ask = (tick.get("askPrice") or [0])[0]
    book = f"{_fmt(bid) if bid else '-'}/{_fmt(ask) if ask else '-'}"
    return (f"{code:<10} {_pad(name, 10)} {_fmt(last):>9} {change:>8}  bid/ask {book:<13} "
            f"vol {tick.get('volume', '-'):<10} {_china(tick.get('time'), '%H:%M:%S')}")


def _pad(text: str, width: int) -> str:
    """Left-aligned in ``width`` terminal columns: a Chinese character takes two."""
    import unicodedata

    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - used)


def _cmd_quote(client: Any, args: argparse.Namespace) -> int:
    ticks = client.get_full_tick(args.codes)
    names = _names(client, list(ticks))
    for code, tick in ticks.items():
        print(format_quote(code, names.get(code, ""), tick), flush=True)
    if not args.watch:
        return 0
    from .client import Quotes

    def show(datas: dict[str, Any]) -> None:  # the quote thread
        for code, tick in datas.items():
            print(format_quote(code, names.get(code, ""), tick), flush=True)

    with Quotes(client, args.quote_pub) as quotes:
        quotes.subscribe_whole_quote(args.codes, callback=show)
        print(f"# watching {', '.join(args.codes)} at {quotes.endpoint}"
              + (f" for {args.seconds:g} s" if args.seconds else "; Ctrl-C ends"), file=sys.stderr, flush=True)
        try:
            threading.Event().wait(args.seconds)  # None: until Ctrl-C
        except KeyboardInterrupt:
            pass
    return 0


_BAR_COLUMNS = ("open", "high", "low", "close", "volume", "amount")
_TICK_COLUMNS = ("lastPrice", "open", "high", "low", "volume", "amount")
_TIME_PATTERNS = {"1d": "%Y-%m-%d", "tick": "%Y-%m-%d %H:%M:%S"}


def _cmd_bars(client: Any, args: argparse.Namespace) -> int:
    result = client.get_market_data_ex([], [args.code], args.period, args.start, args.end, args.count, args.dividend)
    columns = result.get(args.code) or {}
    fields = [f for f in (_TICK_COLUMNS if args.period == "tick" else _BAR_COLUMNS) if f in columns]
    pattern = _TIME_PATTERNS.get(args.period, "%Y-%m-%d %H:%M")
    rows = [[_china(ms, pattern)] + [columns[f][i] for f in fields] for i, ms in enumerate(columns.get("time") or [])]
    _table(("time", *fields), rows)
    return 0


def _cmd_sectors(client: Any, args: argparse.Namespace) -> int:
    if args.name is None:
        for name in client.get_sector_list():
            print(name)
        return 0
    codes = client.get_stock_list_in_sector(args.name)
    if not codes:
        print(f"qmt-adapter: no sector {args.name!r}, or it is empty ('qmt-adapter sectors' lists them)",
              file=sys.stderr)
        return EXIT_ERROR
    for code in codes:
        print(code)
    return 0


_DETAIL_COLUMNS = (("code", None), ("name", "InstrumentName"), ("exchange", "ExchangeID"), ("listed", "OpenDate"),
                   ("prev_close", "PreClose"), ("up_limit", "UpStopPrice"), ("down_limit", "DownStopPrice"),
                   ("tick", "PriceTick"), ("float_shares", "FloatVolume"), ("total_shares", "TotalVolume"),
                   ("trading", "IsTrading"))


def _cmd_instruments(client: Any, args: argparse.Namespace) -> int:
    details = {code: client.get_instrument_detail(code, args.all) for code in args.codes}
    unknown = [code for code, detail in details.items() if detail is None]
    if args.all:
        for code, detail in details.items():
            if detail is not None:
                print(f"{code}:")
                for key, value in detail.items():
                    print(f"  {key:<26} {_fmt(value)}")
    else:
        rows = [[code, *(_fmt_shares(detail.get(key)) for _, key in _DETAIL_COLUMNS[1:])]
                for code, detail in details.items() if detail is not None]
        if rows:
            _table([name for name, _ in _DETAIL_COLUMNS], rows)
    for code in unknown:
        print(f"qmt-adapter: unknown instrument {code}", file=sys.stderr)
    return EXIT_ERROR if unknown else 0


def _fmt_shares(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() and value >= 1e5 else value


def _run_script(args: argparse.Namespace) -> int:
    from .compat.runner import run

    for value, name in ((args.client_key, "QMT_ADAPTER_CLIENT_KEY"), (args.server_key, "QMT_ADAPTER_SERVER_KEY")):
        if value:
            os.environ[name] = value
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args.script, args.args, args.router, args.pub)


def _ledger(args: argparse.Namespace) -> int:
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
    from .logs import configure
    from .server.stores import rebuild

    configure(config.log_level)

    def counter_view() -> Any:
        from .broker import XtBroker

        broker = XtBroker(config, lambda item: None)  # only its start-up queries are wanted
        try:
            broker.start()
            return dict(broker.view)
        finally:
            broker.stop()

    from .broker import BrokerStartError

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

    from .server.stores import prune

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


def _keys(args: argparse.Namespace) -> int:
    from .keys import (
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
            _table(("name", "accounts", "permissions", "public key"), rows)
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


_COMMANDS = {
    "halt": _cmd_trading,
    "reduce-only": _cmd_trading,
    "resume": _cmd_trading,
    "risk": _cmd_risk,
    "reload": _cmd_reload,
    "ping": _cmd_ping,
    "asset": _cmd_asset,
    "positions": _cmd_positions,
    "orders": _cmd_orders,
    "trades": _cmd_trades,
    "buy": _cmd_order,
    "sell": _cmd_order,
    "cancel": _cmd_cancel,
    "tail": _cmd_tail,
    "journal": _cmd_journal,
    "quote": _cmd_quote,
    "bars": _cmd_bars,
    "sectors": _cmd_sectors,
    "instruments": _cmd_instruments,
}


# -- formatting --------------------------------------------------------------------------


def format_event(event: Any) -> str:
    """One readable line per event, for ``tail``."""
    d = event.data
    when = dt.datetime.fromtimestamp(event.ts / 1e9).strftime("%H:%M:%S.%f")[:-3]
    head = f"#{event.seq} {when} {event.type:<14} {event.account_id or '-':<11}"
    etype = event.type
    if etype == "order":
        body = (
            f"{d.stock_code} {_side(d.order_type)} {d.order_volume}@{_fmt(d.price)} "
            f"{_status(d.order_status)} traded {d.traded_volume}@{_fmt(d.traded_price)} order_id={d.order_id}"
            + (f" msg={d.status_msg!r}" if d.status_msg else "")
        )
    elif etype == "trade":
        body = (
            f"{d.stock_code} {_side(d.order_type)} {d.traded_volume}@{_fmt(d.traded_price)} "
            f"amount={_fmt(d.traded_amount)} commission={_fmt(d.commission)} order_id={d.order_id} traded_id={d.traded_id}"
        )
    elif etype == "position":
        body = (
            f"{d.stock_code} volume={d.volume} can_use={d.can_use_volume} frozen={d.frozen_volume} "
            f"avg={_fmt(d.avg_price)} market_value={_fmt(d.market_value)}"
        )
    elif etype == "asset":
        body = (
            f"cash={_fmt(d.cash)} frozen={_fmt(d.frozen_cash)} market_value={_fmt(d.market_value)} "
            f"total={_fmt(d.total_asset)}"
        )
    elif etype in ("order_error", "cancel_error"):
        body = f"order_id={d.order_id} error_id={d.error_id} {d.error_msg}"
    elif etype == "order_response":
        body = f"seq={d.seq} order_id={d.order_id}" + (f" error={d.error_msg!r}" if d.error_msg else "")
    elif etype == "cancel_response":
        body = f"seq={d.seq} order_id={d.order_id} cancel_result={d.cancel_result}" + (
            f" error={d.error_msg!r}" if d.error_msg else ""
        )
    elif etype == "account_status":
        body = f"status={d.status}"
    elif etype == "gateway.connection":
        body = f"connected={d.connected} {d.reason}"
    else:
        body = " ".join(f"{k}={v!r}" for k, v in d.to_dict().items())
    return f"{head} {body}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4f}".rstrip("0")  # at least two decimals, more only when they carry a value
        return text + "0" * max(0, 2 - len(text.split(".")[1]))
    return "-" if value is None else str(value)


def _side(order_type: Any) -> str:
    return mapping.ORDER_TYPE_NAMES.get(order_type, str(order_type))


def _status(status: Any) -> str:
    return f"{status}({mapping.ORDER_STATUS_NAMES.get(status, '?')})"


def _time(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)) or epoch <= 0:
        return "-"
    return dt.datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [list(headers)] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    if not rows:
        print("(none)")


# -- arguments ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmt-adapter", description="ZeroMQ gateway for the QMT / miniQMT trading terminal."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway (simulated counter unless --qmt-path is given)")
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

    env = os.environ.get

    def client_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
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

    client_parser("ping", "check that the gateway answers and the counter is connected")
    for name, help_text in (
        ("asset", "show an account's asset"),
        ("positions", "list an account's positions"),
        ("trades", "list today's trades"),
    ):
        client_parser(name, help_text).add_argument("account")
    orders = client_parser("orders", "list today's orders")
    orders.add_argument("account")
    orders.add_argument("--cancelable", action="store_true", help="only orders that can still be cancelled")
    for side in ("buy", "sell"):
        sub = client_parser(side, f"place a {side} order (limit price by default)")
        sub.add_argument("account")
        sub.add_argument("code", help="stock code with exchange suffix, e.g. 600000.SH")
        sub.add_argument("volume", type=int, help="shares")
        sub.add_argument("price", type=float, help="limit price (0 for market price types)")
        sub.add_argument("--price-type", default="limit", help="limit (default), latest, or an xtconstant price type")
        sub.add_argument("--strategy", default="cli", help="strategy name recorded with the order")
        sub.add_argument("--remark", default="", help="order remark (kept by the gateway)")
        sub.add_argument("--client-order-id", help="reuse to retry safely: the same id never orders twice")
        sub.add_argument("--intentional", action="store_true",
                         help="the same order again within the duplicate window is meant")
    cancel = client_parser("cancel", "cancel an order")
    cancel.add_argument("account")
    cancel.add_argument("order_id", type=int)
    tail = client_parser("tail", "print events as they happen, one line each")
    tail.add_argument("prefix", nargs="*", help="topic prefixes, e.g. order. or trade.1000000365. (default: all)")
    tail.add_argument("--count", type=int, default=0, help="exit after this many events")
    tail.add_argument("--idle", type=float, default=None, help="exit after this many seconds without an event")
    tail.add_argument("--from", dest="from_seq", type=int, default=None, metavar="SEQ",
                      help="first replay the journal from this seq, then follow live")
    client_parser("journal", "show the event journal's span, size and retention")
    client_parser("reload", "admin: read the risk limits and client keys again (cuts off revoked keys)")
    halt = client_parser("halt", "admin: kill switch, no new orders until resume")
    halt.add_argument("--cancel-open", action="store_true", help="also cancel every open order")
    reduce = client_parser("reduce-only", "admin: only orders that shrink positions")
    resume = client_parser("resume", "admin: lift halt or reduce-only")
    for sub in (halt, reduce, resume):
        sub.add_argument("--reason", default="", help="recorded in the event and the log")
    client_parser("risk", "show the trading state, risk limits, usage and denials")
    quote = client_parser("quote", "show the latest quote of codes, one line each")
    quote.add_argument("codes", nargs="+", metavar="CODE", help="codes like 600000.SH, or a market SH / SZ / BJ")
    quote.add_argument("--watch", action="store_true", help="keep printing quotes as they change, until Ctrl-C")
    quote.add_argument("--seconds", type=float, default=None, help="with --watch: stop after this many seconds")
    quote.add_argument("--quote-pub", metavar="ENDPOINT", default=None,
                       help="the gateway's quote PUB (default: the one ping reports)")
    bars = client_parser("bars", "show bars (or ticks) of a code as a table")
    bars.add_argument("code")
    bars.add_argument("--period", default="1d", help="tick, 1m, 5m, 15m, 30m, 1h or 1d (default 1d)")
    bars.add_argument("--count", type=int, default=20, help="the last N bars (default 20; -1: all in range)")
    bars.add_argument("--start", default="", metavar="YYYYMMDD[hhmmss]", help="first time (default: open)")
    bars.add_argument("--end", default="", metavar="YYYYMMDD[hhmmss]", help="last time (default: now)")
    bars.add_argument("--dividend", default="none", help="none (default), front, back, front_ratio, back_ratio")
    sectors = client_parser("sectors", "list the sectors, or the codes of one")
    sectors.add_argument("name", nargs="?", help="a sector, e.g. 沪深A股")
    instruments = client_parser("instruments", "show instrument details of codes")
    instruments.add_argument("codes", nargs="+", metavar="CODE")
    instruments.add_argument("--all", action="store_true", help="every field xtdata gives (iscomplete)")

    run = commands.add_parser("run", help="run an xtquant strategy script unchanged against the gateway")
    run.add_argument("--router", help="gateway ROUTER endpoint (env QMT_ADAPTER_ROUTER; default tcp://127.0.0.1:5555)")
    run.add_argument("--pub", help="gateway PUB endpoint (env QMT_ADAPTER_PUB; default: the router's port + 1)")
    run.add_argument("--client-key", help="NAME.key_secret for a CURVE gateway (env QMT_ADAPTER_CLIENT_KEY)")
    run.add_argument("--server-key", help="the gateway's server.key (env QMT_ADAPTER_SERVER_KEY)")
    run.add_argument("script", help="a Python file that uses xtquant.xttrader")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")

    ledger = commands.add_parser("ledger", help="repair the order ledger (orders.sqlite3), with the gateway stopped")
    ledger.set_defaults(ledger_parser=ledger)
    ledger_commands = ledger.add_subparsers(dest="ledger_command", metavar="ACTION")
    rebuild = ledger_commands.add_parser(
        "rebuild", help="recover lost ledger records from the journal's events and the counter's tagged orders")
    rebuild.add_argument("--data-dir", metavar="DIR", help="the gateway's data dir (default ./qmt-adapter-data)")
    rebuild.add_argument("--config", metavar="FILE", help="the gateway's TOML file (backend, accounts, data_dir)")
    rebuild.add_argument("--account", action="append", metavar="ID", help="fund account whose orders to read; repeatable")
    rebuild.add_argument("--backend", choices=("sim", "qmt"), help="default: sim, or qmt when --qmt-path is given")
    rebuild.add_argument("--qmt-path", help="QMT's userdata_mini folder (backend qmt)")
    rebuild.add_argument("--journal-only", action="store_true",
                         help="do not connect to the counter: recover from the journal alone")
    rebuild.add_argument("--dry-run", action="store_true", help="report what would be recovered, write nothing")
    rebuild.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="WARNING")

    prune = ledger_commands.add_parser(
        "prune", help="delete settled records created before a day (the ledger then answers order_outcomes and "
                      "repeats of those client_order_ids no more)")
    prune.add_argument("--before", required=True, metavar="YYYY-MM-DD", help="first day kept (China time)")
    prune.add_argument("--data-dir", metavar="DIR", help="the gateway's data dir (default ./qmt-adapter-data)")
    prune.add_argument("--config", metavar="FILE", help="the gateway's TOML file (its data_dir)")

    keys = commands.add_parser("keys", help="create, list and revoke CURVE keys")
    keys.set_defaults(keys_parser=keys)
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    new = keys_commands.add_parser("new", help="authorise a new client key (and create the server key if missing)")
    new.add_argument("name", help="the client's name, shown in logs and ping")
    new.add_argument("--accounts", required=True, metavar="IDS",
                     help="comma list of the accounts it may use, or '*' for every account served")
    new.add_argument("--permissions", default="read", metavar="LIST",
                     help="comma list of read (queries, events), trade (orders, cancels), admin (reload); default read")
    keys_commands.add_parser("list", help="show the server key and the authorised client keys")
    revoke = keys_commands.add_parser("revoke", help="withdraw a client key (takes effect on reload)")
    revoke.add_argument("name")
    for sub in (new, keys_commands.choices["list"], revoke):
        sub.add_argument("--keys-dir", default=DEFAULT_KEYS_DIR, metavar="DIR",
                         help=f"the keys directory (default ./{DEFAULT_KEYS_DIR})")
    return parser
