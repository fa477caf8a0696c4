/* calltap dashboard: fills the server's page shells from the JSON API. No build step. */
"use strict";
const calltap = (() => {
  const SVGNS = "http://www.w3.org/2000/svg";
  const FLAG_COLORS = {loss: "#a8071a", gap: "#d4380d", hold: "#8c8c8c", early_media: "#faad14",
                       pause: "#722ed1", dtmf: "#13c2c2", ssrc_change: "#1d39c4"};
  const CHANNEL_COLORS = ["#2f6fde", "#1f9d55"];

  function zone() { return localStorage.getItem("calltap.tz") || "local"; }
  function setupZone(onChange) {
    const sel = document.getElementById("tz");
    sel.value = zone();
    sel.addEventListener("change", () => { localStorage.setItem("calltap.tz", sel.value); onChange(); });
  }
  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const opts = {year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
                  minute: "2-digit", second: "2-digit", hour12: false};
    if (zone() === "UTC") opts.timeZone = "UTC";
    return d.toLocaleString("sv-SE", opts) + (zone() === "UTC" ? " UTC" : "");
  }
  function fmtDur(s) {
    if (s == null) return "";
    const m = Math.floor(s / 60), r = s - 60 * m;
    return m + ":" + r.toFixed(1).padStart(4, "0");
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }
  async function getJSON(url) {
    const r = await fetch(url);
    const body = await r.json();
    if (!r.ok) throw new Error(body.detail || r.statusText);
    return body;
  }
  // who is signed in (rights, and the CSRF token every state-changing request carries)
  let mePromise = null;
  function me() {
    if (!mePromise) mePromise = getJSON("/api/me").catch(() => ({rights: [], csrf: ""}));
    return mePromise;
  }
  async function post(url, body) {
    const m = await me();
    const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": m.csrf},
                                body: JSON.stringify(body || {})});
    const out = await r.json();
    if (!r.ok) throw new Error(out.detail || r.statusText);
    return out;
  }
  async function setupNav() {
    if (!document.getElementById("nav-out")) return;
    const m = await me();
    if (m.live) document.getElementById("nav-live").hidden = false;
    if (m.rights.includes("admin")) document.getElementById("nav-audit").hidden = false;
    if (m.signed_in) {
      document.getElementById("nav-user").textContent = m.user + " (" + m.role + ")";
      const out = document.getElementById("nav-out");
      out.hidden = false;
      out.addEventListener("click", async ev => {
        ev.preventDefault();
        await post("/api/logout");
        location.href = "/login";
      });
    }
  }
  function short(uri) { return (uri || "").replace(/^sips?:/, "").replace(/^tel:/, ""); }
  // datetime-local inputs hold the viewer's zone (or UTC); the API wants UTC
  function toApiTime(v) {
    if (!v) return "";
    return zone() === "UTC" ? v + "Z" : new Date(v).toISOString();
  }
  function fromApiTime(v) {
    if (!v) return "";
    const d = new Date(v);
    if (zone() === "UTC") return d.toISOString().slice(0, 19);
    const off = d.getTimezoneOffset() * 60000;
    return new Date(d - off).toISOString().slice(0, 19);
  }

  /* ---------------- calls page ---------------- */
  function callsPage() {
    setupNav();
    const form = document.getElementById("filters");
    const tbody = document.querySelector("#calls tbody");
    const more = document.getElementById("more");
    let cursor = null;
    function params() {
      const p = new URLSearchParams();
      for (const [k, v] of new FormData(form)) {
        if (v === "") continue;
        p.set(k, k === "from" || k === "to" ? toApiTime(v) : v);
      }
      return p;
    }
    function fill() {
      const p = new URLSearchParams(location.search);
      for (const inp of form.elements) {
        if (!inp.name || !p.has(inp.name)) continue;
        inp.value = inp.name === "from" || inp.name === "to" ? fromApiTime(p.get(inp.name)) : p.get(inp.name);
      }
    }
    async function load(append) {
      const p = new URLSearchParams(location.search);
      if (append && cursor) p.set("cursor", cursor);
      document.getElementById("csv").href = "/api/calls.csv?" + new URLSearchParams(location.search);
      document.getElementById("error").textContent = "";
      let page;
      try { page = await getJSON("/api/calls?" + p); }
      catch (e) { document.getElementById("error").textContent = e.message; return; }
      if (!append) tbody.textContent = "";
      for (const c of page.calls) {
        const tr = el("tr", {"data-id": c.id});
        const mos = (c.mos || []).map(m => m == null ? "-" : m.toFixed(2)).join(" / ");
        const lost = (c.lost || []).join(" / ");
        const cells = [fmtTime(c.start), short(c.caller), short(c.callee), fmtDur(c.duration),
                       c.status, (c.codecs || []).join(", "), mos, lost, c.dtmf || ""];
        cells.forEach((t, i) => {
          const td = el("td", {}, t);
          if (i === 6 && (c.mos || []).some(m => m != null && m < 3.6)) td.className = "bad";
          tr.appendChild(td);
        });
        tr.addEventListener("click", () => { location.href = "/calls/" + encodeURIComponent(c.id); });
        tbody.appendChild(tr);
      }
      cursor = page.next;
      more.hidden = !cursor;
      document.getElementById("total").textContent =
        page.total + " call" + (page.total === 1 ? "" : "s") + " match";
      document.body.dataset.ready = "1";
    }
    form.addEventListener("submit", ev => {
      ev.preventDefault();
      history.replaceState(null, "", "?" + params());
      cursor = null;
      load(false);
    });
    more.addEventListener("click", () => load(true));
    setupZone(() => { fill(); load(false); });
    fill();
    load(false);
  }

  /* ---------------- call page ---------------- */
  function decode(b64, Type) {
    const bin = atob(b64);
    const u8 = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
    return new Type(u8.buffer);
  }

  async function callPage(id, token, withMeta) {
    const shared = Boolean(token);
    const base = shared ? "/s/" + token : "/api/calls/" + encodeURIComponent(id);
    const detail = shared ? {entry: withMeta ? await getJSON(base + "/call") : {}, summary: {}}
                          : await getJSON(base);
    const view = await getJSON(base + "/view");
    const e = detail.entry, s = detail.summary || {};
    const audio = document.getElementById("audio");
    const timeline = document.getElementById("timeline");
    const canvas = document.getElementById("wave");
    const ladder = document.getElementById("ladder");
    const quality = document.getElementById("quality");
    const playhead = document.getElementById("playhead");
    const seconds = view.rate ? view.frames / view.rate : 0;
    const sipTimes = view.sip.map(m => m.t);
    const t0 = Math.min(0, ...sipTimes);
    const t1 = Math.max(seconds, view.end || 0, ...sipTimes, t0 + 1);
    const PAD = 10;
    let width = 0;
    const x = t => PAD + (t - t0) / (t1 - t0) * (width - 2 * PAD);
    const tOf = px => t0 + (px - PAD) / (width - 2 * PAD) * (t1 - t0);

    document.getElementById("title").textContent = shared && !withMeta ? "Shared recording"
      : short(e.caller) + " → " + short(e.callee);
    function subtitle() {
      if (shared && !withMeta) return;
      document.getElementById("subtitle").textContent =
        fmtTime(e.start) + " · " + fmtDur(e.duration) + " · " + e.status +
        (e.end_reason ? " (" + e.end_reason + ")" : "") + " · " + (e.codecs || []).join(", ");
    }

    function drawWave() {
      width = timeline.clientWidth;
      canvas.width = width;
      const ctx = canvas.getContext("2d");
      const H = canvas.height, lane = (H - 30) / 2;
      ctx.clearRect(0, 0, width, H);
      const n = view.buckets, step = view.bucket_ms / 1000;
      const flags = view.flags.map(b => decode(b, Uint8Array));
      for (let c = 0; c < 2; c++) {
        const lo = decode(view.peaks.min[c], Int8Array), hi = decode(view.peaks.max[c], Int8Array);
        const mid = lane / 2 + c * (lane + 15);
        ctx.fillStyle = CHANNEL_COLORS[c];
        for (let px = Math.floor(x(0)); px < Math.ceil(x(n * step)) && px < width; px++) {
          const a = Math.max(0, Math.floor(tOf(px) / step)), b = Math.min(n, Math.ceil(tOf(px + 1) / step));
          let mn = 0, mx = 0;
          for (let i = a; i < Math.max(b, a + 1) && i < n; i++) { mn = Math.min(mn, lo[i]); mx = Math.max(mx, hi[i]); }
          const y0 = mid - mx / 128 * lane / 2, y1 = mid - mn / 128 * lane / 2;
          ctx.fillRect(px, y0, 1, Math.max(1, y1 - y0));
        }
        // marks under the channel: one thin row of colour per bucket with a flag
        const rowY = mid + lane / 2 + 2;
        for (let i = 0; i < n; i++) {
          const f = flags[c][i];
          if (!f) continue;
          for (const [name, bit] of Object.entries(view.flag_bits)) {
            if (!(f & bit)) continue;
            ctx.fillStyle = FLAG_COLORS[name] || "#000";
            ctx.fillRect(x(i * step), rowY, Math.max(1, x((i + 1) * step) - x(i * step)), 5);
          }
        }
        ctx.fillStyle = "#5b6570";
        ctx.font = "11px system-ui";
        ctx.fillText(c === 0 ? "caller" : "callee", 2, mid - lane / 2 + 11);
      }
      const legend = document.getElementById("legend");
      legend.textContent = "";
      for (const [name, color] of Object.entries(FLAG_COLORS)) {
        const span = el("span");
        const i = el("i"); i.style.background = color;
        span.append(i, name.replace("_", " "));
        legend.appendChild(span);
      }
    }

    function seek(t) {
      audio.currentTime = Math.max(0, Math.min(t, seconds));
      movePlayhead();
    }
    canvas.addEventListener("click", ev => seek(tOf(ev.offsetX)));

    function drawLadder() {
      ladder.textContent = "";
      // one lane per host: its SIP and its media share it
      const lanes = [];
      const host = a => a.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
      const laneOf = a => { const h = host(a); let k = lanes.indexOf(h); if (k < 0) { lanes.push(h); k = lanes.length - 1; } return k; };
      for (const m of view.sip) { laneOf(m.src); laneOf(m.dst); }
      for (const st of view.streams) { laneOf(st.src); laneOf(st.dst); }
      const LH = 46, top = 14;
      const h = top + LH * Math.max(lanes.length, 2) + 10;
      ladder.setAttribute("height", h);
      ladder.setAttribute("viewBox", `0 0 ${width} ${h}`);
      const y = k => top + LH * k + LH / 2;
      lanes.forEach((a, k) => {
        ladder.appendChild(svg("line", {x1: PAD, x2: width - PAD, y1: y(k), y2: y(k), stroke: "#c9ced6", "stroke-dasharray": "4 3"}));
        ladder.appendChild(svg("text", {x: PAD + 2, y: y(k) - 4, "font-size": 11, fill: "#5b6570"}, a));
      });
      for (const st of view.streams) {
        if (st.start == null) continue;
        const k = laneOf(st.src);
        const label = `RTP ${st.codec} ${st.src} → ${st.dst}`;
        const r = svg("rect", {x: x(st.start), y: y(k) + 3 + 4 * st.channel, width: Math.max(2, x(st.end) - x(st.start)), height: 8,
                               fill: CHANNEL_COLORS[st.channel], opacity: 0.35, class: "stream"});
        r.appendChild(svg("title", {}, `${st.codec} ${st.src} → ${st.dst} (SSRC ${st.ssrc})`));
        ladder.appendChild(r);
        ladder.appendChild(svg("text", {x: x(st.start) + 3, y: y(k) + 22 + 10 * st.channel, "font-size": 10, fill: CHANNEL_COLORS[st.channel]}, label));
      }
      // messages closer than GAP px apart are spread out so each can be clicked; a tick on
      // the top edge keeps each one's true time
      const GAP = 14;
      const xs = view.sip.map(m => x(m.t));
      for (let i = 1; i < xs.length; i++) xs[i] = Math.max(xs[i], xs[i - 1] + GAP);
      for (let i = xs.length - 1; i >= 0; i--) {
        const limit = i === xs.length - 1 ? width - PAD : xs[i + 1] - GAP;
        xs[i] = Math.max(PAD, Math.min(xs[i], limit));
      }
      view.sip.forEach((m, i) => {
        const a = laneOf(m.src), b = laneOf(m.dst), xm = xs[i];
        ladder.appendChild(svg("line", {x1: x(m.t), x2: xm, y1: 0, y2: top - 2, stroke: "#8c8c8c"}));
        const g = svg("g", {class: "msg", "data-index": i, "data-t": m.t});
        const y1 = y(a), y2 = y(b), dir = y2 > y1 ? 1 : -1;
        g.appendChild(svg("line", {x1: xm, y1: y1, x2: xm, y2: y2 - dir * 4, stroke: "#333", "stroke-width": 1.5}));
        g.appendChild(svg("path", {d: `M${xm - 4},${y2 - dir * 8} L${xm},${y2} L${xm + 4},${y2 - dir * 8} Z`, fill: "#333"}));
        g.appendChild(svg("rect", {x: xm - 6, y: Math.min(y1, y2), width: 12, height: Math.abs(y2 - y1), fill: "transparent", class: "hit"}));
        // labels of messages close in time are stacked so they stay readable
        g.appendChild(svg("text", {x: xm + 3, y: Math.min(y1, y2) + 12 + (i % 3) * 11, "font-size": 10, fill: "#1b1f24"}, m.label));
        g.appendChild(svg("title", {}, `${m.label} at ${m.t.toFixed(3)} s`));
        g.addEventListener("click", () => {
          for (const o of ladder.querySelectorAll(".msg.selected")) o.classList.remove("selected");
          g.classList.add("selected");
          document.getElementById("siptext").textContent = m.text;
          seek(m.t);
        });
        ladder.appendChild(g);
      });
    }

    function drawQuality() {
      quality.textContent = "";
      const H = 150, top = 10, bottom = H - 20;
      quality.setAttribute("height", H);
      quality.setAttribute("viewBox", `0 0 ${width} ${H}`);
      const yMos = v => bottom - (v - 1) / 4 * (bottom - top);
      let maxLoss = 5, maxJit = 20;
      for (const q of view.quality) {
        maxLoss = Math.max(maxLoss, ...q.loss_pct); maxJit = Math.max(maxJit, ...q.jitter_ms);
      }
      for (const v of [1, 2, 3, 4, 5]) {
        quality.appendChild(svg("line", {x1: PAD, x2: width - PAD, y1: yMos(v), y2: yMos(v), stroke: "#eef0f3"}));
        quality.appendChild(svg("text", {x: PAD, y: yMos(v) - 2, "font-size": 9, fill: "#8c8c8c"}, "MOS " + v));
      }
      for (const q of view.quality) {
        const color = CHANNEL_COLORS[q.channel];
        q.t.forEach((t, i) => {
          if (!q.loss_pct[i]) return;
          const hgt = q.loss_pct[i] / maxLoss * (bottom - top) / 2;
          const r = svg("rect", {x: x(t), y: bottom - hgt, width: Math.max(1, x(t + 1) - x(t) - 1), height: hgt,
                                 fill: color, opacity: 0.3, class: "loss"});
          r.appendChild(svg("title", {}, `${q.loss_pct[i]}% lost`));
          quality.appendChild(r);
        });
        const mosPts = q.t.map((t, i) => q.mos[i] == null ? null : `${x(t + 0.5)},${yMos(q.mos[i])}`).filter(Boolean);
        if (mosPts.length) quality.appendChild(svg("polyline", {points: mosPts.join(" "), fill: "none", stroke: color, "stroke-width": 2, class: "mos"}));
        const jit = q.t.map((t, i) => `${x(t + 0.5)},${bottom - q.jitter_ms[i] / maxJit * (bottom - top)}`);
        if (jit.length) quality.appendChild(svg("polyline", {points: jit.join(" "), fill: "none", stroke: color, "stroke-dasharray": "3 2", "stroke-width": 1, class: "jitter"}));
      }
      quality.appendChild(svg("text", {x: width - PAD - 330, y: H - 4, "font-size": 10, fill: "#5b6570"},
        `solid: MOS · dashed: jitter (0-${maxJit.toFixed(0)} ms) · bars: loss (0-${maxLoss.toFixed(0)}%)`));
    }

    function table(t, rows) {
      for (const [k, v] of rows) {
        const tr = el("tr");
        tr.append(el("td", {}, k), el("td", {}, v == null ? "" : String(v)));
        t.appendChild(tr);
      }
    }
    function downloads(links) {
      const ul = document.getElementById("downloads");
      ul.textContent = "";
      for (const [text, href, cls] of links) {
        const li = el("li");
        li.appendChild(el("a", {href, class: cls, download: ""}, text));
        ul.appendChild(li);
      }
    }
    function meta() {
      const t = document.getElementById("meta");
      t.textContent = "";
      if (shared) {  // a share link: what it was made to show, and the audio
        const rows = withMeta ? [["Start", fmtTime(e.start)], ["Length", fmtDur(e.duration)], ["Status", e.status],
          ["Caller", e.caller], ["Callee", e.callee], ["MOS", (e.mos || []).map(m => m == null ? "-" : m).join(" / ")]] : [];
        table(t, rows);
        downloads([["Audio", base + "/audio", "download-audio"]]);
        return;
      }
      const call = s.call || {};
      const ids = call.identities || {};
      const rows = [
        ["Call-ID", e.call_id], ["Start", fmtTime(e.start)], ["Answer", fmtTime(e.answer)],
        ["End", fmtTime(e.end)], ["Status", `${e.status} (${e.final_code || "-"} ${call.final_reason || ""})`],
        ["End reason", `${e.end_reason || ""}${e.hangup_by ? ", by " + e.hangup_by : ""}`],
        ["Caller", (ids.caller || []).map(i => `${i.name ? i.name + " " : ""}<${i.uri}>`).join(", ") || e.caller],
        ["Callee", (ids.callee || []).map(i => `${i.name ? i.name + " " : ""}<${i.uri}>`).join(", ") || e.callee],
        ["Group", e.group || "-"], ["Policy rule", e.policy_rule || "-"],
        ["DTMF", e.dtmf || "-"], ["MOS", (e.mos || []).map(m => m == null ? "-" : m).join(" / ")],
      ];
      for (const [name, values] of Object.entries(call.headers || {})) rows.push([name, values.join(", ")]);
      for (const d of s.directions || []) {
        const ci = d.capture_integrity || {};
        rows.push([`Integrity (${d.side})`, ci.verdict || "-"]);
      }
      table(t, rows);
      const links = [];
      if (rights.includes("audio")) links.push(["Audio", base + "/files/audio", "download-audio"]);
      links.push(["SIPREC metadata (XML)", base + "/files/metadata", "download-xml"],
                 ["Summary (JSON)", base + "/files/summary", "download-json"]);
      if (rights.includes("evidence")) {
        if (e.sip_pcap) links.push(["SIP messages (pcap)", base + "/files/sip_pcap", "download-sip"]);
        links.push(["Everything (zip)", base + "/zip", "download-zip"]);
      }
      downloads(links);
    }

    function movePlayhead() {
      playhead.style.left = x(audio.currentTime) + "px";
      const t = audio.currentTime;
      document.getElementById("clock").textContent = fmtDur(t) + " / " + fmtDur(seconds);
    }

    // player: play/pause, speed, one channel or both (Web Audio, made on first use)
    const play = document.getElementById("play");
    play.addEventListener("click", () => { if (audio.paused) audio.play(); else audio.pause(); });
    audio.addEventListener("play", () => { play.textContent = "Pause"; });
    audio.addEventListener("pause", () => { play.textContent = "Play"; });
    audio.addEventListener("timeupdate", movePlayhead);
    document.getElementById("speed").addEventListener("change", ev => { audio.playbackRate = Number(ev.target.value); });
    let gains = null;
    document.getElementById("channel").addEventListener("change", ev => {
      if (!gains) {
        const ac = new AudioContext();
        const src = ac.createMediaElementSource(audio);
        const split = ac.createChannelSplitter(2), merge = ac.createChannelMerger(2);
        gains = [ac.createGain(), ac.createGain()];
        src.connect(split);
        for (let c = 0; c < 2; c++) {
          split.connect(gains[c], c);
          gains[c].connect(merge, 0, 0); gains[c].connect(merge, 0, 1);
        }
        merge.connect(ac.destination);
      }
      const v = ev.target.value;
      gains[0].gain.value = v === "1" ? 0 : 1;
      gains[1].gain.value = v === "0" ? 0 : 1;
    });

    const rights = shared ? ["audio"] : (await me()).rights;
    if (!rights.includes("audio")) play.disabled = true;
    const shareBtn = document.getElementById("share");
    if (shareBtn && rights.includes("share")) {
      shareBtn.hidden = false;
      shareBtn.addEventListener("click", async () => {
        const out = document.getElementById("share-out");
        const mask = confirm("Hide the parties' numbers in the link? (OK: hide, Cancel: show)");
        try {
          const r = await post(base + "/shares", {scope: "audio+metadata", mask, hours: 72});
          const url = location.origin + r.url;
          out.textContent = "";
          out.append(el("input", {value: url, readonly: "", size: 60, id: "share-url"}),
                     " expires " + fmtTime(r.expires));
        } catch (err) { out.textContent = err.message; }
      });
    }
    function draw() { drawWave(); drawLadder(); drawQuality(); movePlayhead(); }
    window.addEventListener("resize", draw);
    setupZone(() => { subtitle(); meta(); });
    if (!shared) setupNav();
    subtitle(); meta(); draw();
    document.body.dataset.ready = "1";
  }

  /* ---------------- sign in ---------------- */
  function loginPage() {
    const form = document.getElementById("login");
    form.addEventListener("submit", async ev => {
      ev.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      const r = await fetch("/api/login", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": data.csrf},
                                           body: JSON.stringify({user: data.user, password: data.password})});
      const body = await r.json();
      if (!r.ok) { document.getElementById("error").textContent = body.detail || r.statusText; return; }
      const next = new URLSearchParams(location.search).get("next") || "/";
      location.href = next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : "/";
    });
    document.body.dataset.ready = "1";
  }

  /* ---------------- audit log ---------------- */
  async function auditPage() {
    setupNav();
    const tbody = document.querySelector("#audit tbody");
    const more = document.getElementById("more");
    let after = 0;
    async function load() {
      const r = await getJSON("/api/audit?after=" + after + "&limit=200");
      for (const a of r.entries) {
        const tr = el("tr", {class: a.outcome === "ok" ? "" : "bad"});
        for (const v of [a.seq, fmtTime(a.at), a.user, a.action, a.target, a.from, a.outcome]) tr.appendChild(el("td", {}, String(v)));
        tbody.appendChild(tr);
        after = a.seq;
      }
      more.hidden = r.next == null;
      document.body.dataset.ready = "1";
    }
    more.addEventListener("click", load);
    setupZone(() => { tbody.textContent = ""; after = 0; load(); });
    load();
  }

  /* ---------------- overview page ---------------- */
  function overviewPage() {
    setupNav();
    const form = document.getElementById("period");
    function bars(el_, items, label, value) {
      el_.textContent = "";
      const W = el_.clientWidth || 800, H = 180, pad = 24;
      el_.setAttribute("viewBox", `0 0 ${W} ${H}`);
      const max = Math.max(1, ...items.map(value));
      const bw = (W - 2 * pad) / Math.max(1, items.length);
      items.forEach((it, i) => {
        const h = value(it) / max * (H - 2 * pad);
        const r = svg("rect", {x: pad + i * bw + 1, y: H - pad - h, width: Math.max(1, bw - 2), height: h, fill: "#2f6fde"});
        r.appendChild(svg("title", {}, `${label(it)}: ${value(it)}`));
        el_.appendChild(r);
        if (items.length <= 24 || i % Math.ceil(items.length / 12) === 0)
          el_.appendChild(svg("text", {x: pad + i * bw + 2, y: H - 6, "font-size": 10, fill: "#5b6570"}, label(it)));
      });
      el_.appendChild(svg("text", {x: 2, y: 12, "font-size": 10, fill: "#5b6570"}, String(max)));
    }
    async function load() {
      const p = new URLSearchParams(location.search);
      const o = await getJSON("/api/overview?" + p);
      const f = document.getElementById("figures");
      f.textContent = "";
      for (const [k, v] of [["Calls", o.calls], ["Answered", o.answered],
                            ["Answer-seizure ratio", o.asr == null ? "-" : (100 * o.asr).toFixed(1) + "%"],
                            ["Average call length", o.acd_seconds == null ? "-" : fmtDur(o.acd_seconds)]]) {
        const d = el("div"); d.append(el("b", {}, String(v)), k); f.appendChild(d);
      }
      document.getElementById("per-unit").textContent = o.per_period.unit;
      bars(document.getElementById("hours"), o.per_period.bins,
           it => o.per_period.unit === "hour" ? fmtTime(it.start).slice(5, 16) : fmtTime(it.start).slice(0, 10), it => it.calls);
      bars(document.getElementById("mos"), o.mos_histogram, it => `${it.from.toFixed(1)}-${it.to.toFixed(1)}`, it => it.calls);
      const tbody = document.querySelector("#worst tbody");
      tbody.textContent = "";
      for (const c of o.worst) {
        const tr = el("tr");
        tr.append(el("td", {}, fmtTime(c.start)), el("td", {}, short(c.caller)), el("td", {}, short(c.callee)),
                  el("td", {class: c.mos_min < 3.6 ? "bad" : ""}, c.mos_min.toFixed(2)), el("td", {}, fmtDur(c.duration)));
        tr.addEventListener("click", () => { location.href = "/calls/" + encodeURIComponent(c.id); });
        tbody.appendChild(tr);
      }
      document.body.dataset.ready = "1";
    }
    form.addEventListener("submit", ev => {
      ev.preventDefault();
      const p = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) p.set(k, toApiTime(v));
      history.replaceState(null, "", "?" + p);
      load();
    });
    const p = new URLSearchParams(location.search);
    for (const inp of form.elements) if (inp.name && p.has(inp.name)) inp.value = fromApiTime(p.get(inp.name));
    setupZone(load);
    load();
  }

  /* ---------------- calls in progress ---------------- */
  async function livePage() {
    setupNav();
    const m = await me();
    const canListen = m.rights.includes("audio");
    const tbody = document.querySelector("#live tbody");
    const recorded = document.querySelector("#recorded tbody");
    const state = document.getElementById("live-state");
    const rows = new Map();  // tag: {call, tr}
    function cells(r) {
      const c = r.call;
      const secs = Math.max(0, Date.now() / 1000 - c.start_ns / 1e9);
      const p = c.packets || [0, 0], l = c.lost || [0, 0];
      return [fmtTime(new Date(c.start_ns / 1e6).toISOString()), short(c.caller), short(c.callee), fmtDur(secs),
              r.ended ? "ended, writing…" : (c.paused ? c.status + " (paused)" : c.status), c.codec || "",
              p[0] + " / " + p[1], l[0] + " / " + l[1]];
    }
    function draw(tag) {
      const r = rows.get(tag);
      const tds = r.tr.querySelectorAll("td");
      cells(r).forEach((v, i) => { tds[i].textContent = v; });
    }
    function upsert(call) {
      let r = rows.get(call.tag);
      if (!r) {
        const tr = el("tr", {"data-tag": call.tag});
        for (let i = 0; i < 8; i++) tr.appendChild(el("td", {class: i === 6 ? "packets" : i === 7 ? "lost" : ""}));
        const td = el("td");
        if (canListen) {
          const b = el("button", {type: "button", class: "listen"}, "Listen");
          b.addEventListener("click", () => listen(call.tag));
          td.appendChild(b);
        }
        tr.appendChild(td);
        tbody.prepend(tr);
        r = {call: {}, tr, ended: false};
        rows.set(call.tag, r);
      }
      r.call = {...r.call, ...call};
      draw(call.tag);
    }
    function recordedRow(e) {
      const r = rows.get(e.tag);
      if (r) { r.tr.remove(); rows.delete(e.tag); }
      const tr = el("tr", {"data-id": e.id});
      tr.append(el("td", {}, fmtTime(e.start)), el("td", {}, short(e.caller)), el("td", {}, short(e.callee)),
                el("td", {}, fmtDur(e.duration)), el("td", {}, e.status),
                el("td", {}, (e.mos || []).map(x => x == null ? "-" : x).join(" / ")));
      tr.addEventListener("click", () => { location.href = "/calls/" + encodeURIComponent(e.id); });
      recorded.prepend(tr);
      if (listening === e.tag) stopListening();
    }
    // listening: the server's endless WAV stream, played through Web Audio as it arrives
    // (a media element would buffer seconds of it first) into the page's audio element
    const audio = document.getElementById("live-audio");
    let listening = null, listenId = null, player = null;
    function stopListening() {
      if (player) player.stop();
      player = null;
      listening = null;
      document.getElementById("listening").hidden = true;
    }
    function livePlayer(url) {
      const ctl = new AbortController();
      const ac = new AudioContext();
      const dest = ac.createMediaStreamDestination();
      audio.srcObject = dest.stream;
      audio.play().catch(() => {});
      const chunks = [];  // [when it plays (ac time), frames from the stream's start]
      let rate = 0, playAt = 0, frames = 0, head = new Uint8Array(0), rest = new Uint8Array(0);
      function schedule(bytes) {
        const n = Math.floor(bytes.length / 4);
        if (!n) return bytes;
        const buf = ac.createBuffer(2, n, rate);
        const v = new DataView(bytes.buffer, bytes.byteOffset, n * 4);
        const l = buf.getChannelData(0), r = buf.getChannelData(1);
        for (let i = 0; i < n; i++) { l[i] = v.getInt16(4 * i, true) / 32768; r[i] = v.getInt16(4 * i + 2, true) / 32768; }
        const src = ac.createBufferSource();
        src.buffer = buf;
        src.connect(dest);
        playAt = Math.max(playAt, ac.currentTime + 0.05);
        src.start(playAt);
        chunks.push([playAt, frames]);
        if (chunks.length > 50) chunks.shift();
        playAt += n / rate;
        frames += n;
        return bytes.slice(n * 4);
      }
      (async () => {
        const resp = await fetch(url, {signal: ctl.signal});
        const reader = resp.body.getReader();
        for (;;) {
          const {done, value} = await reader.read();
          if (done) break;
          if (!rate) {
            head = new Uint8Array([...head, ...value]);
            if (head.length < 44) continue;
            rate = new DataView(head.buffer).getUint32(24, true);
            rest = schedule(head.slice(44));
            continue;
          }
          rest = schedule(rest.length ? new Uint8Array([...rest, ...value]) : value);
        }
      })().catch(() => {});
      return {
        stop() { ctl.abort(); ac.close(); audio.srcObject = null; },
        // seconds of the stream played so far (frames from its first), or null
        played() {
          let k = chunks.length - 1;
          while (k >= 0 && chunks[k][0] > ac.currentTime) k--;
          return k < 0 ? null : chunks[k][1] / rate + (ac.currentTime - chunks[k][0]);
        },
      };
    }
    function listen(tag) {
      if (player) player.stop();
      const r = rows.get(tag);
      listening = tag;
      listenId = Math.random().toString(16).slice(2, 10);
      document.getElementById("listening").hidden = false;
      document.getElementById("listen-what").textContent = "Listening to " + short(r.call.caller) + " → " + short(r.call.callee);
      player = livePlayer("/api/live/" + tag + "/audio?listen=" + listenId);
    }
    document.getElementById("listen-stop").addEventListener("click", stopListening);
    setInterval(async () => {
      for (const tag of rows.keys()) draw(tag);
      if (!listening || !player) return;
      try {
        if (!player.first) player.first = (await getJSON("/api/live/" + listening + "/position?listen=" + listenId)).first_ns;
        const played = player.played();
        if (played == null) return;
        const behind = Date.now() / 1000 - (player.first / 1e9 + played);
        document.getElementById("listen-delay").textContent = behind.toFixed(1) + " s behind the call";
        document.body.dataset.behind = behind.toFixed(3);
        document.body.dataset.played = played.toFixed(3);
      } catch (err) { /* not started yet */ }
    }, 500);
    const es = new EventSource("/api/live/events");
    es.addEventListener("open", () => { state.textContent = "live"; });
    es.addEventListener("error", () => { state.textContent = "reconnecting…"; });
    es.addEventListener("snapshot", ev => {
      for (const c of JSON.parse(ev.data).calls) upsert(c);
      document.body.dataset.ready = "1";
    });
    es.addEventListener("call", ev => upsert(JSON.parse(ev.data)));
    es.addEventListener("call-ended", ev => {
      const r = rows.get(JSON.parse(ev.data).tag);
      if (r) { r.ended = true; draw(r.call.tag); }
    });
    es.addEventListener("recording-ready", ev => recordedRow(JSON.parse(ev.data)));
    es.addEventListener("progress", ev => {
      for (const c of JSON.parse(ev.data).calls) if (rows.has(c.tag)) upsert(c);
    });
    setupZone(() => { for (const tag of rows.keys()) draw(tag); });
  }

  return {callsPage, callPage, overviewPage, loginPage, auditPage, livePage};
})();
