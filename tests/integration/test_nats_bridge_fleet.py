"""Several gateways on one NATS (PROTOCOL §18, docs/topology.md): crashes of a gateway and of the
NATS server lose and double nothing; a strategy's NATS user reaches its account only; a 3-node
JetStream cluster keeps taking events when a node dies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from adapter.client import Client
from adapter.nats import subjects
from adapter.protocol import PROTOCOL_VERSION, pack, unpack

from ..conftest import ACCOUNT, subscribed_log, wait_filled, wait_for
from ..support.nats import BridgeProcess, GatewayServe, NatsServer, nats_cluster, run
from ..support.processes import pings
from .test_nats_bridge import assert_once_in_order, wait_stream_holds

ACCOUNTS = ("2000000001", "2000000002", "2000000003")


async def _orders(url: str, orders: list[tuple[str, str]], **connect: Any) -> list[dict[str, Any]]:
    """Place (account, client_order_id) through NATS, each retried until a bridge answers it, as a
    strategy does after a time-out (bounded: 60 tries per order)."""
    import nats
    from nats.errors import NoRespondersError, TimeoutError

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=-1, reconnect_time_wait=0.2, **connect)
    replies = []
    try:
        for account, coid in orders:
            payload = pack({"v": PROTOCOL_VERSION, "id": coid, "op": "order_stock", "account_id": account,
                            "stock_code": "600000.SH", "order_type": 23, "order_volume": 100, "price_type": 11,
                            "price": 10.70, "client_order_id": coid})
            for _ in range(60):
                try:
                    reply = unpack((await nc.request(subjects.command_subject(account), payload, timeout=5.0)).data)
                except (NoRespondersError, TimeoutError):
                    await asyncio.sleep(0.25)  # a bridge or gateway on its way back
                    continue
                if reply.get("ok") is False and reply["error"]["code"] in ("broker_unavailable", "outcome_unknown"):
                    await asyncio.sleep(0.25)
                    continue
                replies.append(reply)
                break
            else:
                raise AssertionError(f"order {coid} on {account}: no answer through NATS")
    finally:
        await nc.close()
    return replies


def stop_all(bridges: list[BridgeProcess], gateways: list[GatewayServe], server: NatsServer) -> None:
    for bridge in bridges:
        bridge.stop()
    for gateway in gateways:
        gateway.stop()
    server.stop()


def bridges_for(tmp_path: Path, server: NatsServer, gateways: list[GatewayServe]) -> list[BridgeProcess]:
    """Once every gateway answers, a bridge for each, named gw0, gw1, ..."""
    for gateway in gateways:
        with Client(gateway.router, gateway.pub, timeout=10.0) as client:
            wait_for(lambda: pings(client), timeout=30.0, interval=0.1, what=f"the gateway at {gateway.router}")
    return [BridgeProcess(tmp_path, server.url, g.router, g.pub, f"gw{i}").start() for i, g in enumerate(gateways)]


def test_three_gateways_survive_a_gateway_crash_and_a_nats_restart_with_every_event_once(tmp_path: Path) -> None:
    server = NatsServer(tmp_path).start()
    gateways = [GatewayServe(tmp_path / f"gw{i}", [account]).start() for i, account in enumerate(ACCOUNTS)]
    bridges: list[BridgeProcess] = []
    try:
        bridges = bridges_for(tmp_path, server, gateways)
        placed: list[tuple[str, str]] = []

        def trade(round_name: str) -> None:
            batch = [(account, f"{round_name}-{account}-{n}") for account in ACCOUNTS for n in range(3)]
            replies = run(_orders(server.url, batch))
            assert all(reply["ok"] is True for reply in replies), replies
            placed.extend(batch)

        trade("first")
        gateways[1].kill()  # kill -9, then the same data dir and ports
        gateways[1].start()
        trade("after-gateway-crash")
        server.restart()
        trade("after-nats-restart")
        for i, (gateway, account) in enumerate(zip(gateways, ACCOUNTS)):
            with Client(gateway.router, gateway.pub, timeout=10.0) as client:
                wait_for(lambda: pings(client), timeout=30.0, interval=0.1, what=f"gw{i} answering")
                last = client.ping().last_seq
                messages = wait_stream_holds(server.url, f"gw{i}", last)
                assert_once_in_order(messages, f"gw{i}", last)
                orders = client.query_stock_orders(account)
                assert len(orders) == len([coid for acc, coid in placed if acc == account]) == 9
            assert all(m.subject.startswith((f"qmt.evt.{account}.", f"qmt.evt._gw.gw{i}."))
                       for m in messages if m.headers["Qmt-Gateway"] == f"gw{i}")
    finally:
        stop_all(bridges, gateways, server)


AUTH = """authorization {
  users = [
    { user: "bridge", password: "bridge-pass" }
    { user: "strat-a", password: "a-pass", permissions: {
        publish: { allow: ["qmt.cmd.%(a)s", "$JS.API.INFO", "$JS.API.STREAM.INFO.QMT_EVENTS",
                           "$JS.API.CONSUMER.CREATE.QMT_EVENTS.*.qmt.evt.%(a)s.>",
                           "$JS.API.CONSUMER.MSG.NEXT.QMT_EVENTS.strat-a-own",
                           "$JS.API.CONSUMER.DELETE.QMT_EVENTS.strat-a-own"] }
        subscribe: { allow: ["_INBOX_strat_a.>"] } } }
  ]
}"""


async def _as_strategy(url: str, own: str, other: str) -> dict[str, Any]:
    import nats
    from nats.js import api

    violations: list[str] = []

    async def on_error(exc: Exception) -> None:
        violations.append(str(exc))

    nc = await nats.connect(url, user="strat-a", password="a-pass", inbox_prefix="_INBOX_strat_a",
                            error_cb=on_error, connect_timeout=5)
    seen: dict[str, Any] = {}
    try:
        ask = pack({"v": PROTOCOL_VERSION, "id": 1, "op": "query_stock_asset", "account_id": own})
        seen["own"] = unpack((await nc.request(subjects.command_subject(own), ask, timeout=10.0)).data)
        ask = pack({"v": PROTOCOL_VERSION, "id": 2, "op": "query_stock_asset", "account_id": other})
        try:
            await nc.request(subjects.command_subject(other), ask, timeout=2.0)
            seen["other"] = "answered"
        except Exception as exc:  # noqa: BLE001 - refused by the server: no answer comes
            seen["other"] = type(exc).__name__
        async def on_other(msg: Any) -> None:
            seen.setdefault("other_event", msg.subject)

        await nc.subscribe(subjects.account_events(other), cb=on_other)
        js = nc.jetstream(timeout=3.0)
        for account, name in ((own, "strat-a-own"), (other, "strat-a-other")):
            config = api.ConsumerConfig(name=name, filter_subject=subjects.account_events(account),
                                        ack_policy=api.AckPolicy.NONE, inactive_threshold=30.0)
            try:
                await js.add_consumer("QMT_EVENTS", config)
                pull = await js.pull_subscribe_bind(name, "QMT_EVENTS")
                seen[f"read-{account}"] = [m.subject for m in await pull.fetch(100, timeout=3.0)]
            except Exception as exc:  # noqa: BLE001
                seen[f"read-{account}"] = type(exc).__name__
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not any("qmt.evt." + other in v for v in violations):
            await asyncio.sleep(0.05)
        seen["violations"] = violations
    finally:
        await nc.close()
    return seen


def test_a_strategys_nats_user_reaches_its_own_account_only(gateway_factory: Any, tmp_path: Path) -> None:
    own, other = ACCOUNT, "2000000009"
    server = NatsServer(tmp_path, auth=AUTH % {"a": own}).start()
    gateway = gateway_factory(accounts=(own, other))
    bridge = BridgeProcess(tmp_path, server.url, gateway.router_endpoint, gateway.pub_endpoint, "gw1",
                           "--user", "bridge", "--password-file", str(_secret(tmp_path, "bridge-pass"))).start()
    try:
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client, \
                subscribed_log(client) as log:
            for account in (own, other):
                wait_filled(log, client.order_stock(account, "600000.SH", 23, 100, 11, 10.70).order_id)
            last = client.ping().last_seq
        wait_stream_holds(server.url, "gw1", last, user="bridge", password="bridge-pass")
        seen = run(_as_strategy(server.url, own, other))
        assert seen["own"]["ok"] is True and seen["own"]["result"]["account_id"] == own
        assert seen["other"] != "answered"
        assert "other_event" not in seen
        assert any(f"qmt.cmd.{other}" in v for v in seen["violations"]), seen["violations"]
        assert any(f"qmt.evt.{other}" in v for v in seen["violations"]), seen["violations"]
        assert isinstance(seen[f"read-{own}"], list) and seen[f"read-{own}"], seen["violations"]
        assert all(subject.startswith(f"qmt.evt.{own}.") for subject in seen[f"read-{own}"])
        assert not isinstance(seen[f"read-{other}"], list)  # the consumer on B was never made
    finally:
        bridge.stop()
        server.stop()


def _secret(root: Path, text: str) -> Path:
    path = root / "bridge.password"
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def test_a_three_node_cluster_with_replicas_3_keeps_taking_events_when_a_node_dies(
    gateway_factory: Any, tmp_path: Path
) -> None:
    nodes = nats_cluster(tmp_path)
    gateway = gateway_factory()
    urls = ",".join(node.url for node in nodes)
    bridge = BridgeProcess(tmp_path, urls, gateway.router_endpoint, gateway.pub_endpoint, "gw1",
                           "--replicas", "3").start()
    try:
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client, \
                subscribed_log(client) as log:
            wait_filled(log, client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70).order_id)
            wait_stream_holds(nodes[1].url, "gw1", client.ping().last_seq)
            info = run(_stream_info(nodes[1].url))
            assert info.config.num_replicas == 3
            nodes[0].kill()
            for _ in range(3):
                wait_filled(log, client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70).order_id)
            last = client.ping().last_seq
            messages = wait_stream_holds(nodes[1].url, "gw1", last)
            assert_once_in_order(messages, "gw1", last)
    finally:
        bridge.stop()
        for node in nodes:
            node.stop()


async def _stream_info(url: str) -> Any:
    import nats

    nc = await nats.connect(url, connect_timeout=5)
    try:
        return await nc.jetstream(timeout=5).stream_info("QMT_EVENTS")
    finally:
        await nc.close()


def test_four_strategies_trade_three_gateways_through_every_crash_and_each_order_is_placed_once(
    tmp_path: Path,
) -> None:
    """Four strategy clients (``Client(nats=...)``) place orders on all three accounts at once while a
    bridge is killed mid-burst, a gateway is killed, and the NATS server restarts; each retries
    with the same client_order_id, as a strategy does. Then every event of every gateway is in the
    stream once, in seq order, and every order is at its counter once."""
    import threading

    from adapter.client import GatewayError, GatewayTimeout
    from adapter.protocol import errors

    retry = {errors.NO_RESPONDERS, errors.BROKER_UNAVAILABLE, errors.BROKER_TIMEOUT, errors.OUTCOME_UNKNOWN,
             errors.TOO_MANY_REQUESTS}
    server = NatsServer(tmp_path).start()
    gateways = [GatewayServe(tmp_path / f"gw{i}", [account]).start() for i, account in enumerate(ACCOUNTS)]
    bridges: list[BridgeProcess] = []
    done: list[tuple[str, str]] = []  # (account, the client_order_id that was placed)
    failures: list[str] = []
    lock = threading.Lock()

    def strategy(number: int) -> None:
        with Client(nats=server.url, timeout=5.0) as client:
            for k in range(12):
                account = ACCOUNTS[(number + k) % len(ACCOUNTS)]
                coid = f"s{number}-{k}"
                for _ in range(120):  # bounded: about 30 s of retries per order
                    try:
                        client.order_stock(account, "600000.SH", "buy", 100, "limit", 10.70, f"s{number}", "",
                                           client_order_id=coid)
                        break
                    except GatewayTimeout:
                        time.sleep(0.25)
                    except GatewayError as exc:
                        if exc.code == errors.ORDER_NOT_PLACED:  # the crash came first: a new id, as the error says
                            coid += "-again"
                        elif exc.code not in retry:
                            with lock:
                                failures.append(f"{coid}: {exc.code}: {exc.message}")
                            return
                        time.sleep(0.25)
                else:
                    with lock:
                        failures.append(f"{coid}: no answer through every retry")
                    return
                with lock:
                    done.append((account, coid))

    try:
        bridges = bridges_for(tmp_path, server, gateways)
        threads = [threading.Thread(target=strategy, args=(n,), daemon=True) for n in range(4)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(done) >= 8, timeout=60.0, interval=0.02, what="the first orders")
        bridges[0].kill()  # kill -9 mid-burst
        bridges[0].start()
        wait_for(lambda: len(done) >= 20, timeout=60.0, interval=0.02, what="orders after the bridge crash")
        gateways[1].kill()  # kill -9, then the same data dir and ports
        gateways[1].start()
        wait_for(lambda: len(done) >= 30, timeout=60.0, interval=0.02, what="orders after the gateway crash")
        server.restart()
        for thread in threads:
            thread.join(90)
        assert not failures, failures
        assert not any(thread.is_alive() for thread in threads)
        assert len(done) == 4 * 12
        for i, (gateway, account) in enumerate(zip(gateways, ACCOUNTS)):
            with Client(gateway.router, gateway.pub, timeout=10.0) as client:
                wait_for(lambda: pings(client), timeout=30.0, interval=0.1, what=f"gw{i} answering")
                last = client.ping().last_seq
                assert_once_in_order(wait_stream_holds(server.url, f"gw{i}", last), f"gw{i}", last)
                at_counter = sorted(o.client_order_id for o in client.query_stock_orders(account))
            assert at_counter == sorted(coid for acc, coid in done if acc == account)  # each once, none lost
    finally:
        stop_all(bridges, gateways, server)
