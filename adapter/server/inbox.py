"""A thread-safe hand-off to the I/O thread that the I/O thread can poll.

Producers (the broker thread, xtquant's callback thread, signal handlers) append to a
deque and, at most once per drain, write a byte to a socketpair whose read end sits in the
I/O thread's zmq poller. A socketpair works in ``zmq.Poller`` on Linux and on Windows.
"""

from __future__ import annotations

import collections
import socket
from typing import Any


class Inbox:
    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._signalled = False

    def fileno(self) -> int:
        return self._reader.fileno()

    def post(self, item: Any) -> None:
        """Thread-safe; never blocks."""
        self._items.append(item)
        if not self._signalled:
            self._signalled = True
            try:
                self._writer.send(b"\x00")
            except (BlockingIOError, OSError):
                pass  # a full pipe already holds a wake-up

    def drain(self) -> list[Any]:
        """Called by the I/O thread only. Clears the wake-up, then takes every item."""
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        # Cleared after reading the bytes and before taking items: a producer that saw the
        # flag set has its item taken below; one that sees it clear writes a new byte.
        self._signalled = False
        items = []
        pop = self._items.popleft
        try:
            while True:
                items.append(pop())
        except IndexError:
            return items

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
