"""The operator console driven headless by Textual's pilot against real gateways over the sim."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest
from textual.geometry import Region
from textual.pilot import Pilot

from adapter.client import Client
from adapter.config import SimConfig
from adapter.console import ConsoleApp, Confirm

from ..conftest import ACCOUNT, trading_session, wait_filled

HELD = SimConfig(positions={ACCOUNT: {"600000.SH": 1000}})
SIZE = (120, 40)
T = TypeVar("T")


def shown(app: ConsoleApp, selector: str) -> str:
    """The text a widget shows on screen now (visible lines only), on the top screen if it is there."""
    widget = app.screen.query_one(selector) if app.screen.query(selector) else app.query_one(selector)
    lines = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    return "\n".join(strip.text for strip in lines)


async def until(pilot: Pilot[Any], predicate: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    """Let the app run until ``predicate()`` is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking client call from the test, off the app's loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


def console(gateway: Any, **kwargs: Any) -> ConsoleApp:
    kwargs.setdefault("timeout", 3.0)
    return ConsoleApp(gateway.router_endpoint, gateway.pub_endpoint, ping_every=0.3, retry_every=0.3, **kwargs)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


def test_books_orders_fills_and_cancel_from_the_list(gateway_factory: Callable[..., Any]) -> None:
    gateway = gateway_factory(sim=HELD)

    async def body() -> None:
        app = console(gateway)
        with trading_session(gateway) as (client, log):
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: "1,000,000.00" in shown(app, "#status"), "the account's cash")
                await until(pilot, lambda: "600000.SH" in shown(app, "#positions") and "1000" in shown(app, "#positions"),
                            "the position")
                assert ACCOUNT in shown(app, "#status") and "NORMAL" in shown(app, "#status")

                # Another client's orders: one rests, one fills.
                resting = (await call(client.order_stock, ACCOUNT, "600000.SH", "buy", 100, "limit", 10.50)).order_id
                await until(pilot, lambda: str(resting) in shown(app, "#orders"), "the resting buy in working orders")
                filled = (await call(client.order_stock, ACCOUNT, "600000.SH", "buy", 200, "limit", 10.70)).order_id
                await call(wait_filled, log, filled)
                await until(pilot, lambda: str(filled) in shown(app, "#fills"), "the fill")
                await until(pilot, lambda: "1200" in shown(app, "#positions"), "the position grown by the fill")
                assert str(filled) not in shown(app, "#orders"), "a filled order is no longer working"

                # Cancel it from the list: select, c, confirm.
                await pilot.press("c")
                await until(pilot, lambda: isinstance(app.screen, Confirm), "the cancel confirmation")
                assert str(resting) in shown(app, "#question")
                await pilot.press("y")
                await call(log.wait, "order", 10.0, order_id=resting, order_status=54)
                order = await call(client.query_stock_order, ACCOUNT, resting)
                assert order.order_status == 54  # canceled, at the counter
                await until(pilot, lambda: str(resting) not in shown(app, "#orders"), "the cancelled order to leave")
                assert "cancel sent" in shown(app, "#status")
                await pilot.press("q")

    run(body)


def test_kill_switch_halts_with_confirmation_and_the_header_shows_it(gateway: Any, client: Client) -> None:
    async def body() -> None:
        app = console(gateway)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "counter connected" in shown(app, "#status"), "the gateway")
            await pilot.press("k")
            await until(pilot, lambda: isinstance(app.screen, Confirm), "the halt confirmation")
            await pilot.press("n")  # backing out does nothing
            await until(pilot, lambda: not isinstance(app.screen, Confirm), "the dialog to close")
            assert (await call(client.ping)).trading_state == "normal"

            await pilot.press("k")
            await until(pilot, lambda: isinstance(app.screen, Confirm), "the halt confirmation")
            await pilot.press("y")
            await until(pilot, lambda: " HALTED " in shown(app, "#status"), "HALTED in the header")
            assert (await call(client.ping)).trading_state == "halted"
            with pytest.raises(Exception, match="risk_denied|trading"):
                await call(client.order_stock, ACCOUNT, "600000.SH", "buy", 100, "limit", 10.50)

            await pilot.press("u")
            await until(pilot, lambda: isinstance(app.screen, Confirm), "the resume confirmation")
            await pilot.press("y")
            await until(pilot, lambda: " NORMAL " in shown(app, "#status"), "NORMAL in the header")
            assert (await call(client.ping)).trading_state == "normal"

    run(body)


def test_a_read_only_key_sees_everything_and_is_told_it_cannot_halt(
        gateway_factory: Callable[..., Any], tmp_path: Path) -> None:
    from adapter.keys import ensure_server_key, new_client_key, parse_accounts, parse_permissions

    keys = tmp_path / "keys"
    new_client_key(keys, "watcher", parse_accounts(ACCOUNT), parse_permissions("read"))
    ensure_server_key(keys)
    gateway = gateway_factory(sim=HELD, curve=True, keys_dir=str(keys))
    order_key = {"client_key": keys / "private" / "watcher.key_secret", "server_key": keys / "server.key"}

    async def body() -> None:
        app = console(gateway, **order_key)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "1,000,000.00" in shown(app, "#status"), "the account's cash")
            await until(pilot, lambda: "600000.SH" in shown(app, "#positions"), "the position")
            assert "key watcher (read)" in shown(app, "#status")
            await pilot.press("k")
            message = await until(pilot, lambda: "admin" in shown(app, "#status") and shown(app, "#status"),
                                  "the refusal")
            assert "the kill switch refused" in message and "watcher" in message, message
            assert not isinstance(app.screen, Confirm), "no dialog for what the key may not do"
        # The gateway still trades: a desk key would see it normal.
        assert app.model.trading_state == "normal"

    run(body)


def test_the_gateway_going_away_is_shown_and_the_console_keeps_trying(
        gateway_factory: Callable[..., Any], tmp_path: Path) -> None:
    data_dir = str(tmp_path / "gw")
    gateway = gateway_factory(sim=HELD, data_dir=data_dir)
    router, pub = gateway.router_endpoint, gateway.pub_endpoint

    async def body() -> None:
        app = console(gateway, timeout=1.0)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "counter connected" in shown(app, "#status"), "the gateway")
            await call(gateway.stop)
            await until(pilot, lambda: "GATEWAY UNREACHABLE" in shown(app, "#status"), "the gateway shown gone")
            assert "retrying" in shown(app, "#status")
            # The same gateway back on the same endpoints: the console finds it by itself.
            await call(gateway_factory, sim=HELD, data_dir=data_dir, router=router, pub=pub)
            await until(pilot, lambda: "counter connected" in shown(app, "#status"), "the gateway back", timeout=20)
            await until(pilot, lambda: "600000.SH" in shown(app, "#positions"), "the books again")

    run(body)


def test_no_gateway_at_all_is_said_at_once(tmp_path: Path) -> None:
    from ..conftest import free_port

    async def body() -> None:
        app = ConsoleApp(f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", timeout=0.5,
                         ping_every=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "GATEWAY UNREACHABLE" in shown(app, "#status"), "the unreachable gateway")
            await pilot.press("c")  # nothing to cancel: said, nothing sent
            await until(pilot, lambda: "no working order selected" in shown(app, "#status"), "the hint")

    run(body)


def test_several_accounts_one_at_a_time(gateway_factory: Callable[..., Any]) -> None:
    other = "1000000366"
    gateway = gateway_factory(sim=SimConfig(positions={ACCOUNT: {"600000.SH": 1000}, other: {"000001.SZ": 300}}),
                              accounts=(ACCOUNT, other))

    async def body() -> None:
        app = console(gateway)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: f"account {ACCOUNT} (1/2" in shown(app, "#status"), "the first account")
            await until(pilot, lambda: "600000.SH" in shown(app, "#positions"), "its position")
            await pilot.press("a")
            await until(pilot, lambda: f"account {other} (2/2" in shown(app, "#status"), "the second account")
            await until(pilot, lambda: "000001.SZ" in shown(app, "#positions"), "its position")
            assert "600000.SH" not in shown(app, "#positions")
        only = console(gateway, accounts=[other])
        async with only.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "000001.SZ" in shown(only, "#positions"), "the one account asked for")
            assert f"account {other}" in shown(only, "#status") and "(1/" not in shown(only, "#status")

    run(body)
