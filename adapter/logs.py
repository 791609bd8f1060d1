"""Logging set-up for ``serve``: readable text by default, JSON lines with ``--log-json``.

JSON lines carry ``ts``, ``level``, ``logger``, ``message`` and the structured fields a log call
passes in ``extra`` (order lines: ``account_id``, ``client_order_id``, ``request_id``). Secret
keys are never logged: the gateway logs key names and public keys only.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import logging.handlers
import queue
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted already by the thread that logged it
            body["exception"] = record.exc_text
        return json.dumps(body, ensure_ascii=False, default=str)


QUEUE_LIMIT = 10_000  # log records waiting for the writer; beyond, dropped and counted


class _Handoff(logging.handlers.QueueHandler):
    """Hands records to the writer thread: the gateway's threads never wait on a slow stderr
    (a full pipe, a paused terminal), and a flood of lines cannot grow memory without bound."""

    def __init__(self, limit: int) -> None:
        self.pending: queue.Queue[logging.LogRecord] = queue.Queue(limit)
        super().__init__(self.pending)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None  # the arguments may change later
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.dropped and self.pending.empty():
            notice = logging.makeLogRecord({"name": __name__, "levelno": logging.WARNING, "levelname": "WARNING",
                                            "msg": f"{self.dropped} log lines dropped: the log writer fell behind"})
            self.dropped = 0
            self.pending.put_nowait(notice)
        try:
            self.pending.put_nowait(record)
        except queue.Full:
            self.dropped += 1


_listener: logging.handlers.QueueListener | None = None


def configure(level: str, json_lines: bool = False) -> None:
    """Log to stderr from a writer thread of its own (stopped at exit, after the last line)."""
    global _listener
    writer = logging.StreamHandler()
    writer.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    handoff = _Handoff(QUEUE_LIMIT)
    if _listener is not None:
        _listener.stop()
    _listener = logging.handlers.QueueListener(handoff.pending, writer)
    _listener.start()
    atexit.register(_listener.stop)
    root = logging.getLogger()
    root.handlers[:] = [handoff]
    root.setLevel(level.upper())
