"""Sectors and instrument details of the simulator's instrument table, as xtdata gives them.

``sector_list`` and ``stock_list_in_sector`` answer like ``xtdata.get_sector_list`` and
``xtdata.get_stock_list_in_sector`` for the market sectors xtdata builds from the exchanges'
lists (沪深A股, 上证A股, 创业板, 京市A股, 沪深ETF, 沪深指数, ...); concept, industry and index
constituent sectors are not simulated. ``instrument_detail`` answers like
``xtdata.get_instrument_detail(code)`` (the default, not ``iscomplete``), its fields computed
from the table and the rules of ``adapter.market``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from adapter import market as rules
from adapter.market import Board, Instrument, Number
from adapter.sim.instruments import load_instruments

__all__ = ["SECTORS", "instrument_detail", "sector_list", "stock_list_in_sector"]

Table = Mapping[str, Instrument]


def _exchange(instrument: Instrument) -> str:
    return instrument.code[-2:]


def _a_shares(*exchanges: str) -> Callable[[Instrument], bool]:
    return lambda i: i.kind == rules.STOCK and _exchange(i) in exchanges


def _of_kind(kind: str, *exchanges: str) -> Callable[[Instrument], bool]:
    return lambda i: i.kind == kind and _exchange(i) in exchanges


def _on_board(board: Board) -> Callable[[Instrument], bool]:
    return lambda i: i.kind == rules.STOCK and i.board is board


# xtdata's names of its market sectors (ChiNext is part of 深证A股, STAR of 上证A股; BJ is apart
# from 沪深A股). Both names of the Beijing sector are in use: 京市A股 and 北证A股.
SECTORS: dict[str, Callable[[Instrument], bool]] = {
    "沪深A股": _a_shares("SH", "SZ"),
    "上证A股": _a_shares("SH"),
    "深证A股": _a_shares("SZ"),
    "创业板": _on_board(Board.CHINEXT),
    "科创板": _on_board(Board.STAR),
    "京市A股": _a_shares("BJ"),
    "北证A股": _a_shares("BJ"),
    "沪深ETF": _of_kind(rules.FUND, "SH", "SZ"),
    "沪市ETF": _of_kind(rules.FUND, "SH"),
    "深市ETF": _of_kind(rules.FUND, "SZ"),
    "沪深基金": _of_kind(rules.FUND, "SH", "SZ"),  # the table's funds are all ETFs
    "沪市基金": _of_kind(rules.FUND, "SH"),
    "深市基金": _of_kind(rules.FUND, "SZ"),
    "沪深指数": _of_kind(rules.INDEX, "SH", "SZ"),
    "沪市指数": _of_kind(rules.INDEX, "SH"),
    "深市指数": _of_kind(rules.INDEX, "SZ"),
}


def sector_list() -> list[str]:
    """The sector names, sorted; the same whatever the table (a sector may be empty)."""
    return sorted(SECTORS)


def stock_list_in_sector(name: str, table: Table | None = None) -> list[str]:
    """The codes of sector ``name`` in ``table`` (the built-in one when None), sorted; [] for an
    unknown sector, as xtdata answers."""
    member = SECTORS.get(name)
    if member is None:
        return []
    instruments = load_instruments() if table is None else table
    return sorted(code for code, instrument in instruments.items() if member(instrument))


def instrument_detail(
    instrument: Instrument, prev_close: Number | None = None, trading_day: str = ""
) -> dict[str, Any]:
    """``xtdata.get_instrument_detail``'s dict for ``instrument``.

    ``prev_close`` overrides the table's (the counter's after a day roll); ``trading_day`` is
    YYYYMMDD. Fields and types follow the xtdata manual and the order of xtdata.py's field list.
    ``ExpireDate`` is a str: the manual lists an int, but xtdata.py turns it into a str. The
    margin ratios and quotas are those of a stock (none); an index has no daily limits (0.0)
    and is not tradable (IsTrading False).
    """
    code = instrument.code
    digits, exchange = rules.split_code(code)
    base = rules.to_decimal(instrument.prev_close if prev_close is None else prev_close)
    tick = rules.tick_size(code)
    if instrument.is_index:
        down = up = 0.0
    else:
        low, high = rules.price_limits(code, instrument.name, base)
        down, up = float(low), float(high)
    return {
        "ExchangeID": exchange,
        "InstrumentID": digits,
        "InstrumentName": instrument.name,
        "ProductID": "",
        "ProductName": "",
        "ProductType": -1,
        "ExchangeCode": exchange,
        "UniCode": digits,
        "CreateDate": "0",
        "OpenDate": instrument.list_date or "0",
        "ExpireDate": "99999999",
        "TradingDay": trading_day,
        "PreClose": float(base),
        "SettlementPrice": float(base),
        "UpStopPrice": up,
        "DownStopPrice": down,
        "FloatVolume": float(instrument.float_volume),
        "TotalVolume": float(instrument.total_volume),
        "LongMarginRatio": 0.0,
        "ShortMarginRatio": 0.0,
        "PriceTick": float(tick),
        "VolumeMultiple": 1,
        "MainContract": 0,
        "LastVolume": 0,
        "InstrumentStatus": 0,
        "IsTrading": not instrument.is_index,
        "IsRecent": False,
        # xtdata.py copies these four from the futures' extended info: none for a security.
        "ProductTradeQuota": None,
        "ContractTradeQuota": None,
        "ProductOpenInterestQuota": None,
        "ContractOpenInterestQuota": None,
    }
