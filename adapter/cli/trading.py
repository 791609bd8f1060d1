"""Client commands about accounts, orders and the gateway: each takes a connected Client."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..display import clock, fmt, format_event, status_name, table
from ..protocol import mapping
from .common import EXIT_ERROR, EXIT_UNREACHABLE, client_parser


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
        print(f"{name:14} {fmt(getattr(asset, name))}")
    return 0


def _cmd_positions(client: Any, args: argparse.Namespace) -> int:
    rows = [
        (p.stock_code, p.instrument_name, p.volume, p.can_use_volume, p.frozen_volume, p.avg_price, p.last_price, p.market_value)
        for p in client.query_stock_positions(args.account)
    ]
    table(("code", "name", "volume", "can_use", "frozen", "avg_price", "last", "market_value"), rows)
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
            status_name(o.order_status),
            o.status_msg,
            o.order_remark,
        )
        for o in orders
    ]
    table(
        ("order_id", "client_order_id", "code", "side", "volume", "price", "traded", "avg_price", "status",
         "message", "remark"),
        rows,
    )
    # Orders the gateway sent that the counter does not list: their outcome, as recorded.
    at_counter = {o.client_order_id for o in orders}
    missing = [r for r in client.order_outcomes(args.account) if r.client_order_id not in at_counter]
    if missing and not args.cancelable:
        print("\nnot at the counter:")
        table(
            ("client_order_id", "outcome", "order_id", "strategy", "remark", "message"),
            [(r.client_order_id, r.state, r.order_id, r.strategy_name, r.order_remark, r.error_msg) for r in missing],
        )
    return 0


def _cmd_trades(client: Any, args: argparse.Namespace) -> int:
    rows = [
        (
            t.traded_id,
            clock(t.traded_time),
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
    table(("traded_id", "time", "code", "side", "volume", "price", "amount", "commission", "order_id"), rows)
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
        table(("limit", "value"), rows)
    for name, level in (limits.get("keys") or {}).items():
        print(f"\nkey {name}: " + ", ".join(f"{k}={v}" for k, v in level.items()))
    print("\ndenials by rule:")
    table(("rule", "count"), sorted(report["denials"].items()))
    return 0


def _cmd_reload(client: Any, args: argparse.Namespace) -> int:
    result = client.reload()
    print(f"risk limits: {result.risk_limits}")
    print(f"keys admitted: {', '.join(result.admitted) or 'none'}")
    if result.revoked:
        print(f"lost rights: {', '.join(result.revoked)}; every connection is dropped and clients reconnect")
    return 0


def register(commands: Any) -> None:
    client_parser(commands, "ping", "check that the gateway answers and the counter is connected", _cmd_ping)
    for name, help_text, command in (
        ("asset", "show an account's asset", _cmd_asset),
        ("positions", "list an account's positions", _cmd_positions),
        ("trades", "list today's trades", _cmd_trades),
    ):
        client_parser(commands, name, help_text, command).add_argument("account")
    orders = client_parser(commands, "orders", "list today's orders", _cmd_orders)
    orders.add_argument("account")
    orders.add_argument("--cancelable", action="store_true", help="only orders that can still be cancelled")
    for side in ("buy", "sell"):
        sub = client_parser(commands, side, f"place a {side} order (limit price by default)", _cmd_order)
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
    cancel = client_parser(commands, "cancel", "cancel an order", _cmd_cancel)
    cancel.add_argument("account")
    cancel.add_argument("order_id", type=int)
    tail = client_parser(commands, "tail", "print events as they happen, one line each", _cmd_tail)
    tail.add_argument("prefix", nargs="*", help="topic prefixes, e.g. order. or trade.1000000365. (default: all)")
    tail.add_argument("--count", type=int, default=0, help="exit after this many events")
    tail.add_argument("--idle", type=float, default=None, help="exit after this many seconds without an event")
    tail.add_argument("--from", dest="from_seq", type=int, default=None, metavar="SEQ",
                      help="first replay the journal from this seq, then follow live")
    client_parser(commands, "journal", "show the event journal's span, size and retention", _cmd_journal)
    client_parser(commands, "reload", "admin: read the risk limits and client keys again (cuts off revoked keys)",
                  _cmd_reload)
    halt = client_parser(commands, "halt", "admin: kill switch, no new orders until resume", _cmd_trading)
    halt.add_argument("--cancel-open", action="store_true", help="also cancel every open order")
    reduce = client_parser(commands, "reduce-only", "admin: only orders that shrink positions", _cmd_trading)
    resume = client_parser(commands, "resume", "admin: lift halt or reduce-only", _cmd_trading)
    for sub in (halt, reduce, resume):
        sub.add_argument("--reason", default="", help="recorded in the event and the log")
    client_parser(commands, "risk", "show the trading state, risk limits, usage and denials", _cmd_risk)
