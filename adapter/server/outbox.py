"""Events numbered, journaled, then published, with the replies made meanwhile in their place.

Used by the I/O thread only (docs/architecture.md §4). Nothing is published unjournaled: a
batch the journal refuses waits, in order and bounded, and goes out once the journal takes
it; seqs are never reused for a published event.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from .journal import Journal
from ..protocol import encode_event

log = logging.getLogger(__name__)

MAX_UNJOURNALED = 100_000  # events held while the journal fails; beyond, dropped (never published)

Row = tuple[int, int, bytes, bytes]  # (seq, ts, topic, payload)
HeldReply = tuple[int, list[bytes], bytes]  # (events made before it, envelope, payload)


class Outbox:
    def __init__(self, journal: Journal, publish: Callable[[list[bytes]], Any],
                 reply: Callable[[list[bytes], bytes], None]) -> None:
        self.journal = journal
        self._publish = publish
        self._reply = reply
        self._seq = journal.last_seq  # seq continues over the gateway's whole life
        self._batch: list[Row] = []  # numbered, not yet journaled
        self._backlog: list[Row] = []  # refused by the journal: not published
        self.error = ""  # the journal's last failure
        self.journal_errors = 0  # events the journal refused (counted per attempt)
        self.published = 0

    def number(self, event_type: str, account_id: str | None, data: dict[str, Any], ts: int,
               reconciled: bool = False) -> None:
        self._seq += 1
        topic, payload = encode_event(self._seq, ts, event_type, account_id, data, self.journal.epoch,
                                      reconciled=reconciled)
        self._batch.append((self._seq, ts, topic, payload))

    @property
    def made(self) -> int:
        """Events numbered in this batch so far: where a reply made now goes among them."""
        return len(self._batch)

    @property
    def numbered_seq(self) -> int:
        return self._seq

    @property
    def published_seq(self) -> int:
        """The newest seq already sent. Events numbered but still waiting (for the end of this
        batch, or for a failing journal) are not: a stream that starts from a pong or a
        heartbeat must still receive them."""
        waiting = self._backlog or self._batch
        return waiting[0][0] - 1 if waiting else self._seq

    @property
    def unjournaled(self) -> int:
        return len(self._backlog)

    def flush(self, replies: list[HeldReply]) -> bool | None:
        """Journal what is waiting, then publish it with ``replies`` in the order they were made.

        True: journaled and published; False: the journal failed (``error`` says why; the
        replies still go, the events wait); None: there were no events."""
        if not self._batch and not self._backlog:
            for _, envelope, payload in replies:
                self._reply(envelope, payload)
            return None
        batch, self._batch = self._batch, []
        rows = self._backlog + batch
        try:
            self.journal.append([(seq, ts, topic.decode(), payload) for seq, ts, topic, payload in rows])
        except Exception as exc:
            self.journal_errors += len(batch)
            self.error = str(exc)
            log.exception("journal append failed for seq %d..%d", rows[0][0], rows[-1][0])
            self._backlog = rows
            if len(rows) > MAX_UNJOURNALED:  # nobody saw them; the counter's books bring the changes back
                log.critical("dropping %d unjournaled events (seq %d..%d): never published, seqs reused",
                             len(rows), rows[0][0], rows[-1][0])
                self._backlog = []
                self._seq = self.journal.last_seq
            for _, envelope, payload in replies:
                self._reply(envelope, payload)
            return False
        if self._backlog:  # what waited for the journal goes first; the replies keep their place
            replies = [(at + len(self._backlog), envelope, payload) for at, envelope, payload in replies]
            self._backlog = []
        waiting = iter(replies)
        reply = next(waiting, None)
        for index, (_, _, topic, payload) in enumerate(rows):
            while reply is not None and reply[0] <= index:
                self._reply(reply[1], reply[2])
                reply = next(waiting, None)
            self._publish([topic, payload])
        while reply is not None:
            self._reply(reply[1], reply[2])
            reply = next(waiting, None)
        self.published += len(rows)
        return True
