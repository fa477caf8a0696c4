"""Object storage (S3, through boto3): where recordings and finished spools rest so that they
outlive any one disk and writers on other hosts can reach them.

Every object is written once (``If-None-Match: *``) with its SHA-256, which S3 checks on
arrival and keeps; a download is checked against it. What is to be uploaded waits on the
local disk in a queue directory, one task file per upload, taken up again after a restart
and retried with backoff while the storage is away: nothing waits only in memory."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from writer.errors import WriterError
from writer.manifest import HASH_CHUNK, file_digest

# Retry delays of an upload while the storage is away (seconds).
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 8.0
# A request the storage has not answered this long is given up and retried (a stalled
# server must not hold the queue for long).
READ_TIMEOUT_S = 5
# How often an idle uploader looks at its queue directory for tasks another run left.
SCAN_S = 1.0


class StorageError(WriterError):
    """An object that cannot be stored or fetched as it should (the message says which)."""


def sha256_b64(path: str) -> str:
    """A file's SHA-256, base64 (as S3's ChecksumSHA256)."""
    return base64.b64encode(bytes.fromhex(file_digest(path)[0])).decode()


class S3Store:
    """A bucket and key prefix, from ``s3://BUCKET/PREFIX``."""

    def __init__(self, url: str, endpoint_url: str = "", region: str = "") -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise StorageError(f"{url!r}: expected s3://BUCKET[/PREFIX]")
        import boto3
        from botocore.config import Config as BotoConfig

        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        # short timeouts and no retries of its own: the uploader retries from disk
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or "us-east-1",
            config=BotoConfig(connect_timeout=2, read_timeout=READ_TIMEOUT_S,
                              retries={"total_max_attempts": 1, "mode": "standard"}))

    def key(self, rel: str) -> str:
        return self.prefix + rel.replace(os.sep, "/")

    def put_file(self, rel: str, path: str) -> str:
        """Store ``path`` as ``rel``, write-once, with its SHA-256 (S3 refuses a body that
        does not match it); the checksum. Storing the same bytes again is no error (a
        retried upload); other bytes under a stored name are."""
        from botocore.exceptions import ClientError

        digest = sha256_b64(path)
        try:
            with open(path, "rb") as f:
                self.client.put_object(Bucket=self.bucket, Key=self.key(rel), Body=f,
                                       ChecksumAlgorithm="SHA256", ChecksumSHA256=digest,
                                       IfNoneMatch="*")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            have = self.checksum(rel)
            if have != digest:
                raise StorageError(f"{self.key(rel)}: already stored with other content "
                                   f"(sha256 {have}, not {digest})") from None
        return digest

    def checksum(self, rel: str) -> str | None:
        """The stored SHA-256 of ``rel``; None when nothing is stored under it."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(rel),
                                           ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        value: str | None = head.get("ChecksumSHA256")
        return value

    def get_file(self, rel: str, dest: str) -> None:
        """Fetch ``rel`` into ``dest``, checked against its stored SHA-256."""
        got = self.client.get_object(Bucket=self.bucket, Key=self.key(rel),
                                     ChecksumMode="ENABLED")
        want = got.get("ChecksumSHA256")
        tmp = dest + ".part"
        h = hashlib.sha256()
        with open(tmp, "wb") as f:
            for block in got["Body"].iter_chunks(HASH_CHUNK):
                f.write(block)
                h.update(block)
        if want and base64.b64encode(h.digest()).decode() != want:
            os.unlink(tmp)
            raise StorageError(f"{self.key(rel)}: fetched bytes differ from the stored "
                               "SHA-256")
        os.replace(tmp, dest)

    def delete(self, rel: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(rel))

    def list(self, prefix: str = "") -> list[str]:
        """Every stored name under ``prefix`` (relative to the store's prefix)."""
        names: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.key(prefix))
        for page in pages:
            names += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
        return names


class Uploader:
    """Uploads from a queue directory on the local disk, in order, in a thread.

    A task is ``{"files": [[rel, path], ...], "remove": bool, "then": {...}}``: the files
    are stored under their names (and removed locally afterwards with ``remove``), then
    ``on_done(task["then"])`` runs. A task file is written (and synced) before ``add``
    returns and deleted only when its files are stored, so a crash or an outage of the
    storage loses nothing."""

    def __init__(self, store: S3Store, queue_dir: str,
                 on_done: Callable[[dict[str, Any]], None] | None = None,
                 name: str = "uploader") -> None:
        self.store = store
        self.queue_dir = queue_dir
        os.makedirs(queue_dir, exist_ok=True)
        self.on_done = on_done
        self.uploaded = 0
        self.failures = 0
        self.up = True
        self._seq = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Uploader:
        self._thread.start()
        return self

    def add(self, files: list[tuple[str, str]], remove: bool,
            then: dict[str, Any] | None = None) -> None:
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.json"
        tmp = os.path.join(self.queue_dir, "." + name)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"files": files, "remove": remove, "then": then or {}}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.queue_dir, name))
        self._wake.set()

    def waiting(self) -> int:
        return sum(1 for n in os.listdir(self.queue_dir) if n.endswith(".json")
                   and not n.startswith("."))

    def _run(self) -> None:
        delay = RETRY_FIRST_S
        while not self._stop:
            names = sorted(n for n in os.listdir(self.queue_dir)
                           if n.endswith(".json") and not n.startswith("."))
            if not names:
                self._wake.wait(SCAN_S)
                self._wake.clear()
                continue
            try:
                self._do(os.path.join(self.queue_dir, names[0]))
                delay = RETRY_FIRST_S
                if not self.up:
                    self.up = True
                    _log("object storage reachable again", store=self.store.url)
            except StorageError as exc:  # wrong content under a name: kept for a person
                self.failures += 1
                _log("upload refused; task set aside", "error", task=names[0],
                     error=str(exc))
                os.replace(os.path.join(self.queue_dir, names[0]),
                           os.path.join(self.queue_dir, names[0] + ".failed"))
            except Exception as exc:  # noqa: BLE001 - the storage is away: retry later
                self.failures += 1
                if self.up:
                    self.up = False
                    _log("object storage unreachable; uploads wait on disk", "warning",
                         store=self.store.url, error=str(exc)[:200])
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(RETRY_MAX_S, delay * 2)

    def _do(self, task_path: str) -> None:
        with open(task_path, encoding="utf-8") as f:
            task = json.load(f)
        for rel, path in task["files"]:
            if os.path.exists(path):
                self.store.put_file(rel, path)
            elif self.store.checksum(rel) is None:  # gone locally and not stored
                raise StorageError(f"{path}: missing, and {rel} is not stored")
        if self.on_done is not None:
            self.on_done(task["then"])
        if task["remove"]:
            for _rel, path in task["files"]:
                if os.path.exists(path):
                    os.unlink(path)
        os.unlink(task_path)
        self.uploaded += 1

    def stop(self, deadline_s: float) -> None:
        """Stop after the queue is empty or ``deadline_s`` passed (what is left stays on
        disk for the next start)."""
        end = time.monotonic() + deadline_s
        while self.waiting() and time.monotonic() < end and self._thread.is_alive():
            self._wake.set()
            time.sleep(0.05)
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)


def _log(msg: str, level: str = "info", **fields: Any) -> None:
    import sys

    print(json.dumps({"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "level": level, "component": "storage", "msg": msg, **fields}),
          file=sys.stderr, flush=True)
