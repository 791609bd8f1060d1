"""Run code written for ``xtquant.xttrader`` against a remote gateway, unchanged.

    from adapter.compat import XtQuantTrader, XtQuantTraderCallback, StockAccount

or run an untouched script with ``qmt-adapter run SCRIPT`` / ``python -m adapter.compat SCRIPT``,
which makes ``import xtquant.xttrader`` resolve to this package (see ``runner``).
"""

from __future__ import annotations

from typing import Any

from .trader import XtQuantTrader, XtQuantTraderCallback

__all__ = ["StockAccount", "XtQuantTrader", "XtQuantTraderCallback"]


def _stock_account() -> Any:
    try:
        from adapter.xtimport import import_xtquant

        import_xtquant()
        from xtquant.xttype import StockAccount as Genuine

        return Genuine
    except ImportError:  # a plain client without xtquant: the same attributes
        class StockAccount:
            TYPES = {"FUTURE": 1, "SECURITY": 2, "STOCK": 2, "CREDIT": 3, "FUTURE_OPTION": 5, "STOCK_OPTION": 6,
                     "HUGANGTONG": 7, "SHENGANGTONG": 11}

            def __init__(self, account_id: str, account_type: str = "STOCK") -> None:
                if not isinstance(account_id, str):
                    raise TypeError("account_id must be a string")
                self.account_id = account_id
                self.account_type = self.TYPES.get(account_type.upper(), 2)

        return StockAccount


StockAccount = _stock_account()
