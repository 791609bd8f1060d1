"""The NATS bridge (`qmt-adapter bridge`, PROTOCOL §18) against a real nats-server and gateways
over the sim: events into JetStream once each, in seq order; commands through NATS."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from adapter.client import Client
from adapter.client.records import parse_event
from adapter.nats import subjects
from adapter.protocol import PROTOCOL_VERSION, event_topic, pack, unpack

from ..conftest import ACCOUNT, subscribed_log, wait_filled, wait_for
from ..support.nats import BridgeProcess, NatsServer, gateway_seqs, run, stream_events

STREAM_WAIT = 30.0  # seconds for the stream to catch up; generous on a loaded machine


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def wait_stream_holds(url: str, gateway: str, last_seq: int, what: str = "", **connect: Any) -> list[Any]:
    """The stream's messages once it holds this gateway's seq ``last_seq``."""
    found: list[Any] = []

    def caught_up() -> bool:
        try:
            found[:] = stream_events(url, **connect)
        except Exception:  # noqa: BLE001 - a server restarting or a cluster electing: read again
            return False
        seqs = [seq for _, seq in gateway_seqs(found, gateway)]
        return bool(seqs) and max(seqs) >= last_seq

    wait_for(caught_up, timeout=STREAM_WAIT, interval=0.2, what=what or f"{gateway}'s seq {last_seq} in the stream")
    return found


def assert_once_in_order(messages: list[Any], gateway: str, last_seq: int, first_seq: int = 1) -> None:
    """Every seq from ``first_seq`` on, once and in order, up to ``last_seq`` at least (events the
    gateway made after ``last_seq`` was read may follow, held to the same rule)."""
    seqs = gateway_seqs(messages, gateway)
    assert len({epoch for epoch, _ in seqs}) == 1
    numbers = [seq for _, seq in seqs]
    assert numbers and numbers[-1] >= last_seq, f"the stream ends at {numbers[-1:]} before {last_seq}"
    assert numbers == list(range(first_seq, numbers[-1] + 1))


def test_events_reach_the_stream_with_their_subjects_headers_and_the_pub_payload(
    gateway_factory: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    gateway = gateway_factory()
    bridge = BridgeProcess(tmp_path, nats_server.url, gateway.router_endpoint, gateway.pub_endpoint, "gw1").start()
    try:
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client, \
                subscribed_log(client) as log:
            order_id = client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70).order_id
            wait_filled(log, order_id)
            info = client.ping()
            messages = wait_stream_holds(nats_server.url, "gw1", info.last_seq)
            assert_once_in_order(messages, "gw1", info.last_seq)
            published = {event.seq: event for event in log.events if event.seq is not None}
            checked = 0
            for message in messages:
                body = unpack(message.data, max_size=len(message.data))
                topic = event_topic(body["type"], body.get("account_id"))
                event = parse_event([topic.encode(), message.data])
                assert message.subject == subjects.event_subject(event.type, event.account_id, "gw1")
                assert message.headers[subjects.MSG_ID] == subjects.msg_id(info.epoch, event.seq)
                assert message.headers[subjects.EPOCH] == info.epoch == event.epoch
                assert message.headers[subjects.SEQ] == str(event.seq)
                assert message.headers[subjects.GATEWAY] == "gw1"
                if event.seq in published:
                    assert event == published[event.seq]
                    checked += 1
            assert checked >= 3  # at least the order's own events came by the PUB too
            trade_subject = subjects.event_subject("trade", ACCOUNT, "gw1")
            assert any(m.subject == trade_subject for m in messages)
            assert any(m.subject.startswith(f"qmt.evt._gw.gw1.") for m in messages)
    finally:
        bridge.stop()


def _burst(router: str, pub: str, stop: threading.Event, placed: list[str]) -> None:
    with Client(router, pub, timeout=20.0) as client:
        for index in range(2000):  # bounded; stopped by the test long before
            if stop.is_set():
                return
            coid = f"burst-{index}"
            client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70, client_order_id=coid)
            placed.append(coid)


def test_a_bridge_killed_mid_burst_and_restarted_leaves_every_seq_once_in_order(
    gateway_factory: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    gateway = gateway_factory()
    router, pub = gateway.router_endpoint, gateway.pub_endpoint
    bridge = BridgeProcess(tmp_path, nats_server.url, router, pub, "gw1").start()
    stop, placed = threading.Event(), []
    sender = threading.Thread(target=_burst, args=(router, pub, stop, placed), daemon=True)
    try:
        with Client(router, pub, timeout=10.0) as client:
            sender.start()
            wait_for(lambda: len(placed) >= 30, timeout=STREAM_WAIT, interval=0.05, what="the burst to start")
            # Killed once it has published part of the burst, while orders keep coming.
            wait_stream_holds(nats_server.url, "gw1", client.ping().last_seq // 2)
            bridge.kill()
            wait_for(lambda: len(placed) >= 80, timeout=STREAM_WAIT, interval=0.05, what="more of the burst")
            bridge.start()
            wait_for(lambda: len(placed) >= 120, timeout=STREAM_WAIT, interval=0.05, what="the burst to go on")
            stop.set()
            sender.join(30)
            assert not sender.is_alive()
            last = client.ping().last_seq
            messages = wait_stream_holds(nats_server.url, "gw1", last)
            assert_once_in_order(messages, "gw1", last)
            assert "resuming after seq" in bridge.log()
    finally:
        stop.set()
        bridge.stop()


async def _requests(url: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    import nats
    from nats.errors import NoRespondersError

    nc = await nats.connect(url, connect_timeout=5)
    answers: list[Any] = []
    try:
        for index, (subject, request) in enumerate(calls):
            payload = pack({"v": PROTOCOL_VERSION, "id": index + 1, **request})
            started = time.monotonic()
            try:
                reply = await nc.request(subject, payload, timeout=10.0)
                answers.append(unpack(reply.data))
            except NoRespondersError:
                answers.append(("no responders", time.monotonic() - started))
    finally:
        await nc.close()
    return answers


def test_commands_through_nats_reach_the_gateway_and_unserved_or_mismatched_accounts_fail(
    gateway_factory: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    gateway = gateway_factory()
    bridge = BridgeProcess(tmp_path, nats_server.url, gateway.router_endpoint, gateway.pub_endpoint, "gw1").start()
    try:
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
            wait_stream_holds(nats_server.url, "gw1", client.ping().last_seq, "the bridge to start")
        asset = {"op": "query_stock_asset", "account_id": ACCOUNT}
        order = {"op": "order_stock", "account_id": ACCOUNT, "stock_code": "600000.SH", "order_type": 23,
                 "order_volume": 100, "price_type": 11, "price": 10.70, "client_order_id": "nats-1"}
        answers = run(_requests(nats_server.url, [
            (subjects.gateway_command_subject("gw1"), {"op": "ping"}),
            (subjects.command_subject(ACCOUNT), asset),
            (subjects.command_subject(ACCOUNT), order),
            (subjects.command_subject(ACCOUNT), order),  # a retry: the ledger answers, no second order
            (subjects.command_subject("9999999999"), {"op": "query_stock_asset", "account_id": "9999999999"}),
            (subjects.command_subject(ACCOUNT), {"op": "query_stock_asset", "account_id": "9999999999"}),
            (subjects.gateway_command_subject("gw1"), asset),
        ]))
        ping, asset_reply, first, retry, unserved, mismatched, account_on_gateway = answers
        assert ping["ok"] is True and ping["id"] == 1 and ping["result"]["accounts"] == [ACCOUNT]
        assert asset_reply["ok"] is True and asset_reply["result"]["account_id"] == ACCOUNT
        assert first["ok"] is True and retry["ok"] is True
        assert first["result"]["order_id"] == retry["result"]["order_id"] > 0
        assert unserved[0] == "no responders" and unserved[1] < 5.0
        assert mismatched["ok"] is False and mismatched["error"]["code"] == "wrong_subject"
        assert "9999999999" in mismatched["error"]["message"] and mismatched["id"] == 6
        assert account_on_gateway["ok"] is False and account_on_gateway["error"]["code"] == "wrong_subject"
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
            assert len(client.query_stock_orders(ACCOUNT)) == 1  # the retry placed nothing
    finally:
        bridge.stop()


def test_a_bridge_started_before_nats_waits_for_it_and_then_publishes(gateway_factory: Any, tmp_path: Path) -> None:
    """A bridge service may start before its leaf node or cluster: it keeps trying, and once NATS is
    there every event of the gateway reaches the stream."""
    gateway = gateway_factory()
    router, pub = gateway.router_endpoint, gateway.pub_endpoint
    server = NatsServer(tmp_path)  # its port chosen, not started yet
    bridge = BridgeProcess(tmp_path, server.url, router, pub, "gw1").start()
    try:
        wait_for(lambda: "NATS:" in bridge.log(), timeout=STREAM_WAIT, interval=0.1,
                 what="the bridge to report NATS missing")
        assert bridge.proc is not None and bridge.proc.poll() is None  # still running, not exited
        server.start()
        with Client(router, pub, timeout=10.0) as client:
            with subscribed_log(client) as log:
                wait_filled(log, client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70).order_id)
            last = client.ping().last_seq
        assert_once_in_order(wait_stream_holds(server.url, "gw1", last), "gw1", last)
    finally:
        bridge.stop()
        server.stop()


def test_with_tls_the_bridge_and_a_strategy_verify_the_server_and_a_client_without_the_ca_gets_nothing(
    gateway_factory: Any, tmp_path: Path
) -> None:
    """NATS over TLS (docs/topology.md): the bridge (--tls-ca) and a strategy's client (nats_tls_ca)
    verify the server's certificate and trade; a client that cannot verify it sends nothing."""
    import ssl

    import trustme

    from adapter.client import GatewayTimeout

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    issued.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    server = NatsServer(tmp_path, auth=f'tls {{ cert_file: "{cert_file.as_posix()}", key_file: "{key_file.as_posix()}" }}')
    server.start()
    gateway = gateway_factory()
    bridge = BridgeProcess(tmp_path, server.url, gateway.router_endpoint, gateway.pub_endpoint, "gw1",
                           "--tls-ca", str(ca_file)).start()
    try:
        with Client(nats=server.url, nats_tls_ca=str(ca_file), timeout=10.0) as client:
            reply = wait_for(lambda: _order_through(client), timeout=STREAM_WAIT, interval=0.2,
                             what="an order through NATS over TLS")
            assert reply.order_id > 0
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as direct:
            last = direct.ping().last_seq
        verified = ssl.create_default_context(cafile=str(ca_file))
        assert_once_in_order(wait_stream_holds(server.url, "gw1", last, tls=verified), "gw1", last)
        with Client(nats=server.url, timeout=2.0) as stranger:  # the system's CAs only: the handshake fails
            with pytest.raises(GatewayTimeout) as refused:
                stranger.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70, client_order_id="never")
            assert refused.value.sent is False
    finally:
        bridge.stop()
        server.stop()


def _order_through(client: Client) -> Any:
    from adapter.client import GatewayError, GatewayTimeout

    try:
        return client.order_stock(ACCOUNT, "600000.SH", 23, 100, 11, 10.70, client_order_id="tls-1")
    except (GatewayTimeout, GatewayError):  # the bridge still connecting: the same id again is safe
        return None


def test_a_bridge_stops_on_sigterm_while_nats_and_its_gateway_are_away(gateway_factory: Any, tmp_path: Path) -> None:
    """A service manager stopping the bridge while its NATS and its gateway are down (a host
    shutting down) gets it stopped, not a process that goes on reconnecting."""
    import signal
    import subprocess

    gateway = gateway_factory()
    server = NatsServer(tmp_path).start()
    bridge = BridgeProcess(tmp_path, server.url, gateway.router_endpoint, gateway.pub_endpoint, "gw1").start()
    try:
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=10.0) as client:
            wait_stream_holds(server.url, "gw1", client.ping().last_seq)
        server.stop()
        gateway.stop()
        wait_for(lambda: "NATS connection lost" in bridge.log(), timeout=STREAM_WAIT, interval=0.1,
                 what="the bridge to notice NATS gone")
        assert bridge.proc is not None
        bridge.proc.send_signal(signal.SIGTERM)
        try:
            bridge.proc.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail("the bridge did not stop within 15 s of SIGTERM while NATS was away:\n" + bridge.log()[-2000:])
    finally:
        bridge.kill()
        server.stop()
