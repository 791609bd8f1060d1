"""Patches tried with ``python -m bench.profile_order --experiment NAME`` (gateway process only):
hot-path changes measured here before being proposed for code this bench does not own.
Nothing here is used by the gateway itself. Some are upper bounds (noted): they skip work a
real change would do incrementally, so they show what that work costs now."""

from __future__ import annotations

from typing import Any, Callable


def lazy_sent() -> None:
    """The seq of a synchronous order/cancel is posted without a wake-up of its own: it is
    drained with the response that always follows it (or with any later item)."""
    from adapter.broker.messages import Sent
    from adapter.protocol import ops
    from adapter.server import inbox

    post = inbox.Inbox.post

    def lazy(self: Any, item: Any) -> None:
        if type(item) is Sent and item.kind in (ops.ORDER, ops.CANCEL):
            self._items.append(item)
            return
        post(self, item)

    inbox.Inbox.post = lazy  # type: ignore[method-assign]


def sim_asset_cached() -> None:
    """Upper bound: the sim values an account's positions once instead of at every order
    (``Books.asset`` sums all positions per push; the bench's prices never move)."""
    from adapter.sim import books

    asset = books.Books.asset
    values: dict[str, Any] = {}

    def cached(self: Any, account_id: str) -> Any:
        full = asset(self, account_id) if account_id not in values else None
        if full is not None:
            values[account_id] = full.market_value
            return full
        account = self.account(account_id)
        return books.Asset(account_id, account.cash, account.frozen_cash, values[account_id])

    books.Books.asset = cached  # type: ignore[method-assign]


def risk_sending_counted() -> None:
    """Upper bound: the desk's risk check counts the account's orders in state ``sending``
    from a counter instead of scanning every record in flight per order."""
    from adapter.server import desk

    def check(self: Any, spec: Any, args: dict[str, Any], key: Any) -> None:
        key_name = key.name if self._curve else None
        account_id = args["account_id"]
        if spec.kind in (desk.ops.ORDER, desk.ops.ORDER_ASYNC):
            self.risk.check_order(account_id, key_name, args, self.view.books(account_id), self.killswitch.state,
                                  in_flight=0)
        else:
            self.risk.check_cancel(account_id, key_name)

    desk.Desk._check_risk = check  # type: ignore[method-assign]


def ledger_no_checkpoint() -> None:
    """Upper bound for moving the ledger's WAL checkpoints off the I/O thread, as the journal
    now does: the ledger's connection never checkpoints during the run."""
    from adapter.server import ledger

    init = ledger.Ledger.__init__

    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._db.execute("PRAGMA wal_autocheckpoint=0")

    ledger.Ledger.__init__ = patched  # type: ignore[method-assign]


EXPERIMENTS: dict[str, Callable[[], None]] = {
    "lazy_sent": lazy_sent,
    "sim_asset_cached": sim_asset_cached,
    "risk_sending_counted": risk_sending_counted,
    "ledger_no_checkpoint": ledger_no_checkpoint,
}
