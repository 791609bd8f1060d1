"""Import xtquant without its start-up update check.

``import xtquant`` asks the package index for a newer version when ``requests`` is
importable (10 s time-out), which stalls start-up on an offline trading host. The
check is skipped by hiding ``requests`` for the duration of that first import only.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

_lock = threading.Lock()


def import_xtquant() -> ModuleType:
    with _lock:
        if "xtquant" in sys.modules:
            return sys.modules["xtquant"]
        had_requests = "requests" in sys.modules
        saved = sys.modules.get("requests")
        sys.modules["requests"] = None  # type: ignore[assignment]  # makes `import requests` fail fast
        try:
            import xtquant
        finally:
            if had_requests:
                sys.modules["requests"] = saved  # type: ignore[assignment]
            else:
                del sys.modules["requests"]
        return xtquant
