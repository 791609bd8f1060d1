"""Append every event to a file, one JSON line each, and resume from the last seq after a restart.

    python examples/event_recorder.py events.jsonl [--router E] [--pub E] [--idle SECONDS]

The cursor lives beside the file (events.jsonl.cursor): the client library replays what was
missed while the recorder was down, so the file holds every event exactly once, in seq order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from adapter.client import Client


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--router", default="tcp://127.0.0.1:5555")
    parser.add_argument("--pub", default="tcp://127.0.0.1:5556")
    parser.add_argument("--idle", type=float, default=None, help="stop after this many seconds without an event")
    args = parser.parse_args()
    written = 0
    with Client(args.router, args.pub, timeout=10.0) as client, open(args.path, "a", encoding="utf-8") as out:
        # The first run starts from the journal's beginning; later runs from the cursor file.
        cursor = args.path + ".cursor"
        first = None if os.path.exists(cursor) else 1
        with client.events(from_seq=first, state_file=cursor, timeout=args.idle) as stream:
            for event in stream:
                if event.seq is None:
                    continue  # pongs and notices are not part of the numbered stream
                out.write(json.dumps({"seq": event.seq, "ts": event.ts, "type": event.type,
                                      "account_id": event.account_id, "data": event.data.to_dict()},
                                     ensure_ascii=False) + "\n")
                out.flush()
                written += 1
    print(f"recorded {written} events to {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
