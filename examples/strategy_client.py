"""A small strategy with the blocking Client: buy once the price is right, sell on a fill.

    python examples/strategy_client.py [--router E] [--pub E] [--account ID] [--code CODE]

It places one limit buy with a client order id (safe to retry after a time-out), waits for the
fill on the event stream, then sells what it bought, and prints what happened.
"""

from __future__ import annotations

import argparse
import sys
import time

from adapter.client import Client, GatewayError


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--router", default="tcp://127.0.0.1:5555")
    parser.add_argument("--pub", default="tcp://127.0.0.1:5556")
    parser.add_argument("--account", default="1000000365")
    parser.add_argument("--code", default="600000.SH")
    parser.add_argument("--volume", type=int, default=100)
    args = parser.parse_args()
    run_id = time.strftime("%H%M%S")
    with Client(args.router, args.pub, timeout=10.0) as client:
        with client.events("trade.", timeout=10.0) as trades:
            if not trades.wait_subscribed(10.0):
                print("no event stream", file=sys.stderr)
                return 1
            asset = client.query_stock_asset(args.account)
            print(f"cash before: {asset.cash:.2f}")
            buy = client.order_stock(args.account, args.code, "buy", args.volume, "latest", 0.0, "example",
                                     "entry", client_order_id=f"ex-buy-{run_id}")
            print(f"buy order {buy.order_id} (client_order_id {buy.client_order_id})")
            for trade in trades:  # ends after 10 s without an event
                if trade.data.order_id == buy.order_id:
                    print(f"bought {trade.data.traded_volume} @ {trade.data.traded_price}")
                    break
            else:
                print("no fill", file=sys.stderr)
                return 1
        try:
            sell = client.order_stock(args.account, args.code, "sell", args.volume, "latest", 0.0, "example",
                                      "exit", client_order_id=f"ex-sell-{run_id}")
            print(f"sell order {sell.order_id}: {sell.error_msg or 'accepted'}")
        except GatewayError as exc:  # e.g. T+1: shares bought today are not sellable today
            print(f"sell refused: {exc.code}: {exc.message}")
        print(f"cash after: {client.query_stock_asset(args.account).cash:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
