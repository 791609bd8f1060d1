"""The inbox: producers on any thread, the I/O thread polls one descriptor and drains."""

from __future__ import annotations

import select
import threading

from adapter.server.inbox import Inbox


def readable(inbox: Inbox, timeout: float = 0.0) -> bool:
    return bool(select.select([inbox.fileno()], [], [], timeout)[0])


def test_a_limited_drain_leaves_the_rest_and_wakes_the_poller_for_it() -> None:
    inbox = Inbox()
    try:
        for n in range(10):
            inbox.post(n)
        assert readable(inbox)
        assert inbox.drain(4) == [0, 1, 2, 3]
        assert readable(inbox)  # the rest is signalled again
        assert inbox.drain(4) == [4, 5, 6, 7]
        assert inbox.drain() == [8, 9]
        assert not readable(inbox)
    finally:
        inbox.close()


def test_items_from_many_threads_all_arrive_once() -> None:
    inbox = Inbox()
    try:
        def produce(base: int) -> None:
            for n in range(1000):
                inbox.post(base + n)

        threads = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(4)]
        for thread in threads:
            thread.start()
        got: list[int] = []
        for _ in range(10_000):  # bounded: each round waits for a wake-up or takes what is there
            if len(got) == 4000:
                break
            readable(inbox, 0.5)
            got += inbox.drain(256)
        for thread in threads:
            thread.join(10)
        got += inbox.drain()
        assert sorted(got) == list(range(4000))
    finally:
        inbox.close()
