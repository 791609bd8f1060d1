"""Long query answers, linked and packed on their own thread so a day's orders never stall
the I/O thread (docs/architecture.md §2)."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..protocol import encode_error, errors, pack, unpack
from ..broker.messages import Records
from .desk import ORDER_RECORD_QUERIES, Refuse, Reply, describe_result
from .quotes import PackedReply

log = logging.getLogger(__name__)

LARGE_RESULT = 500  # records: an answer this long is encoded here, not on the I/O thread
MAX_ENCODING = 8  # answers waiting here at most; beyond, the I/O thread encodes them itself
CHUNK = 256  # records converted, linked and packed at a time


@dataclass(slots=True)
class Encoded:
    """An inbox item: a large answer packed, or the error reply if that failed."""

    answer: PackedReply | Refuse


class LargeAnswers:
    def __init__(self, link: Callable[[list[dict[str, Any]]], Any], post: Callable[[Encoded], None]) -> None:
        self._link = link  # reads the ledger only (its lookups are thread-safe)
        self._post = post
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qmt-gateway-encode")
        self.busy = 0  # handed over, not yet sent

    def take(self, reply: Reply) -> bool:
        """Encode ``reply`` here if it is long and there is room; False: the caller encodes it
        (``Records`` converted to maps first)."""
        result = reply.result
        records = result.objects if isinstance(result, Records) else result
        if not isinstance(records, list) or len(records) < LARGE_RESULT or self.busy >= MAX_ENCODING:
            if isinstance(result, Records):
                reply.result = result.maps()
            return False
        self.busy += 1
        self._executor.submit(self._encode, reply)
        return True

    def done(self) -> None:
        """An answer handed over has been sent (or refused)."""
        self.busy -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _encode(self, reply: Reply) -> None:
        try:
            result = reply.result
            if isinstance(result, Records):
                packed = self._convert(result, reply.op in ORDER_RECORD_QUERIES)
            else:
                if reply.op in ORDER_RECORD_QUERIES:
                    self._link(result)
                # Item by item: one packb call of a whole day's orders would hold the GIL for
                # ~100 ms and stall the I/O thread all the same.
                packed = b"".join([array_header(len(result)), *(pack(item) for item in result)])
            self._post(Encoded(PackedReply(reply.envelope, reply.request_id, packed)))
        except Exception:
            log.exception("encoding a large answer failed")
            self._post(Encoded(Refuse(reply.envelope, reply.request_id, errors.INTERNAL_ERROR,
                                      "internal error; see the gateway log")))


    def _convert(self, records: Records, link: bool) -> bytes:
        """xtquant's objects to packed wire maps a chunk at a time: only a chunk's maps exist at
        once, each object is let go once packed, and the GIL is offered to the I/O thread
        between chunks, so a day's orders cost neither a stall nor their maps' memory."""
        objects = records.objects
        parts = [array_header(len(objects))]
        for start in range(0, len(objects), CHUNK):
            maps = records.maps(start, start + CHUNK)
            objects[start:start + CHUNK] = [None] * len(maps)
            if link:
                self._link(maps)
            parts.extend(pack(item) for item in maps)
            time.sleep(0)
        return b"".join(parts)


def array_header(length: int) -> bytes:
    """msgpack's array header: what ``pack`` writes before the items of a list that long."""
    if length < 16:
        return bytes([0x90 | length])
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


def unrecorded(payload: bytes) -> bytes:
    """An ok reply whose outcome the ledger could not record becomes storage_failed, naming it."""
    body = unpack(payload)
    if not isinstance(body, dict) or not body.get("ok"):
        return payload
    result = body.get("result")
    known = f" (the counter answered {describe_result(result)})" if isinstance(result, dict) else ""
    return encode_error(body.get("id"), errors.STORAGE_FAILED,
                        f"the outcome could not be recorded{known}; it is settled from the counter's books "
                        "when storage works: ask again with the same client_order_id", None)
