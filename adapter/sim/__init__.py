"""Simulated broker counter under the genuine ``xtquant.xttrader.XtQuantTrader``.

``install()`` puts a pure-Python stand-in for the Windows-only native client
(``xtquant.xtpythonclient``) in place, so ``from xtquant.xttrader import XtQuantTrader``
works on any platform. A ``SimCounter`` registered at a path then serves every
``XtQuantTrader(path, session)`` that connects to it::

    from adapter import sim
    sim.install()
    counter = sim.SimCounter(SimConfig(), ["1000000365"])
    sim.register_counter("sim://desk", counter)
    trader = XtQuantTrader("sim://desk", 1)

``SimCounter(..., state_path="books.sqlite3")`` keeps the counter's books in a file that
survives restarts and kills (format: ``adapter.sim.store``).

``start_counter_process(path, ...)`` runs the counter in its own process instead, as QMT runs:
``XtQuantTrader(path, session)`` in any process finds it through the path (``adapter.sim.remote``).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterable

from adapter.xtimport import import_xtquant

if TYPE_CHECKING:
    from adapter.config import SimConfig
    from adapter.sim.counter import SimCounter
    from adapter.sim.remote import CounterProcess

__all__ = ["SimCounter", "StateFileError", "install", "register_counter", "start_counter_process", "unregister_counter"]

_install_lock = threading.Lock()


def install() -> None:
    """Make the simulated native client ``xtquant.xtpythonclient`` (idempotent).

    Raises RuntimeError when ``xtquant.xttrader`` was already imported over another
    native module: that trader class would keep talking to the other one.
    """
    with _install_lock:
        xtquant = import_xtquant()
        from adapter.sim import native

        trader = sys.modules.get("xtquant.xttrader")
        if trader is not None and getattr(trader, "_XTQC_", None) is not native:
            raise RuntimeError(
                "xtquant.xttrader was imported before adapter.sim.install() and is bound to another "
                "native client (xtquant.xtpythonclient); call install() before importing xtquant.xttrader"
            )
        sys.modules["xtquant.xtpythonclient"] = native
        xtquant.xtpythonclient = native  # type: ignore[attr-defined]


def start_counter_process(
    path: str | os.PathLike[str], config: SimConfig, accounts: Iterable[str],
    state_path: str | os.PathLike[str] | None = None,
) -> CounterProcess:
    """A ``SimCounter`` in its own process serving ``XtQuantTrader(path, ...)`` (``adapter.sim.remote``);
    the returned handle is also its control channel (``set_price``, ``step`` ...) and stops it (``close``)."""
    from adapter.sim.remote import CounterProcess

    process = CounterProcess(path, config, accounts, state_path)
    process.start()
    return process


def register_counter(path: str, counter: SimCounter) -> None:
    """Serve ``XtQuantTrader(path, ...)`` connections from ``counter``."""
    from adapter.sim import native

    native.register_counter(path, counter)


def unregister_counter(path: str) -> None:
    from adapter.sim import native

    native.unregister_counter(path)


def __getattr__(name: str) -> Any:
    # Lazy, so that importing adapter.sim alone does not import xtquant.
    if name == "SimCounter":
        from adapter.sim.counter import SimCounter

        return SimCounter
    if name == "StateFileError":
        from adapter.sim.store import StateFileError

        return StateFileError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
