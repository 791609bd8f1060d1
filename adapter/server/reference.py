"""Reference data for the instrument checks: each code's name and previous close.

On the sim: the sim's own instrument table (the same file it trades from). On a QMT host:
xtquant's ``xtdata.get_instrument_detail`` (``InstrumentName``, ``PreClose``), cached per code
per day. That call asks the terminal's data service and can hang, so it never runs on the
gateway's I/O thread: a code not cached yet is fetched on a worker thread while its first
check goes without the reference (logged, never guessed); a failed fetch is remembered for
``RETRY_AFTER`` seconds, so a dead data service costs one attempt a minute, not one per order.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import threading
import time
from typing import Any, Callable

from ..config import Config
from .risk import CHINA, ReferenceUnavailable
from .. import market as rules
from ..market import Instrument

log = logging.getLogger(__name__)

RETRY_AFTER = 60.0  # seconds before a code whose fetch failed is asked for again
MAX_WAITING = 256  # codes being fetched at once at most; beyond, checks go without until a slot frees


def reference_for(config: Config) -> Callable[[str], Instrument | None]:
    if config.backend == "sim":  # the simulated counter's own table: what it trades is what is listed
        return SimTableReference(config.sim.instruments_file)
    return XtdataReference()


class SimTableReference:
    """The sim's instrument table; ``unknown`` words the denial of a code it lacks."""

    def __init__(self, instruments_file: str = "") -> None:
        from ..sim.instruments import load_instruments

        self._file = instruments_file
        self._table = load_instruments(instruments_file or None)

    def __call__(self, code: str) -> Instrument | None:
        return self._table.get(code)

    def unknown(self, code: str) -> str:
        from ..sim.instruments import unknown_code

        return unknown_code(code, self._file)


def _get_instrument_detail(code: str) -> Any:
    from xtquant import xtdata

    return xtdata.get_instrument_detail(code)


class XtdataReference:
    """Called on the I/O thread; ``fetch`` (xtdata by default) runs on one worker thread."""

    def __init__(self, fetch: Callable[[str], Any] = _get_instrument_detail,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()  # the cache, written by the worker, read by the I/O thread
        self._cache: dict[str, tuple[str, Instrument | None]] = {}
        self._failed: dict[str, tuple[float, str]] = {}  # code -> (when, why)
        self._waiting: set[str] = set()
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qmt-reference")
        self._warned = False

    def __call__(self, code: str) -> Instrument | None:
        today = dt.datetime.now(CHINA).strftime("%Y-%m-%d")
        with self._lock:
            hit = self._cache.get(code)
            if hit is not None and hit[0] == today:
                return hit[1]
            failed = self._failed.get(code)
            if failed is not None and self._clock() - failed[0] < RETRY_AFTER:
                raise ReferenceUnavailable(f"{code}: {failed[1]} (asked again within {RETRY_AFTER:g} s)")
            if code not in self._waiting and len(self._waiting) < MAX_WAITING:
                self._waiting.add(code)
                self._worker.submit(self._load, code, today)
        raise ReferenceUnavailable(f"{code}: reference data is being fetched")

    def _load(self, code: str, today: str) -> None:
        try:
            detail = self._fetch(code)
            instrument = None
            if detail:
                prev_close = rules.to_decimal(detail["PreClose"])
                instrument = Instrument(code, str(detail.get("InstrumentName", "")), prev_close, prev_close)
        except Exception as exc:  # no data service, no xtdata, an odd answer: skipped, not guessed
            if not self._warned:
                log.warning("xtdata.get_instrument_detail unavailable (%s): price-limit checks are skipped", exc)
                self._warned = True
            with self._lock:
                self._failed[code] = (self._clock(), str(exc) or type(exc).__name__)
                self._waiting.discard(code)
            return
        with self._lock:
            self._cache[code] = (today, instrument)
            self._failed.pop(code, None)
            self._waiting.discard(code)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
