"""RFC 7865 recording metadata: one ``complete`` snapshot per recorded call.

Identifiers are derived from the call (RFC 7865 section 6.9 asks only for uniqueness),
so the same packets always give the same document, in import and live alike.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import xml.etree.ElementTree as ET
from typing import Any, Protocol

from writer.timefmt import rfc3339

NS = "urn:ietf:params:xml:ns:recording:1"
CT = "urn:x-calltap:metadata:1"
XML_NS = "http://www.w3.org/XML/1998/namespace"
ET.register_namespace("", NS)
ET.register_namespace("ct", CT)


def make_id(*parts: str) -> str:
    """A 128-bit base64 identifier (RFC 7865 section 6.9) derived from ``parts``."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogateescape")).digest()
    return base64.b64encode(digest[:16]).decode("ascii")


def _aor(uri: str) -> str:
    # xs:anyURI: keep a URI with no spaces or angle brackets; fall back to an invalid-domain AOR.
    uri = uri.strip()
    if not uri or any(c in uri for c in ' <>"{}|\\^`') or ":" not in uri:
        return "sip:unknown@unknown.invalid"
    return uri


@functools.cache
def _bad_xml_chars() -> re.Pattern[str]:
    # compiled when first needed: this class takes 11 ms to compile, a process start's worth
    return re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (header text is attacker-controlled)."""
    # every printable character is one XML 1.0 allows; only the rest need the scan
    return text if text.isprintable() else _bad_xml_chars().sub("", text)


class _Sink(Protocol):
    """Where the document goes: tags are ``local`` (RFC 7865) or ``ct:local``."""

    def open(self, tag: str, attrs: dict[str, str] | None = None) -> None: ...
    def leaf(self, tag: str, text: str | None = None,
             attrs: dict[str, str] | None = None) -> None: ...
    def close(self) -> None: ...


def build_metadata(info: dict[str, Any]) -> bytes:
    """Serialise the metadata of one call from its summary dictionary."""
    text = _Text()
    _document(info, text)
    return text.result()


def metadata_tree(info: dict[str, Any]) -> ET.Element:
    """The metadata document of one call as an element tree (what ``build_metadata``
    serialises, for tools and for the test that checks the two agree)."""
    tree = _Tree()
    _document(info, tree)
    return tree.root


def _document(info: dict[str, Any], d: _Sink) -> None:
    call = info["call"]
    key = f"{call['call_id']}\x00{call['start_ns']}"
    session_id = make_id(key, "session")
    part_ids = (make_id(key, "caller"), make_id(key, "callee"))
    stream_ids = (make_id(key, "stream", "1"), make_id(key, "stream", "2"))
    start = rfc3339(call["start_ns"])
    stop = rfc3339(call["end_ns"])

    d.open("recording")
    d.leaf("datamode", "complete")
    policy = call.get("policy") or {}
    group_id = ""
    if policy.get("group"):
        # RFC 7865 section 6.2: a group of sessions; the id is derived from its label
        group_id = make_id("group", policy["group"])
        d.open("group", {"group_id": group_id})
        d.leaf("associate-time", start)
        d.leaf("ct:label", policy["group"])
        d.close()
    legs = call.get("legs") or []
    if legs and not group_id:
        # RFC 7865 section 6.2: the B2BUA's legs are sessions of one group
        group_id = make_id(key, "legs")
        d.open("group", {"group_id": group_id})
        d.leaf("associate-time", start)
        d.close()
    d.open("session", {"session_id": session_id})
    if legs:
        d.leaf("sipSessionID", call.get("session_id") or call["call_id"])
    if call.get("final_code", 0) >= 300:
        d.leaf("reason", call.get("final_reason", ""),
               {"cause": str(call["final_code"]), "protocol": "SIP"})
    if call.get("reason"):
        r = call["reason"]
        d.leaf("reason", r["text"], {"cause": str(r["cause"]), "protocol": r["protocol"]})
    if group_id:
        d.leaf("group-ref", group_id)
    d.leaf("start-time", start)
    d.leaf("stop-time", stop)
    d.open("ct:sip-dialog")
    d.leaf("ct:call-id", call["call_id"])
    d.leaf("ct:from-tag", call["caller_tag"])
    d.leaf("ct:to-tag", call["callee_tag"])
    d.close()
    d.leaf("ct:status", call["status"], {"end_reason": call["end_reason"]})
    timing = {k.replace("_", "-"): str(call[k]) for k in
              ("post_dial_delay", "setup_time", "hangup_by", "sip_retransmissions")
              if call.get(k) not in (None, "")}
    if timing:
        d.leaf("ct:signalling", None, timing)
    if policy:
        d.leaf("ct:policy", None, {"rule": str(policy["rule"]), **{
            k.replace("_", "-"): str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in policy.items() if k != "rule" and v is not None}})
    for p in call.get("paused", []):
        d.leaf("ct:paused", None, {"start": p["start"], "end": p["end"],
                                   "offset": str(p["offset"])})
    for name, values in sorted(call.get("headers", {}).items()):
        for v in values:
            d.leaf("ct:header", v, {"name": name})
    if info.get("dtmf"):
        d.open("ct:dtmf")
        for x in info["dtmf"]:
            d.leaf("ct:digit", x["digit"], {"time": x["time"], "side": x["side"],
                                            "source": x["source"],
                                            "duration_ms": str(x["duration_ms"])})
        d.close()
    for other in call.get("related") or ():
        d.leaf("ct:related", other)
    d.close()
    for leg in legs:  # each joined leg: a session of the group, with its own identifiers
        lk = f"{leg['call_id']}\x00{leg['start_ns']}"
        d.open("session", {"session_id": make_id(lk, "session")})
        d.leaf("sipSessionID", leg.get("session_id") or leg["call_id"])
        d.leaf("group-ref", group_id)
        d.leaf("start-time", leg["start"])
        d.leaf("stop-time", leg["end"])
        d.open("ct:sip-dialog")
        d.leaf("ct:call-id", leg["call_id"])
        d.leaf("ct:from-tag", leg["caller_tag"])
        d.leaf("ct:to-tag", leg["callee_tag"])
        d.close()
        d.close()

    for side, role in enumerate(("caller", "callee")):
        d.open("participant", {"participant_id": part_ids[side]})
        # every identity known for the party (RFC 7865 section 6.5), preferred first
        known = call.get("identities", {}).get(role) or [
            {"uri": call[role], "name": call[f"{role}_name"]}]
        for ident in known:
            d.open("nameID", {"aor": _aor(ident["uri"])})
            if ident["name"]:
                d.leaf("name", ident["name"])
            d.close()
        d.leaf("ct:role", role)
        d.close()

    for side in (0, 1):
        direction = info["directions"][side]
        d.open("stream", {"stream_id": stream_ids[side], "session_id": session_id})
        d.leaf("label", str(side + 1))
        media = {
            "channel": str(side),
            "codec": ",".join(direction["codecs"]),
            "ssrc": ",".join(x["ssrc"] for x in direction["ssrcs"]),
            "packets": str(direction["packets"]),
            "lost": str(direction["lost"]),
        }
        if info.get("audio"):
            media["file"] = info["audio"]
        if direction["src"]:
            media["src"] = direction["src"]
        if direction["dst"]:
            media["dst"] = direction["dst"]
        d.leaf("ct:media", None, media)
        q = direction.get("quality")
        verdict = direction.get("capture_integrity", {}).get("verdict")
        quality = {"jitter-max-ms": str(direction["jitter_ms_max"]),
                   "jitter-mean-ms": str(direction["jitter_ms_mean"])}
        if q:
            quality.update({"mos": str(q["mos"]), "r-factor": str(q["r_factor"]),
                            "loss-heard-pct": str(q["loss_heard_pct"]),
                            "worst-second-mos": str(q["worst_second_mos"])})
        if verdict:
            quality["capture-integrity"] = verdict
        d.leaf("ct:quality", None, quality)
        d.close()

    d.open("sessionrecordingassoc", {"session_id": session_id})
    d.leaf("associate-time", rfc3339(info["media_start_ns"] or call["start_ns"]))
    d.leaf("disassociate-time", stop)
    d.close()
    for side in (0, 1):
        d.open("participantsessionassoc",
               {"participant_id": part_ids[side], "session_id": session_id})
        d.leaf("associate-time", start)
        d.leaf("disassociate-time", stop)
        d.close()
    for side in (0, 1):
        d.open("participantstreamassoc", {"participant_id": part_ids[side]})
        d.leaf("send", stream_ids[side])
        d.leaf("recv", stream_ids[1 - side])
        d.close()
    d.leaf("ct:recorder", None, {"version": info["recorder_version"], "capture": "passive"})
    d.close()


_TEXT_SPECIAL = re.compile("[&<>]")
_ATTR_SPECIAL = re.compile('[&<>"\r\n\t]')


def _text(text: str) -> str:
    """Element text, cleaned and escaped as ElementTree escapes it."""
    if not text.isprintable():
        text = _bad_xml_chars().sub("", text)
    if _TEXT_SPECIAL.search(text) is None:
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    """An attribute value, cleaned and escaped as ElementTree escapes it."""
    if not text.isprintable():
        text = _bad_xml_chars().sub("", text)
    if _ATTR_SPECIAL.search(text) is None:
        return text
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\r", "&#13;").replace("\n", "&#10;")
            .replace("\t", "&#09;"))


def _attrs(attrs: dict[str, str]) -> str:
    values = "".join(attrs.values())
    if values.isprintable() and _ATTR_SPECIAL.search(values) is None:
        # one look at all the values: nearly always none needs cleaning or escaping
        return "".join([f' {k}="{v}"' for k, v in attrs.items()])
    return "".join([f' {k}="{_attr(v)}"' for k, v in attrs.items()])


class _Text:
    """The document as ElementTree writes it after ``ET.indent`` (two spaces a level, both
    namespaces declared on the root, ``<x />`` when empty), byte for byte, written as it is
    described: building a tree and serialising it was the largest part of writing a short
    call (about 410 us a call; this takes about a third of that)."""

    __slots__ = ("_out", "_stack", "_bare")

    def __init__(self) -> None:
        self._out = ["<?xml version='1.0' encoding='utf-8'?>\n"]
        self._stack: list[str] = []
        self._bare = False  # the innermost open element has no child yet (its ">" is due)

    def open(self, tag: str, attrs: dict[str, str] | None = None) -> None:
        stack = self._stack
        if stack:
            lead = _LEAD_BARE[len(stack)] if self._bare else _LEAD[len(stack)]
        else:
            lead, tag = "", tag + _ROOT_NS  # both namespaces declared on the root
        self._out.append(f"{lead}<{tag}{_attrs(attrs) if attrs else ''}")
        stack.append(tag.partition(" ")[0])
        self._bare = True

    def leaf(self, tag: str, text: str | None = None,
             attrs: dict[str, str] | None = None) -> None:
        depth = len(self._stack)
        lead = _LEAD_BARE[depth] if self._bare else _LEAD[depth]
        self._bare = False
        head = f"{lead}<{tag}{_attrs(attrs) if attrs else ''}"
        self._out.append(f"{head}>{_text(text)}</{tag}>" if text else f"{head} />")

    def close(self) -> None:
        tag = self._stack.pop()
        if self._bare:
            self._out.append(" />")
            self._bare = False
        else:
            self._out.append(f"{_LEAD[len(self._stack)]}</{tag}>")

    def result(self) -> bytes:
        self._out.append("\n")
        return "".join(self._out).encode("utf-8")


_ROOT_NS = f' xmlns="{NS}" xmlns:ct="{CT}"'
# The document is at most this deep (recording, session, ct:dtmf, ct:digit): the line
# breaks and indents before an element at each depth, after a parent's ">" or not.
_MAX_DEPTH = 8
_LEAD = ["\n" + "  " * d for d in range(_MAX_DEPTH)]
_LEAD_BARE = [">" + lead for lead in _LEAD]


def _qname(tag: str) -> str:
    prefix, _, local = tag.rpartition(":")
    return f"{{{CT if prefix else NS}}}{local}"


class _Tree:
    """The same document as an ElementTree."""

    def __init__(self) -> None:
        self.root = ET.Element("x")
        self._stack: list[ET.Element] = []

    def _add(self, tag: str, attrs: dict[str, str] | None) -> ET.Element:
        attrib = {k: _clean(v) for k, v in (attrs or {}).items()}
        if not self._stack:
            self.root = ET.Element(_qname(tag), attrib)
            return self.root
        return ET.SubElement(self._stack[-1], _qname(tag), attrib)

    def open(self, tag: str, attrs: dict[str, str] | None = None) -> None:
        self._stack.append(self._add(tag, attrs))

    def leaf(self, tag: str, text: str | None = None,
             attrs: dict[str, str] | None = None) -> None:
        el = self._add(tag, attrs)
        if text is not None:
            el.text = _clean(text)

    def close(self) -> None:
        self._stack.pop()
