"""What the server needs from XtQuantTrader: one worker thread that owns it."""

from .xt import BrokerStartError, XtBroker

__all__ = ["BrokerStartError", "XtBroker"]
