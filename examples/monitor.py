"""A monitoring snippet: one line of health, exit code for a cron job or a health check.

    python examples/monitor.py [--router E] [--pub E] [--metrics-port PORT]

Exit 0 when the gateway answers, the counter is connected, no order's outcome is unknown and
trading is not halted; 1 otherwise; 3 when the gateway does not answer.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request

from adapter.client import Client, GatewayTimeout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--router", default="tcp://127.0.0.1:5555")
    parser.add_argument("--pub", default="tcp://127.0.0.1:5556")
    parser.add_argument("--metrics-port", type=int, default=0, help="also read the Prometheus endpoint")
    args = parser.parse_args()
    try:
        with Client(args.router, args.pub, timeout=5.0) as client:
            info = client.ping()
            journal = client.journal_info()
    except GatewayTimeout:
        print("DOWN: no answer from the gateway")
        return 3
    problems = []
    if not info.connected:
        problems.append("counter not connected")
    if info.get("unknown_orders"):
        problems.append(f"{info.unknown_orders} orders with unknown outcome")
    if info.get("trading_state", "normal") != "normal":
        problems.append(f"trading {info.trading_state}")
    line = (f"{'OK' if not problems else 'WARN'}: seq {info.last_seq}, journal {journal.count} events "
            f"({journal.size_bytes / 1e6:.1f} MB), uptime {info.uptime:.0f} s")
    if args.metrics_port:
        with urllib.request.urlopen(f"http://127.0.0.1:{args.metrics_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        commands = sum(float(l.rpartition(" ")[2]) for l in metrics.splitlines()
                       if l.startswith("qmt_adapter_commands_total{"))
        line += f", {commands:.0f} commands served"
    print(line + ("; " + "; ".join(problems) if problems else ""))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
