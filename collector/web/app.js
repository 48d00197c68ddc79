// Hearth's dashboard: plain JavaScript, no build step, served by the collector itself.
// Pages by the URL's hash: #/ (the fleet), #/nodes/ID (one node), #/jobs, #/maintenance.
// The fleet is fetched whole once, then every few seconds only what changed
// (GET /api/nodes?changed_since=CURSOR); the table draws only the rows on screen.
"use strict";

const REFRESH_MS = 4000;
// Now and then everything again, which also catches windows and silences that were removed.
const FULL_EVERY_MS = 5 * 60 * 1000;
const $ = (id) => document.getElementById(id);
const views = ["login-view", "fleet-view", "detail-view", "jobs-view", "maintenance-view"];
const state = {
  me: null, about: null, nodes: new Map(), list: [], rows: new Map(), cursor: null, fullAt: 0,
  timer: null, serverSkewMs: 0, sort: { key: "problems", dir: 1 }, route: { page: "fleet" }, rowHeight: 41,
  drawing: false, detail: null, jobs: [], jobRows: new Map(),
};

// ---------------------------------------------------------------- the collector
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

const operator = () => state.me && state.me.role !== "viewer";
const admin = () => state.me && state.me.role === "admin";

// ---------------------------------------------------------------- words and numbers
function plural(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many || `${one}s`}`;
}

const nowMs = () => Date.now() + state.serverSkewMs;

// "12 s ago", by the collector's clock (from its Date header), not this browser's.
function ago(iso) {
  if (!iso) return "never";
  const secs = Math.round((nowMs() - Date.parse(iso)) / 1000);
  // The Date header is whole seconds, so a second or two either way is the clock's, not news.
  if (Math.abs(secs) < 5) return "just now";
  if (secs < 0) return "in " + span(-secs);
  return `${span(secs)} ago`;
}

function span(secs) {
  if (secs < 60) return `${secs} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ${Math.floor((secs % 3600) / 60)} min`.replace(/ 0 min$/, "");
  return `${Math.floor(secs / 86400)} d ${Math.floor((secs % 86400) / 3600)} h`.replace(/ 0 h$/, "");
}

function localTime(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function percent(ratio, digits) {
  if (ratio == null) return "–";
  const p = ratio * 100;
  return `${p >= 99.995 && p < 100 ? "99.99" : p.toFixed(digits == null ? 2 : digits)} %`;
}

function bytes(mb) {
  if (mb == null) return "–";
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GiB` : `${mb} MiB`;
}

function el(tag, props, children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children || []) if (c != null) e.append(c);
  return e;
}

function bar(fraction, label, kind) {
  if (fraction == null || !Number.isFinite(fraction)) return el("span", { className: "muted", textContent: "–" });
  const pct = Math.max(0, Math.min(1, fraction)) * 100;
  let level = pct >= 95 ? " full" : pct >= 80 ? " high" : "";
  if (kind === "uptime") level = pct >= 99.9 ? "" : pct >= 99 ? " high" : " full";
  const outer = el("span", { className: `bar${level}`, title: label });
  const inner = el("span");
  inner.style.width = `${pct.toFixed(0)}%`;
  outer.append(inner);
  return el("span", { className: "barcell" }, [outer, label]);
}

// ---------------------------------------------------------------- pages
function show(view) {
  for (const v of views) $(v).hidden = v !== view;
  $("nav-nodes").classList.toggle("current", view === "fleet-view" || view === "detail-view");
  $("tab-jobs").classList.toggle("current", view === "jobs-view");
  $("nav-maintenance").classList.toggle("current", view === "maintenance-view");
}

function parseRoute() {
  const hash = location.hash.replace(/^#/, "");
  const node = hash.match(/^\/nodes\/([^/]+)$/);
  if (node) return { page: "node", id: decodeURIComponent(node[1]) };
  if (hash === "/maintenance") return { page: "maintenance" };
  if (hash === "/jobs") return { page: "jobs" };
  return { page: "fleet" };
}

async function route() {
  if (!state.me) return;
  state.route = parseRoute();
  if (state.route.page === "node") {
    state.detail = state.route.id;
    show("detail-view");
    await renderDetail().catch(report("detail-sub"));
  } else if (state.route.page === "jobs") {
    state.detail = null;
    show("jobs-view");
    await refreshJobs();
  } else if (state.route.page === "maintenance") {
    state.detail = null;
    show("maintenance-view");
    await renderMaintenance().catch(report("window-error"));
  } else {
    state.detail = null;
    show("fleet-view");
    drawTable();
  }
}

const report = (id) => (e) => {
  if (state.me) $(id).textContent = e.message;
};

function showLogin(message) {
  state.me = null;
  clearInterval(state.timer);
  state.timer = null;
  $("who").textContent = "";
  $("logout").hidden = true;
  $("nav").hidden = true;
  $("login-error").textContent = message || "";
  show("login-view");
  $("username").focus();
}

function loggedIn(me) {
  state.me = me;
  $("who").textContent = `${me.user} (${me.role})`;
  $("logout").hidden = false;
  $("nav").hidden = false;
  $("add-node").hidden = me.role === "viewer";
  for (const f of document.querySelectorAll(".operator-only")) f.hidden = me.role === "viewer";
  state.nodes = new Map();
  state.cursor = null;
  refresh().then(route);
  clearInterval(state.timer);
  state.timer = setInterval(() => refresh().then(() => {
    if (state.route.page === "node") renderDetail().catch(() => {});
    if (state.route.page === "jobs") refreshJobs();
  }), REFRESH_MS);
}

// ---------------------------------------------------------------- the fleet
async function refresh() {
  try {
    const full = !state.cursor || Date.now() - state.fullAt > FULL_EVERY_MS;
    const since = full ? null : state.cursor;
    let after = "";
    const fresh = full ? new Map() : state.nodes;
    let total = 0;
    for (;;) {
      const q = `limit=5000${after ? `&after=${encodeURIComponent(after)}` : ""}${since ? `&changed_since=${since}` : ""}`;
      const page = await api("GET", `/api/nodes?${q}`);
      for (const n of page.nodes) fresh.set(n.node_id, n);
      if (!after) state.nextCursor = page.cursor;
      total = page.total;
      if (!page.next) break;
      after = page.next;
    }
    state.cursor = state.nextCursor;
    if (full) state.fullAt = Date.now();
    state.nodes = fresh;
    // A node was deleted since: only a full fetch can say which.
    if (!full && fresh.size !== total) {
      state.cursor = null;
      return refresh();
    }
    renderTags();
    renderHeader();
    drawTable();
  } catch (e) {
    if (state.me) $("summary").textContent = `Could not refresh: ${e.message}`;
  }
}

const STATUS_RANK = { offline: 0, late: 1, pending: 2, stopped: 3, online: 4 };

// Columns: label, how to sort, and the cell. `facts` cells are greyed when the node is not up.
const COLUMNS = [
  { key: "status", label: "Status", sort: (n) => STATUS_RANK[n.status], cell: statusCell },
  { key: "name", label: "Name", sort: (n) => n.name.toLowerCase(), cell: (n) => n.name },
  { key: "uptime_24h", label: "24 h", sort: (n) => n.uptime_24h ?? 2, cell: (n) => bar(n.uptime_24h, percent(n.uptime_24h, 1), "uptime") },
  { key: "uptime_30d", label: "30 days", sort: (n) => n.uptime_30d ?? 2, cell: (n) => percent(n.uptime_30d) },
  { key: "last_seen", label: "Last seen", sort: (n) => -(Date.parse(n.last_seen || 0) || 0), cell: (n) => ago(n.last_seen) },
  { key: "load", label: "Load", facts: true, sort: (n) => (n.load || [0])[0], cell: loadCell },
  { key: "memory", label: "Memory", facts: true, sort: (n) => memUsed(n) ?? -1, cell: (n) => { const m = memUsed(n); return bar(m, m == null ? "" : `${Math.round(m * 100)} %`); } },
  { key: "disk", label: "Disk", facts: true, sort: (n) => diskUsed(n) ?? -1, cell: (n) => { const d = diskUsed(n); return bar(d, d == null ? "" : `${Math.round(d * 100)} %`); } },
  { key: "checks", label: "Checks", sort: (n) => -failing(n).length, cell: checksCell },
  { key: "auth", label: "Auth", sort: (n) => AUTH_WORDS[n.auth] || "", cell: (n) => el("span", { className: `auth auth-${n.auth}`, title: AUTH_TITLES[n.auth] || "", textContent: AUTH_WORDS[n.auth] || "–" }) },
  { key: "tags", label: "Tags", sort: (n) => (n.tags || []).join(","), cell: (n) => el("span", { className: "tags", title: (n.tags || []).join(", ") }, (n.tags || []).map((t) => el("span", { className: "tag", textContent: t }))) },
];
// How a node authenticates its heartbeats (the `auth` field of /api/nodes).
const AUTH_WORDS = { agent_token: "own token", fleet_key: "fleet key", anonymous: "none" };
const AUTH_TITLES = {
  agent_token: "enrolled with a one-time token; heartbeats carry its own agent token",
  fleet_key: "let in by a fleet key, which its heartbeats carry",
  anonymous: "anonymous: its heartbeats carry no credential",
};
const AUTH_LONG = { agent_token: "its own agent token", fleet_key: "a fleet key", anonymous: "nothing (anonymous)" };
const SORTS = [{ key: "problems", label: "Problems first" }, ...COLUMNS.filter((c) => c.key !== "status")];

const memUsed = (n) => (n.memory_mb && n.mem_available_mb != null ? (n.memory_mb - n.mem_available_mb) / n.memory_mb : null);
const diskUsed = (n) => (n.disk_gb && n.disk_free_gb != null ? (n.disk_gb - n.disk_free_gb) / n.disk_gb : null);
const failing = (n) => (n.checks || []).filter((c) => !c.ok);
const stale = (n) => n.status === "offline" || n.status === "stopped" || n.status === "pending";

function statusCell(n) {
  const marks = [];
  if (n.maintenance_until) marks.push(el("span", { className: "mark", title: `in maintenance until ${localTime(n.maintenance_until)}`, textContent: "maintenance" }));
  if (n.silenced_until) marks.push(el("span", { className: "mark", title: `silenced until ${localTime(n.silenced_until)}`, textContent: "silenced" }));
  if (n.acked_at) marks.push(el("span", { className: "mark", title: `acknowledged ${ago(n.acked_at)}`, textContent: "acked" }));
  return el("span", {}, [el("span", { className: `status status-${n.status}`, textContent: n.status }), ...marks]);
}

function loadCell(n) {
  const load = n.load && n.load.length ? n.load[0] : null;
  return load == null ? "–" : bar(n.cpu_cores ? load / n.cpu_cores : null, load.toFixed(2));
}

function checksCell(n) {
  const bad = failing(n);
  if (!n.checks || !n.checks.length) return el("span", { className: "muted", textContent: "–" });
  if (!bad.length) return el("span", { className: "ok", textContent: `✓ ${plural(n.checks.length, "check")} pass` });
  return el("span", { className: "failing", textContent: `✗ ${bad.map((c) => c.name).join(", ")}` });
}

function compare(a, b) {
  const { key, dir } = state.sort;
  if (key === "problems") {
    return STATUS_RANK[a.status] - STATUS_RANK[b.status] || failingFirst(a, b) || a.name.localeCompare(b.name);
  }
  const col = COLUMNS.find((c) => c.key === key);
  const x = col.sort(a), y = col.sort(b);
  return (x < y ? -1 : x > y ? 1 : 0) * dir || a.name.localeCompare(b.name);
}

const failingFirst = (a, b) => failing(b).length - failing(a).length;

function matches(n) {
  const q = $("search").value.trim().toLowerCase();
  const status = $("status-filter").value;
  const tag = $("tag-filter").value;
  return (!q || n.name.toLowerCase().includes(q) || n.hostname.toLowerCase().includes(q)) &&
    (!status || n.status === status) && (!tag || (n.tags || []).includes(tag));
}

function renderHead() {
  const row = document.querySelector("#nodes thead tr");
  if (row.children.length) {
    for (const th of row.children) {
      const on = th.dataset.key === state.sort.key;
      th.setAttribute("aria-sort", on ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
    }
    return;
  }
  for (const col of COLUMNS) {
    const th = el("th", { scope: "col" }, [el("button", { type: "button", textContent: col.label, className: "sort" })]);
    th.dataset.key = col.key;
    th.addEventListener("click", () => sortBy(col.key));
    row.append(th);
  }
  renderHead();
}

function sortBy(key) {
  if (key === "status") key = "problems";
  state.sort = state.sort.key === key ? { key, dir: -state.sort.dir } : { key, dir: 1 };
  $("sort-select").value = key;
  drawTable();
}

// The rows on screen, and a spacer above and below for the rest: 100,000 nodes draw as
// fast as 30. Rows are kept per node and only their changed cells are rewritten.
function drawTable() {
  renderHead();
  state.list = [...state.nodes.values()].filter(matches).sort(compare);
  placeRows();
  const shown = state.list.length;
  $("summary").textContent = shown === state.nodes.size ? plural(shown, "node") : `${plural(shown, "node")} of ${state.nodes.size.toLocaleString()}`;
  $("empty").hidden = shown > 0;
}

function placeRows() {
  if ($("fleet-view").hidden) return;
  const tbody = document.querySelector("#nodes tbody");
  const list = state.list;
  const top = tbody.getBoundingClientRect().top + window.scrollY;
  const h = state.rowHeight;
  const first = Math.max(0, Math.floor((window.scrollY - top) / h) - 10);
  const last = Math.min(list.length, first + Math.ceil(window.innerHeight / h) + 20);
  const before = spacer("spacer-top", first * h);
  const after = spacer("spacer-bottom", (list.length - last) * h);
  const rows = [before];
  const live = new Set();
  for (let i = first; i < last; i++) {
    const n = list[i];
    live.add(n.node_id);
    rows.push(row(n));
  }
  rows.push(after);
  rows.forEach((r, i) => {
    if (tbody.children[i] !== r) tbody.insertBefore(r, tbody.children[i] || null);
  });
  while (tbody.children.length > rows.length) tbody.lastChild.remove();
  for (const id of state.rows.keys()) if (!live.has(id) && !state.nodes.has(id)) state.rows.delete(id);
  const measured = tbody.children[1] && tbody.children[1].dataset.id ? tbody.children[1].offsetHeight : 0;
  if (measured > 10 && Math.abs(measured - state.rowHeight) > 1) {
    state.rowHeight = measured;
    requestAnimationFrame(placeRows);
  }
}

function spacer(id, height) {
  let tr = $(id);
  if (!tr) {
    tr = el("tr", { id, className: "spacer" }, [el("td", { colSpan: COLUMNS.length })]);
    tr.setAttribute("aria-hidden", "true");
  }
  tr.firstChild.style.height = `${height}px`;
  tr.hidden = height === 0;
  return tr;
}

function row(n) {
  let tr = state.rows.get(n.node_id);
  if (!tr) {
    tr = el("tr");
    tr.dataset.id = n.node_id;
    tr.tabIndex = 0;
    tr.addEventListener("click", () => { location.hash = `#/nodes/${encodeURIComponent(tr.dataset.id)}`; });
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") tr.click(); });
    state.rows.set(n.node_id, tr);
  }
  tr.classList.toggle("stale", stale(n));
  COLUMNS.forEach((col, c) => {
    let td = tr.children[c];
    if (!td) {
      td = tr.appendChild(el("td"));
      td.dataset.label = col.label;
      td.className = `c-${col.key}`;
      if (col.facts) td.classList.add("facts");
    }
    const content = col.cell(n);
    const html = typeof content === "string" ? content : content.outerHTML;
    if (td.dataset.html !== html) {
      td.dataset.html = html;
      td.replaceChildren(typeof content === "string" ? document.createTextNode(content) : content);
    }
    if (col.facts) td.title = stale(n) ? `as of its last heartbeat, ${ago(n.last_seen)}` : "";
  });
  return tr;
}

function renderTags() {
  const select = $("tag-filter");
  const tags = [...new Set([...state.nodes.values()].flatMap((n) => n.tags || []))].sort();
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === tags.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(select.options[0], ...tags.map((t) => el("option", { value: t, textContent: t })));
  select.value = tags.includes(chosen) ? chosen : "";
}

function renderHeader() {
  const nodes = [...state.nodes.values()];
  const counts = {};
  for (const n of nodes) counts[n.status] = (counts[n.status] || 0) + 1;
  const ratios = nodes.map((n) => n.uptime_30d).filter((r) => r != null);
  const fleet = ratios.length ? ratios.reduce((a, b) => a + b, 0) / ratios.length : null;
  const held = (key) => nodes.filter((n) => n[key]).map((n) => n.name);
  const names = (list) => (list.length ? `${list.slice(0, 3).join(", ")}${list.length > 3 ? ` and ${list.length - 3} more` : ""}` : "none");
  const maintenance = held("maintenance_until"), silenced = held("silenced_until");
  const card = (label, value, sub, cls) => el("div", { className: `card ${cls || ""}` }, [
    el("div", { className: "card-label", textContent: label }), el("div", { className: "card-value", textContent: value }),
    sub ? el("div", { className: "card-sub", textContent: sub }) : null]);
  const order = ["online", "late", "offline", "stopped", "pending"];
  const statusText = order.filter((s) => counts[s]).map((s) => `${counts[s].toLocaleString()} ${s}`).join(" · ") || "no nodes yet";
  $("fleet-header").replaceChildren(
    card("Nodes", plural(nodes.length, "node"), statusText, counts.offline ? "bad" : ""),
    card("Fleet uptime, 30 days", percent(fleet), ratios.length ? `mean of ${plural(ratios.length, "node")}` : "no history yet"),
    card("In maintenance", maintenance.length.toLocaleString(), names(maintenance)),
    card("Silenced", silenced.length.toLocaleString(), names(silenced)),
  );
}

// ---------------------------------------------------------------- one node
const EVENT_WORDS = {
  offline: "Went offline", recovered: "Back online", stopped: "Stopped cleanly", reboot: "Rebooted",
  check_failed: "Check failing", check_recovered: "Check passing again", services_failed: "Services failing",
  services_recovered: "Services ok again", clock_skew: "Clock off", reminder: "Still offline", pending: "Never heard from",
  flapping: "Checks flapping", flapping_stopped: "Checks steady again", deleted: "Deleted",
};

async function renderDetail() {
  const id = state.detail;
  const week = new Date(nowMs() - 7 * 86400000).toISOString();
  const [node, uptime, { events }] = await Promise.all([
    api("GET", `/api/nodes/${encodeURIComponent(id)}`),
    api("GET", `/api/nodes/${encodeURIComponent(id)}/uptime`),
    api("GET", `/api/events?node=${encodeURIComponent(id)}&limit=1000`),
  ]);
  if (state.detail !== id) return;
  state.detailNode = node;
  $("detail-name").replaceChildren(el("span", { className: `status status-${node.status}`, textContent: node.status }), ` ${node.name}`);
  $("detail-sub").textContent = node.last_seen
    ? `Last heard from ${ago(node.last_seen)} (${localTime(node.last_seen)}) · every ${span(node.interval_secs)}`
    : `Enrolled ${ago(node.enrolled_at)}, never heard from`;
  const badges = [];
  // The outage began with the heartbeat that did not come; down_since is when it was declared.
  const ongoing = uptime.outages.find((o) => !o.end && o.cause !== "stopped");
  const since = ongoing ? ongoing.start : node.down_since;
  if (node.down_since) badges.push(["bad", `Offline since ${localTime(since)} (${ago(since)}); declared ${ago(node.down_since)}`]);
  if (node.maintenance_until) badges.push(["", `In maintenance until ${localTime(node.maintenance_until)}`]);
  if (node.silenced_until) badges.push(["", `Silenced until ${localTime(node.silenced_until)}`]);
  if (node.acked_at) badges.push(["", `Acknowledged ${ago(node.acked_at)}`]);
  $("detail-badges").replaceChildren(...badges.map(([c, t]) => el("span", { className: `badge ${c}`, textContent: t })));
  $("detail-actions").hidden = !operator();
  $("act-ack").hidden = !(node.down_since && !node.acked_at);
  $("act-delete").hidden = !admin();

  const r = uptime.ratios;
  $("detail-ratios").replaceChildren(...[["24 hours", r["24h"]], ["7 days", r["7d"]], ["30 days", r["30d"]], ["90 days", r["90d"]]]
    .map(([label, v]) => el("div", { className: "ratio" }, [el("div", { className: "card-value", textContent: percent(v, 3) }), el("div", { className: "card-label", textContent: label })])));
  $("detail-days").replaceChildren(...uptime.days.map((d) => {
    const cls = d.ratio == null ? "none" : d.ratio >= 0.9995 ? "up" : d.ratio >= 0.95 ? "some" : "down";
    return el("span", { className: `day d-${cls}`, title: `${new Date(d.date + "T12:00:00Z").toLocaleDateString()}: ${d.ratio == null ? "no data" : percent(d.ratio, 3)}` });
  }));
  renderTimeline(uptime.outages, uptime.maintenance, events.filter((e) => e.at >= week));
  renderChecks(node);
  renderFacts(node);
  const recent = events.slice(-100).reverse();
  $("detail-events").replaceChildren(...(recent.length ? recent.map(eventItem) :
    [el("li", { className: "muted", textContent: "Nothing has happened to this node yet." })]));
}

function eventItem(e) {
  return el("li", { className: `event e-${e.kind}` }, [
    el("time", { dateTime: e.at, title: localTime(e.at), textContent: `${localTime(e.at)} · ${ago(e.at)}` }),
    el("strong", { textContent: EVENT_WORDS[e.kind] || e.kind.replace(/_/g, " ") }),
    el("span", { textContent: e.detail }),
    e.held ? el("span", { className: "badge", textContent: `held: ${e.held}` }) : null,
  ]);
}

function renderTimeline(outages, maintenance, events) {
  const end = nowMs(), start = end - 7 * 86400000;
  const at = (ms) => `${(Math.max(0, Math.min(1, (ms - start) / (end - start))) * 100).toFixed(3)}%`;
  const parts = [];
  for (const w of maintenance) {
    const s = Date.parse(w.start), e = Math.min(Date.parse(w.end), end);
    if (e < start || s > end) continue;
    const band = el("span", { className: "seg band", title: `maintenance window ${localTime(w.start)} – ${localTime(w.end)}` });
    band.style.left = at(s);
    band.style.width = `max(3px, calc(${at(e)} - ${at(s)}))`;
    parts.push(band);
  }
  for (let d = 1; d < 7; d++) {
    const tick = el("span", { className: "tick" });
    tick.style.left = at(start + d * 86400000);
    parts.push(tick);
  }
  for (const o of outages) {
    const s = Date.parse(o.start), e = o.end ? Date.parse(o.end) : end;
    if (e < start) continue;
    const seg = el("span", { className: `seg k-${o.cause}`, title: `${o.cause}: ${localTime(o.start)} for ${span(o.duration_secs)}` });
    seg.style.left = at(s);
    seg.style.width = `max(3px, calc(${at(e)} - ${at(s)}))`;
    parts.push(seg);
  }
  for (const ev of events.filter((x) => x.kind === "reboot")) {
    const mark = el("span", { className: "seg k-reboot", title: `rebooted ${localTime(ev.at)}` });
    mark.style.left = at(Date.parse(ev.at));
    parts.push(mark);
  }
  $("detail-timeline").replaceChildren(...parts);
}

function renderChecks(node) {
  const checks = node.checks || [];
  $("detail-checks").replaceChildren(...(checks.length ? checks.map((c) => el("li", { className: c.ok ? "pass" : "fail" }, [
    el("span", { className: "mark-icon", textContent: c.ok ? "✓" : "✗", title: c.ok ? "passing" : "failing" }),
    el("strong", { textContent: c.name }), el("span", { className: "muted", textContent: c.detail })])) :
    [el("li", { className: "muted", textContent: "This node reports no checks." })]));
}

function renderFacts(node) {
  const used = memUsed(node), disk = diskUsed(node);
  const groups = [
    ["System", [["Operating system", node.os], ["Kernel", node.kernel], ["Architecture", node.arch], ["Agent", node.agent_version],
      ["Up for", node.uptime_secs == null ? null : span(node.uptime_secs)], ["Profile", node.os_profile]]],
    ["Resources", [["CPU cores", node.cpu_cores], ["Memory", node.memory_mb == null ? null : `${bytes(node.memory_mb)}${used == null ? "" : `, ${Math.round(used * 100)} % used`}`],
      ["Disk", node.disk_gb == null ? null : `${node.disk_gb} GB${disk == null ? "" : `, ${Math.round(disk * 100)} % used`}`],
      ["Load", node.load ? node.load.map((l) => l.toFixed(2)).join(" · ") : null]]],
    ["Network", [["Hostname", node.hostname], ["Addresses", (node.ip_addresses || (node.ip_address ? [node.ip_address] : [])).join(", ") || null],
      ["Clock", node.clock_skew_secs == null ? null : node.clock_skew_secs === 0 ? "in step" : `${node.clock_skew_secs} s off`]]],
    ["Hearth", [["Node id", node.node_id], ["Enrolled", `${localTime(node.enrolled_at)} (${ago(node.enrolled_at)})`],
      ["Heartbeat every", span(node.interval_secs)], ["Tags", (node.tags || []).join(", ") || "none"], ["Authenticates with", AUTH_LONG[node.auth]]]],
  ];
  const parts = [];
  if (stale(node)) parts.push(el("p", { className: "badge", textContent: `As of its last heartbeat, ${ago(node.last_seen)}` }));
  for (const [title, rows] of groups) {
    const shown = rows.filter(([, v]) => v != null && v !== "");
    if (!shown.length) continue;
    parts.push(el("div", { className: "group" }, [el("h3", { textContent: title }), el("dl", { className: stale(node) ? "stale" : "" },
      shown.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: String(v) })]))]));
  }
  $("detail-facts").replaceChildren(...parts);
}

// ---------------------------------------------------------------- node actions
function ask(title, fields, ok, okLabel) {
  $("action-title").textContent = title;
  $("action-error").textContent = "";
  $("action-ok").textContent = okLabel || "Save";
  $("action-ok").className = okLabel === "Delete" ? "danger" : "";
  $("action-fields").replaceChildren(...fields);
  $("action-dialog").onsubmit = async (event) => {
    event.preventDefault();
    try {
      await ok();
      $("action-dialog").close();
      await refresh();
      await renderDetail().catch(() => {});
    } catch (e) {
      $("action-error").textContent = e.message;
    }
  };
  $("action-dialog").showModal();
}

const field = (label, input) => el("label", {}, [label, input]);
const nodePath = () => `/api/nodes/${encodeURIComponent(state.detail)}`;

function editNode() {
  const n = state.detailNode;
  const name = el("input", { id: "edit-name", value: n.name, maxLength: 64 });
  const tags = el("input", { id: "edit-tags", value: (n.tags || []).join(", ") });
  const interval = el("input", { id: "edit-interval", type: "number", min: 0, value: "", placeholder: `${n.interval_secs} (as the agent says)` });
  const grace = el("input", { id: "edit-grace", type: "number", min: 0, value: "", placeholder: "default" });
  ask(`Edit ${n.name}`, [field("Name", name), field("Tags, comma separated", tags), field("Interval, seconds (0: the agent's own)", interval),
    field("Grace, seconds (0: the default)", grace)], () => {
    const body = { name: name.value.trim(), tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean) };
    if (interval.value !== "") body.interval_secs = Number(interval.value);
    if (grace.value !== "") body.grace_secs = Number(grace.value);
    return api("PUT", nodePath(), body);
  });
}

function silenceNode() {
  const n = state.detailNode;
  const duration = el("select", { id: "silence-duration" }, [["3600", "1 hour"], ["14400", "4 hours"], ["86400", "1 day"], ["604800", "1 week"]]
    .map(([v, t]) => el("option", { value: v, textContent: t })));
  const reason = el("input", { id: "silence-reason", required: true, maxLength: 200 });
  ask(`Silence ${n.name}`, [field("For", duration), field("Reason", reason)],
    () => api("POST", "/api/silences", { node_id: n.node_id, duration_secs: Number(duration.value), reason: reason.value }), "Silence");
}

function scheduleMaintenance() {
  const n = state.detailNode;
  const start = el("input", { id: "maint-start", type: "datetime-local", value: localInput(nowMs()) });
  const end = el("input", { id: "maint-end", type: "datetime-local", value: localInput(nowMs() + 2 * 3600000) });
  const reason = el("input", { id: "maint-reason", required: true, maxLength: 200 });
  ask(`Maintenance for ${n.name}`, [field("Start", start), field("End", end), field("Reason", reason)],
    () => api("POST", "/api/maintenance", { reason: reason.value, node_ids: [n.node_id], start: isoFromLocal(start.value), end: isoFromLocal(end.value) }),
    "Schedule");
}

function acknowledge() {
  const n = state.detailNode;
  ask(`Acknowledge ${n.name}`, [el("p", { textContent: "No reminders about it until it recovers; its recovery is still told." })],
    () => api("POST", `${nodePath()}/ack`, {}), "Acknowledge");
}

function deleteNode() {
  const n = state.detailNode;
  ask(`Delete ${n.name}?`, [el("p", { textContent: "Its history goes with it, and its agent token stops working: the host must enrol again to come back." })],
    async () => {
      await api("DELETE", nodePath());
      state.nodes.delete(n.node_id);
      location.hash = "#/";
    }, "Delete");
}

function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function isoFromLocal(value) {
  if (!value) return undefined;
  return new Date(value).toISOString();
}

// ---------------------------------------------------------------- maintenance page
async function renderMaintenance() {
  const [{ windows }, { silences }] = await Promise.all([api("GET", "/api/maintenance"), api("GET", "/api/silences")]);
  const remove = (path) => el("button", { type: "button", className: "danger small operator-only", hidden: !operator(), textContent: "Remove",
    onclick: async () => { await api("DELETE", path); await renderMaintenance(); await refresh(); } });
  const when = (w) => (w.cron ? `${w.cron} (${w.time_zone}), ${span(w.duration_secs)}` : `${localTime(w.start)} – ${localTime(w.end)}`);
  const named = (ids) => ids.slice(0, 3).map((id) => (state.nodes.get(id) || {}).name || id).join(", ") + (ids.length > 3 ? ` and ${ids.length - 3} more` : "");
  const covers = (w) => (w.node_ids.length ? named(w.node_ids) : w.tags.length ? `nodes tagged ${w.tags.join(", ")}` : "every node");
  $("windows").tBodies[0].replaceChildren(...(windows.length ? windows.map((w) => el("tr", {}, [
    el("td", { textContent: w.reason }), el("td", { textContent: when(w) }), el("td", { textContent: covers(w) }),
    el("td", { textContent: w.active ? "in force now" : w.next_start ? `next ${localTime(w.next_start)}` : "over" }),
    el("td", {}, [remove(`/api/maintenance/${w.id}`)])])) : [el("tr", {}, [el("td", { colSpan: 5, className: "muted", textContent: "No maintenance windows." })])]));
  const name = (id) => (state.nodes.get(id) || {}).name || id;
  $("silences").tBodies[0].replaceChildren(...(silences.length ? silences.map((s) => el("tr", {}, [
    el("td", { textContent: s.node_id ? name(s.node_id) : `tag ${s.tag}` }), el("td", { textContent: `${localTime(s.until)} (${ago(s.until)})` }),
    el("td", { textContent: s.reason }), el("td", { textContent: s.created_by }),
    el("td", {}, [remove(`/api/silences/${s.id}`)])])) : [el("tr", {}, [el("td", { colSpan: 5, className: "muted", textContent: "Nothing is silenced." })])]));
}

async function addWindow(event) {
  event.preventDefault();
  $("window-error").textContent = "";
  const recurring = document.querySelector('input[name="win-kind"]:checked').value === "cron";
  const tags = $("win-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  const body = { reason: $("win-reason").value, tags };
  if (recurring) Object.assign(body, { cron: $("win-expr").value.trim(), duration_secs: Number($("win-minutes").value) * 60, time_zone: $("win-zone").value.trim() || "UTC" });
  else Object.assign(body, { start: isoFromLocal($("win-start").value), end: isoFromLocal($("win-end").value) });
  try {
    await api("POST", "/api/maintenance", body);
    $("window-form").reset();
    await renderMaintenance();
  } catch (e) {
    $("window-error").textContent = e.message;
  }
}

async function addSilence(event) {
  event.preventDefault();
  $("silence-error").textContent = "";
  try {
    await api("POST", "/api/silences", { tag: $("sil-tag").value.trim(), duration_secs: Number($("sil-duration").value), reason: $("sil-reason").value });
    $("silence-form").reset();
    await renderMaintenance();
  } catch (e) {
    $("silence-error").textContent = e.message;
  }
}

// ---------------------------------------------------------------- jobs page
// One row per job, with a strip of its recent runs, each run's log a click away.
async function refreshJobs() {
  try {
    state.jobs = (await api("GET", "/api/jobs")).jobs.sort(jobOrder);
    renderJobs();
  } catch (e) {
    if (state.me) $("jobs-summary").textContent = `Could not refresh: ${e.message}`;
  }
}

function schedule(j) {
  if (j.cron) return `${j.cron} (${j.tz || "UTC"})`;
  const s = j.period_secs;
  if (s % 86400 === 0) return s === 86400 ? "daily" : `every ${s / 86400} d`;
  if (s % 3600 === 0) return s === 3600 ? "hourly" : `every ${s / 3600} h`;
  return `every ${span(s)}`;
}

// A run's length: tenths of a second under 10 s, else as `span` says it.
function took(ms) {
  if (ms == null) return "–";
  return ms < 10000 ? `${(ms / 1000).toFixed(1)} s` : span(Math.round(ms / 1000));
}

// When the next success is due: "in 3 h", or "due 27 min ago" once it is late.
function due(j) {
  if (j.status === "paused") return "paused";
  if (!j.next_expected) return "–";
  return Date.parse(j.next_expected) > nowMs() ? ago(j.next_expected) : `due ${ago(j.next_expected)}`;
}

// Problems first, as on the fleet page; then by name.
const JOB_RANK = { down: 0, grace: 1, started: 2, new: 3, up: 4, paused: 5 };
const jobOrder = (a, b) => (JOB_RANK[a.status] ?? 9) - (JOB_RANK[b.status] ?? 9) || a.name.localeCompare(b.name);

function runLabel(p) {
  const lasted = p.duration_ms != null ? `, took ${took(p.duration_ms)}` : "";
  const exit = p.exit_status != null ? `, exit status ${p.exit_status}` : "";
  return `${p.kind} at ${localTime(p.at)}${exit}${lasted}`;
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

const JOB_COLUMNS = [
  ["status", (j) => el("span", { className: `status status-${j.status}`, textContent: j.status })],
  ["name", (j) => el("span", { textContent: j.name, title: j.ping_url ? `Ping URL: ${j.ping_url}` : "" })],
  ["schedule", schedule],
  ["last", (j) => (j.last_ping ? `${ago(j.last_ping)} (${j.last_ping_kind})` : "never")],
  ["took", (j) => took(j.last_duration_ms)],
  ["next", due],
  ["runs", strip],
  ["tags", (j) => el("span", { className: "tags" }, (j.tags || []).map((t) => el("span", { className: "tag", textContent: t })))],
];

function renderJobs() {
  const tbody = document.querySelector("#jobs tbody");
  const seen = new Set();
  state.jobs.forEach((j, i) => {
    seen.add(j.id);
    let tr = state.jobRows.get(j.id);
    if (!tr) {
      tr = el("tr");
      tr.dataset.job = j.id;
      state.jobRows.set(j.id, tr);
    }
    JOB_COLUMNS.forEach(([key, cell], c) => {
      const td = tr.children[c] || tr.appendChild(el("td", { className: `j-${key}` }));
      const content = cell(j);
      const html = typeof content === "string" ? content : content.outerHTML;
      if (td.dataset.html !== html) {
        td.dataset.html = html;
        td.replaceChildren(typeof content === "string" ? document.createTextNode(content) : content);
      }
    });
    const next = tr.querySelector(".j-next");
    next.title = j.next_expected && j.status !== "paused" ? localTime(j.next_expected) : "";
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
  });
  for (const [id, tr] of state.jobRows) {
    if (!seen.has(id)) {
      tr.remove();
      state.jobRows.delete(id);
    }
  }
  const counts = {};
  for (const j of state.jobs) counts[j.status] = (counts[j.status] || 0) + 1;
  const order = ["down", "grace", "started", "up", "new", "paused"];
  const parts = order.filter((s) => counts[s]).map((s) => `${counts[s].toLocaleString()} ${s}`);
  $("jobs-summary").textContent = `${plural(state.jobs.length, "job")}${parts.length ? `: ${parts.join(" · ")}` : ""}`;
  $("jobs-empty").hidden = state.jobs.length > 0;
  $("jobs").hidden = state.jobs.length === 0;
}

async function openLog(job, n) {
  try {
    const p = await api("GET", `/api/jobs/${encodeURIComponent(job)}/pings/${encodeURIComponent(n)}`);
    const name = (state.jobs.find((j) => j.id === job) || { name: job }).name;
    $("log-title").textContent = `${name}: ${p.kind}`;
    const exit = p.exit_status != null ? `, exit status ${p.exit_status}` : "";
    const cut = p.truncated ? `; the first ${p.log.length.toLocaleString()} of ${p.log_bytes.toLocaleString()} bytes were kept` : "";
    $("log-meta").textContent = `${localTime(p.at)} (${ago(p.at)})${exit}${cut}`;
    $("log-text").textContent = p.log || "(no log: the ping had no body)";
  } catch (e) {
    $("log-title").textContent = "Log";
    $("log-meta").textContent = e.message;
    $("log-text").textContent = "";
  }
  $("log-dialog").showModal();
}

// ---------------------------------------------------------------- adding a node
function loopback(host) {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || /^127\./.test(h);
}

function fleetChosen() {
  const fleet = $("add-fleet").checked;
  $("add-uses-label").hidden = !fleet;
  $("mint").textContent = fleet ? "Create the fleet key" : "Create the install command";
  $("add-result").hidden = true;
}

async function openAdd() {
  fleetChosen();
  $("add-error").textContent = "";
  $("add-warnings").replaceChildren();
  $("add-dialog").showModal();
  try {
    const about = await api("GET", "/api/collector");
    const warnings = [];
    if (!about.agent_binaries) {
      warnings.push("This collector serves no agent binaries (it runs without --agent-dir), so the install command will fail on the new host. Start it with --agent-dir DIR (the directory `cargo xtask dist` writes).");
    }
    const url = new URL(about.public_url || location.origin);
    if (loopback(url.hostname)) {
      warnings.push(`The install command will point at ${url.origin}, a loopback address the new host cannot reach. Open the dashboard by the address hosts use, or start the collector with --public-url.`);
    }
    $("add-warnings").replaceChildren(...warnings.map((w) => el("p", { className: "warning", textContent: w })));
  } catch (e) {
    $("add-error").textContent = e.message;
  }
}

async function mint() {
  $("add-error").textContent = "";
  const name = $("add-name").value.trim();
  const tags = $("add-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  const fleet = $("add-fleet").checked;
  try {
    const minted = fleet
      ? await api("POST", "/api/fleet-keys", { name: name || "fleet", tags, max_uses: Number($("add-uses").value) })
      : await api("POST", "/api/enrollment-tokens", { ...(name && { name }), tags });
    $("install-command").textContent = minted.install_command;
    $("add-expires").textContent = localTime(minted.expires_at);
    $("add-until").textContent = minted.expires_at ? `until ${localTime(minted.expires_at)}` : "until it is revoked";
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

// ---------------------------------------------------------------- wiring
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
  for (const id of ["search", "status-filter", "tag-filter"]) $(id).addEventListener("input", drawTable);
  $("sort-select").replaceChildren(...SORTS.map((s) => el("option", { value: s.key, textContent: `Sort: ${s.label}` })));
  $("sort-select").addEventListener("input", () => { state.sort = { key: $("sort-select").value, dir: 1 }; drawTable(); });
  let pending = false;
  const onScroll = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; placeRows(); });
  };
  window.addEventListener("scroll", onScroll, { passive: true });
  window.addEventListener("resize", onScroll);
  window.addEventListener("hashchange", route);
  $("add-node").addEventListener("click", openAdd);
  $("mint").addEventListener("click", mint);
  $("add-fleet").addEventListener("change", fleetChosen);
  document.querySelector("#jobs tbody").addEventListener("click", (event) => {
    const run = event.target.closest(".run");
    if (run) openLog(run.dataset.job, run.dataset.n);
  });
  $("copy").addEventListener("click", copyCommand);
  $("act-edit").addEventListener("click", editNode);
  $("act-silence").addEventListener("click", silenceNode);
  $("act-ack").addEventListener("click", acknowledge);
  $("act-maintenance").addEventListener("click", scheduleMaintenance);
  $("act-delete").addEventListener("click", deleteNode);
  $("action-cancel").addEventListener("click", () => $("action-dialog").close());
  $("window-form").addEventListener("submit", addWindow);
  $("silence-form").addEventListener("submit", addSilence);
  $("win-zone").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  for (const radio of document.querySelectorAll('input[name="win-kind"]')) {
    radio.addEventListener("change", () => {
      const recurring = document.querySelector('input[name="win-kind"]:checked').value === "cron";
      $("win-cron").hidden = !recurring;
      $("win-once").hidden = recurring;
    });
  }
  fetch("/api/auth/me", { credentials: "same-origin" })
    .then((res) => (res.ok ? res.json().then(loggedIn) : showLogin()))
    .catch(() => showLogin("The collector cannot be reached."));
});
