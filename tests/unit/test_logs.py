"""Logging never makes the gateway's threads wait and never grows without bound."""

from __future__ import annotations

import logging

from adapter.logs import _Handoff


def record(message: str) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "t", "levelno": logging.INFO, "levelname": "INFO", "msg": message})


def test_a_writer_that_falls_behind_costs_lines_not_memory_and_says_how_many() -> None:
    handoff = _Handoff(limit=3)
    for n in range(10):  # nobody writes: the queue fills
        handoff.handle(record(f"line {n}"))
    assert handoff.pending.qsize() == 3 and handoff.dropped == 7
    while not handoff.pending.empty():
        handoff.pending.get_nowait()
    handoff.handle(record("after"))
    messages = [handoff.pending.get_nowait().getMessage() for _ in range(handoff.pending.qsize())]
    assert messages == ["7 log lines dropped: the log writer fell behind", "after"]


def test_arguments_are_merged_and_tracebacks_kept_when_handed_over() -> None:
    handoff = _Handoff(limit=10)
    try:
        raise ValueError("bad")
    except ValueError:
        logger = logging.getLogger("handoff-test")
        logger.handlers[:] = [handoff]
        logger.propagate = False
        logger.exception("failed %s", "here")
    handed = handoff.pending.get_nowait()
    assert handed.getMessage() == "failed here" and handed.exc_info is None
    assert "ValueError: bad" in (handed.exc_text or "")
