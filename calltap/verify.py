"""``calltap verify``: every recording against its signed manifest, and the append-only log
against its signed checkpoints (RFC 9162 roots, inclusion and consistency proofs). Each
problem is one line naming the call and file, or the log entry or checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from calltap.catalog import call_key, index_entries
from writer import manifest
from writer.errors import WriterError
from writer.merkle import (
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
)
from writer.timestamps import TimestampError, stamps_dir, verify_stamp
from writer.translog import gone_calls, log_dir


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    calls: int = 0
    files: int = 0
    entries: int = 0
    checkpoints: int = 0
    uncovered: int = 0
    """Log entries after the last checkpoint (checked against the manifests only)."""
    gone: int = 0
    """Calls disposed of or erased (the log says when and why)."""
    stamped: int = 0
    """Checkpoints whose RFC 3161 timestamp verified."""
    unstamped: int = 0
    """Checkpoints without a timestamp (with ``tsa_ca``)."""


def _index(out: str) -> dict[str, dict[str, Any]]:
    return {call_key(e): e for e in index_entries(out)}


def verify_calls(out: str, public_key: str, only: str = "", report: Report | None = None
                 ) -> Report:
    """Each call's files against its signed manifest (or only the call ``only``: its id or
    Call-ID)."""
    rep = report or Report()
    removed = gone_calls(out)
    for key, e in _index(out).items():
        if only and only not in (key, e.get("call_id")):
            continue
        if key in removed:  # disposed of or erased, as the log records
            rep.gone += 1
            continue
        rep.calls += 1
        rel = e.get("manifest") or os.path.join(os.path.dirname(e["summary"]),
                                                key + ".manifest.jws")
        path = os.path.join(out, rel)
        if not os.path.exists(path):
            rep.problems.append(f"{key}: {rel}: manifest missing")
            continue
        try:
            with open(path, "rb") as f:
                signed = manifest.verify(f.read(), public_key)
        except WriterError as exc:
            rep.problems.append(f"{key}: {rel}: {exc}")
            continue
        if (signed.get("call") or {}).get("stem") != key:
            rep.problems.append(f"{key}: {rel}: the manifest is another call's")
            continue
        folder = os.path.dirname(rel)
        named = {rel}
        for item in signed.get("files") or []:
            frel = os.path.join(folder, str(item.get("name")))
            named.add(frel)
            rep.files += 1
            fpath = os.path.join(out, frel)
            if not os.path.exists(fpath):
                rep.problems.append(f"{key}: {frel}: missing")
                continue
            digest, size = manifest.file_digest(fpath)
            if digest != item.get("sha256") or size != item.get("size"):
                rep.problems.append(f"{key}: {frel}: altered (its SHA-256 is not the signed "
                                    "one)")
        for name in sorted(os.listdir(os.path.join(out, folder))):
            frel = os.path.join(folder, name)
            if name.startswith(key + ".") and frel not in named:
                rep.problems.append(f"{key}: {frel}: not in the signed manifest")
    if only and not rep.calls:
        rep.problems.append(f"{only}: no such call in {os.path.join(out, 'index.jsonl')}")
    return rep


def read_log(out: str) -> tuple[list[bytes], list[bytes]]:
    """(entry lines, checkpoint tokens) as stored."""
    d = log_dir(out)
    lines: list[bytes] = []
    tokens: list[bytes] = []
    for name, into in (("entries.jsonl", lines), ("checkpoints.jsonl", tokens)):
        p = os.path.join(d, name)
        if os.path.exists(p):
            with open(p, "rb") as f:
                into += [x for x in f.read().split(b"\n") if x]
    return lines, tokens


def verify_log(out: str, public_key: str, report: Report | None = None,
               tsa_ca: str = "") -> Report:
    """The log: entries in sequence, every checkpoint's signature and root, consistency
    from each checkpoint to the next, each call's newest entry against its manifest. A
    root that matches covers every entry under it, so no per-call inclusion proof is
    computed here (``proof_for`` gives one to an auditor without the log)."""
    rep = report or Report()
    lines, tokens = read_log(out)
    rep.entries = len(lines)
    if not lines and not tokens:
        rep.problems.append(f"{log_dir(out)}: no log (recordings were not signed)")
        return rep
    leaves = [leaf_hash(x) for x in lines]
    newest: dict[str, tuple[int, dict[str, Any]]] = {}
    for pos, line in enumerate(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            rep.problems.append(f"log entry {pos}: not readable (rewritten?)")
            continue
        if entry.get("seq") != pos:
            rep.problems.append(f"log entry {pos}: says it is entry {entry.get('seq')}: "
                                "entries removed or reordered")
        if entry.get("type") == "manifest":
            newest[str(entry.get("call"))] = (pos, entry)
        elif entry.get("type") in ("disposal", "erasure"):
            newest.pop(str(entry.get("call")), None)
    signed: list[tuple[int, int, bytes]] = []  # (checkpoint, size, root)
    for k, token in enumerate(tokens):
        try:
            cp = manifest.verify(token, public_key)
            signed.append((k, int(cp["size"]), bytes.fromhex(cp["root"])))
        except (WriterError, KeyError, ValueError) as exc:
            rep.problems.append(f"checkpoint {k}: {exc}")
    # the tree's root at each signed size, from one pass over the leaves
    wanted = {size for _k, size, _r in signed}
    roots: dict[int, bytes] = {0: root([])} if 0 in wanted else {}
    fr = Frontier()
    for leaf in leaves:
        fr.append(leaf)
        if fr.size in wanted:
            roots[fr.size] = fr.root()
    if tsa_ca:  # each checkpoint's RFC 3161 timestamp, with the authority's CA
        for k, token in enumerate(tokens):
            tsr = os.path.join(stamps_dir(out), f"{k}.tsr")
            if not os.path.exists(tsr):
                rep.unstamped += 1
                continue
            try:
                verify_stamp(token, tsr, tsa_ca)
                rep.stamped += 1
            except TimestampError as exc:
                rep.problems.append(f"checkpoint {k}: timestamp {exc}")
    prev: tuple[int, bytes] | None = None
    for k, size, signed_root in signed:
        rep.checkpoints += 1
        if size > len(leaves):
            rep.problems.append(f"checkpoint {k}: signed {size} entries, the log has "
                                f"{len(leaves)}: entries removed")
            continue
        if roots[size] != signed_root:
            lo = prev[0] if prev else 0
            rep.problems.append(f"checkpoint {k}: log entries {lo}-{size - 1} do not hash to "
                                "its signed root: one was removed, reordered or rewritten")
            continue
        if prev is not None and prev[0] > 0:
            try:
                verify_consistency(prev[0], size, prev[1], signed_root,
                                   consistency_proof(prev[0], leaves[:size]))
            except ProofError as exc:
                rep.problems.append(f"checkpoint {k}: not consistent with checkpoint "
                                    f"{k - 1}: {exc}")
        prev = (size, signed_root)
    covered = prev[0] if prev else 0
    rep.uncovered = len(lines) - covered
    for call, (pos, entry) in sorted(newest.items()):
        path = os.path.join(out, str(entry.get("manifest", "")))
        if not os.path.exists(path):
            rep.problems.append(f"log entry {pos}: {call}: its manifest is gone (the "
                                "recording was deleted?)")
            continue
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != entry.get("sha256"):
                rep.problems.append(f"log entry {pos}: {call}: the manifest on disk is not "
                                    "the one logged")
    return rep


def proof_for(out: str, public_key: str, call: str) -> dict[str, Any]:
    """An inclusion proof of a call's newest log entry under the newest checkpoint, for an
    auditor to check without the log (RFC 9162 section 2.1.3)."""
    lines, tokens = read_log(out)
    pos = next((i for i in range(len(lines) - 1, -1, -1)
                if json.loads(lines[i]).get("call") == call), -1)
    if pos < 0:
        raise WriterError(f"{call}: not in the log")
    if not tokens:
        raise WriterError("the log has no checkpoint yet")
    cp = manifest.verify(tokens[-1], public_key)
    size = int(cp["size"])
    if pos >= size:
        raise WriterError(f"{call}: logged after the newest checkpoint; try again later")
    leaves = [leaf_hash(x) for x in lines[:size]]
    return {"entry": lines[pos].decode(), "leaf_index": pos, "tree_size": size,
            "root": cp["root"], "checkpoint": tokens[-1].decode(),
            "inclusion_path": [h.hex() for h in inclusion_proof(pos, leaves)]}
