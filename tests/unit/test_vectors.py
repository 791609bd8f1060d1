"""The codec against every file in proto/vectors/ (the language-neutral contract)."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest

from adapter.protocol import decode_request, encode_error, encode_event, encode_ok, encode_request, events, ops

VECTORS = Path(__file__).resolve().parents[2] / "proto" / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.msgpack"))


def unrender(value: object) -> object:
    """The JSON renderings write msgpack bin as {"$bin": "<hex>"}."""
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        return {k: unrender(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unrender(v) for v in value]
    return value


def load(name: str) -> tuple[bytes, dict]:
    wire = (VECTORS / f"{name}.msgpack").read_bytes()
    rendering = unrender(json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8")))
    return wire, rendering


def test_every_op_and_event_type_has_vectors() -> None:
    for op in ops.OPS:
        assert f"request.{op}" in NAMES and f"reply.{op}" in NAMES, op
    for event_type in events.EVENT_FIELDS:
        assert f"event.{event_type}" in NAMES, event_type
    for name in NAMES:
        assert (VECTORS / f"{name}.json").exists(), name


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("request.")])
def test_request_vectors(name: str) -> None:
    wire, body = load(name)
    assert msgpack.unpackb(wire, raw=False) == body
    request = decode_request(wire)
    assert request.op == name.split(".", 1)[1] and request.id == body["id"]
    args = {k: v for k, v in body.items() if k not in ("v", "id", "op")}
    assert encode_request(body["id"], body["op"], args) == wire
    ops.validate_args(ops.lookup(request.op), request.args)  # a vector the gateway would refuse is wrong


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith(("reply.", "error."))])
def test_reply_vectors(name: str) -> None:
    wire, body = load(name)
    assert msgpack.unpackb(wire, raw=False) == body
    if body["ok"]:
        assert encode_ok(body["id"], body["result"]) == wire
        op = name.split(".", 1)[1]
        fields = events.QUERY_FIELDS.get(op)
        result = body["result"]
        if fields is not None:
            records = result if isinstance(result, list) else [result]
            assert all(tuple(r) == fields for r in records)
    else:
        error = body["error"]
        details = {k: v for k, v in error.items() if k not in ("code", "message")} or None
        assert encode_error(body["id"], error["code"], error["message"], details) == wire


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("event.")])
def test_event_vectors(name: str) -> None:
    wire, rendering = load(name)
    payload = rendering["payload"]
    assert msgpack.unpackb(wire, raw=False) == payload
    topic, encoded = encode_event(
        payload["seq"], payload["ts"], payload["type"], payload["account_id"], payload["data"], payload["epoch"],
        reconciled=payload.get("reconciled", False),
    )
    assert encoded == wire and topic.decode() == rendering["topic"]
    assert tuple(payload["data"]) == events.EVENT_FIELDS[payload["type"]]
    assert (payload["seq"] is None) == (payload["type"] in events.CONTROL_EVENTS)


def test_replay_vector_carries_the_live_frames_exactly() -> None:
    _, reply = load("reply.replay")
    _, trade = load("event.trade")
    assert reply["result"]["events"] == [[trade["topic"], load("event.trade")[0]]]
