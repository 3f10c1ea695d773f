// freshet live: the web view's only script. Every string from the server or the
// address bar goes into the page through textContent or setAttribute, never as markup.
"use strict";

const TOKEN_KEY = "freshet.token";
const $ = (id) => document.getElementById(id);
let current = null; // AbortController of the open view's requests and streams

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

// An element with text children only: strings become text nodes.
function el(tag, cls, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
function setText(id, value) { $(id).textContent = value; }
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

const fmt = {
  rate: (v) => (v == null ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(1)),
  count: (v) => (v == null ? "–" : Math.round(v).toLocaleString("en")),
  ms: (v) => (v == null ? "–" : v >= 100 ? v.toFixed(0) + " ms" : v.toFixed(1) + " ms"),
  share: (v) => (v == null ? "–" : (100 * v).toFixed(1) + " %"),
  time: (ms) => (ms ? new Date(ms).toISOString().slice(11, 19) + "Z" : "–"),
  ago: (s) => (s == null ? "" : s < 120 ? Math.round(s) + " s" : s < 7200 ? Math.round(s / 60) + " min" : s < 172800 ? (s / 3600).toFixed(1) + " h" : (s / 86400).toFixed(1) + " days"),
};

function status(state, text) {
  $("conn").className = "dot " + state;
  setText("conn-text", text);
}

class Unauthorized extends Error {}

async function getJSON(path, signal) {
  const res = await fetch(path, { headers: headers(), signal, cache: "no-store" });
  if (res.status === 401) throw new Unauthorized();
  const body = await res.json();
  if (!res.ok) throw new Error(body.detail || body.error || res.statusText);
  return body;
}

// Server-sent events over fetch, so the stream carries the Authorization header.
async function stream(path, signal, onEvent) {
  const res = await fetch(path, { headers: headers(), signal, cache: "no-store" });
  if (res.status === 401) throw new Unauthorized();
  if (!res.ok) throw new Error((await res.json()).detail || res.statusText);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
  }
}

// Keep a stream open: reconnect after a drop, waiting longer each time (up to 10 s).
async function follow(path, signal, onEvent) {
  let wait = 1000;
  while (!signal.aborted) {
    try {
      status("on", "live");
      await stream(path, signal, (e, d) => { wait = 1000; onEvent(e, d); });
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof Unauthorized) { signIn(); return; }
      status("err", "reconnecting");
    }
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(10000, wait * 2);
  }
}

// --- sign-in ----------------------------------------------------------------------------
function signIn(message) {
  if (current) current.abort();
  document.querySelectorAll(".view").forEach((v) => (v.hidden = true));
  $("signin").hidden = false;
  setText("signin-error", token() ? "That token was refused." : message || "");
  sessionStorage.removeItem(TOKEN_KEY);
  status("off", "signed out");
}

$("signin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  $("signin").hidden = true;
  route();
});
$("signout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); signIn(); });

// --- overview ---------------------------------------------------------------------------
let history = [];

function drawChart(points) {
  const svg = $("chart");
  clear(svg);
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 180;
  for (let i = 1; i < 4; i++) {
    const g = document.createElementNS(NS, "line");
    for (const [k, v] of [["x1", 0], ["x2", W], ["y1", (i * H) / 4], ["y2", (i * H) / 4]]) g.setAttribute(k, v);
    g.setAttribute("class", "grid");
    svg.append(g);
  }
  const shown = points.filter((p) => p.p99_ms != null || p.p50_ms != null);
  if (shown.length < 2) { setText("chart-max", "no lists yet"); setText("chart-from", ""); return; }
  const t0 = shown[0].at_s, t1 = shown[shown.length - 1].at_s;
  const top = Math.max(1, ...shown.map((p) => p.p99_ms || 0)) * 1.1;
  for (const key of ["p50", "p99"]) {
    const path = shown
      .filter((p) => p[key + "_ms"] != null)
      .map((p, i) => `${i ? "L" : "M"}${(((p.at_s - t0) / Math.max(1, t1 - t0)) * W).toFixed(1)},${(H - (p[key + "_ms"] / top) * H).toFixed(1)}`)
      .join(" ");
    const line = document.createElementNS(NS, "path");
    line.setAttribute("d", path);
    line.setAttribute("class", key);
    svg.append(line);
  }
  setText("chart-from", fmt.ago(t1 - t0) + " ago");
  setText("chart-max", "top: " + fmt.ms(top));
}

function showOverview(snap) {
  const p = snap.point;
  if (p) {
    setText("ov-events-rate", fmt.rate(p.events_per_s));
    setText("ov-lists-rate", fmt.rate(p.lists_per_s));
    setText("ov-applied-total", fmt.count(p.applied_total));
    setText("ov-published-total", fmt.count(p.published_total));
    setText("ov-p50", fmt.ms(p.p50_ms));
    const capped = p.p99_ms != null && p.latency_top_ms != null && p.p99_ms >= p.latency_top_ms;
    setText("ov-p99", (capped ? "≥ " : "") + fmt.ms(p.p99_ms));
    setText("ov-lag", fmt.count(p.lag));
    setText("ov-fallback", fmt.share(p.fallback_share));
    setText("ov-coldstart", fmt.share(p.cold_start_share));
    setText("ov-workers", `${p.workers_up} / ${p.workers}`);
    const versions = p.model_versions || [];
    setText("ov-model", versions.length ? versions.join(", ") : "none (model-free)");
    const since = versions.length ? snap.version_since[versions[versions.length - 1]] : null;
    const created = versions.length ? snap.bundle_created[versions[versions.length - 1]] : null;
    const parts = [];
    if (since) parts.push("serving since " + fmt.time(since * 1000) + " or before");
    if (created) parts.push("trained " + created.replace("T", " ").slice(0, 19));
    setText("ov-model-since", parts.join(" · ") || "\u00a0");
  }
  setText("ov-workers-note", snap.metrics_urls ? "answering / configured" : "no FRESHET_UI_METRICS_URLS set");
  const body = $("ov-dlq").tBodies[0];
  clear(body);
  for (const row of snap.dead_letters) body.append(el("tr", "", el("td", "reason", row.reason), el("td", "num", fmt.count(row.count))));
  if (!snap.dead_letters.length) body.append(el("tr", "", el("td", "dim", "none"), el("td", "", "")));
  setText("ov-dlq-note", snap.dead_letters_note || "");
  drawChart(history);
}

function openOverview(signal) {
  history = [];
  follow("/ui/api/overview", signal, (event, snap) => {
    if (event === "history") history = snap.history || [];
    else if (snap.point) history.push(snap.point);
    if (history.length > 400) history = history.slice(-400);
    showOverview(snap);
  });
}

// --- user -------------------------------------------------------------------------------
function listRows(list, entered) {
  const body = $("user-list").tBodies[0];
  clear(body);
  const items = (list && list.items) || [];
  items.forEach((it, n) => {
    const reason = it.reason + (it.reason_item_id ? " ← " + it.reason_item_id : "");
    const row = el("tr", entered.has(it.item_id) ? "entered" : "", el("td", "dim", n + 1), el("td", "", it.item_id), el("td", "num", Number(it.score).toFixed(4)), el("td", "", reason));
    row.setAttribute("data-item", it.item_id);
    body.append(row);
  });
  if (!items.length) body.append(el("tr", "", el("td", "dim", ""), el("td", "dim", "no stored list (the API serves trending)"), el("td", "", ""), el("td", "", "")));
  const strategy = list ? list.strategy : "none";
  $("user-strategy").className = "tag " + strategy;
  setText("user-strategy", strategy);
  setText("user-list-meta", list ? `${list.model_version ? "model " + list.model_version : "no model"} · after event ${list.source_event_id || "–"} · published ${fmt.time(list.published_ts)}` + (list.event_ts ? ` · ${list.published_ts - list.event_ts} ms after the event` : "") : "");
}

function eventRows(events) {
  const body = $("user-events").tBodies[0];
  clear(body);
  for (const e of events.slice(0, 12)) body.append(el("tr", "", el("td", "dim", fmt.time(e.ts)), el("td", "", e.type), el("td", "", e.item_id)));
  if (!events.length) body.append(el("tr", "", el("td", "dim", "no events yet"), el("td", "", ""), el("td", "", "")));
}

function changeItem(msg) {
  const c = msg.change, rec = msg.list;
  const li = el("li", "", el("span", "when", fmt.time(rec.published_ts)), `after ${rec.source_event_id || "a refresh"} (${rec.strategy}): `);
  for (const i of c.entered) li.append(el("span", "plus", "+" + i), " ");
  for (const i of c.left) li.append(el("span", "minus", "−" + i), " ");
  for (const m of c.moved.slice(0, 6)) li.append(el("span", "moved", `${m.item_id} ${m.from}→${m.to}`), " ");
  if (!c.entered.length && !c.left.length && !c.moved.length) li.append(el("span", "dim", "same items, same order"));
  return li;
}

async function openUser(id, signal) {
  $("user-input").value = id;
  setText("user-error", "");
  $("user-body").hidden = true;
  if (!id) return;
  let view;
  try {
    view = await getJSON("/ui/api/users/" + encodeURIComponent(id), signal);
  } catch (err) {
    if (err instanceof Unauthorized) return signIn();
    if (!signal.aborted) setText("user-error", `User ${id}: ${err.message}`);
    return;
  }
  $("user-body").hidden = false;
  setText("user-title", view.user_id);
  setText("user-meta", view.known ? `${fmt.count(view.n_events)} events · last active ${fmt.time(view.last_ts)}` : "no state stored for this user yet");
  listRows(view.list, new Set());
  eventRows(view.events);
  clear($("user-changes"));
  $("user-changes-empty").hidden = false;
  follow("/ui/api/users/" + encodeURIComponent(id) + "/stream", signal, (event, msg) => {
    if (event === "note") setText("user-changes-empty", msg.note);
    if (event !== "list") return;
    listRows(msg.list, new Set(msg.change.entered));
    eventRows(msg.events);
    $("user-changes-empty").hidden = true;
    $("user-changes").prepend(changeItem(msg));
  });
}

// --- item -------------------------------------------------------------------------------
async function openItem(id, signal) {
  $("item-input").value = id;
  setText("item-error", "");
  $("item-body").hidden = true;
  if (!id) return;
  let v;
  try {
    v = await getJSON("/ui/api/items/" + encodeURIComponent(id), signal);
  } catch (err) {
    if (err instanceof Unauthorized) return signIn();
    if (!signal.aborted) setText("item-error", `Item ${id}: ${err.message}`);
    return;
  }
  $("item-body").hidden = false;
  setText("item-title", v.item_id + (v.removed ? " (removed)" : ""));
  setText("item-interactions", fmt.count(v.interactions));
  setText("item-trend", v.trend.toFixed(2));
  setText("item-trend-rank", v.trend_rank ? `#${v.trend_rank} in trending` : "not in the top 100");
  setText("item-new", v.age_s == null ? "–" : v.is_new ? "yes" : "no");
  setText("item-age", v.age_s == null ? "not in the catalog" : "first seen " + fmt.ago(v.age_s) + " ago");
  setText("item-holders", v.holders == null ? "–" : fmt.count(v.holders));
  setText("item-holders-note", v.holders == null ? "not counted on a Redis Cluster" : `of ${fmt.count(v.users_scanned)} users${v.scan_complete ? "" : " (stopped at FRESHET_UI_SCAN_USERS)"}`);
  const dl = $("item-record");
  clear(dl);
  const r = v.record;
  if (!r) { dl.append(el("dt", "", "record"), el("dd", "dim", "none")); return; }
  const rows = [["categories", (r.categories || []).join(" › ") || "–"], ["text", r.text || "–"], ["first seen", new Date(r.first_seen_ts).toISOString()], ["updated", new Date(r.updated_ts).toISOString()]];
  for (const [k, val] of Object.entries(r.attributes || {})) rows.push([k, String(val)]);
  for (const [k, val] of rows) dl.append(el("dt", "", k), el("dd", "", val));
}

// --- dead letters -----------------------------------------------------------------------
async function redrive(body) {
  const res = await fetch("/ui/api/dlq/redrive", { method: "POST", headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (res.status === 401) { signIn(); return null; }
  const out = await res.json();
  if (!res.ok) { setText("dlq-result", "Refused: " + out.detail); return null; }
  const refused = out.still_refused.map((r) => `${r.source_topic} p${r.source_partition}@${r.source_offset}: ${r.reason}`);
  setText("dlq-result", `${out.dry_run ? "Check" : "Re-drive"}: ${out.selected} selected, ${out.valid_from_fixes + out.valid_originals} valid` + (out.dry_run ? "" : `, ${out.delivered} delivered, ${out.failed} failed`) + (refused.length ? `; still refused: ${refused.join("; ")}` : ""));
  return out;
}

function reDriveRow(letter) {
  const row = el("tr", "");
  const cell = el("td", "");
  cell.colSpan = 7;
  const area = el("textarea", "fix");
  area.value = JSON.stringify(letter.event || {}, null, 1);
  const send = (dry) => {
    let event;
    try { event = JSON.parse(area.value); } catch (e) { setText("dlq-result", "The fix is not JSON: " + e.message); return; }
    redrive({ fixes: [{ source_topic: letter.source_topic, source_partition: letter.source_partition, source_offset: letter.source_offset, event }], dry_run: dry });
  };
  const check = el("button", "", "Check fix");
  check.type = "button";
  check.addEventListener("click", () => send(true));
  const go = el("button", "primary", "Re-drive fixed event");
  go.type = "button";
  go.addEventListener("click", () => send(false));
  cell.append(el("div", "dim", "Edit the event, then re-drive it through the same validation as freshet dlq redrive:"), area, check, " ", go);
  row.append(cell);
  return row;
}

async function openDlq(signal) {
  let data;
  try {
    data = await getJSON("/ui/api/dlq", signal);
  } catch (err) {
    if (err instanceof Unauthorized) return signIn();
    if (!signal.aborted) setText("dlq-note", err.message);
    return;
  }
  setText("dlq-total", `${fmt.count(data.total)} on the topic, newest ${data.letters.length} shown`);
  setText("dlq-note", data.note || "");
  const select = $("dlq-reason");
  clear(select);
  for (const r of data.reasons) select.append(el("option", "", r.reason));
  const body = $("dlq-table").tBodies[0];
  clear(body);
  for (const d of data.letters) {
    const fix = el("button", "", "Fix…");
    fix.type = "button";
    const row = el("tr", "", el("td", "dim", `p${d.dlq_partition}@${d.dlq_offset}`), el("td", "reason", d.reason), el("td", "", `${d.source_topic} p${d.source_partition}@${d.source_offset}`), el("td", "bytes", d.key_preview), el("td", "bytes", d.value_preview), el("td", "", d.detail), el("td", "", fix));
    let editor = null;
    fix.addEventListener("click", () => {
      if (editor) { editor.remove(); editor = null; return; }
      editor = reDriveRow(d);
      row.after(editor);
    });
    body.append(row);
  }
  if (!data.letters.length) body.append(el("tr", "", el("td", "dim", "no dead letters")));
}

function reasonBody(dry) {
  const transforms = [];
  if ($("dlq-t-drop").checked) transforms.push("drop-unknown-fields");
  if ($("dlq-t-ts").checked) transforms.push("ts-seconds-to-ms");
  return { reasons: [$("dlq-reason").value].filter(Boolean), transforms, dry_run: dry };
}
$("dlq-refresh").addEventListener("click", () => route());
$("dlq-dry").addEventListener("click", () => redrive(reasonBody(true)));
$("dlq-send").addEventListener("click", async () => { if (await redrive(reasonBody(false))) route(); });

// --- routing ------------------------------------------------------------------------------
function route() {
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  const [, view = "overview", ...rest] = location.hash.split("/");
  let id = "";
  try { id = decodeURIComponent(rest.join("/")); } catch (e) { id = rest.join("/"); }
  $("signin").hidden = true;
  $("signout").hidden = !token();
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.id !== "view-" + view));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
  status("off", "idle");
  if (view === "overview") openOverview(signal);
  else if (view === "user") openUser(id, signal);
  else if (view === "item") openItem(id, signal);
  else if (view === "dlq") openDlq(signal);
}

$("user-form").addEventListener("submit", (ev) => { ev.preventDefault(); location.hash = "#/user/" + encodeURIComponent($("user-input").value.trim()); });
$("item-form").addEventListener("submit", (ev) => { ev.preventDefault(); location.hash = "#/item/" + encodeURIComponent($("item-input").value.trim()); });
window.addEventListener("hashchange", route);
route();
