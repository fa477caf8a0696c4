"""``calltap serve``: the dashboard and its JSON API over an output directory, as an ASGI
application (FastAPI on uvicorn). Searches go to the catalog, files are served from the
output directory only by the paths the catalog holds, each checked to stay inside it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import ipaddress
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from calltap import __version__
from calltap import transcode as transcoding
from calltap.access import (
    CSRF_HEADER,
    SAFE_METHODS,
    Investigator,
    Listener,
    LoginLimiter,
    Reader,
    csrf_ok,
    identify,
    is_public,
    view_for,
)
from calltap.accounts import OPEN, AccessError, Accounts, Principal
from calltap.catalog import (
    CatalogError,
    Store,
    open_catalog,
    read_summary,
)
from calltap.catalog import (
    Query as CatalogQuery,
)
from calltap.livecalls import LiveBoard
from calltap.oidc import Oidc
from calltap.pages import (
    call_page,
    calls_page,
    overview_page,
)
from calltap.serve_access import add_access_routes
from calltap.serve_live import add_live_routes
from calltap.unseal import Unsealer, memfile, transcode
from writer.options import WriteOptions
from writer.seal import SUFFIX
from writer.timefmt import rfc3339

STATIC = os.path.join(os.path.dirname(__file__), "static")
# A call's identifier as the catalog gives it (its files' stem); anything else is a 404
# before it reaches the catalog or the filesystem.
CALL_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")
FILE_KINDS = ("audio", "audio2", "metadata", "summary", "sip_pcap", "evidence_pcap", "view")
# The right each file needs: audio to hear, evidence for packets and SIP text.
FILE_RIGHTS = {"audio": "audio", "audio2": "audio", "metadata": "read", "summary": "read",
               "view": "read", "sip_pcap": "evidence", "evidence_pcap": "evidence"}
BROWSER_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg", "opus": "audio/ogg",
                   "flac": "audio/flac"}
MEDIA_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".opus": "audio/ogg",
               ".ogg": "audio/ogg", ".flac": "audio/flac", ".xml": "application/xml",
               ".json": "application/json", ".pcap": "application/vnd.tcpdump.pcap"}
# Transcoded copies kept for the player (it seeks with Range requests, so each is a file);
# the oldest go beyond this many.
TRANSCODE_CACHE = 32
# Worst calls listed on the overview page.
WORST_CALLS = 20
# Bars of the calls-per-period chart at most (a year of days).
MAX_BINS = 400
NS = 1_000_000_000


def _when(text: str | None, name: str) -> int | None:
    """A time parameter: RFC 3339 (UTC or with an offset) or seconds since the epoch."""
    if not text:
        return None
    try:
        return int(float(text) * 1_000_000_000)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{name}: not a time (RFC 3339 or epoch seconds): "
                                 f"{text[:40]!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1_000_000) * 1000


def access_path(out_dir: str) -> str:
    """Where an output directory's users, tokens, shares and audit log are kept."""
    return os.path.join(out_dir, ".calltap", "access.sqlite")


class Dashboard:
    """The application's state: the output directory, its catalog and its access file."""

    def __init__(self, out_dir: str, accounts: Accounts | None = None,
                 loopback: bool = True, decrypt_key: str = "", key_store: str = "",
                 catalog_url: str = "") -> None:
        self.out = os.path.realpath(out_dir)
        if not os.path.isdir(self.out):
            raise FileNotFoundError(f"{out_dir}: no such output directory")
        self.unsealer = Unsealer(self.out, decrypt_key, key_store)
        self.catalog: Store = open_catalog(self.out, catalog_url)
        self._lock = threading.Lock()
        self.cache_dir = os.path.join(self.out, ".calltap", "transcoded")
        self.accounts = accounts or Accounts(access_path(self.out))
        self.loopback = loopback
        """Listening on loopback only: without users, everything is open to this host."""
        self.limiter = LoginLimiter()
        self.clock = time.time
        self.event_streams = 0
        """Live event streams open now."""
        self.listeners = 0
        """Live listeners now."""

    def is_open(self) -> bool:
        return self.loopback and not self.accounts.has_users()

    def entry(self, call_id: str, who: Principal = OPEN) -> dict[str, Any]:
        """A call the user may see (one outside their scope does not exist for them)."""
        if not CALL_ID.match(call_id) or (who.via == "share" and call_id != who.share_call):
            raise HTTPException(404, f"no call {call_id[:80]!r}")
        with self._lock:
            e = self.catalog.get(call_id, who.scope)
        if e is None:
            raise HTTPException(404, f"no call {call_id!r}")
        return e

    def audit(self, request: Request, who: Principal | None, action: str, target: str,
              outcome: str = "ok") -> None:
        when = rfc3339(int(self.clock() * NS))
        addr = request.client.host if request.client else "-"
        self.accounts.audit(when, who.name if who else "-", action, target, addr, outcome)

    def audio(self, request: Request, call_id: str, fmt: str, who: Principal) -> Response:
        """The recording for a browser, as stored or transcoded to ``fmt``."""
        e = self.entry(call_id, who)
        src = self.file_of(e, "audio")
        have = os.path.splitext(src.removesuffix(SUFFIX))[1].lstrip(".")
        fmt = fmt or have
        if fmt not in BROWSER_FORMATS:
            raise HTTPException(400, f"format: one of {', '.join(BROWSER_FORMATS)}")
        if not _continued(request):
            self.audit(request, who, "play", call_id)
        if e.get("encrypted"):  # opened in memory, never cached on disk
            split = len(e.get("audio_files") or []) > 1
            if fmt == have and not split:
                return self.unsealer.respond(request, e, src, BROWSER_FORMATS[fmt])
            srcs = [src, self.file_of(e, "audio2")] if split else [src]
            data = transcode([self.unsealer.read(e, p) for p in srcs], fmt)
            return Response(data, media_type=BROWSER_FORMATS[fmt])
        if len(e.get("audio_files") or []) > 1:  # split layout: both parties, one file
            return FileResponse(self.transcoded([src, self.file_of(e, "audio2")], call_id,
                                                fmt), media_type=BROWSER_FORMATS[fmt])
        path = src if fmt == have else self.transcoded([src], call_id, fmt)
        return FileResponse(path, media_type=BROWSER_FORMATS[fmt])

    def path(self, rel: str | None, what: str, sealed: bool = False) -> str:
        """A file of the output directory by its catalog path (a sealed call's: the path
        plus the suffix), never outside it."""
        if not rel:
            raise HTTPException(404, f"this call has no {what}")
        p = os.path.realpath(os.path.join(self.out, rel + (SUFFIX if sealed else "")))
        if not p.startswith(self.out + os.sep) or not os.path.isfile(p):
            raise HTTPException(404, f"{what} not on disk")
        return p

    def file_of(self, e: dict[str, Any], kind: str) -> str:
        summary_rel = e["summary"]
        stem = summary_rel[:-len(".json")]
        sealed = bool(e.get("encrypted"))
        audio = e.get("audio_files") or []
        rel = {"audio": audio[0] if audio else None,
               "audio2": audio[1] if len(audio) > 1 else None,
               "metadata": e.get("metadata"), "summary": summary_rel,
               "sip_pcap": e.get("sip_pcap"),
               "evidence_pcap": stem + ".pcap" if os.path.exists(
                   os.path.join(self.out, stem + ".pcap" + (SUFFIX if sealed else "")))
               else None,
               "view": e.get("view")}[kind]
        return self.path(rel, kind.replace("_", " "), sealed)

    def read_json(self, e: dict[str, Any], kind: str) -> Any:
        """A JSON file of the call (view, summary), opened if sealed."""
        path = self.file_of(e, kind)
        if e.get("encrypted"):
            return json.loads(self.unsealer.read(e, path))
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def summary(self, e: dict[str, Any]) -> dict[str, Any] | None:
        if not e.get("encrypted"):
            return read_summary(self.out, e)
        try:
            data: dict[str, Any] = self.read_json(e, "summary")
            return data
        except HTTPException:
            return None

    def send_file(self, request: Request, e: dict[str, Any], kind: str) -> Response:
        """A file of the call as a download (Range requests answered)."""
        p = self.file_of(e, kind)
        plain = p.removesuffix(SUFFIX) if e.get("encrypted") else p
        ext = ".pcap" if plain.endswith(".pcap") else os.path.splitext(plain)[1]
        media_type = MEDIA_TYPES.get(ext, "application/octet-stream")
        if e.get("encrypted"):
            return self.unsealer.respond(request, e, p, media_type, os.path.basename(plain))
        return FileResponse(p, media_type=media_type, filename=os.path.basename(p))

    def transcoded(self, sources: list[str], key: str, fmt: str) -> str:
        """``sources`` as one ``fmt`` file (FFmpeg), cached under the output directory;
        two sources (a split layout's caller and callee files) become its two channels."""
        os.makedirs(self.cache_dir, exist_ok=True)
        ext = transcoding.EXTENSIONS[fmt]
        dst = os.path.join(self.cache_dir, f"{key}.{ext}")
        if os.path.exists(dst) and all(os.path.getmtime(dst) >= os.path.getmtime(src)
                                       for src in sources):
            return dst
        fd, tmp = tempfile.mkstemp(suffix="." + ext, dir=self.cache_dir)
        os.close(fd)
        try:
            transcoding.run(sources, fmt, tmp)
        except HTTPException:
            os.unlink(tmp)
            raise
        os.replace(tmp, dst)
        kept = sorted((os.path.getmtime(os.path.join(self.cache_dir, f)), f)
                      for f in os.listdir(self.cache_dir))
        for _t, f in kept[:-TRANSCODE_CACHE]:
            os.unlink(os.path.join(self.cache_dir, f))
        return dst


def _query(q: str, party: str, party_mode: str, start_from: str | None,
           start_to: str | None, cidr: str, status: str, end_reason: str, codec: str,
           mos_min: float | None, mos_max: float | None, loss_min: float | None,
           duration_min: float | None, duration_max: float | None, dtmf: str, group: str,
           rule: str, sort: str, order: str, limit: int, cursor: str) -> CatalogQuery:
    if order not in ("asc", "desc"):
        raise HTTPException(400, "order: asc or desc")
    if cidr:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise HTTPException(400, f"cidr: {cidr[:60]!r} is not an address or network"
                                ) from None
    return CatalogQuery(party=party, party_mode=party_mode, text=q,
                        start_from=_when(start_from, "from"), start_to=_when(start_to, "to"),
                        cidr=cidr, status=status, end_reason=end_reason, codec=codec,
                        mos_min=mos_min, mos_max=mos_max, loss_min=loss_min,
                        duration_min=duration_min, duration_max=duration_max, dtmf=dtmf,
                        group=group, rule=rule, sort=sort, descending=order == "desc",
                        limit=limit, cursor=cursor)


Text = Annotated[str, Query(max_length=200)]

def search_query(
    q: Text = "", party: Text = "", party_mode: str = "substring",
    start_from: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    start_to: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    cidr: Text = "", status: Text = "", end_reason: Text = "", codec: Text = "",
    mos_min: Annotated[float | None, Query(ge=0, le=5)] = None,
    mos_max: Annotated[float | None, Query(ge=0, le=5)] = None,
    loss_min: Annotated[float | None, Query(ge=0, le=100)] = None,
    side: str = "any",
    duration_min: Annotated[float | None, Query(ge=0)] = None,
    duration_max: Annotated[float | None, Query(ge=0)] = None,
    dtmf: Text = "", group: Text = "", rule: Text = "", sort: str = "start",
    order: str = "desc", limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Text = "",
) -> CatalogQuery:
    query = _query(q, party, party_mode, start_from, start_to, cidr, status, end_reason,
                   codec, mos_min, mos_max, loss_min, duration_min, duration_max, dtmf,
                   group, rule, sort, order, limit, cursor)
    query.side = side
    return query

Search = Annotated[CatalogQuery, Depends(search_query)]



CSV_FIELDS = ("id", "call_id", "start", "answer", "end", "duration", "caller", "callee",
              "status", "end_reason", "final_code", "codecs", "mos", "packets", "lost", "dtmf",
              "group", "policy_rule", "audio")


def create_app(out_dir: str, accounts: Accounts | None = None, loopback: bool = True,
               secure_cookies: bool = False, redis_url: str = "", prefix: str = "calltap",
               spool_dir: str = "", oidc: Oidc | None = None,
               options: WriteOptions | None = None, decrypt_key: str = "",
               catalog_url: str = "") -> FastAPI:
    """The dashboard over ``out_dir`` (its catalog is created if missing). With users in
    the access file every route but the login and share links needs a session or token;
    without, the server answers on loopback only and everyone is an administrator."""
    dash = Dashboard(out_dir, accounts, loopback, decrypt_key,
                     options.key_store if options else "", catalog_url)
    board = LiveBoard(redis_url, prefix, spool_dir or os.path.join(dash.out, ".calltap",
                                                                   "spool")) \
        if redis_url else None
    app = FastAPI(title="calltap", version=__version__,
                  description="Search, play and inspect the calls calltap recorded.")
    app.state.dashboard = dash
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def door(request: Request, call_next: Any) -> Response:
        path = request.url.path
        who: Principal | None = OPEN
        if not dash.is_open():
            who = identify(dash.accounts, dict(request.headers), dict(request.cookies),
                           dash.clock())
            if who is None and not is_public(path):
                if path.startswith("/api/") or request.method not in SAFE_METHODS:
                    return JSONResponse({"detail": "sign in or send an API token"},
                                        status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                return RedirectResponse("/login?next=" + urllib.parse.quote(path),
                                        status_code=303)
            # the login has its own CSRF check (no session to tie a token to yet)
            if who is not None and request.method not in SAFE_METHODS \
                    and not is_public(path) and not csrf_ok(who, dict(request.headers)):
                dash.audit(request, who, "csrf-refused", path, "refused")
                return JSONResponse({"detail": "CSRF token missing or wrong (send the "
                                     f"{CSRF_HEADER} header)"}, status_code=403)
        request.state.who = who
        response: Response = await call_next(request)
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(_r: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
            msgs.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(msgs)}, status_code=400)

    @app.exception_handler(CatalogError)
    async def catalog_error(_r: Request, exc: CatalogError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(AccessError)
    async def access_error(_r: Request, exc: AccessError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    # searching and reading calls

    @app.get("/api/calls", summary="Search calls", tags=["calls"])
    def api_calls(request: Request, query: Search, who: Reader) -> dict[str, Any]:
        """Calls matching every given filter, a page at a time (``next`` is the cursor of
        the following page), with the total that match."""
        query.scope = who.scope
        dash.audit(request, who, "search", str(request.url.query))
        with dash._lock:  # noqa: SLF001 - one connection, used in turn
            page = dash.catalog.search(query)
        return {"total": page.total, "calls": page.calls, "next": page.next_cursor}

    @app.get("/api/calls.csv", summary="Export a search as CSV", tags=["calls"],
             response_class=StreamingResponse)
    def api_calls_csv(request: Request, query: Search, who: Reader) -> StreamingResponse:
        """Every call matching the filters (no paging), one CSV row each."""
        query.scope = who.scope
        dash.audit(request, who, "export-csv", str(request.url.query))
        with dash._lock:  # noqa: SLF001
            rows = list(dash.catalog.export(query))

        def lines() -> Iterator[str]:
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(CSV_FIELDS)
            for e in rows:
                w.writerow([" ".join(map(str, v)) if isinstance(v, list) else
                            "" if v is None else v for v in (e.get(f) for f in CSV_FIELDS)])
                if buf.tell() > 65536:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        return StreamingResponse(lines(), media_type="text/csv", headers={
            "Content-Disposition": 'attachment; filename="calls.csv"'})

    @app.get("/api/calls/{call_id}", summary="One call", tags=["calls"])
    def api_call(request: Request, call_id: str, who: Reader) -> dict[str, Any]:
        """The call's index entry and its summary (every figure the writer computed)."""
        e = dash.entry(call_id, who)
        dash.audit(request, who, "view", call_id)
        return {"id": call_id, "entry": e, "summary": dash.summary(e)}

    @app.get("/api/calls/{call_id}/view", summary="The call's page data", tags=["calls"])
    def api_view(call_id: str, who: Reader) -> Response:
        """Waveform peaks, per-bucket marks, quality per second, SIP ladder (the messages'
        text with the evidence right), streams."""
        e = dash.entry(call_id, who)
        if who.can("evidence") and not e.get("encrypted"):
            return FileResponse(dash.file_of(e, "view"), media_type="application/json")
        view = dash.read_json(e, "view")
        return JSONResponse(view if who.can("evidence") else view_for(view, who))

    @app.get("/api/calls/{call_id}/sip", summary="The call's SIP messages", tags=["calls"])
    def api_sip(request: Request, call_id: str, who: Investigator) -> list[dict[str, Any]]:
        """Every SIP message seen for the call, in capture order: time (seconds from the
        recording's start), source, destination, first line and full text."""
        e = dash.entry(call_id, who)
        dash.audit(request, who, "read-sip", call_id)
        view = dash.read_json(e, "view")
        start = int(view.get("start_ns") or 0)
        return [{**m, "time": rfc3339(start + int(m["t"] * 1e9))} for m in view["sip"]]

    @app.get("/api/calls/{call_id}/files/{kind}", summary="A file of the call",
             tags=["files"], response_class=FileResponse)
    def api_file(request: Request, call_id: str, kind: str, who: Reader) -> Response:
        """``audio`` (``audio2``: the second file of a split layout), ``metadata`` (RFC 7865
        XML), ``summary``, ``sip_pcap``, ``evidence_pcap``, ``view``. Range requests are
        answered (206), so players can seek."""
        if kind not in FILE_KINDS:
            raise HTTPException(404, f"no file kind {kind[:40]!r} (one of "
                                     f"{', '.join(FILE_KINDS)})")
        if not who.can(FILE_RIGHTS[kind]):
            dash.audit(request, who, "denied", request.url.path, f"needs {FILE_RIGHTS[kind]}")
            raise HTTPException(403, f"your role does not allow this (needs "
                                     f"{FILE_RIGHTS[kind]})")
        e = dash.entry(call_id, who)
        dash.file_of(e, kind)  # a 404 before the audit line, as before
        if not _continued(request):  # a player's later range reads are the same play
            dash.audit(request, who, "play" if kind.startswith("audio") else "download",
                       f"{call_id} {kind}")
        return dash.send_file(request, e, kind)

    @app.get("/api/calls/{call_id}/audio", summary="The recording, for a browser",
             tags=["files"], response_class=FileResponse)
    def api_audio(request: Request, call_id: str, who: Listener,
                  format: str = "") -> Response:  # noqa: A002
        """The recording as stored, or transcoded to ``format`` (wav, mp3, opus, flac) when
        asked; a split layout's two files as one two-channel file (caller left)."""
        return dash.audio(request, call_id, format, who)

    @app.get("/api/calls/{call_id}/zip", summary="Every file of the call, zipped",
             tags=["files"], response_class=StreamingResponse)
    def api_zip(request: Request, call_id: str, who: Investigator) -> StreamingResponse:
        e = dash.entry(call_id, who)
        dash.audit(request, who, "download", f"{call_id} zip")
        files = []
        for kind in FILE_KINDS:
            try:
                files.append(dash.file_of(e, kind))
            except HTTPException:
                continue
        spool: Any
        if e.get("encrypted"):  # the plain files, zipped in memory (never on disk)
            spool = os.fdopen(memfile("zip"), "w+b")
        else:
            spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)  # noqa: SIM115
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as z:
            for p in files:
                if e.get("encrypted"):
                    z.writestr(os.path.basename(p.removesuffix(SUFFIX)),
                               dash.unsealer.read(e, p))
                else:
                    z.write(p, os.path.basename(p))
        spool.seek(0)

        def chunks() -> Iterator[bytes]:
            try:
                while block := spool.read(1 << 16):
                    yield block
            finally:
                spool.close()

        return StreamingResponse(chunks(), media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{call_id}.zip"'})

    @app.get("/api/overview", summary="Figures for a period", tags=["calls"])
    def api_overview(
        who: Reader,
        start_from: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        start_to: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    ) -> dict[str, Any]:
        """Calls per hour (per day over more than a week), answer-seizure ratio, average
        call length (answered calls), the MOS distribution (the worse direction) and the
        worst calls of the period (by default, all calls)."""
        a, b = _when(start_from, "from"), _when(start_to, "to")
        with dash._lock:  # noqa: SLF001
            rows = list(dash.catalog.stats_rows(a, b, who.scope))
        return _overview(dash, rows, a, b, who)

    # pages

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page_calls(_who: Reader) -> HTMLResponse:
        return HTMLResponse(calls_page())

    @app.get("/calls/{call_id}", response_class=HTMLResponse, include_in_schema=False)
    def page_call(call_id: str, who: Reader) -> HTMLResponse:
        dash.entry(call_id, who)
        return HTMLResponse(call_page(call_id))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/overview", response_class=HTMLResponse, include_in_schema=False)
    def page_overview(_who: Reader) -> HTMLResponse:
        return HTMLResponse(overview_page())

    add_access_routes(app, dash, oidc, secure_cookies, board is not None)
    add_live_routes(app, dash, board, options or WriteOptions())
    return app


def _continued(request: Request) -> bool:
    """A player's follow-up read of a file it is already playing (a Range past the start)."""
    rng = request.headers.get("range", "")
    return bool(rng) and not rng.replace(" ", "").startswith("bytes=0-")


def _overview(dash: Dashboard, rows: list[tuple[int, float | None, str, float | None, str]],
              a: int | None, b: int | None, who: Principal) -> dict[str, Any]:
    answered = total = 0
    length = 0.0
    bins = [0] * 8  # MOS 1-1.5 ... 4.5-5
    worst: list[tuple[float, str]] = []
    starts = [r[0] for r in rows]
    lo = a if a is not None else (min(starts) if starts else 0)
    hi = b if b is not None else (max(starts) + 1 if starts else 0)
    # hours over a week or less, else days; the empty ones too, up to MAX_BINS
    unit = 3600 if hi - lo <= 7 * 86400 * NS else 86400
    first = lo // (unit * NS)
    count = max(0, (hi - 1) // (unit * NS) - first + 1)
    if count > MAX_BINS:  # a span this long: only the days that had calls
        count = 0
    per: dict[int, int] = {first + k: 0 for k in range(count)}
    for start_ns, duration, status, mos, key in rows:
        total += 1
        slot = start_ns // (unit * NS)
        per[slot] = per.get(slot, 0) + 1
        if status == "completed":
            answered += 1
            length += duration or 0.0
        if mos is not None and mos >= 0:
            bins[min(7, max(0, int((mos - 1.0) / 0.5)))] += 1
            worst.append((mos, key))
    worst.sort()
    with dash._lock:  # noqa: SLF001
        worst_calls = [{**(dash.catalog.get(k, who.scope) or {}), "id": k, "mos_min": m}
                       for m, k in worst[:WORST_CALLS]]
    return {"calls": total, "answered": answered,
            "asr": round(answered / total, 4) if total else None,
            "acd_seconds": round(length / answered, 1) if answered else None,
            "per_period": {"unit": "hour" if unit == 3600 else "day",
                           "bins": [{"start": rfc3339(k * unit * NS), "calls": n}
                                    for k, n in sorted(per.items())]},
            "mos_histogram": [{"from": 1.0 + 0.5 * k, "to": 1.5 + 0.5 * k, "calls": n}
                              for k, n in enumerate(bins)],
            "worst": worst_calls}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(out_dir: str, listen: str, access: str = "", secure_cookies: bool = False,
          trusted_proxy: str = "", redis_url: str = "", prefix: str = "calltap",
          spool_dir: str = "", oidc: Oidc | None = None,
          options: WriteOptions | None = None, decrypt_key: str = "",
          catalog_url: str = "") -> int:
    """Run the dashboard on ``listen`` (host:port) until interrupted."""
    import uvicorn

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"calltap: --listen {listen!r}: expected HOST:PORT", flush=True)
        return 2
    path = access or access_path(os.path.realpath(out_dir))
    loopback = is_loopback(host)
    if not loopback and not os.path.exists(path):
        print(f"calltap: --listen {listen}: no users ({path} does not exist), so the "
              "dashboard listens on loopback only (127.0.0.1 or ::1); add one with "
              "`calltap users add`", flush=True)
        return 2
    try:
        accounts = Accounts(path)
    except (AccessError, OSError, sqlite3.Error) as exc:
        print(f"calltap: {path}: {exc}", flush=True)
        return 2
    if trusted_proxy and not accounts.has_users():
        print(f"calltap: --trusted-proxy: no users in {path}; behind a proxy everyone who "
              "reaches the proxy would be let in, so add one with `calltap users add`",
              flush=True)
        return 2
    if not loopback and not accounts.has_users():
        print(f"calltap: --listen {listen}: no users in {path}, so the dashboard listens on "
              "loopback only (127.0.0.1 or ::1); add one with `calltap users add`", flush=True)
        return 2
    if shutil.which("ffmpeg") is None:
        print("calltap: note: ffmpeg not found; recordings in formats browsers do not play "
              "cannot be transcoded", flush=True)
    app = create_app(out_dir, accounts, loopback, secure_cookies, redis_url, prefix, spool_dir,
                     oidc, options, decrypt_key, catalog_url)
    # behind a TLS proxy: the client's address from its X-Forwarded-For, if it is trusted
    uvicorn.run(app, host=host.strip("[]"), port=int(port), log_level="warning",
                proxy_headers=bool(trusted_proxy), forwarded_allow_ips=trusted_proxy or None)
    return 0
