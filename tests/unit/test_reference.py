"""Reference data on a QMT host never blocks the caller (the gateway's I/O thread): a code not
cached yet is fetched on a worker; a failure is remembered, not asked for on every order."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from adapter.server.reference import RETRY_AFTER, XtdataReference
from adapter.server.risk import ReferenceUnavailable

from ..conftest import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_slow_data_service_never_blocks_the_check() -> None:
    release = threading.Event()
    calls: list[str] = []

    def slow(code: str) -> Any:
        calls.append(code)
        assert release.wait(10), "the test never released the fetch"
        return {"PreClose": 10.6, "InstrumentName": "浦发银行"}

    reference = XtdataReference(slow)
    try:
        with pytest.raises(ReferenceUnavailable, match="being fetched"):
            reference("600000.SH")  # returns at once although the fetch hangs
        with pytest.raises(ReferenceUnavailable):
            reference("600000.SH")
        release.set()

        def loaded() -> Any:
            try:
                return reference("600000.SH")
            except ReferenceUnavailable:
                return None

        instrument = wait_for(loaded, 5.0, what="the fetched reference")
        assert instrument.name == "浦发银行" and float(instrument.prev_close) == 10.6
        assert calls == ["600000.SH"]  # one fetch for both checks
    finally:
        release.set()
        reference.close()


def test_a_failed_fetch_is_remembered_for_a_while() -> None:
    clock = Clock()
    calls: list[str] = []

    def broken(code: str) -> Any:
        calls.append(code)
        raise ConnectionError("no data service")

    reference = XtdataReference(broken, clock)
    try:
        with pytest.raises(ReferenceUnavailable):
            reference("000001.SZ")
        wait_for(lambda: reference._failed, 5.0, what="the failure to be recorded")
        for _ in range(20):
            with pytest.raises(ReferenceUnavailable, match="no data service"):
                reference("000001.SZ")
        assert calls == ["000001.SZ"]
        clock.now += RETRY_AFTER + 1
        with pytest.raises(ReferenceUnavailable, match="being fetched"):
            reference("000001.SZ")
        wait_for(lambda: len(calls) == 2, 5.0, what="a second attempt after the pause")
    finally:
        reference.close()
