"""Stop signals of `qmt-adapter serve` and the counter process: noted without a lock (adapter.signals.StopSignals)."""

from __future__ import annotations

import os
import signal
import threading

from adapter.signals import StopSignals


def test_a_signal_handled_while_the_main_thread_holds_a_lock_is_noted() -> None:
    """Python runs a handler in the main thread between two bytecodes, also inside a lock that
    thread holds (an Event's, while it waits or sets): a handler that took such a lock again
    would never return. This one is delivered inside an Event's lock and returns."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    stop = StopSignals()
    try:
        stop.install()
        event = threading.Event()
        with event._cond:  # noqa: SLF001 - the lock Event.set and Event.wait take
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # bounded: the handler runs at one of the next bytecodes
                if stop.received is not None:
                    break
            noted_inside = stop.received
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            if stop.received == signal.SIGINT:
                break
        assert noted_inside == signal.SIGTERM
        assert stop.received == signal.SIGINT  # the newest is kept; any means stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
