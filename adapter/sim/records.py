"""xtquant records of the simulated books, as the native client hands them to xttrader.

New objects each time: receivers read them on other threads while the books move on.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapter import market as rules
from adapter.sim.books import BUY, SELL, Asset, Order, Position, Quote, Trade, offset_flag, secu_account
from xtquant import xtconstant, xttype

# XtOrderError.error_id of an order the counter refused: QMT reports -61 and puts the counter's
# code in error_msg ("order_id=10231, error_id=-61, error_msg=限价买入 [SZ162411] [COUNTER]
# [12313][...]", shidenggui/easytrader easytrader/miniqmt/miniqmt_trader.py docstrings).
ORDER_REFUSED_ERROR_ID = -61


class Item:
    """A native result row: attributes named as xtquant's C++ fields (m_str..., m_n...)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def order_error_message(order_type: int, price_type: int, code: str, status_msg: str) -> str:
    """``XtOrderError.error_msg`` of a refused order: the counter's price-type name and side, the
    market and code, then the counter's text -- "限价买入 [SZ162411] [COUNTER] [12313][当前时间不允许此类
    证券交易]" (error_id -61) in shidenggui/easytrader docs/miniqmt.md, "最优五档即时成交剩余撤销卖出
    [SH688121] [COUNTER] [251005][证券可用数量不足]" (error_id -61) in a live log quoted in
    mlhjyx/quantmind-v2's docs. The order's own ``status_msg`` carries the counter's text alone
    (QMT's 废单原因 column, see ``adapter.sim.books``). Real terminals report such errors with
    error_id -61 and the counter's code in this text."""
    side = {BUY: "买入", SELL: "卖出"}.get(order_type, "")
    label = rules.BROKER_PRICE_TYPE_NAMES.get(rules.broker_price_type(price_type), "") + side
    digits, _, suffix = code.rpartition(".")
    where = f"[{suffix}{digits}]" if digits else f"[{code}]"
    return f"{label} {where} {status_msg}" if label else f"{where} {status_msg}"


def xt_order(order: Order) -> xttype.XtOrder:
    average = order.traded_amount / order.traded_volume if order.traded_volume else Decimal(0)
    return xttype.XtOrder(
        order.account_id,
        order.code,
        order.order_id,
        order.sysid,
        order.order_time,
        order.order_type,
        order.volume,
        rules.broker_price_type(order.price_type),  # the counter's code, not the request's (rules)
        float(order.price),
        order.traded_volume,
        float(average.quantize(Decimal("0.0001"))),
        order.status,
        order.status_msg,
        order.strategy_name,
        order.order_remark,
        xtconstant.DIRECTION_FLAG_LONG,
        offset_flag(order.order_type),
        order.secu_account,
        order.name,
    )


def xt_trade(trade: Trade) -> xttype.XtTrade:
    return xttype.XtTrade(
        trade.account_id,
        trade.stock_code,
        trade.order_type,
        trade.traded_id,
        trade.traded_time,
        trade.traded_price,
        trade.traded_volume,
        trade.traded_amount,
        trade.order_id,
        trade.order_sysid,
        trade.strategy_name,
        trade.order_remark,
        trade.direction,
        trade.offset_flag,
        trade.commission,
        trade.secu_account,
        trade.instrument_name,
    )


def xt_position(account_id: str, position: Position, quote: Quote) -> xttype.XtPosition:
    market_value = rules.trade_amount(quote.last, position.volume)
    cost = position.cost.quantize(rules.CENT)
    float_profit = market_value - cost
    market = rules.market_enum(position.code)
    xt = xttype.XtPosition(
        account_id,
        position.code,
        position.volume,
        position.can_use,
        float(position.open_cost / position.volume) if position.volume else 0.0,
        float(market_value),
        position.frozen,
        0,
        position.yesterday,
        float(position.cost / position.volume) if position.volume else 0.0,
        xtconstant.DIRECTION_FLAG_LONG,
        float(quote.last),
        float(float_profit / cost) if cost else 0.0,
        secu_account(account_id, market),
        quote.instrument.name,
    )
    # Fields the manual's XtPosition table lists and xttype's class lacks (the native object has them).
    xt.float_profit = float(float_profit)  # type: ignore[attr-defined]
    xt.open_date = ""  # type: ignore[attr-defined]  # "开仓日期，股票不需要": not kept for stocks
    xt.position_profit = 0.0  # type: ignore[attr-defined]  # "持仓盈亏，股票不需要"
    return xt


def xt_asset(asset: Asset) -> xttype.XtAsset:
    total = asset.cash + asset.frozen_cash + asset.market_value
    return xttype.XtAsset(
        asset.account_id,
        float(asset.cash),
        float(asset.frozen_cash),
        float(asset.market_value),
        float(total),
        float(asset.cash),
    )
