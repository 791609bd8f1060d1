"""Run a script with ``xtquant.xttrader`` resolving to the gateway-backed classes.

Only ``xtquant.xttrader`` is replaced; ``xtquant.xttype`` and ``xtquant.xtconstant`` stay
xtquant's own (they are plain Python). The endpoints and keys come from the arguments or the
``QMT_ADAPTER_*`` environment variables, which the trader and the client read.
"""

from __future__ import annotations

import os
import runpy
import sys
import types
from typing import Sequence

from . import trader


def install() -> types.ModuleType:
    """Make ``import xtquant.xttrader`` give the compatible classes (idempotent)."""
    module = sys.modules.get("xtquant.xttrader")
    if module is not None and getattr(module, "__qmt_adapter__", False):
        return module
    try:
        from adapter.xtimport import import_xtquant

        package = import_xtquant()
    except ImportError:
        package = types.ModuleType("xtquant")
        package.__path__ = []  # type: ignore[attr-defined]
        sys.modules["xtquant"] = package
    module = types.ModuleType("xtquant.xttrader", "xtquant.xttrader served by qmt-zmq-adapter")
    module.XtQuantTrader = trader.XtQuantTrader  # type: ignore[attr-defined]
    module.XtQuantTraderCallback = trader.XtQuantTraderCallback  # type: ignore[attr-defined]
    module.__qmt_adapter__ = True  # type: ignore[attr-defined]
    sys.modules["xtquant.xttrader"] = module
    package.xttrader = module  # type: ignore[attr-defined]
    return module


def run(script: str, args: Sequence[str], router: str | None = None, pub: str | None = None) -> int:
    if router:
        os.environ[trader.ROUTER_ENV] = router
    if pub:
        os.environ[trader.PUB_ENV] = pub
    install()
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
