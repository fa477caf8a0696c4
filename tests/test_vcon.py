"""vCon export: every vCon checked against the structure draft-ietf-vcon-vcon-core states
(the checker below is written from the draft's sections, not from the exporter), its
signature verified with jwcrypto (the exporter signs with joserfc) against the public key
of the certificate in x5c, and each recording's content_hash against the file."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from calltap.generate import GenOptions, generate
from tests.helpers import load_index, run_import
from writer.vcon import vcon_uuid

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
MEDIATYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
CONTENT_HASH = re.compile(r"^[a-z0-9]+-[A-Za-z0-9_-]+$")  # alg, "-", base64url digest
PARTY_KEYS = {"tel", "sip", "stir", "mailto", "name", "did", "validation", "gmlpos",
              "civicaddress", "uuid", "type", "org", "dept"}
DIALOG_TYPES = {"recording", "recording-set", "text", "transfer", "incomplete"}
DISPOSITIONS = {"no-answer", "congestion", "failed", "busy", "hung-up",
                "voicemail-no-message"}
ENCODINGS = {"base64url", "json", "none"}


def _parties_index(v: Any, n: int) -> bool:
    if isinstance(v, int):
        return 0 <= v < n
    if isinstance(v, list):
        return all(x is None or _parties_index(x, n) for x in v)
    return False


def check_vcon(v: dict[str, Any]) -> list[str]:
    """What the draft requires of an unsigned vCon object; the problems found."""
    bad: list[str] = []
    if v.get("vcon") != "0.4.0":
        bad.append("vcon: must be 0.4.0 for this syntax")
    if not re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                    str(v.get("uuid"))):
        bad.append("uuid: a version 8 UUID")
    for k in ("created_at", "updated_at"):
        if k in v and not DATE.match(str(v[k])):
            bad.append(f"{k}: a Date")
    if "created_at" not in v:
        bad.append("created_at: must be present")
    parties = v.get("parties")
    if not isinstance(parties, list):
        return [*bad, "parties: an array"]
    for i, p in enumerate(parties):
        if not isinstance(p, dict) or set(p) - PARTY_KEYS:
            bad.append(f"parties[{i}]: unknown keys {set(p) - PARTY_KEYS}")
        elif any(not isinstance(x, str) for k, x in p.items() if k != "civicaddress"):
            bad.append(f"parties[{i}]: strings")
    dialogs = v.get("dialog", [])
    for i, d in enumerate(dialogs):
        t = d.get("type")
        if t not in DIALOG_TYPES:
            bad.append(f"dialog[{i}].type: {t!r}")
        if not DATE.match(str(d.get("start"))):
            bad.append(f"dialog[{i}].start: a Date")
        if "duration" in d and not (isinstance(d["duration"], int | float)
                                    and d["duration"] >= 0):
            bad.append(f"dialog[{i}].duration: unsigned")
        if "parties" in d and not _parties_index(d["parties"], len(parties)):
            bad.append(f"dialog[{i}].parties: indices into parties")
        if "originator" in d and not _parties_index(d["originator"], len(parties)):
            bad.append(f"dialog[{i}].originator: an index into parties")
        content = {"body", "encoding", "url", "content_hash"} & set(d)
        if t in ("incomplete", "transfer", "recording-set"):
            if content:
                bad.append(f"dialog[{i}]: {t} must have no content")
            if t == "incomplete" and d.get("disposition") not in DISPOSITIONS:
                bad.append(f"dialog[{i}].disposition: {d.get('disposition')!r}")
        else:
            if "disposition" in d:
                bad.append(f"dialog[{i}].disposition: only for incomplete")
            if {"url", "content_hash"} <= content:
                if not str(d["url"]).startswith("https://"):
                    bad.append(f"dialog[{i}].url: HTTPS")
                hashes = d["content_hash"] if isinstance(d["content_hash"], list) \
                    else [d["content_hash"]]
                if not all(CONTENT_HASH.match(str(h)) for h in hashes) \
                        or not any(str(h).startswith("sha512-") for h in hashes):
                    bad.append(f"dialog[{i}].content_hash: ContentHash with sha512")
            elif not ({"body", "encoding"} <= content and d["encoding"] in ENCODINGS):
                bad.append(f"dialog[{i}]: body and encoding, or url and content_hash")
            if "mediatype" in d and not MEDIATYPE.match(str(d["mediatype"])):
                bad.append(f"dialog[{i}].mediatype: type/subtype")
    for i, a in enumerate(v.get("analysis", [])):
        if not isinstance(a.get("type"), str) or not isinstance(a.get("vendor"), str):
            bad.append(f"analysis[{i}]: type and vendor strings")
        idx = a.get("dialog")
        if idx is not None and not all(isinstance(x, int) and 0 <= x < len(dialogs)
                                       for x in (idx if isinstance(idx, list) else [idx])):
            bad.append(f"analysis[{i}].dialog: indices into dialog")
        if not (({"body", "encoding"} <= set(a) and a["encoding"] in ENCODINGS)
                or {"url", "content_hash"} <= set(a)):
            bad.append(f"analysis[{i}]: body and encoding, or url and content_hash")
    return bad


def check_signed(s: dict[str, Any]) -> list[str]:
    """The signed form: General JWS JSON Serialization, x5c (or x5u) and alg in the
    unprotected header, uuid there too."""
    bad = []
    if set(s) != {"payload", "signatures"} or not isinstance(s["signatures"], list):
        return ["not a General JWS JSON Serialization"]
    for i, sig in enumerate(s["signatures"]):
        if not {"header", "protected", "signature"} <= set(sig):
            bad.append(f"signatures[{i}]: header, protected and signature")
            continue
        h = sig["header"]
        prot = json.loads(base64.urlsafe_b64decode(sig["protected"] + "==="))
        if "alg" not in prot and "alg" not in h:
            bad.append(f"signatures[{i}]: alg")
        if not (isinstance(h.get("x5c"), list) or isinstance(h.get("x5u"), str)):
            bad.append(f"signatures[{i}].header: x5c or x5u")
    return bad


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("vcon")
    keys = d / "keys"
    subprocess.run([sys.executable, "-m", "calltap.cli", "keys", "init", "--dir", str(keys),
                    "--name", "recorder.example.com"], check=True, capture_output=True)
    pcap = d / "g.pcap"
    generate(str(pcap), GenOptions(calls=3, duration=2.0, varied=True, seed=4))
    run_import([pcap], d / "out", jobs=1)
    r = subprocess.run([sys.executable, "-m", "calltap.cli", "export", "vcon", str(d / "out"),
                        "--to", str(d / "vcons"), "--base-url", "https://rec.example.com"],
                       env={"CALLTAP_SIGNING_KEY": str(keys / "signing.key"),
                            "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    return d, d / "vcons"


def _verified(signed: dict[str, Any]) -> dict[str, Any]:
    """The payload, once jwcrypto verified the signature with the x5c certificate's key."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from jwcrypto import jwk, jws

    der = base64.b64decode(signed["signatures"][0]["header"]["x5c"][0])
    pem = x509.load_der_x509_certificate(der).public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    obj = jws.JWS()
    obj.deserialize(json.dumps(signed))
    obj.verify(jwk.JWK.from_pem(pem))
    payload: dict[str, Any] = json.loads(obj.payload)
    return payload


def test_every_vcon_is_well_formed_signed_and_hashes_its_recording(
        exported: tuple[Path, Path]) -> None:
    d, vcons = exported
    entries = {Path(e["summary"]).stem: e for e in load_index(d / "out")}
    files = sorted(vcons.glob("*.vcon.json"))
    assert len(files) == len(entries) == 3
    for f in files:
        signed = json.loads(f.read_text())
        assert check_signed(signed) == []
        v = _verified(signed)
        assert check_vcon(v) == [], f.name
        assert signed["signatures"][0]["header"]["uuid"] == v["uuid"]
        e = entries[f.name.removesuffix(".vcon.json")]
        rec = v["dialog"][0]
        assert rec["type"] == "recording" and rec["parties"] == [0, 1]
        digest = hashlib.sha512((d / "out" / e["audio"]).read_bytes()).digest()
        assert rec["content_hash"] == "sha512-" + base64.urlsafe_b64encode(digest).rstrip(
            b"=").decode()
        assert v["parties"][0]["sip"] == e["caller"] and v["parties"][1]["sip"] == e["callee"]
        assert v["analysis"][0]["body"]["mos"] == e["mos"]


def test_an_altered_vcon_fails_verification(exported: tuple[Path, Path]) -> None:
    from jwcrypto.jws import InvalidJWSSignature

    signed = json.loads(sorted(exported[1].glob("*.vcon.json"))[0].read_text())
    v = json.loads(base64.urlsafe_b64decode(signed["payload"] + "==="))
    v["parties"][0]["name"] = "someone else"
    signed["payload"] = base64.urlsafe_b64encode(json.dumps(v).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidJWSSignature):
        _verified(signed)


def test_a_call_never_answered_is_an_incomplete_dialog(tmp_path: Path) -> None:
    from writer.vcon import build

    entry = {"start": "2026-01-15T10:00:00.000000Z", "caller": "sip:+4930123@a",
             "callee": "tel:+4940555", "status": "busy", "mos": [None, None]}
    v = build({"call": {}}, entry, str(tmp_path), "https://x.example", "k", entry["start"],
              "host.example")
    assert check_vcon(v) == []
    assert v["dialog"] == [{"type": "incomplete", "start": entry["start"], "parties": [0, 1],
                            "disposition": "busy"}]
    assert v["parties"][0]["tel"] == "+4930123" and v["parties"][1] == {"tel": "+4940555"}


def test_the_uuid_is_version_8_and_stable() -> None:
    a = vcon_uuid(1_768_471_200_000_000_000, "stem-a", "rec.example.com")
    assert a == vcon_uuid(1_768_471_200_000_000_000, "stem-a", "rec.example.com")
    assert a != vcon_uuid(1_768_471_200_000_000_000, "stem-b", "rec.example.com")
    assert a[14] == "8" and a[19] in "89ab"
    assert int(a.replace("-", "")[:12], 16) == 1_768_471_200_000  # the start, in ms
