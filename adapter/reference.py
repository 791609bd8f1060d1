"""Reference data for the instrument checks: each code's name and previous close.

On the sim: the sim's own instrument table (the same file it trades from). On a QMT host:
xtquant's ``xtdata.get_instrument_detail`` (``InstrumentName``, ``PreClose``), cached per code
per day. That call asks the terminal's data service and is made on the gateway's I/O thread,
once per code per day; if xtdata cannot answer, the checks that need a reference are skipped
(and logged), never guessed.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Callable

from .config import Config
from .risk import CHINA, ReferenceUnavailable
from .sim import rules
from .sim.instruments import Instrument, load_instruments

log = logging.getLogger(__name__)


def reference_for(config: Config) -> Callable[[str], Instrument | None]:
    if config.backend == "sim":
        return load_instruments(config.sim.instruments_file or None).get
    return XtdataReference()


class XtdataReference:
    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, Instrument | None]] = {}
        self._warned = False

    def __call__(self, code: str) -> Instrument | None:
        today = dt.datetime.now(CHINA).strftime("%Y-%m-%d")
        hit = self._cache.get(code)
        if hit is not None and hit[0] == today:
            return hit[1]
        try:
            from xtquant import xtdata

            detail: Any = xtdata.get_instrument_detail(code)
        except Exception as exc:  # no data service, no xtdata: the checks are skipped, not guessed
            if not self._warned:
                log.warning("xtdata.get_instrument_detail unavailable (%s): price-limit checks are skipped", exc)
                self._warned = True
            raise ReferenceUnavailable(str(exc)) from None
        instrument = None
        if detail:
            try:
                prev_close = rules.to_decimal(detail["PreClose"])
                instrument = Instrument(code, str(detail.get("InstrumentName", "")), prev_close, prev_close)
            except (KeyError, ValueError) as exc:
                raise ReferenceUnavailable(f"{code}: unreadable instrument detail ({exc})") from None
        self._cache[code] = (today, instrument)
        return instrument
