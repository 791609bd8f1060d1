"""The market desk without sockets: leases, reference counts, per-key bounds, time-outs."""

from __future__ import annotations

import threading
from typing import Any

from adapter.config import load_config
from adapter.keys import ClientKey
from adapter.protocol import errors, ops, unpack
from adapter.server.desk import Refuse, Reply
from adapter.server.quotes import MARKET_CODES, MarketAnswer, MarketDesk, PackedReply



class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeSource:
    def __init__(self, block: threading.Event | None = None) -> None:
        self.changes: list[tuple[str, str, str]] = []
        self.block = block
        self.lock = threading.Lock()

    def call(self, op: str, args: dict[str, Any], progress: Any) -> Any:
        if self.block is not None:
            self.block.wait(5)
        if op == "get_full_tick":
            if "999999.SH" in args["code_list"]:
                raise ValueError("stock_list: unknown code '999999.SH'")
            return {code: {"lastPrice": 10.5} for code in args["code_list"]}
        raise RuntimeError("boom")

    def subscribe(self, code: str, period: str) -> None:
        with self.lock:
            self.changes.append(("subscribe", code, period))

    def unsubscribe(self, code: str, period: str) -> None:
        with self.lock:
            self.changes.append(("unsubscribe", code, period))

    def latest_bars(self, codes: list[str], period: str) -> list[Any]:
        return []

    def watch(self, sink: Any) -> None:
        pass

    def close(self) -> None:
        pass


def make(**settings: Any) -> tuple[MarketDesk, FakeSource, Clock, list[Any]]:
    posted: list[Any] = []
    clock = Clock()
    desk = MarketDesk(load_config(None, **settings), posted.append, clock)
    source = FakeSource(settings.pop("block", None) if "block" in settings else None)
    desk.attach(source, None)
    return desk, source, clock, posted


def command(desk: MarketDesk, op: str, key: ClientKey, **raw: Any) -> list[Any]:
    spec = ops.OPS[op]
    return desk.on_command([key.name.encode()], 7, spec, ops.validate_args(spec, raw), key)


def key(name: str) -> ClientKey:
    return ClientKey(name, "", None, frozenset({"quote"}))


def settle(desk: MarketDesk, source: FakeSource, count: int) -> None:
    desk._workers.shutdown(wait=True)  # the fake source's changes run on the workers
    assert len(source.changes) == count, source.changes


def test_a_code_is_subscribed_at_the_source_once_and_released_with_its_last_lease() -> None:
    desk, source, _clock, _ = make()
    a = command(desk, "subscribe_quote", key("a"), stock_code="600000.SH", period="tick")[0]
    b = command(desk, "subscribe_quote", key("b"), stock_code="600000.SH", period="tick")[0]
    assert isinstance(a, Reply) and isinstance(b, Reply) and a.result["seq"] != b.result["seq"]
    assert desk.refs == {("600000.SH", "tick"): 2}
    command(desk, "unsubscribe_quote", key("a"), seq=a.result["seq"])
    assert desk.refs == {("600000.SH", "tick"): 1}
    command(desk, "unsubscribe_quote", key("b"), seq=b.result["seq"])
    assert desk.refs == {}
    settle(desk, source, 2)
    assert source.changes == [("subscribe", "600000.SH", "tick"), ("unsubscribe", "600000.SH", "tick")]


def test_another_connections_seq_is_neither_renewed_nor_ended() -> None:
    desk, _source, _clock, _ = make()
    seq = command(desk, "subscribe_quote", key("a"), stock_code="600000.SH")[0].result["seq"]
    assert command(desk, "unsubscribe_quote", key("b"), seq=seq)[0].result is None
    assert desk.refs == {("600000.SH", "1d"): 1}
    assert command(desk, "renew_quotes", key("b"), seqs=[seq])[0].result == {"unknown": [seq]}
    # the same key on another connection (two local clients share the key "local")
    other = desk.on_command([b"elsewhere"], 8, ops.OPS["renew_quotes"], {"seqs": [seq]}, key("a"))[0]
    assert other.result == {"unknown": [seq]}


def test_a_new_start_numbers_its_subscriptions_apart_from_the_last() -> None:
    first, _, _, _ = make()
    second, _, _, _ = make()
    seqs = [desk.on_command([b"c"], 1, ops.OPS["subscribe_quote"], ops.validate_args(
        ops.OPS["subscribe_quote"], {"stock_code": "600000.SH"}), key("a"))[0].result["seq"] for desk in (first, second)]
    assert seqs[0] != seqs[1]


def test_leases_run_out_unless_renewed() -> None:
    desk, source, clock, _ = make(quote_lease=10.0)
    kept = command(desk, "subscribe_quote", key("a"), stock_code="600000.SH", period="tick")[0].result["seq"]
    lost = command(desk, "subscribe_whole_quote", key("a"), code_list=["SZ"])[0].result["seq"]
    clock.now += 8
    assert command(desk, "renew_quotes", key("a"), seqs=[kept])[0].result == {"unknown": []}
    clock.now += 3
    assert desk.next_wake() is not None and desk.next_wake() <= clock.now
    assert desk.on_tick(clock.now) == []
    assert set(desk.leases) == {kept}
    assert command(desk, "renew_quotes", key("a"), seqs=[kept, lost])[0].result == {"unknown": [lost]}
    settle(desk, source, 3)
    assert ("unsubscribe", "SZ", "tick") in source.changes


def test_a_key_holds_at_most_max_quote_codes() -> None:
    desk, _source, _clock, _ = make(max_quote_codes=MARKET_CODES + 1)
    assert isinstance(command(desk, "subscribe_whole_quote", key("a"), code_list=["SH"])[0], Reply)
    assert isinstance(command(desk, "subscribe_quote", key("a"), stock_code="600000.SH")[0], Reply)
    refused = command(desk, "subscribe_quote", key("a"), stock_code="600036.SH")[0]
    assert isinstance(refused, Refuse) and refused.code == errors.TOO_MANY_REQUESTS
    assert "max_quote_codes" in refused.message
    assert isinstance(command(desk, "subscribe_quote", key("b"), stock_code="600036.SH")[0], Reply)


def test_the_reconnected_source_gets_every_held_subscription_again() -> None:
    desk, source, _clock, _ = make()
    command(desk, "subscribe_quote", key("a"), stock_code="600000.SH", period="1m")
    command(desk, "subscribe_whole_quote", key("b"), code_list=["SH", "000001.SZ"])
    desk.resubscribe()
    settle(desk, source, 6)
    assert sorted(source.changes[3:]) == sorted(source.changes[:3])


def test_answers_come_back_packed_and_errors_name_the_problem() -> None:
    desk, _source, _clock, posted = make()
    assert command(desk, "get_full_tick", key("a"), code_list=["600000.SH"]) == []
    assert command(desk, "get_full_tick", key("a"), code_list=["999999.SH"]) == []
    desk._workers.shutdown(wait=True)
    ok, bad = (desk.on_answer(answer)[0] for answer in posted)
    assert isinstance(ok, PackedReply) and unpack(ok.packed) == {"600000.SH": {"lastPrice": 10.5}}
    assert isinstance(bad, Refuse) and bad.code == errors.INVALID_ARGUMENT and "999999.SH" in bad.message


def test_a_source_that_does_not_answer_times_out_and_its_late_answer_is_dropped() -> None:
    desk, _source, clock, posted = make(market_timeout=2.0)
    command(desk, "get_full_tick", key("a"), code_list=["600000.SH"])
    clock.now += 2.5
    refused = desk.on_tick(clock.now)
    assert len(refused) == 1 and refused[0].code == errors.BROKER_TIMEOUT and refused[0].request_id == 7
    desk._workers.shutdown(wait=True)
    assert [desk.on_answer(answer) for answer in posted] == [[]]


def test_the_queue_is_bounded_and_oversized_bar_requests_are_refused_before_any_work() -> None:
    block = threading.Event()
    desk, _source, _clock, posted = make(market_queue=2)
    desk.source = FakeSource(block)
    try:
        for _ in range(2):
            assert command(desk, "get_full_tick", key("a"), code_list=["600000.SH"]) == []
        refused = command(desk, "get_full_tick", key("a"), code_list=["600000.SH"])[0]
        assert isinstance(refused, Refuse) and refused.code == errors.TOO_MANY_REQUESTS
    finally:
        block.set()
    huge = command(desk, "get_market_data_ex", key("a"), stock_list=["600000.SH"] * 5000, period="1m", count=10_000)
    assert isinstance(huge[0], Refuse) and huge[0].code == errors.INVALID_ARGUMENT and "values" in huge[0].message


def test_stopping_refuses_what_waits() -> None:
    block = threading.Event()
    desk, _source, _clock, _ = make()
    desk.source = FakeSource(block)
    command(desk, "get_full_tick", key("a"), code_list=["600000.SH"])
    refusals = desk.stop()
    block.set()
    assert [r.code for r in refusals] == [errors.BROKER_UNAVAILABLE]
