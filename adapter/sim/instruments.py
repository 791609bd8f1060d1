"""The instrument table of the simulated counter: code, name and reference prices.

The built-in table (``data/instruments.csv``) holds about twenty real A-share codes across
the boards; ``SimConfig.instruments_file`` names a CSV with the same columns
(``code,name,prev_close[,last_price]``) that replaces it. Codes not in the table are
refused by the counter, as a real counter refuses an unknown security.
"""

from __future__ import annotations

import csv
import io
from importlib import resources
from pathlib import Path

from adapter import market as rules
from adapter.market import Instrument

__all__ = ["Instrument", "load_instruments", "parse_instruments"]


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
        code = (row.get("code") or "").strip()
        name = (row.get("name") or "").strip()
        try:
            rules.classify(code)
            prev_close = rules.to_decimal((row.get("prev_close") or "").strip())
            last_text = (row.get("last_price") or "").strip()
            last = rules.to_decimal(last_text) if last_text else prev_close
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if code in table:
            raise ValueError(f"{where}: duplicate code {code}")
        if not rules.is_on_tick(prev_close, code):
            raise ValueError(f"{where}: prev_close {prev_close} of {code} is not on its tick")
        if not rules.is_on_tick(last, code) or not rules.within_limits(last, code, name, prev_close):
            raise ValueError(f"{where}: last_price {last} of {code} is off tick or outside its daily limits")
        tick = rules.tick_size(code)
        table[code] = Instrument(code, name, prev_close.quantize(tick), last.quantize(tick))
    if not table:
        raise ValueError(f"{source}: no instruments")
    return table


def load_instruments(path: str | Path | None = None) -> dict[str, Instrument]:
    """The table from ``path``, or the built-in one when ``path`` is empty or None."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ValueError(f"cannot read instruments file {path}: {exc.strerror}") from None
        return parse_instruments(text, str(path))
    text = resources.files("adapter.sim").joinpath("data/instruments.csv").read_text(encoding="utf-8")
    return parse_instruments(text, "built-in instruments.csv")
