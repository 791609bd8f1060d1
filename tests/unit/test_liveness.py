"""Gateway liveness in the stream core: silence after heartbeats is reported once, a message ends
it; no heartbeats, no verdict. A fake clock, no sockets."""

from __future__ import annotations

from typing import Any

from adapter.client._stream import LIVENESS_EVENT, MIN_SILENCE, StreamCore
from adapter.protocol import encode_event

EPOCH = "e1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def heartbeat(interval: float = 1.0, last_seq: int = 0) -> list[bytes]:
    return encode_event(None, 1, "gateway.heartbeat", None,
                        {"last_seq": last_seq, "connected": True, "interval": interval}, EPOCH)


def order(seq: int) -> list[bytes]:
    return encode_event(seq, 1, "order", "1", {"order_id": seq}, EPOCH)


def drain(core: StreamCore) -> list[Any]:
    out = []
    while (event := core.pop()) is not None:
        out.append((event.type, event.data.to_dict()) if event.type == LIVENESS_EVENT else event.seq)
        core.commit()
    return out


def test_silence_after_heartbeats_is_reported_once_and_a_message_ends_it() -> None:
    clock = Clock()
    core = StreamCore((), clock=clock)
    assert core.alive is None and core.next_check() is None
    core.feed(heartbeat(interval=1.0))
    assert core.alive is True and core.silence_limit() == MIN_SILENCE
    clock.now += MIN_SILENCE - 0.1
    assert core.check() is False and core.alive is True
    assert abs(core.next_check() - 0.1) < 1e-9
    clock.now += 0.2
    assert core.check() is True and core.alive is False
    assert core.check() is False  # said once
    notices = drain(core)
    assert notices[0][0] == LIVENESS_EVENT and notices[0][1]["alive"] is False
    assert notices[0][1]["silent_for"] >= MIN_SILENCE
    core.feed(order(1))
    assert core.alive is True
    assert [n[1]["alive"] if isinstance(n, tuple) else n for n in drain(core)] == [True, 1]


def test_the_limit_follows_the_heartbeat_interval() -> None:
    clock = Clock()
    core = StreamCore((), clock=clock)
    core.feed(heartbeat(interval=5.0))
    assert core.silence_limit() == 15.0
    clock.now += 14.0
    assert core.check() is False
    clock.now += 2.0
    assert core.check() is True


def test_without_heartbeats_there_is_no_verdict_unless_a_limit_is_given() -> None:
    clock = Clock()
    quiet = StreamCore((), clock=clock)
    quiet.feed(order(1))
    clock.now += 3600
    assert quiet.check() is False and quiet.alive is None
    off = StreamCore((), clock=clock, silence=0)
    off.feed(heartbeat())
    clock.now += 3600
    assert off.check() is False and off.next_check() is None
    explicit = StreamCore((), clock=clock, silence=0.5)
    explicit.feed(order(1))
    assert explicit.alive is True
    clock.now += 0.6
    assert explicit.check() is True and explicit.alive is False
