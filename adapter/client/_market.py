"""The market data methods (PROTOCOL §16), written once for the blocking and the asyncio client.

Each method is an op of the gateway with ``xtquant.xtdata``'s name, parameter names and
defaults. Results are xtdata's plain values (dicts and lists, not Records): ticks and details
as xtdata returns them, ``get_market_data_ex`` as plain columns ``{code: {"time": [ms...],
field: [...]}}``; :func:`to_frames` turns those into xtdata's ``{code: DataFrame}``. Quote
subscriptions with callbacks and lease renewal: :class:`adapter.client.quotes.Quotes`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import secrets
from typing import Any, Callable, Generic, Iterable, Mapping, Sequence, TypeVar, cast

AnyT = TypeVar("AnyT")  # whatever the op returns (or an awaitable of it)

# The gateway answers a download within download_timeout (600 s by default): wait a little longer.
DOWNLOAD_TIMEOUT = 630.0
CHINA = dt.timezone(dt.timedelta(hours=8))  # exchange time, whatever this host's zone
_FRAME_FIELDS_KEY = "time"

ProgressCallback = Callable[[dict[str, Any]], Any]


def _codes(value: str | Iterable[str]) -> list[str]:
    """xtdata takes one code where it takes a list."""
    return [value] if isinstance(value, str) else list(value)


def time_string(ms: int, period: str) -> str:
    """xtdata's index label of a bar or tick: 'YYYYMMDD' for 1d, 'YYYYMMDDhhmmss' else (China time)."""
    moment = dt.datetime.fromtimestamp(ms / 1000, CHINA)
    return moment.strftime("%Y%m%d" if period == "1d" else "%Y%m%d%H%M%S")


def time_strings(times: Sequence[int], period: str, memo: dict[int, str] | None = None) -> list[str]:
    memo = {} if memo is None else memo
    labels = []
    for ms in times:
        label = memo.get(ms)
        if label is None:
            label = memo[ms] = time_string(ms, period)
        labels.append(label)
    return labels


def to_frames(result: Mapping[str, Mapping[str, Sequence[Any]]], period: str = "1d",
              field_list: Sequence[str] = ()) -> dict[str, Any]:
    """xtdata's shape of a ``get_market_data_ex`` answer: ``{code: pandas.DataFrame}``, one row
    per bar or tick, indexed by xtdata's time strings ('YYYYMMDD' for 1d, 'YYYYMMDDhhmmss'
    else, China time), one column per field of ``field_list`` in its order (none: every field
    answered). The answer always carries ``time``; a ``field_list`` without it leaves it out,
    as xtdata does. Raises ImportError without pandas.
    """
    pd = importlib.import_module("pandas")  # optional: the client needs it only here

    memo: dict[int, str] = {}  # many codes share the same bar times
    frames: dict[str, Any] = {}
    for code, columns in result.items():
        times = list(columns.get(_FRAME_FIELDS_KEY) or ())
        # The fields asked, in that order (time only if asked), as xtdata's; else all as answered.
        names = [name for name in field_list if name in columns] if field_list else list(columns)
        data = {name: columns[name] for name in names}
        frames[code] = pd.DataFrame(data, index=time_strings(times, period, memo))
    return frames


def new_task() -> str:
    """A download's progress topic name, unique enough among one gateway's clients."""
    return "t" + secrets.token_hex(6)


class MarketMethods(Generic[AnyT]):
    """One method per market data op; every one takes a keyword-only ``timeout`` in seconds
    (None: the client's default; downloads: :data:`DOWNLOAD_TIMEOUT`)."""

    _ASYNC = False  # the asyncio client sets True: its calls return awaitables
    pub: str

    def _call(self, op: str, args: dict[str, Any], timeout: float | None, plain: bool = False) -> Any:
        raise NotImplementedError

    def _market(self, op: str, args: dict[str, Any], timeout: float | None) -> AnyT:
        result: AnyT = self._call(op, args, timeout, plain=True)
        return result

    # -- queries --------------------------------------------------------------------------

    def get_full_tick(self, code_list: str | Sequence[str], *, timeout: float | None = None) -> AnyT:
        """The latest tick of each code (or of every code of a market ``SH``/``SZ``/``BJ``):
        ``{code: tick}`` with xtdata's tick fields (PROTOCOL §16.3)."""
        return self._market("get_full_tick", {"code_list": _codes(code_list)}, timeout)

    def get_market_data_ex(
        self,
        field_list: Sequence[str] = (),
        stock_list: str | Sequence[str] = (),
        period: str = "1d",
        start_time: str = "",
        end_time: str = "",
        count: int = -1,
        dividend_type: str = "none",
        fill_data: bool = True,
        *,
        timeout: float | None = None,
    ) -> AnyT:
        """Bars (or ticks) per code as plain columns: ``{code: {"time": [ms...], field: [...]}}``,
        ``time`` always included. ``count`` -1: all in range; n: the last n up to ``end_time``.
        :func:`to_frames` gives xtdata's ``{code: DataFrame}``."""
        return self._market("get_market_data_ex", _bars_args(
            field_list, stock_list, period, start_time, end_time, count, dividend_type, fill_data), timeout)

    def get_local_data(
        self,
        field_list: Sequence[str] = (),
        stock_list: str | Sequence[str] = (),
        period: str = "1d",
        start_time: str = "",
        end_time: str = "",
        count: int = -1,
        dividend_type: str = "none",
        fill_data: bool = True,
        *,
        timeout: float | None = None,
    ) -> AnyT:
        """As :meth:`get_market_data_ex`, from the terminal's local data only."""
        return self._market("get_local_data", _bars_args(
            field_list, stock_list, period, start_time, end_time, count, dividend_type, fill_data), timeout)

    def get_instrument_detail(self, stock_code: str, iscomplete: bool = False, *,
                              timeout: float | None = None) -> AnyT:
        """xtdata's instrument detail map (``InstrumentName``, ``PreClose``, ``UpStopPrice``,
        ``PriceTick``, ...), or None for a code the source does not know."""
        return self._market("get_instrument_detail", {"stock_code": stock_code, "iscomplete": iscomplete}, timeout)

    def get_sector_list(self, *, timeout: float | None = None) -> AnyT:
        """The sector names."""
        return self._market("get_sector_list", {}, timeout)

    def get_stock_list_in_sector(self, sector_name: str, *, timeout: float | None = None) -> AnyT:
        """The codes of a sector ([] for an unknown sector, as xtdata)."""
        return self._market("get_stock_list_in_sector", {"sector_name": sector_name}, timeout)

    def get_trading_dates(self, market: str, start_time: str = "", end_time: str = "", count: int = -1, *,
                          timeout: float | None = None) -> AnyT:
        """The market's trading days as ms timestamps (China midnight)."""
        return self._market("get_trading_dates", {"market": market, "start_time": start_time,
                                                  "end_time": end_time, "count": count}, timeout)

    # -- downloads ------------------------------------------------------------------------

    def download_history_data(self, stock_code: str, period: str, start_time: str = "", end_time: str = "",
                              incrementally: bool | None = None, *, task: str = "",
                              timeout: float | None = None) -> AnyT:
        """Fetch history into the terminal; returns None once done (``timeout`` default
        :data:`DOWNLOAD_TIMEOUT`). ``task``: publish progress on ``download.<task>.``."""
        args = _download_args({"stock_code": stock_code}, period, start_time, end_time, incrementally, task)
        return self._market("download_history_data", args, DOWNLOAD_TIMEOUT if timeout is None else timeout)

    def download_history_data2(
        self,
        stock_list: str | Sequence[str],
        period: str,
        start_time: str = "",
        end_time: str = "",
        callback: ProgressCallback | None = None,
        incrementally: bool | None = None,
        *,
        task: str = "",
        quote_pub: str | None = None,
        timeout: float | None = None,
    ) -> AnyT:
        """Fetch history of many codes; returns None once done.

        ``callback(progress)`` gets xtdata's progress maps (``finished``, ``total``,
        ``stockcode``, ``message``) from the quote PUB (``quote_pub``: default the one ``ping``
        reports) on a thread of its own, all before this returns; the last says ``finished ==
        total`` (made up from the reply if the PUB's last one was not seen). ``task`` names the
        progress topic (default: a fresh one when there is a callback).
        """
        codes = _codes(stock_list)
        seconds = DOWNLOAD_TIMEOUT if timeout is None else timeout
        if callback is None:
            args = _download_args({"stock_list": codes}, period, start_time, end_time, incrementally, task)
            return self._market("download_history_data2", args, seconds)
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        args = _download_args({"stock_list": codes}, period, start_time, end_time, incrementally, task or new_task())
        from .quotes import download_with_progress, download_with_progress_async

        run = download_with_progress_async if self._ASYNC else download_with_progress
        return cast(AnyT, run(self, args, seconds, callback, quote_pub))

    # -- subscriptions --------------------------------------------------------------------

    def subscribe_quote(self, stock_code: str, period: str = "1d", count: int = 0, *,
                        timeout: float | None = None) -> AnyT:
        """Quotes of one code and period on the quote PUB: ``{"seq", "lease"}``. The lease
        (seconds) must be renewed (:meth:`renew_quotes`); :class:`~adapter.client.quotes.Quotes`
        does that and calls back with the quotes."""
        return self._market("subscribe_quote", {"stock_code": stock_code, "period": period, "count": count}, timeout)

    def subscribe_whole_quote(self, code_list: str | Sequence[str], *, timeout: float | None = None) -> AnyT:
        """Ticks of many codes, or of whole markets (``SH``/``SZ``/``BJ``): ``{"seq", "lease"}``."""
        return self._market("subscribe_whole_quote", {"code_list": _codes(code_list)}, timeout)

    def unsubscribe_quote(self, seq: int, *, timeout: float | None = None) -> AnyT:
        """End a subscription (an unknown seq is not an error, as in xtdata)."""
        return self._market("unsubscribe_quote", {"seq": seq}, timeout)

    def renew_quotes(self, seqs: Sequence[int], *, timeout: float | None = None) -> AnyT:
        """Renew the leases of ``seqs``: ``{"unknown": [seq...]}``, those the gateway no longer holds."""
        return self._market("renew_quotes", {"seqs": list(seqs)}, timeout)


def _bars_args(field_list: Sequence[str], stock_list: str | Sequence[str], period: str, start_time: str,
               end_time: str, count: int, dividend_type: str, fill_data: bool) -> dict[str, Any]:
    return {"field_list": _codes(field_list), "stock_list": _codes(stock_list), "period": period,
            "start_time": start_time, "end_time": end_time, "count": count, "dividend_type": dividend_type,
            "fill_data": fill_data}


def _download_args(head: dict[str, Any], period: str, start_time: str, end_time: str,
                   incrementally: bool | None, task: str) -> dict[str, Any]:
    # Every argument, nil included (xtdata's "incrementally: None" is a value: decide by start_time).
    return {**head, "period": period, "start_time": start_time, "end_time": end_time,
            "incrementally": incrementally, "task": task}
