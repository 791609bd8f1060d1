"""The compatible trader's pieces that need no gateway: endpoints, records, the fallbacks."""

from __future__ import annotations

import importlib

import pytest

from adapter.compat import trader, xttypes


def test_endpoints_come_from_a_zeromq_path_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QMT_ADAPTER_ROUTER", raising=False)
    monkeypatch.delenv("QMT_ADAPTER_PUB", raising=False)
    assert trader.endpoints(r"D:\QMT\userdata_mini") == ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556")
    assert trader.endpoints("tcp://10.0.0.5:7000") == ("tcp://10.0.0.5:7000", "tcp://10.0.0.5:7001")
    monkeypatch.setenv("QMT_ADAPTER_ROUTER", "tcp://[::1]:6000")
    monkeypatch.setenv("QMT_ADAPTER_PUB", "tcp://[::1]:6100")
    assert trader.endpoints("userdata_mini") == ("tcp://[::1]:6000", "tcp://[::1]:6100")


def test_records_are_xtquants_own_classes() -> None:
    from xtquant.xttype import XtOrder

    order = xttypes.make("XtOrder", {"order_id": 7, "stock_code": "600000.SH", "client_order_id": "c1"})
    assert isinstance(order, XtOrder) and order.order_id == 7 and order.stock_code == "600000.SH"
    info = xttypes.make("XtAccountInfo", {"account_id": "1"})  # no such xttype class: a look-alike
    assert type(info).__name__ == "XtAccountInfo" and info.account_id == "1" and "account_id='1'" in repr(info)


def test_without_xtquant_a_stock_account_and_look_alikes_are_provided(monkeypatch: pytest.MonkeyPatch) -> None:
    import adapter.xtimport

    def missing() -> None:
        raise ImportError("no xtquant here")

    monkeypatch.setattr(adapter.xtimport, "import_xtquant", missing)
    import adapter.compat as compat

    account = compat._stock_account()("1000000365")
    assert (account.account_id, account.account_type) == ("1000000365", 2)
    credit = compat._stock_account()("1000000365", "credit")
    assert credit.account_type == 3
    with pytest.raises(TypeError):
        compat._stock_account()(1000000365)
    importlib.reload(xttypes)  # forget the cached classes of this test
    order = xttypes.make("XtOrder", {"order_id": 1})
    assert type(order).__module__ == "adapter.compat.xttypes" and order.order_id == 1
    importlib.reload(xttypes)


def test_every_gateway_refusal_has_a_documented_error_id() -> None:
    from pathlib import Path

    from adapter.client import GatewayError, GatewayTimeout
    from adapter.protocol import errors

    protocol = (Path(__file__).resolve().parents[2] / "proto" / "PROTOCOL.md").read_text(encoding="utf-8")
    section = protocol.split("## 15.", 1)[1]
    for code in errors.ALL_CODES:
        error_id, message = trader.refusal(GatewayError(code, "why"))
        assert error_id < 0 and message == f"[{code}] why"
        if code in trader.GATEWAY_ERROR_IDS:
            assert f"| {error_id} | " in section and f"`{code}`" in section, code
    denied = GatewayError("risk_denied", "too big", details={"rule": "order.max_volume"})
    assert trader.refusal(denied) == (-1004, "[risk_denied: order.max_volume] too big")
    assert trader.refusal(GatewayTimeout("no connection", sent=False))[0] == trader.UNREACHABLE
    assert trader.refusal(GatewayTimeout("no reply", sent=True))[0] == -1007
    assert trader.refusal(GatewayError("broker_error", "x"))[0] == trader.OTHER_GATEWAY_ERROR
