"""One client cannot take the gateway's memory (PROTOCOL §5): replay pages in flight, whole
command messages and subscriptions are bounded per client, and a bystander keeps being served."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from adapter.client import Client
from adapter.monitors import close_monitor
from adapter.server.journal import Journal
from adapter.protocol import encode_event, encode_request

from ..conftest import ACCOUNT, raw_dealer, subscribed_log, wait_for

PAD = "x" * 1000  # a 1 KB event: a 1 MiB page holds about a thousand


def _journal_of(directory: Path, count: int) -> None:
    """A journal of ``count`` 1 KB events, written before the gateway starts."""
    journal = Journal(directory)
    rows = []
    for seq in range(1, count + 1):
        data = {"account_type": 2, "account_id": ACCOUNT, "order_id": seq, "market": "SH", "order_sysid": "",
                "error_id": -1, "error_msg": PAD, "seq": seq}
        topic, payload = encode_event(seq, time.time_ns(), "cancel_error", ACCOUNT, data, journal.epoch)
        rows.append((seq, time.time_ns(), topic.decode(), payload))
    journal.append(rows)
    journal.close()


def _replies(socket: zmq.Socket, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    replies = []
    while len(replies) < count and time.monotonic() < deadline:
        if socket.poll(200):
            replies.append(msgpack.unpackb(socket.recv(), raw=False))
    return replies


def test_unread_replays_are_bounded_in_bytes_and_a_bystander_is_served(gateway_factory: Any, tmp_path: Path) -> None:
    _journal_of(tmp_path, 4000)  # 4 MiB of history: every replay(from 1) fills a whole page
    budget = 3 << 20
    gateway = gateway_factory(data_dir=str(tmp_path), replay_client_bytes=budget, replay_total_bytes=8 << 20)
    with raw_dealer(gateway.router_endpoint) as hog, \
            Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as bystander:
        for n in range(150):  # the reported scenario, not read until the end
            hog.send(encode_request(n, "replay", {"from_seq": 1, "limit": 10_000}))
        wait_for(lambda: gateway.bounds.replay.refused >= 140, timeout=30.0, what="the hog's replays refused")
        assert bystander.ping().connected  # served while the hog's pages sit unread
        in_flight = gateway.bounds.replay.in_flight(b"") or gateway.bounds.replay.total
        assert in_flight <= budget + (1 << 20) + 65536  # the budget and one page, at most
        replies = _replies(hog, 150)
    assert len(replies) == 150, "every request is answered"
    pages = [r for r in replies if r["ok"]]
    refused = [r for r in replies if not r["ok"]]
    assert 1 <= len(pages) <= 4 and len(refused) == 150 - len(pages)
    assert sum(len(msgpack.packb(r)) for r in pages) <= budget + (1 << 20) + 65536
    assert {r["error"]["code"] for r in refused} == {"too_many_requests"}
    assert "replay_client_bytes" in refused[0]["error"]["message"]
    assert bystander_ping_bounds(gateway)["replays_refused"] == len(refused)


def bystander_ping_bounds(gateway: Any) -> dict[str, int]:
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as client:
        return dict(client.ping().bounds)


def test_a_reader_that_continues_is_never_refused(gateway_factory: Any, tmp_path: Path) -> None:
    _journal_of(tmp_path, 4000)
    gateway = gateway_factory(data_dir=str(tmp_path), replay_client_bytes=1 << 20)  # one page
    with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as client:
        from_seq, seen = 1, 0
        for _ in range(100):  # bounded: a page holds about a thousand
            page = client.replay(from_seq, limit=10_000)
            seen += len(page.events)
            from_seq = page.next_seq
            if not page.more:
                break
        assert seen >= 4000  # and the events of the start-up
        assert client.ping().bounds["replays_refused"] == 0


def test_a_message_of_many_frames_gets_one_named_error(gateway: Any, client: Any) -> None:
    with raw_dealer(gateway.router_endpoint) as raw:
        frame = b"y" * 1024
        raw.send_multipart([encode_request(1, "ping", {})] + [frame] * 4000)
        reply = msgpack.unpackb(raw.recv(), raw=False)
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_message"
        assert "4002 frames" in reply["error"]["message"] and "bound of 4 frames" in reply["error"]["message"]
        raw.send(encode_request(2, "ping", {}))  # the same connection is served on
        assert msgpack.unpackb(raw.recv(), raw=False)["ok"]
    assert client.ping().bounds["messages_refused"] == 1


def test_extra_payload_frames_keep_their_own_error(gateway: Any) -> None:
    with raw_dealer(gateway.router_endpoint) as raw:
        ping = encode_request(1, "ping", {})
        raw.send_multipart([ping, ping])
        assert "got 2" in msgpack.unpackb(raw.recv(), raw=False)["error"]["message"]


def _sub(context: zmq.Context, endpoint: str) -> zmq.Socket:
    sub = context.socket(zmq.SUB)
    sub.linger = 0
    sub.connect(endpoint)
    return sub


def test_subscriptions_that_can_match_nothing_are_refused_and_counted(gateway: Any, client: Any) -> None:
    context = zmq.Context()
    try:
        sub = _sub(context, gateway.pub_endpoint)
        for prefix in (b"nothing.", b"order.999.", b"order." + ACCOUNT.encode() + b".x"):
            sub.subscribe(prefix)
        sub.subscribe(b"gateway.pong")
        wait_for(lambda: client.ping().bounds["subscriptions_refused"] == 3, what="three refusals")
        # The useful one was granted: a pong reaches this subscriber.
        wait_for(lambda: client.ping(publish=True) and sub.poll(50), timeout=5.0, what="a pong")
        assert sub.recv_multipart()[0] == b"gateway.pong"
    finally:
        context.destroy(linger=0)


def test_a_prefix_longer_than_the_cap_drops_only_its_sender(gateway: Any, client: Any) -> None:
    context = zmq.Context()
    try:
        monitor_sub = _sub(context, gateway.pub_endpoint)
        monitor = monitor_sub.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            monitor_sub.subscribe(b"order." + b"z" * gateway.bounds.subscriptions.frame_cap)
            assert monitor.poll(5000), "libzmq drops the subscriber that sent a prefix over the cap"
            with subscribed_log(client) as log:  # a bystander subscribes and is served
                assert log.of("gateway.pong")
        finally:
            close_monitor(monitor_sub, monitor)  # it is cut off again at each reconnect: events go on
    finally:
        context.destroy(linger=0)


def test_too_many_subscriptions_cut_the_subscribers_off_and_bystanders_come_back(gateway_factory: Any) -> None:
    gateway = gateway_factory(max_subscriptions=50)
    context = zmq.Context()
    try:
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as bystander, \
                subscribed_log(bystander) as log:
            hog = _sub(context, gateway.pub_endpoint)
            for n in range(200):  # distinct prefixes; libzmq keeps each until the connection ends
                hog.subscribe(f"order.{n}".encode())
            wait_for(lambda: bystander.ping().bounds["subscribers_cut_off"] >= 1, what="the cut-off")
            log.events.clear()
            # The bystander's SUB reconnects and subscribes again by itself.
            wait_for(lambda: bystander.ping(publish=True) and log.of("gateway.pong"), timeout=10.0, interval=0.05,
                     what="the bystander's events after the cut-off")
    finally:
        context.destroy(linger=0)


@pytest.mark.parametrize("setting", [{"max_subscription_bytes": 10}, {"replay_hold": 0.0}, {"max_subscriptions": 0}])
def test_bad_bound_settings_are_refused(setting: dict[str, Any]) -> None:
    from adapter.config import ConfigError, load_config

    with pytest.raises(ConfigError):
        load_config(None, **setting)
