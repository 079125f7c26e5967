/**
 * The CFS UI's page: one self-contained HTML document with its style and script inline, and the
 * Content-Security-Policy hashes that let exactly those two run.
 *
 * The script builds every element through the DOM (never `innerHTML`), so the page also runs under
 * Trusted Types enforcement. It keeps its number formatting in {@linkcode FORMAT_SOURCE}, plain
 * functions with no DOM access, so that tests can evaluate them on their own.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** The page's style sheet. */
export const PAGE_STYLE = String.raw`
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --card: #fff; --fg: #1d2430; --muted: #5b6472; --line: #dde1e7;
  --ok: #1a7f37; --ok-bg: #dcf5e3; --warn: #8a5a00; --warn-bg: #fff1cc;
  --bad: #b42318; --bad-bg: #fde2df; --accent: #2457c5;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #12151a; --card: #1b2027; --fg: #e6e9ee; --muted: #a0a8b5; --line: #2d343e;
    --ok: #5fd27f; --ok-bg: #173524; --warn: #f2c14e; --warn-bg: #3a2f12;
    --bad: #ff8a80; --bad-bg: #40201d; --accent: #7aa2ff;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
header.top {
  display: flex; align-items: baseline; justify-content: space-between; gap: 1rem;
  padding: 1rem 1.5rem; border-bottom: 1px solid var(--line); background: var(--card);
}
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
.muted, .conn { color: var(--muted); font-size: .875rem; margin: 0; }
main {
  display: grid; gap: 1rem; padding: 1rem 1.5rem 2rem; max-width: 1200px; margin: 0 auto;
  grid-template-columns: repeat(auto-fit, minmax(260px, 1fr));
}
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 1rem;
}
.wide { grid-column: 1 / -1; }
.problem {
  grid-column: 1 / -1; margin: 0; padding: .75rem 1rem; border-radius: 10px;
  background: var(--bad-bg); color: var(--bad);
}
.badge {
  display: inline-block; padding: .15rem .7rem; border-radius: 999px; font-weight: 600;
  background: var(--line);
}
.badge[data-state="online"] { background: var(--ok-bg); color: var(--ok); }
.badge[data-state="degraded"] { background: var(--warn-bg); color: var(--warn); }
.badge[data-state="faulted"] { background: var(--bad-bg); color: var(--bad); }
.big { font-size: 1.1rem; margin: .2rem 0 .5rem; }
progress, meter { width: 100%; height: 1rem; margin: .3rem 0; }
.figures { display: flex; flex-wrap: wrap; gap: .25rem 1rem; margin: .2rem 0 0; }
button {
  font: inherit; padding: .4rem 1rem; border-radius: 8px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; margin-top: .5rem;
}
button:disabled { opacity: .5; cursor: default; }
button:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .875rem; }
th, td {
  text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap;
}
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.state { font-weight: 600; }
.state[data-state="online"] { color: var(--ok); }
.state[data-state="away"], .state[data-state="resilvering"] { color: var(--warn); }
.state[data-state="faulted"], .state[data-state="missing"] { color: var(--bad); }
.id { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .8rem; }
ol.events { list-style: none; margin: 0; padding: 0; max-height: 22rem; overflow-y: auto; }
ol.events li {
  display: grid; grid-template-columns: 6rem 4rem 4rem 1fr; gap: .5rem;
  padding: .3rem 0; border-bottom: 1px solid var(--line); font-size: .875rem;
}
.level { font-weight: 600; text-transform: uppercase; font-size: .75rem; }
li[data-level="warn"] .level { color: var(--warn); }
li[data-level="error"] .level { color: var(--bad); }
li[data-level="info"] .level { color: var(--muted); }
.sr-only {
  position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap;
}
`;

/**
 * Number and time formatting of the page, as browser script text: plain functions, no DOM.
 * Evaluated on its own, it defines `fmtBytes`, `fmtRate`, `fmtPercent`, `fmtDuration`, `fmtEta`,
 * `fmtMs`, `fmtClock`, `fmtDate`, `fmtUntil`, `shortId`, `plural` and `lossesText`.
 */
export const FORMAT_SOURCE = String.raw`
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

function fmtBytes(n) {
  if (typeof n !== "number" || !Number.isFinite(n) || n < 0) return "?";
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  if (i === 0) return Math.round(n) + " B";
  let text = n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0);
  if (Number(text) >= 1024 && i < UNITS.length - 1) text = (n / 1024).toFixed(2), i++;
  return text + " " + UNITS[i];
}

function fmtRate(bytesPerSecond) {
  return fmtBytes(bytesPerSecond) + "/s";
}

function fmtPercent(done, total) {
  if (!(total > 0) || !(done >= 0)) return "0.0%";
  const p = Math.min(100, (done / total) * 100);
  return (Math.floor(p * 10) / 10).toFixed(1) + "%";
}

function fmtDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return Math.ceil(seconds) + " s";
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 60) return minutes + " min";
  if (seconds < 86400) {
    let h = Math.floor(seconds / 3600);
    let m = Math.ceil((seconds % 3600) / 60);
    if (m === 60) h++, m = 0;
    return h + " h" + (m ? " " + m + " min" : "");
  }
  let d = Math.floor(seconds / 86400);
  let h = Math.round((seconds % 86400) / 3600);
  if (h === 24) d++, h = 0;
  return d + " d" + (h ? " " + h + " h" : "");
}

function fmtEta(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) {
    return "time left unknown";
  }
  return fmtDuration(seconds) + " left";
}

function fmtMs(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) return "\u2014";
  if (ms < 1) return "<1 ms";
  return (ms < 10 ? ms.toFixed(1) : String(Math.round(ms))) + " ms";
}

function pad2(n) {
  return (n < 10 ? "0" : "") + n;
}

function fmtClock(ms) {
  const d = new Date(ms);
  return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
}

function fmtDate(ms) {
  const d = new Date(ms);
  return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " +
    pad2(d.getHours()) + ":" + pad2(d.getMinutes());
}

function fmtUntil(untilMs, nowMs) {
  const left = (untilMs - nowMs) / 1000;
  if (left <= 0) return "ended";
  return "in " + fmtDuration(left);
}

function shortId(id, keep) {
  if (typeof id !== "string" || id === "") return "\u2014";
  const n = keep || 8;
  if (id.length <= n + 2) return id;
  return id.startsWith("12D3") ? "\u2026" + id.slice(-n) : id.slice(0, n) + "\u2026";
}

function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}

function lossesText(state, losses) {
  if (state === "faulted") return "More volumes are lost than the pool can bear";
  if (losses <= 0) return "Cannot lose another volume";
  return "Can lose " + plural(losses, "more volume");
}
`;

const MAIN_SOURCE = String.raw`
const byId = (id) => document.querySelector('[data-testid="' + id + '"]');
const ui = {
  problem: byId("problem"),
  connection: byId("connection"),
  updated: byId("updated"),
  badge: byId("health-badge"),
  losses: byId("losses-tolerated"),
  usage: byId("pool-usage"),
  entBar: byId("entitlement-bar"),
  entUsed: byId("entitlement-used"),
  entFree: byId("entitlement-free"),
  entTotal: byId("entitlement-total"),
  resilver: byId("resilver"),
  resWhat: byId("resilver-what"),
  resBar: byId("resilver-progress"),
  resPercent: byId("resilver-percent"),
  resBytes: byId("resilver-bytes"),
  resRate: byId("resilver-rate"),
  resEta: byId("resilver-eta"),
  scrubStatus: byId("scrub-status"),
  scrubBar: byId("scrub-progress"),
  scrubButton: byId("scrub-button"),
  scrubMessage: byId("scrub-message"),
  distribution: byId("distribution"),
  volumes: byId("volume-rows"),
  events: byId("events"),
};
const canScrub = document.querySelector('meta[name="truecloud-actions"]')
  .getAttribute("content").split(" ").includes("scrub");
const MAX_EVENTS = 200;

let lastText = "";
let lastVolumes = "";
let lastEvents = "";
let scrubRunning = false;
let scrubPending = false;

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function make(tag, text, attrs) {
  const el = document.createElement(tag);
  if (text !== undefined && text !== null) el.textContent = text;
  if (attrs) for (const k of Object.keys(attrs)) el.setAttribute(k, attrs[k]);
  return el;
}

function idCell(id, keep, testid) {
  const td = make("td");
  if (typeof id === "string" && id !== "") {
    const attrs = { class: "id", title: id };
    if (testid) attrs["data-testid"] = testid;
    td.append(make("span", shortId(id, keep), attrs));
  } else td.textContent = "\u2014";
  return td;
}

function capitalise(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function showProblem(text) {
  setText(ui.problem, text);
  ui.problem.hidden = false;
}

function hideProblem() {
  ui.problem.hidden = true;
}

function setBar(bar, value, max) {
  bar.max = max > 0 ? max : 1;
  bar.value = Math.max(0, Math.min(value, bar.max));
}

function renderVolumes(volumes) {
  const text = JSON.stringify(volumes);
  if (text === lastVolumes) return;
  lastVolumes = text;
  const now = Date.now();
  const rows = volumes.slice().sort((a, b) => a.slot - b.slot).map((v) => {
    const tr = make("tr", null, { "data-testid": "volume-row", "data-slot": String(v.slot) });
    tr.append(make("td", String(v.slot), { class: "num" }));
    tr.append(make("td", v.role));
    const state = make("td");
    state.append(make("span", v.state, { class: "state", "data-state": v.state }));
    tr.append(state);
    tr.append(idCell(v.provider, 8, "volume-provider"));
    tr.append(idCell(v.location, 8));
    tr.append(idCell(v.network, 8));
    tr.append(idCell(v.vpn, 8));
    tr.append(make("td", fmtMs(v.latencyMs), { class: "num" }));
    tr.append(make("td", fmtBytes(v.sizeBytes), { class: "num" }));
    if (v.lease) {
      const until = v.lease.until * 1000;
      tr.append(make("td", fmtUntil(until, now), {
        title: fmtDate(until) + ", lease " + v.lease.id,
        "data-testid": "volume-lease",
      }));
    } else tr.append(make("td", "\u2014"));
    const e = v.errors;
    tr.append(make("td", e.read + " / " + e.write + " / " + e.checksum, {
      class: "num",
      title: "read " + e.read + ", write " + e.write + ", checksum " + e.checksum,
    }));
    tr.append(make("td", String(v.behindStripes), { class: "num" }));
    const a = v.audits;
    tr.append(make("td", a ? a.passes + " / " + a.failures : "\u2014", {
      class: "num",
      "data-testid": "volume-audits",
      title: a
        ? "passed " + a.passes + ", failed " + a.failures + "; last " + fmtDate(a.lastAt * 1000) +
          (a.lastFailure ? "; last failure " + a.lastFailure : "")
        : "not audited yet",
    }));
    return tr;
  });
  ui.volumes.replaceChildren(...rows);
}

function renderEvents(events) {
  const text = JSON.stringify(events);
  if (text === lastEvents) return;
  lastEvents = text;
  const newest = events.slice().sort((a, b) => b.at - a.at).slice(0, MAX_EVENTS);
  const items = newest.map((e) => {
    const li = make("li", null, { "data-testid": "event", "data-level": e.level });
    li.append(make("time", fmtClock(e.at), {
      datetime: new Date(e.at).toISOString(),
      title: fmtDate(e.at),
    }));
    li.append(make("span", e.level, { class: "level" }));
    li.append(make("span", typeof e.slot === "number" ? "slot " + e.slot : "", { class: "muted" }));
    li.append(make("span", e.message, { class: "message" }));
    return li;
  });
  if (items.length === 0) items.push(make("li", "Nothing has happened yet", { class: "muted" }));
  ui.events.replaceChildren(...items);
}

function renderScrubButton() {
  ui.scrubButton.disabled = !canScrub || scrubRunning || scrubPending;
}

function render(s) {
  const pool = s.pool;
  setText(ui.badge, capitalise(pool.state));
  ui.badge.setAttribute("data-state", pool.state);
  setText(ui.losses, lossesText(pool.state, pool.lossesTolerated));
  setText(ui.usage, fmtBytes(pool.usedBytes) + " stored of " + fmtBytes(pool.sizeBytes));

  const ent = s.entitlement;
  setBar(ui.entBar, ent.usedBytes, ent.storageBytes);
  setText(ui.entUsed, fmtBytes(ent.usedBytes) + " used");
  setText(ui.entFree, fmtBytes(ent.freeBytes) + " free");
  setText(ui.entTotal, "of " + fmtBytes(ent.storageBytes));

  const r = s.resilver;
  ui.resilver.hidden = !r;
  if (r) {
    setText(ui.resWhat, (r.kind === "replace"
      ? "Filling the new volume in slot "
      : "Catching up the volume in slot ") + r.slot + (r.finished ? " (finished)" : ""));
    setBar(ui.resBar, r.doneBytes, r.totalBytes);
    setText(ui.resPercent, fmtPercent(r.doneBytes, r.totalBytes));
    setText(ui.resBytes, fmtBytes(r.doneBytes) + " of " + fmtBytes(r.totalBytes));
    setText(ui.resRate, fmtRate(r.rate));
    setText(ui.resEta, r.finished ? "done" : fmtEta(r.etaSeconds));
  }

  const sc = s.scrub;
  scrubRunning = !!sc && !sc.finished;
  ui.scrubBar.hidden = !scrubRunning;
  if (!sc) setText(ui.scrubStatus, "No scrub has run yet");
  else if (sc.finished) {
    setText(ui.scrubStatus, "Last scrub finished: " + sc.repaired + " repaired");
  } else {
    setBar(ui.scrubBar, sc.doneBytes, sc.totalBytes);
    setText(ui.scrubStatus, "Scrubbing: " + fmtPercent(sc.doneBytes, sc.totalBytes) + " (" +
      fmtBytes(sc.doneBytes) + " of " + fmtBytes(sc.totalBytes) + "), " + sc.repaired + " repaired");
  }
  renderScrubButton();

  setText(ui.distribution, s.distribution.summary);
  renderVolumes(s.volumes);
  renderEvents(s.events);
  setText(ui.updated, "Updated " + fmtClock(Date.now()));
}

function onStatus(text) {
  hideProblem();
  if (text === lastText) return;
  let s;
  try {
    s = JSON.parse(text);
  } catch {
    showProblem("The node sent a status the page cannot read");
    return;
  }
  lastText = text;
  render(s);
}

// Live updates: Server-Sent Events, or polling when they fail.
let mode = "";
let source = null;
let polling = false;
let pollTimer = 0;
let retryTimer = 0;

function setMode(m) {
  mode = m;
  ui.connection.setAttribute("data-mode", m);
  setText(ui.connection, {
    connecting: "Connecting\u2026",
    live: "Live",
    reconnecting: "Reconnecting\u2026",
    polling: "Updating every 2 s",
    offline: "The node does not answer",
  }[m]);
}

function openStream() {
  if (typeof EventSource !== "function") return startPolling();
  const es = new EventSource("/api/events");
  source = es;
  let heard = false;
  let errors = 0;
  es.addEventListener("status", (e) => {
    heard = true;
    errors = 0;
    if (mode !== "live") {
      stopPolling();
      setMode("live");
    }
    onStatus(e.data);
  });
  es.addEventListener("unavailable", (e) => {
    heard = true;
    let message = "The node cannot tell its status";
    try {
      message += ": " + JSON.parse(e.data).message;
    } catch { /* keep the general message */ }
    showProblem(message);
  });
  es.addEventListener("error", () => {
    errors++;
    if (es.readyState === EventSource.CLOSED || !heard || errors >= 3) {
      es.close();
      if (source === es) source = null;
      startPolling();
    } else setMode("reconnecting");
  });
}

function startPolling() {
  if (!retryTimer) {
    retryTimer = setTimeout(() => {
      retryTimer = 0;
      if (!source) openStream();
    }, 30000);
  }
  if (polling) return;
  polling = true;
  setMode("polling");
  poll();
}

function stopPolling() {
  polling = false;
  clearTimeout(pollTimer);
  clearTimeout(retryTimer);
  pollTimer = 0;
  retryTimer = 0;
}

async function poll() {
  try {
    const res = await fetch("/api/status", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const text = await res.text();
    if (!polling) return;
    if (mode !== "polling") setMode("polling");
    onStatus(text);
  } catch {
    if (!polling) return;
    setMode("offline");
    showProblem("The node does not answer; retrying");
  }
  if (polling) pollTimer = setTimeout(poll, 2000);
}

ui.scrubButton.addEventListener("click", async () => {
  scrubPending = true;
  renderScrubButton();
  setText(ui.scrubMessage, "Starting a scrub\u2026");
  try {
    const res = await fetch("/api/scrub", {
      method: "POST",
      headers: { "content-type": "application/json", "x-truecloud-csrf": "1" },
      body: "{}",
      cache: "no-store",
    });
    if (res.ok) setText(ui.scrubMessage, "Scrub started");
    else {
      let why = "HTTP " + res.status;
      try {
        why = (await res.json()).error.message;
      } catch { /* keep the status */ }
      setText(ui.scrubMessage, "The scrub did not start: " + why);
    }
  } catch {
    setText(ui.scrubMessage, "The scrub did not start: the node does not answer");
  } finally {
    scrubPending = false;
    renderScrubButton();
  }
});

if (!canScrub) setText(ui.scrubMessage, "This node cannot start a scrub from here");
renderScrubButton();
setMode("connecting");
openStream();
`;

/** The page's whole script: the formatting and the page logic in one strict-mode closure. */
export const PAGE_SCRIPT = `"use strict";\n(() => {${FORMAT_SOURCE}${MAIN_SOURCE}})();\n`;

function cspHash(text: string): string {
  return `sha256-${createHash("sha256").update(text, "utf8").digest("base64")}`;
}

/** The CSP source of {@linkcode PAGE_SCRIPT}, such as `sha256-…` (without quotes). */
export const PAGE_SCRIPT_HASH: string = cspHash(PAGE_SCRIPT);

/** The CSP source of {@linkcode PAGE_STYLE}, such as `sha256-…` (without quotes). */
export const PAGE_STYLE_HASH: string = cspHash(PAGE_STYLE);

/** The page's icon: a small cloud, as SVG. */
export const FAVICON_SVG =
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><path fill="#2457c5" ` +
  `d="M9 26a7 7 0 0 1-1-13.9A9 9 0 0 1 25.3 12 7 7 0 0 1 24 26z"/></svg>`;

/**
 * Renders the page.
 * @param actions Which actions the page offers: `scrub` shows a working Scrub button.
 * @returns The HTML document.
 */
export function renderPage(actions: { scrub: boolean }): string {
  const offered = actions.scrub ? "scrub" : "";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="truecloud-actions" content="${offered}">
<title>Cloud storage \u2014 True Cloud</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<style>${PAGE_STYLE}</style>
</head>
<body>
<header class="top">
  <h1>Cloud storage</h1>
  <p class="conn"><span data-testid="connection" data-mode="">Loading\u2026</span>
    \u00b7 <span data-testid="updated"></span></p>
</header>
<main>
  <p class="problem" role="alert" data-testid="problem" hidden></p>

  <section class="card" role="status" aria-live="polite" aria-labelledby="h-health"
    data-testid="health">
    <h2 id="h-health">Pool health</h2>
    <p class="big"><span class="badge" data-testid="health-badge" data-state="">\u2026</span></p>
    <p data-testid="losses-tolerated"></p>
    <p class="muted" data-testid="pool-usage"></p>
  </section>

  <section class="card" aria-labelledby="h-entitlement" data-testid="entitlement">
    <h2 id="h-entitlement">Storage entitlement</h2>
    <label class="sr-only" for="entitlement-bar">Entitlement used</label>
    <meter id="entitlement-bar" data-testid="entitlement-bar" min="0" max="1" value="0"></meter>
    <p class="figures"><span data-testid="entitlement-used"></span>
      <span data-testid="entitlement-free"></span>
      <span class="muted" data-testid="entitlement-total"></span></p>
  </section>

  <section class="card" aria-labelledby="h-resilver" data-testid="resilver" hidden>
    <h2 id="h-resilver">Resilver</h2>
    <p data-testid="resilver-what"></p>
    <label class="sr-only" for="resilver-progress">Resilver progress</label>
    <progress id="resilver-progress" data-testid="resilver-progress" max="1" value="0"></progress>
    <p class="figures"><strong data-testid="resilver-percent"></strong>
      <span data-testid="resilver-bytes"></span>
      <span data-testid="resilver-rate"></span>
      <span data-testid="resilver-eta"></span></p>
  </section>

  <section class="card" aria-labelledby="h-scrub" data-testid="scrub">
    <h2 id="h-scrub">Scrub</h2>
    <p data-testid="scrub-status"></p>
    <label class="sr-only" for="scrub-progress">Scrub progress</label>
    <progress id="scrub-progress" data-testid="scrub-progress" max="1" value="0" hidden></progress>
    <button type="button" data-testid="scrub-button" disabled>Scrub now</button>
    <p class="muted" role="status" aria-live="polite" data-testid="scrub-message"></p>
  </section>

  <section class="card wide" aria-labelledby="h-volumes">
    <h2 id="h-volumes">Volumes</h2>
    <p class="muted" data-testid="distribution"></p>
    <div class="scroll">
      <table data-testid="volumes">
        <caption class="sr-only">The eight volumes of the pool: five data, three parity</caption>
        <thead><tr>
          <th scope="col" class="num">Slot</th><th scope="col">Role</th><th scope="col">State</th>
          <th scope="col">Provider</th><th scope="col">Location</th><th scope="col">Network</th>
          <th scope="col">VPN</th><th scope="col" class="num">Latency</th>
          <th scope="col" class="num">Size</th><th scope="col">Lease ends</th>
          <th scope="col" class="num"><abbr title="read / write / checksum">Errors</abbr></th>
          <th scope="col" class="num"><abbr title="Stripes to catch up">Behind</abbr></th>
          <th scope="col" class="num"><abbr title="Audits of the provider: passed / failed">Audits</abbr></th>
        </tr></thead>
        <tbody data-testid="volume-rows"></tbody>
      </table>
    </div>
  </section>

  <section class="card wide" aria-labelledby="h-events">
    <h2 id="h-events">History</h2>
    <ol class="events" data-testid="events" aria-label="Events, newest first"></ol>
  </section>
</main>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}
