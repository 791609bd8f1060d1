"""Pure parts of the client's market data: where the quote PUB is, xtdata's frames and time labels."""

from __future__ import annotations

from adapter.client import Record, to_frames
from adapter.client._market import time_string
from adapter.client.quotes import quote_endpoint

PUB = "tcp://gateway.example:5556"


def test_the_quote_pub_is_the_one_ping_reports_with_a_wildcard_host_made_reachable() -> None:
    assert quote_endpoint(Record(quote_pub="tcp://127.0.0.1:6001"), PUB) == "tcp://127.0.0.1:6001"
    for wildcard in ("tcp://*:6001", "tcp://0.0.0.0:6001"):
        assert quote_endpoint(Record(quote_pub=wildcard), PUB) == "tcp://gateway.example:6001"
    assert quote_endpoint(Record(), PUB) == "tcp://gateway.example:5557"  # a gateway that does not say
    assert quote_endpoint(None, "ipc:///tmp/pub") == "ipc:///tmp/pub"


def test_time_labels_are_xtdatas_in_china_time() -> None:
    midnight = 1704124800000  # 2024-01-02 00:00 China time (16:00 UTC the day before)
    assert time_string(midnight, "1d") == "20240102"
    assert time_string(midnight + 9.5 * 3600 * 1000, "1m") == "20240102093000"
    assert time_string(midnight + 9.5 * 3600 * 1000 + 3000, "tick") == "20240102093003"


def test_frames_follow_field_list_and_leave_time_out_unless_asked() -> None:
    import pandas as pd  # installed with exchange-calendars, a dependency: never skipped
    day = 86_400_000
    answer = {"600000.SH": {"time": [1704124800000, 1704124800000 + day], "open": [1.0, 2.0], "close": [1.5, 2.5],
                            "volume": [10, 20]}, "000001.SZ": {"time": [], "open": [], "close": [], "volume": []}}
    frames = to_frames(answer, "1d")
    assert list(frames["600000.SH"].columns) == ["time", "open", "close", "volume"]
    assert list(frames["600000.SH"].index) == ["20240102", "20240103"]
    assert frames["000001.SZ"].empty and list(frames["000001.SZ"].columns) == ["time", "open", "close", "volume"]
    picked = to_frames(answer, "1d", ["close", "open"])["600000.SH"]
    assert list(picked.columns) == ["close", "open"] and list(picked["close"]) == [1.5, 2.5]
    with_time = to_frames(answer, "1d", ["close", "time"])["600000.SH"]
    assert list(with_time.columns) == ["close", "time"]
    assert isinstance(frames["600000.SH"], pd.DataFrame)
