"""Retention, legal holds and erasure. The policy's ``[retention]`` table says how long each
class of recording is kept; `calltap retention run` removes the recordings past their date
that no legal hold keeps, `calltap erase` removes one now. Each disposal, erasure, hold and
release is an entry of the append-only log, so what went, when and why stays provable;
the catalog forgets the call at once, and a rebuild of it skips what the log says is gone
(translog.gone_calls)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

from calltap.catalog import Query, Scope, call_files, call_key, index_entries, open_catalog
from writer import translog
from writer.keystore import KeyStore, store_dir
from writer.seal import SUFFIX, SealError, key_id_of
from writer.timefmt import parse_time

HOLDS_FILE = os.path.join(".calltap", "holds.json")
NS = 1_000_000_000
# Calls a hold on a search can keep: a search matching more is refused as too wide.
MAX_HELD_BY_SEARCH = 1_000_000


class RetentionError(Exception):
    """A hold, release or erasure that cannot be done (the message says why)."""


@dataclass(frozen=True)
class Disposal:
    key: str
    call_id: str
    retention: str
    expired_ns: int


class Holds:
    """Legal holds in ``OUT/.calltap/holds.json``: on one call, or on every call a search
    finds (its filters as the dashboard's API takes them)."""

    def __init__(self, out: str, catalog_url: str = "") -> None:
        self.out = out
        self.catalog_url = catalog_url
        self.path = os.path.join(out, HOLDS_FILE)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)

    def _locked(self) -> Any:
        f = open(self.path + ".lock", "a")  # noqa: SIM115 - closed by the caller
        fcntl.flock(f, fcntl.LOCK_EX)
        return f

    def load(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data: list[dict[str, Any]] = json.load(f)
                return data
        except FileNotFoundError:
            return []

    def _save(self, holds: list[dict[str, Any]]) -> None:
        tmp = self.path + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(holds, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def add(self, call: str, search: dict[str, str], reason: str, by: str, when: str,
            key_path: str, now_s: float) -> str:
        if bool(call) == bool(search):
            raise RetentionError("a hold is on one call (--call) or on a search (--search)")
        if not reason:
            raise RetentionError("a hold needs a reason (the matter it is for)")
        hid = "h-" + secrets.token_hex(4)
        lock = self._locked()
        try:
            holds = self.load()
            holds.append({"id": hid, "call": call, "search": search, "reason": reason,
                          "by": by, "since": when, "released": None})
            self._save(holds)
        finally:
            lock.close()
        translog.append(self.out, {"type": "hold", "hold": hid, "call": call,
                                   "search": search, "reason": reason, "by": by},
                        key_path, when, now_s)
        return hid

    def release(self, hid: str, by: str, when: str, key_path: str, now_s: float) -> None:
        lock = self._locked()
        try:
            holds = self.load()
            for h in holds:
                if h["id"] == hid and not h["released"]:
                    h["released"] = when
                    break
            else:
                raise RetentionError(f"no hold {hid!r} in force")
            self._save(holds)
        finally:
            lock.close()
        translog.append(self.out, {"type": "release", "hold": hid, "by": by}, key_path,
                        when, now_s)

    def held(self) -> set[str]:
        """Every call a hold in force keeps."""
        keep: set[str] = set()
        active = [h for h in self.load() if not h["released"]]
        if not active:
            return keep
        cat = open_catalog(self.out, self.catalog_url)
        try:
            for h in active:
                if h["call"]:
                    keep.add(h["call"])
                    continue
                q = search_query(h["search"])
                for n, e in enumerate(cat.export(q), 1):
                    keep.add(str(e["id"]))
                    if n > MAX_HELD_BY_SEARCH:
                        raise RetentionError(f"hold {h['id']}: its search finds more than "
                                             f"{MAX_HELD_BY_SEARCH} calls")
        finally:
            cat.close()
        return keep


def search_query(search: dict[str, str]) -> Query:
    """The catalog query of a hold's search (the API's parameter names)."""
    q = Query(limit=500)
    for k, v in search.items():
        if k == "from":
            q.start_from = parse_time(v)
        elif k == "to":
            q.start_to = parse_time(v)
        elif k == "q":
            q.text = v
        elif k in ("party", "party_mode", "cidr", "status", "end_reason", "codec", "dtmf",
                   "group", "rule"):
            setattr(q, k, v)
        elif k == "prefix":  # a number prefix of either party, as a user's scope
            q.scope = Scope(prefixes=(v,))
        else:
            raise RetentionError(f"search: unknown filter {k!r}")
    return q


def due(out: str, classes: dict[str, int], now_ns: int) -> list[Disposal]:
    """Calls past their class's period (from the call's start), not yet gone. A call whose
    class the policy does not define is kept (and not reported here)."""
    done = translog.gone_calls(out)
    seen: dict[str, Disposal] = {}
    for e in index_entries(out):
        key = call_key(e)
        if key in done:
            continue
        cls = e.get("retention") or "default"
        period = classes.get(cls)
        start = parse_time(e.get("start") or "")
        if period is None or start is None:
            seen.pop(key, None)
            continue
        expires = start + period * NS
        if expires <= now_ns:
            seen[key] = Disposal(key, e.get("call_id", ""), cls, expires)
        else:
            seen.pop(key, None)
    return sorted(seen.values(), key=lambda d: d.expired_ns)


def remove_call(out: str, key: str, key_store: str = "", catalog_url: str = ""
                ) -> tuple[list[str], str | None]:
    """Delete a sealed call's data key from the key store (which leaves every copy of its
    files unreadable, backups included), then every file of the call (found by its index
    line) and its catalog row: the files removed, relative to ``out``, and the key id."""
    entry = next((e for e in index_entries(out) if call_key(e) == key), None)
    if entry is None:
        raise RetentionError(f"{key}: no such call in {os.path.join(out, 'index.jsonl')}")
    files = call_files(out, entry)
    key_id = (entry.get("encrypted") or {}).get("key_id")
    if key_id:  # the index line's key and each file's (a call written again has a new one)
        ids = {key_id}
        for rel in files:
            if rel.endswith(SUFFIX):
                with contextlib.suppress(SealError):
                    ids.add(key_id_of(os.path.join(out, rel)).hex())
        store = KeyStore(store_dir(out, key_store))
        for k in sorted(ids):
            store.erase(k)
        key_id = ",".join(sorted(ids))
    for rel in files:
        os.unlink(os.path.join(out, rel))
    cat = open_catalog(out, catalog_url)
    try:
        cat.remove(key)
    finally:
        cat.close()
    return files, key_id


def dispose(out: str, d: Disposal, key_path: str, when: str, now_s: float,
            key_store: str = "", catalog_url: str = "") -> list[str]:
    files, key_id = remove_call(out, d.key, key_store, catalog_url)
    translog.append(out, {"type": "disposal", "call": d.key, "call_id": d.call_id,
                          "retention": d.retention, "files": files,
                          **({"key_erased": key_id} if key_id else {})},
                    key_path, when, now_s)
    return files


def erase(out: str, key: str, reason: str, by: str, key_path: str, when: str,
          now_s: float, key_store: str = "", catalog_url: str = "") -> list[str]:
    """Remove one call now (a data subject's erasure request), unless a hold keeps it."""
    if not reason:
        raise RetentionError("an erasure needs a reason")
    if key in translog.gone_calls(out):
        raise RetentionError(f"{key}: already gone")
    if key in Holds(out, catalog_url).held():
        raise RetentionError(f"{key}: a legal hold keeps it; release the hold first")
    files, key_id = remove_call(out, key, key_store, catalog_url)
    translog.append(out, {"type": "erasure", "call": key, "reason": reason, "by": by,
                          "files": files, **({"key_erased": key_id} if key_id else {})},
                    key_path, when, now_s)
    return files
