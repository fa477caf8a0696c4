"""A call record as JSON text: what the capture process stores in Redis and hands to the
writers. Plain data only (no pickle: nothing read back from Redis can run code). Bytes,
tuples, non-string dictionary keys, media offers and policy decisions are tagged so they
come back as they were.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from correlate.call import Call, MediaOffer
from correlate.errors import CorrelateError
from correlate.policy import Decision, IdentitySpec, identities

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


RECORD_VERSION = 1
"""Schema version of a CallRecord as stored (job payloads in Redis)."""

Party = tuple[str, str]
"""(URI, display name)."""


@dataclass(frozen=True)
class CallRecord:
    """A finished call with everything a writer needs to write it exactly as import would,
    decided where the call was captured: the policy's output choices and the parties'
    identities resolved by its rules. A writer needs no policy of its own, so live and
    import cannot disagree."""

    call: Call
    """The dialog as it ended (not changed after the record is made)."""
    audio_format: str = ""
    """The policy rule's audio format; "" for the writer's configured one."""
    layout: str = ""
    """The policy rule's layout; "" for the writer's configured one."""
    relay_hop: str = ""
    """The policy rule's choice of relayed copy; "" for the writer's configured one."""
    parties: tuple[tuple[Party, ...], tuple[Party, ...]] = ((), ())
    """Caller's and callee's identities, preferred first (the policy's [identity])."""
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """The extra headers the policy keeps, with their values."""
    legs: tuple[Call, ...] = ()
    """Further dialogs of the same conversation (a B2BUA's B-leg), written with this one
    as one recording; their media comes with the call's."""
    related: tuple[str, ...] = ()
    """Call-IDs of the other legs of this conversation, each written on its own
    (``join_legs = false``)."""
    version: int = RECORD_VERSION


def finished(call: Call, identity: IdentitySpec) -> CallRecord:
    """The record of a call that ended, under the policy's identity rules (its decision is
    already on the call)."""
    d = call.decision
    return CallRecord(
        call,
        audio_format=d.audio_format if d is not None else "",
        layout=d.layout if d is not None else "",
        relay_hop=d.relay_hop if d is not None else "",
        parties=(tuple(identities(call, identity, 0)), tuple(identities(call, identity, 1))),
        headers=tuple((h, tuple(call.headers[h])) for h in identity.extra_headers
                      if h in call.headers),
    )


def record_to_json(rec: CallRecord) -> str:
    return json.dumps({
        "v": rec.version,
        "call": json.loads(call_to_json(rec.call)),
        "audio_format": rec.audio_format,
        "layout": rec.layout,
        "relay_hop": rec.relay_hop,
        "parties": [[list(p) for p in side] for side in rec.parties],
        "headers": [[h, list(v)] for h, v in rec.headers],
        "legs": [json.loads(call_to_json(c)) for c in rec.legs],
        "related": list(rec.related),
    }, separators=(",", ":"))


def record_from_json(text: str | bytes) -> CallRecord:
    """A stored record; a bare call (jobs written before records had versions) gets the
    default identities (From and To) and the writer's format and layout."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"call record is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecordError("call record is not an object")
    if "v" not in data:
        return finished(call_from_json(text), IdentitySpec())
    if data["v"] != RECORD_VERSION:
        raise RecordError(f"call record version {data['v']!r} is not {RECORD_VERSION}")
    try:
        call = call_from_json(json.dumps(data["call"]))
        parties = tuple(tuple((str(u), str(n)) for u, n in side) for side in data["parties"])
        headers = tuple((str(h), tuple(str(x) for x in v)) for h, v in data["headers"])
        if len(parties) != 2:
            raise ValueError("parties must be two lists")
        legs = tuple(call_from_json(json.dumps(c)) for c in data.get("legs", []))
        related = tuple(str(x) for x in data.get("related", []))
        return CallRecord(call, str(data["audio_format"]), str(data["layout"]),
                          str(data.get("relay_hop", "")), (parties[0], parties[1]), headers,
                          legs, related)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"call record is malformed: {exc}") from None
