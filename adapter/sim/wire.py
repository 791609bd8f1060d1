"""msgpack for the counter process's link: xttype and native response objects by class name + fields.

An object travels as an ext value holding ``[kind, class name, fields]``: kind ``x`` for a
class of ``xtquant.xttype``, ``n`` for one of ``adapter.sim.native``'s response shapes, ``r``
for any other attribute bag (rebuilt as a ``Record``). The receiver rebuilds the object with
exactly those attributes, without running its ``__init__``; only known classes are built
(never pickle: nothing on the link can name arbitrary code).
"""

from __future__ import annotations

from typing import Any

import msgpack

from adapter.sim import native
from xtquant import xttype

EXT_OBJECT = 1
EXT_FIELDS = 2  # a native.RequestFields snapshot

_NATIVE_CLASSES = {cls.__name__: cls for cls in (
    native.OrderStockResp, native.CancelOrderStockResp, native.AccountStatusPush, native.AccountInfo,
)}


class Record:
    """An attribute bag standing for a counter object of no named class (xttrader reads attributes)."""

    def __repr__(self) -> str:
        return f"Record({vars(self)!r})"


def _default(obj: Any) -> Any:
    if isinstance(obj, native.RequestFields):
        return msgpack.ExtType(EXT_FIELDS, pack([sorted(obj.explicit), obj.values()]))
    cls = type(obj)
    if cls.__module__ == xttype.__name__ and getattr(xttype, cls.__name__, None) is cls:
        kind = "x"
    elif _NATIVE_CLASSES.get(cls.__name__) is cls:
        kind = "n"
    elif hasattr(obj, "__dict__"):
        kind = "r"
    else:
        raise TypeError(f"cannot send a {cls.__name__} to or from the counter process")
    return msgpack.ExtType(EXT_OBJECT, pack([kind, cls.__name__, vars(obj)]))


def _ext(code: int, data: bytes) -> Any:
    if code == EXT_FIELDS:
        explicit, values = unpack(data)
        return native.RequestFields.from_values(values, explicit)
    if code != EXT_OBJECT:
        return msgpack.ExtType(code, data)
    kind, name, fields = unpack(data)
    cls: Any
    if kind == "x":
        found = getattr(xttype, name, None)
        if not isinstance(found, type) or found.__module__ != xttype.__name__:
            raise ValueError(f"unknown xttype class {name!r}")
        cls = found
    elif kind == "n":
        if name not in _NATIVE_CLASSES:
            raise ValueError(f"unknown native class {name!r}")
        cls = _NATIVE_CLASSES[name]
    else:
        cls = Record
    obj = cls.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_default, use_bin_type=True)


def unpack(data: bytes) -> Any:
    # Integer map keys: books() lists orders by their (int) order id.
    return msgpack.unpackb(data, ext_hook=_ext, raw=False, strict_map_key=False)
