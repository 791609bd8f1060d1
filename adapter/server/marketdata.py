"""Where market data comes from (PROTOCOL §16): the simulated market, or the real ``xtdata``.

A source answers the market ops (``call``, blocking: only the market workers call it, never
the I/O thread), keeps the subscriptions the gateway asks for, and hands every quote it gets
to one ``sink`` as ``(period, code, record)`` items. The sink only hands off (the quote thread
takes it from there), so pushes never wait on anything.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Protocol

from ..config import Config
from .ledger import trading_day

log = logging.getLogger(__name__)

# (period, code, tick or bar): the record as xtdata gives it, or already packed as the quote
# PUB's payload (``protocol.encode_quote``) where the source had it so
Quote = tuple[str, str, dict[str, Any] | bytes]
Sink = Callable[[list[Quote]], None]
Progress = Callable[[dict[str, Any]], None]


class MarketSource(Protocol):
    def call(self, op: str, args: dict[str, Any], progress: Progress) -> Any: ...
    def subscribe(self, code: str, period: str) -> None: ...
    def unsubscribe(self, code: str, period: str) -> None: ...
    def latest_bars(self, codes: list[str], period: str) -> list[Quote]: ...
    def watch(self, sink: Sink) -> None: ...
    def close(self) -> None: ...


def _bar_args(args: dict[str, Any]) -> dict[str, Any]:
    return {name: args[name] for name in ("field_list", "stock_list", "period", "start_time", "end_time", "count",
                                          "dividend_type", "fill_data")}


def last_rows(columns: dict[str, dict[str, list[Any]]], period: str) -> list[Quote]:
    """The newest row of each code's plain columns, as a bar record."""
    quotes: list[Quote] = []
    for code, table in columns.items():
        times = table.get("time") or []
        if times:
            quotes.append((period, code, {name: values[-1] for name, values in table.items()}))
    return quotes


class SimSource:
    """The simulated market of the sim counter (``adapter.sim.feed``), in this process or the
    counter's own. Ticks arrive from the counter's thread; bars of the subscribed periods are
    read from the feed by the quote thread (``latest_bars``), as the feed builds them from ticks."""

    def __init__(self, config: Config, counter: Any) -> None:
        self._counter = counter
        self._instruments_file = config.sim.instruments_file
        self._unwatch: Callable[[], None] | None = None

    def call(self, op: str, args: dict[str, Any], progress: Progress) -> Any:
        counter = self._counter
        if op == "get_full_tick":
            return counter.full_tick(list(args["code_list"]))
        if op == "get_market_data_ex":
            return counter.market_data(**_bar_args(args))
        if op == "get_local_data":
            return counter.local_data(**_bar_args(args))
        if op == "get_trading_dates":
            return counter.trading_dates(args["market"], args["start_time"], args["end_time"], args["count"])
        if op in ("download_history_data", "download_history_data2"):
            codes = [args["stock_code"]] if op == "download_history_data" else list(args["stock_list"])
            counter.download_history(codes, args["period"], args["start_time"], args["end_time"], callback=progress,
                                     incrementally=args["incrementally"])
            return None
        from ..sim import instruments, sectors

        table = instruments.load_instruments(self._instruments_file or None)
        if op == "get_instrument_detail":
            instrument = table.get(args["stock_code"])
            if instrument is None:
                return None
            return sectors.instrument_detail(instrument, trading_day=trading_day().strftime("%Y%m%d"))
        if op == "get_sector_list":
            return sectors.sector_list()
        if op == "get_stock_list_in_sector":
            return sectors.stock_list_in_sector(args["sector_name"], table)
        raise ValueError(f"{op} is not a market op of the simulator")

    def subscribe(self, code: str, period: str) -> None:
        # A whole market is not made to move: a step of all its codes costs ~30 us each on the
        # counter's thread (0.2 s for the table). It shows the codes in use (asked for, held,
        # ordered); get_full_tick of codes puts them in use.
        if code not in ("SH", "SZ", "BJ"):
            self._counter.record_ticks([code])  # the code moves with the walk from now on

    def unsubscribe(self, code: str, period: str) -> None:
        """The feed keeps recording: cheap, bounded, and another subscriber may come back."""

    def latest_bars(self, codes: list[str], period: str) -> list[Quote]:
        return last_rows(self._counter.market_data(stock_list=codes, period=period, count=1), period)

    def watch(self, sink: Sink) -> None:
        packed = getattr(self._counter, "on_packed_quotes", None)
        if packed is not None:  # a counter process: ticks arrive packed for the quote PUB already
            def on_packed(pairs: list[tuple[str, bytes]]) -> None:
                sink([("tick", code, payload) for code, payload in pairs])

            self._unwatch = packed(on_packed)
            return

        def on_quotes(ticks: dict[str, dict[str, Any]]) -> None:  # the counter's thread: hand off only
            sink([("tick", code, tick) for code, tick in ticks.items()])

        self._unwatch = self._counter.on_quotes(on_quotes)

    def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None


class XtDataSource:
    """The real ``xtquant.xtdata`` of a QMT host (``--backend qmt``). Written to xtdata's manual
    and not run here (no QMT on Linux): every call happens on a market worker, with the
    gateway's time-out around it, since xtdata calls are known to hang when the terminal
    is busy or its data service restarts."""

    def __init__(self, config: Config) -> None:
        self._seqs: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._sink: Sink | None = None
        self._xtdata: Any = None

    def _data(self) -> Any:
        if self._xtdata is None:
            from xtquant import xtdata

            self._xtdata = xtdata
        return self._xtdata

    def call(self, op: str, args: dict[str, Any], progress: Progress) -> Any:
        xtdata = self._data()
        if op == "get_full_tick":
            return _plain(xtdata.get_full_tick(list(args["code_list"])))
        if op in ("get_market_data_ex", "get_local_data"):
            function = xtdata.get_market_data_ex if op == "get_market_data_ex" else xtdata.get_local_data
            bars = _bar_args(args)
            bars["field_list"] = list(bars["field_list"])
            return {code: _columns(frame) for code, frame in function(**bars).items()}
        if op == "get_instrument_detail":
            return _plain(xtdata.get_instrument_detail(args["stock_code"], args["iscomplete"]))
        if op == "get_sector_list":
            return list(xtdata.get_sector_list())
        if op == "get_stock_list_in_sector":
            return list(xtdata.get_stock_list_in_sector(args["sector_name"]))
        if op == "get_trading_dates":
            return [int(day) for day in xtdata.get_trading_dates(args["market"], args["start_time"], args["end_time"],
                                                                  args["count"])]
        if op == "download_history_data":
            xtdata.download_history_data(args["stock_code"], args["period"], args["start_time"], args["end_time"],
                                         args["incrementally"])
            return None
        if op == "download_history_data2":
            xtdata.download_history_data2(list(args["stock_list"]), args["period"], args["start_time"],
                                          args["end_time"], lambda data: progress(_plain(data)),
                                          args["incrementally"])
            return None
        raise ValueError(f"{op} is not a market op")

    def subscribe(self, code: str, period: str) -> None:
        xtdata = self._data()
        if code in ("SH", "SZ", "BJ"):
            seq = xtdata.subscribe_whole_quote([code], callback=self._on_whole)
        else:
            seq = xtdata.subscribe_quote(code, period=period, count=0,
                                         callback=lambda datas, period=period: self._on_quote(period, datas))
        with self._lock:
            self._seqs[(code, period)] = seq

    def unsubscribe(self, code: str, period: str) -> None:
        with self._lock:
            seq = self._seqs.pop((code, period), None)
        if seq is not None and seq > 0:
            self._data().unsubscribe_quote(seq)

    def latest_bars(self, codes: list[str], period: str) -> list[Quote]:
        return []  # xtdata pushes the bars of a subscribed period itself

    def watch(self, sink: Sink) -> None:
        self._sink = sink

    def close(self) -> None:
        for code, period in list(self._seqs):
            try:
                self.unsubscribe(code, period)
            except Exception:
                log.debug("xtdata unsubscribe at close failed", exc_info=True)

    def _on_quote(self, period: str, datas: dict[str, Iterable[dict[str, Any]]]) -> None:
        if self._sink is not None:  # xtdata's thread: hand off only
            self._sink([(period, code, _plain(record)) for code, records in datas.items() for record in records])

    def _on_whole(self, datas: dict[str, dict[str, Any]]) -> None:
        if self._sink is not None:
            self._sink([("tick", code, _plain(tick)) for code, tick in datas.items()])


def _plain(value: Any) -> Any:
    """numpy scalars and arrays to Python values, so msgpack takes them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        try:
            return item()
        except (ValueError, TypeError):
            tolist = getattr(value, "tolist", None)
            return _plain(tolist()) if callable(tolist) else str(value)
    return value


def _columns(frame: Any) -> dict[str, list[Any]]:
    """A DataFrame of xtdata's to plain columns, ``time`` first."""
    columns = {str(name): _plain(list(frame[name])) for name in frame.columns}
    if "time" not in columns:
        columns = {"time": [str(index) for index in frame.index], **columns}
    return columns


def source_for(config: Config, broker: Any) -> MarketSource:
    if config.backend == "qmt":
        return XtDataSource(config)
    return SimSource(config, broker.counter)
