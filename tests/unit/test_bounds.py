"""The bounds' bookkeeping (adapter/server/bounds.py), without sockets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapter.server.bounds import MIN_PAGE_CHARGE, ReplayBudget, SubscriptionBounds, receive, topics

ACCOUNT = "1000000365"


def test_only_prefixes_of_publishable_topics_are_useful() -> None:
    bounds = SubscriptionBounds([ACCOUNT], max_bytes=64, max_count=10)
    assert f"order.{ACCOUNT}." in topics([ACCOUNT]) and "gateway.heartbeat" in topics([ACCOUNT])
    for prefix in ("", "o", "order.", f"order.{ACCOUNT}", f"order.{ACCOUNT}.", "gateway.", "gateway.pong"):
        assert bounds.useful(prefix), prefix
    for prefix in ("x", "order.999.", f"order.{ACCOUNT}.x", "gateway.pong.", "gateway.pongs"):
        assert not bounds.useful(prefix), prefix


def test_refused_prefixes_are_counted_and_never_granted() -> None:
    bounds = SubscriptionBounds([ACCOUNT], max_bytes=32, max_count=10)
    assert bounds.request(None, True, b"order.", now=1.0) == bounds.GRANT
    assert bounds.request(None, True, b"nothing", now=1.0) == bounds.REFUSE
    assert bounds.request(None, True, b"order." + b"1" * 40, now=1.0) == bounds.REFUSE
    assert bounds.refused == 2 and bounds.held(None) == 3  # libzmq keeps refused ones too
    assert bounds.grantable(bounds.GRANT, True, ["order.", "order.999."]) == ["order."]
    assert bounds.grantable(bounds.REFUSE, True, ["order."]) == []
    assert bounds.request(None, False, b"nothing", now=1.0) == bounds.GRANT  # a cancel frees its place
    assert bounds.held(None) == 2


def test_past_the_count_a_key_is_cut_off_and_suspended() -> None:
    bounds = SubscriptionBounds([ACCOUNT], max_bytes=64, max_count=3)
    for prefix in (b"a", b"b", b"c", b"a"):  # a repeat is not a new prefix
        assert bounds.request("KEY", True, prefix, now=1.0) != bounds.CUT_OFF
    assert bounds.request("OTHER", True, b"order.", now=1.0) == bounds.GRANT  # counted per key
    assert bounds.request("KEY", True, b"d", now=1.0) == bounds.CUT_OFF
    assert bounds.cut_offs == 1 and bounds.held("KEY") == 0
    assert bounds.request("KEY", True, b"order.", now=2.0) == bounds.REFUSE  # suspended
    assert bounds.request("KEY", True, b"order.", now=1.0 + bounds.cut_off_seconds) == bounds.GRANT
    bounds.reset()
    assert bounds.held("OTHER") == 0


@dataclass
class _Frame:
    bytes: bytes
    more: bool

    @property
    def buffer(self) -> memoryview:
        return memoryview(self.bytes)


class _Socket:
    def __init__(self, frames: list[bytes]) -> None:
        self.frames = [_Frame(f, n < len(frames) - 1) for n, f in enumerate(frames)]
        self.copied = 0

    def recv(self, flags: int = 0, copy: bool = True) -> Any:
        assert not copy, "frames are read without a copy"
        return self.frames.pop(0)


def test_a_message_within_the_bounds_is_kept_whole() -> None:
    message = receive(_Socket([b"id", b"", b"payload"]), max_bytes=100)
    assert message.frames == [b"id", b"", b"payload"] and not message.refusal and message.count == 3


def test_a_message_over_the_frame_or_byte_bound_keeps_only_its_address() -> None:
    socket = _Socket([b"id"] + [b"x" * 10] * 5000)
    message = receive(socket, max_bytes=1000)
    assert not socket.frames, "the whole message is read off the socket"
    assert message.frames == [b"id"] and message.count == 5001 and message.size == 50002
    assert "5001 frames" in message.refusal and "4 frames and 1000 bytes" in message.refusal
    big = receive(_Socket([b"id", b"", b"y" * 2000]), max_bytes=1000)
    assert big.frames == [b"id", b""] and "2002 bytes" in big.refusal  # a REQ client's delimiter kept


def test_replay_pages_count_until_continued_or_held_long_enough() -> None:
    budget = ReplayBudget(client_bytes=3 * MIN_PAGE_CHARGE, total_bytes=5 * MIN_PAGE_CHARGE, hold=10.0)
    for n in range(3):
        assert budget.check(b"a", 1, now=0.0) == ""
        budget.charge(b"a", 101, 100, now=0.0)  # charged at least MIN_PAGE_CHARGE
    assert "replay_client_bytes" in budget.check(b"a", 1, now=1.0) and budget.refused == 1
    assert budget.check(b"a", 101, now=1.0) == ""  # continuing from next_seq releases the pages
    assert budget.in_flight(b"a") == 0 and budget.total == 0
    for client in (b"a", b"b", b"c", b"d", b"e"):
        budget.charge(client, 50, MIN_PAGE_CHARGE, now=2.0)
    assert "replay_total_bytes" in budget.check(b"f", 1, now=3.0)
    assert budget.check(b"f", 1, now=12.5) == "" and budget.total == 0  # held long enough
