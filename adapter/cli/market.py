"""Client commands about market data (PROTOCOL §16): quote, bars, sectors, instruments."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any, Sequence

from ..display import china_time, fmt, format_quote, table, zone_label
from .common import EXIT_ERROR, client_parser


_NAMES_AT_MOST = 50  # instrument names looked up one call each: only for a short list of codes


def _names(client: Any, codes: Sequence[str]) -> dict[str, str]:
    if len(codes) > _NAMES_AT_MOST:
        return {}
    names = {}
    for code in codes:
        detail = client.get_instrument_detail(code)
        names[code] = (detail or {}).get("InstrumentName") or ""
    return names


def _cmd_quote(client: Any, args: argparse.Namespace) -> int:
    ticks = client.get_full_tick(args.codes)
    names = _names(client, list(ticks))
    for code, tick in ticks.items():
        print(format_quote(code, names.get(code, ""), tick), flush=True)
    if not args.watch:
        return 0
    from ..client import Quotes

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
    rows = [[china_time(ms, pattern)] + [columns[f][i] for f in fields] for i, ms in enumerate(columns.get("time") or [])]
    table(("date" if args.period == "1d" else f"time ({zone_label()})", *fields), rows)
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
                    print(f"  {key:<26} {fmt(value)}")
    else:
        rows = [[code, *(_fmt_shares(detail.get(key)) for _, key in _DETAIL_COLUMNS[1:])]
                for code, detail in details.items() if detail is not None]
        if rows:
            table([name for name, _ in _DETAIL_COLUMNS], rows)
    for code in unknown:
        print(f"qmt-adapter: unknown instrument {code}", file=sys.stderr)
    return EXIT_ERROR if unknown else 0


def _fmt_shares(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() and value >= 1e5 else value


def register(commands: Any) -> None:
    quote = client_parser(
        commands, "quote", "show the latest quote of codes, one line each", _cmd_quote,
        description="The latest quote of each code, one line each: name, last price, change against the "
                    "previous close, best bid/ask, volume (lots) and the quote's time (China, UTC+8). With "
                    "--watch, then every change as the gateway's quote PUB pushes it.",
        examples=["qmt-adapter quote 600000.SH 000001.SZ",
                  "qmt-adapter quote 600000.SH --watch --seconds 30"])
    quote.add_argument("codes", nargs="+", metavar="CODE", help="codes like 600000.SH, or a market SH / SZ / BJ")
    quote.add_argument("--watch", action="store_true", help="keep printing quotes as they change, until Ctrl-C")
    quote.add_argument("--seconds", type=float, default=None, help="with --watch: stop after this many seconds")
    quote.add_argument("--quote-pub", metavar="ENDPOINT", default=None,
                       help="the gateway's quote PUB (default: the one ping reports)")
    bars = client_parser(
        commands, "bars", "show bars (or ticks) of a code as a table", _cmd_bars,
        description="Bars of one code as a table, times in China time (UTC+8) as xtdata labels them: the last "
                    "--count bars, or those between --start and --end.",
        examples=["qmt-adapter bars 600000.SH --period 1d --count 20",
                  "qmt-adapter bars 000001.SZ --period 5m --start 20251009093000 --end 20251009150000 --count -1"])
    bars.add_argument("code", help="a code like 600000.SH")
    bars.add_argument("--period", default="1d", help="tick, 1m, 5m, 15m, 30m, 1h or 1d (default 1d)")
    bars.add_argument("--count", type=int, default=20, help="the last N bars (default 20; -1: all in range)")
    bars.add_argument("--start", default="", metavar="YYYYMMDD[hhmmss]", help="first time (default: open)")
    bars.add_argument("--end", default="", metavar="YYYYMMDD[hhmmss]", help="last time (default: now)")
    bars.add_argument("--dividend", default="none", help="none (default), front, back, front_ratio, back_ratio")
    sectors = client_parser(
        commands, "sectors", "list the sectors, or the codes of one", _cmd_sectors,
        examples=["qmt-adapter sectors", "qmt-adapter sectors 沪深ETF"])
    sectors.add_argument("name", nargs="?", help="a sector, e.g. 沪深A股")
    instruments = client_parser(
        commands, "instruments", "show instrument details of codes", _cmd_instruments,
        description="Instrument details of codes as a table: name, exchange, listing date, previous close, "
                    "daily price limits, tick, shares; --all prints every field xtdata gives.",
        examples=["qmt-adapter instruments 600000.SH 000001.SZ", "qmt-adapter instruments 600000.SH --all"])
    instruments.add_argument("codes", nargs="+", metavar="CODE", help="codes like 600000.SH")
    instruments.add_argument("--all", action="store_true", help="every field xtdata gives (iscomplete)")
