"""Stop signals for a process's main loop, noted without a lock."""

from __future__ import annotations

import signal
from typing import Any


class StopSignals:
    """SIGINT / SIGTERM, noted for a main loop that looks at ``received`` now and then.

    The handler only stores the signal's number. Python runs a handler in the main thread
    between two bytecodes, also while that thread holds a lock: a second signal arriving while
    the first one's handler was in ``threading.Event.set`` took the Event's lock again (it is not
    re-entrant) and the process never stopped. So the handler takes no lock at all.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        self.received = signum

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self)
