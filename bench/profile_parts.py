"""CPU cost of the I/O thread's own pieces, one at a time: journal append, codec, inbox.

    python -m bench.profile_parts [--repeat N] [PART ...]

Prints CPU µs per call (``time.thread_time_ns``: this thread's CPU only, so other load on
the machine inflates it far less than wall time). For instruction counts, run one part
under ``valgrind --tool=callgrind`` with ``--repeat N`` and with ``--repeat 0`` and subtract.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.server.journal import Journal  # noqa: E402
from adapter.protocol import decode_request, encode_event, encode_ok, encode_request, events  # noqa: E402
from adapter.server.inbox import Inbox  # noqa: E402

ORDER = {name: 0 for name in events.ORDER_FIELDS} | {
    "account_id": "1000000365", "stock_code": "600000.SH", "status_msg": "", "instrument_name": "浦发银行",
    "order_sysid": "1000001", "strategy_name": "bench", "order_remark": "QZab12", "secu_account": "A123456789",
    "price": 9.99, "traded_price": 0.0, "client_order_id": "0123456789abcdef",
}
REQUEST = encode_request(7, "order_stock", {"account_id": "1000000365", "stock_code": "600000.SH", "order_type": 23,
                                            "order_volume": 100, "price_type": 11, "price": 9.99,
                                            "strategy_name": "bench", "order_remark": ""})
RESULT = {"seq": 12, "order_id": 1001, "client_order_id": "0123456789abcdef", "state": "acknowledged",
          "error_msg": "", "strategy_name": "bench", "order_remark": ""}


def _journal_part(batch: int) -> Callable[[int], Callable[[], object]]:
    def setup(_: int) -> Callable[[], object]:
        directory = tempfile.mkdtemp(prefix="qmt-parts-")
        journal = Journal(directory)
        topic, payload = encode_event(1, time.time_ns(), "order", "1000000365", ORDER, journal.epoch)
        state = {"seq": 0}

        def run() -> None:
            seq = state["seq"]
            journal.append([(seq + i + 1, 0, topic.decode(), payload) for i in range(batch)])
            state["seq"] = seq + batch

        return run

    return setup


def _encode_event(_: int) -> Callable[[], object]:
    return lambda: encode_event(12345, 1_700_000_000_000_000_000, "order", "1000000365", ORDER, "0123456789abcdef")


def _encode_ok(_: int) -> Callable[[], object]:
    return lambda: encode_ok(7, RESULT)


def _decode(_: int) -> Callable[[], object]:
    return lambda: decode_request(REQUEST)


def _inbox_local(_: int) -> Callable[[], object]:
    inbox = Inbox()

    def run() -> None:
        inbox.post(("event", 1))
        inbox.post(("event", 2))
        inbox.drain()

    return run


def _inbox_wake(repeat: int) -> Callable[[], object]:
    """A post from another thread waking a zmq poller on this one (the I/O thread's case)."""
    inbox = Inbox()
    poller = zmq.Poller()
    poller.register(inbox.fileno(), zmq.POLLIN)
    go = threading.Semaphore(0)

    def producer() -> None:
        for _ in range(repeat):
            go.acquire()
            inbox.post(("event", 1))

    threading.Thread(target=producer, daemon=True).start()

    def run() -> None:
        go.release()
        poller.poll(1000)
        inbox.drain()

    return run


PARTS: dict[str, Callable[[int], Callable[[], object]]] = {
    "journal_1": _journal_part(1),
    "journal_3": _journal_part(3),
    "journal_100": _journal_part(100),
    "encode_event": _encode_event,
    "encode_ok": _encode_ok,
    "decode_request": _decode,
    "inbox_local": _inbox_local,
    "inbox_wake": _inbox_wake,
}


def measure(name: str, repeat: int) -> tuple[float, float]:
    run = PARTS[name](repeat + 50)
    for _ in range(min(50, repeat)):
        run()
    cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(repeat):
        run()
    cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
    return cpu / max(repeat, 1) / 1000, wall / max(repeat, 1) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_parts")
    parser.add_argument("parts", nargs="*", default=list(PARTS))
    parser.add_argument("--repeat", type=int, default=5000)
    args = parser.parse_args()
    print("| part | CPU µs per call | wall µs per call |\n|---|---:|---:|")
    for name in args.parts:
        cpu, wall = measure(name, args.repeat)
        print(f"| {name} | {cpu:.2f} | {wall:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
