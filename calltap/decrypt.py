"""``calltap decrypt``: a sealed output directory's recordings restored to plain files
under another directory, in the same layout, with the private key, and their index lines
(without the sealing fields and the manifest, which names the sealed files) in its
``index.jsonl``. Each restored file is checked against the plain digest its signed
manifest records, when there is one."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from calltap.catalog import call_files, call_key, index_entries
from writer.keystore import KeyStore, store_dir
from writer.output import append_index, tmp_name
from writer.seal import SUFFIX, SealedReader, SealError, key_id_of, load_private


@dataclass
class Restored:
    calls: int = 0
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


def _manifest_digests(out: str, rel: str | None) -> dict[str, str]:
    """name -> plain SHA-256 from a call's manifest (read, not verified: `calltap verify`
    checks its signature)."""
    if not rel:
        return {}
    import base64

    try:
        with open(os.path.join(out, rel), "rb") as f:
            payload = f.read().split(b".")[1]
        doc = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        return {x["name"]: x["plain_sha256"] for x in doc["files"] if "plain_sha256" in x}
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return {}


def decrypt(out: str, private_key: str, dest: str, call: str = "",
            key_store: str = "") -> Restored:
    """Restore every sealed call of ``out`` (or the one named) under ``dest``."""
    if os.path.realpath(dest) == os.path.realpath(out):
        raise SealError("decrypt into another directory than the sealed one")
    private = load_private(private_key)
    store = KeyStore(store_dir(out, key_store))
    rep = Restored()
    for e in index_entries(out):
        if call and call not in (call_key(e), e.get("call_id")):
            continue
        sealed = e.get("encrypted")
        if not sealed:
            continue
        digests = _manifest_digests(out, e.get("manifest"))
        rel_dir = os.path.dirname(e["summary"])
        os.makedirs(os.path.join(dest, rel_dir), exist_ok=True)
        rep.calls += 1
        restored_all = True
        for rel in call_files(out, e):
            if not rel.endswith(SUFFIX):
                continue
            name = os.path.basename(rel)
            plain_name = name[:-len(SUFFIX)]
            target = os.path.join(dest, rel_dir, plain_name)
            try:
                # the file's header names its key (a call written again has a new one)
                data_key = store.data_key(key_id_of(os.path.join(out, rel)).hex(), private)
                h = hashlib.sha256()
                with SealedReader(os.path.join(out, rel), data_key) as r, \
                        open(tmp_name(target), "wb") as f:
                    for block in r:
                        f.write(block)
                        h.update(block)
                    rep.bytes += r.size
                want = digests.get(name)
                if want and want != h.hexdigest():
                    rep.problems.append(f"{rel_dir}/{plain_name}: restored bytes differ from "
                                        "the manifest's plain digest")
                os.replace(tmp_name(target), target)
                rep.files += 1
            except (SealError, OSError) as exc:
                if os.path.exists(tmp_name(target)):
                    os.unlink(tmp_name(target))
                rep.problems.append(f"{rel_dir}/{name}: {exc}")
                restored_all = False
        if restored_all:  # the copy is an output directory of its own (search, export)
            plain = {k: v for k, v in e.items()
                     if k not in ("encrypted", "search_fields", "manifest")}
            append_index(dest, plain, durable=False)
    return rep
