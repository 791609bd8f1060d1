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
EXT_ROWS = 3  # many objects of one xttype class: its name, the field names once, a row of values each
# Deliveries of a long answer in parts (SimCounter._answer_long) to a client that takes them.
PART, PARTS_DONE = "__part__", "__parts_done__"
ROWS_AT = 16  # a list this long of one xttype class travels as rows (a day's orders: 3x faster to decode)

_NATIVE_CLASSES = {cls.__name__: cls for cls in (
    native.OrderStockResp, native.CancelOrderStockResp, native.AccountStatusPush, native.AccountInfo,
)}


class Record:
    """An attribute bag standing for a counter object of no named class (xttrader reads attributes)."""

    def __repr__(self) -> str:
        return f"Record({vars(self)!r})"


class Rows:
    """A list of objects of one xttype class, packed as rows; unpacked as the list itself."""

    __slots__ = ("objects",)

    def __init__(self, objects: list[Any]) -> None:
        self.objects = objects


def rows(value: Any) -> Any:
    """``value``, or ``Rows`` of it when it is a long list of objects of one xttype class with the
    same attributes (what a query answers)."""
    if not isinstance(value, list) or len(value) < ROWS_AT:
        return value
    cls = type(value[0])
    if cls.__module__ != xttype.__name__ or getattr(xttype, cls.__name__, None) is not cls:
        return value
    names = vars(value[0]).keys()
    if any(type(obj) is not cls or vars(obj).keys() != names for obj in value):
        return value
    return Rows(value)


def _default(obj: Any) -> Any:
    if isinstance(obj, Rows):
        objects = obj.objects
        names = list(vars(objects[0]))
        return msgpack.ExtType(EXT_ROWS, pack([type(objects[0]).__name__, names,
                                               [list(vars(o).values()) for o in objects]]))
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
    if code == EXT_ROWS:
        name, names, values = unpack(data)
        row_class = _xttype_class(name)
        new, made = row_class.__new__, []
        for row in values:
            item = new(row_class)
            item.__dict__ = dict(zip(names, row))
            made.append(item)
        return made
    if code != EXT_OBJECT:
        return msgpack.ExtType(code, data)
    kind, name, fields = unpack(data)
    cls: Any
    if kind == "x":
        cls = _xttype_class(name)
    elif kind == "n":
        if name not in _NATIVE_CLASSES:
            raise ValueError(f"unknown native class {name!r}")
        cls = _NATIVE_CLASSES[name]
    else:
        cls = Record
    obj = cls.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def _xttype_class(name: str) -> Any:
    found = getattr(xttype, name, None)
    if not isinstance(found, type) or found.__module__ != xttype.__name__:
        raise ValueError(f"unknown xttype class {name!r}")
    return found


def pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_default, use_bin_type=True)


def unpack(data: bytes) -> Any:
    # Integer map keys: books() lists orders by their (int) order id.
    return msgpack.unpackb(data, ext_hook=_ext, raw=False, strict_map_key=False)
