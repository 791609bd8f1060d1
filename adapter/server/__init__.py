"""The gateway and what only it uses: sockets, the order desk, the stores, risk, reference data.

``Gateway`` is imported on first use, so a tool that needs one store (the CLI's ``ledger``
commands, the config's risk table) does not load the sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["Gateway"]


def __getattr__(name: str) -> Any:
    if name == "Gateway":
        from .gateway import Gateway

        return Gateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
