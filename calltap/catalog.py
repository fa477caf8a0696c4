"""The catalog: every written call, indexed for search, in an embedded SQLite database
beside the recordings (``<out>/catalog.sqlite``). Rebuilt from ``index.jsonl`` at any
time; kept current by import and by the live writers as they write. ``Store`` is the
interface the dashboard searches through, so a server database can stand behind it.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from writer.output import json_line
from writer.timefmt import parse_time

CATALOG_FILE = "catalog.sqlite"
# The schema's version (PRAGMA user_version): a catalog of another version is rebuilt
# from index.jsonl when opened.
CATALOG_VERSION = 3
# Rows one search returns at most: a page of the calls table; more go by the cursor.
MAX_PAGE = 500
# Rows one export streams at most: a spreadsheet's worth.
MAX_EXPORT = 1_000_000
SORTS = {"start": "start_ns", "duration": "duration", "mos": "mos_min", "loss": "loss_max"}
PARTY_MODES = ("substring", "prefix", "suffix", "exact")
# Which direction the MOS and loss filters look at: the worse one, or one party's.
SIDES = {"any": ("mos_min", "loss_max"), "caller": ("mos_caller", "loss_caller"),
         "callee": ("mos_callee", "loss_callee")}

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    call_id TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    duration REAL,
    caller TEXT, callee TEXT,
    caller_user TEXT COLLATE NOCASE, callee_user TEXT COLLATE NOCASE,
    caller_rev TEXT COLLATE NOCASE, callee_rev TEXT COLLATE NOCASE,
    status TEXT, end_reason TEXT, final_code INTEGER, codecs TEXT,
    mos_caller REAL, mos_callee REAL, mos_min REAL,
    loss_caller REAL, loss_callee REAL, loss_max REAL,
    dtmf TEXT, grp TEXT, policy_rule TEXT,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_start ON calls (start_ns, id);
CREATE INDEX IF NOT EXISTS calls_duration ON calls (duration, id);
CREATE INDEX IF NOT EXISTS calls_mos ON calls (mos_min, id);
CREATE INDEX IF NOT EXISTS calls_loss ON calls (loss_max, id);
CREATE INDEX IF NOT EXISTS calls_caller ON calls (caller_user);
CREATE INDEX IF NOT EXISTS calls_callee ON calls (callee_user);
CREATE INDEX IF NOT EXISTS calls_caller_rev ON calls (caller_rev);
CREATE INDEX IF NOT EXISTS calls_callee_rev ON calls (callee_rev);
CREATE INDEX IF NOT EXISTS calls_call_id ON calls (call_id);
CREATE TABLE IF NOT EXISTS addrs (addr BLOB NOT NULL, call INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS addrs_addr ON addrs (addr, call);
CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5 (text, tokenize = 'trigram');
"""


class CatalogError(Exception):
    """A search the catalog cannot run (the message says which parameter and why)."""


@dataclass(frozen=True)
class Scope:
    """The calls a user may see: every limit given must hold (none given: every call)."""

    prefixes: tuple[str, ...] = ()
    """Either party's number starts with one of these."""
    cidrs: tuple[str, ...] = ()
    """One of the call's addresses is in one of these networks."""
    groups: tuple[str, ...] = ()
    """The policy put the call in one of these groups."""

    def __bool__(self) -> bool:
        return bool(self.prefixes or self.cidrs or self.groups)


@dataclass
class Query:
    """A search; every field optional. Times are ns since the epoch, UTC."""

    party: str = ""
    """Number or URI of either party (caller, callee, identities)."""
    party_mode: str = "substring"
    text: str = ""
    """Anywhere in the parties, Call-IDs (a joined or related leg's too), identities and kept
    headers (3+ characters)."""
    start_from: int | None = None
    start_to: int | None = None
    cidr: str = ""
    status: str = ""
    end_reason: str = ""
    codec: str = ""
    mos_min: float | None = None
    mos_max: float | None = None
    loss_min: float | None = None
    side: str = "any"
    """Whose direction the MOS and loss filters judge: any (the worse), caller, callee."""
    duration_min: float | None = None
    duration_max: float | None = None
    dtmf: str = ""
    group: str = ""
    rule: str = ""
    sort: str = "start"
    descending: bool = True
    limit: int = 50
    cursor: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    scope: Scope | None = None
    """The searching user's limits: calls outside them are never found."""


@dataclass
class Page:
    calls: list[dict[str, Any]]
    total: int
    next_cursor: str | None


class Store(Protocol):
    """What the dashboard needs of a catalog."""

    def add(self, entry: dict[str, Any], summary: dict[str, Any] | None) -> None: ...
    def search(self, q: Query) -> Page: ...
    def export(self, q: Query) -> Iterator[dict[str, Any]]: ...
    def get(self, key: str, scope: Scope | None = None) -> dict[str, Any] | None: ...
    def count(self) -> int: ...
    def stats_rows(self, start_from: int | None, start_to: int | None,
                   scope: Scope | None = None
                   ) -> Iterator[tuple[int, float | None, str, float | None, str]]: ...


def call_key(entry: dict[str, Any]) -> str:
    """A call's identifier in the catalog and the API: its files' stem."""
    return os.path.basename(str(entry["summary"])).removesuffix(".json")


def call_files(out_dir: str, entry: dict[str, Any]) -> list[str]:
    """Every file of a call on disk, relative to ``out_dir``: its files share its stem
    (``<stem>.<ext>``, or ``<stem>-caller.<ext>`` in a split layout; temporary names start
    with a dot)."""
    rel_dir = os.path.dirname(entry["summary"])
    key = call_key(entry)
    try:
        names = sorted(os.listdir(os.path.join(out_dir, rel_dir)))
    except FileNotFoundError:
        return []
    return [f"{rel_dir}/{n}" for n in names if n.startswith((key + ".", key + "-"))]


# Address texts whose parse is kept: a capture's calls come from a few hosts, and the
# ipaddress parse took longer than the rest of a short call's catalog row.
ADDRESS_CACHE = 4096


@functools.lru_cache(maxsize=ADDRESS_CACHE)
def _addr_blob(text: str) -> bytes | None:
    host = text.rsplit(":", 1)[0].strip("[]") if text.count(":") == 1 or "]" in text \
        else text
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            ip = ipaddress.ip_address(text.rsplit(":", 1)[0].strip("[]"))
        except ValueError:
            return None
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed).packed
    return ip.packed


def _cidr_range(cidr: str) -> tuple[bytes, bytes]:
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise CatalogError(f"cidr: {cidr!r} is not an address or network") from None
    if isinstance(net, ipaddress.IPv4Network):
        lo = b"\0" * 10 + b"\xff\xff" + net.network_address.packed
        hi = b"\0" * 10 + b"\xff\xff" + net.broadcast_address.packed
        return lo, hi
    return net.network_address.packed, net.broadcast_address.packed


def _addresses(summary: dict[str, Any] | None) -> set[bytes]:
    found: set[bytes] = set()
    if not summary:
        return found
    call = summary.get("call") or {}
    texts = [call.get("caller_signalling") or "", call.get("callee_signalling") or ""]
    for x in summary.get("directions") or []:
        texts += [x.get("src") or "", x.get("dst") or ""]
    for side in (call.get("media") or {}).values():
        texts += [m.get("address") or "" for m in side]
    for t in texts:
        b = _addr_blob(t) if t else None
        if b:
            found.add(b)
    return found


def _words(entry: dict[str, Any], summary: dict[str, Any] | None) -> str:
    parts = [entry.get("caller") or "", entry.get("callee") or "", entry.get("call_id") or "",
             *(entry.get("legs") or []), *(entry.get("related") or [])]
    call = (summary or {}).get("call") or {}
    parts += [call.get("caller_name") or "", call.get("callee_name") or ""]
    for ids in (call.get("identities") or {}).values():
        parts += [f"{i.get('uri', '')} {i.get('name', '')}" for i in ids]
    for name, values in (call.get("headers") or {}).items():
        parts += [f"{name}: {v}" for v in values]
    return "\n".join(p for p in parts if p)


def user_part(uri: str) -> str:
    """The number or user of a SIP or tel URI ('sip:+4930123@host;x=y' gives '+4930123');
    anything else as it is."""
    rest = uri
    for scheme in ("sips:", "sip:", "tel:"):
        if rest.lower().startswith(scheme):
            rest = rest[len(scheme):]
            break
    return rest.split("@", 1)[0].split(";", 1)[0]


def _row(entry: dict[str, Any]) -> tuple[Any, ...]:
    mos = entry.get("mos") or [None, None]
    packets = entry.get("packets") or [0, 0]
    lost = entry.get("lost") or [0, 0]
    loss = [round(lost[k] * 100.0 / (packets[k] + lost[k]), 3) if packets[k] + lost[k]
            else None for k in (0, 1)]
    known_mos = [m for m in mos if m is not None]
    known_loss = [x for x in loss if x is not None]
    caller, callee = entry.get("caller") or "", entry.get("callee") or ""
    cu, ce = user_part(caller), user_part(callee)
    # unknown MOS and loss are -1 (and an unknown length 0), so the sort columns hold no
    # NULL and ORDER BY walks their indexes
    return (call_key(entry), entry["call_id"], parse_time(entry["start"]) or 0,
            entry.get("duration") or 0.0, caller, callee, cu, ce, cu[::-1], ce[::-1],
            entry.get("status"), entry.get("end_reason"), entry.get("final_code"),
            ",".join(entry.get("codecs") or []), mos[0], mos[1],
            min(known_mos) if known_mos else -1.0, loss[0], loss[1],
            max(known_loss) if known_loss else -1.0, entry.get("dtmf") or "",
            entry.get("group"), entry.get("policy_rule"),
            json_line(entry)[:-1].decode("utf-8"))


# Keys looked up per query when calls are indexed (SQLite allowed 999 parameters before
# 3.32).
KEYS_PER_QUERY = 500
Prepared = tuple[tuple[Any, ...], list[bytes], str]
"""A call as the catalog stores it: its row, its addresses, its words."""


def entry_of(call: Prepared) -> dict[str, Any]:
    """The index entry a prepared call carries (its row's last column)."""
    entry: dict[str, Any] = orjson.loads(call[0][-1])
    return entry


def prepare(entry: dict[str, Any], summary: dict[str, Any] | None) -> Prepared:
    """A call's catalog row from its index line and summary (or the summary's
    ``search_fields``): made where the call is written, so the process that inserts it only
    inserts."""
    return _row(entry), list(_addresses(summary)), _words(entry, summary)


COLUMNS = ("key, call_id, start_ns, duration, caller, callee, caller_user, callee_user, "
           "caller_rev, callee_rev, status, "
           "end_reason, final_code, codecs, mos_caller, mos_callee, mos_min, loss_caller, "
           "loss_callee, loss_max, dtmf, grp, policy_rule, entry")


class SqliteCatalog:
    """The catalog in one SQLite file (WAL: readers never wait for the writers; several
    writer processes take turns through the busy timeout)."""

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        self.db = sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False,
                                  isolation_level=None)
        self.db.execute("PRAGMA busy_timeout = 10000")
        self.stale = False
        """Opened as another schema version: emptied, to be filled again."""
        if not readonly:
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = self.db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'calls'"
                                     ).fetchone()[0]
            if tables and version != CATALOG_VERSION:
                self.db.executescript("DROP TABLE IF EXISTS calls; DROP TABLE IF EXISTS addrs;"
                                      " DROP TABLE IF EXISTS words;")
                self.stale = True
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version = {CATALOG_VERSION}")

    @classmethod
    def beside(cls, out_dir: str, readonly: bool = False) -> SqliteCatalog:
        """The catalog of an output directory (one of an older schema is rebuilt)."""
        cat = cls(os.path.join(out_dir, CATALOG_FILE), readonly)
        if cat.stale:
            cat.refill(out_dir)
        return cat

    def refill(self, out_dir: str) -> int:
        """Every call of ``out_dir``'s ``index.jsonl`` (and its summary) into an empty
        catalog; returns the calls indexed. A torn last line (a crash mid-append) is
        skipped."""
        from writer.translog import gone_calls

        n = 0
        batch: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        removed = gone_calls(out_dir)  # disposed of or erased: their lines stay, not them
        for entry in index_entries(out_dir):
            if removed and call_key(entry) in removed:
                continue
            batch.append((entry, read_summary(out_dir, entry)))
            if len(batch) >= REBUILD_BATCH:
                self.add_many(batch)
                n += len(batch)
                batch = []
        if batch:
            self.add_many(batch)
            n += len(batch)
        self.stale = False
        return n

    def close(self) -> None:
        self.db.close()

    def _exec(self, sql: str, args: Any = ()) -> Any:
        """Run one statement of the shared query builder (a server backend translates)."""
        return self.db.execute(sql, args)

    def count(self) -> int:
        return int(self._exec("SELECT count(*) FROM calls").fetchone()[0])

    def add(self, entry: dict[str, Any], summary: dict[str, Any] | None) -> None:
        """Index one written call (again: a call already in replaces its old row)."""
        self.add_many([(entry, summary)])

    def add_many(self, calls: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        self.add_prepared([prepare(entry, summary) for entry, summary in calls])

    def add_prepared(self, calls: list[Prepared]) -> None:
        """Index calls already prepared (``prepare``), in one transaction: a call already in
        (the same key) is replaced, and of one key given twice the later counts. Rows go in
        by executemany, their ids given (the transaction holds the write lock): a statement
        at a time took half as long again."""
        latest = {row[0]: (row, addresses, words) for row, addresses, words in calls}
        keys = list(latest)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            old: list[tuple[int]] = []
            for i in range(0, len(keys), KEYS_PER_QUERY):
                part = keys[i:i + KEYS_PER_QUERY]
                old += db.execute(f"SELECT id FROM calls WHERE key IN "
                                  f"({', '.join('?' * len(part))})", part).fetchall()
            if old:
                db.executemany("DELETE FROM calls WHERE id = ?", old)
                db.executemany("DELETE FROM addrs WHERE call = ?", old)
                db.executemany("DELETE FROM words WHERE rowid = ?", old)
            first = int(db.execute("SELECT coalesce(max(id), 0) + 1 FROM calls").fetchone()[0])
            new = list(latest.values())
            db.executemany(f"INSERT INTO calls (id, {COLUMNS}) VALUES "
                           f"({', '.join('?' * 25)})",
                           [(first + k, *row) for k, (row, _a, _w) in enumerate(new)])
            db.executemany("INSERT INTO addrs (addr, call) VALUES (?, ?)",
                           [(a, first + k) for k, (_r, addrs, _w) in enumerate(new)
                            for a in addrs])
            db.executemany("INSERT INTO words (rowid, text) VALUES (?, ?)",
                           [(first + k, words) for k, (_r, _a, words) in enumerate(new)])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def remove(self, key: str) -> None:
        """Forget a call (its recording was disposed of or erased)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            old = db.execute("SELECT id FROM calls WHERE key = ?", (key,)).fetchone()
            if old is not None:
                db.execute("DELETE FROM calls WHERE id = ?", old)
                db.execute("DELETE FROM addrs WHERE call = ?", old)
                db.execute("DELETE FROM words WHERE rowid = ?", old)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def clear(self) -> None:
        self.db.executescript("DELETE FROM calls; DELETE FROM addrs; DELETE FROM words;")

    def get(self, key: str, scope: Scope | None = None) -> dict[str, Any] | None:
        """A call's index entry; None if there is none, or it is outside ``scope``."""
        where, args = _scope_where(scope)
        row = self._exec(" AND ".join(["SELECT entry FROM calls WHERE key = ?", *where]),
                         (key, *args)).fetchone()
        return json.loads(row[0]) if row else None

    def _where(self, q: Query) -> tuple[list[str], list[Any]]:
        where, args = _scope_where(q.scope)
        if q.party:
            if q.party_mode not in PARTY_MODES:
                raise CatalogError(f"party_mode: one of {', '.join(PARTY_MODES)}")
            if q.party_mode == "prefix":
                where.append(f"({_like('caller_user')} OR {_like('callee_user')})")
                args += [_escaped(q.party) + "%"] * 2
            elif q.party_mode == "suffix":
                where.append(f"({_like('caller_rev')} OR {_like('callee_rev')})")
                args += [_escaped(q.party[::-1]) + "%"] * 2
            elif q.party_mode == "exact":
                where.append("(caller_user = ? OR callee_user = ? OR caller = ? COLLATE "
                             "NOCASE OR callee = ? COLLATE NOCASE)")
                args += [q.party] * 4
            elif len(q.party) >= 3:
                where.append(_words_like(q.party))
                args.append(f"%{_escaped(q.party)}%")
            else:
                where.append(f"({_like('caller')} OR {_like('callee')})")
                args += [f"%{_escaped(q.party)}%"] * 2
        if q.text:
            if len(q.text) < 3:
                raise CatalogError("q: at least 3 characters")
            where.append(_words_like(q.text))
            args.append(f"%{_escaped(q.text)}%")
        if q.start_from is not None:
            where.append("start_ns >= ?")
            args.append(q.start_from)
        if q.start_to is not None:
            where.append("start_ns < ?")
            args.append(q.start_to)
        if q.cidr:
            lo, hi = _cidr_range(q.cidr)
            where.append("id IN (SELECT call FROM addrs WHERE addr BETWEEN ? AND ?)")
            args += [lo, hi]
        for col, value in (("status", q.status), ("end_reason", q.end_reason),
                           ("grp", q.group), ("policy_rule", q.rule)):
            if value:
                where.append(f"{col} = ?")
                args.append(value)
        if q.codec:
            where.append("(',' || codecs || ',') LIKE ?")
            args.append(f"%,{q.codec}%")
        if q.dtmf:
            where.append("instr(dtmf, ?) > 0")
            args.append(q.dtmf)
        # with a time range, the start index is the one to walk: the unary + keeps the
        # planner off the others (without range statistics it guesses them as selective)
        plus = "+" if q.start_from is not None or q.start_to is not None else ""
        if q.side not in SIDES:
            raise CatalogError(f"side: one of {', '.join(SIDES)}")
        mos, loss = SIDES[q.side]
        mos_low = q.mos_min
        if q.mos_max is not None:
            mos_low = max(mos_low or 0.0, 0.0)  # calls without a MOS (-1) stay out
        for col, op, bound in ((mos, ">=", mos_low), (mos, "<=", q.mos_max),
                               (loss, ">=", q.loss_min),
                               ("duration", ">=", q.duration_min),
                               ("duration", "<=", q.duration_max)):
            if bound is not None:
                where.append(f"{plus}{col} {op} ?")
                args.append(bound)
        return where, args

    def _order(self, q: Query) -> tuple[str, str]:
        if q.sort not in SORTS:
            raise CatalogError(f"sort: one of {', '.join(SORTS)}")
        col = SORTS[q.sort]
        d = "DESC" if q.descending else "ASC"
        return col, d

    def search(self, q: Query) -> Page:
        if not 1 <= q.limit <= MAX_PAGE:
            raise CatalogError(f"limit: 1 to {MAX_PAGE}")
        where, args = self._where(q)
        col, d = self._order(q)
        total = int(self._exec(
            "SELECT count(*) FROM calls" + (" WHERE " + " AND ".join(where) if where else ""),
            args).fetchone()[0])
        page_where, page_args = list(where), list(args)
        if q.cursor:
            value, rid = _decode_cursor(q.cursor)
            cmp = "<" if q.descending else ">"
            page_where.append(f"({col}, id) {cmp} (?, ?)")
            page_args += [value, rid]
        sql = (f"SELECT id, {col}, entry FROM calls"
               + (" WHERE " + " AND ".join(page_where) if page_where else "")
               + f" ORDER BY {col} {d}, id {d} LIMIT ?")
        rows = self._exec(sql, [*page_args, q.limit + 1]).fetchall()
        more = len(rows) > q.limit
        rows = rows[:q.limit]
        calls = [{"id": call_key(e), **e} for e in (json.loads(r[2]) for r in rows)]
        nxt = _encode_cursor(rows[-1][1], rows[-1][0]) if more and rows else None
        return Page(calls, total, nxt)

    def export(self, q: Query) -> Iterator[dict[str, Any]]:
        where, args = self._where(q)
        col, d = self._order(q)
        sql = ("SELECT entry FROM calls" + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY {col} {d}, id {d} LIMIT {MAX_EXPORT}")
        for (text,) in self._exec(sql, args):
            e = json.loads(text)
            yield {"id": call_key(e), **e}

    def stats_rows(self, start_from: int | None, start_to: int | None,
                   scope: Scope | None = None
                   ) -> Iterator[tuple[int, float | None, str, float | None, str]]:
        """(start_ns, duration, status, mos_min, key) of the calls in a period."""
        where, args = _scope_where(scope)
        if start_from is not None:
            where.append("start_ns >= ?")
            args.append(start_from)
        if start_to is not None:
            where.append("start_ns < ?")
            args.append(start_to)
        sql = ("SELECT start_ns, duration, status, mos_min, key FROM calls"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY start_ns, id")
        yield from self._exec(sql, args)


PG_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE IF NOT EXISTS calltap_catalog (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    call_id TEXT NOT NULL,
    start_ns BIGINT NOT NULL,
    duration DOUBLE PRECISION,
    caller TEXT, callee TEXT, caller_user TEXT, callee_user TEXT,
    caller_rev TEXT, callee_rev TEXT,
    status TEXT, end_reason TEXT, final_code INTEGER, codecs TEXT,
    mos_caller DOUBLE PRECISION, mos_callee DOUBLE PRECISION, mos_min DOUBLE PRECISION,
    loss_caller DOUBLE PRECISION, loss_callee DOUBLE PRECISION, loss_max DOUBLE PRECISION,
    dtmf TEXT, grp TEXT, policy_rule TEXT,
    entry TEXT NOT NULL,
    words TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calls_start ON calls (start_ns, id);
CREATE INDEX IF NOT EXISTS calls_duration ON calls (duration, id);
CREATE INDEX IF NOT EXISTS calls_mos ON calls (mos_min, id);
CREATE INDEX IF NOT EXISTS calls_loss ON calls (loss_max, id);
CREATE INDEX IF NOT EXISTS calls_users ON calls USING gin (caller_user gin_trgm_ops,
    callee_user gin_trgm_ops, caller_rev gin_trgm_ops, callee_rev gin_trgm_ops);
CREATE INDEX IF NOT EXISTS calls_call_id ON calls (call_id);
CREATE INDEX IF NOT EXISTS calls_words ON calls USING gin (words gin_trgm_ops);
CREATE TABLE IF NOT EXISTS addrs (addr BYTEA NOT NULL,
                                  call BIGINT NOT NULL REFERENCES calls (id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS addrs_addr ON addrs (addr, call);
"""
# The shared query builder writes SQLite; these make it PostgreSQL (SQLite's LIKE and
# NOCASE columns ignore ASCII case: ILIKE and lower() do here; the words index is a
# trigram index on a column instead of an FTS5 table).
PG_REWRITES = (
    ("id IN (SELECT rowid FROM words WHERE text LIKE ? ESCAPE '\\')",
     "words LIKE ? ESCAPE '\\'"),
    ("id IN (SELECT rowid FROM words WHERE text LIKE ?)", "words LIKE ?"),
    ("instr(dtmf, ?) > 0", "strpos(dtmf, ?) > 0"),
    ("caller = ? COLLATE NOCASE", "lower(caller) = lower(?)"),
    ("callee = ? COLLATE NOCASE", "lower(callee) = lower(?)"),
    ("caller_user = ?", "lower(caller_user) = lower(?)"),
    ("callee_user = ?", "lower(callee_user) = lower(?)"),
    (" LIKE ", " ILIKE "),
)


def pg_sql(sql: str) -> str:
    """A statement of the shared builder, for PostgreSQL (psycopg's %s placeholders)."""
    for a, b in PG_REWRITES:
        sql = sql.replace(a, b)
    return sql.replace("%", "%%").replace("?", "%s")


class PgCatalog(SqliteCatalog):
    """The catalog in PostgreSQL (``catalog_url``), for writers on several hosts: the same
    rows, searches and scopes as the SQLite one, through one connection per process."""

    def __init__(self, url: str) -> None:  # noqa: D107 - no SQLite file here
        import psycopg

        self.path = url
        self.stale = False
        try:
            self.pg: Any = psycopg.connect(url, autocommit=True, connect_timeout=5)
            self._create()
        except psycopg.Error as exc:
            raise CatalogError(f"{_safe_url(url)}: {exc}") from None

    def _create(self) -> None:
        url = self.path
        with self.pg.transaction():
            self.pg.execute("SELECT pg_advisory_xact_lock(7365301)")  # one creator at once
            self.pg.execute(PG_SCHEMA)
            row = self.pg.execute("SELECT version FROM calltap_catalog").fetchone()
            if row is None:
                self.pg.execute("INSERT INTO calltap_catalog VALUES (%s)", (CATALOG_VERSION,))
            elif row[0] != CATALOG_VERSION:
                raise CatalogError(f"{_safe_url(url)}: catalog version {row[0]}, this "
                                   f"calltap needs {CATALOG_VERSION} (calltap catalog rebuild)")

    def _exec(self, sql: str, args: Any = ()) -> Any:
        import psycopg

        try:
            return self.pg.execute(pg_sql(sql), list(args))
        except psycopg.Error as exc:
            raise CatalogError(f"{_safe_url(self.path)}: {exc}") from None

    def close(self) -> None:
        self.pg.close()

    def add_prepared(self, calls: list[Prepared]) -> None:
        import psycopg

        try:
            self._add_prepared(calls)
        except psycopg.Error as exc:
            raise CatalogError(f"{_safe_url(self.path)}: {exc}") from None

    def _add_prepared(self, calls: list[Prepared]) -> None:
        with self.pg.transaction():
            for row, addresses, words in calls:
                # a call already in is replaced (its addresses go with it: ON DELETE CASCADE)
                self.pg.execute("DELETE FROM calls WHERE key = %s", (row[0],))
                rid = self.pg.execute(
                    f"INSERT INTO calls ({COLUMNS}, words) VALUES "
                    f"({', '.join(['%s'] * 25)}) RETURNING id",
                    (*row, words)).fetchone()[0]
                addrs = [(a, rid) for a in addresses]
                if addrs:
                    with self.pg.cursor() as cur:
                        cur.executemany("INSERT INTO addrs (addr, call) VALUES (%s, %s)",
                                        addrs)

    def remove(self, key: str) -> None:
        self.pg.execute("DELETE FROM calls WHERE key = %s", (key,))

    def clear(self) -> None:
        self.pg.execute("DELETE FROM calls")


def _safe_url(url: str) -> str:
    """A database URL without its password (for messages)."""
    import re

    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def open_catalog(out_dir: str, url: str = "", readonly: bool = False) -> SqliteCatalog:
    """The catalog of an output directory: PostgreSQL when ``catalog_url`` names one (a
    site whose writers run on several hosts), else the SQLite file beside the recordings."""
    if url:
        return PgCatalog(url)
    return SqliteCatalog.beside(out_dir, readonly)


def _scope_where(scope: Scope | None) -> tuple[list[str], list[Any]]:
    """SQL conditions keeping a search inside a user's scope."""
    where: list[str] = []
    args: list[Any] = []
    if not scope:
        return where, args
    if scope.prefixes:
        where.append("(" + " OR ".join(f"{_like('caller_user')} OR {_like('callee_user')}"
                                       for _ in scope.prefixes) + ")")
        for p in scope.prefixes:
            args += [_escaped(p) + "%"] * 2
    if scope.cidrs:
        ranges = [_cidr_range(c) for c in scope.cidrs]
        where.append("id IN (SELECT call FROM addrs WHERE "
                     + " OR ".join("addr BETWEEN ? AND ?" for _ in ranges) + ")")
        for lo, hi in ranges:
            args += [lo, hi]
    if scope.groups:
        where.append(f"grp IN ({', '.join('?' * len(scope.groups))})")
        args += list(scope.groups)
    return where, args


def in_scope(scope: Scope | None, caller: str, callee: str, addrs: list[str],
             group: str) -> bool:
    """The rule ``_scope_where`` puts in SQL, for a call not in the catalog (in progress)."""
    if not scope:
        return True
    if scope.prefixes:
        users = (user_part(caller).lower(), user_part(callee).lower())
        if not any(u.startswith(p.lower()) for u in users for p in scope.prefixes):
            return False
    if scope.cidrs:
        nets = [ipaddress.ip_network(c, strict=False) for c in scope.cidrs]
        ips = []
        for a in addrs:
            try:
                ips.append(ipaddress.ip_address(a))
            except ValueError:
                continue
        if not any(ip.version == n.version and ip in n for ip in ips for n in nets):
            return False
    return not scope.groups or group in scope.groups


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like(column: str) -> str:
    # the LIKE optimisation uses the column's NOCASE index with this ESCAPE clause
    return f"{column} LIKE ? ESCAPE '\\'"


def _words_like(text: str) -> str:
    """The trigram index answers LIKE only without an ESCAPE clause: used as it is when
    the text holds no wildcard character (numbers and URIs almost never do)."""
    if any(c in text for c in "%_\\"):
        return "id IN (SELECT rowid FROM words WHERE text LIKE ? ESCAPE '\\')"
    return "id IN (SELECT rowid FROM words WHERE text LIKE ?)"


def _encode_cursor(value: Any, rid: int) -> str:
    raw = json.dumps([value, rid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value, rid = json.loads(raw)
        if not isinstance(rid, int) or not isinstance(value, int | float):
            raise ValueError
        return value, rid
    except (ValueError, TypeError):
        raise CatalogError("cursor: not one this server gave") from None


def index_entries(out_dir: str) -> Iterator[dict[str, Any]]:
    """The lines of ``out_dir``'s index.jsonl that parse (a torn last line, from a crash
    mid-append, is skipped)."""
    path = os.path.join(out_dir, "index.jsonl")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "summary" in entry:
                yield entry


def read_summary(out_dir: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    if entry.get("encrypted"):  # sealed: what search needs is in the index line
        fields: dict[str, Any] | None = entry.get("search_fields")
        return fields
    try:
        with open(os.path.join(out_dir, entry["summary"]), encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError, KeyError):
        return None


# Index lines taken into the catalog per transaction when rebuilding.
REBUILD_BATCH = 2000


def rebuild(out_dir: str, url: str = "") -> int:
    """The catalog (``url``'s, or the SQLite one) from ``index.jsonl`` alone (and each
    call's summary): returns the calls indexed."""
    cat = open_catalog(out_dir, url)
    try:
        cat.clear()
        return cat.refill(out_dir)
    finally:
        cat.close()
