"""The operator console: a Textual app that is a client of the gateway like any other.

Threads and tasks: every gateway call is awaited on Textual's own event loop through one
:class:`~adapter.client.AsyncClient` (the pinger, the event feed, the operator's actions), so the
screen never waits on the network. :class:`~adapter.client.Quotes` brings its own threads; its
callback only stores the newest tick per code under a lock, and the redraw timer takes them.
The screen is redrawn from :class:`ConsoleModel` on a timer, only when the model changed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Sequence

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.css.query import NoMatches
from textual.widgets import Button, DataTable, Footer, Label, Static
from textual.worker import WorkerCancelled, WorkerFailed, WorkerState

from ..client import AsyncClient, GatewayError, GatewayTimeout, Quotes
from ..display import china_time, clock, fmt, side_name, status_name
from .model import HALTED, NORMAL, REDUCE_ONLY, ConsoleModel, field_of
from .text import money, signed, signed_pct

logger = logging.getLogger(__name__)

PING_EVERY = 2.0  # seconds between pings: counter connection, trading state, reachability
RETRY_EVERY = 2.0  # seconds before the event feed tries again after a failure
REDRAW_EVERY = 0.2  # seconds between looks at the model
QUOTE_POLL_EVERY = 3.0  # seconds between get_full_tick calls when the quote PUB is not reachable
PERMISSION_DENIED = "permission_denied"

STATE_STYLES = {NORMAL: "bold white on dark_green", REDUCE_ONLY: "bold black on yellow", HALTED: "bold white on red"}


class Confirm(ModalScreen[Any]):
    """A question with a few answers, each a button with its key; Escape answers None."""

    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Vertical { width: 72; height: auto; border: thick $error; background: $surface; padding: 1 2; }
    Confirm Label { width: 100%; margin-bottom: 1; }
    Confirm Horizontal { height: auto; align-horizontal: center; }
    Confirm Button { margin: 0 1; }
    """
    BINDINGS = [Binding("escape,n", "answer_none", "Back")]

    def __init__(self, question: str, answers: Sequence[tuple[str, Any, str]]) -> None:
        super().__init__()
        self._question = question
        self._answers = list(answers)  # (label, value, key)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._question, id="question")
            with Horizontal():
                for index, (label, value, key) in enumerate(self._answers):
                    yield Button(f"{label} ({key})", id=f"answer-{index}", variant="error" if index == 0 else "default")
                yield Button("Back (n)", id="back")

    def on_mount(self) -> None:
        self.query_one("#back", Button).focus()  # Enter alone never halts: a key or a click does

    def on_key(self, event: Any) -> None:
        for _, value, key in self._answers:
            if event.key == key:
                event.stop()
                self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button_id = event.button.id or ""
        if button_id.startswith("answer-"):
            self.dismiss(self._answers[int(button_id.split("-")[1])][1])
        else:
            self.dismiss(None)

    def action_answer_none(self) -> None:
        self.dismiss(None)


class ConsoleApp(App[None]):
    """Live view of one gateway: counter, trading state and kill switch, books, events, quotes."""

    TITLE = "qmt-adapter console"
    CSS = """
    #status { height: 3; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    .row { height: 1fr; }
    DataTable { height: 1fr; border: round $primary-darken-2; }
    DataTable:focus { border: round $accent; }
    #fills { width: 72; }
    #denials { width: 1fr; }
    """
    BINDINGS = [
        Binding("k", "kill_switch", "Kill switch"),
        Binding("r", "reduce_only", "Reduce-only"),
        Binding("u", "resume", "Resume"),
        Binding("c", "cancel_order", "Cancel order"),
        Binding("a", "next_account", "Next account"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, router: str, pub: str, *, timeout: float = 10.0, client_key: Any = None,
                 server_key: Any = None, accounts: Sequence[str] = (), events_kept: int = 200,
                 ping_every: float = PING_EVERY, retry_every: float = RETRY_EVERY) -> None:
        super().__init__()
        self.router, self.pub = router, pub
        # Made here, so a bad key file fails before the screen starts; used only on the app's loop.
        self._client = AsyncClient(router, pub, timeout=timeout, client_key=client_key, server_key=server_key)
        self._wanted_accounts = list(accounts)  # none: every account the key may see
        self.model = ConsoleModel(events_kept=events_kept)
        self._events_kept = events_kept
        self._ping_every = ping_every
        self._retry_every = retry_every
        self._ping_timeout = min(timeout, 3.0)
        self._reachable = asyncio.Event()
        self._account_index = 0
        self._drawn = -1
        self._order_rows: list[int] = []  # order ids in the working orders table, top to bottom
        # Quotes: its threads write here, the redraw timer reads (newest tick per code only).
        self._quotes: Quotes | None = None
        self._quote_lock = threading.Lock()
        self._quote_thread_lock = threading.Lock()  # one subscription change at a time
        self._new_ticks: dict[str, Any] = {}
        self._quotes_note = ""
        self._quoted: tuple[str, ...] = ()
        self._quote_seq: int | None = None
        self._quotes_live = False
        self._last_poll = 0.0

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Vertical():
            yield self._table("positions", "Positions and quotes of the codes held",
                              ("code", "name", "volume", "avail", "cost", "last", "chg %", "bid1", "ask1", "value",
                               "P&L", "P&L %", "quote"))
            yield self._table("orders", "Working orders (c: cancel the selected one)",
                              ("order_id", "time", "code", "side", "volume", "price", "traded", "status", "strategy",
                               "client_order_id"), cursor=True)
            with Horizontal(classes="row"):
                yield self._table("fills", "Fills", ("time", "code", "side", "volume", "price", "amount", "order_id"))
                yield self._table("denials", "Risk denials", ("time", "account", "rule", "order", "message"))
            yield self._table("events", "Latest events", ("event",))
        yield Footer()

    @staticmethod
    def _table(table_id: str, title: str, columns: Sequence[str], cursor: bool = False) -> DataTable[Any]:
        table: DataTable[Any] = DataTable(id=table_id, cursor_type="row" if cursor else "none",
                                          show_cursor=cursor, zebra_stripes=True)
        table.border_title = title
        table.add_columns(*columns)
        return table

    def on_mount(self) -> None:
        self.query_one("#orders", DataTable).focus()
        self.run_worker(self._pinger(), name="pinger", group="gateway")
        self.run_worker(self._feed(), name="feed", group="gateway")
        self._redraw_timer = self.set_interval(REDRAW_EVERY, self._redraw)
        self._redraw()

    async def on_unmount(self) -> None:
        timer = getattr(self, "_redraw_timer", None)
        if timer is not None:
            timer.stop()  # the widgets go with the app: no redraw after this
        # The loop's own calls end first, so closing the client fails none of them mid-air.
        for group in ("gateway", "actions"):
            for worker in self.workers.cancel_group(self, group):
                if worker.state != WorkerState.PENDING:  # never started: nothing to wait for
                    try:
                        await worker.wait()
                    except (WorkerCancelled, WorkerFailed):
                        pass
        quotes, self._quotes = self._quotes, None
        if quotes is not None:
            await asyncio.to_thread(quotes.close)
        await self._client.close()

    # -- the gateway ----------------------------------------------------------------------

    @property
    def client(self) -> AsyncClient:
        return self._client

    async def _pinger(self) -> None:
        """Counter connection, trading state and whether the gateway answers at all, every few seconds."""
        while True:
            try:
                info = await self.client.ping(timeout=self._ping_timeout)
            except GatewayTimeout:
                self._reachable.clear()
                self.model.on_unreachable(f"no answer from {self.router} within {self._ping_timeout:g} s")
            except GatewayError as exc:
                self._reachable.clear()
                self.model.on_unreachable(f"{self.router}: {exc.code}: {exc.message}")
            else:
                self.model.on_ping(info)
                self._reachable.set()
                await self._follow_quotes()
            await asyncio.sleep(self._ping_every)

    async def _feed(self) -> None:
        """Events from the gateway onto the books: subscribe, prove it live, take the snapshots,
        then apply each event after them. Starts again after a failure."""
        applied: int | None = None  # the seq of the last event taken
        while True:
            await self._reachable.wait()
            if applied is None and self.model.last_seq:  # the first time, the latest events of the journal too
                applied = max(0, self.model.last_seq - self._events_kept)
            stream = self.client.events(from_seq=None if applied is None else applied + 1)
            try:
                if await stream.wait_subscribed(self._ping_timeout):
                    await self._load_books()
                    while True:
                        event = await stream.receive()
                        if event is None:
                            continue
                        if event.seq is not None:
                            applied = event.seq
                        if self.model.apply(event):
                            await self._load_books()
            except GatewayError as exc:
                logger.warning("event feed: %s", exc)
                self.model.say(f"event feed interrupted ({exc.code}); starting again")
            finally:
                stream.close()
            await asyncio.sleep(self._retry_every)

    async def _load_books(self) -> None:
        accounts = self._wanted_accounts or self.model.accounts
        for account in accounts:
            try:
                self.model.load(await self.client.snapshot(account))
            except GatewayError as exc:
                if exc.code == "unknown_account" or exc.code == PERMISSION_DENIED:
                    self.model.say(f"account {account}: {exc.message}")
                    continue
                raise
        await self._follow_quotes()  # the codes held may have changed

    @property
    def accounts(self) -> list[str]:
        return self._wanted_accounts or self.model.accounts

    @property
    def account(self) -> str | None:
        accounts = self.accounts
        return accounts[self._account_index % len(accounts)] if accounts else None

    # -- quotes ---------------------------------------------------------------------------

    async def _follow_quotes(self) -> None:
        """Quotes of the codes held: live from the quote PUB, the first values and the fall-back by query."""
        held = tuple(self.model.held_codes())
        now = time.monotonic()
        if held != self._quoted:
            self._quoted = held
            self.run_worker(lambda: self._subscribe_quotes(held), thread=True, group="quotes", name="quotes")
        elif not held or (self._quotes_live and now - self._last_poll < 60.0):
            return
        elif now - self._last_poll < QUOTE_POLL_EVERY:
            return
        self._last_poll = now
        if held:
            try:
                self._take_ticks(await self.client.get_full_tick(list(held), timeout=self._ping_timeout))
            except GatewayError as exc:
                self._set_quotes_note(f"quotes unavailable: {exc.code}")

    def _subscribe_quotes(self, codes: tuple[str, ...]) -> None:
        """A worker thread: (re)subscribe the whole quote of ``codes``; Quotes' calls block."""
        with self._quote_thread_lock:
            try:
                if self._quotes is None:
                    self._quotes = Quotes(self.client, timeout=self._ping_timeout)
                if self._quote_seq is not None:
                    self._quotes.unsubscribe_quote(self._quote_seq)
                    self._quote_seq = None
                if codes:
                    self._quote_seq = self._quotes.subscribe_whole_quote(list(codes), callback=self._take_ticks)
                self._quotes_live = True
                self._set_quotes_note("live")
            except GatewayError as exc:
                self._quotes_live = False
                self._set_quotes_note(f"polled every {QUOTE_POLL_EVERY:g} s (quote PUB: {exc.code})")

    def _take_ticks(self, ticks: Any) -> None:
        """Quotes' callback thread, or the loop: keep the newest tick per code for the redraw."""
        if not isinstance(ticks, dict):
            return
        with self._quote_lock:
            self._new_ticks.update(ticks)

    def _set_quotes_note(self, note: str) -> None:
        with self._quote_lock:
            self._quotes_note = note

    # -- actions --------------------------------------------------------------------------

    def _refuse_without(self, right: str, what: str) -> bool:
        """Say so and return True when this console's key lacks ``right``."""
        if self.model.may(right):
            return False
        permissions = ", ".join(field_of(self.model.key, "permissions") or []) or "none"
        self._tell(f"{what} refused: key '{self.model.key_name}' has {permissions}; {what} needs the "
                   f"{right} right", error=True)
        return True

    def _tell(self, message: str, error: bool = False) -> None:
        self.model.say(message)
        self.notify(message, severity="error" if error else "information", timeout=8)
        self._redraw()

    def action_kill_switch(self) -> None:
        if self._refuse_without("admin", "the kill switch"):
            return
        self.push_screen(Confirm(
            "HALT TRADING? No new orders from any client until resume. Cancels are still allowed.",
            [("Halt", "halt", "y"), ("Halt and cancel open orders", "halt_cancel", "c")],
        ), self._after_kill_switch)

    def _after_kill_switch(self, answer: Any) -> None:
        if answer in ("halt", "halt_cancel"):
            self.run_worker(self._switch(HALTED, cancel_open=answer == "halt_cancel"), group="actions")

    def action_reduce_only(self) -> None:
        if self._refuse_without("admin", "reduce-only"):
            return
        self.push_screen(Confirm("REDUCE-ONLY? Only sells up to the sellable position are accepted.",
                                 [("Reduce-only", REDUCE_ONLY, "y")]), self._after_state)

    def action_resume(self) -> None:
        if self._refuse_without("admin", "resume"):
            return
        self.push_screen(Confirm("RESUME trading? New orders are accepted again.", [("Resume", NORMAL, "y")]),
                         self._after_state)

    def _after_state(self, answer: Any) -> None:
        if answer in (REDUCE_ONLY, NORMAL):
            self.run_worker(self._switch(answer), group="actions")

    async def _switch(self, state: str, cancel_open: bool = False) -> None:
        reason = "operator console" + (f" (key {self.model.key_name})" if self.model.key_name else "")
        try:
            if state == HALTED:
                result = await self.client.halt(cancel_open=cancel_open, reason=reason)
            elif state == REDUCE_ONLY:
                result = await self.client.reduce_only(reason=reason)
            else:
                result = await self.client.resume(reason=reason)
        except GatewayError as exc:
            self._tell(self._refusal(exc, "the kill switch" if state == HALTED else state.replace("_", "-")),
                       error=True)
            return
        self.model.trading_state = str(result.state)
        self.model.trading_reason = str(result.reason or "")
        self._tell(f"trading {str(result.state).upper()} (was {result.previous})"
                   + ("; cancelling every open order" if cancel_open else ""))

    def _refusal(self, exc: GatewayError, what: str) -> str:
        if exc.code == PERMISSION_DENIED:
            return f"{what} refused: this key lacks the right ({exc.message})"
        return f"{what} failed: {exc.code}: {exc.message}"

    def action_next_account(self) -> None:
        if len(self.accounts) > 1:
            self._account_index = (self._account_index + 1) % len(self.accounts)
            self._drawn = -1
            self._redraw()

    def action_cancel_order(self) -> None:
        table = self.query_one("#orders", DataTable)
        account = self.account
        if account is None or not self._order_rows or not 0 <= table.cursor_row < len(self._order_rows):
            self._tell("no working order selected: pick one in the working orders list first", error=True)
            return
        if self._refuse_without("trade", "cancel"):
            return
        order_id = self._order_rows[table.cursor_row]
        order = self.model.books[account].orders.get(order_id)
        what = (f"{field_of(order, 'stock_code')} {side_name(field_of(order, 'order_type'))} "
                f"{field_of(order, 'order_volume')}@{fmt(field_of(order, 'price'))}") if order is not None else ""
        self.push_screen(Confirm(f"CANCEL order {order_id} {what} of account {account}?",
                                 [("Cancel the order", order_id, "y")]),
                         lambda answer: self._after_cancel(account, answer))

    def _after_cancel(self, account: str, answer: Any) -> None:
        if isinstance(answer, int):
            self.run_worker(self._cancel(account, answer), group="actions")

    async def _cancel(self, account: str, order_id: int) -> None:
        try:
            result = await self.client.cancel_order_stock(account, order_id)
        except GatewayError as exc:
            self._tell(self._refusal(exc, f"cancel of order {order_id}"), error=True)
            return
        if result.cancel_result != 0:
            self._tell(f"cancel of order {order_id} refused: {result.error_msg or result.cancel_result}", error=True)
        else:
            self._tell(f"cancel sent for order {order_id}; the outcome arrives as an order event")

    # -- drawing --------------------------------------------------------------------------

    def _redraw(self) -> None:
        with self._quote_lock:
            ticks, self._new_ticks = self._new_ticks, {}
            note = self._quotes_note
        if ticks:
            self.model.on_ticks(ticks)
        if note != self.model.quotes_note:
            self.model.quotes_note = note
            self.model.version += 1
        if self.model.version == self._drawn:
            return
        account = self.account
        try:
            status = self.query_one("#status", Static)
        except NoMatches:  # the screen is being taken down (quitting): nothing to draw on
            return
        self._drawn = self.model.version
        status.update(self.status_text())
        self._draw_positions(account)
        self._draw_orders(account)
        self._draw_fills(account)
        self._fill("events", [(line,) for line in self.model.events])
        self._fill("denials", list(self.model.denials))

    def status_text(self) -> Text:
        """Three lines: the gateway, the account shown, the last action's outcome."""
        m = self.model
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("trading ", style="bold")
        text.append(f" {m.trading_state.upper().replace('_', '-')} ", style=STATE_STYLES.get(m.trading_state, "bold"))
        if m.reachable is False:
            text.append(" (last known)")
        elif m.trading_reason and m.trading_state != NORMAL:
            text.append(f" {m.trading_reason}")
        text.append("  |  ")
        if m.reachable is False:
            text.append(" GATEWAY UNREACHABLE ", style="bold white on red")
            text.append(f" since {clock(m.unreachable_since)}, retrying every {self._ping_every:g} s: {m.problem}")
        elif m.reachable is None:
            text.append(f"connecting to {self.router} ...", style="bold yellow")
        else:
            text.append(f"gateway {self.router} ({m.backend}), ")
            text.append("counter connected" if m.counter_connected else " COUNTER DISCONNECTED ",
                        style="green" if m.counter_connected else "bold white on red")
            text.append(f", seq {m.last_seq}")
            if m.key is not None:
                text.append(f"  |  key {m.key_name} ({', '.join(field_of(m.key, 'permissions') or [])})")
        text.append("\n")
        account = self.account
        books = m.books.get(account or "")
        if account is None:
            text.append("no account yet")
        else:
            count = len(self.accounts)
            text.append(f"account {account}" + (f" ({self._account_index % count + 1}/{count}, a: next)" if count > 1 else ""),
                        style="bold")
            asset = books.asset if books else None
            if asset is None:
                text.append("  no asset yet")
            else:
                for label, name in (("cash", "cash"), ("frozen", "frozen_cash"), ("market value", "market_value"),
                                    ("total", "total_asset")):
                    text.append(f"  {label} {money(field_of(asset, name))}")
            pnl = m.pnl(account)
            text.append("  P&L ")
            text.append(signed(pnl), style=_pnl_style(pnl))
        text.append("\n")
        if m.message:
            text.append(m.message, style="italic")
        if m.quotes_note:
            text.append(f"{'  |  ' if m.message else ''}quotes: {m.quotes_note}", style="dim")
        return text

    def _fill(self, table_id: str, rows: Sequence[Sequence[Any]], keys: Sequence[str] | None = None) -> None:
        table = self.query_one(f"#{table_id}", DataTable)
        cursor = table.cursor_row
        labels = [str(column.label) for column in table.columns.values()]
        table.clear(columns=True)  # and the columns, so their widths follow what is shown now
        table.add_columns(*labels)
        for index, row in enumerate(rows):
            table.add_row(*row, key=None if keys is None else keys[index])
        if rows and table.show_cursor:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1), animate=False)

    def _draw_positions(self, account: str | None) -> None:
        rows = []
        for p in self.model.positions(account) if account else []:
            tick = self.model.ticks.get(p.code) or {}
            close = tick.get("lastClose")
            change = (p.last - close) / close * 100 if p.last is not None and isinstance(close, (int, float)) \
                and close > 0 else None
            bid = (tick.get("bidPrice") or [None])[0]
            ask = (tick.get("askPrice") or [None])[0]
            rows.append((p.code, p.name, p.volume, p.can_use, fmt(p.avg_price), fmt(p.last),
                         Text(signed_pct(change), style=_pnl_style(change)),
                         fmt(bid) if bid else "-", fmt(ask) if ask else "-", money(p.market_value),
                         Text(signed(p.pnl), style=_pnl_style(p.pnl)),
                         Text(signed_pct(p.pnl_pct), style=_pnl_style(p.pnl_pct)),
                         _china_clock(tick.get("time"))))
        self._fill("positions", rows)

    def _draw_orders(self, account: str | None) -> None:
        table = self.query_one("#orders", DataTable)
        chosen = self._order_rows[table.cursor_row] if 0 <= table.cursor_row < len(self._order_rows) else None
        orders = self.model.working_orders(account) if account else []
        self._order_rows = [int(field_of(o, "order_id")) for o in orders]
        rows = [(field_of(o, "order_id"), clock(field_of(o, "order_time")), field_of(o, "stock_code"),
                 side_name(field_of(o, "order_type")), field_of(o, "order_volume"), fmt(field_of(o, "price")),
                 field_of(o, "traded_volume"), status_name(field_of(o, "order_status")),
                 field_of(o, "strategy_name") or "", field_of(o, "client_order_id") or "") for o in orders]
        self._fill("orders", rows, [str(order_id) for order_id in self._order_rows])
        if chosen in self._order_rows:  # the selection follows its order when rows move
            table.move_cursor(row=self._order_rows.index(chosen), animate=False)

    def _draw_fills(self, account: str | None) -> None:
        rows = [(clock(field_of(t, "traded_time")), field_of(t, "stock_code"), side_name(field_of(t, "order_type")),
                 field_of(t, "traded_volume"), fmt(field_of(t, "traded_price")), money(field_of(t, "traded_amount")),
                 field_of(t, "order_id")) for t in (self.model.fills(account) if account else [])]
        self._fill("fills", rows)


def _pnl_style(value: float | None) -> str:
    """A-share colours: red rises, green falls."""
    if value is None or value == 0:
        return ""
    return "bold red" if value > 0 else "bold green"


def _china_clock(ms: Any) -> str:
    return china_time(ms, "%H:%M:%S")


__all__ = ["ConsoleApp", "Confirm"]
