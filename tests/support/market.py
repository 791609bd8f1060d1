"""The simulated counter behind a gateway, as the tests drive it: ``market(gateway).set_price(...)``.

One surface in both modes: the ``SimCounter`` itself when it runs in the gateway's process, the
control channel of its process (``adapter.sim.remote.CounterProcess``) with ``sim_process``.
"""

from __future__ import annotations

from typing import Any, Protocol


class Market(Protocol):
    """The counter's test/ops hooks (``SimCounter``'s, by the same names)."""

    def set_price(self, code: str, price: float) -> None: ...

    def step(self) -> None: ...

    def push_assets(self, account_id: str, count: int) -> None: ...

    def last_price(self, code: str) -> float: ...

    def price_limits(self, code: str) -> tuple[float, float]: ...

    def drop_connections(self, reason: str = ...) -> int: ...

    def set_ack_delay(self, seconds: float) -> None: ...

    def set_order_latency(self, seconds: float) -> None: ...

    def refuse_connections(self, flag: bool = ...) -> None: ...

    def refuse_connections_for(self, seconds: float) -> None: ...

    def connected_sessions(self) -> int: ...

    def next_day(self) -> None: ...

    def books(self, account_id: str) -> dict[str, Any]: ...


def market(gateway: Any) -> Market:
    """The counter serving ``gateway`` (backend sim)."""
    counter = gateway.broker.counter  # the one place a test reaches into the gateway for it
    if counter is None:
        raise RuntimeError("the gateway has no simulated counter (backend qmt, or not started)")
    return counter  # type: ignore[no-any-return]


def counter_process(gateway: Any) -> Any:
    """The ``CounterProcess`` of a gateway started with ``sim_process=True``: ``kill()``, ``start()``."""
    from adapter.sim.remote import CounterProcess

    counter = gateway.broker.counter
    if not isinstance(counter, CounterProcess):
        raise RuntimeError("the gateway's counter runs in its own process only with sim_process=True")
    return counter
