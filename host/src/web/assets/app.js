// The Iglu dashboard: the plugin table and the chart from the live status
// stream (one message a second), the event stream (sampled by the host),
// and the selected plugin's logs (polled). No dependency, no build step.
"use strict";
const $ = (s) => document.querySelector(s);
const KEEP = 300;
const history = {}; // plugin id -> [{t, calls_per_s, p99_ms}]
let selected = null;
let source = null;
let lastLog = 0;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function uptime(ms) {
  if (ms === null || ms === undefined) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

async function act(id, action) {
  const r = await fetch(`/api/plugins/${encodeURIComponent(id)}/${action}`, {
    method: "POST",
    headers: { "x-iglu-dashboard": "1" },
  });
  if (!r.ok) alert(`${action} ${id}: ${await r.text()}`);
}

function render(plugins) {
  const body = $("#plugins tbody");
  const rows = [];
  for (const p of plugins) {
    const tr = el("tr", { "data-plugin": p.id });
    if (p.id === selected) tr.className = "selected";
    tr.append(
      el("td", { class: "id", title: p.health || p.name }, p.id),
      el("td", { class: "state", "data-state": p.state }, p.state === "restarting" ? "crashed · restarting" : p.state),
      el("td", { class: "restarts", title: `after crashes: ${p.crashes}` }, String(p.restarts)),
      el("td", {}, uptime(p.uptime_ms)),
      el("td", {}, p.rss_kib === null ? "-" : (p.rss_kib / 1024).toFixed(1) + " MiB"),
      el("td", {}, p.cpu_percent === null ? "-" : p.cpu_percent.toFixed(0) + "%"),
      el("td", { class: "rate" }, p.calls_per_s.toFixed(0)),
      el("td", {}, p.p99_ms === null ? "-" : p.p99_ms + " ms"),
      el("td", {}, String(p.queue_depth)),
      el("td", { class: "exit" }, p.last_exit || "-"),
    );
    const buttons = el("td", {});
    for (const action of ["start", "stop", "restart"]) {
      const b = el("button", { "data-action": action, "data-plugin": p.id }, action);
      b.addEventListener("click", (ev) => { ev.stopPropagation(); act(p.id, action); });
      buttons.append(b);
    }
    tr.append(buttons);
    tr.addEventListener("click", () => select(p.id));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const chooser = $("#chart-plugin");
  const have = new Set([...chooser.options].map((o) => o.value));
  for (const p of plugins) if (!have.has(p.id)) chooser.append(el("option", { value: p.id }, p.id));
}

function remember(plugins) {
  const t = Date.now();
  for (const p of plugins) {
    const h = (history[p.id] = history[p.id] || []);
    h.push({ t, calls_per_s: p.calls_per_s, p99_ms: p.p99_ms });
    if (h.length > KEEP) h.shift();
  }
}

function series() {
  const which = $("#chart-plugin").value;
  if (which) return history[which] || [];
  // All plugins: calls summed, the worst p99.
  const byT = new Map();
  for (const h of Object.values(history)) {
    h.forEach((pt, i) => {
      const k = h.length - i;
      const a = byT.get(k) || { calls_per_s: 0, p99_ms: null };
      a.calls_per_s += pt.calls_per_s;
      if (pt.p99_ms !== null) a.p99_ms = Math.max(a.p99_ms || 0, pt.p99_ms);
      byT.set(k, a);
    });
  }
  return [...byT.entries()].sort((a, b) => b[0] - a[0]).map((e) => e[1]);
}

function draw() {
  const c = $("#chart");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const pts = series();
  if (pts.length < 2) return;
  const line = (key, color) => {
    const max = Math.max(1, ...pts.map((p) => p[key] || 0));
    g.strokeStyle = color;
    g.beginPath();
    pts.forEach((p, i) => {
      const x = (i / (KEEP - 1)) * c.width;
      const y = c.height - 4 - ((p[key] || 0) / max) * (c.height - 20);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
    g.fillStyle = color;
    g.fillText(`${key === "p99_ms" ? "p99" : "calls/s"} max ${max.toFixed(key === "p99_ms" ? 2 : 0)}`, 4, key === "p99_ms" ? 24 : 12);
  };
  line("calls_per_s", "#1a73e8");
  line("p99_ms", "#e8710a");
}

function connect() {
  if (source) source.close();
  const topic = $("#topic").value.trim();
  source = new EventSource("/api/stream?topic=" + encodeURIComponent(topic));
  source.addEventListener("open", () => { $("#link").textContent = "live"; });
  source.addEventListener("error", () => { $("#link").textContent = "reconnecting…"; });
  source.addEventListener("status", (e) => {
    const d = JSON.parse(e.data);
    render(d.plugins);
    remember(d.plugins);
    $("#skipped").textContent = String(d.skipped_events);
    draw();
  });
  source.addEventListener("event", (e) => {
    const ev = JSON.parse(e.data);
    const li = el("li", { "data-topic": ev.topic }, `${new Date(ev.timestamp_ms).toLocaleTimeString()} ${ev.topic} ${ev.payload} (${ev.source})`);
    const list = $("#events");
    list.prepend(li);
    while (list.children.length > 200) list.lastChild.remove();
  });
}

function select(id) {
  selected = id;
  lastLog = 0;
  $("#logs").textContent = "";
  $("#logs-plugin").textContent = id;
  for (const tr of document.querySelectorAll("#plugins tbody tr")) {
    tr.className = tr.dataset.plugin === id ? "selected" : "";
  }
  pollLogs();
}

let polling = false;
async function pollLogs() {
  if (!selected || polling) return;
  polling = true;
  try { await readLogs(); } finally { polling = false; }
}

async function readLogs() {
  const id = selected;
  const r = await fetch(`/api/plugins/${encodeURIComponent(id)}/logs?after=${lastLog}`);
  if (!r.ok || id !== selected) return;
  const d = await r.json();
  lastLog = d.last;
  const pre = $("#logs");
  for (const l of d.lines) {
    const fields = (l.fields || []).map(([k, v]) => ` ${k}=${v}`).join("");
    pre.append(`${new Date(l.timestamp_ms).toISOString()} ${l.level} ${l.target}: ${l.message}${fields}\n`);
  }
  const lines = pre.textContent.split("\n");
  if (lines.length > 500) pre.textContent = lines.slice(-500).join("\n");
  pre.scrollTop = pre.scrollHeight;
}

async function start() {
  const r = await fetch("/api/status");
  if (r.ok) {
    const d = await r.json();
    for (const [id, pts] of Object.entries(d.history)) history[id] = pts.slice(-KEEP);
    render(d.plugins);
    draw();
  }
  $("#topic").addEventListener("change", connect);
  $("#chart-plugin").addEventListener("change", draw);
  connect();
  setInterval(pollLogs, 1000);
}

start();
