"""xtquant constants the wire understands, with readable aliases.

Values are copied from ``xtquant.xtconstant`` so this module stays importable without
xtquant; a unit test checks them against the installed package. Reverse tables are
derived from the forward ones.
"""

from __future__ import annotations

from typing import Final

STOCK_BUY: Final = 23
STOCK_SELL: Final = 24
LATEST_PRICE: Final = 5
FIX_PRICE: Final = 11

ORDER_TYPE_NAMES: Final[dict[int, str]] = {STOCK_BUY: "buy", STOCK_SELL: "sell"}

# Stock price types (xtconstant names in the comments).
PRICE_TYPE_NAMES: Final[dict[int, str]] = {
    LATEST_PRICE: "latest",  # LATEST_PRICE
    FIX_PRICE: "limit",  # FIX_PRICE
    42: "sh_best5_cancel",  # MARKET_SH_CONVERT_5_CANCEL
    43: "sh_best5_limit",  # MARKET_SH_CONVERT_5_LIMIT
    44: "peer_best",  # MARKET_PEER_PRICE_FIRST
    45: "own_best",  # MARKET_MINE_PRICE_FIRST
    46: "sz_ioc",  # MARKET_SZ_INSTBUSI_RESTCANCEL
    47: "sz_best5_cancel",  # MARKET_SZ_CONVERT_5_CANCEL
    48: "sz_fok",  # MARKET_SZ_FULL_OR_CANCEL
}

# Price types in order records: the counter's own codes (QMT's EBrokerPriceType), not the
# request's xtconstant (PROTOCOL §3.5; adapter.market has the sources and the mapping).
BROKER_PRICE_TYPE_NAMES: Final[dict[int, str]] = {
    49: "market",  # 市价
    50: "limit",  # 限价: sent as FIX_PRICE or LATEST_PRICE
    84: "peer_best",  # 对手方最优价格
    85: "best5_limit",  # 最优五档即时成交剩余转限价
    86: "own_best",  # 本方最优价格
    87: "ioc",  # 即时成交剩余撤销
    88: "best5_cancel",  # 最优五档即时成交剩余撤销
    89: "fok",  # 全额成交并撤单
}

ORDER_JUNK: Final = 57  # xtconstant.ORDER_JUNK (废单): refused by the counter
ORDER_STATUS_NAMES: Final[dict[int, str]] = {
    48: "unreported",
    49: "wait_reporting",
    50: "reported",
    51: "reported_cancel",
    52: "partsucc_cancel",
    53: "part_cancel",
    54: "canceled",
    55: "part_succ",
    56: "succeeded",
    57: "junk",
    255: "unknown",
}
FINAL_ORDER_STATUSES: Final = frozenset({53, 54, 56, 57})

ACCOUNT_TYPE_NAMES: Final[dict[int, str]] = {
    1: "FUTURE",
    2: "STOCK",
    3: "CREDIT",
    5: "FUTURE_OPTION",
    6: "STOCK_OPTION",
    7: "HUGANGTONG",
    11: "SHENGANGTONG",
}

MARKET_NAMES: Final[dict[int, str]] = {0: "SH", 1: "SZ", 70: "BJ"}

ORDER_TYPE_BY_NAME: Final = {v: k for k, v in ORDER_TYPE_NAMES.items()}
PRICE_TYPE_BY_NAME: Final = {v: k for k, v in PRICE_TYPE_NAMES.items()}
ACCOUNT_TYPE_BY_NAME: Final = {v: k for k, v in ACCOUNT_TYPE_NAMES.items()}
MARKET_BY_NAME: Final = {v: k for k, v in MARKET_NAMES.items()}
