"""A call record as JSON text: what the capture process stores in Redis and hands to the
writers. Plain data only (no pickle: nothing read back from Redis can run code). Bytes,
tuples, non-string dictionary keys, media offers and policy decisions are tagged so they
come back as they were.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from correlate.call import Call, MediaOffer
from correlate.errors import CorrelateError
from correlate.policy import Decision

# Nesting accepted when reading a record back: a call is at most a few levels deep.
MAX_DEPTH = 16


class RecordError(CorrelateError):
    """A stored call record that cannot be read back."""


def _enc(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"$b": base64.b64encode(v).decode("ascii")}
    if isinstance(v, tuple):
        return {"$t": [_enc(x) for x in v]}
    if isinstance(v, list):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: _enc(x) for k, x in v.items()}
        return {"$d": [[_enc(k), _enc(x)] for k, x in v.items()]}
    if isinstance(v, MediaOffer):
        return {"$offer": {s: _enc(getattr(v, s)) for s in MediaOffer.__slots__}}
    if isinstance(v, Decision):
        return {"$decision": {k: getattr(v, k) for k in Decision.__dataclass_fields__}}
    if v is None or isinstance(v, bool | int | float | str):
        return v
    raise RecordError(f"cannot store a {type(v).__name__} in a call record")


def _dec(v: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise RecordError("call record nests too deeply")
    if isinstance(v, list):
        return [_dec(x, depth + 1) for x in v]
    if not isinstance(v, dict):
        return v
    if "$b" in v:
        return base64.b64decode(v["$b"])
    if "$t" in v:
        return tuple(_dec(x, depth + 1) for x in v["$t"])
    if "$d" in v:
        return {_dec(k, depth + 1): _dec(x, depth + 1) for k, x in v["$d"]}
    if "$offer" in v:
        o = MediaOffer(b"", 0, {}, [], "", 0, 0)
        for s, x in v["$offer"].items():
            if s in MediaOffer.__slots__:
                setattr(o, s, _dec(x, depth + 1))
        return o
    if "$decision" in v:
        return Decision(**v["$decision"])
    return {k: _dec(x, depth + 1) for k, x in v.items()}


def _slots(cls: type) -> list[str]:
    return [s for c in cls.__mro__ for s in getattr(c, "__slots__", ())]


def call_to_json(call: Call) -> str:
    """The whole call (dialog state, parties, media, flows, pauses, policy) as JSON."""
    return json.dumps({s: _enc(getattr(call, s)) for s in _slots(Call) if hasattr(call, s)},
                      separators=(",", ":"))


def call_from_json(text: str | bytes) -> Call:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"call record is not JSON: {exc}") from None
    if not isinstance(data, dict) or "key" not in data:
        raise RecordError("call record has no key")
    call = Call(str(data["key"]), str(data.get("call_id", "")), int(data.get("start_ns", 0)))
    slots = set(_slots(Call))
    for name, value in data.items():
        if name in slots:
            v = _dec(value)
            if name == "offers":
                v = tuple(list(x) for x in v)
            setattr(call, name, v)
    return call
