"""Recording-ready webhooks: each line ``index.jsonl`` gains (one written call) is POSTed to
a configured URL, signed with HMAC-SHA256 over the body, in order, retried with backoff
until the receiver takes it. The position reached is kept on disk after each delivery, so
a receiver or sender that is down loses nothing: delivery resumes where it stopped. A
delivery id (the line's byte offset) lets a receiver drop the rare repeat after a crash
between a delivery and its bookkeeping."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from calltap.log import log

SIGNATURE_HEADER = "X-Calltap-Signature"
DELIVERY_HEADER = "X-Calltap-Delivery"
# A receiver that has not answered within this is counted as down (then retried).
POST_TIMEOUT_S = 10.0
# Retries start after this and double while the receiver stays down, up to the max.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 5.0
# How often the index is looked at for new lines.
POLL_S = 0.2
# An index line longer than this is not a call's line (a damaged file): skipped, logged.
MAX_LINE = 1 << 20


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Counters:
    delivered: int = 0
    failures: int = 0
    """POSTs that failed (refused, timed out, not 2xx): each retry that fails counts."""
    skipped: int = 0
    backlog_bytes: int = 0


class WebhookSender:
    """Follows ``out_dir``'s index and delivers its new lines to ``url``. One sender per
    output directory and URL runs at a time (a lock on its state file)."""

    def __init__(self, out_dir: str, url: str, secret: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url {url!r}: an http:// or https:// URL")
        self.out = out_dir
        self.url = url
        parts = urllib.parse.urlsplit(url)
        self.where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port
                                                              else "")
        """The receiver for logs: its path and query may hold a secret, so never logged."""
        self.secret = secret
        self.index = os.path.join(out_dir, "index.jsonl")
        state_dir = os.path.join(out_dir, ".calltap")
        os.makedirs(state_dir, exist_ok=True)
        tag = hashlib.sha256(url.encode()).hexdigest()[:12]
        self.state_path = os.path.join(state_dir, f"webhook-{tag}.json")
        self._lock = open(self.state_path + ".lock", "a")  # noqa: SIM115 - held while running
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another webhook sender for {self.where} runs on "
                               f"{out_dir}") from None
        self.counters = Counters()
        self.offset = self._load()
        self.stopping = False
        self._backoff = BACKOFF_FIRST_S

    def _load(self) -> int:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                return int(json.load(f)["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            # first start: recordings from now on (an archive's past is not re-announced)
            try:
                return os.path.getsize(self.index)
            except OSError:
                return 0

    def _save(self) -> None:
        tmp = self.state_path + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"offset": self.offset, "receiver": self.where}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def post(self, body: bytes, delivery: int) -> bool:
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "calltap-webhook",
            SIGNATURE_HEADER: signature(self.secret, body), DELIVERY_HEADER: str(delivery)})
        try:
            with urllib.request.urlopen(req, timeout=POST_TIMEOUT_S) as r:  # noqa: S310
                ok = 200 <= int(r.status) < 300
        except (urllib.error.URLError, OSError, ValueError) as exc:
            ok = False
            why = str(getattr(exc, "reason", exc))
        else:
            why = "" if ok else "not a 2xx answer"
        if not ok:
            self.counters.failures += 1
            log("webhooks", "delivery failed; retrying", "warning", receiver=self.where,
                delivery=delivery, error=why[:200], retry_in_s=self._backoff)
        return ok

    def pending(self) -> list[tuple[int, bytes]]:
        """Complete lines after the position reached: (offset, line without newline)."""
        try:
            size = os.path.getsize(self.index)
        except OSError:
            return []
        if size < self.offset:  # the index was replaced: follow the new one from its end
            log("webhooks", "index.jsonl shrank; following it from its end", "warning",
                file=self.index)
            self.offset = size
            self._save()
        self.counters.backlog_bytes = size - self.offset
        if size == self.offset:
            return []
        with open(self.index, "rb") as f:
            f.seek(self.offset)
            data = f.read(min(size - self.offset, 64 * MAX_LINE))
        lines: list[tuple[int, bytes]] = []
        at = self.offset
        while (end := data.find(b"\n", at - self.offset)) >= 0:
            lines.append((at, data[at - self.offset:end]))
            at = self.offset + end + 1
        if not lines and len(data) >= MAX_LINE:  # no newline in a megabyte: damaged
            self.counters.skipped += 1
            self.offset += len(data)
            self._save()
        return lines

    def step(self, sleep: bool = True) -> int:
        """Deliver what is waiting, in order; stop at the first failure (after its
        backoff). Returns the lines delivered."""
        done = 0
        for at, line in self.pending():
            if self.stopping:
                break
            if line.strip():
                if not self.post(line, at):
                    if sleep:
                        self._sleep(self._backoff)
                    self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)
                    return done
                self.counters.delivered += 1
                done += 1
            self._backoff = BACKOFF_FIRST_S
            self.offset = at + len(line) + 1
            self._save()
        return done

    def _sleep(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < until:
            time.sleep(min(POLL_S, until - time.monotonic()))

    def run(self) -> None:
        log("webhooks", "delivering recording-ready events", receiver=self.where,
            file=self.index,
            offset=self.offset)
        while not self.stopping:
            if not self.step():
                self._sleep(POLL_S)

    def close(self) -> None:
        self._lock.close()
