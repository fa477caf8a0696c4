"""The dashboard's door: who a request is (session cookie, API token or share link), the
CSRF check on every state-changing request, the login rate bound, and what a role or a
share may see of a call. The rules take ``now`` as data; ``serve`` passes the clock."""

from __future__ import annotations

import hmac
import re
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from calltap.accounts import Accounts, Principal

SESSION_COOKIE = "calltap_session"
OIDC_COOKIE = "calltap_oidc"
"""A single sign-on in progress (its state, nonce and PKCE verifier), signed."""
LOGIN_COOKIE = "calltap_login"
"""Double-submit CSRF for the login form (no session exists yet to tie a token to)."""
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Paths that answer without a login: the login itself, static files, share links.
PUBLIC_PATHS = ("/login", "/api/login", "/login/oidc", "/login/oidc/callback", "/static/",
                "/favicon.ico", "/s/")
# Failed logins allowed per user name and per address within LOGIN_WINDOW_S.
LOGIN_FAILURES = 5
LOGIN_WINDOW_S = 300.0
# Names and addresses whose failures are remembered: the oldest go first beyond this (a
# spray of made-up names must not grow memory).
MAX_LOGIN_KEYS = 10_000


class LoginLimiter:
    """At most LOGIN_FAILURES failed logins per user and per address in a sliding window
    (a success clears the user's count)."""

    def __init__(self) -> None:
        self._fails: OrderedDict[str, list[float]] = OrderedDict()

    def blocked(self, keys: tuple[str, ...], now: float) -> float:
        """Seconds until a login for ``keys`` may be tried again (0: now)."""
        wait = 0.0
        for k in keys:
            times = [t for t in self._fails.get(k, []) if now - t < LOGIN_WINDOW_S]
            if len(times) >= LOGIN_FAILURES:
                wait = max(wait, times[0] + LOGIN_WINDOW_S - now)
        return wait

    def failed(self, keys: tuple[str, ...], now: float) -> None:
        for k in keys:
            times = [t for t in self._fails.pop(k, []) if now - t < LOGIN_WINDOW_S]
            self._fails[k] = [*times, now][-LOGIN_FAILURES:]
        while len(self._fails) > MAX_LOGIN_KEYS:
            self._fails.popitem(last=False)

    def succeeded(self, user_key: str) -> None:
        self._fails.pop(user_key, None)


def is_public(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC_PATHS)


def identify(accounts: Accounts, headers: dict[str, str], cookies: dict[str, str],
             now: float) -> Principal | None:
    """The user a request comes from: an API token (``Authorization: Bearer``) or a login
    session cookie. Tokens are never read from the URL (it lands in logs and histories)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return accounts.token(auth[7:].strip(), now)
    cookie = cookies.get(SESSION_COOKIE)
    return accounts.session(cookie, now) if cookie else None


def csrf_ok(who: Principal, headers: dict[str, str]) -> bool:
    """A state-changing request from a browser session carries the session's CSRF token in
    a header a cross-site form cannot set. Token requests carry no ambient credential."""
    if who.via != "session":
        return True
    sent = headers.get(CSRF_HEADER, "")
    return bool(sent) and hmac.compare_digest(sent.encode(), who.csrf.encode())


_DIGITS = re.compile(r"\d")


def mask_number(uri: str | None) -> str | None:
    """A party with its number hidden but the last two digits ('sip:+4930****67@host')."""
    if not uri:
        return uri
    m = re.match(r"^((?:sips?:|tel:)?)([^@;]*)(.*)$", uri)
    if not m:
        return uri
    scheme, user, rest = m.groups()
    digits = [i for i, c in enumerate(user) if c.isdigit()]
    keep = set(digits[-2:])
    hidden = "".join("*" if (c.isalnum() and i not in keep) else c
                     for i, c in enumerate(user))
    if "@" in rest:  # the host may be an address that names the site: hidden too
        rest = "@" + _DIGITS.sub("*", rest[1:])
    return scheme + hidden + rest


# What a share with metadata shows of a call's index entry: no Call-ID, no addresses.
SHARED_FIELDS = ("start", "answer", "end", "duration", "caller", "callee", "status",
                 "codecs", "mos", "packets", "lost")


def shared_entry(entry: dict[str, Any], mask: bool) -> dict[str, Any]:
    out = {k: entry.get(k) for k in SHARED_FIELDS}
    if mask:
        out["caller"], out["callee"] = mask_number(out["caller"]), mask_number(out["callee"])
    return out


def view_for(view: dict[str, Any], who: Principal) -> dict[str, Any]:
    """The call page's data as ``who`` may see it: SIP text only with the evidence right;
    a share link gets the waveform, marks and quality, no signalling at all."""
    if who.via == "share":  # DTMF times stay, their digits (card numbers, PINs) do not
        return {**view, "sip": [], "streams": [],
                "dtmf": [{k: v for k, v in x.items() if k != "digit"}
                         for x in view.get("dtmf") or []]}
    if who.can("evidence"):
        return view
    return {**view, "sip": [{k: v for k, v in m.items() if k != "text"}
                            for m in view.get("sip") or []]}


def need(right: str) -> Any:
    """A route's dependency: the request's user, who must hold ``right``."""

    def check(request: Request) -> Principal:
        who: Principal = request.state.who
        if not who.can(right):
            request.app.state.dashboard.audit(request, who, "denied", request.url.path,
                                              f"needs {right}")
            raise HTTPException(403, f"your role does not allow this (needs {right})")
        return who

    return Depends(check)


Reader = Annotated[Principal, need("read")]
Listener = Annotated[Principal, need("audio")]
Investigator = Annotated[Principal, need("evidence")]
Sharer = Annotated[Principal, need("share")]
Admin = Annotated[Principal, need("admin")]
