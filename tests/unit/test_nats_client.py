"""The NATS client's parts that need no server: routing, decoding, the exactly-once gate, options."""

from __future__ import annotations

import time

import pytest

from adapter.client import AsyncClient, Client, GatewayError
from adapter.nats import subjects
from adapter.nats.client import (
    GATEWAY_UNKNOWN,
    NO_RESPONDERS,
    AsyncNatsClient,
    Directory,
    EventGate,
    Liveness,
    NatsClient,
    NatsSettings,
    client_liveness,
    command_route,
    decode_message,
    watched_gateways,
)
from adapter.client import LIVENESS_EVENT
from adapter.client.records import EventFormatError
from adapter.protocol import errors, pack


def event_payload(seq: int, event_type: str = "order", account: str | None = "111", epoch: str = "e1") -> bytes:
    return pack({"v": 1, "seq": seq, "ts": 1, "type": event_type, "account_id": account,
                 "data": {"order_id": seq}, "epoch": epoch})


def health(gateway: str, *accounts: str, connected: bool = True) -> bytes:
    return pack({"gateway": gateway, "accounts": list(accounts), "router": "tcp://x:1", "last_seq": 0,
                 "epoch": "e", "connected": connected, "ts": 0})


def test_no_responders_is_the_protocol_code() -> None:
    assert NO_RESPONDERS == getattr(errors, "NO_RESPONDERS", NO_RESPONDERS) == "no_responders"


def test_an_op_with_an_account_goes_to_the_account_subject() -> None:
    route = command_route("order_stock", {"account_id": "111", "stock_code": "600000.SH"}, None, Directory())
    assert route == subjects.command_subject("111") == "qmt.cmd.111"


def test_an_account_that_cannot_be_a_subject_token_is_refused_naming_it() -> None:
    with pytest.raises(GatewayError) as caught:
        command_route("query_stock_asset", {"account_id": "1.1"}, None, Directory())
    assert caught.value.code == "invalid_argument" and "'1.1'" in caught.value.message


def test_an_op_without_an_account_goes_to_the_one_gateway() -> None:
    directory = Directory()
    assert command_route("ping", {}, "gw-a", directory) == "qmt.cmd._gw.gw-a"
    directory.on_health(health("gw-b", "222"))
    assert command_route("ping", {}, None, directory) == "qmt.cmd._gw.gw-b"


def test_several_gateways_need_gateway_named_in_the_error() -> None:
    directory = Directory()
    directory.on_health(health("gw-a", "111"))
    directory.on_health(health("gw-b", "222"))
    with pytest.raises(GatewayError) as caught:
        command_route("journal_info", {}, None, directory)
    assert caught.value.code == GATEWAY_UNKNOWN
    assert "gateway=" in caught.value.message and "gw-a, gw-b" in caught.value.message
    assert directory.accounts() == ["111", "222"] and directory.gateways_of(["222"]) == ["gw-b"]


def test_no_gateway_heard_is_no_responders() -> None:
    with pytest.raises(GatewayError) as caught:
        command_route("ping", {}, None, Directory())
    assert caught.value.code == NO_RESPONDERS and "bridge" in caught.value.message


def test_unreadable_health_is_ignored() -> None:
    directory = Directory()
    directory.on_health(b"\xc1")
    directory.on_health(pack({"no": "gateway"}))
    assert directory.gateways == {}


def test_an_account_event_decodes_as_over_zeromq() -> None:
    subject = subjects.event_subject("order", "111", "gw-a")
    gateway, event = decode_message(subject, {subjects.GATEWAY: "gw-a"}, event_payload(7))
    assert gateway == "gw-a"
    assert (event.topic, event.seq, event.type, event.account_id, event.epoch) == ("order.111.", 7, "order", "111", "e1")
    assert event.data.order_id == 7


def test_a_gateway_event_decodes_with_its_dotted_type() -> None:
    subject = subjects.event_subject("gateway.connection", None, "gw-a")
    gateway, event = decode_message(subject, {}, event_payload(3, "gateway.connection", None))
    assert gateway == "gw-a" and event.topic == "gateway.connection" and event.account_id is None


@pytest.mark.parametrize("subject", ["qmt.cmd.111", "qmt.evt.111", "qmt.evt._gw.gw"])
def test_other_subjects_are_not_events(subject: str) -> None:
    with pytest.raises(EventFormatError):
        decode_message(subject, {subjects.GATEWAY: "gw"}, event_payload(1))


def test_an_account_event_without_the_gateway_header_is_refused() -> None:
    with pytest.raises(EventFormatError, match="Qmt-Gateway"):
        decode_message("qmt.evt.111.order", {}, event_payload(1))


def _event(seq: int, epoch: str = "e1", event_type: str = "order") -> object:
    return decode_message(subjects.event_subject(event_type, "111", "g"), {subjects.GATEWAY: "g"},
                          event_payload(seq, event_type, "111", epoch))[1]


def test_the_gate_drops_repeats_per_gateway_and_epoch() -> None:
    gate = EventGate()
    taken = [seq for seq in (1, 2, 2, 1, 3) if gate.admit("g", _event(seq))]  # type: ignore[arg-type]
    assert taken == [1, 2, 3] and gate.duplicates == 2
    assert gate.admit("h", _event(1))  # type: ignore[arg-type]  # another gateway's seq 1
    assert gate.admit("g", _event(1, "e2"))  # type: ignore[arg-type]  # a new epoch starts over
    assert gate.positions == {"g": ("e2", 1), "h": ("e1", 1)}


def test_the_gate_starts_at_from_seq_and_filters_prefixes() -> None:
    gate = EventGate(["trade."], from_seq={"g": 3})
    results = [gate.admit("g", _event(seq, event_type=kind))  # type: ignore[arg-type]
               for seq, kind in ((1, "trade"), (2, "order"), (3, "order"), (4, "trade"))]
    assert results == [False, False, False, True]
    assert gate.positions == {"g": ("e1", 4)} and gate.last_seq == 4


def test_settings_take_a_list_of_servers_and_refuse_unknown_options() -> None:
    settings = NatsSettings.make("nats://a:4222, nats://b:4222", nats_user="u", nats_password="p",
                                 accounts="111", gateway="gw")
    assert settings.servers == ("nats://a:4222", "nats://b:4222") and settings.accounts == ("111",)
    options = settings.connect_options()
    assert options["user"] == "u" and options["password"] == "p" and options["servers"] == list(settings.servers)
    with pytest.raises(TypeError, match="nats_pasword"):
        NatsSettings.make("nats://a:4222", nats_pasword="p")
    with pytest.raises(ValueError, match="gateway"):
        NatsSettings.make("nats://a:4222", gateway="a.b")


def test_client_with_nats_is_the_nats_client_and_zeromq_stays_as_it_is() -> None:
    with Client(nats="nats://127.0.0.1:1", timeout=1.0) as client:
        assert isinstance(client, NatsClient) and isinstance(client, Client)
        assert "nats://127.0.0.1:1" in repr(client)
    with Client("tcp://127.0.0.1:1", "tcp://127.0.0.1:2") as plain:
        assert type(plain) is Client
    assert isinstance(AsyncClient(nats="nats://127.0.0.1:1"), AsyncNatsClient)


def test_no_nats_server_is_a_timeout_not_sent() -> None:
    from adapter.client import GatewayTimeout

    with Client(nats="nats://127.0.0.1:1", timeout=1.0) as client:
        with pytest.raises(GatewayTimeout) as caught:
            client.ping()
    assert caught.value.sent is False and "NATS" in caught.value.message


def test_state_file_is_refused_over_nats_pointing_to_durable() -> None:
    with Client(nats="nats://127.0.0.1:1", timeout=1.0) as client:
        with pytest.raises(ValueError, match="durable"):
            client.events(state_file="x.json")


def test_a_stream_watches_the_gateways_of_its_filters() -> None:
    directory = Directory()
    directory.on_health(health("gw-a", "111"), now=0.0)
    directory.on_health(health("gw-b", "222"), now=0.0)
    filters = (subjects.account_events("111"), subjects.gateway_events("gw-c"))
    assert watched_gateways(filters, directory) == ["gw-c", "gw-a"]


def test_liveness_notices_when_a_gateway_falls_silent_and_is_heard_again() -> None:
    directory = Directory()
    liveness = Liveness(directory, None)
    liveness.filters = (subjects.account_events("111"),)
    gate = EventGate()
    assert liveness.check(gate, now=0.0) == [] and liveness.alive is None  # nobody heard yet
    directory.on_health(health("gw-a", "111"), now=0.0)
    assert liveness.check(gate, now=1.0) == [] and liveness.alive is True  # heard from the start: no notice
    assert liveness.check(gate, now=2.9) == []
    gone = liveness.check(gate, now=3.5)
    assert [(n.type, n.seq, n.data["alive"], n.data["gateway"], n.data["silent_for"]) for n in gone] == \
        [(LIVENESS_EVENT, None, False, "gw-a", 3.5)]
    assert liveness.alive is False and liveness.check(gate, now=10.0) == []  # said once
    directory.on_health(health("gw-a", "111"), now=11.0)
    back = liveness.check(gate, now=11.0)
    assert [(n.data["alive"], n.data["silent_for"]) for n in back] == [(True, 0.0)] and liveness.alive is True


def test_a_bridge_saying_not_connected_is_a_gateway_gone() -> None:
    directory = Directory()
    liveness = Liveness(directory, None)
    liveness.filters = (subjects.account_events("111"),)
    directory.on_health(health("gw-a", "111"), now=0.0)
    liveness.check(EventGate(), now=0.0)
    directory.on_health(health("gw-a", "111", connected=False), now=1.0)
    gone = liveness.check(EventGate(), now=1.0)
    assert [n.data["alive"] for n in gone] == [False] and liveness.alive is False


def test_liveness_timeout_sets_the_silence_and_zero_turns_it_off() -> None:
    directory = Directory()
    directory.on_health(health("gw-a", "111"), now=time.monotonic() - 5.0)
    settings = NatsSettings.make("nats://127.0.0.1:1")
    assert client_liveness(directory, settings, None) is False  # 5 s > the default 3 s
    assert client_liveness(directory, settings, 10.0) is True
    assert client_liveness(directory, settings, 0) is None
    assert client_liveness(directory, NatsSettings.make("nats://127.0.0.1:1", gateway="gw-x"), None) is None
    off = Liveness(directory, 0)
    off.filters = (subjects.account_events("111"),)
    assert off.check(EventGate()) == [] and off.alive is None
