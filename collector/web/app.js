// Hearth's dashboard: plain JavaScript, no build step, served by the collector itself.
// It polls the API every few seconds and updates the table in place, so nothing flickers.
"use strict";

const REFRESH_MS = 4000;
const $ = (id) => document.getElementById(id);
const views = ["login-view", "fleet-view", "jobs-view", "detail-view"];
const state = {
  me: null, nodes: [], rows: new Map(), detail: null, timer: null, serverSkewMs: 0,
  tab: "nodes", jobs: [], jobRows: new Map(),
};

// A request to the collector. Writes carry JSON (the collector refuses cookie-authenticated
// writes without it); a 401 means the session is gone, so back to the login form.
async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  const res = await fetch(path, init);
  const date = Date.parse(res.headers.get("Date") || "");
  if (!Number.isNaN(date)) state.serverSkewMs = date - Date.now();
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 && path !== "/api/auth/login") {
    showLogin("Your session has ended; log in again.");
    throw new Error("logged out");
  }
  if (!res.ok) throw new Error(data.error || `${method} ${path}: HTTP ${res.status}`);
  return data;
}

function show(view) {
  for (const v of views) $(v).hidden = v !== view;
}

function showLogin(message) {
  state.me = null;
  clearInterval(state.timer);
  state.timer = null;
  $("who").textContent = "";
  $("logout").hidden = true;
  $("tabs").hidden = true;
  $("login-error").textContent = message || "";
  show("login-view");
  $("username").focus();
}

function loggedIn(me) {
  state.me = me;
  $("who").textContent = `${me.user} (${me.role})`;
  $("logout").hidden = false;
  $("add-node").hidden = me.role === "viewer";
  $("tabs").hidden = false;
  show(state.detail ? "detail-view" : state.tab === "jobs" ? "jobs-view" : "fleet-view");
  refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, REFRESH_MS);
}

async function refresh() {
  if (state.tab === "jobs") return refreshJobs();
  try {
    state.nodes = await allNodes();
    renderTags();
    renderTable();
    if (state.detail) await renderDetail();
  } catch (e) {
    if (state.me) $("summary").textContent = `Could not refresh: ${e.message}`;
  }
}

// Every node, a page at a time (the API answers at most 5,000 per request).
async function allNodes() {
  let all = [];
  let after = "";
  for (;;) {
    const page = await api("GET", `/api/nodes?limit=5000${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    all = all.concat(page.nodes);
    if (!page.next) return all;
    after = page.next;
  }
}

// "12 s ago", by the collector's clock (from its Date header), not this browser's.
function ago(iso) {
  if (!iso) return "never";
  const secs = Math.max(0, Math.round((Date.now() + state.serverSkewMs - Date.parse(iso)) / 1000));
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return `${Math.floor(secs / 86400)} d ago`;
}

function duration(secs) {
  if (secs == null) return "–";
  const d = Math.floor(secs / 86400), h = Math.floor((secs % 86400) / 3600), m = Math.floor((secs % 3600) / 60);
  return d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min`;
}

function el(tag, props, children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children || []) e.append(c);
  return e;
}

function bar(fraction, label) {
  if (fraction == null || !Number.isFinite(fraction)) return document.createTextNode("–");
  const pct = Math.max(0, Math.min(1, fraction)) * 100;
  const outer = el("span", { className: "bar" + (pct >= 95 ? " full" : pct >= 80 ? " high" : ""), title: label });
  const inner = el("span");
  inner.style.width = `${pct.toFixed(0)}%`;
  outer.append(inner);
  return el("span", {}, [outer, label]);
}

// The cells of one node's row, as [label, content] pairs; content is text or a node.
function cells(n) {
  const failing = (n.checks || []).filter((c) => !c.ok).map((c) => c.name);
  const mem = n.memory_mb && n.mem_available_mb != null ? (n.memory_mb - n.mem_available_mb) / n.memory_mb : null;
  const disk = n.disk_gb && n.disk_free_gb != null ? (n.disk_gb - n.disk_free_gb) / n.disk_gb : null;
  const load = n.load && n.load.length ? n.load[0] : null;
  return [
    ["Status", el("span", { className: `status status-${n.status}`, textContent: n.status })],
    ["Name", n.name],
    ["Hostname", n.hostname],
    ["Last seen", ago(n.last_seen)],
    ["Uptime", duration(n.uptime_secs)],
    ["Load", load == null ? "–" : bar(n.cpu_cores ? load / n.cpu_cores : null, load.toFixed(2))],
    ["Memory", bar(mem, mem == null ? "" : `${Math.round(mem * 100)}%`)],
    ["Disk", bar(disk, disk == null ? "" : `${Math.round(disk * 100)}%`)],
    ["Failing checks", failing.length ? el("span", { className: "failing", textContent: failing.join(", ") }) : "none"],
    ["Tags", el("span", {}, (n.tags || []).map((t) => el("span", { className: "tag", textContent: t })))],
    ["Arch", n.arch || "–"],
    ["Agent", n.agent_version || "–"],
    ["Auth", { agent_token: "own token", fleet_key: "fleet key", anonymous: "none" }[n.auth] || "–"],
  ];
}

function matches(n) {
  const q = $("search").value.trim().toLowerCase();
  const status = $("status-filter").value;
  const tag = $("tag-filter").value;
  return (!q || n.name.toLowerCase().includes(q) || n.hostname.toLowerCase().includes(q)) &&
    (!status || n.status === status) && (!tag || (n.tags || []).includes(tag));
}

// Rows are kept per node and only their changed cells are rewritten.
function renderTable() {
  const tbody = document.querySelector("#nodes tbody");
  const shown = state.nodes.filter(matches);
  const seen = new Set();
  shown.forEach((n, i) => {
    seen.add(n.node_id);
    let row = state.rows.get(n.node_id);
    if (!row) {
      row = el("tr");
      row.dataset.id = n.node_id;
      row.addEventListener("click", () => openDetail(row.dataset.id));
      state.rows.set(n.node_id, row);
    }
    cells(n).forEach(([label, content], c) => {
      let td = row.children[c];
      if (!td) td = row.appendChild(el("td"));
      td.dataset.label = label;
      const html = typeof content === "string" ? escapeText(content) : content.outerHTML;
      if (td.dataset.html !== html) {
        td.dataset.html = html;
        td.replaceChildren(typeof content === "string" ? document.createTextNode(content) : content);
      }
    });
    if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
  });
  for (const [id, row] of state.rows) {
    if (!seen.has(id)) row.remove();
  }
  const counts = {};
  for (const n of state.nodes) counts[n.status] = (counts[n.status] || 0) + 1;
  $("summary").textContent = `${state.nodes.length} nodes: ` +
    Object.entries(counts).map(([s, k]) => `${k} ${s}`).join(", ");
  $("empty").hidden = shown.length > 0;
}

function escapeText(text) {
  const d = document.createElement("div");
  d.textContent = text;
  return d.innerHTML;
}

function renderTags() {
  const select = $("tag-filter");
  const tags = [...new Set(state.nodes.flatMap((n) => n.tags || []))].sort();
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === tags.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(select.options[0], ...tags.map((t) => el("option", { value: t, textContent: t })));
  select.value = tags.includes(chosen) ? chosen : "";
}

async function openDetail(id) {
  state.detail = id;
  show("detail-view");
  await renderDetail();
}

async function renderDetail() {
  const id = state.detail;
  const [node, { events }] = await Promise.all([
    api("GET", `/api/nodes/${encodeURIComponent(id)}`),
    api("GET", `/api/events?node=${encodeURIComponent(id)}&limit=1000`),
  ]);
  if (state.detail !== id) return;
  $("detail-name").replaceChildren(
    el("span", { className: `status status-${node.status}`, textContent: node.status }), ` ${node.name}`);
  const fields = [];
  for (const [key, value] of Object.entries(node)) {
    if (value == null) continue;
    let text = Array.isArray(value) || typeof value === "object" ? JSON.stringify(value) : String(value);
    if (key === "last_seen") text += ` (${ago(value)})`;
    if (key === "uptime_secs") text += ` (${duration(value)})`;
    fields.push(el("dt", { textContent: key }), el("dd", { textContent: text }));
  }
  $("detail-fields").replaceChildren(...fields);
  const recent = events.slice(-50).reverse();
  $("detail-events").replaceChildren(...(recent.length ? recent.map((e) =>
    el("li", { textContent: `${e.at}  ${e.kind}${e.check ? ` (${e.check})` : ""}: ${e.detail}` })) :
    [el("li", { className: "muted", textContent: "Nothing has happened to this node yet." })]));
}

// The Jobs view: one row per job, with a strip of its recent runs, each run's log a click away.
async function refreshJobs() {
  try {
    state.jobs = (await api("GET", "/api/jobs")).jobs;
    renderJobs();
  } catch (e) {
    if (state.me) $("jobs-summary").textContent = `Could not refresh: ${e.message}`;
  }
}

function schedule(j) {
  if (j.cron) return `${j.cron} (${j.tz || "UTC"})`;
  const s = j.period_secs;
  if (s % 86400 === 0) return `every ${s / 86400} d`;
  if (s % 3600 === 0) return `every ${s / 3600} h`;
  return s < 60 ? `every ${s} s` : `every ${duration(s)}`;
}

function until(iso) {
  if (!iso) return "–";
  const secs = Math.round((Date.parse(iso) - Date.now() - state.serverSkewMs) / 1000);
  const when = new Date(iso).toLocaleString();
  return secs >= 0 ? `${when} (in ${duration(secs)})` : `${when} (${ago(iso)})`;
}

// A run's length: seconds under a minute, else as `duration` says it.
function took(ms) {
  if (ms == null) return "–";
  return ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : duration(Math.round(ms / 1000));
}

function runLabel(p) {
  const lasted = p.duration_ms != null ? `, took ${took(p.duration_ms)}` : "";
  const exit = p.exit_status != null ? `, exit status ${p.exit_status}` : "";
  return `${p.kind} at ${new Date(p.at).toLocaleString()}${exit}${lasted}`;
}

// Finished runs, oldest on the left like a timeline, and a run still going at the right.
function strip(j) {
  const recent = j.recent || [];
  const finished = recent.filter((p, i) => p.kind === "success" || p.kind === "fail" || (p.kind === "start" && i === 0));
  const runs = finished.reverse().map((p) => {
    const b = el("button", { type: "button", className: `run run-${p.kind}`, title: runLabel(p) });
    b.setAttribute("aria-label", runLabel(p));
    b.dataset.job = j.id;
    b.dataset.n = p.n;
    return b;
  });
  return runs.length ? el("span", { className: "runs" }, runs) : el("span", { className: "muted", textContent: "no pings yet" });
}

function jobCells(j) {
  const last = j.last_ping ? `${ago(j.last_ping)} (${j.last_ping_kind})` : "never";
  return [
    ["Status", el("span", { className: `status status-${j.status}`, textContent: j.status })],
    ["Name", j.ping_url ? el("span", { textContent: j.name, title: `Ping URL: ${j.ping_url}` }) : j.name],
    ["Schedule", schedule(j)],
    ["Last ping", last],
    ["Last duration", took(j.last_duration_ms)],
    ["Next expected", j.status === "paused" ? "paused" : until(j.next_expected)],
    ["Recent runs", strip(j)],
    ["Tags", el("span", {}, (j.tags || []).map((t) => el("span", { className: "tag", textContent: t })))],
  ];
}

function renderJobs() {
  const tbody = document.querySelector("#jobs tbody");
  const seen = new Set();
  state.jobs.forEach((j, i) => {
    seen.add(j.id);
    let row = state.jobRows.get(j.id);
    if (!row) {
      row = el("tr");
      state.jobRows.set(j.id, row);
    }
    jobCells(j).forEach(([label, content], c) => {
      let td = row.children[c];
      if (!td) td = row.appendChild(el("td"));
      td.dataset.label = label;
      const html = typeof content === "string" ? escapeText(content) : content.outerHTML;
      if (td.dataset.html !== html) {
        td.dataset.html = html;
        td.replaceChildren(typeof content === "string" ? document.createTextNode(content) : content);
      }
    });
    if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
  });
  for (const [id, row] of state.jobRows) {
    if (!seen.has(id)) {
      row.remove();
      state.jobRows.delete(id);
    }
  }
  const counts = {};
  for (const j of state.jobs) counts[j.status] = (counts[j.status] || 0) + 1;
  $("jobs-summary").textContent = `${state.jobs.length} jobs: ` +
    Object.entries(counts).map(([s, k]) => `${k} ${s}`).join(", ");
  $("jobs-empty").hidden = state.jobs.length > 0;
}

async function openLog(job, n) {
  try {
    const p = await api("GET", `/api/jobs/${encodeURIComponent(job)}/pings/${encodeURIComponent(n)}`);
    const name = (state.jobs.find((j) => j.id === job) || { name: job }).name;
    $("log-title").textContent = `${name}: ${p.kind}`;
    const exit = p.exit_status != null ? `, exit status ${p.exit_status}` : "";
    const cut = p.truncated ? `; the first ${p.log.length} of ${p.log_bytes} bytes were kept` : "";
    $("log-meta").textContent = `${new Date(p.at).toLocaleString()}${exit}${cut}`;
    $("log-text").textContent = p.log || "(no log: the ping had no body)";
  } catch (e) {
    $("log-title").textContent = "Log";
    $("log-meta").textContent = e.message;
    $("log-text").textContent = "";
  }
  $("log-dialog").showModal();
}

function switchTab(tab) {
  state.tab = tab;
  state.detail = null;
  $("tab-nodes").setAttribute("aria-pressed", String(tab === "nodes"));
  $("tab-jobs").setAttribute("aria-pressed", String(tab === "jobs"));
  show(tab === "jobs" ? "jobs-view" : "fleet-view");
  refresh();
}

async function mint() {
  $("add-error").textContent = "";
  const name = $("add-name").value.trim();
  const tags = $("add-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  const fleet = $("add-fleet").checked;
  try {
    const minted = fleet ?
      await api("POST", "/api/fleet-keys", { name: name || "fleet", tags, max_uses: Number($("add-uses").value) }) :
      await api("POST", "/api/enrollment-tokens", { ...(name && { name }), tags });
    $("install-command").textContent = minted.install_command;
    $("add-expires").textContent = $("add-until").textContent = new Date(minted.expires_at).toLocaleString();
    $("add-once").hidden = fleet;
    $("add-many").hidden = !fleet;
    $("add-key").hidden = !fleet;
    $("fleet-key").textContent = fleet ? minted.key : "";
    $("beacon-login").textContent = fleet ? minted.beacon_login : "";
    $("add-result").hidden = false;
    $("copied").textContent = "";
  } catch (e) {
    $("add-error").textContent = e.message;
  }
}

async function copyCommand() {
  const text = $("install-command").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (plain HTTP on another host): select it for the person to copy.
    const range = document.createRange();
    range.selectNodeContents($("install-command"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  $("copied").textContent = "Copied.";
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      const me = await api("POST", "/api/auth/login", { username: $("username").value, password: $("password").value });
      $("password").value = "";
      loggedIn(me);
    } catch (e) {
      $("login-error").textContent = e.message;
    }
  });
  $("logout").addEventListener("click", async () => {
    await api("POST", "/api/auth/logout").catch(() => {});
    showLogin("You have logged out.");
  });
  for (const id of ["search", "status-filter", "tag-filter"]) $(id).addEventListener("input", renderTable);
  $("back").addEventListener("click", () => {
    state.detail = null;
    show("fleet-view");
  });
  $("add-node").addEventListener("click", () => {
    $("add-result").hidden = true;
    $("add-error").textContent = "";
    $("add-dialog").showModal();
  });
  $("mint").addEventListener("click", mint);
  $("add-fleet").addEventListener("change", () => {
    $("add-uses-label").hidden = !$("add-fleet").checked;
    $("add-result").hidden = true;
  });
  $("tab-nodes").addEventListener("click", () => switchTab("nodes"));
  $("tab-jobs").addEventListener("click", () => switchTab("jobs"));
  document.querySelector("#jobs tbody").addEventListener("click", (event) => {
    const run = event.target.closest(".run");
    if (run) openLog(run.dataset.job, run.dataset.n);
  });
  $("copy").addEventListener("click", copyCommand);
  fetch("/api/auth/me", { credentials: "same-origin" })
    .then((res) => (res.ok ? res.json().then(loggedIn) : showLogin()))
    .catch(() => showLogin("The collector cannot be reached."));
});
