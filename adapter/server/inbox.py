"""A thread-safe hand-off to the I/O thread that the I/O thread can poll.

Producers (the broker thread, xtquant's callback thread, signal handlers) append to a
deque and, at most once per drain, signal a file descriptor that sits in the I/O thread's
zmq poller: an eventfd on Linux (one syscall each way, no socket buffers), else a
socketpair, which works in ``zmq.Poller`` on Windows too.
"""

from __future__ import annotations

import collections
import os
import socket
from typing import Any

_EVENTFD = hasattr(os, "eventfd")


class Inbox:
    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._signalled = False
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        if _EVENTFD:
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self._reader, self._writer = socket.socketpair()
            self._reader.setblocking(False)
            self._writer.setblocking(False)
            self._fd = self._reader.fileno()

    def fileno(self) -> int:
        return self._fd

    def post(self, item: Any) -> None:
        """Thread-safe; never blocks."""
        self._items.append(item)
        if not self._signalled:
            self._wake()

    def _wake(self) -> None:
        self._signalled = True
        try:
            if self._writer is None:
                os.eventfd_write(self._fd, 1)
            else:
                self._writer.send(b"\x00")
        except (BlockingIOError, OSError):
            pass  # a full counter or pipe already holds a wake-up

    def drain(self, limit: int = 0) -> list[Any]:
        """Called by the I/O thread only. Clears the wake-up, then takes every item, or at most
        ``limit`` (the rest signals a wake-up again, so the poller comes back for it)."""
        try:
            if self._reader is None:
                os.eventfd_read(self._fd)  # reads and zeroes the counter
            else:
                while self._reader.recv(4096):
                    pass
        except (BlockingIOError, OSError):
            pass
        # Cleared after reading the wake-up and before taking items: a producer that saw the
        # flag set has its item taken below; one that sees it clear signals anew.
        self._signalled = False
        items: list[Any] = []
        pop = self._items.popleft
        while not limit or len(items) < limit:
            try:
                items.append(pop())
            except IndexError:
                return items
        if self._items:
            self._wake()
        return items

    def close(self) -> None:
        if self._reader is None:
            os.close(self._fd)
        else:
            self._reader.close()
            assert self._writer is not None
            self._writer.close()
