"""RFC 7865 recording metadata: one ``complete`` snapshot per recorded call.

Identifiers are derived from the call (RFC 7865 section 6.9 asks only for uniqueness),
so the same packets always give the same document, in import and live alike.
"""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from typing import Any

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


_BAD_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (header text is attacker-controlled)."""
    return _BAD_XML_CHARS.sub("", text)


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: _clean(v) for k, v in attrs.items()})
    if text is not None:
        el.text = _clean(text)
    return el


def build_metadata(info: dict[str, Any]) -> bytes:
    """Serialise the metadata of one call from its summary dictionary."""
    out = ["<?xml version='1.0' encoding='utf-8'?>\n"]
    _serialize(metadata_tree(info), 0, out)
    out.append("\n")
    return "".join(out).encode("utf-8")


def metadata_tree(info: dict[str, Any]) -> ET.Element:
    """The metadata document of one call as an element tree."""
    call = info["call"]
    key = f"{call['call_id']}\x00{call['start_ns']}"
    session_id = make_id(key, "session")
    part_ids = (make_id(key, "caller"), make_id(key, "callee"))
    stream_ids = (make_id(key, "stream", "1"), make_id(key, "stream", "2"))
    start = rfc3339(call["start_ns"])
    stop = rfc3339(call["end_ns"])
    n = f"{{{NS}}}"
    c = f"{{{CT}}}"

    root = ET.Element(f"{n}recording")
    _el(root, f"{n}datamode", "complete")
    policy = call.get("policy") or {}
    group_id = ""
    if policy.get("group"):
        # RFC 7865 section 6.2: a group of sessions; the id is derived from its label
        group_id = make_id("group", policy["group"])
        group = _el(root, f"{n}group", group_id=group_id)
        _el(group, f"{n}associate-time", start)
        _el(group, f"{c}label", policy["group"])
    legs = call.get("legs") or []
    if legs and not group_id:
        # RFC 7865 section 6.2: the B2BUA's legs are sessions of one group
        group_id = make_id(key, "legs")
        group = _el(root, f"{n}group", group_id=group_id)
        _el(group, f"{n}associate-time", start)
    session = _el(root, f"{n}session", session_id=session_id)
    if legs:
        _el(session, f"{n}sipSessionID", call.get("session_id") or call["call_id"])
    if call.get("final_code", 0) >= 300:
        _el(session, f"{n}reason", call.get("final_reason", ""),
            cause=str(call["final_code"]), protocol="SIP")
    if call.get("reason"):
        r = call["reason"]
        _el(session, f"{n}reason", r["text"], cause=str(r["cause"]), protocol=r["protocol"])
    if group_id:
        _el(session, f"{n}group-ref", group_id)
    _el(session, f"{n}start-time", start)
    _el(session, f"{n}stop-time", stop)
    dialog = _el(session, f"{c}sip-dialog")
    _el(dialog, f"{c}call-id", call["call_id"])
    _el(dialog, f"{c}from-tag", call["caller_tag"])
    _el(dialog, f"{c}to-tag", call["callee_tag"])
    _el(session, f"{c}status", call["status"], end_reason=call["end_reason"])
    timing = {k.replace("_", "-"): str(call[k]) for k in
              ("post_dial_delay", "setup_time", "hangup_by", "sip_retransmissions")
              if call.get(k) not in (None, "")}
    if timing:
        _el(session, f"{c}signalling", **timing)
    if policy:
        _el(session, f"{c}policy", rule=str(policy["rule"]),
            **{k.replace("_", "-"): str(v).lower() if isinstance(v, bool) else str(v)
               for k, v in policy.items() if k != "rule" and v is not None})
    for p in call.get("paused", []):
        _el(session, f"{c}paused", start=p["start"], end=p["end"], offset=str(p["offset"]))
    for name, values in sorted(call.get("headers", {}).items()):
        for v in values:
            _el(session, f"{c}header", v, name=name)
    if info.get("dtmf"):
        dtmf = _el(session, f"{c}dtmf")
        for x in info["dtmf"]:
            _el(dtmf, f"{c}digit", x["digit"], time=x["time"], side=x["side"],
                source=x["source"], duration_ms=str(x["duration_ms"]))
    if call.get("related"):
        for other in call["related"]:
            _el(session, f"{c}related", other)
    for leg in legs:  # each joined leg: a session of the group, with its own identifiers
        lk = f"{leg['call_id']}\x00{leg['start_ns']}"
        s2 = _el(root, f"{n}session", session_id=make_id(lk, "session"))
        _el(s2, f"{n}sipSessionID", leg.get("session_id") or leg["call_id"])
        _el(s2, f"{n}group-ref", group_id)
        _el(s2, f"{n}start-time", leg["start"])
        _el(s2, f"{n}stop-time", leg["end"])
        d2 = _el(s2, f"{c}sip-dialog")
        _el(d2, f"{c}call-id", leg["call_id"])
        _el(d2, f"{c}from-tag", leg["caller_tag"])
        _el(d2, f"{c}to-tag", leg["callee_tag"])

    for side, role in enumerate(("caller", "callee")):
        p = _el(root, f"{n}participant", participant_id=part_ids[side])
        # every identity known for the party (RFC 7865 section 6.5), preferred first
        known = call.get("identities", {}).get(role) or [
            {"uri": call[role], "name": call[f"{role}_name"]}]
        for ident in known:
            name_id = _el(p, f"{n}nameID", aor=_aor(ident["uri"]))
            if ident["name"]:
                _el(name_id, f"{n}name", ident["name"])
        _el(p, f"{c}role", role)

    for side in (0, 1):
        direction = info["directions"][side]
        s = _el(root, f"{n}stream", stream_id=stream_ids[side], session_id=session_id)
        _el(s, f"{n}label", str(side + 1))
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
        _el(s, f"{c}media", **media)
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
        _el(s, f"{c}quality", **quality)

    _el(root, f"{n}sessionrecordingassoc", session_id=session_id)
    assoc = root[-1]
    _el(assoc, f"{n}associate-time", rfc3339(info["media_start_ns"] or call["start_ns"]))
    _el(assoc, f"{n}disassociate-time", stop)
    for side in (0, 1):
        psa = _el(root, f"{n}participantsessionassoc",
                  participant_id=part_ids[side], session_id=session_id)
        _el(psa, f"{n}associate-time", start)
        _el(psa, f"{n}disassociate-time", stop)
    for side in (0, 1):
        pst = _el(root, f"{n}participantstreamassoc", participant_id=part_ids[side])
        _el(pst, f"{n}send", stream_ids[side])
        _el(pst, f"{n}recv", stream_ids[1 - side])
    _el(root, f"{c}recorder", version=info["recorder_version"], capture="passive")
    return root


_PREFIX = {NS: "", CT: "ct:"}
_ROOT_NS = f' xmlns="{NS}" xmlns:ct="{CT}"'


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(text: str) -> str:
    return (_escape_text(text).replace('"', "&quot;").replace("\r", "&#13;")
            .replace("\n", "&#10;").replace("\t", "&#09;"))


def _serialize(el: ET.Element, depth: int, out: list[str]) -> None:
    """The document as ElementTree writes it after ``ET.indent`` (two spaces a level, both
    namespaces declared on the root, ``<x />`` when empty), byte for byte, in about a third
    of its time: ``tostring`` was the largest part of writing a short call."""
    uri, _, local = el.tag[1:].partition("}")
    tag = _PREFIX[uri] + local
    out.append("<" + tag + (_ROOT_NS if depth == 0 else ""))
    for k, v in el.attrib.items():
        out.append(f' {k}="{_escape_attr(v)}"')
    if len(el):
        out.append(">")
        inner = "\n" + "  " * (depth + 1)
        for child in el:
            out.append(inner)
            _serialize(child, depth + 1, out)
        out.append("\n" + "  " * depth + "</" + tag + ">")
    elif el.text:
        out.append(">" + _escape_text(el.text) + "</" + tag + ">")
    else:
        out.append(" />")
