"""The instrument table of the simulated counter: code, name, kind and reference prices.

The built-in table (``data/instruments.csv``, sources in ``data/SOURCES.md``) lists the A-share
stocks of every board, the main indices and a few dozen ETFs; ``SimConfig.instruments_file``
names a CSV with the same columns that replaces it. Columns: ``code,name,prev_close`` and the
optional ``last_price`` (default: prev_close), ``kind`` (``stock``, ``fund`` or ``index``;
default: by the code), ``list_date`` (YYYYMMDD), ``total_volume`` and ``float_volume``
(shares). Codes not in the table are refused by the counter, as a real counter refuses an
unknown security; indices are listed for their quotes and refused as orders.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
from importlib import resources
from pathlib import Path

from adapter import market as rules
from adapter.market import Instrument

__all__ = ["Instrument", "load_instruments", "parse_instruments", "unknown_code"]

BUILT_IN = "built-in instruments.csv"

# Parsed tables by source (the built-in one, or a file by path, size and mtime): the gateway and
# the counter each load the table at start, tests many times over.
_cache: dict[object, dict[str, Instrument]] = {}
_cache_lock = threading.Lock()


def parse_instruments(text: str, source: str = "<instruments>") -> dict[str, Instrument]:
    """Parse and validate the CSV text; ValueError names the source and line of a bad row."""
    reader = csv.DictReader(io.StringIO(text))
    fields = set(reader.fieldnames or ())
    missing = {"code", "name", "prev_close"} - fields
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(sorted(missing))}")
    table: dict[str, Instrument] = {}
    for row in reader:
        where = f"{source}:{reader.line_num}"
        try:
            instrument = _parse_row(row)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if instrument.code in table:
            raise ValueError(f"{where}: duplicate code {instrument.code}")
        table[instrument.code] = instrument
    if not table:
        raise ValueError(f"{source}: no instruments")
    return table


def _parse_row(row: dict[str, str | None]) -> Instrument:
    code = (row.get("code") or "").strip()
    name = (row.get("name") or "").strip()
    board = rules.classify(code)
    by_code = rules.INDEX if board is rules.Board.INDEX else rules.FUND if board in rules.FUND_BOARDS else rules.STOCK
    kind = (row.get("kind") or "").strip() or by_code
    if kind not in rules.KINDS:
        raise ValueError(f"kind {kind!r} of {code} is not one of {', '.join(rules.KINDS)}")
    # Any code may be marked an index (BJ's 899xxx look like stocks); stocks and funds must match the code.
    if kind != by_code and kind != rules.INDEX:
        raise ValueError(f"{code} cannot be of kind {kind!r} (its code is a {by_code} code)")
    prev_close = rules.to_decimal((row.get("prev_close") or "").strip())
    last_text = (row.get("last_price") or "").strip()
    last = rules.to_decimal(last_text) if last_text else prev_close
    tick = rules.FUND_TICK if board in rules.FUND_BOARDS else rules.STOCK_TICK
    if prev_close <= 0 or prev_close % tick:
        raise ValueError(f"prev_close {prev_close} of {code} is not on its tick")
    # The band always holds the previous close: it is computed only for a different last price.
    if last != prev_close and (
        last <= 0 or last % tick or not rules.within_limits(last, code, name, prev_close)
    ):
        raise ValueError(f"last_price {last} of {code} is off tick or outside its daily limits")
    list_date = (row.get("list_date") or "").strip()
    if list_date:
        try:
            if len(list_date) != 8 or not list_date.isdigit():
                raise ValueError
            dt.date(int(list_date[:4]), int(list_date[4:6]), int(list_date[6:]))
        except ValueError:
            raise ValueError(f"list_date {list_date!r} of {code} is not a date YYYYMMDD") from None
    total = _shares(row, "total_volume", code)
    floating = _shares(row, "float_volume", code)
    if total and floating > total:
        raise ValueError(f"float_volume {floating} of {code} is above its total_volume {total}")
    return Instrument(code, name, prev_close.quantize(tick), last.quantize(tick), kind, list_date, total, floating)


def _shares(row: dict[str, str | None], column: str, code: str) -> int:
    text = (row.get(column) or "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(f"{column} {text!r} of {code} is not a whole number of shares")
    return int(text)


def load_instruments(path: str | Path | None = None) -> dict[str, Instrument]:
    """The table from ``path``, or the built-in one when ``path`` is empty or None.

    Parsed once per source (a file again when its size or mtime changes); each call returns
    its own dict of the shared, immutable instruments.
    """
    if path:
        try:
            stat = Path(path).stat()
            key: object = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        except OSError as exc:
            raise ValueError(f"cannot read instruments file {path}: {exc.strerror}") from None
    else:
        key = BUILT_IN
    with _cache_lock:
        table = _cache.get(key)
    if table is None:
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8-sig")
            except OSError as exc:
                raise ValueError(f"cannot read instruments file {path}: {exc.strerror}") from None
            table = parse_instruments(text, str(path))
        else:
            text = resources.files("adapter.sim").joinpath("data/instruments.csv").read_text(encoding="utf-8")
            table = parse_instruments(text, BUILT_IN)
        with _cache_lock:
            if len(_cache) >= 16:  # a few sources per process; tests write many small files
                del _cache[next(iter(_cache))]
            _cache[key] = table
    return dict(table)


def unknown_code(code: str, instruments_file: str = "") -> str:
    """Why the simulator does not know ``code``, and how to add it (for refusals and denials)."""
    if instruments_file:
        return f"{code} is unknown to the simulator: it is not in its instrument table {instruments_file}; add a row for it there"
    return (f"{code} is unknown to the simulator: it is not in its built-in instrument table; to add it, set "
            "sim.instruments_file to a copy of adapter/sim/data/instruments.csv with a row for it")
