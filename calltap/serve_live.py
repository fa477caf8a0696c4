"""The dashboard's calls in progress: the live list (a snapshot, then server-sent events fed
from the Redis events stream, resumable with Last-Event-ID) and live listening. Every
call and event passes the user's visibility limits first."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from calltap.access import Listener, Reader
from calltap.accounts import Principal
from calltap.listen import RENDER_EVERY_S, LiveListener, render_so_far
from calltap.live import live_fields
from calltap.livecalls import MAX_LIVE, LiveBoard, event_call, visible
from calltap.pages import live_page
from correlate.call import Call
from correlate.keys import SHARDS
from writer.options import WriteOptions

if TYPE_CHECKING:
    from calltap.serve import Dashboard

# Event streams open at once (each holds a worker thread while it waits on Redis).
MAX_EVENT_STREAMS = 16
# Live listeners at once (each renders its call twice a second).
MAX_LISTENERS = 8
# Seconds between the counters' updates on the live page.
PROGRESS_EVERY_S = 1.0
# A listener whose call has no decodable media yet waits this long, then the stream ends.
WAIT_FOR_MEDIA_S = 30.0
# Listeners remembered for their position (the page shows how far behind live it plays).
MAX_POSITIONS = 64
EVENT_ID_CHARS = set("0123456789-,")


def _sse(event: str, data: Any, eid: str = "") -> str:
    head = f"id: {eid}\n" if eid else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def add_live_routes(app: FastAPI, dash: Dashboard, board: LiveBoard | None,
                    options: WriteOptions) -> None:
    positions: dict[tuple[str, str], LiveListener] = {}
    """(user, listener name): its position, for the page's "behind live" figure."""

    def need_board() -> LiveBoard:
        if board is None:
            raise HTTPException(404, "no calls in progress here: start the dashboard with "
                                     "--redis (calltap run --serve does)")
        return board

    def call_of(tag: str, who: Principal) -> Call:
        b = need_board()
        if not tag.isalnum() or len(tag) > 64:
            raise HTTPException(404, "no such call in progress")
        call = b.calls().get(tag)
        if call is None or not visible(live_fields(call), who.scope):
            raise HTTPException(404, "no such call in progress")
        return call

    @app.get("/api/live", summary="Calls in progress", tags=["live"])
    async def api_live(who: Reader) -> dict[str, Any]:
        """Each call in progress you may see: parties, start, codec, packets and packets
        lost so far per direction (caller's, callee's)."""
        b = need_board()
        rows = await anyio.to_thread.run_sync(b.rows, who.scope)
        return {"calls": rows}

    @app.get("/api/live/events", summary="Calls in progress, as events", tags=["live"],
             response_class=StreamingResponse)
    async def api_live_events(request: Request, who: Reader) -> StreamingResponse:
        """Server-sent events: ``snapshot`` (the calls in progress), ``call`` (one started or
        changed), ``call-ended``, ``recording-ready`` (with the recorded call's ``id``) and,
        every second, ``progress`` (the counters). A client that reconnects with
        Last-Event-ID gets every event after that one."""
        b = need_board()
        if dash.event_streams >= MAX_EVENT_STREAMS:
            raise HTTPException(503, "too many live pages open; try again shortly")
        resume = request.headers.get("last-event-id", "")
        if not resume or len(resume) > 40 * SHARDS or not set(resume) <= EVENT_ID_CHARS:
            resume = ""

        async def stream() -> AsyncIterator[str]:
            dash.event_streams += 1
            try:
                seen: dict[str, bool] = {}  # tag: visible to this user
                last = resume or await anyio.to_thread.run_sync(b.last_event_id)
                rows = await anyio.to_thread.run_sync(b.rows, who.scope)
                seen.update((r["tag"], True) for r in rows)
                if not resume:
                    yield _sse("snapshot", {"calls": rows})
                next_progress = time.monotonic() + PROGRESS_EVERY_S
                while True:
                    events = await anyio.to_thread.run_sync(b.events, last, 500)
                    for eid, f in events:
                        last = eid
                        out = _visible_event(dash, who, f, seen)
                        if out is not None:
                            yield _sse(f.get("type", "event"), out, eid)
                    if time.monotonic() >= next_progress:
                        next_progress = time.monotonic() + PROGRESS_EVERY_S
                        rows = await anyio.to_thread.run_sync(b.rows, who.scope)
                        yield _sse("progress", {"calls": [
                            {k: r[k] for k in ("tag", "packets", "lost", "status",
                                               "answer_ns", "paused")} for r in rows]})
            finally:
                dash.event_streams -= 1

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    @app.get("/api/live/{tag}/audio", summary="Listen to a call in progress",
             tags=["live"], response_class=StreamingResponse)
    async def api_live_audio(request: Request, tag: str, who: Listener,
                             listen: str = "") -> StreamingResponse:
        """Both parties, stereo (caller left), as an endless WAV stream about two seconds
        behind the call; it ends when the call does. ``listen`` names this listener, so
        ``/api/live/{tag}/position`` can say how far behind live it plays."""
        call = await anyio.to_thread.run_sync(call_of, tag, who)
        if dash.listeners >= MAX_LISTENERS:
            raise HTTPException(503, "too many listeners; try again shortly")
        dash.audit(request, who, "listen-live", f"{tag} {call.call_id[:80]}")
        b = need_board()
        lst = LiveListener()
        key = (who.name, (listen or secrets.token_hex(4))[:32])
        positions[key] = lst
        while len(positions) > MAX_POSITIONS:
            positions.pop(next(iter(positions)))

        async def audio() -> AsyncIterator[bytes]:
            dash.listeners += 1
            started = time.monotonic()
            last_call = call
            key = None  # a sealed spool's key: read while the call is live, then kept (it
            try:        # leaves Redis with the call, and the last render still needs it)
                while True:
                    c = (await anyio.to_thread.run_sync(b.calls)).get(tag)
                    final = c is None  # the call ended: what is left, then the end
                    c = c or last_call
                    last_call = c
                    try:
                        if key is None and not final:
                            key = await anyio.to_thread.run_sync(b.spool_key, tag)
                        rate, start, pcm = await anyio.to_thread.run_sync(
                            render_so_far, c, b.spool_path(tag, c.serial), options, key)
                    except Exception:  # noqa: BLE001 - the spool went to the writer (or
                        if final:      # is being replaced): at the end, the end; else retry
                            return
                        await anyio.sleep(RENDER_EVERY_S)
                        continue
                    chunk = lst.take(rate, start, pcm, final)
                    if chunk:
                        yield chunk
                    if final or (not lst.rate
                                 and time.monotonic() - started > WAIT_FOR_MEDIA_S):
                        return
                    await anyio.sleep(RENDER_EVERY_S)
            finally:
                dash.listeners -= 1

        return StreamingResponse(audio(), media_type="audio/wav", headers={
            "Cache-Control": "no-store", "Accept-Ranges": "none"})

    @app.get("/api/live/{tag}/position", summary="Where a live listener is", tags=["live"])
    def api_live_position(tag: str, who: Listener, listen: str) -> dict[str, Any]:
        """Capture time (ns) of the first frame sent to listener ``listen`` and of the next
        one, and the rate: with the player's position, how far behind live it plays."""
        lst = positions.get((who.name, listen[:32]))
        if lst is None or not lst.rate:
            raise HTTPException(404, "no such listener (yet)")
        return {"first_ns": lst.first_ns, "next_ns": lst.next_ns, "rate": lst.rate}

    @app.get("/api/live/status", summary="Live work on this server", tags=["live"])
    def api_live_status(_who: Reader) -> dict[str, int]:
        """Event streams and live listeners open now (each ends when its page closes)."""
        return {"event_streams": dash.event_streams, "listeners": dash.listeners}

    @app.get("/live", response_class=HTMLResponse, include_in_schema=False)
    def page_live(_who: Reader) -> HTMLResponse:
        return HTMLResponse(live_page())


def _visible_event(dash: Dashboard, who: Principal, f: dict[str, str],
                   seen: dict[str, bool]) -> dict[str, Any] | None:
    """An event as this user may see it, or None (another's call, or an unknown type)."""
    kind, tag = f.get("type", ""), f.get("tag", "")
    if kind == "call":
        data = event_call(f)
        ok = seen[tag] = visible(data, who.scope)
        while len(seen) > MAX_LIVE:  # calls whose end never came (a capture restarted)
            seen.pop(next(iter(seen)))
        return {"tag": tag, **data} if ok else None
    if kind == "call-ended":
        return {"tag": tag} if seen.pop(tag, False) else None
    if kind == "recording-ready":
        key = f.get("id", "")
        if not key:
            return None
        with dash._lock:  # noqa: SLF001
            entry = dash.catalog.get(key, who.scope)
        return None if entry is None else {"tag": tag, "id": key, **entry}
    return None
