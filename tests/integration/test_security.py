"""CURVE + ZAP and per-key rights, against a live gateway with real keys and real messages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import msgpack
import pytest
import zmq
import zmq.auth

from adapter.client import Client, GatewayError, GatewayTimeout
from adapter.keys import (
    new_client_key,
    parse_accounts,
    parse_permissions,
    revoke_client_key,
)
from adapter.protocol import encode_request

from ..conftest import ACCOUNT, subscribed_log, wait_for

OTHER = "1000000366"
KEYS = {  # name -> (accounts, permissions)
    "trader-a": (ACCOUNT, "read,trade"),
    "reader-a": (ACCOUNT, "read"),
    "trader-b": (OTHER, "read,trade"),
    "desk": ("*", "read,trade,admin"),
}
QUIET = 1.0  # seconds an unauthorised peer is given to get an answer it must not get


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    root = tmp_path / "keys"
    for name, (accounts, permissions) in KEYS.items():
        new_client_key(root, name, parse_accounts(accounts), parse_permissions(permissions))
    return root


@pytest.fixture
def secure(gateway_factory: Callable[..., Any], keys_dir: Path) -> Any:
    from adapter.keys import ensure_server_key

    ensure_server_key(keys_dir)
    return gateway_factory(curve=True, keys_dir=str(keys_dir), accounts=(ACCOUNT, OTHER))


@pytest.fixture
def connect(secure: Any, keys_dir: Path) -> Iterator[Callable[[str], Client]]:
    clients: list[Client] = []

    def make(name: str, timeout: float = 5.0) -> Client:
        client = Client(
            secure.router_endpoint, secure.pub_endpoint, timeout=timeout,
            client_key=keys_dir / "private" / f"{name}.key_secret", server_key=keys_dir / "server.key",
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def buy(client: Client, account: str, volume: int = 200, client_order_id: str | None = None) -> Any:
    return client.order_stock(account, "600000.SH", "buy", volume, "limit", 10.60, "sec", "",
                              client_order_id=client_order_id)


def raw_socket(kind: int, endpoint: str, keys: tuple[bytes, bytes, bytes] | None) -> zmq.Socket:
    socket = zmq.Context.instance().socket(kind)
    socket.linger = 0
    if keys is not None:
        socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = keys
    socket.connect(endpoint)
    return socket


def stranger_keys(secure: Any) -> tuple[bytes, bytes, bytes]:
    public, secret = zmq.curve_keypair()  # a valid key pair nobody authorised
    return public, secret, secure.access.server_public


def nothing_arrives(socket: zmq.Socket, seconds: float = QUIET) -> bool:
    return socket.poll(int(seconds * 1000)) == 0


# -- who gets in -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["no key", "unknown key"])
def test_unauthorised_peers_get_no_answer_and_place_nothing(secure: Any, connect: Any, who: str) -> None:
    keys = None if who == "no key" else stranger_keys(secure)
    dealer = raw_socket(zmq.DEALER, secure.router_endpoint, keys)
    try:
        order = {"account_id": ACCOUNT, "stock_code": "600000.SH", "order_type": 23, "order_volume": 200,
                 "price_type": 11, "price": 10.6, "client_order_id": "intruder-1"}
        # A refused handshake tears the connection down and tries again: between tries the DEALER
        # has no pipe and a send would wait for ever, so each send waits a bounded time.
        dealer.sndtimeo = 2000
        for request_id, op, args in ((1, "ping", {}), (2, "order_stock", order),
                                     (3, "query_stock_asset", {"account_id": ACCOUNT})):
            try:
                dealer.send(encode_request(request_id, op, args))
            except zmq.Again:
                pass  # not even queued: nothing of it can reach the gateway
        assert nothing_arrives(dealer)
    finally:
        dealer.close()
    desk = connect("desk")
    assert desk.ping().connected  # the gateway serves authorised keys throughout
    assert desk.query_stock_orders(ACCOUNT) == []  # and the intruder's order never reached the counter
    assert desk.order_outcomes(ACCOUNT) == []


@pytest.mark.parametrize("who", ["no key", "unknown key"])
def test_a_subscriber_without_an_authorised_key_receives_no_events(secure: Any, connect: Any, who: str) -> None:
    keys = None if who == "no key" else stranger_keys(secure)
    sub = raw_socket(zmq.SUB, secure.pub_endpoint, keys)
    sub.subscribe(b"")
    try:
        desk = connect("desk")
        with subscribed_log(desk) as log:
            response = buy(desk, ACCOUNT)
            log.wait("trade", order_id=response.order_id)  # events really flowed, with heartbeats
            wait_for(lambda: desk.ping(publish=True) and len(log.of("gateway.pong")) >= 3, what="more pongs")
        assert nothing_arrives(sub, 0.2)
    finally:
        sub.close()


def test_ping_tells_a_key_who_it_is(connect: Any) -> None:
    info = connect("trader-a").ping()
    assert info.key.name == "trader-a" and info.key.accounts == ACCOUNT
    assert info.key.permissions == ["read", "trade"]
    assert info.accounts == [ACCOUNT]  # the other account is not even listed
    assert connect("desk").ping().accounts == [ACCOUNT, OTHER]


# -- what a key may do -------------------------------------------------------------------


def test_a_read_key_queries_but_cannot_order_or_cancel(connect: Any) -> None:
    reader, desk = connect("reader-a"), connect("desk")
    assert reader.query_stock_asset(ACCOUNT).account_id == ACCOUNT
    with pytest.raises(GatewayError) as denied:
        buy(reader, ACCOUNT)
    assert denied.value.code == "permission_denied" and "'trade'" in denied.value.message
    assert "reader-a" in denied.value.message
    resting = desk.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.0, "sec", "")  # below the market
    with pytest.raises(GatewayError) as denied:
        reader.cancel_order_stock(ACCOUNT, resting.order_id)
    assert denied.value.code == "permission_denied"
    with pytest.raises(GatewayError) as denied:
        reader.reload()
    assert denied.value.code == "permission_denied" and "'admin'" in denied.value.message
    orders = desk.query_stock_orders(ACCOUNT)
    assert [o.order_id for o in orders] == [resting.order_id]  # only the desk's order, still open
    assert orders[0].order_status in (48, 50)


def test_a_key_for_one_account_cannot_touch_another(connect: Any) -> None:
    trader, desk = connect("trader-a"), connect("desk")
    theirs = buy(desk, OTHER)
    assert theirs.order_id > 0
    calls: list[Callable[[], Any]] = [
        lambda: trader.query_stock_asset(OTHER),
        lambda: trader.query_stock_positions(OTHER),
        lambda: trader.query_stock_orders(OTHER),
        lambda: trader.query_stock_trades(OTHER),
        lambda: trader.snapshot(OTHER),
        lambda: trader.order_outcomes(OTHER),
        lambda: buy(trader, OTHER),
        lambda: trader.cancel_order_stock(OTHER, theirs.order_id),
    ]
    for call in calls:
        with pytest.raises(GatewayError) as denied:
            call()
        assert denied.value.code == "permission_denied" and OTHER in denied.value.message
    # Queries over every account answer only for the key's own.
    assert {row.account_id for row in trader.query_account_infos()} == {ACCOUNT}
    assert {row.account_id for row in trader.query_account_status()} == {ACCOUNT}
    assert {row.account_id for row in desk.query_account_infos()} == {ACCOUNT, OTHER}
    # Replay of the whole journal holds none of the other account's events.
    page = trader.replay(1)
    topics = [topic for topic, _ in page.events]
    assert topics and all(OTHER not in topic for topic in topics)
    assert any(f".{ACCOUNT}." in topic for topic in topics)
    assert not desk.query_stock_orders(ACCOUNT)  # nothing was placed on A by the denied calls


def test_events_reach_only_keys_for_their_account(connect: Any, secure: Any, keys_dir: Path) -> None:
    trader_a, trader_b, desk = connect("trader-a"), connect("trader-b"), connect("desk")
    with subscribed_log(trader_a) as log_a, subscribed_log(trader_b) as log_b, subscribed_log(desk) as log_desk:
        # A raw SUB with trader-a's key asking for B's topics, and for everything.
        raw = raw_socket(
            zmq.SUB, secure.pub_endpoint,
            (*zmq.auth.load_certificate(keys_dir / "private" / "trader-a.key_secret"), secure.access.server_public),
        )
        for prefix in (f"order.{OTHER}.", "trade.", "gateway.pong"):
            raw.subscribe(prefix.encode())
        try:
            wait_for(lambda: desk.ping(publish=True) and raw.poll(50), what="the raw subscription to go live")
            while raw.poll(0):
                raw.recv_multipart()  # the pongs
            placed = {}
            for round_ in range(3):  # interleave the two accounts so each stream sees gaps
                placed[ACCOUNT, round_] = buy(trader_a, ACCOUNT).order_id
                placed[OTHER, round_] = buy(trader_b, OTHER).order_id
            log_desk.wait("trade", count=6)
            log_a.wait("trade", count=3)
            log_b.wait("trade", count=3)
            for log, mine in ((log_a, ACCOUNT), (log_b, OTHER)):
                # Every event of its account that the desk saw, this key gets too (the gaps are
                # recovered); the desk may be ahead, so wait for them.
                desk_seqs = {e.seq for e in log_desk.events if e.account_id == mine and e.seq is not None}
                wait_for(lambda log=log, desk_seqs=desk_seqs: desk_seqs <= {e.seq for e in log.events},
                         what=f"{mine}'s events that the desk saw")
            got: list[list[bytes]] = []  # the raw SUB's messages: at least trader-a's three trades
            deadline = time.monotonic() + 5.0
            while len(got) < 100 and time.monotonic() < deadline:
                if raw.poll(50):
                    got.append(raw.recv_multipart())
                elif sum(frames[0].startswith(b"trade.") for frames in got) >= 3:
                    break
        finally:
            raw.close()
    for log, mine, theirs in ((log_a, ACCOUNT, OTHER), (log_b, OTHER, ACCOUNT)):
        numbered = [e for e in log.events if e.seq is not None]
        assert numbered and all(e.account_id == mine for e in numbered), "an event of another account"
        assert [e.seq for e in numbered] == sorted({e.seq for e in numbered})  # in order, once each
        assert {e.data.order_id for e in log.of("trade")} == {placed[mine, r] for r in range(3)}
        assert not any(e.account_id == theirs for e in log.events)
    topics = [frames[0].decode() for frames in got if frames[0] != b"gateway.pong"]  # pongs may come late
    assert len(topics) == 3, "the raw subscriber with trader-a's key saw its own trades, and only those"
    assert all(t.startswith(f"trade.{ACCOUNT}.") for t in topics), topics


# -- revocation --------------------------------------------------------------------------


def test_revoking_a_key_drops_its_live_connections(connect: Any, keys_dir: Path) -> None:
    trader_a, trader_b, desk = connect("trader-a"), connect("trader-b", timeout=1.0), connect("desk")
    with subscribed_log(trader_b) as log_b, subscribed_log(desk) as log_desk:
        assert buy(trader_b, OTHER).order_id > 0
        log_b.wait("trade")
        revoke_client_key(keys_dir, "trader-b")
        result = desk.reload()
        assert result.revoked == ["trader-b"] and result.dropping_connections
        assert "trader-b" not in result.admitted and "trader-a" in result.admitted
        # The revoked key: its commands go unanswered...
        wait_for(lambda: not _answers(trader_b.ping), timeout=5.0, what="the revoked key to be cut off")
        seen = len(log_b.events)
        # ...and while B's events flow on to the desk, none reach it.
        # The same client order id on every try: a reply lost to the drop never orders twice.
        response = wait_for(lambda: _answers(lambda: buy(desk, OTHER, client_order_id="after-revoke")), timeout=5.0)
        trade = log_desk.wait("trade", order_id=response.order_id)[0]
        wait_for(lambda: desk.ping(publish=True) and any(e.type == "gateway.pong" and e.ts > trade.ts
                                                         for e in log_desk.events), what="a pong after the trade")
        assert len(log_b.events) == seen
        with pytest.raises(GatewayTimeout):
            trader_b.query_stock_asset(OTHER)
        # Everyone else reconnects by themselves and is served.
        wait_for(lambda: _answers(trader_a.ping), timeout=5.0, what="trader-a to reconnect")
        assert buy(trader_a, ACCOUNT).order_id > 0


def _answers(call: Callable[[], Any]) -> Any:
    """The result, or None if the key is refused (before the drop) or cut off (after it)."""
    try:
        return call()
    except GatewayTimeout:
        return None
    except GatewayError as exc:
        if exc.code != "permission_denied":
            raise
        return None


def test_a_reload_that_takes_nothing_away_keeps_connections(connect: Any, keys_dir: Path, secure: Any) -> None:
    desk = connect("desk")
    with subscribed_log(desk) as log:
        new_client_key(keys_dir, "late", parse_accounts(ACCOUNT), parse_permissions("read"))
        result = desk.reload()
        assert "late" in result.admitted and result.revoked == [] and not result.dropping_connections
        assert connect("late").query_stock_asset(ACCOUNT).account_id == ACCOUNT  # admitted without a restart
        before = log.events[-1].ts  # the subscription lives on: a new pong arrives on it
        wait_for(lambda: desk.ping(publish=True) and any(e.type == "gateway.pong" and e.ts > before
                                                         for e in log.events), what="a pong after the reload")


def test_a_broken_key_file_on_reload_keeps_the_old_keys(connect: Any, keys_dir: Path) -> None:
    desk = connect("desk")
    (keys_dir / "clients" / "junk.key").write_text("curve\n    public-key = \"short\"\n")
    with pytest.raises(GatewayError) as failed:
        desk.reload()
    assert failed.value.code == "invalid_argument" and "junk.key" in failed.value.message
    assert connect("trader-a").query_stock_asset(ACCOUNT).account_id == ACCOUNT


def test_commands_are_authorised_by_key_not_by_routing_id(secure: Any, keys_dir: Path) -> None:
    """A reader that picks the desk's routing id is still a reader."""
    public, secret = zmq.auth.load_certificate(keys_dir / "private" / "reader-a.key_secret")
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.linger = 0
    dealer.curve_publickey, dealer.curve_secretkey, dealer.curve_serverkey = public, secret, secure.access.server_public
    dealer.routing_id = b"desk"
    dealer.connect(secure.router_endpoint)
    try:
        order = {"account_id": ACCOUNT, "stock_code": "600000.SH", "order_type": 23, "order_volume": 200,
                 "price_type": 11, "price": 10.6}
        dealer.send(encode_request(7, "order_stock", order))
        assert dealer.poll(5000)
        reply = msgpack.unpackb(dealer.recv(), raw=False)
        assert reply["ok"] is False and reply["error"]["code"] == "permission_denied" and reply["id"] == 7
    finally:
        dealer.close()


def test_the_async_client_uses_keys_from_the_environment(
    secure: Any, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from adapter.client import AsyncClient

    monkeypatch.setenv("QMT_ADAPTER_CLIENT_KEY", str(keys_dir / "private" / "trader-a.key_secret"))
    monkeypatch.setenv("QMT_ADAPTER_SERVER_KEY", str(keys_dir / "server.key"))

    async def scenario() -> None:
        async with AsyncClient(secure.router_endpoint, secure.pub_endpoint, timeout=5.0) as client:
            assert client.uses_curve
            stream = client.events()
            assert await stream.wait_subscribed(5.0)
            response = await client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.60, "aio", "")
            with pytest.raises(GatewayError) as denied:
                await client.query_stock_asset(OTHER)
            assert denied.value.code == "permission_denied"
            for _ in range(50):  # bounded: the order's events come within a few
                event = await stream.receive(5.0)
                assert event is not None and event.account_id in (ACCOUNT, None)
                if event.type == "trade":
                    assert event.data.order_id == response.order_id
                    break
            else:
                pytest.fail("no trade event")
            stream.close()

    asyncio.run(scenario())
