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
import subprocess
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from calltap import __version__
from calltap.catalog import (
    CatalogError,
    SqliteCatalog,
    Store,
    read_summary,
)
from calltap.catalog import (
    Query as CatalogQuery,
)
from calltap.pages import call_page, calls_page, overview_page

STATIC = os.path.join(os.path.dirname(__file__), "static")
# A call's identifier as the catalog gives it (its files' stem); anything else is a 404
# before it reaches the catalog or the filesystem.
CALL_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")
FILE_KINDS = ("audio", "audio2", "metadata", "summary", "sip_pcap", "evidence_pcap", "view")
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


class Dashboard:
    """The application's state: the output directory and its catalog."""

    def __init__(self, out_dir: str) -> None:
        self.out = os.path.realpath(out_dir)
        if not os.path.isdir(self.out):
            raise FileNotFoundError(f"{out_dir}: no such output directory")
        self.catalog: Store = SqliteCatalog.beside(self.out)
        self._lock = threading.Lock()
        self.cache_dir = os.path.join(self.out, ".calltap", "transcoded")

    def entry(self, call_id: str) -> dict[str, Any]:
        if not CALL_ID.match(call_id):
            raise HTTPException(404, f"no call {call_id[:80]!r}")
        with self._lock:
            e = self.catalog.get(call_id)
        if e is None:
            raise HTTPException(404, f"no call {call_id!r}")
        return e

    def path(self, rel: str | None, what: str) -> str:
        """A file of the output directory by its catalog path, never outside it."""
        if not rel:
            raise HTTPException(404, f"this call has no {what}")
        p = os.path.realpath(os.path.join(self.out, rel))
        if not p.startswith(self.out + os.sep) or not os.path.isfile(p):
            raise HTTPException(404, f"{what} not on disk")
        return p

    def file_of(self, e: dict[str, Any], kind: str) -> str:
        summary_rel = e["summary"]
        stem = summary_rel[:-len(".json")]
        audio = e.get("audio_files") or []
        rel = {"audio": audio[0] if audio else None,
               "audio2": audio[1] if len(audio) > 1 else None,
               "metadata": e.get("metadata"), "summary": summary_rel,
               "sip_pcap": e.get("sip_pcap"),
               "evidence_pcap": stem + ".pcap" if os.path.exists(
                   os.path.join(self.out, stem + ".pcap")) else None,
               "view": e.get("view")}[kind]
        return self.path(rel, kind.replace("_", " "))

    def transcoded(self, sources: list[str], key: str, fmt: str) -> str:
        """``sources`` as one ``fmt`` file (FFmpeg), cached under the output directory;
        two sources (a split layout's caller and callee files) become its two channels."""
        os.makedirs(self.cache_dir, exist_ok=True)
        ext = {"opus": "ogg"}.get(fmt, fmt)
        dst = os.path.join(self.cache_dir, f"{key}.{ext}")
        if os.path.exists(dst) and all(os.path.getmtime(dst) >= os.path.getmtime(src)
                                       for src in sources):
            return dst
        codec = {"mp3": ["-c:a", "libmp3lame", "-q:a", "4"],
                 "opus": ["-c:a", "libopus", "-b:a", "32k"],
                 "wav": ["-c:a", "pcm_s16le"], "flac": ["-c:a", "flac"]}[fmt]
        fd, tmp = tempfile.mkstemp(suffix="." + ext, dir=self.cache_dir)
        os.close(fd)
        inputs = [x for src in sources for x in ("-i", src)]
        merge = (["-filter_complex", "[0:a][1:a]amerge=inputs=2[a]", "-map", "[a]", "-ac", "2"]
                 if len(sources) == 2 else [])
        r = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, *merge, *codec,
                            tmp], capture_output=True, check=False, timeout=600)
        if r.returncode:
            os.unlink(tmp)
            raise HTTPException(500, "transcoding failed: "
                                + r.stderr.decode(errors="replace").strip()[:200])
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


def create_app(out_dir: str) -> FastAPI:
    """The dashboard over ``out_dir`` (its catalog is created if missing)."""
    dash = Dashboard(out_dir)
    app = FastAPI(title="calltap", version=__version__,
                  description="Search, play and inspect the calls calltap recorded.")
    app.state.dashboard = dash
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

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

    @app.get("/api/calls", summary="Search calls", tags=["calls"])
    def api_calls(query: Search) -> dict[str, Any]:
        """Calls matching every given filter, a page at a time (``next`` is the cursor of
        the following page), with the total that match."""
        with dash._lock:  # noqa: SLF001 - one connection, used in turn
            page = dash.catalog.search(query)
        return {"total": page.total, "calls": page.calls, "next": page.next_cursor}

    @app.get("/api/calls.csv", summary="Export a search as CSV", tags=["calls"],
             response_class=StreamingResponse)
    def api_calls_csv(query: Search) -> StreamingResponse:
        """Every call matching the filters (no paging), one CSV row each."""
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
    def api_call(call_id: str) -> dict[str, Any]:
        """The call's index entry and its summary (every figure the writer computed)."""
        e = dash.entry(call_id)
        return {"id": call_id, "entry": e, "summary": read_summary(dash.out, e)}

    @app.get("/api/calls/{call_id}/view", summary="The call's page data", tags=["calls"])
    def api_view(call_id: str) -> Response:
        """Waveform peaks, per-bucket marks, quality per second, SIP ladder, streams."""
        e = dash.entry(call_id)
        return FileResponse(dash.file_of(e, "view"), media_type="application/json")

    @app.get("/api/calls/{call_id}/sip", summary="The call's SIP messages", tags=["calls"])
    def api_sip(call_id: str) -> list[dict[str, Any]]:
        """Every SIP message seen for the call, in capture order: time (seconds from the
        recording's start), source, destination, first line and full text."""
        e = dash.entry(call_id)
        with open(dash.file_of(e, "view"), encoding="utf-8") as f:
            view = json.load(f)
        start = int(view.get("start_ns") or 0)
        return [{**m, "time": _rfc3339(start + int(m["t"] * 1e9))} for m in view["sip"]]

    @app.get("/api/calls/{call_id}/files/{kind}", summary="A file of the call",
             tags=["files"], response_class=FileResponse)
    def api_file(call_id: str, kind: str) -> FileResponse:
        """``audio`` (``audio2``: the second file of a split layout), ``metadata`` (RFC 7865
        XML), ``summary``, ``sip_pcap``, ``evidence_pcap``, ``view``. Range requests are
        answered (206), so players can seek."""
        if kind not in FILE_KINDS:
            raise HTTPException(404, f"no file kind {kind[:40]!r} (one of "
                                     f"{', '.join(FILE_KINDS)})")
        e = dash.entry(call_id)
        p = dash.file_of(e, kind)
        ext = ".pcap" if p.endswith(".pcap") else os.path.splitext(p)[1]
        return FileResponse(p, media_type=MEDIA_TYPES.get(ext, "application/octet-stream"),
                            filename=os.path.basename(p))

    @app.get("/api/calls/{call_id}/audio", summary="The recording, for a browser",
             tags=["files"], response_class=FileResponse)
    def api_audio(call_id: str, format: str = "") -> FileResponse:  # noqa: A002
        """The recording as stored, or transcoded to ``format`` (wav, mp3, opus, flac) when
        asked; a split layout's two files as one two-channel file (caller left)."""
        e = dash.entry(call_id)
        src = dash.file_of(e, "audio")
        have = os.path.splitext(src)[1].lstrip(".")
        fmt = format or have
        if fmt not in BROWSER_FORMATS:
            raise HTTPException(400, f"format: one of {', '.join(BROWSER_FORMATS)}")
        if len(e.get("audio_files") or []) > 1:  # split layout: both parties, one file
            return FileResponse(dash.transcoded([src, dash.file_of(e, "audio2")], call_id,
                                                fmt), media_type=BROWSER_FORMATS[fmt])
        path = src if fmt == have else dash.transcoded([src], call_id, fmt)
        return FileResponse(path, media_type=BROWSER_FORMATS[fmt])

    @app.get("/api/calls/{call_id}/zip", summary="Every file of the call, zipped",
             tags=["files"], response_class=StreamingResponse)
    def api_zip(call_id: str) -> StreamingResponse:
        e = dash.entry(call_id)
        files = []
        for kind in FILE_KINDS:
            try:
                files.append(dash.file_of(e, kind))
            except HTTPException:
                continue
        spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)  # noqa: SIM115
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as z:
            for p in files:
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
        start_from: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        start_to: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    ) -> dict[str, Any]:
        """Calls per hour (per day over more than a week), answer-seizure ratio, average
        call length (answered calls), the MOS distribution (the worse direction) and the
        worst calls of the period (by default, all calls)."""
        a, b = _when(start_from, "from"), _when(start_to, "to")
        answered = total = 0
        length = 0.0
        bins = [0] * 8  # MOS 1-1.5 ... 4.5-5
        worst: list[tuple[float, str]] = []
        with dash._lock:  # noqa: SLF001
            rows = list(dash.catalog.stats_rows(a, b))
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
            worst_calls = [{**(dash.catalog.get(k) or {}), "id": k, "mos_min": m}
                           for m, k in worst[:WORST_CALLS]]
        return {"calls": total, "answered": answered,
                "asr": round(answered / total, 4) if total else None,
                "acd_seconds": round(length / answered, 1) if answered else None,
                "per_period": {"unit": "hour" if unit == 3600 else "day",
                               "bins": [{"start": _rfc3339(k * unit * NS), "calls": n}
                                        for k, n in sorted(per.items())]},
                "mos_histogram": [{"from": 1.0 + 0.5 * k, "to": 1.5 + 0.5 * k, "calls": n}
                                  for k, n in enumerate(bins)],
                "worst": worst_calls}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page_calls() -> HTMLResponse:
        return HTMLResponse(calls_page())

    @app.get("/calls/{call_id}", response_class=HTMLResponse, include_in_schema=False)
    def page_call(call_id: str) -> HTMLResponse:
        dash.entry(call_id)
        return HTMLResponse(call_page(call_id))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/overview", response_class=HTMLResponse, include_in_schema=False)
    def page_overview() -> HTMLResponse:
        return HTMLResponse(overview_page())

    return app


def _rfc3339(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // 1000 / 1e6, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(out_dir: str, listen: str) -> int:
    """Run the dashboard on ``listen`` (host:port) until interrupted."""
    import uvicorn

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"calltap: --listen {listen!r}: expected HOST:PORT", flush=True)
        return 2
    if not is_loopback(host):
        print(f"calltap: --listen {listen}: the dashboard has no user accounts yet, so it "
              "listens on loopback only (127.0.0.1 or ::1); put an authenticating proxy in "
              "front of it to reach it from elsewhere", flush=True)
        return 2
    if shutil.which("ffmpeg") is None:
        print("calltap: note: ffmpeg not found; recordings in formats browsers do not play "
              "cannot be transcoded", flush=True)
    app = create_app(out_dir)
    uvicorn.run(app, host=host.strip("[]"), port=int(port), log_level="warning")
    return 0
