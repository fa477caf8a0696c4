"""The dashboard's pages: small server-rendered shells; ``static/app.js`` fills them from
the JSON API (no build step)."""

from __future__ import annotations

import html
import json

from calltap import __version__


def _page(title: str, body: str, script: str, nav: bool = True) -> str:
    links = ("""<nav><a href="/">Calls</a><a id="nav-live" href="/live" hidden>Live</a>
<a href="/overview">Overview</a><a id="nav-audit" href="/audit" hidden>Audit</a></nav>
<span id="nav-user" class="muted"></span> <a id="nav-out" href="/login" hidden>Sign out</a>"""
             if nav else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} - calltap</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/style.css?v={__version__}">
</head><body>
<header><a class="brand" href="{'/' if nav else '#'}">calltap</a>
{links}
<label class="tz">Times in <select id="tz"><option value="local">this browser's zone</option>
<option value="UTC">UTC</option></select></label></header>
<main>{body}</main>
<script src="/static/app.js?v={__version__}"></script>
<script>{script}</script>
</body></html>"""


def calls_page() -> str:
    body = """
<h1>Calls</h1>
<form id="filters" class="filters">
  <label>Number or URI <input name="party" placeholder="4930123"></label>
  <label>match <select name="party_mode"><option value="substring">contains</option>
    <option value="prefix">starts with</option><option value="suffix">ends with</option>
    <option value="exact">is</option></select></label>
  <label>Anywhere <input name="q" placeholder="Call-ID, name, header"></label>
  <label>From <input name="from" type="datetime-local" step="1"></label>
  <label>To <input name="to" type="datetime-local" step="1"></label>
  <label>Address <input name="cidr" placeholder="192.0.2.0/24"></label>
  <label>Status <select name="status"><option value="">any</option>
    <option>completed</option><option>failed</option><option>cancelled</option>
    <option>busy</option><option>no-answer</option><option>interrupted</option>
    <option>unsignalled</option></select></label>
  <label>Codec <input name="codec" size="8" placeholder="PCMA"></label>
  <label>MOS from <input name="mos_min" type="number" min="1" max="5" step="0.1"></label>
  <label>to <input name="mos_max" type="number" min="1" max="5" step="0.1"></label>
  <label>Loss % at least <input name="loss_min" type="number" min="0" max="100" step="0.1"></label>
  <label>of <select name="side"><option value="any">the worse direction</option>
    <option value="caller">the caller's</option><option value="callee">the callee's</option>
    </select></label>
  <label>Length s from <input name="duration_min" type="number" min="0"></label>
  <label>to <input name="duration_max" type="number" min="0"></label>
  <label>DTMF <input name="dtmf" size="6"></label>
  <label>Group <input name="group" size="8"></label>
  <label>Rule <input name="rule" size="8"></label>
  <label>Sort <select name="sort"><option value="start">start</option>
    <option value="duration">length</option><option value="mos">MOS</option>
    <option value="loss">loss</option></select></label>
  <label><select name="order"><option value="desc">descending</option>
    <option value="asc">ascending</option></select></label>
  <button type="submit">Search</button> <a id="csv" href="/api/calls.csv">CSV</a>
</form>
<p id="total" class="muted"></p><p id="error" class="error"></p>
<table id="calls" class="calls"><thead><tr><th>Start</th><th>Caller</th><th>Callee</th>
<th>Length</th><th>Status</th><th>Codec</th><th>MOS (caller / callee)</th>
<th>Lost</th><th>DTMF</th></tr></thead><tbody></tbody></table>
<p><button id="more" hidden>Next page</button></p>"""
    return _page("Calls", body, "calltap.callsPage();")


def call_page(call_id: str, token: str = "", metadata: bool = True) -> str:
    """A call's page; with ``token``, as a share link shows it (no account, nothing else)."""
    audio = (f"/s/{html.escape(token)}/audio" if token
             else f"/api/calls/{html.escape(call_id)}/audio")
    share = "" if token else """
  <button id="share" type="button" hidden>Share…</button>
  <span id="share-out" class="share-out"></span>"""
    body = f"""
<h1 id="title">Call</h1><p id="subtitle" class="muted"></p>
<section class="player">
  <button id="play" type="button">Play</button>
  <span id="clock">0:00.0</span>
  <label>Speed <select id="speed"><option>0.5</option><option selected>1</option>
    <option>1.5</option><option>2</option></select></label>
  <label>Listen to <select id="channel"><option value="both">both</option>
    <option value="0">caller only</option><option value="1">callee only</option></select></label>
  <audio id="audio" preload="metadata" src="{audio}"></audio>{share}
</section>
<section id="timeline" class="timeline">
  <canvas id="wave" height="170"></canvas>
  <div id="legend" class="legend"></div>
  <svg id="ladder" class="ladder"></svg>
  <h2>Quality per second</h2>
  <svg id="quality" class="quality"></svg>
  <div id="playhead" class="playhead"></div>
</section>
<section class="details">
  <div><h2>SIP message</h2><pre id="siptext" class="sip">Click a message in the ladder.</pre></div>
  <div><h2>Call</h2><table id="meta" class="meta"></table>
  <h2>Downloads</h2><ul id="downloads"></ul></div>
</section>"""
    if token:
        return _page("Shared call", body,
                     f"calltap.callPage('', {json.dumps(token)}, {json.dumps(metadata)});",
                     nav=False)
    return _page("Call", body, f"calltap.callPage({json.dumps(call_id)});")


def share_page(token: str, metadata: bool) -> str:
    return call_page("", token, metadata)


def login_page(csrf: str, sso: bool = False) -> str:
    link = ('<p><a id="sso" href="/login/oidc">Sign in with single sign-on</a></p>'
            if sso else "")
    body = f"""
<h1>Sign in</h1>{link}
<form id="login" class="login" method="post" action="/api/login">
  <label>User <input name="user" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password"
    required></label>
  <input type="hidden" name="csrf" value="{html.escape(csrf)}">
  <button type="submit">Sign in</button>
</form>
<p id="error" class="error"></p>"""
    return _page("Sign in", body, "calltap.loginPage();", nav=False)


def audit_page() -> str:
    body = """
<h1>Audit log</h1>
<p><a id="audit-csv" href="/api/audit.csv">Export (CSV)</a></p>
<table id="audit" class="calls"><thead><tr><th>#</th><th>When</th><th>User</th>
<th>Action</th><th>What</th><th>From</th><th>Outcome</th></tr></thead><tbody></tbody></table>
<p><button id="more" hidden>More</button></p>"""
    return _page("Audit log", body, "calltap.auditPage();")


def overview_page() -> str:
    body = """
<h1>Overview</h1>
<form id="period" class="filters">
  <label>From <input name="from" type="datetime-local" step="1"></label>
  <label>To <input name="to" type="datetime-local" step="1"></label>
  <button type="submit">Show</button></form>
<div id="figures" class="figures"></div>
<h2>Calls per <span id="per-unit">hour</span></h2><svg id="hours" class="chart"></svg>
<h2>MOS of the worse direction</h2><svg id="mos" class="chart"></svg>
<h2>Worst calls</h2>
<table id="worst" class="calls"><thead><tr><th>Start</th><th>Caller</th><th>Callee</th>
<th>MOS</th><th>Length</th></tr></thead><tbody></tbody></table>"""
    return _page("Overview", body, "calltap.overviewPage();")


def live_page() -> str:
    body = """
<h1>Calls in progress</h1>
<p id="live-state" class="muted">connecting…</p>
<table id="live" class="calls"><thead><tr><th>Start</th><th>Caller</th><th>Callee</th>
<th>Length</th><th>Status</th><th>Codec</th><th>Packets (caller / callee)</th>
<th>Lost</th><th></th></tr></thead><tbody></tbody></table>
<section id="listening" class="player" hidden>
  <span id="listen-what"></span> <button id="listen-stop" type="button">Stop</button>
  <span id="listen-delay" class="muted"></span>
  <audio id="live-audio" preload="none"></audio>
</section>
<h2>Just recorded</h2>
<table id="recorded" class="calls"><thead><tr><th>Start</th><th>Caller</th><th>Callee</th>
<th>Length</th><th>Status</th><th>MOS</th></tr></thead><tbody></tbody></table>"""
    return _page("Live", body, "calltap.livePage();")
