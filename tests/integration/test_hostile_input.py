"""Hostile input never hurts: generated garbage, hostile values and floods against a live gateway,
while a normal client keeps being served."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from adapter.client import Client
from adapter.config import SimConfig
from adapter.protocol import ops

from ..conftest import ACCOUNT, raw_dealer

ERROR_CODES = {
    "invalid_message", "invalid_request", "unsupported_version", "unknown_op", "missing_argument",
    "invalid_argument", "unknown_argument", "unknown_account", "duplicate_client_order_id",
    "too_many_requests", "seq_expired", "outcome_unknown", "order_not_placed",
}

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack can carry
scalars = st.one_of(
    st.none(), st.booleans(), ints,
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.binary(max_size=40),
)
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.one_of(st.text(max_size=12), ints), inner, max_size=6)),
    max_leaves=12,
)
names = st.sampled_from(sorted({p.name for spec in ops.OPS.values() for p in spec.all_params} | {"id", "v", "op", "x"}))
# The kill switch ops are valid commands with a real, lasting effect (halting trading), not
# hostile input: fuzzing them would only test that the switch works. test_risk.py does that.
FUZZED_OPS = sorted(set(ops.OPS) - {"halt", "reduce_only"})
envelopes = st.builds(
    lambda op, request_id, args: {"v": 1, "id": request_id, "op": op, **args},
    st.one_of(st.sampled_from(FUZZED_OPS), st.text(max_size=20)),
    st.integers(min_value=0, max_value=2**40),
    st.dictionaries(names, structures, max_size=8),
)
inputs = st.one_of(
    st.binary(max_size=300),  # random bytes
    structures.map(lambda value: msgpack.packb(value, use_bin_type=True)),  # random msgpack
    envelopes.map(lambda body: msgpack.packb(body, use_bin_type=True)),  # envelopes with hostile values
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from adapter.server import Gateway

    from ..conftest import make_config

    gateway = Gateway(make_config(SimConfig(cash=1e12), data_dir=str(tmp_path_factory.mktemp("fuzz")), broker_timeout=5.0))
    gateway.start()
    yield gateway
    gateway.stop()


class Bystander:
    """A normal client pinging and querying throughout; records anything that went wrong."""

    def __init__(self, gateway: Any) -> None:
        self.failures: list[str] = []
        self.calls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(gateway,), daemon=True)
        self._thread.start()

    def _run(self, gateway: Any) -> None:
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as client:
            while not self._stop.wait(0.01):
                try:
                    assert client.ping().connected
                    assert client.query_stock_asset(ACCOUNT).account_id == ACCOUNT
                    self.calls += 1
                except Exception as exc:  # recorded, asserted by the test
                    self.failures.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def dealer(live: Any) -> Iterator[zmq.Socket]:
    with raw_dealer(live.router_endpoint) as socket:
        yield socket


@pytest.fixture(scope="module")
def bystander(live: Any) -> Iterator[Bystander]:
    watcher = Bystander(live)
    yield watcher
    watcher.stop()
    assert not watcher.failures, watcher.failures[:5]
    assert watcher.calls > 0


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(payload=inputs)
def test_every_generated_input_gets_a_reply_and_the_gateway_stays_up(
    live: Any, dealer: zmq.Socket, bystander: Bystander, payload: bytes
) -> None:
    dealer.send(payload)
    frames = dealer.recv_multipart()  # a reply, within 5 s, for every input
    reply = msgpack.unpackb(frames[-1], raw=False)  # (an empty frame counts as a REQ delimiter and is mirrored)
    assert reply["v"] == 1 and isinstance(reply["ok"], bool)
    if not reply["ok"]:
        assert reply["error"]["code"] in ERROR_CODES and reply["error"]["message"], reply


def test_the_gateway_is_intact_after_the_fuzzing(live: Any, bystander: Bystander) -> None:
    with Client(live.router_endpoint, live.pub_endpoint, timeout=5.0) as client:
        info = client.ping()
        assert info.connected and info.pending <= 1 and info.journal_errors == 0  # at most the bystander's call
        order = client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.70, client_order_id="after-fuzz")
        assert order.order_id > 0


def test_a_flooding_client_does_not_starve_a_normal_one(gateway_factory: Any) -> None:
    gateway = gateway_factory(max_inflight_per_client=50)
    gateway.broker.counter.set_order_latency(0.5)  # the flood piles up at the counter
    context = zmq.Context()
    flood = context.socket(zmq.DEALER)
    flood.linger = 0
    flood.sndhwm = 0
    flood.connect(gateway.router_endpoint)
    query = msgpack.packb({"v": 1, "id": 0, "op": "query_stock_orders", "account_id": ACCOUNT})
    junk = b"\xc1" * 100
    stop = threading.Event()
    sent = [0]

    def spray() -> None:
        deadline = time.monotonic() + 3.0
        while not stop.is_set() and time.monotonic() < deadline and sent[0] < 200_000:
            for _ in range(100):  # never reads its replies
                flood.send(query if sent[0] % 2 else junk)
                sent[0] += 1

    sprayer = threading.Thread(target=spray)
    sprayer.start()
    try:
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as normal:
            answered = 0
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline and answered < 500:
                assert normal.ping().connected
                assert normal.query_stock_asset(ACCOUNT).cash > 0
                answered += 1
            assert answered > 10
            info = normal.ping()
            assert info.pending <= 50 + 1  # the flood's in-flight work stays bounded
    finally:
        stop.set()
        sprayer.join(10)
        flood.close()
        context.term()
    assert sent[0] > 1000
