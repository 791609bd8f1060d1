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

from ..conftest import ACCOUNT, raw_dealer, wait_for
from ..support.market import market

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
    st.one_of(st.sampled_from(FUZZED_OPS), st.text(max_size=20), scalars),
    st.integers(min_value=0, max_value=2**40),
    st.dictionaries(names, structures, max_size=8),
)
# A valid value for every argument. Targeted envelopes start from an op's valid arguments and
# spoil one or two of them, so every argument's own checks are reached (and, unspoiled, the
# counter), where random envelopes rarely get past the first argument.
VALID = {
    "account_id": ACCOUNT, "account_type": "STOCK", "stock_code": "600000.SH", "order_type": 23, "order_volume": 100,
    "price_type": 11, "price": 10.6, "strategy_name": "fuzz", "order_remark": "", "client_order_id": None,
    "intentional": False, "order_id": 1, "market": "SH", "sysid": "1", "publish": False, "from_seq": 1, "to_seq": None,
    "prefixes": [], "limit": 10, "cancel_open": False, "reason": "", "cancelable_only": False,
    # market data (PROTOCOL §16)
    "code_list": ["600000.SH"], "stock_list": ["600000.SH"], "field_list": [], "period": "1d", "start_time": "",
    "end_time": "", "count": 5, "dividend_type": "none", "fill_data": True, "iscomplete": False,
    "sector_name": "沪深A股", "incrementally": None, "task": "", "seq": 1, "seqs": [1],
    # the simulator's controls (PROTOCOL §17): status changes nothing; spoiled, it reaches the others' checks
    "action": "status", "percent": 1.0, "amount": 100.0, "volume": 100,
}
# Ops whose valid arguments are a few of their parameters (each sim action takes only its own).
VALID_ARGS = {"sim": {"action": "status"}}
plausible = st.one_of(  # values a little off the right ones
    st.sampled_from([ACCOUNT, "1000000366", "600000.SH", "000001.SZ", "600000", "SH", "SZ", "buy", "sell", "limit",
                     "latest", "STOCK", "CREDIT", "order.", "trade.", "", "x" * 300, "dup-1", "bad id!"]),
    st.integers(min_value=-2, max_value=120),
    st.sampled_from([23, 24, 11, 5, 47, 100, 200, 2**63, 2**64 - 1, 1.0, 100.0, 10.6, 10.555, 0.0, -1.0, 1e300,
                     float("nan"), float("inf")]),
    st.booleans(), st.none(),
    st.lists(st.sampled_from(["order.", "trade.", "", "x" * 300]), max_size=3),
)
_DROP = object()


def _spoiled(op: str) -> st.SearchStrategy[dict[Any, Any]]:
    """The op's valid arguments (a third of the time), else with one or two dropped, replaced
    by odd or hostile values, or an unknown one added."""
    params = [p.name for p in ops.OPS[op].all_params]
    valid = VALID_ARGS.get(op) or {name: VALID[name] for name in params}
    changes = st.lists(st.tuples(st.sampled_from(params + ["x"]), st.one_of(st.just(_DROP), plausible, structures)),
                       min_size=1, max_size=2)
    spoiled = changes.map(lambda pairs: {k: v for k, v in {**valid, **dict(pairs)}.items() if v is not _DROP})
    return st.one_of(st.just(valid), spoiled, spoiled)


targeted = st.sampled_from(FUZZED_OPS).flatmap(
    lambda op: st.builds(lambda request_id, args: {"v": 1, "id": request_id, "op": op, **args},
                         st.integers(min_value=0, max_value=2**40), _spoiled(op))
)
inputs = st.one_of(
    st.binary(max_size=300),  # random bytes
    structures.map(lambda value: msgpack.packb(value, use_bin_type=True)),  # random msgpack
    envelopes.map(lambda body: msgpack.packb(body, use_bin_type=True)),  # envelopes with hostile values
    targeted.map(lambda body: msgpack.packb(body, use_bin_type=True)),  # valid arguments, one or two spoiled
)
# Inputs go in batches, sent back to back before the replies are read (as a pipelining client
# does): generating one batch costs hypothesis far less than as many single examples, and the
# round trips overlap. 200 batches of 12 to 24 are about 3,000 inputs. Traced line by line, they
# reach every line of adapter/ (client aside) that the 10,000 single random inputs this test used
# to send reached, and about 600 more (the targeted envelopes get to the counter); 150 batches
# missed a few replay lines.
BATCH = 24
BATCHES = 200


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


@pytest.mark.timeout(300)  # ~15-25 s on an idle machine; two suites on two busy cores take several times that
def test_every_generated_input_gets_a_reply_and_the_gateway_stays_up(
    live: Any, dealer: zmq.Socket, bystander: Bystander
) -> None:
    seen: set[str | None] = set()  # the outcomes reached (None: ok)
    dealer.rcvtimeo = 15_000  # valid orders wait for the counter (broker_timeout 5 s); room for a busy machine

    @settings(max_examples=BATCHES, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batch=st.lists(inputs, min_size=BATCH // 2, max_size=BATCH))
    def send(batch: list[bytes]) -> None:
        for payload in batch:
            dealer.send(payload)
        for _ in batch:
            frames = dealer.recv_multipart()  # a reply for every input (in any order)
            reply = msgpack.unpackb(frames[-1], raw=False)  # (an empty frame counts as a REQ delimiter and is mirrored)
            assert reply["v"] == 1 and isinstance(reply["ok"], bool)
            if not reply["ok"]:
                assert reply["error"]["code"] in ERROR_CODES and reply["error"]["message"], reply
            seen.add(None if reply["ok"] else reply["error"]["code"])

    send()
    # The inputs got past the decoder into every kind of check, and to the counter.
    assert {None, "invalid_message", "invalid_request", "unknown_op", "unsupported_version", "missing_argument",
            "invalid_argument", "unknown_argument"} <= seen, seen
    dealer.send(msgpack.packb({"v": 1, "id": "last", "op": "ping"}))
    reply = msgpack.unpackb(dealer.recv_multipart()[-1], raw=False)
    assert reply["id"] == "last" and reply["ok"]  # no input had a second, late reply


def test_the_gateway_is_intact_after_the_fuzzing(live: Any, bystander: Bystander) -> None:
    with Client(live.router_endpoint, live.pub_endpoint, timeout=5.0) as client:
        # The fuzzing's *_async orders were answered at once; the counter may still be working on them.
        info = wait_for(lambda: (lambda i: i if i.pending <= 1 else None)(client.ping()), timeout=15.0,
                        what="the counter to finish the fuzzing's work")  # at most the bystander's call then
        assert info.connected and info.journal_errors == 0
        order = client.order_stock(ACCOUNT, "600000.SH", "buy", 100, "limit", 10.70, client_order_id="after-fuzz")
        assert order.order_id > 0


def test_a_flooding_client_does_not_starve_a_normal_one(gateway_factory: Any) -> None:
    gateway = gateway_factory(max_inflight_per_client=50)
    market(gateway).set_order_latency(0.5)  # the flood piles up at the counter
    context = zmq.Context()
    flood = context.socket(zmq.DEALER)
    flood.linger = 0
    flood.sndhwm = 0
    flood.connect(gateway.router_endpoint)
    query = msgpack.packb({"v": 1, "id": 0, "op": "query_stock_orders", "account_id": ACCOUNT})
    junk = b"\xc1" * 100
    stop = threading.Event()
    sent = [0]

    def spray() -> None:  # until the normal client is done (bounded: 60 s, 500,000 messages)
        deadline = time.monotonic() + 60.0
        while not stop.is_set() and time.monotonic() < deadline and sent[0] < 500_000:
            for _ in range(100):  # never reads its replies
                flood.send(query if sent[0] % 2 else junk)
                sent[0] += 1

    sprayer = threading.Thread(target=spray)
    sprayer.start()
    try:
        wait_for(lambda: sent[0] > 1000, what="the flood to start")
        with Client(gateway.router_endpoint, gateway.pub_endpoint, timeout=5.0) as normal:
            for _ in range(20):  # each answered within the client's time-out, flood or not
                assert normal.ping().connected
                assert normal.query_stock_asset(ACCOUNT).cash > 0
            info = normal.ping()
            assert info.pending <= 50 + 1  # the flood's in-flight work stays bounded
            assert sprayer.is_alive()  # the flood went on all the while
    finally:
        stop.set()
        sprayer.join(10)
        flood.close()
        context.term()
    assert sent[0] > 1000
