"""The recordings' append-only log, in the style of RFC 9162: every manifest written (and,
later, every erasure and disposal) is one line of ``OUT/.calltap/log/entries.jsonl``, a
leaf of a Merkle tree; signed checkpoints (tree size, root hash, time) are appended to
``checkpoints.jsonl`` every CHECKPOINT_EVERY entries or CHECKPOINT_S seconds and when a
writer stops. A removed, reordered or rewritten entry no longer hashes to the roots the
checkpoints signed. Writers in several processes append in turn (a lock file)."""

from __future__ import annotations

import fcntl
import json
import os
from typing import Any

from writer.errors import WriterError
from writer.manifest import ALG, load_key
from writer.merkle import Frontier, leaf_hash

LOG_DIR = os.path.join(".calltap", "log")
# A checkpoint after this many entries at most (a verifier checks the newer ones only
# against the manifests on disk until the next one).
CHECKPOINT_EVERY = 256
# ... or after this many seconds with entries not covered.
CHECKPOINT_S = 60.0


def log_dir(out_dir: str) -> str:
    return os.path.join(out_dir, LOG_DIR)


class _Locked:
    """The log directory, held by this process until closed."""

    def __init__(self, out_dir: str) -> None:
        self.dir = log_dir(out_dir)
        os.makedirs(self.dir, exist_ok=True)
        self.lock = open(os.path.join(self.dir, "lock"), "a")  # noqa: SIM115 - closed below
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.entries = os.path.join(self.dir, "entries.jsonl")
        self.checkpoints = os.path.join(self.dir, "checkpoints.jsonl")
        self.state_path = os.path.join(self.dir, "state.json")
        self.state = self._state()

    def _state(self) -> dict[str, Any]:
        size = os.path.getsize(self.entries) if os.path.exists(self.entries) else 0
        try:
            with open(self.state_path, encoding="utf-8") as f:
                st: dict[str, Any] = json.load(f)
            if st.get("bytes") == size:
                return st
        except (OSError, ValueError):
            pass
        return self._rebuild(size)

    def _rebuild(self, size: int) -> dict[str, Any]:
        """The state from the entries themselves (after a crash between an append and the
        state's update); a torn last line, never acknowledged, is cut off."""
        fr = Frontier()
        good = 0
        if size:
            with open(self.entries, "rb") as f:
                data = f.read()
            for line in data.split(b"\n")[:-1]:
                fr.append(leaf_hash(line))
                good += len(line) + 1
            if good != size:
                with open(self.entries, "r+b") as f:
                    f.truncate(good)
        last = _last_checkpoint(self.checkpoints)
        return {"bytes": good, "size": fr.size, "frontier": [h.hex() for h in fr.hashes],
                "checkpoint_size": last.get("size", 0), "checkpoint_at": 0.0}

    def frontier(self) -> Frontier:
        return Frontier(self.state["size"], [bytes.fromhex(h) for h in self.state["frontier"]])

    def save(self, durable: bool) -> None:
        tmp = self.state_path + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.state, f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def close(self) -> None:
        self.lock.close()


def _last_checkpoint(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        lines = [x for x in f.read().split(b"\n") if x.strip()]
    if not lines:
        return {}
    try:
        payload = lines[-1].split(b".")[1]
        import base64

        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + b"=" * (
            -len(payload) % 4)))
        return data
    except (IndexError, ValueError):
        return {}


def _sign_checkpoint(log: _Locked, key_path: str, when: str, durable: bool) -> None:
    from joserfc import jws

    fr = log.frontier()
    body = json.dumps({"size": fr.size, "root": fr.root().hex(), "at": when},
                      sort_keys=True, separators=(",", ":")).encode()
    token = jws.serialize_compact({"alg": ALG, "typ": "calltap-checkpoint+jws"}, body,
                                  load_key(key_path, True), algorithms=[ALG])
    with open(log.checkpoints, "ab") as f:
        f.write(token.encode() + b"\n")
        if durable:
            f.flush()
            os.fsync(f.fileno())
    log.state["checkpoint_size"] = fr.size


def append(out_dir: str, entry: dict[str, Any], key_path: str, when: str, now_s: float,
           durable: bool = True) -> int:
    """Append one entry (its ``seq`` and ``at`` are set here); a checkpoint follows when
    one is due and a key is given. Returns the entry's sequence number."""
    log = _Locked(out_dir)
    try:
        fr = log.frontier()
        line = json.dumps({"seq": fr.size, "at": when, **entry}, sort_keys=True,
                          separators=(",", ":")).encode()
        if b"\n" in line:
            raise WriterError("a log entry must be one line")
        with open(log.entries, "ab") as f:
            f.write(line + b"\n")
            if durable:
                f.flush()
                os.fsync(f.fileno())
        fr.append(leaf_hash(line))
        st = log.state
        st.update(bytes=st["bytes"] + len(line) + 1, size=fr.size,
                  frontier=[h.hex() for h in fr.hashes])
        if not st.get("checkpoint_at"):
            st["checkpoint_at"] = now_s
        if key_path and (fr.size - st["checkpoint_size"] >= CHECKPOINT_EVERY
                         or now_s - st["checkpoint_at"] >= CHECKPOINT_S):
            _sign_checkpoint(log, key_path, when, durable)
            st["checkpoint_at"] = now_s
        log.save(durable)
        return fr.size - 1
    finally:
        log.close()


def checkpoint(out_dir: str, key_path: str, when: str, now_s: float,
               durable: bool = True) -> bool:
    """Sign a checkpoint if entries were appended since the last one (a writer stopping,
    an import ending): whether one was written."""
    if not os.path.isdir(log_dir(out_dir)):
        return False
    log = _Locked(out_dir)
    try:
        if log.state["size"] <= log.state.get("checkpoint_size", 0):
            return False
        _sign_checkpoint(log, key_path, when, durable)
        log.state["checkpoint_at"] = now_s
        log.save(durable)
        return True
    finally:
        log.close()


def gone_calls(out_dir: str) -> set[str]:
    """Calls (their stems) the log says were disposed of or erased."""
    path = os.path.join(log_dir(out_dir), "entries.jsonl")
    found: set[str] = set()
    if os.path.exists(path):
        with open(path, "rb") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("type") in ("disposal", "erasure"):
                    found.add(str(e.get("call")))
    return found
