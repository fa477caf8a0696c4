"""The live processes' side of object storage: a writer's recordings and index segments go
to the bucket through its disk-backed upload queue, a job's spools come from it."""

from __future__ import annotations

import os
import time
from typing import Any

from calltap.catalog import call_files
from calltap.config import Config
from writer.storage import S3Store, Uploader

# A writer's index lines per segment object, and the longest a line waits for its segment
# to be stored (S3 cannot append: the index is these immutable segments, in order).
SEGMENT_LINES = 500
SEGMENT_S = 60.0


def store_from(cfg: Config) -> S3Store | None:
    return S3Store(cfg.storage_url, cfg.s3_endpoint_url, cfg.s3_region) \
        if cfg.storage_url else None


class WriterStorage:
    """A writer's uploads: each call's files once written, and its index lines in
    segments ``index/<writer>/<first line's time>.jsonl``."""

    def __init__(self, store: S3Store, out: str, writer: str) -> None:
        self.store = store
        self.out = out
        self.writer = writer
        state = os.path.join(out, ".calltap")
        self.uploader = Uploader(store, os.path.join(state, "upload-queue"),
                                 name="writer-uploads").start()
        self.segments = os.path.join(state, "segments")
        self.fetched = os.path.join(state, "fetched")
        os.makedirs(self.segments, exist_ok=True)
        os.makedirs(self.fetched, exist_ok=True)
        self._segment: str | None = None
        self._lines = 0
        self._opened = 0.0

    def written(self, entry: dict[str, Any], line: str) -> None:
        """A call is on the local disk: its files to the store, its line to a segment."""
        # each file under its name in the output directory
        self.uploader.add([(rel, os.path.join(self.out, rel))
                           for rel in call_files(self.out, entry)], remove=False)
        if self._segment is None:
            self._segment = os.path.join(self.segments,
                                         f"{self.writer}-{time.time_ns():020d}.jsonl")
            self._lines, self._opened = 0, time.monotonic()
        with open(self._segment, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._lines += 1
        self.rotate()

    def rotate(self, force: bool = False) -> None:
        """A full or old segment (any, with ``force``) goes to the store."""
        if self._segment is None or not (force or self._lines >= SEGMENT_LINES
                                         or time.monotonic() - self._opened >= SEGMENT_S):
            return
        name = os.path.basename(self._segment)
        self.uploader.add([(f"index/{self.writer}/{name}", self._segment)], remove=True)
        self._segment = None

    def fetch(self, obj: str) -> str:
        """A job's spool from the store, into the local fetch directory."""
        dest = os.path.join(self.fetched, obj.replace("/", "_"))
        if not os.path.exists(dest):
            self.store.get_file(obj, dest)
        return dest

    def close(self, deadline_s: float) -> None:
        self.rotate(force=True)
        self.uploader.stop(deadline_s)
