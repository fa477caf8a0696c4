"""A recorded call as an IETF vCon (draft-ietf-vcon-vcon-core, syntax "0.4.0"): its parties,
the recording as an externally referenced dialog (URL and SHA-512 content hash), an
"incomplete" dialog with its disposition for a call never answered, and the quality
figures as a report analysis; signed as a General JWS JSON Serialization (section
"Signed Form of vCon Object") with the signer's certificate in x5c."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import uuid
from typing import Any

from writer.manifest import ALG, load_key

VCON_SYNTAX = "0.4.0"
# calltap's status: the vCon disposition of a call that never got to talk.
DISPOSITIONS = {"busy": "busy", "no-answer": "no-answer", "cancelled": "hung-up",
                "failed": "failed", "congestion": "congestion"}
MEDIATYPES = {".wav": "audio/x-wav", ".mp3": "audio/x-mp3", ".opus": "audio/ogg",
              ".ogg": "audio/ogg", ".flac": "audio/flac"}


def content_hash(path: str) -> str:
    """A ContentHash token: "sha512-" and the base64url SHA-512 of the file."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return "sha512-" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def vcon_uuid(start_ns: int, stem: str, fqhn: str) -> str:
    """The draft's version 8 UUID: laid out as version 7 (the call's start in ms), with
    custom_c the high 62 bits of the SHA-1 of the host name; rand_a from the call's stem,
    so one call always gets the same UUID."""
    ms = (start_ns // 1_000_000) & ((1 << 48) - 1)
    rand_a = int.from_bytes(hashlib.sha256(stem.encode()).digest()[:2], "big") & 0xFFF
    custom_c = int.from_bytes(hashlib.sha1(fqhn.encode()).digest()[:8], "big") >> 2
    value = (ms << 80) | (0x8 << 76) | (rand_a << 64) | (0b10 << 62) | custom_c
    return str(uuid.UUID(int=value))


def _party(uri: str, name: str) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if uri.lower().startswith(("sip:", "sips:")):
        p["sip"] = uri
        user = uri.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
        if user.lstrip("+").isdigit() and len(user.lstrip("+")) >= 3:
            p["tel"] = user
    elif uri.lower().startswith("tel:"):
        p["tel"] = uri[4:].split(";", 1)[0]
    if name:
        p["name"] = name
    return p


def build(summary: dict[str, Any], entry: dict[str, Any], out_dir: str, base_url: str,
          key: str, created: str, fqhn: str) -> dict[str, Any]:
    """The unsigned vCon of one recorded call (``key``: its id in the dashboard's API)."""
    call = summary.get("call") or {}
    parties = [_party(entry.get("caller") or "", call.get("caller_name") or ""),
               _party(entry.get("callee") or "", call.get("callee_name") or "")]
    vcon: dict[str, Any] = {
        "vcon": VCON_SYNTAX,
        "uuid": vcon_uuid(_ns(entry["start"]), key, fqhn),
        "created_at": created,
        "updated_at": created,
        "parties": parties,
        "dialog": [],
        "analysis": [],
    }
    files = summary.get("audio_files") or []
    if files:
        path = os.path.join(out_dir, files[0])
        d: dict[str, Any] = {
            "type": "recording", "start": summary["audio_start"],
            "duration": round((summary.get("audio_frames") or 0)
                              / (summary.get("sample_rate") or 8000), 3),
            # channel 0 the caller, channel 1 the callee (a mix: both)
            "parties": [0, 1] if summary.get("layout") != "mono" else [[0, 1]],
            "mediatype": MEDIATYPES.get(os.path.splitext(path)[1], "audio/x-wav"),
            "filename": os.path.basename(path),
            "url": f"{base_url.rstrip('/')}/api/calls/{key}/files/audio",
            "content_hash": content_hash(path),
        }
        if len(files) > 1:  # a split layout: one file per party
            d["parties"] = 0
            second = dict(d, parties=1, originator=0, filename=os.path.basename(files[1]),
                          url=f"{base_url.rstrip('/')}/api/calls/{key}/files/audio2",
                          content_hash=content_hash(os.path.join(out_dir, files[1])))
            vcon["dialog"] = [d, second]
        else:
            vcon["dialog"] = [d]
    else:
        vcon["dialog"] = [{"type": "incomplete", "start": entry["start"], "parties": [0, 1],
                           "disposition": DISPOSITIONS.get(entry.get("status") or "",
                                                           "failed")}]
    if call.get("session_id"):
        for d in vcon["dialog"]:
            d["session_id"] = {"local": call["session_id"], "remote": call["session_id"]}
    quality = {"mos": entry.get("mos"), "packets": entry.get("packets"),
               "lost": entry.get("lost"), "codecs": entry.get("codecs"),
               "status": entry.get("status"), "end_reason": entry.get("end_reason"),
               "directions": [{k: x.get(k) for k in ("side", "packets", "expected", "lost",
                                                     "jitter_ms_mean", "jitter_ms_max",
                                                     "quality")}
                              for x in summary.get("directions") or []]}
    vcon["analysis"].append({
        "type": "report", "dialog": list(range(len(vcon["dialog"]))),
        "mediatype": "application/json", "vendor": "calltap", "product": "calltap",
        "schema": "calltap-quality-1", "body": quality, "encoding": "json"})
    return vcon


def _ns(text: str) -> int:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(t.timestamp() * 1_000_000) * 1000


def sign(vcon: dict[str, Any], key_path: str, cert_path: str) -> dict[str, Any]:
    """The signed form: a General JWS JSON Serialization, the certificate in x5c and the
    vCon's uuid in the unprotected header."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from joserfc import jws

    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    der = base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
    payload = json.dumps(vcon, sort_keys=True, separators=(",", ":")).encode()
    # "uuid" is the vCon draft's own header parameter: allowed through
    registry = jws.JWSRegistry(algorithms=[ALG], strict_check_header=False)
    signed = jws.serialize_json(
        [{"protected": {"alg": ALG}, "header": {"x5c": [der], "uuid": vcon["uuid"]}}],
        payload, load_key(key_path, True), registry=registry)
    return dict(signed)


def self_signed_certificate(key_path: str, cert_path: str, name: str, days: int = 3650
                            ) -> None:
    """A certificate for the signing key, for x5c (a site's own CA can issue one instead)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
    from cryptography.x509.oid import NameOID

    with open(key_path, "rb") as f:
        key = load_pem_private_key(f.read(), None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{key_path}: not an Ed25519 private key")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .sign(key, None))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(Encoding.PEM))
