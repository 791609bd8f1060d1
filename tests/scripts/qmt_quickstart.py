# qmt_quickstart.py
from xtquant.xttrader import XtQuantTrader, XtQuantTraderCallback
from xtquant.xttype import StockAccount
from xtquant import xtconstant
import time

class TraderCb(XtQuantTraderCallback):
    def on_disconnected(self):
        print('disconnected')
    def on_stock_order(self, order):
        print('order_cb:', order.account_id, order.stock_code, order.order_status, order.order_id)
    def on_stock_trade(self, trade):
        print('trade_cb:', trade.account_id, trade.stock_code, trade.traded_volume, trade.traded_price)
    def on_order_error(self, err):
        print('order_err:', err.order_id, err.error_id, err.error_msg)
    def on_cancel_error(self, err):
        print('cancel_err:', err.order_id, err.error_id, err.error_msg)
    def on_order_stock_async_response(self, resp):
        print('async_resp:', resp.account_id, resp.order_id, resp.seq)

# 1) 创建交易会话并连接
QMT_USERDATA_PATH = r'D:\迅投极速交易终端 睿智融科版\userdata_mini'  # 修改为你的路径
SESSION_ID = 1001  # 同一台机器不同策略需使用不同的 session_id
ACCOUNT_ID = '1000000365'  # 修改为你的资金账号

xt = XtQuantTrader(QMT_USERDATA_PATH, SESSION_ID)
cb = TraderCb()
xt.register_callback(cb)
xt.start()  # 启动交易线程

ret = xt.connect()  # 0 表示成功
print('connect:', ret)

acc = StockAccount(ACCOUNT_ID)
ret = xt.subscribe(acc)  # 0 表示成功（订阅后才能收到主推回报）
print('subscribe:', ret)

# 2) 查询资产/持仓/委托/成交
asset = xt.query_stock_asset(acc)
print('cash:', getattr(asset, 'cash', None))

positions = xt.query_stock_positions(acc)
print('positions_cnt:', 0 if not positions else len(positions))

orders = xt.query_stock_orders(acc)
print('orders_cnt:', 0 if not orders else len(orders))

trades = xt.query_stock_trades(acc)
print('trades_cnt:', 0 if not trades else len(trades))

# 3) 同步限价下单（返回 order_id）
code = '600000.SH'
price = 10.50
qty = 200  # A股常见最小申报单位为 100 的整数倍

order_id = xt.order_stock(
    acc,
    code,
    xtconstant.STOCK_BUY,      # 买入：STOCK_BUY；卖出：STOCK_SELL
    qty,
    xtconstant.FIX_PRICE,      # 限价单
    price,
    'strategy_demo',
    'remark'
)
print('order_id:', order_id)

# 4) 撤单（使用上一步返回的 order_id）
if isinstance(order_id, int) and order_id > 0:
    time.sleep(1)  # 给柜台一点处理时间
    cancel_ret = xt.cancel_order_stock(acc, order_id)
    print('cancel_ret:', cancel_ret)  # 0 成功，-1 下发失败

# 5) 阻塞接收回报（可根据需要保留/删除）
# xt.run_forever()
