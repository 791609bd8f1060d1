"""Client commands about accounts, orders and the gateway: each takes a connected Client."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any, Mapping

from ..display import (
    EXCHANGE_ZONE, ORDERS_WIDTH, describe_fill, fmt, format_event, format_size, local_zone, orders_table,
    side_name, status_name, table, table_lines, time_of_day, zone_label,
)
from ..protocol import mapping
from .common import (
    EXIT_DISCONNECTED, EXIT_ERROR, EXIT_HALTED, EXIT_NO_VERDICT, EXIT_REDUCE_ONLY, EXIT_REFUSED, EXIT_UNREACHABLE,
    client_parser, err,
)

QUIET = 0.3  # seconds without an event for the order before its state is also queried
NOTICES = frozenset({"gateway.liveness", "gateway.epoch", "gateway.gap", "gateway.storage"})


def _zone(args: argparse.Namespace) -> dt.tzinfo:
    return local_zone() if getattr(args, "local_time", False) else EXCHANGE_ZONE


# -- ping ------------------------------------------------------------------------------------


def _cmd_ping(client: Any, args: argparse.Namespace) -> int:
    info = client.ping()
    state = "connected" if info.connected else "NOT connected"
    unknown = info.get("unknown_orders") or 0
    key = info.get("key")
    trading = info.get("trading_state", "normal")
    storage = info.get("storage") or {}
    failed = dict(storage.get("failed") or {}) if not storage.get("ok", True) else {}
    print(
        (f"key {key.name} ({', '.join(key.permissions)} on {key.accounts}); " if key else "")
        + f"gateway {info.server_version} (protocol v{info.protocol_version}), backend {info.backend}, "
        f"counter {state}, accounts {', '.join(info.accounts)}, last seq {info.last_seq}"
        + (f", {unknown} order{'s' if unknown != 1 else ''} with unknown outcome" if unknown else "")
        + (f", trading {trading.upper().replace('_', '-')}" if trading != "normal" else "")
        + "".join(f", storage FAILED: {store}: {error}" for store, error in failed.items())
    )
    if not info.connected:
        err("the counter is not connected: orders are refused until the gateway reconnects")
        return EXIT_DISCONNECTED
    if args.ignore_trading_state:
        return 0
    if trading == "halted" or failed:
        err("trading is halted: no new orders until 'qmt-adapter resume'")
        return EXIT_HALTED
    if trading == "reduce_only":
        err("trading is reduce-only: only sells that shrink a position until 'qmt-adapter resume'")
        return EXIT_REDUCE_ONLY
    return 0


# -- books -----------------------------------------------------------------------------------


def _cmd_asset(client: Any, args: argparse.Namespace) -> int:
    asset = client.query_stock_asset(args.account)
    if asset is None:
        print("no asset")
        return 0
    print(f"{'account_id':14} {asset.account_id}")
    values = [(name, fmt(getattr(asset, name))) for name in
              ("cash", "frozen_cash", "market_value", "total_asset", "fetch_balance")]
    column = max(len(text) for _, text in values)
    for name, text in values:
        print(f"{name:14} {text:>{column}}")
    return 0


def _cmd_positions(client: Any, args: argparse.Namespace) -> int:
    rows = [
        (p.stock_code, p.instrument_name, p.volume, p.can_use_volume, p.frozen_volume, p.avg_price, p.last_price,
         p.market_value)
        for p in client.query_stock_positions(args.account)
    ]
    table(("code", "name", "volume", "can_use", "frozen", "avg_price", "last", "market_value"), rows)
    return 0


def _cmd_orders(client: Any, args: argparse.Namespace) -> int:
    orders = client.query_stock_orders(args.account, args.cancelable)
    for line in orders_table(orders, _zone(args), args.wide):
        print(line)
    # Orders the gateway sent that the counter does not list: their outcome, as recorded.
    at_counter = {o.client_order_id for o in orders}
    missing = [r for r in client.order_outcomes(args.account) if r.client_order_id not in at_counter]
    if missing and not args.cancelable:
        print("\nnot at the counter:")
        outcomes = [(r.client_order_id, r.state, r.order_id, r.strategy_name, r.order_remark, r.error_msg)
                    for r in missing]
        for line in table_lines(("client_order_id", "outcome", "order_id", "strategy", "remark", "message"), outcomes,
                                max_width=None if args.wide else ORDERS_WIDTH, shrink=(0, 3, 4, 5)):
            print(line)
    return 0


def _cmd_trades(client: Any, args: argparse.Namespace) -> int:
    zone = _zone(args)
    rows = [
        (
            time_of_day(t.traded_time, zone),
            t.traded_id,
            t.stock_code,
            side_name(t.order_type),
            t.traded_volume,
            t.traded_price,
            t.traded_amount,
            t.commission,
            t.order_id,
        )
        for t in client.query_stock_trades(args.account)
    ]
    table((f"time ({zone_label(zone)})", "traded_id", "code", "side", "volume", "price", "amount", "commission",
           "order_id"), rows)
    return 0


# -- orders and cancels: the counter's verdict -----------------------------------------------


class Watch:
    """What the counter says about one order (or a cancel of it): fills as they come, then a
    verdict. Fed the order's events and, when they are late, the order as queried."""

    def __init__(self, order_id: int, cancel: bool = False) -> None:
        self.order_id = order_id
        self.cancel = cancel
        self.order: Mapping[str, Any] | None = None
        self.error: str | None = None  # the counter's order_error / cancel_error
        self._fills: set[Any] = set()

    @property
    def status(self) -> int | None:
        return None if self.order is None else self.order.get("order_status")

    @property
    def done(self) -> bool:
        return self.error is not None or self.status in mapping.FINAL_ORDER_STATUSES

    def on_event(self, event: Any) -> list[str]:
        """Lines to print now (fills); the verdict is :meth:`verdict`."""
        d = event.data
        if d.get("order_id") != self.order_id:
            return []
        if event.type == "trade":
            return self.on_trades([d])
        if event.type == "order":
            self.order = d
        elif event.type == ("cancel_error" if self.cancel else "order_error") and self.error is None:
            self.error = f"{d.get('error_msg')} (error {d.get('error_id')})"
        return []

    def on_trades(self, trades: list[Any]) -> list[str]:
        lines = []
        for trade in trades:
            if trade.get("order_id") == self.order_id and trade.get("traded_id") not in self._fills:
                self._fills.add(trade.get("traded_id"))
                lines.append(describe_fill(trade))
        return lines

    def on_query(self, order: Any) -> None:
        """The order as queried: taken when the events have said nothing yet or it is final."""
        if order is not None and (self.order is None or order.get("order_status") in mapping.FINAL_ORDER_STATUSES):
            self.order = order

    def verdict(self, wait: float) -> tuple[int, str]:
        """The exit code and the sentence (stderr when the code is not 0)."""
        order, status, name = self.order, self.status, status_name(self.status)
        if self.cancel:
            return self._cancel_verdict(wait)
        if self.error is not None or status == mapping.ORDER_JUNK:
            why = (order or {}).get("status_msg") or self.error or "no message"
            return EXIT_REFUSED, f"order {self.order_id} refused by the counter: {status_name(57)}: {why}"
        if order is None or status in (48, 49, 255):
            last = f" (last: {name})" if order is not None else ""
            return EXIT_NO_VERDICT, (f"no verdict on order {self.order_id} from the counter within {wait:g} s{last}; "
                                     "'qmt-adapter orders' shows it later")
        traded, volume = order.get("traded_volume") or 0, order.get("order_volume")
        filled = f"{traded} of {volume} filled" + (f" @ {fmt(order.get('traded_price'))}" if traded else "")
        if status == 56:
            return 0, f"order {self.order_id}: {name}, {traded} @ {fmt(order.get('traded_price'))}"
        if status in (53, 54):
            return 0, f"order {self.order_id}: {name}, {filled}"
        return 0, f"order {self.order_id} rests at the counter: {name}, {filled}"

    def _cancel_verdict(self, wait: float) -> tuple[int, str]:
        order, status, name = self.order, self.status, status_name(self.status)
        if self.error is not None:
            return EXIT_REFUSED, f"cancel of order {self.order_id} refused by the counter: {self.error}"
        if order is not None and status in (53, 54):
            traded = order.get("traded_volume") or 0
            return 0, f"order {self.order_id} cancelled: {name}" + (
                f", {traded} of {order.get('order_volume')} filled before" if traded else "")
        if order is not None and status in (56, 57):
            return EXIT_REFUSED, f"cancel of order {self.order_id} came too late: the order is {name}"
        last = f" (last: {name})" if order is not None else ""
        return EXIT_NO_VERDICT, (f"no verdict on the cancel of order {self.order_id} within {wait:g} s{last}; "
                                 "'qmt-adapter orders' shows it later")


def _subscribe(client: Any, args: argparse.Namespace, *types: str) -> Any:
    """The account's events of these types, proven live (None: could not subscribe, said why)."""
    stream = client.events(*(f"{etype}.{args.account}." for etype in types))
    if stream.wait_subscribed(args.timeout):
        return stream
    stream.close()
    err(f"could not subscribe to the gateway's events at {args.pub} within {args.timeout:g} s, so the counter's "
        "verdict cannot be followed; nothing was sent (--no-wait sends without following it)")
    return None


def _follow(client: Any, args: argparse.Namespace, stream: Any, watch: Watch) -> int:
    """Print fills as they come until the verdict or ``--wait`` seconds; the exit code."""
    deadline = time.monotonic() + args.wait
    queried = watch.cancel  # a cancel's verdict comes as events only

    def catch_up() -> None:  # the events may lag (or, for a repeated client_order_id, be long gone)
        watch.on_query(client.query_stock_order(args.account, watch.order_id))
        if watch.order is not None and watch.order.get("traded_volume"):
            for line in watch.on_trades(client.query_stock_trades(args.account)):
                print(line, flush=True)

    while not watch.done:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        event = stream.receive(remaining if queried else min(remaining, QUIET))
        if event is None:
            if not queried:
                queried = True
                catch_up()
            continue
        for line in watch.on_event(event):
            print(line, flush=True)
    if not watch.done and not watch.cancel:
        catch_up()  # a last look before saying there is no verdict
    code, sentence = watch.verdict(args.wait)
    if code:
        err(sentence)
    else:
        print(sentence)
    return code


def _cmd_order(client: Any, args: argparse.Namespace) -> int:
    price_type = int(args.price_type) if args.price_type.isdigit() else args.price_type
    stream = _subscribe(client, args, "order", "trade", "order_error") if args.wait > 0 else None
    if args.wait > 0 and stream is None:
        return EXIT_UNREACHABLE
    try:
        response = client.order_stock(
            args.account, args.code, args.command, args.volume, price_type, args.price, args.strategy, args.remark,
            client_order_id=args.client_order_id, intentional=args.intentional,
        )
        if response.order_id is None or response.order_id <= 0:
            err(f"order refused by the counter: {response.error_msg or 'no order id'}")
            return EXIT_REFUSED
        side = mapping.ORDER_TYPE_BY_NAME[args.command]
        print(f"order {response.order_id} sent: {side_name(side)} {args.code} {args.volume} @ "
              f"{fmt(args.price) if price_type in ('limit', mapping.FIX_PRICE) else args.price_type} "
              f"(client_order_id {response.client_order_id})", flush=True)
        if stream is None:
            return 0
        return _follow(client, args, stream, Watch(response.order_id))
    finally:
        if stream is not None:
            stream.close()


def _cmd_cancel(client: Any, args: argparse.Namespace) -> int:
    stream = _subscribe(client, args, "order", "cancel_error") if args.wait > 0 else None
    if args.wait > 0 and stream is None:
        return EXIT_UNREACHABLE
    try:
        response = client.cancel_order_stock(args.account, args.order_id)
        if response.cancel_result != 0:
            err(f"cancel of order {args.order_id} refused by the counter: "
                f"{response.error_msg or response.cancel_result}")
            return EXIT_REFUSED
        if stream is None:
            print(f"cancel of order {args.order_id} sent (the outcome arrives as an order or cancel_error event)")
            return 0
        print(f"cancel of order {args.order_id} sent", flush=True)
        return _follow(client, args, stream, Watch(args.order_id, cancel=True))
    finally:
        if stream is not None:
            stream.close()


# -- events and the journal ------------------------------------------------------------------


def _cmd_journal(client: Any, args: argparse.Namespace) -> int:
    info = client.journal_info()
    span = f"seq {info.first_seq}..{info.last_seq}" if info.count else f"empty (next seq {info.last_seq + 1})"
    print(f"journal {info.path}: epoch {info.epoch}, {span}, {info.count} events")
    print(f"size {format_size(info.size_bytes)} on disk, {format_size(info.payload_bytes)} of events")
    limits = [f"{info.retention_days:g} days" if info.retention_days else "",
              f"{info.retention_bytes / 1e6:.0f} MB" if info.retention_bytes else ""]
    print(f"retention: {' and '.join(x for x in limits if x) or 'none'}")
    return 0


def _cmd_tail(client: Any, args: argparse.Namespace) -> int:
    count = 0
    zone = _zone(args)
    with client.events(*args.prefix, timeout=args.idle, from_seq=args.from_seq) as stream:
        source = f"NATS {args.nats}" if getattr(args, "nats", None) else args.pub
        if not stream.wait_subscribed(args.timeout):
            err(f"could not subscribe at {source} within {args.timeout:g} s")
            return EXIT_UNREACHABLE
        topics = ", ".join(args.prefix) or "all events"
        print(f"# subscribed to {topics} at {source}; times are {'local' if args.local_time else 'exchange'} "
              f"time ({zone_label(zone)})", flush=True)
        show_pongs = any(prefix.startswith("gateway.p") for prefix in args.prefix)
        for event in stream:
            if event.type == "gateway.pong" and not show_pongs:
                continue  # our own readiness probe
            if event.type in NOTICES:  # the stream's own state, marked so it stands out
                print(f"!! {format_event(event, zone)}", flush=True)
                continue
            print(format_event(event, zone), flush=True)
            count += 1
            if args.count and count >= args.count:
                break
    return 0


# -- the kill switch, risk and reload --------------------------------------------------------


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


# -- the parser ------------------------------------------------------------------------------

ACCOUNT = "1000000365"


def _local_time(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--local-time", action="store_true",
                     help="show times in this host's zone instead of exchange time (UTC+8)")


def register(commands: Any) -> None:
    ping = client_parser(
        commands, "ping", "check that the gateway answers, the counter is connected and trading is normal", _cmd_ping,
        description="Ask the gateway who it is and how it is: version, backend, counter connection, accounts, last "
                    "seq, orders of unknown outcome, trading state.\n\n"
                    "Exit codes: 0 all well, 3 no answer, 6 the counter is disconnected, 7 trading halted (kill "
                    "switch or a failed store), 8 trading reduce-only.",
        examples=["qmt-adapter ping",
                  "qmt-adapter ping --router tcp://gw:5555 --pub tcp://gw:5556 --timeout 3",
                  "qmt-adapter ping --ignore-trading-state     # health checks: halted is still healthy"])
    ping.add_argument("--ignore-trading-state", action="store_true",
                      help="exit 0 when halted or reduce-only too (the gateway works; order entry is paused on "
                           "purpose)")
    for name, help_text, command, example in (
        ("asset", "show an account's asset (cash, frozen, market value, total)", _cmd_asset,
         f"qmt-adapter asset {ACCOUNT}"),
        ("positions", "list an account's positions", _cmd_positions, f"qmt-adapter positions {ACCOUNT}"),
        ("trades", "list an account's trades of today", _cmd_trades, f"qmt-adapter trades {ACCOUNT} --local-time"),
    ):
        sub = client_parser(commands, name, help_text, command, examples=[example])
        sub.add_argument("account", help="the fund account, e.g. 1000000365")
        if name == "trades":
            _local_time(sub)
    orders = client_parser(
        commands, "orders", "list an account's orders of today", _cmd_orders,
        description="List today's orders at the counter: time, order id, code, side, volume, price, traded "
                    "volume and average price, status in QMT's words and English, client order id and the "
                    "counter's message, cut to fit 120 columns (--wide: whole, with the order remark). Orders "
                    "the gateway sent that the counter does not list follow, with their recorded outcome.",
        examples=[f"qmt-adapter orders {ACCOUNT}", f"qmt-adapter orders {ACCOUNT} --cancelable --wide"])
    orders.add_argument("account", help="the fund account")
    orders.add_argument("--cancelable", action="store_true", help="only orders that can still be cancelled")
    orders.add_argument("--wide", action="store_true",
                        help="do not cut the table to 120 columns, and show the order remark")
    _local_time(orders)
    for side in ("buy", "sell"):
        sub = client_parser(
            commands, side, f"place a {side} order and wait for the counter's verdict", _cmd_order,
            description=f"Place a {side} order (a limit order by default), then follow the account's events for "
                        "up to --wait seconds: fills are printed as they come, and the command ends on the "
                        "counter's verdict. An order the counter reports and that rests is a success.\n\n"
                        "Exit codes: 0 filled, resting or cancelled; 1 refused by the gateway (risk rule, bad "
                        "argument, ...); 3 no answer; 4 refused by the counter (e.g. 57 废单 rejected: no cash, "
                        "no sellable shares); 5 no verdict within --wait.",
            examples=[f"qmt-adapter {side} {ACCOUNT} 600000.SH 200 10.70",
                      f"qmt-adapter {side} {ACCOUNT} 600000.SH 200 10.70 --client-order-id s1-0001   # retry safely",
                      f"qmt-adapter {side} {ACCOUNT} 000001.SZ 100 0 --price-type latest --no-wait"])
        sub.add_argument("account", help="the fund account")
        sub.add_argument("code", help="stock code with exchange suffix, e.g. 600000.SH")
        sub.add_argument("volume", type=int, help="shares")
        sub.add_argument("price", type=float, help="limit price (0 for market price types)")
        sub.add_argument("--price-type", default="limit", help="limit (default), latest, or an xtconstant price type")
        sub.add_argument("--strategy", default="cli", help="strategy name recorded with the order")
        sub.add_argument("--remark", default="", help="order remark (kept by the gateway)")
        sub.add_argument("--client-order-id", help="reuse to retry safely: the same id never orders twice")
        sub.add_argument("--intentional", action="store_true",
                         help="the same order again within the duplicate window is meant")
        _wait_flags(sub)
    cancel = client_parser(
        commands, "cancel", "cancel an order and wait for the counter's verdict", _cmd_cancel,
        description="Ask the counter to cancel an order, then wait up to --wait seconds for the order to reach "
                    "54 已撤 cancelled (or 53 部撤 part cancelled) or for the counter's refusal.\n\n"
                    "Exit codes: 0 cancelled; 1 refused by the gateway; 3 no answer; 4 refused by the counter "
                    "(already filled, unknown order, ...); 5 no verdict within --wait.",
        examples=[f"qmt-adapter cancel {ACCOUNT} 1082130433",
                  f"qmt-adapter cancel {ACCOUNT} 1082130433 --wait 10"])
    cancel.add_argument("account", help="the fund account")
    cancel.add_argument("order_id", type=int, help="the counter's order id ('qmt-adapter orders' lists them)")
    _wait_flags(cancel)
    tail = client_parser(
        commands, "tail", "print events as they happen, one line each", _cmd_tail,
        description="Follow the gateway's events, one sentence each: orders with their status in QMT's words and "
                    "English, fills, positions, assets, refusals, risk denials, the counter connection and the "
                    "trading state. Lines starting with '!!' are about the stream itself: the gateway falling "
                    "silent (no heartbeat) and being heard again, a new journal, events lost to retention.",
        examples=["qmt-adapter tail",
                  "qmt-adapter tail order. trade.1000000365.       # orders of every account, one account's trades",
                  "qmt-adapter tail --from 1 --count 20            # the journal from its start, 20 events"])
    tail.add_argument("prefix", nargs="*", help="topic prefixes, e.g. order. or trade.1000000365. (default: all)")
    tail.add_argument("--count", type=int, default=0, help="exit after this many events")
    tail.add_argument("--idle", type=float, default=None, help="exit after this many seconds without an event")
    tail.add_argument("--from", dest="from_seq", type=int, default=None, metavar="SEQ",
                      help="first replay the journal from this seq, then follow live")
    _local_time(tail)
    client_parser(commands, "journal", "show the event journal's span, size and retention", _cmd_journal,
                  examples=["qmt-adapter journal"])
    client_parser(commands, "reload", "admin: read the risk limits and client keys again (cuts off revoked keys)",
                  _cmd_reload, examples=["qmt-adapter reload", "qmt-adapter reload --client-key ops.key_secret "
                                                               "--server-key server.key"])
    halt = client_parser(
        commands, "halt", "admin: kill switch, no new orders until resume", _cmd_trading,
        description="Halt trading: the gateway refuses every new order (cancels still pass) until 'qmt-adapter "
                    "resume'. The state survives restarts and is published as a gateway.trading event.",
        examples=["qmt-adapter halt --reason 'fat finger'", "qmt-adapter halt --cancel-open"])
    halt.add_argument("--cancel-open", action="store_true", help="also cancel every open order")
    reduce = client_parser(commands, "reduce-only", "admin: only orders that shrink positions", _cmd_trading,
                           examples=["qmt-adapter reduce-only --reason 'risk review'"])
    resume = client_parser(commands, "resume", "admin: lift halt or reduce-only", _cmd_trading,
                           examples=["qmt-adapter resume --reason 'checked'"])
    for sub in (halt, reduce, resume):
        sub.add_argument("--reason", default="", help="recorded in the event and the log")
    client_parser(commands, "risk", "show the trading state, risk limits, usage and denials", _cmd_risk,
                  examples=["qmt-adapter risk"])


def _wait_flags(sub: argparse.ArgumentParser) -> None:
    wait = sub.add_mutually_exclusive_group()
    wait.add_argument("--wait", type=float, default=2.0, metavar="SECONDS",
                      help="how long to wait for the counter's verdict (default 2)")
    wait.add_argument("--no-wait", dest="wait", action="store_const", const=0.0,
                      help="only send: do not wait for the verdict (exit 0 once the gateway took it)")
