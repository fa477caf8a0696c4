"""RFC 3161 timestamps of the log's signed checkpoints: an outside time-stamping authority
(``tsa_url``) signs the SHA-256 of each checkpoint and the time it saw it, so the log's
state at that time is provable by a party other than the recorder. A response is kept as
``OUT/.calltap/log/timestamps/<checkpoint>.tsr``; a checkpoint the authority could not be
reached for is stamped by the next run (a later checkpoint covers every earlier entry
anyway, through the consistency proofs)."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess

from writer.errors import WriterError
from writer.translog import log_dir

# How long a request to the authority may take before the stamp waits for the next run.
TSA_TIMEOUT_S = 5.0
# Responses larger than this are no timestamp (a TSA's is a few kilobytes).
MAX_RESPONSE = 64 * 1024
SHA256_OID = bytes.fromhex("0609608648016503040201")


class TimestampError(WriterError):
    """A timestamp that could not be had or does not hold (the message says why)."""


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _int(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")  # a leading 0 bit
    return _tlv(0x02, raw)


def request(digest: bytes, nonce: int) -> bytes:
    """A DER TimeStampReq (RFC 3161 section 2.4.1) for a SHA-256 digest, asking for the
    authority's certificate in the token."""
    imprint = _tlv(0x30, _tlv(0x30, SHA256_OID + b"\x05\x00") + _tlv(0x04, digest))
    return _tlv(0x30, _int(1) + imprint + _int(nonce) + b"\x01\x01\xff")


def _status(resp: bytes) -> int:
    """The PKIStatus of a DER TimeStampResp (section 2.4.2): 0 granted, 1 with mods."""

    def header(data: bytes, at: int) -> tuple[int, int, int]:  # (tag, body start, length)
        tag, first = data[at], data[at + 1]
        if first < 0x80:
            return tag, at + 2, first
        k = first & 0x7F
        return tag, at + 2 + k, int.from_bytes(data[at + 2:at + 2 + k], "big")

    try:
        tag, body, _n = header(resp, 0)
        tag2, body2, _n2 = header(resp, body)
        tag3, body3, n3 = header(resp, body2)
        if (tag, tag2, tag3) != (0x30, 0x30, 0x02) or not 1 <= n3 <= 4:
            raise ValueError
        return int.from_bytes(resp[body3:body3 + n3], "big")
    except (IndexError, ValueError):
        raise TimestampError("the authority's answer is not a TimeStampResp") from None


def checkpoint_digest(token: bytes) -> bytes:
    """What is stamped: the SHA-256 of a checkpoint as the log holds it (its JWS)."""
    return hashlib.sha256(token.strip()).digest()


def stamps_dir(out_dir: str) -> str:
    return os.path.join(log_dir(out_dir), "timestamps")


def stamp_new(out_dir: str, tsa_url: str) -> int:
    """Stamp every checkpoint of the log that has no timestamp yet: how many were. Raises
    TimestampError when the authority cannot be reached or refuses (the rest wait)."""
    path = os.path.join(log_dir(out_dir), "checkpoints.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        tokens = [line.strip() for line in f if line.strip()]
    import urllib.request  # here: every import and writer process loads this module

    where = stamps_dir(out_dir)
    os.makedirs(where, exist_ok=True)
    done = 0
    for k, token in enumerate(tokens):
        target = os.path.join(where, f"{k}.tsr")
        if os.path.exists(target):
            continue
        body = request(checkpoint_digest(token), secrets.randbits(63))
        req = urllib.request.Request(tsa_url, data=body, method="POST",
                                     headers={"Content-Type": "application/timestamp-query"})
        try:
            with urllib.request.urlopen(req, timeout=TSA_TIMEOUT_S) as r:  # noqa: S310
                resp = r.read(MAX_RESPONSE + 1)
        except OSError as exc:
            raise TimestampError(f"{tsa_url}: {exc}") from None
        if len(resp) > MAX_RESPONSE:
            raise TimestampError(f"{tsa_url}: an answer of more than {MAX_RESPONSE} bytes")
        status = _status(resp)
        if status not in (0, 1):
            raise TimestampError(f"{tsa_url}: the request was refused (PKIStatus {status})")
        tmp = target + ".part"
        with open(tmp, "wb") as f:
            f.write(resp)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        done += 1
    return done


def verify_stamp(token: bytes, tsr_path: str, ca_path: str) -> str:
    """Check a checkpoint's timestamp with OpenSSL against the authority's CA: the time it
    gives (as OpenSSL prints it); TimestampError naming what does not hold."""
    digest = checkpoint_digest(token).hex()
    r = subprocess.run(["openssl", "ts", "-verify", "-digest", digest, "-in", tsr_path,
                        "-CAfile", ca_path], capture_output=True, text=True, check=False)
    if r.returncode != 0 or "Verification: OK" not in r.stdout:
        why = (r.stderr.strip().splitlines() or ["verification failed"])[-1]
        raise TimestampError(f"{os.path.basename(tsr_path)}: does not verify for this "
                             f"checkpoint ({why[:120]})")
    text = subprocess.run(["openssl", "ts", "-reply", "-in", tsr_path, "-text"],
                          capture_output=True, text=True, check=False).stdout
    return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("Time stamp:")), "")
