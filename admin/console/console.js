// holdfast's console: plain DOM, no framework. Everything that comes from the API goes into the
// page as text (textContent, text nodes): client ids and topics are chosen by clients.
"use strict";

const POLL_MS = 2000;
const WINDOW_MS = 15 * 60 * 1000;
const TOKEN_KEY = "holdfast.admin.token";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

// el builds an element; string and number children become text nodes, never markup.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// ---- formatting

function fmtBytes(n) {
  if (n === null || n === undefined || n < 0) return "unknown";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + " " + units[i];
}

function fmtNum(n) {
  return n === null || n === undefined ? "" : Number(n).toLocaleString("en");
}

function fmtRate(n) {
  if (n === null || n === undefined) return "";
  return String(Number(n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)));
}

function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function age(iso) {
  if (!iso) return "";
  return fmtDuration((Date.now() - Date.parse(iso)) / 1000);
}

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// ---- the API and the token

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function authHeaders() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

// api fetches a JSON endpoint; a 401 shows the token form, another error throws its message.
async function api(path, method = "GET") {
  let r;
  try {
    r = await fetch(path, { method, headers: authHeaders(), cache: "no-store" });
  } catch (e) {
    throw new Error(`the broker does not answer (${e.message})`);
  }
  if (r.status === 401) {
    askToken((await r.text()).trim());
    throw new Unauthorized("unauthorized");
  }
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch { /* a proxy's or the mux's plain text */ }
  if (!r.ok) {
    throw new Error((body && body.error) || text.trim() || `${r.status} ${r.statusText}`);
  }
  return body;
}

function askToken(message) {
  const form = $("token-form");
  $("token-message").textContent = token()
    ? `The token was refused: ${message}`
    : "This broker needs its admin token (admin.token).";
  form.hidden = false;
  document.querySelector("main").hidden = true;
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
  $("token-input").value = "";
  $("token-form").hidden = true;
  document.querySelector("main").hidden = false;
  route();
});

function status(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

// ---- charts: a line (or stacked area) chart on a canvas, over the last 15 minutes

const COLORS = ["#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#6b46c1"];

function niceStep(raw, bytes) {
  let unit = 1;
  while (bytes && raw / unit >= 1024) unit *= 1024;
  const r = raw / unit, p = Math.pow(10, Math.floor(Math.log10(r))), f = r / p;
  return unit * p * (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10);
}

// drawChart plots series = [{label, values}] against times (unix ms). hline = {value, label}
// draws a horizontal reference line; fmt formats the axis values.
function drawChart(canvas, times, series, { stacked = false, hline = null, fmt = fmtRate } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
    canvas.width = w * dpr;
    canvas.height = h * dpr;
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui, sans-serif";
  canvas.dataset.points = String(times.length);
  canvas.dataset.last = times.length ? String(times[times.length - 1]) : "";

  // stacked: each series is drawn on top of the sum of the ones before it
  const tops = series.map((s) => s.values.slice());
  if (stacked) {
    for (let i = 1; i < tops.length; i++) {
      tops[i] = tops[i].map((v, j) => (v === null ? null : v + (tops[i - 1][j] || 0)));
    }
  }
  let max = 0;
  for (const vs of tops) for (const v of vs) if (v !== null && v > max) max = v;
  if (hline && hline.value > max) max = hline.value;
  // grid lines at round values: 1, 2 or 5 times a power of ten (of 1024 first, for bytes)
  const step = niceStep((max > 0 ? max : 1) / 4, fmt === fmtBytes);
  max = step * Math.max(1, Math.ceil((max * 1.05) / step));

  const left = 64, right = 8, top = 18, bottom = 18;
  const pw = w - left - right, ph = h - top - bottom;
  const end = times.length ? times[times.length - 1] : Date.now();
  const x = (t) => left + pw * (1 - (end - t) / WINDOW_MS);
  const y = (v) => top + ph * (1 - v / max);

  g.strokeStyle = "#ccc";
  g.fillStyle = "#555";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (let v = 0; v <= max * 1.0001; v += step) {
    const yy = Math.round(y(v)) + 0.5;
    g.beginPath(); g.moveTo(left, yy); g.lineTo(w - right, yy); g.stroke();
    g.fillText(fmt(v), left - 4, yy);
  }
  g.textAlign = "center";
  g.textBaseline = "top";
  for (let m = 15; m >= 0; m -= 5) {
    g.fillText(m ? `-${m} min` : "now", Math.min(x(end - m * 60000), w - right - 14), h - bottom + 4);
  }

  if (stacked) {
    // each band filled down to the one below it, one polygon per run so that gaps stay gaps
    tops.forEach((vs, i) => {
      const below = (j) => (i ? tops[i - 1][j] || 0 : 0);
      g.fillStyle = COLORS[i % COLORS.length] + "40";
      for (let a = 0; a < vs.length; a++) {
        if (vs[a] === null) continue;
        let b = a;
        while (b + 1 < vs.length && vs[b + 1] !== null) b++;
        g.beginPath();
        for (let j = a; j <= b; j++) g.lineTo(x(times[j]), y(vs[j]));
        for (let j = b; j >= a; j--) g.lineTo(x(times[j]), y(below(j)));
        g.fill();
        a = b;
      }
    });
  }
  // the first series' line last, on top: an empty band's line would hide the one below it
  for (let i = tops.length - 1; i >= 0; i--) {
    g.strokeStyle = COLORS[i % COLORS.length];
    g.lineWidth = 1.5;
    g.fillStyle = g.strokeStyle;
    g.beginPath();
    const vs = tops[i];
    vs.forEach((v, j) => {
      if (v === null) return;
      const alone = (j === 0 || vs[j - 1] === null) && (j === vs.length - 1 || vs[j + 1] === null);
      if (alone) g.fillRect(x(times[j]) - 1.5, y(v) - 1.5, 3, 3); // a line needs two points
      else if (j > 0 && vs[j - 1] !== null) g.lineTo(x(times[j]), y(v));
      else g.moveTo(x(times[j]), y(v));
    });
    g.stroke();
  }

  if (hline && hline.value > 0) {
    const yy = Math.round(y(hline.value)) + 0.5;
    g.strokeStyle = "#c53030";
    g.setLineDash([4, 3]);
    g.beginPath(); g.moveTo(left, yy); g.lineTo(w - right, yy); g.stroke();
    g.setLineDash([]);
    g.fillStyle = "#c53030";
    g.textAlign = "left";
    g.textBaseline = "bottom";
    g.fillText(hline.label, left + 4, yy - 2);
  }

  // legend, with each series' latest value
  g.textAlign = "left";
  g.textBaseline = "top";
  let lx = left;
  const texts = series.map((s, i) => {
    const last = s.values.length ? s.values[s.values.length - 1] : null;
    const text = `${s.label} ${last === null ? "–" : fmt(last)}`;
    g.fillStyle = COLORS[i % COLORS.length];
    g.fillRect(lx, 3, 10, 10);
    g.fillStyle = "#333";
    g.fillText(text, lx + 14, 2);
    lx += g.measureText(text).width + 28;
    return text;
  });
  canvas.setAttribute("aria-label", "latest: " + texts.join(", "));
}

// ---- overview

const series = { points: [], lastT: 0 };
let minFree = 0;

async function loadOverview() {
  const [ov, ser] = await Promise.all([
    api("/api/overview"),
    api("/api/series" + (series.lastT ? `?since=${series.lastT}` : "")),
  ]);
  showOverview(ov);
  for (const p of ser.points) {
    if (p.t > series.lastT) { series.points.push(p); series.lastT = p.t; }
  }
  const cut = series.lastT - WINDOW_MS;
  while (series.points.length && series.points[0].t <= cut) series.points.shift();
  drawOverview();
}

function showOverview(ov) {
  $("ov-version").textContent = ov.version;
  $("ov-uptime").textContent = fmtDuration(ov.uptime_seconds) + ` (since ${fmtTime(ov.started)})`;
  $("ov-durability").textContent = ov.durability;
  $("ov-ready").textContent = ov.ready ? "ready" : "not ready";
  $("ov-ready").classList.toggle("error", !ov.ready);
  $("ov-online").textContent = fmtNum(ov.sessions.online);
  $("ov-offline").textContent = fmtNum(ov.sessions.offline);
  $("ov-subscriptions").textContent = fmtNum(ov.subscriptions);
  $("ov-retained").textContent = fmtNum(ov.retained);
  $("ov-queued").textContent = `${fmtNum(ov.queued_messages)} messages, ${fmtBytes(ov.queued_bytes)}`;
  $("ov-inflight").textContent = fmtNum(ov.inflight);
  const st = ov.store;
  minFree = st.min_free_bytes;
  $("ov-store").textContent = `${fmtBytes(st.lsm_bytes + st.value_log_bytes)} (${fmtBytes(st.lsm_bytes)} + ${fmtBytes(st.value_log_bytes)})`;
  $("ov-free").textContent = `${fmtBytes(st.free_bytes)} (minimum ${fmtBytes(st.min_free_bytes)})` + (st.space_low ? ": SPACE LOW" : "");
  $("ov-free").classList.toggle("error", !!st.space_low);
  $("ov-checkpoints").textContent = fmtNum(st.checkpoints);
  $("ov-commits").textContent = `${fmtNum(st.commits)} / ${fmtNum(st.syncs)}`;
  $("ov-failed").textContent = fmtNum(st.failed_requests);
  $("ov-store-error").hidden = !st.error;
  $("ov-store-error").textContent = st.error ? "Store stopped: " + st.error : "";

  fill($("ov-connections").tBodies[0], (ov.connections || []).map((c) =>
    el("tr", {}, el("td", {}, c.listener), el("td", {}, c.protocol), el("td", { class: "num" }, fmtNum(c.count)))));
  counts($("ov-dropped"), ov.dropped, "nothing dropped");
  counts($("ov-refused"), ov.refused, "nothing refused");
}

// counts lists the non-zero counters of a reason → count object.
function counts(table, obj, none) {
  const rows = Object.entries(obj || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1])
    .map(([k, n]) => el("tr", {}, el("td", {}, k.replaceAll("_", " ")), el("td", { class: "num" }, fmtNum(n))));
  fill(table.tBodies[0], rows.length ? rows : [el("tr", {}, el("td", { class: "muted" }, none))]);
}

function drawOverview() {
  const ps = series.points, t = ps.map((p) => p.t);
  const qos = (key) => [0, 1, 2].map((q) => ({ label: `QoS ${q}`, values: ps.map((p) => (p[key] ? p[key][q] : null)) }));
  drawChart($("chart-in"), t, qos("in"), { stacked: true });
  drawChart($("chart-out"), t, qos("out"), { stacked: true });
  drawChart($("chart-fsync"), t, [
    { label: "p50", values: ps.map((p) => p.fsync_p50_ms ?? null) },
    { label: "p99", values: ps.map((p) => p.fsync_p99_ms ?? null) },
  ], { fmt: (v) => v.toFixed(v < 10 ? 2 : 1) + " ms" });
  drawChart($("chart-disk"), t, [
    { label: "free", values: ps.map((p) => (p.free_bytes >= 0 ? p.free_bytes : null)) },
  ], { fmt: fmtBytes, hline: { value: minFree, label: "min_free_bytes " + fmtBytes(minFree) } });
  // 0 until Badger first measures its files, which it does about once a minute
  drawChart($("chart-store"), t, [{ label: "store", values: ps.map((p) => p.store_bytes || null) }], { fmt: fmtBytes });
  const count = (v) => (v >= 1000 ? fmtNum(Math.round(v)) : fmtRate(v));
  drawChart($("chart-conns"), t, [
    { label: "connections", values: ps.map((p) => p.connections) },
    { label: "queued messages", values: ps.map((p) => p.queued_messages) },
  ], { fmt: count });
  drawChart($("chart-losses"), t, [
    { label: "dropped", values: ps.map((p) => p.dropped) },
    { label: "refused", values: ps.map((p) => p.refused) },
  ], { fmt: fmtRate });
}

// ---- sessions

const list = { sort: "client_id", order: "asc", offset: 0, limit: 50 };

function sessionsQuery() {
  const q = new URLSearchParams();
  const f = document.getElementById("filters").elements;
  for (const name of ["client", "user", "online", "protocol", "min_queued"]) {
    if (f[name].value !== "") q.set(name, f[name].value);
  }
  q.set("sort", list.sort);
  q.set("order", list.order);
  q.set("offset", list.offset);
  q.set("limit", list.limit);
  return q;
}

async function loadSessions() {
  const err = $("sessions-error");
  let res;
  try {
    res = await api("/api/sessions?" + sessionsQuery());
  } catch (e) {
    if (!(e instanceof Unauthorized)) { err.textContent = e.message; err.hidden = false; }
    throw e;
  }
  err.hidden = true;
  fill($("sessions-table").tBodies[0], res.sessions.map((s) => el("tr", {
    "data-testid": "session-row",
    "data-client-id": s.client_id,
    tabindex: "0",
    onclick: () => openSession(s.client_id),
    onkeydown: (ev) => { if (ev.key === "Enter") openSession(s.client_id); },
  },
  el("td", {}, s.client_id, s.kind && s.kind !== "client" ? el("span", { class: "badge" }, s.kind) : null),
  el("td", {}, s.username ?? ""),
  el("td", { class: s.online ? "on" : "off" }, s.online ? "online" : "offline"),
  el("td", {}, s.protocol),
  el("td", { class: "num" }, fmtNum(s.subscriptions)),
  el("td", { class: "num" }, fmtNum(s.queued)),
  el("td", { class: "num" }, fmtBytes(s.queued_bytes)),
  el("td", { class: "num" }, age(s.oldest_queued)),
  el("td", { class: "num" }, fmtNum(s.inflight)),
  el("td", {}, s.online ? "now" : fmtTime(s.last_seen)))));
  const first = res.sessions.length ? res.offset + 1 : 0;
  $("page-info").textContent = `rows ${fmtNum(first)}–${fmtNum(res.offset + res.sessions.length)} of ${fmtNum(res.total)}` +
    (res.total !== res.all ? ` (${fmtNum(res.all)} sessions in all)` : "");
  $("page-prev").disabled = res.offset === 0;
  $("page-next").disabled = res.offset + res.sessions.length >= res.total;
  for (const th of document.querySelectorAll("#sessions th[data-sort]")) {
    th.classList.toggle("asc", th.dataset.sort === list.sort && list.order === "asc");
    th.classList.toggle("desc", th.dataset.sort === list.sort && list.order === "desc");
  }
}

function openSession(id) {
  location.hash = "#/session?id=" + encodeURIComponent(id);
}

for (const th of document.querySelectorAll("#sessions th[data-sort]")) {
  const sortBy = () => {
    if (list.sort === th.dataset.sort) list.order = list.order === "asc" ? "desc" : "asc";
    else { list.sort = th.dataset.sort; list.order = "asc"; }
    list.offset = 0;
    refresh();
  };
  th.tabIndex = 0;
  th.addEventListener("click", sortBy);
  th.addEventListener("keydown", (ev) => { if (ev.key === "Enter") sortBy(); });
}

let filterTimer = 0;
document.getElementById("filters").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { list.offset = 0; refresh(); }, 250);
});
document.getElementById("filters").addEventListener("submit", (ev) => ev.preventDefault());
$("page-prev").addEventListener("click", () => { list.offset = Math.max(0, list.offset - list.limit); refresh(); });
$("page-next").addEventListener("click", () => { list.offset += list.limit; refresh(); });

// ---- one session

let currentId = null;

async function loadSession() {
  const err = $("session-error");
  $("session-id").textContent = currentId;
  let s;
  try {
    s = await api("/api/session?id=" + encodeURIComponent(currentId));
  } catch (e) {
    if (!(e instanceof Unauthorized)) { err.textContent = e.message; err.hidden = false; }
    for (const id of ["btn-disconnect", "btn-delete"]) $(id).disabled = true;
    throw e;
  }
  err.hidden = true;
  $("btn-disconnect").disabled = !s.online;
  $("btn-delete").disabled = false;
  const f = [
    ["Kind", s.kind], ["User", s.username ?? ""], ["State", s.online ? "online" : "offline"],
    ["Protocol", s.protocol], ["Persistent", s.persistent ? "yes" : "no"],
    ["Listener", s.listener ?? ""], ["Remote address", s.remote ?? ""],
    ["Subscriptions", fmtNum(s.subscriptions)],
    ["Queued", `${fmtNum(s.queued)} messages, ${fmtBytes(s.queued_bytes)}`],
    ["Oldest queued", s.oldest_queued ? `${age(s.oldest_queued)} ago (${fmtTime(s.oldest_queued)})` : ""],
    ["In flight", fmtNum(s.inflight)], ["Last seen", s.online ? "now" : fmtTime(s.last_seen)],
    ["Expiry", s.expiry_seconds !== undefined ? fmtDuration(s.expiry_seconds) : ""],
  ];
  $("session-fields").replaceChildren(...f.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const w = s.will;
  $("session-will").textContent = w
    ? `${w.topic} (QoS ${w.qos}${w.retain ? ", retained" : ""}${w.delay ? `, delay ${w.delay} s` : ""}, ${fmtBytes(w.payload_bytes)})`
    : "none";
  fill($("session-subs").tBodies[0], (s.subscriptions_list || []).map((x) => el("tr", {},
    el("td", {}, x.filter), el("td", {}, x.qos), el("td", {}, x.no_local ? "yes" : ""),
    el("td", {}, x.retain_as_published ? "yes" : ""), el("td", {}, x.id || ""))));
  fill($("session-queue").tBodies[0], (s.queue_head || []).map((m) => el("tr", {},
    el("td", { class: "num" }, m.seq), el("td", {}, m.topic), el("td", { class: "num" }, fmtBytes(m.bytes)),
    el("td", {}, age(m.arrived)), el("td", {}, m.qos), el("td", {}, m.state),
    el("td", { class: "num" }, m.packet_id || ""))));
}

async function act(method, path, done) {
  const out = $("action-result");
  out.classList.remove("error");
  out.textContent = "…";
  try {
    await api(path + "?id=" + encodeURIComponent(currentId), method);
    out.textContent = done;
  } catch (e) {
    if (e instanceof Unauthorized) return;
    out.textContent = e.message;
    out.classList.add("error");
  }
  refresh();
}

$("btn-disconnect").addEventListener("click", () => act("POST", "/api/session/disconnect", "Disconnected."));
$("btn-delete").addEventListener("click", () => {
  $("confirm-id").textContent = currentId;
  // Escape leaves returnValue as the last close set it: a Delete confirmed before must not count.
  $("confirm-dialog").returnValue = "";
  $("confirm-dialog").showModal();
});
$("confirm-dialog").addEventListener("close", () => {
  if ($("confirm-dialog").returnValue === "delete") act("DELETE", "/api/session", "Deleted.");
});

// ---- topics

let prefix = "";

async function loadTopics() {
  const [ret, top] = await Promise.all([
    api("/api/retained?prefix=" + encodeURIComponent(prefix)),
    api("/api/topics/top?n=20"),
  ]);
  const crumbs = [el("a", { href: "#/topics" }, "all topics")];
  if (prefix !== "") {
    const levels = prefix.split("/");
    levels.forEach((lv, i) => {
      const p = levels.slice(0, i + 1).join("/");
      crumbs.push(" / ", el("a", { href: "#/topics?prefix=" + encodeURIComponent(p) }, lv === "" ? "(empty)" : lv));
    });
  }
  $("retained-crumbs").replaceChildren(...crumbs);
  $("retained-summary").textContent = `${fmtNum(ret.count)} retained messages, ${fmtBytes(ret.bytes)}` +
    (prefix ? ` at or under ${prefix}` : "");
  fill($("retained-children").tBodies[0], ret.children.map((c) => {
    const under = c.count - (c.leaf ? 1 : 0);
    return el("tr", {
      "data-testid": "retained-row",
      onclick: under > 0 ? () => { location.hash = "#/topics?prefix=" + encodeURIComponent(c.topic); } : null,
      class: under > 0 ? "" : "leaf",
    }, el("td", {}, c.topic, under > 0 ? " ›" : ""), el("td", { class: "num" }, fmtNum(c.count)),
    el("td", { class: "num" }, fmtBytes(c.bytes)));
  }));
  $("top-since").textContent = `Counting since ${fmtTime(top.counting_since)}, over ${top.window_seconds} s.`;
  fill($("top-topics").tBodies[0], top.topics.length
    ? top.topics.map((x) => el("tr", {}, el("td", {}, x.topic), el("td", { class: "num" }, fmtRate(x.per_second))))
    : [el("tr", {}, el("td", { class: "muted" }, "no messages yet"))]);
}

// ---- backup

$("btn-backup").addEventListener("click", async () => {
  const btn = $("btn-backup"), bar = $("backup-progress"), info = $("backup-info"), link = $("backup-link");
  btn.disabled = true;
  link.hidden = true;
  if (link.href) URL.revokeObjectURL(link.href);
  info.classList.remove("error");
  try {
    const r = await fetch("/backup", { headers: authHeaders(), cache: "no-store" });
    if (r.status === 401) { askToken((await r.text()).trim()); return; }
    if (!r.ok) throw new Error((await r.text()).trim() || `${r.status} ${r.statusText}`);
    const estimate = Number(r.headers.get("Holdfast-Estimated-Bytes")) || 0;
    bar.hidden = false;
    bar.removeAttribute("value"); // indeterminate until the first bytes
    const reader = r.body.getReader(), chunks = [], start = performance.now();
    let got = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      got += value.length;
      const secs = (performance.now() - start) / 1000, rate = got / Math.max(secs, 0.001);
      if (estimate) { bar.max = estimate; bar.value = Math.min(got, estimate); }
      info.textContent = `${fmtBytes(got)}${estimate ? " of about " + fmtBytes(estimate) : ""}, ${fmtBytes(rate)}/s`;
    }
    bar.max = 1;
    bar.value = 1;
    const name = `holdfast-${new Date().toISOString().slice(0, 19).replaceAll(":", "-")}.backup`;
    link.href = URL.createObjectURL(new Blob(chunks, { type: "application/octet-stream" }));
    link.download = name;
    link.dataset.bytes = String(got);
    link.textContent = `Save ${name} (${fmtBytes(got)})`;
    link.hidden = false;
    info.textContent = `${fmtBytes(got)} in ${((performance.now() - start) / 1000).toFixed(1)} s`;
  } catch (e) {
    info.textContent = "Backup failed: " + e.message;
    info.classList.add("error");
  } finally {
    btn.disabled = false;
  }
});

// ---- routing and polling

const views = {
  overview: loadOverview,
  sessions: loadSessions,
  session: loadSession,
  topics: loadTopics,
  backup: null,
};
let view = "overview";

function route() {
  const m = location.hash.match(/^#\/(\w+)(?:\?(.*))?$/);
  const q = new URLSearchParams(m ? m[2] || "" : "");
  view = m && m[1] in views ? m[1] : "overview";
  if (view === "session") currentId = q.get("id") || "";
  if (view === "topics") prefix = q.get("prefix") || "";
  if (view === "session") $("action-result").textContent = "";
  for (const name of Object.keys(views)) {
    document.getElementById("view-" + name).hidden = name !== view;
  }
  for (const a of document.querySelectorAll("nav a[data-view]")) {
    a.classList.toggle("active", a.dataset.view === view || (view === "session" && a.dataset.view === "sessions"));
  }
  refresh();
}

// refresh reloads the current view; one request at a time, and one more queued if asked meanwhile.
// The next poll waits at least four times as long as this load took: each page of the sessions
// table costs the broker a scan of them all, and an open tab must not keep it busy.
let busy = false, again = false, timer = 0;
async function refresh() {
  if (busy) { again = true; return; }
  clearTimeout(timer);
  const load = views[view];
  if (!$("token-form").hidden) return;
  if (!load) { timer = setTimeout(poll, POLL_MS); return; }
  busy = true;
  const start = performance.now();
  try {
    await load();
    status("updated " + new Date().toLocaleTimeString("en-GB"));
  } catch (e) {
    if (!(e instanceof Unauthorized)) status(e.message, true);
  } finally {
    busy = false;
    const took = performance.now() - start;
    if (again) { again = false; refresh(); } else if ($("token-form").hidden) {
      timer = setTimeout(poll, Math.min(30000, Math.max(POLL_MS - took, 4 * took)));
    }
  }
}

function poll() {
  if (document.hidden) timer = setTimeout(poll, POLL_MS);
  else refresh();
}

window.addEventListener("hashchange", route);
route();
