"""The dashboard's doors: signing in (password or single sign-on) and out, share links
that open one call without an account, and the audit log's pages."""

from __future__ import annotations

import csv
import hmac
import io
import json
import os
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from calltap.access import (
    CSRF_HEADER,
    LOGIN_COOKIE,
    OIDC_COOKIE,
    SESSION_COOKIE,
    Admin,
    Reader,
    Sharer,
    shared_entry,
    view_for,
)
from calltap.accounts import SESSION_TTL_S, SHARE_SCOPES, Principal
from calltap.oidc import FLOW_TTL_S, Flow, Oidc, OidcError
from calltap.pages import audit_page, login_page, share_page
from writer.timefmt import rfc3339

if TYPE_CHECKING:
    from calltap.serve import Dashboard

NS = 1_000_000_000


async def _form(request: Request) -> dict[str, str]:
    """A JSON or URL-encoded request body as a flat dict of strings."""
    raw = await request.body()
    if len(raw) > 65536:
        raise HTTPException(413, "request body too large")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise HTTPException(400, "body: not JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "body: a JSON object expected")
        return {str(k): str(v) for k, v in data.items()}
    return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}


def _local(path: str) -> bool:
    """A path on this site to return to after signing in: never another site's address
    ("//host", "/\\host" and anything with a scheme are not)."""
    return path.startswith("/") and not path.startswith(("//", "/\\")) and "\\" not in path


def add_access_routes(app: FastAPI, dash: Dashboard, oidc: Oidc | None,
                      secure_cookies: bool, live: bool) -> None:
    # signing in and out

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def page_login(request: Request) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or os.urandom(18).hex()
        r = HTMLResponse(login_page(token, oidc is not None))
        r.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                     secure=secure_cookies, path="/api/login")
        return r

    @app.post("/api/login", summary="Sign in", tags=["access"])
    async def api_login(request: Request) -> Response:
        """``user`` and ``password`` (JSON or form), with the login page's CSRF token in the
        ``X-CSRF-Token`` header: sets the session cookie; returns the session's CSRF token
        for later state-changing requests."""
        form = await _form(request)
        # the header (the page's script) or the form's field (a browser without script)
        sent = request.headers.get(CSRF_HEADER, "") or form.get("csrf", "")
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
            dash.audit(request, None, "csrf-refused", "/api/login", "refused")
            raise HTTPException(403, "CSRF token missing or wrong: sign in from /login")
        user, password = form.get("user", "")[:64], form.get("password", "")
        addr = request.client.host if request.client else "-"
        keys = ("user:" + user, "addr:" + addr)
        now = dash.clock()
        wait = dash.limiter.blocked(keys, now)
        if wait > 0:
            dash.audit(request, None, "login", user, "rate-limited")
            raise HTTPException(429, "too many failed logins: try again later",
                                headers={"Retry-After": str(int(wait) + 1)})
        import anyio.to_thread

        good = await anyio.to_thread.run_sync(dash.accounts.check_password, user, password)
        if not good:
            dash.limiter.failed(keys, now)
            dash.audit(request, None, "login", user, "failed")
            raise HTTPException(401, "wrong user name or password")
        dash.limiter.succeeded(keys[0])
        cookie, csrf = dash.accounts.new_session(user, now)
        who = dash.accounts.principal(user, "session", csrf)
        dash.audit(request, who, "login", user)
        r: Response = JSONResponse({"user": user, "role": who.role if who else "",
                                    "csrf": csrf})
        if not request.headers.get("content-type", "").startswith("application/json"):
            r = RedirectResponse("/", status_code=303)  # a plain form: to the calls page
        r.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax",
                     secure=secure_cookies, max_age=SESSION_TTL_S)
        return r

    @app.get("/login/oidc", include_in_schema=False)
    def login_oidc(request: Request, next: str = "/") -> Response:  # noqa: A002
        """Single sign-on: to the provider, with a signed note of this sign-in."""
        if oidc is None:
            raise HTTPException(404, "single sign-on is not configured")
        try:
            url, flow = oidc.begin(str(request.base_url) + "login/oidc/callback",
                                   next if _local(next) else "/", dash.clock())
        except OidcError as exc:
            raise HTTPException(502, f"single sign-on: {exc}") from None
        r = RedirectResponse(url, status_code=303)
        text = flow.to_text()
        r.set_cookie(OIDC_COOKIE, f"{text}.{dash.accounts.sign('oidc:' + text)}",
                     httponly=True, samesite="lax", secure=secure_cookies,
                     path="/login/oidc", max_age=FLOW_TTL_S)
        return r

    @app.get("/login/oidc/callback", include_in_schema=False)
    def login_oidc_back(request: Request, code: str = "", state: str = "",
                        error: str = "") -> Response:
        if oidc is None:
            raise HTTPException(404, "single sign-on is not configured")
        text, _, sig = request.cookies.get(OIDC_COOKIE, "").partition(".")
        try:
            if error:
                raise OidcError(f"the provider said {error[:60]!r}")
            if not text or not hmac.compare_digest(
                    sig.encode(), dash.accounts.sign("oidc:" + text).encode()):
                raise OidcError("no sign-in in progress in this browser")
            flow = Flow.from_text(text)
            name = oidc.finish(str(request.base_url) + "login/oidc/callback", code, state,
                               flow, dash.clock())
        except OidcError as exc:
            dash.audit(request, None, "login", "single sign-on", "failed")
            raise HTTPException(403, f"single sign-on failed: {exc}") from None
        if dash.accounts.principal(name, "session") is None:
            dash.audit(request, None, "login", f"{name[:64]} via single sign-on", "failed")
            raise HTTPException(403, f"{name[:64]!r} is not a user here (an administrator "
                                     "adds users with `calltap users add`)")
        cookie, csrf = dash.accounts.new_session(name, dash.clock())
        dash.audit(request, dash.accounts.principal(name, "session", csrf), "login",
                   f"{name} via single sign-on")
        r = RedirectResponse(flow.next_path, status_code=303)
        r.set_cookie(SESSION_COOKIE, cookie, httponly=True, samesite="lax",
                     secure=secure_cookies, max_age=SESSION_TTL_S)
        r.delete_cookie(OIDC_COOKIE, path="/login/oidc")
        return r

    @app.post("/api/logout", summary="Sign out", tags=["access"])
    def api_logout(request: Request, who: Reader) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            dash.accounts.end_session(cookie)
        dash.audit(request, who, "logout", who.name)
        r = JSONResponse({"signed_out": True})
        r.delete_cookie(SESSION_COOKIE)
        return r

    @app.get("/api/me", summary="Who you are", tags=["access"])
    def api_me(who: Reader) -> dict[str, Any]:
        """Your name, role, rights and (for a browser session) the CSRF token to send."""
        return {"user": who.name, "role": who.role, "rights": sorted(who.rights),
                "csrf": who.csrf, "signed_in": who.via != "open", "live": live}

    # share links

    @app.post("/api/calls/{call_id}/shares", summary="Share one call", tags=["access"])
    async def api_share(request: Request, call_id: str, who: Sharer) -> dict[str, Any]:
        """A link that opens this call without an account: ``scope`` audio or
        audio+metadata, ``mask`` (hide the numbers), ``hours`` until it expires (24)."""
        form = await _form(request)
        dash.entry(call_id, who)
        try:
            hours = float(form.get("hours", "24"))
        except ValueError:
            raise HTTPException(400, "hours: a number") from None
        scope = form.get("scope", "audio")
        if scope not in SHARE_SCOPES:
            raise HTTPException(400, f"scope: one of {', '.join(SHARE_SCOPES)}")
        mask = form.get("mask", "false").lower() in ("1", "true", "yes", "on")
        now = dash.clock()
        sid, token = dash.accounts.new_share(call_id, who.name, scope, mask, hours * 3600,
                                             now, rfc3339(int(now * NS)))
        dash.audit(request, who, "share", f"{call_id} share {sid} {scope}"
                   + (" masked" if mask else ""))
        return {"id": sid, "url": f"/s/{token}", "scope": scope, "mask": mask,
                "expires": rfc3339(int((now + hours * 3600) * NS))}

    @app.get("/api/shares", summary="Share links", tags=["access"])
    def api_shares(who: Sharer) -> list[dict[str, Any]]:
        """Your share links (an administrator's: everyone's); their tokens are not kept."""
        return dash.accounts.shares(None if who.can("admin") else who.name)

    @app.post("/api/shares/{sid}/revoke", summary="Revoke a share link", tags=["access"])
    def api_revoke(request: Request, sid: str, who: Sharer) -> dict[str, Any]:
        call = dash.accounts.revoke_share(sid[:40], who)
        dash.audit(request, who, "revoke-share", f"{call} share {sid[:40]}")
        return {"id": sid, "revoked": True}

    def shared(request: Request, token: str, right: str) -> Principal:
        who = dash.accounts.share(token, dash.clock())
        if who is None or not who.can(right):
            dash.audit(request, None, "share-refused", "share link",
                       "refused" if who is None else f"needs {right}")
            raise HTTPException(403, "this link is not valid (expired, revoked or altered)")
        return who

    @app.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
    def page_share(request: Request, token: str) -> HTMLResponse:
        who = shared(request, token, "audio")
        dash.audit(request, who, "open-share", who.share_call)
        return HTMLResponse(share_page(token, who.can("read")))

    @app.get("/s/{token}/call", include_in_schema=False)
    def share_call(request: Request, token: str) -> dict[str, Any]:
        who = shared(request, token, "read")
        return shared_entry(dash.entry(who.share_call, who), who.share_mask)

    @app.get("/s/{token}/view", include_in_schema=False)
    def share_view(request: Request, token: str) -> JSONResponse:
        who = shared(request, token, "audio")
        return JSONResponse(view_for(dash.read_json(dash.entry(who.share_call, who), "view"),
                                     who))

    @app.get("/s/{token}/audio", include_in_schema=False)
    def share_audio(request: Request, token: str, format: str = "") -> Response:  # noqa: A002
        who = shared(request, token, "audio")
        return dash.audio(request, who.share_call, format, who)

    # the audit log

    @app.get("/api/audit", summary="The audit log", tags=["access"])
    def api_audit(who: Admin, after: Annotated[int, Query(ge=0)] = 0,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
        """Entries after sequence number ``after``, oldest first: who did what, when, from
        where, and how it went."""
        rows = dash.accounts.audit_rows(after, limit)
        return {"entries": rows, "next": rows[-1]["seq"] if len(rows) == limit else None}

    @app.get("/api/audit.csv", summary="Export the audit log", tags=["access"],
             response_class=StreamingResponse)
    def api_audit_csv(request: Request, who: Admin) -> StreamingResponse:
        dash.audit(request, who, "export-audit", "audit.csv")
        fields = ("seq", "at", "user", "action", "target", "from", "outcome")

        def lines() -> Iterator[str]:
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(fields)
            for row in dash.accounts.audit_all():
                w.writerow([row[f] for f in fields])
                if buf.tell() > 65536:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        return StreamingResponse(lines(), media_type="text/csv", headers={
            "Content-Disposition": 'attachment; filename="audit.csv"'})

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def page_audit(_who: Admin) -> HTMLResponse:
        return HTMLResponse(audit_page())
