"""The simulator's built-in instrument table: its size and boards, its columns, indices that are
quoted but never traded, xtdata's market sectors and instrument details."""

from __future__ import annotations

import collections
import re
from dataclasses import replace
from decimal import Decimal
from importlib import util
from pathlib import Path
from typing import Any

import pytest

from adapter import market as rules
from adapter.config import SimConfig
from adapter.market import Board, Instrument
from adapter.server.reference import SimTableReference
from adapter.server.risk import Denial, RiskEngine, parse_risk
from adapter.server.view import BooksView
from adapter.sim import books as B
from adapter.sim.instruments import load_instruments, parse_instruments
from adapter.sim.sectors import instrument_detail, sector_list, stock_list_in_sector
from xtquant import xtconstant as C

D = Decimal
ACCOUNT = "1000000365"
TABLE = load_instruments()
XTQUANT = Path(util.find_spec("xtquant").origin).parent  # type: ignore[union-attr,arg-type]

# The table before it grew: these rows keep their names and prices (other tests rely on them).
ORIGINAL = {
    "600000.SH": ("浦发银行", "10.60"), "600036.SH": ("招商银行", "42.30"), "600519.SH": ("贵州茅台", "1460.00"),
    "601318.SH": ("中国平安", "56.50"), "601398.SH": ("工商银行", "7.20"), "600696.SH": ("ST岩石", "4.20"),
    "000001.SZ": ("平安银行", "11.80"), "000333.SZ": ("美的集团", "72.00"), "000858.SZ": ("五粮液", "125.00"),
    "002415.SZ": ("海康威视", "28.50"), "002594.SZ": ("比亚迪", "105.00"), "300750.SZ": ("宁德时代", "265.00"),
    "300059.SZ": ("东方财富", "22.80"), "688981.SH": ("中芯国际", "88.00"), "688111.SH": ("金山办公", "300.00"),
    "430047.BJ": ("诺思兰德", "13.50"), "920819.BJ": ("颖泰生物", "4.10"), "510300.SH": ("沪深300ETF", "3.950"),
    "510050.SH": ("上证50ETF", "2.900"), "159915.SZ": ("创业板ETF", "2.200"),
}


# -- the table ----------------------------------------------------------------------------


def test_the_table_lists_every_board() -> None:
    boards = collections.Counter(i.board for i in TABLE.values())
    assert len(TABLE) > 5000
    assert boards[Board.SH_MAIN] > 1500 and boards[Board.SZ_MAIN] > 1400 and boards[Board.CHINEXT] > 1200
    assert boards[Board.STAR] > 500 and boards[Board.BJ] > 200
    assert boards[Board.SH_FUND] + boards[Board.SZ_FUND] >= 40 and boards[Board.INDEX] >= 20
    prefixes = {code[:3] for code in TABLE}
    assert {"600", "601", "603", "605", "688", "689", "000", "001", "002", "003", "300", "301"} <= prefixes
    assert {c[:2] for c in TABLE if c.endswith(".BJ")} >= {"43", "83", "87", "92"}
    for code in ("000001.SH", "000016.SH", "000300.SH", "000905.SH", "000852.SH", "000688.SH", "399001.SZ",
                 "399006.SZ"):
        assert TABLE[code].kind == rules.INDEX
    for code in ("510050.SH", "510300.SH", "159915.SZ", "588000.SH", "510500.SH", "159919.SZ"):
        assert TABLE[code].kind == rules.FUND
    assert TABLE["000002.SZ"].name == "万科A" and TABLE["000001.SH"].name == "上证指数"
    assert TABLE["399006.SZ"].name == "创业板指" and TABLE["000300.SH"].name == "沪深300"


def test_every_row_follows_the_rules() -> None:
    for code, instrument in TABLE.items():
        assert instrument.code == code and instrument.name
        assert instrument.kind == rules.default_kind(code)
        assert rules.is_on_tick(instrument.prev_close, code) and instrument.last_price == instrument.prev_close
        assert instrument.float_volume <= instrument.total_volume
        if instrument.kind == rules.STOCK:
            assert instrument.total_volume > 0 and D(1) <= instrument.prev_close <= D(2000), code
        if instrument.list_date:
            assert re.fullmatch(r"(19|20)\d{6}", instrument.list_date), code
    assert not [i.name for i in TABLE.values() if "退" in i.name or i.name.startswith("PT")]  # no delisted names
    stocks = [i for i in TABLE.values() if i.kind == rules.STOCK]
    assert sum(bool(i.list_date) for i in stocks) > 0.99 * len(stocks)
    assert TABLE["600000.SH"].list_date == "19991110"


def test_the_original_rows_are_unchanged() -> None:
    for code, (name, price) in ORIGINAL.items():
        instrument = TABLE[code]
        assert (instrument.name, instrument.prev_close, instrument.last_price) == (name, D(price), D(price)), code
        assert str(instrument.prev_close) == price  # the tick's decimals too


def test_each_load_is_a_fresh_dict_of_the_same_parse(tmp_path: Path) -> None:
    first, second = load_instruments(), load_instruments()
    assert first == second and first is not second
    first.clear()
    assert len(load_instruments()) == len(TABLE)
    path = tmp_path / "t.csv"
    path.write_text("code,name,prev_close\n600000.SH,浦发银行,10.60\n", encoding="utf-8")
    assert list(load_instruments(path)) == ["600000.SH"]
    path.write_text("code,name,prev_close\n600000.SH,浦发银行,10.60\n000001.SZ,平安银行,11.80\n", encoding="utf-8")
    assert list(load_instruments(path)) == ["600000.SH", "000001.SZ"]  # the edited file is read again


# -- columns ------------------------------------------------------------------------------


def test_old_three_and_four_column_files_still_load() -> None:
    three = parse_instruments("code,name,prev_close\n600000.SH,浦发银行,10.6\n000001.SH,上证指数,3300\n")
    assert three["600000.SH"] == Instrument("600000.SH", "浦发银行", D("10.60"), D("10.60"))
    assert three["600000.SH"].kind == rules.STOCK and three["000001.SH"].kind == rules.INDEX
    assert (three["600000.SH"].list_date, three["600000.SH"].total_volume, three["600000.SH"].float_volume) == ("", 0, 0)
    four = parse_instruments("code,name,prev_close,last_price\n510300.SH,沪深300ETF,3.950,3.960\n")
    assert four["510300.SH"].kind == rules.FUND and four["510300.SH"].last_price == D("3.960")
    # Constructors of the four fields still work, the kind coming from the code.
    assert Instrument("159915.SZ", "x", D(2), D(2)).kind == rules.FUND


def test_new_columns_are_parsed() -> None:
    table = parse_instruments(
        "code,name,prev_close,last_price,kind,list_date,total_volume,float_volume\n"
        "600000.SH,浦发银行,10.60,,stock,19991110,29352178996,29352178996\n"
        "899050.BJ,北证50,1300.00,1300.00,index,,,\n"
    )
    assert table["600000.SH"] == Instrument("600000.SH", "浦发银行", D("10.60"), D("10.60"), rules.STOCK, "19991110",
                                            29352178996, 29352178996)
    assert table["899050.BJ"].kind == rules.INDEX and table["899050.BJ"].is_index  # any code may be marked an index


BAD_ROWS = [
    ("600000.SH,x,10.60,,share,,,", "kind 'share'"),
    ("600000.SH,x,10.60,,fund,,,", "cannot be of kind 'fund'"),
    ("510300.SH,x,3.950,,stock,,,", "cannot be of kind 'stock'"),
    ("000001.SH,x,3300.00,,stock,,,", "cannot be of kind 'stock'"),
    ("600000.SH,x,10.60,,,19991310,,", "list_date '19991310'"),
    ("600000.SH,x,10.60,,,1999-11-10,,", "list_date"),
    ("600000.SH,x,10.60,,,,100,200", "above its total_volume"),
    ("600000.SH,x,10.60,,,,1e9,", "total_volume '1e9'"),
    ("600000.SH,x,10.605,,,,,", "not on its tick"),
    ("600000.SH,x,10.60,11.67,,,,", "outside its daily limits"),
    ("900901.SH,x,1.00,,,,,", "unsupported security code"),
]


@pytest.mark.parametrize(("row", "problem"), BAD_ROWS, ids=[r[1] for r in BAD_ROWS])
def test_a_bad_row_is_named_by_file_and_line(tmp_path: Path, row: str, problem: str) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("code,name,prev_close,last_price,kind,list_date,total_volume,float_volume\n"
                    "000001.SZ,平安银行,11.80,,,,,\n" + row + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: ") + ".*" + re.escape(problem)):
        load_instruments(path)


# -- indices are quoted, never traded -------------------------------------------------------


def test_index_codes_classify_as_indices() -> None:
    for code in ("000001.SH", "000300.SH", "000852.SH", "399001.SZ", "399006.SZ"):
        assert rules.classify(code) is Board.INDEX and rules.default_kind(code) == rules.INDEX
    assert rules.classify("000001.SZ") is Board.SZ_MAIN  # the same digits on SZ are a stock
    assert rules.classify("302132.SZ") is Board.CHINEXT


def make_books(**config: Any) -> B.Books:
    return B.Books(replace(SimConfig(positions={ACCOUNT: {"000001.SZ": 1000}}), **config), [ACCOUNT], lambda: 0.0)


@pytest.mark.parametrize("code", ["000001.SH", "000300.SH", "399001.SZ", "399006.SZ"])
@pytest.mark.parametrize("side", [C.STOCK_BUY, C.STOCK_SELL])
def test_the_sim_counter_refuses_an_order_for_an_index(code: str, side: int) -> None:
    books = make_books()
    price = str(books.quote(code).last)
    placed = books.place(ACCOUNT, code, side, 100, C.FIX_PRICE, price)
    assert placed.refusal is not None and placed.refusal.error_id == B.ERR_INDEX[0]
    assert placed.refusal.message == f"[COUNTER] [120101][指数不能交易][stock_code={code}]"
    assert placed.order.status == C.ORDER_JUNK and books.asset(ACCOUNT).frozen_cash == 0


def test_an_index_cannot_be_held_and_a_marked_index_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="000300.SH is an index"):
        make_books(positions={ACCOUNT: {"000300.SH": 100}})
    path = tmp_path / "bj.csv"
    path.write_text("code,name,prev_close,kind\n899050.BJ,北证50,1300.00,index\n", encoding="utf-8")
    books = make_books(instruments_file=str(path), positions={})
    placed = books.place(ACCOUNT, "899050.BJ", C.STOCK_BUY, 100, C.FIX_PRICE, "1300.00")
    assert placed.refusal is not None and placed.refusal.error_id == B.ERR_INDEX[0]


def test_an_unknown_code_is_said_to_be_unknown_to_the_simulator(tmp_path: Path) -> None:
    placed = make_books().place(ACCOUNT, "999999.SH", C.STOCK_BUY, 100, C.FIX_PRICE, "10.00")
    assert placed.refusal is not None and placed.refusal.error_id == B.ERR_UNKNOWN_CODE[0]
    message = placed.refusal.message
    assert message.startswith("[COUNTER] [120100][证券代码不存在或不允许交易][stock_code=999999.SH] (")
    assert "unknown to the simulator" in message and "sim.instruments_file" in message
    path = tmp_path / "mine.csv"
    path.write_text("code,name,prev_close\n600000.SH,浦发银行,10.60\n", encoding="utf-8")
    mine = make_books(instruments_file=str(path), positions={}).place(ACCOUNT, "000001.SZ", C.STOCK_BUY, 100,
                                                                      C.FIX_PRICE, "11.80")
    assert mine.refusal is not None and f"instrument table {path}; add a row" in mine.refusal.message


def risk_denial(reference: Any, code: str, price: float) -> Denial | None:
    risk = RiskEngine(parse_risk({"orders_per_second": 0, "orders_per_day": 0}), reference)
    view = BooksView([ACCOUNT])
    view.load(ACCOUNT, {"positions": [], "orders": []})
    book = {"asset": None, "positions": {}, "orders": {}, "trades": {}, "open": {}, "open_by_code": {},
            **view.books(ACCOUNT)}
    args = {"account_id": ACCOUNT, "stock_code": code, "order_type": 23, "order_volume": 100, "price_type": 11,
            "price": price, "client_order_id": "c1"}
    try:
        risk.check_order(ACCOUNT, None, args, book, "normal", 0)
    except Denial as denial:
        return denial
    return None


def test_the_gateway_denies_indices_and_names_the_simulator_for_unknown_codes() -> None:
    reference = SimTableReference()
    denial = risk_denial(reference, "000300.SH", float(TABLE["000300.SH"].prev_close))
    assert denial is not None and denial.rule == "code.format" and "index" in denial.message
    denial = risk_denial(TABLE.get, "899050.BJ", 1300.0)  # not in the table: unknown, the generic words
    assert denial is not None and denial.rule == "code.unknown" and "no reference data" in denial.message
    denial = risk_denial(reference, "600001.SH", 10.0)
    assert denial is not None and denial.rule == "code.unknown"
    assert "unknown to the simulator" in denial.message and "sim.instruments_file" in denial.message
    assert risk_denial(reference, "000002.SZ", float(TABLE["000002.SZ"].prev_close)) is None  # now listed


def test_the_walk_moves_only_quotes_in_use() -> None:
    books = make_books(price_model="walk", walk_step=0.01)
    books.quote("600000.SH")  # asked for: walks from now on
    books.step()
    assert books.moved == {"000001.SZ", "600000.SH"}  # held, asked for; the other thousands stay
    assert books.quotes["600036.SH"].last == D("42.30") and books.quotes["600000.SH"].last != D("10.60")
    busy = B.Books(SimConfig(price_model="walk", walk_step=0.01), [ACCOUNT], lambda: 0.0)
    busy.quote("600000.SH")
    busy.quote("600519.SH")
    path = [busy.step() or busy.quotes["600000.SH"].last for _ in range(5)]
    alone = make_books(price_model="walk", walk_step=0.01, positions={})
    alone.quote("600000.SH")
    assert [alone.step() or alone.quotes["600000.SH"].last for _ in range(5)] == path  # its own generator


def test_only_the_quotes_that_moved_are_saved_again() -> None:
    books = make_books()
    books.place(ACCOUNT, "600000.SH", C.STOCK_BUY, 100, C.FIX_PRICE, "10.60")
    assert books.moved == set()  # an order moves no quote: the counter's write skips the thousands
    books.set_price("600000.SH", 10.50)
    assert books.moved == {"600000.SH"}
    books.moved.clear()  # as the counter does once written
    books.next_day()
    assert books.moved == {"600000.SH"} and books.quotes["600000.SH"].prev_close == D("10.50")


# -- sectors ------------------------------------------------------------------------------


def test_sector_names_are_xtdatas() -> None:
    names = sector_list()
    for name in ("沪深A股", "上证A股", "深证A股", "创业板", "科创板", "京市A股", "北证A股", "沪深ETF", "沪市ETF",
                 "深市ETF", "沪深指数", "沪市指数", "深市指数"):
        assert name in names
    assert names == sorted(names)
    assert stock_list_in_sector("no such sector") == []


def test_sector_membership() -> None:
    def members(name: str) -> set[str]:
        codes = stock_list_in_sector(name)
        assert codes == sorted(codes) and codes, name
        return set(codes)

    sh, sz, bj = members("上证A股"), members("深证A股"), members("京市A股")
    assert members("沪深A股") == sh | sz and not sh & sz and not bj & (sh | sz)
    assert {c[-2:] for c in sh} == {"SH"} and {c[-2:] for c in sz} == {"SZ"} and {c[-2:] for c in bj} == {"BJ"}
    assert members("北证A股") == bj
    chinext, star = members("创业板"), members("科创板")
    assert chinext <= sz and {c[:3] for c in chinext} <= {"300", "301", "302"}
    assert star <= sh and {c[:3] for c in star} <= {"688", "689"}
    assert {"600000.SH", "688981.SH"} <= sh and {"000001.SZ", "300750.SZ"} <= sz and "430047.BJ" in bj
    etfs = members("沪深ETF")
    assert etfs == members("沪市ETF") | members("深市ETF") and {"510300.SH", "159915.SZ", "588000.SH"} <= etfs
    assert all(TABLE[c].kind == rules.FUND for c in etfs)
    indices = members("沪深指数")
    assert indices == members("沪市指数") | members("深市指数")
    assert {"000001.SH", "000300.SH", "399001.SZ", "399006.SZ"} <= indices
    assert all(TABLE[c].is_index for c in indices)
    assert not indices & (sh | sz | bj | etfs)
    stocks = {c for c, i in TABLE.items() if i.kind == rules.STOCK}
    assert sh | sz | bj == stocks  # every stock is in its market's sector


def test_sectors_of_a_table_of_ones_own() -> None:
    table = parse_instruments("code,name,prev_close\n600000.SH,浦发银行,10.60\n399001.SZ,深证成指,10500.00\n")
    assert stock_list_in_sector("沪深A股", table) == ["600000.SH"]
    assert stock_list_in_sector("深市指数", table) == ["399001.SZ"]
    assert stock_list_in_sector("京市A股", table) == []


# -- instrument details ---------------------------------------------------------------------


def manual_fields() -> dict[str, type]:
    """get_instrument_detail's default fields and their types, as xtdata's manual lists them."""
    text = (XTQUANT / "doc" / "xtdata.md").read_text(encoding="utf-8")
    block = text[text.index("iscomplete为False时，返回以下字段"):]
    block = block[block.index("```python") + len("```python"):]
    block = block[:block.index("```")]
    types = {"string": str, "str": str, "int": int, "float": float, "bool": bool}
    fields = {}
    for name, kind in re.findall(r"^\s*([A-Za-z]+) - (\w+) ", block, re.MULTILINE):
        fields[name] = types[kind]
    return fields


def xtdata_field_list() -> list[str]:
    """The keys xtdata.py's get_instrument_detail returns (not iscomplete), in its order."""
    text = (XTQUANT / "xtdata.py").read_text(encoding="utf-8")
    body = text[text.index("def get_instrument_detail("):]
    names: list[str] = []
    for list_name in ("field_list = [", "exfield_list = ["):
        start = body.index(list_name)
        names += re.findall(r"'(\w+)'", body[start:body.index("]", start)])
    return names


def test_instrument_detail_has_the_manuals_fields_and_types() -> None:
    fields = manual_fields()
    assert {"ExchangeID", "InstrumentName", "PreClose", "UpStopPrice", "PriceTick", "IsTrading"} <= set(fields)
    for code in ("600000.SH", "510300.SH", "000300.SH", "430047.BJ"):
        detail = instrument_detail(TABLE[code])
        assert list(detail) == xtdata_field_list()
        for name, kind in fields.items():
            if name == "ExpireDate":  # listed as int, but xtdata.py turns it into a str
                assert detail[name] == "99999999"
                continue
            assert type(detail[name]) is kind, (code, name, detail[name])


def test_instrument_detail_values_follow_the_rules() -> None:
    detail = instrument_detail(TABLE["600000.SH"], trading_day="20261125")
    assert (detail["ExchangeID"], detail["InstrumentID"], detail["InstrumentName"]) == ("SH", "600000", "浦发银行")
    assert (detail["PreClose"], detail["UpStopPrice"], detail["DownStopPrice"]) == (10.6, 11.66, 9.54)
    assert (detail["PriceTick"], detail["VolumeMultiple"], detail["OpenDate"]) == (0.01, 1, "19991110")
    assert detail["IsTrading"] is True and detail["TradingDay"] == "20261125"
    assert detail["TotalVolume"] == float(TABLE["600000.SH"].total_volume) > 0
    st = instrument_detail(TABLE["600696.SH"])  # ST: 5 %
    assert (st["UpStopPrice"], st["DownStopPrice"]) == (4.41, 3.99)
    star = instrument_detail(TABLE["688981.SH"], prev_close="100.00")  # 20 %, from the given close
    assert (star["PreClose"], star["UpStopPrice"], star["DownStopPrice"]) == (100.0, 120.0, 80.0)
    fund = instrument_detail(TABLE["510300.SH"])
    assert (fund["PriceTick"], fund["UpStopPrice"], fund["DownStopPrice"]) == (0.001, 4.345, 3.555)
    index = instrument_detail(TABLE["000001.SH"])
    assert index["IsTrading"] is False and index["UpStopPrice"] == index["DownStopPrice"] == 0.0
    assert index["InstrumentName"] == "上证指数" and index["OpenDate"] == "0"


def test_a_step_in_parts_moves_the_table_as_one_step_does() -> None:
    """The counter steps a large table in parts, taking requests in between: same prices, same fills."""
    codes = sorted(TABLE)[:1200:3]
    whole, parts = (make_books(price_model="walk", walk_step=0.01) for _ in range(2))
    for books in (whole, parts):
        for code in codes:
            books.quote(code)
        books.place(ACCOUNT, "000001.SZ", C.STOCK_SELL, 100, C.FIX_PRICE, str(books.quote("000001.SZ").last))
    for _ in range(3):
        whole_events = whole.step()
        live = sorted(parts.walking())
        assert set(live) == whole.walking() >= set(codes)
        part_events = [event for start in range(0, len(live), 100) for event in parts.step(only=live[start:start + 100])]
        assert {c: q.last for c, q in parts.quotes.items()} == {c: q.last for c, q in whole.quotes.items()}
        assert len(part_events) == len(whole_events)
