"""Order rate of the simulated counter through the genuine XtQuantTrader, with and without a state file.

    python -m adapter.sim.bench [--orders 5000] [--fill] [--sync] [--state-dir DIR]

Sends ``--orders`` limit buys with ``order_stock_async`` as fast as xttrader takes them
and waits for every async response (``--sync``: one ``order_stock`` after the other, so
every order is a transaction of its own); prints orders per second for the in-memory counter
and for one writing through to a state file (in ``--state-dir``, default a temporary
directory). ``--fill`` prices the buys to fill at once (an order, a trade, a position
and the account change per order) instead of resting.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from adapter import sim
from adapter.config import SimConfig


def run(orders: int, fill: bool, state_path: Path | None, sync: bool = False) -> float:
    sim.install()
    from xtquant.xttrader import XtQuantTrader, XtQuantTraderCallback
    from xtquant.xttype import StockAccount

    done = threading.Event()
    answered = [0]

    class Trader(XtQuantTrader):
        def __del__(self) -> None:  # xttrader's restores an event loop it saved only on the main thread
            pass

    class Callback(XtQuantTraderCallback):
        def on_order_stock_async_response(self, response: Any) -> None:
            answered[0] += 1
            if answered[0] == orders:
                done.set()

    counter = sim.SimCounter(SimConfig(cash=1e12), ["1000000365"], state_path=state_path)
    path = f"sim://{uuid.uuid4().hex}"
    sim.register_counter(path, counter)
    built: list[Any] = []
    builder = threading.Thread(target=lambda: built.append(Trader(path, 900_000 + orders, Callback())))
    builder.start()
    builder.join()
    trader = built[0]
    trader.start()
    try:
        if trader.connect() != 0 or trader.subscribe(StockAccount("1000000365")) != 0:
            raise SystemExit("could not connect to the simulated counter")
        account = StockAccount("1000000365")
        price = 10.60 if fill else 10.00
        started = time.perf_counter()
        for _ in range(orders):
            if sync:
                if trader.order_stock(account, "600000.SH", 23, 100, 11, price, "bench", "") <= 0:
                    raise SystemExit("an order failed")
                answered[0] += 1
            else:
                trader.order_stock_async(account, "600000.SH", 23, 100, 11, price, "bench", "")
        if not sync and not done.wait(120):
            raise SystemExit(f"only {answered[0]} of {orders} answered")
        elapsed = time.perf_counter() - started
    finally:
        trader.stop()
        sim.unregister_counter(path)
        counter.close()
    return orders / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--fill", action="store_true", help="buys fill at once (default: they rest)")
    parser.add_argument("--sync", action="store_true", help="order_stock, one at a time (default: async burst)")
    parser.add_argument("--state-dir", default="", help="where the state file goes (default: a temporary dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(args.state_dir or scratch)
        kind = ("filling" if args.fill else "resting") + (" sync" if args.sync else " async")
        memory = run(args.orders, args.fill, None, args.sync)
        print(f"{args.orders} {kind} orders, in memory:  {memory:8.0f} orders/s")
        state = directory / f"bench-{uuid.uuid4().hex}.sqlite3"
        persisted = run(args.orders, args.fill, state, args.sync)
        print(f"{args.orders} {kind} orders, state file: {persisted:8.0f} orders/s ({state.stat().st_size} bytes)")
        if args.state_dir:
            state.unlink()


if __name__ == "__main__":
    main()
