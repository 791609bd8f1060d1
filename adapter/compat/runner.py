"""Run a script with ``xtquant.xttrader`` and ``xtquant.xtdata`` resolving to the gateway-backed ones.

Only ``xtquant.xttrader`` and ``xtquant.xtdata`` (``adapter.compat.xtdata``) are replaced;
``xtquant.xttype`` and ``xtquant.xtconstant`` stay xtquant's own (they are plain Python). The endpoints and keys come from the arguments or the
``QMT_ADAPTER_*`` environment variables, which the trader and the client read.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import types
from typing import Any, Sequence

from . import trader


def install() -> types.ModuleType:
    """Make ``import xtquant.xttrader`` give the compatible classes and ``from xtquant import
    xtdata`` the gateway-backed xtdata (idempotent)."""
    module = sys.modules.get("xtquant.xttrader")
    if module is not None and getattr(module, "__qmt_adapter__", False):
        return module
    try:
        from adapter.xtimport import import_xtquant

        package = import_xtquant()
    except ImportError:
        package = types.ModuleType("xtquant")
        package.__path__ = []
        sys.modules["xtquant"] = package
    module = types.ModuleType("xtquant.xttrader", "xtquant.xttrader served by qmt-zmq-adapter")
    module.XtQuantTrader = trader.XtQuantTrader  # type: ignore[attr-defined]
    module.XtQuantTraderCallback = trader.XtQuantTraderCallback  # type: ignore[attr-defined]
    module.__qmt_adapter__ = True  # type: ignore[attr-defined]
    sys.modules["xtquant.xttrader"] = module
    package.xttrader = module  # type: ignore[attr-defined]
    # Genuine xtdata loads the terminal's native datacenter, which a remote host has not.
    from . import xtdata

    sys.modules["xtquant.xtdata"] = xtdata
    package.xtdata = xtdata  # type: ignore[attr-defined]
    return module


class WholeLines:
    """A text stream that writes each thread's output a whole line at a time.

    Strategies print from the main thread and from the callback thread; ``print`` writes the
    text and the newline separately, so two threads can splice their lines together. This
    keeps every line whole (partial lines wait for their newline, or for ``flush``)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._pending = threading.local()

    def write(self, text: str) -> int:
        buffered = getattr(self._pending, "text", "") + text
        head, newline, tail = buffered.rpartition("\n")
        self._pending.text = tail
        if newline:
            self._locked_write(head + newline)
        return len(text)

    def flush(self) -> None:
        text = getattr(self._pending, "text", "")
        self._pending.text = ""
        self._locked_write(text)

    def _locked_write(self, text: str) -> None:
        # Bounded wait: at interpreter exit a daemon callback thread may be frozen holding
        # the lock, and the final flush must not wait for it forever.
        locked = self._lock.acquire(timeout=1.0)
        try:
            if text:
                self._stream.write(text)
            self._stream.flush()
        finally:
            if locked:
                self._lock.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def run(script: str, args: Sequence[str], router: str | None = None, pub: str | None = None,
        nats: str | None = None) -> int:
    """Run ``script``; ``nats`` (or QMT_ADAPTER_NATS) trades through NATS instead of ZeroMQ."""
    if router:
        os.environ[trader.ROUTER_ENV] = router
    if pub:
        os.environ[trader.PUB_ENV] = pub
    if nats:
        os.environ[trader.NATS_ENV] = nats
    install()
    sys.stdout = WholeLines(sys.stdout)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
