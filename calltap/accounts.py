"""Who may use the dashboard, and what they did: users with roles and visibility limits,
API tokens, login sessions, share links and the audit log, in one SQLite file readable
only by its owner. Passwords are hashed with Argon2id; tokens, session ids and share ids
are random and stored as SHA-256 hashes, so the file never holds a usable secret but its
signing key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from calltap.catalog import Scope

ACCESS_VERSION = 1
# What each role may do; each role has the one before's rights.
ROLES = ("viewer", "listener", "investigator", "admin")
RIGHTS = ("read", "audio", "share", "evidence", "admin")
ROLE_RIGHTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "listener": frozenset({"read", "audio", "share"}),
    "investigator": frozenset({"read", "audio", "share", "evidence"}),
    "admin": frozenset(RIGHTS),
}
# A login lasts this long (then the user signs in again).
SESSION_TTL_S = 12 * 3600
# A token or share link lives at most this long: a year (longer is a standing credential).
MAX_TTL_S = 366 * 86400
# Audit entries returned by one read (a page; the export streams them all).
AUDIT_PAGE = 1000
# Passwords shorter than this are refused.
MIN_PASSWORD = 10

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY, hash TEXT NOT NULL, role TEXT NOT NULL,
  prefixes TEXT NOT NULL, cidrs TEXT NOT NULL, groups TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL, user TEXT NOT NULL, scopes TEXT NOT NULL,
  expires REAL NOT NULL, created TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sessions (
  hash TEXT PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS shares (
  id TEXT PRIMARY KEY, call TEXT NOT NULL, user TEXT NOT NULL, scope TEXT NOT NULL,
  mask INTEGER NOT NULL, expires REAL NOT NULL, created TEXT NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL, addr TEXT NOT NULL, outcome TEXT NOT NULL);
"""

SHARE_SCOPES = ("audio", "audio+metadata")


class AccessError(Exception):
    """A user, token or share that cannot be created or used (the message says why)."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, with what rights, over which calls."""

    name: str
    role: str
    rights: frozenset[str]
    scope: Scope = field(default_factory=Scope)
    via: str = "session"
    """session, token, share or open (no users configured: loopback only)."""
    csrf: str = ""
    share_call: str = ""
    share_mask: bool = False

    def can(self, right: str) -> bool:
        return right in self.rights


OPEN = Principal("-", "admin", frozenset(RIGHTS), via="open")


def _h(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _split(items: list[str] | tuple[str, ...]) -> str:
    return json.dumps(list(items))


def check_scope(prefixes: list[str], cidrs: list[str], groups: list[str]) -> Scope:
    for c in cidrs:
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            raise AccessError(f"cidr {c!r}: not an address or network") from None
    for p in prefixes:
        if not p or any(ch in p for ch in "%_\\"):
            raise AccessError(f"prefix {p!r}: a number's beginning, without % _ or \\")
    return Scope(tuple(prefixes), tuple(cidrs), tuple(groups))


class _Rows:
    """A statement's result, read whole while the connection was held."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


class _Locked:
    """One SQLite connection used by the server's threads in turn."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db, self._lock = db, lock

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> _Rows:
        with self._lock:
            cur = self._db.execute(sql, args)
            return _Rows(cur.fetchall(), cur.rowcount)

    def executescript(self, sql: str) -> None:
        with self._lock:
            self._db.executescript(sql)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Accounts:
    """The access file. Methods take ``now`` (seconds since the epoch) where time matters,
    so the rules are tested without a clock; the web shell passes the wall clock."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)  # password hashes and the signing key: the owner only
        self._lock = threading.RLock()
        self.db = _Locked(sqlite3.connect(path, timeout=10.0, check_same_thread=False,
                                          isolation_level=None), self._lock)
        self.db.execute("PRAGMA busy_timeout = 10000")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(SCHEMA)
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, ACCESS_VERSION):
            raise AccessError(f"{path}: access file version {version}, this calltap "
                              f"reads version {ACCESS_VERSION}")
        self.db.execute(f"PRAGMA user_version = {ACCESS_VERSION}")
        self._hasher = PasswordHasher()
        self.key = self._key()
        """The key that signs session cookies and share links (made once, kept here)."""
        self._dummy = self._hasher.hash(secrets.token_hex(16))

    def _key(self) -> bytes:
        row = self.db.execute("SELECT v FROM meta WHERE k = 'key'").fetchone()
        if row:
            return bytes.fromhex(row[0])
        key = secrets.token_bytes(32)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('key', ?)", (key.hex(),))
        return bytes.fromhex(self.db.execute("SELECT v FROM meta WHERE k = 'key'"
                                             ).fetchone()[0])

    def sign(self, data: str) -> str:
        return _b64(hmac.new(self.key, data.encode(), hashlib.sha256).digest())

    # users

    def has_users(self) -> bool:
        return self.db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None

    def add_user(self, name: str, password: str, role: str, scope: Scope, when: str) -> None:
        if not name or len(name) > 64 or not all(c.isalnum() or c in "._@-" for c in name):
            raise AccessError(f"user name {name[:70]!r}: letters, digits and . _ @ - (at "
                              "most 64)")
        if role not in ROLES:
            raise AccessError(f"role {role!r}: one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise AccessError(f"password: at least {MIN_PASSWORD} characters")
        with self._lock:
            try:
                self.db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (name, self._hasher.hash(password), role,
                                 _split(scope.prefixes), _split(scope.cidrs),
                                 _split(scope.groups), when))
            except sqlite3.IntegrityError:
                raise AccessError(f"user {name!r} exists") from None

    def set_password(self, name: str, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise AccessError(f"password: at least {MIN_PASSWORD} characters")
        with self._lock:
            n = self.db.execute("UPDATE users SET hash = ? WHERE name = ?",
                                (self._hasher.hash(password), name)).rowcount
            if n:  # a new password ends the user's sessions
                self.db.execute("DELETE FROM sessions WHERE user = ?", (name,))
        if not n:
            raise AccessError(f"no user {name!r}")

    def remove_user(self, name: str) -> None:
        with self._lock:
            n = self.db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
            self.db.execute("DELETE FROM sessions WHERE user = ?", (name,))
            self.db.execute("UPDATE tokens SET revoked = 1 WHERE user = ?", (name,))
        if not n:
            raise AccessError(f"no user {name!r}")

    def users(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT name, role, prefixes, cidrs, groups, created FROM users "
                               "ORDER BY name").fetchall()
        return [{"name": r[0], "role": r[1], "prefixes": json.loads(r[2]),
                 "cidrs": json.loads(r[3]), "groups": json.loads(r[4]), "created": r[5]}
                for r in rows]

    def principal(self, name: str, via: str, csrf: str = "",
                  scopes: frozenset[str] | None = None) -> Principal | None:
        row = self.db.execute("SELECT role, prefixes, cidrs, groups FROM users WHERE name = ?",
                              (name,)).fetchone()
        if row is None:
            return None
        rights = ROLE_RIGHTS[row[0]] if scopes is None else ROLE_RIGHTS[row[0]] & scopes
        return Principal(name, row[0], rights, Scope(tuple(json.loads(row[1])),
                                                     tuple(json.loads(row[2])),
                                                     tuple(json.loads(row[3]))), via, csrf)

    def check_password(self, name: str, password: str) -> bool:
        row = self.db.execute("SELECT hash FROM users WHERE name = ?", (name,)).fetchone()
        try:
            # an unknown user costs the same hash as a known one (no timing oracle)
            self._hasher.verify(row[0] if row else self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return row is not None

    # sessions

    def new_session(self, name: str, now: float) -> tuple[str, str]:
        """A login: (cookie value, CSRF token)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        with self._lock:
            self.db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            self.db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                            (_h(sid), name, csrf, now + SESSION_TTL_S))
        return f"{sid}.{self.sign(sid)}", csrf

    def session(self, cookie: str, now: float) -> Principal | None:
        sid, _, sig = cookie.partition(".")
        if not sid or not hmac.compare_digest(sig.encode(), self.sign(sid).encode()):
            return None
        row = self.db.execute("SELECT user, csrf, expires FROM sessions WHERE hash = ?",
                              (_h(sid),)).fetchone()
        if row is None or row[2] < now:
            return None
        return self.principal(row[0], "session", row[1])

    def end_session(self, cookie: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM sessions WHERE hash = ?",
                            (_h(cookie.partition(".")[0]),))

    # API tokens

    def new_token(self, name: str, scopes: list[str], ttl_s: float, now: float,
                  when: str) -> str:
        """A token for ``name`` with ``scopes`` (rights; its role's rights bound them),
        shown once: only its hash is kept."""
        bad = [s for s in scopes if s not in RIGHTS]
        if bad or not scopes:
            raise AccessError(f"scopes: some of {', '.join(RIGHTS)}")
        if not 0 < ttl_s <= MAX_TTL_S:
            raise AccessError(f"a token lives 1 second to {MAX_TTL_S // 86400} days")
        if self.principal(name, "token") is None:
            raise AccessError(f"no user {name!r}")
        tid, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        with self._lock:
            self.db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, 0)",
                            (tid, _h(secret), name, ",".join(sorted(set(scopes))),
                             now + ttl_s, when))
        return f"ct_{tid}_{secret}"

    def token(self, text: str, now: float) -> Principal | None:
        parts = text.split("_", 2)
        if len(parts) != 3 or parts[0] != "ct":
            return None
        row = self.db.execute("SELECT hash, user, scopes, expires, revoked FROM tokens "
                              "WHERE id = ?", (parts[1],)).fetchone()
        if row is None or row[4] or row[3] < now \
                or not hmac.compare_digest(row[0], _h(parts[2])):
            return None
        return self.principal(row[1], "token", scopes=frozenset(row[2].split(",")))

    def revoke_token(self, tid: str) -> None:
        with self._lock:
            if not self.db.execute("UPDATE tokens SET revoked = 1 WHERE id = ?",
                                   (tid,)).rowcount:
                raise AccessError(f"no token {tid!r}")

    def tokens(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, user, scopes, expires, created, revoked FROM tokens "
                               "ORDER BY created").fetchall()
        return [{"id": r[0], "user": r[1], "scopes": r[2].split(","), "expires": r[3],
                 "created": r[4], "revoked": bool(r[5])} for r in rows]

    # share links

    def new_share(self, call: str, user: str, scope: str, mask: bool, ttl_s: float,
                  now: float, when: str) -> tuple[str, str]:
        """A signed link to one call: (share id, token for the URL)."""
        if scope not in SHARE_SCOPES:
            raise AccessError(f"scope: one of {', '.join(SHARE_SCOPES)}")
        if not 0 < ttl_s <= MAX_TTL_S:
            raise AccessError(f"a share link lives 1 second to {MAX_TTL_S // 86400} days")
        sid = secrets.token_urlsafe(12)
        expires = now + ttl_s
        with self._lock:
            self.db.execute("INSERT INTO shares VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                            (sid, call, user, scope, int(mask), expires, when))
        body = _b64(json.dumps([sid, call, scope, int(mask), int(expires)],
                               separators=(",", ":")).encode())
        return sid, f"{body}.{self.sign('share:' + body)}"

    def share(self, token: str, now: float) -> Principal | None:
        """The share a link's token opens, if its signature holds, it has not expired and
        it was not revoked."""
        body, _, sig = token.partition(".")
        if not body or not hmac.compare_digest(sig.encode(),
                                               self.sign("share:" + body).encode()):
            return None
        try:
            sid, call, scope, mask, expires = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        if expires < now:
            return None
        row = self.db.execute("SELECT call, revoked, expires FROM shares WHERE id = ?",
                              (sid,)).fetchone()
        if row is None or row[1] or row[0] != call or row[2] < now:
            return None
        rights = frozenset({"audio", "read"} if scope == "audio+metadata" else {"audio"})
        return Principal(f"share:{sid}", "share", rights, via="share", share_call=call,
                         share_mask=bool(mask))

    def revoke_share(self, sid: str, by: Principal) -> str:
        """Revoke a share (its creator or an admin): the call it was for."""
        row = self.db.execute("SELECT user, call FROM shares WHERE id = ?", (sid,)).fetchone()
        if row is None or (row[0] != by.name and not by.can("admin")):
            raise AccessError(f"no share {sid!r} of yours")
        with self._lock:
            self.db.execute("UPDATE shares SET revoked = 1 WHERE id = ?", (sid,))
        return str(row[1])

    def shares(self, user: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, call, user, scope, mask, expires, created, revoked FROM shares"
        rows = self.db.execute(sql + (" WHERE user = ?" if user else "") + " ORDER BY created",
                               (user,) if user else ()).fetchall()
        return [{"id": r[0], "call": r[1], "user": r[2], "scope": r[3], "mask": bool(r[4]),
                 "expires": r[5], "created": r[6], "revoked": bool(r[7])} for r in rows]

    # audit

    def audit(self, when: str, user: str, action: str, target: str, addr: str,
              outcome: str = "ok") -> None:
        """Append one entry (never a password or token: callers pass names and ids)."""
        with self._lock:
            self.db.execute("INSERT INTO audit (at, user, action, target, addr, outcome) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (when, user, action, target[:500], addr, outcome))

    def audit_rows(self, after: int = 0, limit: int = AUDIT_PAGE) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT seq, at, user, action, target, addr, outcome FROM audit "
                               "WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        return [dict(zip(("seq", "at", "user", "action", "target", "from", "outcome"), r,
                         strict=True)) for r in rows]

    def audit_all(self) -> Iterator[dict[str, Any]]:
        after = 0
        while rows := self.audit_rows(after):
            yield from rows
            after = rows[-1]["seq"]

    def close(self) -> None:
        self.db.close()
