#coding:utf-8
"""``xtquant.xtdata`` served by a qmt-zmq-adapter gateway (PROTOCOL §16).

Under ``qmt-adapter run`` / ``python -m adapter.compat``, ``from xtquant import xtdata`` gives
this module. Every public name of genuine xtdata is here, with its parameters and defaults
(tests/unit/test_compat_xtdata_surface.py compares them). These are backed by the gateway, with
xtdata's return shapes:

    get_full_tick, get_market_data_ex (gmd2), get_market_data (gmd), get_local_data (gld),
    get_instrument_detail, get_instrument_detail_list, get_stock_list_in_sector (gsl),
    get_sector_list, get_trading_dates, download_history_data (supply_history_data),
    download_history_data2, subscribe_quote, subscribe_quote2 (dividend_type none),
    subscribe_whole_quote, unsubscribe_quote, run, connect, reconnect, disconnect, get_client,
    hello

and xtdata's pure helpers work as they do there (datetime_to_timetag, timetag_to_datetime,
timetagToDateTime, t2d, try_except). Every other function raises ``NotImplementedError``
naming itself. The gateway is the one the compat trader uses: ``QMT_ADAPTER_ROUTER`` /
``QMT_ADAPTER_PUB`` and ``QMT_ADAPTER_CLIENT_KEY`` / ``QMT_ADAPTER_SERVER_KEY``.

Frames: ``get_market_data_ex`` answers ``{code: pandas.DataFrame}`` indexed by 'YYYYMMDD'
(1d) or 'YYYYMMDDhhmmss' strings in China time, whatever this host's zone; without pandas,
the plain columns ``{code: {field: [values]}}``. Gateway refusals raise
``adapter.client.GatewayError`` (an Exception, as xtdata's own failures are).
"""

import atexit as _atexit
import datetime as _dt
import logging as _logging
import threading as _threading
import time as _TIME_
import traceback as _TRACEBACK_

__all__ = [
    'subscribe_quote'
    , 'subscribe_whole_quote'
    , 'unsubscribe_quote'
    , 'run'
    , 'get_market_data'
    , 'get_local_data'
    , 'get_full_tick'
    , 'get_divid_factors'
    , 'get_l2_quote'
    , 'get_l2_order'
    , 'get_l2_transaction'
    , 'download_history_data'
    , 'get_financial_data'
    , 'download_financial_data'
    , 'get_instrument_detail'
    , 'get_instrument_type'
    , 'get_trading_dates'
    , 'get_sector_list'
    , 'get_stock_list_in_sector'
    , 'download_sector_data'
    , 'add_sector'
    , 'remove_sector'
    , 'get_index_weight'
    , 'download_index_weight'
    , 'get_holidays'
    , 'get_trading_calendar'
    , 'get_etf_info'
    , 'download_etf_info'
    , 'get_main_contract'
    , 'download_history_contracts'
    , 'download_cb_data'
    , 'get_cb_info'
    , 'create_sector_folder'
    , 'create_sector'
    , 'remove_stock_from_sector'
    , 'reset_sector'
    , 'get_period_list'
    , 'download_his_st_data'
    , 'get_tabular_data'
]

_log = _logging.getLogger("adapter.compat.xtdata")

### config (xtdata's module settings; only enable_hello has an effect here)

debug_mode = 0
default_data_dir = '../userdata_mini/datadir'
data_dir = None
enable_hello = True

_BAR_PERIODS = frozenset({'1m', '5m', '15m', '30m', '1h', '1d'})
_PERIOD_ALIASES = {'60m': '1h'}  # xtdata takes both
_RUN_CHECK = 3.0  # seconds between run()'s looks at the gateway, as xtdata's
_RUN_SILENCE = 15.0  # seconds without an answer after which run() says the connection is lost
_PING_TIMEOUT = 2.0
_CHINA = _dt.timezone(_dt.timedelta(hours=8))


def _unbridged(name):
    raise NotImplementedError(
        f"xtdata.{name} is not bridged by qmt-zmq-adapter: the gateway serves quotes, bars, ticks, "
        "instrument details, sectors, trading dates and downloads (see the README, Market data)")


def try_except(func):
    import sys
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception:
            exc_type, exc_instance, exc_traceback = sys.exc_info()
            formatted_traceback = ''.join(_TRACEBACK_.format_tb(exc_traceback))
            message = '\n{0} raise {1}:{2}'.format(
                formatted_traceback,
                exc_type.__name__,
                exc_instance
            )
            return None

    return wrapper


### connection

class _Connection:
    """What ``connect()`` returns: xtdata's returns its RPC client; this one has the same
    ``is_connected()``, ``shutdown()``, ``get_peer_addr()``, and the adapter client it uses."""

    def __init__(self, client, router, info):
        self.client = client
        self.router = router
        self.info = info
        self.closed = _threading.Event()
        self._quotes = None
        self._lock = _threading.Lock()
        self.last_answer = _TIME_.monotonic()

    def is_connected(self):
        if self.closed.is_set():
            return False
        try:
            self.client.ping(timeout=_PING_TIMEOUT)
        except Exception:
            return False
        self.last_answer = _TIME_.monotonic()
        return True

    def get_peer_addr(self):
        return self.router

    def get_data_dir(self):
        return ''

    def get_app_dir(self):
        return ''

    def quotes(self):
        from adapter.client.quotes import Quotes

        with self._lock:
            if self.closed.is_set():
                raise Exception('行情服务连接断开 (disconnected from the gateway)')
            if self._quotes is None:
                self._quotes = Quotes(self.client)
            return self._quotes

    def shutdown(self):
        with self._lock:
            self.closed.set()
            quotes, self._quotes = self._quotes, None
        if quotes is not None:
            quotes.close()
        self.client.close()

    def __repr__(self):
        return f"<xtdata connection to the qmt-zmq-adapter gateway at {self.router}>"


__client = None
__client_lock = _threading.RLock()
__hello_said = False


def connect(ip = '', port = None, remember_if_success = True):
    """Connect to the gateway (``QMT_ADAPTER_ROUTER``; a ZeroMQ endpoint as ``ip`` overrides it).
    ``port`` is xtdata's data service port and has no meaning here."""
    global __client
    from adapter.client import Client
    from adapter.compat.trader import endpoints

    with __client_lock:
        if __client is not None and not __client.closed.is_set():
            return __client
        router, pub = endpoints(ip if isinstance(ip, str) and '://' in ip else None)
        client = Client(router, pub)
        try:
            info = client.ping(timeout=_PING_TIMEOUT)
        except Exception as exc:
            client.close()
            raise Exception(f"无法连接xtquant服务: the qmt-zmq-adapter gateway at {router} does not answer ({exc})") from None
        __client = _Connection(client, router, info)
    hello()
    return __client


def reconnect(ip = '', port = None, remember_if_success = True):
    disconnect()
    return connect(ip, port, remember_if_success)


def disconnect():
    global __client
    with __client_lock:
        connection, __client = __client, None
    if connection is not None:
        connection.shutdown()
    return


def _at_exit():
    # Gives the gateway its quote subscriptions back now rather than when their leases run out.
    try:
        disconnect()
    except Exception:
        pass


_atexit.register(_at_exit)


def get_client():
    with __client_lock:
        if __client is not None and not __client.closed.is_set():
            return __client
    return connect()


def hello():
    global __hello_said
    if not enable_hello or __hello_said:
        return
    __hello_said = True
    connection = get_client()
    info = connection.info
    cur = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(
f'''***** xtdata连接成功 {cur} *****
服务信息: qmt-zmq-adapter gateway {info.get('server_version')}, backend {info.get('backend')}
服务地址: {connection.router}
数据路径: (the gateway's)
设置xtdata.enable_hello = False可隐藏此消息
'''
    )
    return


def _data():
    return get_client().client


def run():
    '''阻塞线程接收行情回调'''
    connection = get_client()
    while not connection.closed.wait(_RUN_CHECK):
        if not connection.is_connected() and _TIME_.monotonic() - connection.last_answer > _RUN_SILENCE:
            raise Exception('行情服务连接断开')
    raise Exception('行情服务连接断开')


### arguments

def _time_arg(value):
    """xtdata's time arguments as the gateway takes them: '' / 'YYYYMMDD' / 'YYYYMMDDhhmmss'."""
    if isinstance(value, _dt.datetime):
        return value.strftime('%Y%m%d%H%M%S')
    if isinstance(value, _dt.date):
        return value.strftime('%Y%m%d')
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 10 ** 11:  # a ms timestamp, as xtdata also takes
            return _dt.datetime.fromtimestamp(value / 1000, _CHINA).strftime('%Y%m%d%H%M%S')
        return str(value)
    return value


def _period(period):
    return _PERIOD_ALIASES.get(period, period)


def _frames(result, period, field_list):
    from adapter.client import to_frames

    try:
        return to_frames(result, period, field_list)
    except ImportError:  # no pandas here: the plain columns
        return result


### market data

def get_full_tick(code_list):
    '''
    获取盘口tick数据
    :param code_list: (list)stock.market组成的股票代码列表
    :return: dict
    {'stock.market': {dict}}
    '''
    return _data().get_full_tick(code_list)


def get_market_data_ex(
    field_list = [], stock_list = [], period = '1d'
    , start_time = '', end_time = '', count = -1
    , dividend_type = 'none', fill_data = True
):
    '''{code: DataFrame} of bars or ticks, indexed by xtdata's time strings.'''
    spec_period = _period(period)
    result = _data().get_market_data_ex(list(field_list), stock_list, spec_period, _time_arg(start_time),
                                        _time_arg(end_time), count, dividend_type, fill_data)
    return _frames(result, spec_period, field_list)


def get_local_data(field_list=[], stock_list=[], period='1d', start_time='', end_time='', count=-1,
                              dividend_type='none', fill_data=True, data_dir=None):
    '''As get_market_data_ex, from the terminal's local data (``data_dir`` has no meaning here).'''
    spec_period = _period(period)
    result = _data().get_local_data(list(field_list), stock_list, spec_period, _time_arg(start_time),
                                    _time_arg(end_time), count, dividend_type, fill_data)
    return _frames(result, spec_period, field_list)


def get_market_data(
    field_list = [], stock_list = [], period = '1d'
    , start_time = '', end_time = '', count = -1
    , dividend_type = 'none', fill_data = True
):
    '''
    xtdata's older shape. Bars: {field: DataFrame} with one row per code (index stock_list) and
    one column per time string. Ticks: {code: numpy structured array} sorted by time.
    '''
    spec_period = _period(period)
    codes = [stock_list] if isinstance(stock_list, str) else list(stock_list)
    result = _data().get_market_data_ex(list(field_list), codes, spec_period, _time_arg(start_time),
                                        _time_arg(end_time), count, dividend_type, fill_data)
    if spec_period in _BAR_PERIODS:
        return _panels(result, codes, spec_period, field_list)
    return {code: _records(columns) for code, columns in result.items()}


def _panels(result, codes, period, field_list):
    import importlib

    from adapter.client._market import time_strings

    pd = importlib.import_module('pandas')
    memo = {}
    labels = sorted({label for columns in result.values() for label in time_strings(columns.get('time') or [], period, memo)})
    fields = list(field_list) or list(next((list(c) for c in result.values() if c), []))
    panels = {}
    for field in fields:
        rows = []
        for code in codes:
            columns = result.get(code) or {}
            by_label = dict(zip(time_strings(columns.get('time') or [], period, memo), columns.get(field) or []))
            rows.append([by_label.get(label, float('nan')) for label in labels])
        panels[field] = pd.DataFrame(rows, index=codes, columns=labels)
    return panels


def _records(columns):
    """One code's ticks as a numpy structured array, as xtdata's get_market_data gives them."""
    try:
        import numpy as np
    except ImportError:
        return columns
    names = list(columns)
    length = len(columns.get('time') or [])
    dtype = []
    for name in names:
        sample = next((v for v in columns[name] if v is not None), 0)
        if isinstance(sample, list):
            inner = 'f8' if any(isinstance(x, float) for x in sample) else 'i8'
            dtype.append((name, inner, (len(sample),)))
        elif isinstance(sample, str):
            dtype.append((name, 'U32'))
        elif isinstance(sample, float):
            dtype.append((name, 'f8'))
        else:
            dtype.append((name, 'i8'))
    array = np.zeros(length, dtype=dtype)
    for name in names:
        array[name] = columns[name]
    return array


def get_instrument_detail(stock_code, iscomplete = False):
    '''xtdata's instrument detail dict, or None for a code the gateway does not know.'''
    from adapter.client import GatewayError

    try:
        return _data().get_instrument_detail(stock_code, bool(iscomplete))
    except GatewayError as exc:
        if exc.code == 'invalid_argument':  # as xtdata: no such instrument
            return None
        raise


def get_instrument_detail_list(stock_list, iscomplete = False):
    return {s: get_instrument_detail(s, iscomplete) for s in stock_list}


def get_stock_list_in_sector(sector_name, real_timetag = -1):
    '''
    获取板块成份股 (today's members; a past day's, ``real_timetag``, is not bridged)
    '''
    if real_timetag not in (-1, '', None):
        raise NotImplementedError("xtdata.get_stock_list_in_sector: real_timetag (a sector's members on a past "
                                  "day) is not bridged by qmt-zmq-adapter")
    for illegalstr in ['\\', '/', ':', '*', '?', '"', '<', '>', '|']:
        sector_name = sector_name.replace(illegalstr, '')
    return _data().get_stock_list_in_sector(sector_name)


def get_sector_list():
    '''
    获取板块列表
    :return: (list[str])
    '''
    return _data().get_sector_list()


def get_trading_dates(market, start_time='', end_time='', count=-1):
    '''
    根据市场获取交易日列表
    :return list(long) 毫秒数的时间戳列表
    '''
    return _data().get_trading_dates(market, _time_arg(start_time), _time_arg(end_time), count)


def download_history_data(stock_code, period, start_time = '', end_time = '', incrementally = None):
    '''Fetch history into the terminal; returns when done.'''
    _data().download_history_data(stock_code, _period(period), _time_arg(start_time), _time_arg(end_time),
                                  incrementally)
    return


supply_history_data = download_history_data


def download_history_data2(stock_list, period, start_time='', end_time='', callback=None, incrementally = None):
    '''
    Fetch history of many codes; ``callback(progress)`` gets xtdata's progress dicts
    (finished, total, stockcode, message). Returns {} when done.
    '''
    if isinstance(stock_list, str):
        stock_list = [stock_list]
    _data().download_history_data2(stock_list, _period(period), _time_arg(start_time), _time_arg(end_time),
                                   callback, incrementally)
    return {}


def subscribe_quote(stock_code, period='1d', start_time='', end_time='', count=0, callback=None):
    '''
    订阅股票行情数据: callback({stock: [data, ...]}) with each tick or the bar now forming.
    :return: int 订阅序号
    '''
    return get_client().quotes().subscribe_quote(stock_code, _period(period), start_time, end_time, count, callback)


def subscribe_quote2(stock_code, period='1d', start_time='', end_time='', count=0, dividend_type = None, callback=None):
    if dividend_type not in (None, 'none'):
        raise NotImplementedError("xtdata.subscribe_quote2: dividend_type other than 'none' is not bridged by "
                                  "qmt-zmq-adapter")
    return subscribe_quote(stock_code, period, start_time, end_time, count, callback)


def subscribe_whole_quote(code_list, callback = None):
    '''
    订阅全推数据: callback({stock1: tick1, stock2: tick2, ...}) for codes or markets ('SH', 'SZ', 'BJ').
    :return: int 订阅号
    '''
    return get_client().quotes().subscribe_whole_quote(code_list, callback)


def unsubscribe_quote(seq):
    '''
    :param seq: 订阅接口subscribe_quote返回的订阅号
    '''
    with __client_lock:
        connection = __client
    if connection is not None and connection._quotes is not None:
        connection._quotes.unsubscribe_quote(seq)
    return


### xtdata's pure helpers (this host's local time, as xtdata's)

def datetime_to_timetag(datetime, format = "%Y%m%d%H%M%S"):
    if len(datetime) == 8:
        format = "%Y%m%d"
    timetag = _TIME_.mktime(_TIME_.strptime(datetime, format))
    return timetag * 1000

def timetag_to_datetime(timetag, format):
    '''
    将毫秒时间转换成日期时间
    :param timetag: (int)时间戳毫秒数
    :param format: (str)时间格式
    :return: str
    '''
    return timetagToDateTime(timetag, format)


@try_except
def timetagToDateTime(timetag, format):
    timetag = timetag / 1000
    time_local = _TIME_.localtime(timetag)
    return _TIME_.strftime(format, time_local)


gmd = get_market_data
gmd2 = get_market_data_ex
gld = get_local_data
t2d = timetag_to_datetime
gsl = get_stock_list_in_sector


### not bridged: xtdata's other functions, with their parameters

class QuoteServer:
    def __init__(self, info = {}):
        _unbridged('QuoteServer')

def add_sector(sector_name, stock_list): _unbridged('add_sector')
def bind_formula(request_id, callback=None): _unbridged('bind_formula')
def bnd_get_amount_change(stock_code, start_time='', end_time=''): _unbridged('bnd_get_amount_change')
def bnd_get_call_info(stock_code, start_time='', end_time=''): _unbridged('bnd_get_call_info')
def bnd_get_conversion_price(stock_code, start_time='', end_time=''): _unbridged('bnd_get_conversion_price')
def bnd_get_put_info(stock_code, start_time='', end_time=''): _unbridged('bnd_get_put_info')
def call_formula(formula_name, stock_code, period, start_time='', end_time='', count=-1, dividend_type=None, extend_param={}): _unbridged('call_formula')
def compute_coming_trading_calendar(market, start_time='', end_time=''): _unbridged('compute_coming_trading_calendar')
def create_array(shape, dtype_tuple, capsule, size): _unbridged('create_array')
def create_formula(formula_name, formula_content, formula_params={}): _unbridged('create_formula')
def create_sector(parent_node, sector_name, overwrite=True): _unbridged('create_sector')
def create_sector_folder(parent_node, folder_name, overwrite=True): _unbridged('create_sector_folder')
def del_formula(formula_name): _unbridged('del_formula')
def download_cb_data(): _unbridged('download_cb_data')
def download_etf_info(): _unbridged('download_etf_info')
def download_financial_data(stock_list, table_list=[], start_time='', end_time='', incrementally=None): _unbridged('download_financial_data')
def download_financial_data2(stock_list, table_list=[], start_time='', end_time='', callback=None): _unbridged('download_financial_data2')
def download_his_st_data(): _unbridged('download_his_st_data')
def download_history_contracts(incrementally=True): _unbridged('download_history_contracts')
def download_holiday_data(incrementally=True): _unbridged('download_holiday_data')
def download_index_weight(): _unbridged('download_index_weight')
def download_metatable_data(): _unbridged('download_metatable_data')
def download_sector_data(): _unbridged('download_sector_data')
def download_tabular_data(stock_list, period, start_time='', end_time='', incrementally=None, download_type='validationbypage', source=''): _unbridged('download_tabular_data')
def fetch_quote_server_from_config(root_path, key_list): _unbridged('fetch_quote_server_from_config')
def gen_factor_index(data_name, formula_name, vars, sector_list, start_time='', end_time='', period='1d', dividend_type='none'): _unbridged('gen_factor_index')
def generate_index_data(formula_name, formula_param={}, stock_list=[], period='1d', dividend_type='none', start_time='', end_time='', fill_mode='fixed', fill_value=float('nan'), result_path=None): _unbridged('generate_index_data')
def getDividFactors(*args, **kwargs): _unbridged('getDividFactors')
def get_all_kline_trading_periods(): _unbridged('get_all_kline_trading_periods')
def get_all_sub_info(): _unbridged('get_all_sub_info')
def get_all_trading_periods(): _unbridged('get_all_trading_periods')
def get_authorized_market_list(): _unbridged('get_authorized_market_list')
def get_broker_queue_data(stock_list=[], start_time='', end_time='', count=-1, show_broker_name=False): _unbridged('get_broker_queue_data')
def get_cb_info(stockcode): _unbridged('get_cb_info')
def get_current_connect_sub_info(): _unbridged('get_current_connect_sub_info')
def get_data_dir(): _unbridged('get_data_dir')
def get_divid_factors(stock_code, start_time='', end_time=''): _unbridged('get_divid_factors')
def get_etf_info(): _unbridged('get_etf_info')
def get_field_list(metaid): _unbridged('get_field_list')
def get_financial_data(stock_list, table_list=[], start_time='', end_time='', report_type='report_time'): _unbridged('get_financial_data')
def get_financial_data_ori(stock_list, table_list=[], start_time='', end_time='', report_type='report_time'): _unbridged('get_financial_data_ori')
def get_formula_result(request_id, start_time='', end_time='', count=-1, timeout_second=-1): _unbridged('get_formula_result')
def get_formulas(): _unbridged('get_formulas')
def get_full_kline(field_list=[], stock_list=[], period='1m', start_time='', end_time='', count=1, dividend_type='none', fill_data=True): _unbridged('get_full_kline')
def get_fullspeed_orderbook(code_list): _unbridged('get_fullspeed_orderbook')
def get_his_option_list(undl_code, dedate): _unbridged('get_his_option_list')
def get_his_option_list_batch(undl_code, start_time='', end_time=''): _unbridged('get_his_option_list_batch')
def get_his_st_data(stock_code): _unbridged('get_his_st_data')
def get_hk_broker_dict(): _unbridged('get_hk_broker_dict')
def get_holidays(): _unbridged('get_holidays')
def get_index_weight(index_code): _unbridged('get_index_weight')
def get_instrument_type(stock_code, variety_list=None): _unbridged('get_instrument_type')
def get_ipo_info(start_time='', end_time=''): _unbridged('get_ipo_info')
def get_kline_trading_period(stock_code): _unbridged('get_kline_trading_period')
def get_l2_order(field_list=[], stock_code='', start_time='', end_time='', count=-1): _unbridged('get_l2_order')
def get_l2_quote(field_list=[], stock_code='', start_time='', end_time='', count=-1): _unbridged('get_l2_quote')
def get_l2_transaction(field_list=[], stock_code='', start_time='', end_time='', count=-1): _unbridged('get_l2_transaction')
def get_l2thousand_queue(stock_code, gear_num=None, price=None): _unbridged('get_l2thousand_queue')
def get_main_contract(code_market: str, start_time: str = '', end_time: str = ''): _unbridged('get_main_contract')
def get_market_data3(field_list=[], stock_list=[], period='1d', start_time='', end_time='', count=-1, dividend_type='none', fill_data=True, enable_read_from_server=True): _unbridged('get_market_data3')
def get_market_data_ex_ori(field_list=[], stock_list=[], period='1d', start_time='', end_time='', count=-1, dividend_type='none', fill_data=True, enable_read_from_server=True, data_dir=None): _unbridged('get_market_data_ex_ori')
def get_market_data_ori(field_list=[], stock_list=[], period='1d', start_time='', end_time='', count=-1, dividend_type='none', fill_data=True, enable_read_from_server=True, data_dir=None): _unbridged('get_market_data_ori')
def get_market_last_trade_date(market): _unbridged('get_market_last_trade_date')
def get_markets(): _unbridged('get_markets')
def get_metatable_config(table): _unbridged('get_metatable_config')
def get_metatable_fields(table): _unbridged('get_metatable_fields')
def get_metatable_info(table): _unbridged('get_metatable_info')
def get_metatable_list(): _unbridged('get_metatable_list')
def get_option_detail_data(optioncode): _unbridged('get_option_detail_data')
def get_option_list(undl_code, dedate, opttype='', isavailavle=False): _unbridged('get_option_list')
def get_option_undl_data(undl_code_ref): _unbridged('get_option_undl_data')
def get_order_rank(code, order_time, order_type, order_price, order_volume, order_left_volume): _unbridged('get_order_rank')
def get_period_list(): _unbridged('get_period_list')
def get_quote_server_config(): _unbridged('get_quote_server_config')
def get_quote_server_status(): _unbridged('get_quote_server_status')
def get_sec_main_contract(code_market: str, start_time: str = '', end_time: str = ''): _unbridged('get_sec_main_contract')
def get_sector_info(sector_name=''): _unbridged('get_sector_info')
def get_tabular_bson(codes: list, fields: list, period: str, start_time: str, end_time: str, count: int = -1, **kwargs): _unbridged('get_tabular_bson')
def get_tabular_data(field_list=[], stock_list=[], period='1d', start_time='', end_time='', count=-1, dividend_type='none', fill_data=True): _unbridged('get_tabular_data')
def get_tabular_formula(codes: list, fields: list, period: str, start_time: str, end_time: str, count: int = -1, dividend_type='none', **kwargs): _unbridged('get_tabular_formula')
def get_trading_calendar(market, start_time='', end_time=''): _unbridged('get_trading_calendar')
def get_trading_contract_list(stockcode, date=None): _unbridged('get_trading_contract_list')
def get_trading_period(stock_code): _unbridged('get_trading_period')
def get_transactioncount(code_list): _unbridged('get_transactioncount')
def get_wp_market_list(): _unbridged('get_wp_market_list')
def import_formula(formula_name, file_path): _unbridged('import_formula')
def is_stock_type(stock, tag): _unbridged('is_stock_type')
def push_custom_data(meta, datas, coverall=False): _unbridged('push_custom_data')
def read_feather(file_path): _unbridged('read_feather')
def remove_sector(sector_name): _unbridged('remove_sector')
def remove_stock_from_sector(sector_name, stock_list): _unbridged('remove_stock_from_sector')
def reset_market_stock_list(market, datas): _unbridged('reset_market_stock_list')
def reset_market_trading_day_list(market, datas): _unbridged('reset_market_trading_day_list')
def reset_sector(sector_name, stock_list): _unbridged('reset_sector')
def show_quote_server_status(): _unbridged('show_quote_server_status')
def subscribe_callback_wrapper(callback): _unbridged('subscribe_callback_wrapper')
def subscribe_callback_wrapper_1820(callback): _unbridged('subscribe_callback_wrapper_1820')
def subscribe_callback_wrapper_convert(callback, metaid): _unbridged('subscribe_callback_wrapper_convert')
def subscribe_formula(formula_name, stock_code, period, start_time='', end_time='', count=-1, dividend_type=None, extend_param={}, callback=None): _unbridged('subscribe_formula')
def subscribe_l2thousand(stock_code, gear_num=None, callback=None): _unbridged('subscribe_l2thousand')
def subscribe_l2thousand_queue(stock_code, callback=None, gear_num=None, price=None): _unbridged('subscribe_l2thousand_queue')
def unsubscribe_formula(request_id): _unbridged('unsubscribe_formula')
def watch_quote_server_status(callback): _unbridged('watch_quote_server_status')
def watch_xtquant_status(callback): _unbridged('watch_xtquant_status')
def write_feather(dest_path, param, df): _unbridged('write_feather')

get_stock_type = get_instrument_type
gmd3 = get_market_data3
