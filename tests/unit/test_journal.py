"""The journal on its own: append, read pages, seq continuity, epoch, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapter.server.journal import Journal, SeqExpired


def rows(first: int, last: int, topic: str = "order.1", ts0: int = 1_000, size: int = 10) -> list[tuple[int, int, str, bytes]]:
    return [(seq, ts0 + seq, topic, bytes([seq % 256]) * size) for seq in range(first, last + 1)]


def test_append_and_read_back_in_pages(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(rows(1, 25))
    assert (journal.first_seq, journal.last_seq, journal.count) == (1, 25, 25)
    page = journal.read(1, None, (), limit=10)
    assert [p[1][0] for p in page.events] == list(range(1, 11)) and page.next_seq == 11 and page.more
    page = journal.read(21, None, (), limit=10)
    assert len(page.events) == 5 and page.next_seq == 26 and not page.more
    assert journal.read(26, None, (), limit=10) == type(page)([], 26, False)  # nothing newer yet
    journal.close()


def test_a_page_is_bounded_in_bytes_and_resumes_at_the_first_event_left_out(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(rows(1, 10, size=100))
    page = journal.read(1, None, (), limit=1000, max_bytes=350)
    assert [p[1][0] for p in page.events] == [1, 2, 3] and page.next_seq == 4 and page.more
    page = journal.read(4, None, (), limit=1000, max_bytes=50)  # one event over the bound still comes
    assert [p[1][0] for p in page.events] == [4] and page.next_seq == 5
    page = journal.read(5, None, (), limit=1000, max_bytes=10_000)
    assert len(page.events) == 6 and page.next_seq == 11 and not page.more
    journal.close()


def test_prefix_filter_advances_the_cursor_through_non_matching_rows(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(rows(1, 10, "order.1") + rows(11, 20, "trade.1") + rows(21, 22, "order.2"))
    page = journal.read(1, None, ["trade."], limit=100)
    assert [t for t, _ in page.events] == ["trade.1"] * 10 and page.next_seq == 23 and not page.more
    page = journal.read(1, 15, ["order.2", "trade."], limit=3)
    assert len(page.events) == 3 and page.next_seq == 14 and page.more  # stopped at the limit
    page = journal.read(14, 15, ["order.2", "trade."], limit=3)
    assert len(page.events) == 2 and page.next_seq == 16 and not page.more  # to_seq reached
    assert journal.read(1, None, [""], limit=100).next_seq == 23  # "" matches everything
    journal.close()


def test_seq_and_epoch_survive_reopening(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    epoch = journal.epoch
    journal.append(rows(1, 5))
    journal.close()
    reopened = Journal(tmp_path)
    assert (reopened.epoch, reopened.last_seq, reopened.count) == (epoch, 5, 5)
    with pytest.raises(sqlite3.IntegrityError):
        reopened.append(rows(5, 5))  # a seq is never reused
    assert reopened.last_seq == 5 and reopened.count == 5
    reopened.close()
    assert Journal(tmp_path / "other").epoch != epoch  # a new journal is a new stream


def test_retention_by_size_and_the_expired_error(tmp_path: Path) -> None:
    journal = Journal(tmp_path, retention_bytes=1000)
    journal.append(rows(1, 90, size=20))  # 1800 payload bytes
    dropped = journal.prune_if_due()
    assert dropped > 0 and journal.payload_bytes <= 900 and journal.first_seq == dropped + 1
    with pytest.raises(SeqExpired) as info:
        journal.read(1, None, (), limit=10)
    assert info.value.first_kept == journal.first_seq
    assert journal.read(journal.first_seq, None, (), limit=1).events
    journal.close()


def test_retention_by_age_keeps_seq_running_after_everything_is_pruned(tmp_path: Path) -> None:
    now = [2_000_000.0]
    journal = Journal(tmp_path, retention_days=1.0, clock=lambda: now[0])
    journal.append(rows(1, 10, ts0=int(now[0] * 1e9)))
    assert journal.prune_if_due() == 0
    now[0] += 2 * 86400
    assert journal.prune_if_due() == 10 and journal.count == 0 and journal.first_seq == 0
    journal.close()
    reopened = Journal(tmp_path, retention_days=1.0)
    assert reopened.last_seq == 10  # the next event is 11, never 1 again
    with pytest.raises(SeqExpired) as info:
        reopened.read(3, None, (), limit=10)
    assert info.value.first_kept == 11
    assert reopened.read(11, None, (), limit=10).events == []
    reopened.close()


def test_info_reports_span_and_size(tmp_path: Path) -> None:
    journal = Journal(tmp_path, retention_days=7, retention_bytes=1 << 20)
    journal.append(rows(1, 3))
    info = journal.info()
    assert (info["first_seq"], info["last_seq"], info["count"], info["payload_bytes"]) == (1, 3, 3, 30)
    assert info["size_bytes"] > 0 and info["epoch"] == journal.epoch and info["path"].endswith("journal.sqlite3")
    journal.close()
