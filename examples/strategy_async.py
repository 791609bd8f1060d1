"""The same strategy with AsyncClient: several orders in flight, events as an async iterator.

    python examples/strategy_async.py [--router E] [--pub E] [--account ID]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from adapter.client import AsyncClient

CODES = ("600000.SH", "600036.SH", "000001.SZ")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--router", default="tcp://127.0.0.1:5555")
    parser.add_argument("--pub", default="tcp://127.0.0.1:5556")
    parser.add_argument("--account", default="1000000365")
    args = parser.parse_args()
    run_id = time.strftime("%H%M%S")
    async with AsyncClient(args.router, args.pub, timeout=10.0) as client:
        stream = client.events("trade.")
        if not await stream.wait_subscribed(10.0):
            print("no event stream", file=sys.stderr)
            return 1
        # Three orders at once; each has its own client order id, so a retry never doubles one.
        responses = await asyncio.gather(*(
            client.order_stock(args.account, code, "buy", 100, "latest", 0.0, "example-async", "",
                               client_order_id=f"ex-async-{run_id}-{i}")
            for i, code in enumerate(CODES)
        ))
        wanted = {r.order_id for r in responses}
        print(f"placed {len(wanted)} orders: {sorted(wanted)}")
        while wanted:
            trade = await stream.receive(10.0)
            if trade is None:
                print(f"no fill for {sorted(wanted)}", file=sys.stderr)
                return 1
            if trade.data.order_id in wanted:
                wanted.discard(trade.data.order_id)
                print(f"filled {trade.data.stock_code} {trade.data.traded_volume} @ {trade.data.traded_price}")
        stream.close()
        positions = await client.query_stock_positions(args.account)
        print("positions:", ", ".join(f"{p.stock_code} {p.volume}" for p in positions))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
