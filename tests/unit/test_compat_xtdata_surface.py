"""The remote xtdata module (adapter.compat.xtdata) against genuine xtquant.xtdata: the same
public names, parameters and defaults; what is not bridged raises NotImplementedError naming
itself; xtdata's pure helpers answer as genuine's.

Genuine xtdata loads the terminal's native datacenter at import; here it is loaded with that
one module stubbed (no function of it is called), and sys.modules is put back afterwards.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
import types
from typing import Any, Iterator

import pytest

from adapter.compat import xtdata as remote

# Backed by the gateway (or plain helpers that need no terminal): never NotImplementedError.
BRIDGED = {
    "connect", "reconnect", "disconnect", "get_client", "hello", "run",
    "get_full_tick", "get_market_data_ex", "gmd2", "get_market_data", "gmd", "get_local_data", "gld",
    "get_instrument_detail", "get_instrument_detail_list", "get_stock_list_in_sector", "gsl",
    "get_sector_list", "get_trading_dates", "download_history_data", "supply_history_data",
    "download_history_data2", "subscribe_quote", "subscribe_quote2", "subscribe_whole_quote",
    "unsubscribe_quote", "datetime_to_timetag", "timetag_to_datetime", "timetagToDateTime", "t2d", "try_except",
}
SUBMODULES = {"get_arrow", "get_bson", "meta_config"}  # genuine's metatable modules, not functions


@pytest.fixture(scope="module")
def genuine() -> Iterator[types.ModuleType]:
    from adapter.xtimport import import_xtquant

    package = import_xtquant()
    names = ("xtquant.xtdatacenter", "xtquant.xtdata")
    saved = {name: sys.modules.get(name) for name in names}
    saved_attrs = {name: getattr(package, name.split(".")[1], None) for name in names}
    stub = types.ModuleType("xtquant.xtdatacenter")
    stub.register_create_nparray = lambda create: None  # type: ignore[attr-defined]
    sys.modules["xtquant.xtdatacenter"] = stub
    sys.modules.pop("xtquant.xtdata", None)
    try:
        module = importlib.import_module("xtquant.xtdata")
    finally:
        for name in names:
            attr = name.split(".")[1]
            if saved[name] is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = saved[name]  # type: ignore[assignment]
            if saved_attrs[name] is None:
                if hasattr(package, attr):
                    delattr(package, attr)
            else:
                setattr(package, attr, saved_attrs[name])
    yield module


def public(module: types.ModuleType) -> dict[str, Any]:
    return {name: getattr(module, name) for name in dir(module)
            if not name.startswith("_") and name not in SUBMODULES and not inspect.ismodule(getattr(module, name))}


def parameters(obj: Any) -> list[tuple[str, Any, str]]:
    """(name, kind, default) of each parameter; nan defaults compared by repr."""
    signature = inspect.signature(obj)
    return [(p.name, p.kind, repr(p.default) if isinstance(p.default, float) and math.isnan(p.default) else p.default)
            for p in signature.parameters.values()]


def test_same_public_names(genuine: types.ModuleType) -> None:
    ours, theirs = set(public(remote)), set(public(genuine))
    assert ours - theirs == set(), "names genuine xtdata does not have"
    assert theirs - ours == set(), "genuine xtdata's names missing here"
    assert remote.__all__ == genuine.__all__


def test_same_parameters_and_defaults(genuine: types.ModuleType) -> None:
    theirs = public(genuine)
    for name, ours in public(remote).items():
        if callable(ours):
            assert parameters(ours) == parameters(theirs[name]), name
        else:
            assert ours == theirs[name], name  # the module settings: data_dir, debug_mode, ...


def test_aliases_are_the_same_objects(genuine: types.ModuleType) -> None:
    theirs = public(genuine)
    for a, b in (("gmd", "get_market_data"), ("gmd2", "get_market_data_ex"), ("gld", "get_local_data"),
                 ("gsl", "get_stock_list_in_sector"), ("t2d", "timetag_to_datetime"),
                 ("supply_history_data", "download_history_data"), ("get_stock_type", "get_instrument_type"),
                 ("gmd3", "get_market_data3")):
        assert theirs[a] is theirs[b]
        assert getattr(remote, a) is getattr(remote, b), a


def _dummy_call(function: Any) -> None:
    args = [None for p in inspect.signature(function).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    function(*args)


def test_what_is_not_bridged_raises_naming_itself() -> None:
    stubs = {name: value for name, value in public(remote).items() if callable(value) and name not in BRIDGED}
    assert len(stubs) > 90
    for name, function in stubs.items():
        own = function.__name__ if not inspect.isclass(function) else name
        with pytest.raises(NotImplementedError, match=rf"xtdata\.{own} is not bridged"):
            _dummy_call(function)


def test_bridged_ones_are_not_stubs() -> None:
    for name in BRIDGED:
        source = inspect.getsource(getattr(remote, name))
        assert "_unbridged(" not in source, name


def test_pure_helpers_answer_as_genuine(genuine: types.ModuleType) -> None:
    for ms in (1704159000000, 0, 1735660800000):
        for fmt in ("%Y%m%d", "%Y%m%d%H%M%S", "%H:%M:%S"):
            assert remote.timetag_to_datetime(ms, fmt) == genuine.timetag_to_datetime(ms, fmt)
            assert remote.t2d(ms, fmt) == genuine.t2d(ms, fmt)
    for text in ("20240102", "20240102093000"):
        assert remote.datetime_to_timetag(text) == genuine.datetime_to_timetag(text)
    assert remote.timetagToDateTime("not a time", "%Y") is None  # try_except swallows, as genuine's
    assert genuine.timetagToDateTime("not a time", "%Y") is None


def test_historical_sector_members_are_not_bridged() -> None:
    with pytest.raises(NotImplementedError, match="get_stock_list_in_sector"):
        remote.get_stock_list_in_sector("沪深A股", "20240102")
    with pytest.raises(NotImplementedError, match="subscribe_quote2"):
        remote.subscribe_quote2("600000.SH", dividend_type="front")


def test_runner_makes_xtdata_resolve_here() -> None:
    from adapter.compat import runner
    from adapter.xtimport import import_xtquant

    package = import_xtquant()
    names = ("xtquant.xttrader", "xtquant.xtdata")
    saved = {name: sys.modules.pop(name, None) for name in names}
    saved_attrs = {name: package.__dict__.get(name.split(".")[1]) for name in names}
    try:
        runner.install()
        from xtquant import xtdata  # what a strategy writes

        assert xtdata is remote
        assert importlib.import_module("xtquant.xtdata") is remote
    finally:  # the rest of the session sees xtquant as it was
        for name in names:
            attr = name.split(".")[1]
            sys.modules.pop(name, None)
            if saved[name] is not None:
                sys.modules[name] = saved[name]  # type: ignore[assignment]
            if saved_attrs[name] is None:
                package.__dict__.pop(attr, None)
            else:
                setattr(package, attr, saved_attrs[name])
