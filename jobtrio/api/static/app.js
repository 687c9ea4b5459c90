// jobtrio dashboard: plain JavaScript, no build step, no CDN.
//
// Everything it shows comes from the node's REST API (paged: never the whole
// job list) and from the live event stream (/api/v1/events), which it follows
// from the last event id it saw, reconnecting by itself. With auth on, the API
// answers 401 and the page asks for a login (POST /auth/login -> {token, role,
// expires_at}); the token goes with every call (Authorization: Bearer) and on
// the stream (?token=, since a browser cannot set headers on a websocket).
// Buttons the role may not use are hidden.
"use strict";

const PAGE_SIZE = 50;
const EVENTS_SHOWN = 50;
const RATE_SECONDS = 120;
const STATES = ["pending", "running", "scheduled", "retrying", "waiting"];

const state = {
  token: sessionStorage.getItem("jobtrio.token"),
  role: sessionStorage.getItem("jobtrio.role"),
  lastId: null,
  socket: null,
  backoff: 500,
  cursors: [null], // cursor of each page seen, to go back
  page: 0,
  nextCursor: null,
  filters: { status: "", type: "" },
  rows: new Map(), // job id -> its row on the page shown
  detailId: null,
  started: false,
  pending: [], // events waiting for the next frame
  completed: new Array(RATE_SECONDS).fill(0),
  failed: new Array(RATE_SECONDS).fill(0),
  second: Math.floor(Date.now() / 1000),
  depths: [],
  timers: {},
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child instanceof Node) node.append(child);
    else node.append(child === null || child === undefined ? "" : String(child));
  }
  return node;
}

function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleTimeString();
}

// -- the API ---------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) {
    showLogin("Log in to continue.");
    throw new Unauthorized("login required");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : "HTTP " + response.status;
    throw new Error(message);
  }
  return data;
}

// -- login -----------------------------------------------------------------------

function showLogin(message) {
  closeStream();
  $("main").classList.add("hidden");
  $("login").classList.remove("hidden");
  $("login-error").textContent = message || "";
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const reply = await fetch("/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username: $("login-user").value, password: $("login-password").value }),
    });
    const data = await reply.json().catch(() => null);
    if (!reply.ok || !data || !data.token) {
      const message = data && data.error ? data.error.message : "login refused (HTTP " + reply.status + ")";
      $("login-error").textContent = message;
      return;
    }
    state.token = data.token;
    state.role = data.role || null;
    sessionStorage.setItem("jobtrio.token", state.token);
    if (state.role) sessionStorage.setItem("jobtrio.role", state.role);
    $("login-password").value = "";
    start();
  } catch (error) {
    $("login-error").textContent = String(error.message || error);
  }
}

function logout() {
  state.token = null;
  state.role = null;
  sessionStorage.removeItem("jobtrio.token");
  sessionStorage.removeItem("jobtrio.role");
  showLogin("Logged out.");
  forgetShown();
}

// What one login saw is not the next one's to see: a worker's or an admin's page lists
// every job, and until the next user's first page came back it stood there under their
// role, with the stream resuming from the last event the previous token was shown.
function forgetShown() {
  for (const key of Object.keys(state.timers)) clearTimeout(state.timers[key]);
  state.timers = {};
  state.pending = [];
  state.lastId = null;
  state.rows.clear();
  state.cursors = [null];
  state.page = 0;
  state.nextCursor = null;
  state.detailId = null;
  state.completed.fill(0);
  state.failed.fill(0);
  $("jobs").replaceChildren();
  $("events").replaceChildren();
  $("members").replaceChildren();
  $("detail").classList.add("hidden");
  for (const id of ["detail-id", "detail-payload", "detail-result", "detail-message"]) $(id).textContent = "";
}

// admin and user may cancel and retry; a worker token may only look
function mayChangeJobs() {
  return state.role === null || state.role === "admin" || state.role === "user";
}

function applyRole() {
  $("who").textContent = state.role ? "role: " + state.role : "";
  $("logout").classList.toggle("hidden", !state.token);
  for (const id of ["cancel", "retry"]) $(id).classList.toggle("hidden", !mayChangeJobs());
}

// -- the cluster, schedules, elections -------------------------------------------

async function loadCluster() {
  const c = await api("/api/v1/cluster");
  $("node").textContent = "node " + c.node_id;
  $("leader").textContent = c.leader || "none";
  $("algorithm").textContent = c.algorithm;
  $("term").textContent = c.term === null ? "-" : c.term;
  $("epoch").textContent = c.fencing_epoch === null ? "-" : c.fencing_epoch;
  $("storage").textContent = c.storage;
  const body = $("members");
  body.replaceChildren(
    ...c.members.map((m) =>
      el(
        "tr",
        { "data-node-id": m.node_id },
        el("td", {}, m.node_id + (m.is_leader ? " ★" : "") + (m.self ? " (this node)" : "")),
        el("td", { class: "status " + m.state }, m.state),
        el("td", {}, m.worker_count === null ? "" : m.worker_count),
        el("td", {}, time(m.last_contact)),
      ),
    ),
  );
}

async function loadSchedules() {
  const data = await api("/api/v1/schedules");
  const items = data.schedules || [];
  $("schedules").replaceChildren(
    ...items.map((s) =>
      el(
        "tr",
        {},
        el("td", {}, s.name),
        el("td", {}, s.cron ? s.cron : "every " + s.every + "s"),
        el("td", {}, s.job && s.job.type),
        el("td", {}, time(s.next_tick)),
      ),
    ),
  );
  if (!items.length) $("schedules").append(el("tr", {}, el("td", { colSpan: 4, class: "muted" }, "none")));
}

async function loadElections() {
  const data = await api("/api/v1/elections?limit=10");
  $("elections").replaceChildren(
    ...data.elections.map((e) =>
      el("tr", {}, el("td", {}, time(e.at)), el("td", {}, e.leader), el("td", {}, e.term), el("td", {}, e.epoch), el("td", {}, e.algorithm)),
    ),
  );
}

async function loadDepths() {
  const stats = await api("/api/v1/stats");
  const queue = stats.queue || {};
  state.depths.push(queue);
  if (state.depths.length > 60) state.depths.shift();
  $("depth-now").textContent = STATES.map((s) => s + " " + (queue[s] || 0)).join(", ");
  drawDepth();
  showQueues(stats.queues || {}, stats.unserved || []);
}

// the named queues (pending, paused) and what no live node can take: "no worker for type X"
function showQueues(queues, unserved) {
  const names = Object.keys(queues).sort();
  $("queues").replaceChildren(
    ...names.map((name) =>
      el(
        "tr",
        { "data-queue": name },
        el("td", {}, name),
        el("td", {}, queues[name].pending),
        el("td", { class: queues[name].paused ? "paused" : "" }, queues[name].paused ? "paused" : "running"),
      ),
    ),
  );
  if (!names.length) $("queues").append(el("tr", {}, el("td", { colSpan: 3, class: "muted" }, "none waiting")));
  $("unserved").replaceChildren(
    ...unserved.map((u) => el("li", { class: "failed" }, u.pending + " in " + u.queue + ": " + u.reason)),
  );
}

// -- jobs ------------------------------------------------------------------------

function jobsQuery(cursor) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.filters.status) params.set("status", state.filters.status);
  if (state.filters.type) params.set("type", state.filters.type);
  if (cursor) params.set("cursor", cursor);
  return "/api/v1/jobs?" + params.toString();
}

// a progress report (job.progress) as "40% resized 4/10"; "" when there is none
function progressLabel(progress) {
  if (!progress || typeof progress.fraction !== "number") return "";
  const pct = Math.round(progress.fraction * 100) + "%";
  return progress.message ? pct + " " + progress.message : pct;
}

function statusLabel(status, progress) {
  const label = status === "running" ? progressLabel(progress) : "";
  return label ? status + " " + label : status;
}

function jobRow(job) {
  const row = el(
    "tr",
    { "data-job-id": job.id },
    el("td", { class: "id" }, job.id),
    el("td", { class: "type" }, job.type),
    el("td", { class: "status " + job.status }, statusLabel(job.status, job.progress)),
    el("td", { class: "priority" }, job.priority),
    el("td", { class: "attempts" }, job.attempt !== undefined ? job.attempt : (job.attempts || []).length),
    el("td", { class: "updated" }, time(job.updated_at || job.at)),
  );
  row.addEventListener("click", () => openJob(job.id || job.job_id));
  return row;
}

async function loadJobs() {
  const page = await api(jobsQuery(state.cursors[state.page]));
  state.nextCursor = page.next_cursor;
  state.rows.clear();
  const rows = page.jobs.map((job) => {
    const row = jobRow(job);
    state.rows.set(job.id, row);
    return row;
  });
  $("jobs").replaceChildren(...rows);
  if (!rows.length) $("jobs").append(el("tr", {}, el("td", { colSpan: 6, class: "muted" }, "no jobs")));
  $("page").textContent = "page " + (state.page + 1);
  $("prev").disabled = state.page === 0;
  $("next").disabled = !state.nextCursor;
}

function setRowStatus(row, event) {
  const cell = row.querySelector(".status");
  cell.textContent = statusLabel(event.status, event.progress);
  cell.className = "status " + event.status;
  row.querySelector(".attempts").textContent = event.attempt;
  row.querySelector(".updated").textContent = time(event.at);
  row.classList.remove("flash");
  void row.offsetWidth; // restart the animation
  row.classList.add("flash");
}

function showsNewJob(event) {
  // only the newest page, and only if the job passes its filters
  if (state.page !== 0) return false;
  if (state.filters.status && state.filters.status !== event.status) return false;
  return !(state.filters.type && state.filters.type !== event.type);
}

function onJobEvent(event) {
  const row = state.rows.get(event.job_id);
  if (row) {
    setRowStatus(row, event);
  } else if (event.kind === "job.submitted" && showsNewJob(event)) {
    const fresh = jobRow({ ...event, id: event.job_id });
    state.rows.set(event.job_id, fresh);
    const body = $("jobs");
    const empty = body.querySelector("td.muted");
    if (empty) empty.parentElement.remove();
    body.prepend(fresh);
    while (body.children.length > PAGE_SIZE) {
      const last = body.lastElementChild;
      state.rows.delete(last.getAttribute("data-job-id"));
      last.remove();
    }
  }
  if (event.job_id === state.detailId) later("detail", 150, () => openJob(state.detailId));
  if (event.kind === "job.completed") countRate("completed");
  if (event.kind === "job.failed") countRate("failed");
}

// -- one job ---------------------------------------------------------------------

async function openJob(id) {
  if (!id) return;
  state.detailId = id;
  const job = await api("/api/v1/jobs/" + encodeURIComponent(id));
  $("detail").classList.remove("hidden");
  $("detail-id").textContent = job.id;
  $("detail-status").textContent = job.status;
  $("detail-status").className = "status " + job.status;
  $("detail-type").textContent = job.type;
  $("detail-priority").textContent = job.priority;
  $("detail-retries").textContent = job.retry_count + " of " + job.max_retries;
  $("detail-created").textContent = job.created_at;
  $("detail-node").textContent = job.worker_id || job.node_id || "";
  $("detail-error").textContent = job.error || "";
  $("detail-progress").textContent = progressLabel(job.progress);
  $("detail-payload").textContent = JSON.stringify(job.payload, null, 2);
  $("detail-result").textContent = job.result === null ? "" : JSON.stringify(job.result, null, 2);
  $("attempts").replaceChildren(
    ...(job.attempts || []).map((a, i) =>
      el(
        "tr",
        {},
        el("td", {}, i + 1),
        el("td", {}, a.node_id),
        el("td", {}, a.worker_id),
        el("td", {}, time(a.started_at)),
        el("td", {}, time(a.ended_at)),
        el("td", { class: "status " + (a.outcome || "") }, a.outcome || "running"),
        el("td", {}, a.error || ""),
      ),
    ),
  );
  const open = ["pending", "scheduled", "running", "retrying", "waiting"].includes(job.status);
  $("cancel").disabled = !open;
  $("retry").disabled = !["failed", "cancelled"].includes(job.status);
  applyRole();
}

async function jobAction(method, suffix) {
  const id = state.detailId;
  $("detail-message").textContent = "";
  try {
    await api("/api/v1/jobs/" + encodeURIComponent(id) + suffix, { method });
    await openJob(id);
  } catch (error) {
    if (!(error instanceof Unauthorized)) $("detail-message").textContent = error.message;
  }
}

// -- the event stream ------------------------------------------------------------

function setLive(on, text) {
  const badge = $("live");
  badge.textContent = text;
  badge.className = "badge " + (on ? "on" : "off");
}

function closeStream() {
  if (state.socket) {
    state.socket.onclose = null;
    state.socket.close();
    state.socket = null;
  }
}

function connect() {
  closeStream();
  const params = new URLSearchParams({ lines: "true" }); // several events a message, one a line
  if (state.lastId) params.set("since", state.lastId);
  if (state.token) params.set("token", state.token);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = params.toString();
  const socket = new WebSocket(scheme + "//" + location.host + "/api/v1/events" + (query ? "?" + query : ""));
  state.socket = socket;
  socket.onmessage = (message) => {
    for (const line of message.data.split("\n")) {
      const event = JSON.parse(line);
      if (event.id) state.lastId = event.id;
      if (event.kind === "stream.ready") {
        state.backoff = 500;
        $("scope").textContent = event.scope === "cluster" ? "whole cluster" : "this node";
        setLive(true, "live");
        continue;
      }
      state.pending.push(event);
      if (state.pending.length === 1) requestAnimationFrame(flushEvents);
    }
  };
  socket.onclose = (close) => {
    state.socket = null;
    setLive(false, "reconnecting");
    // 4001: we were too slow; 1001: the node stops; a refused handshake (401) or the network
    // show up as 1006. Ask the API first (it shows the login form on 401), then resume from lastId.
    setTimeout(reconnect, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 10000);
  };
}

async function reconnect() {
  try {
    await api("/api/v1/leader");
  } catch (error) {
    if (error instanceof Unauthorized) return; // the login form is up; start() reconnects
  }
  connect();
}

function flushEvents() {
  const events = state.pending;
  state.pending = [];
  const list = $("events");
  for (const event of events) {
    if (event.kind === "stream.gap") {
      later("jobs", 0, () => loadJobs().catch(() => {}));
    } else if (event.kind && event.kind.startsWith("job.")) {
      onJobEvent(event);
    } else if (event.kind && (event.kind.startsWith("leader.") || event.kind.startsWith("member."))) {
      later("cluster", 300, () => loadCluster().catch(() => {}));
      later("elections", 300, () => loadElections().catch(() => {}));
    } else if (event.kind && event.kind.startsWith("schedule.")) {
      later("schedules", 300, () => loadSchedules().catch(() => {}));
    }
  }
  for (const event of events.slice(-EVENTS_SHOWN)) {
    const what = event.job_id ? event.job_id + " " + (event.type || "") + " " + (event.status || "") : event.message || event.leader || event.member || event.backend || "";
    list.prepend(el("li", {}, time(event.at) + "  " + event.kind + "  " + (event.node || "") + "  " + what));
  }
  while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
}

// run fn once, delay ms after the last call for the same key
function later(key, delay, fn) {
  clearTimeout(state.timers[key]);
  state.timers[key] = setTimeout(fn, delay);
}

// -- charts ----------------------------------------------------------------------

function tick() {
  const now = Math.floor(Date.now() / 1000);
  while (state.second < now) {
    state.second += 1;
    state.completed.push(0);
    state.completed.shift();
    state.failed.push(0);
    state.failed.shift();
  }
}

function countRate(which) {
  tick();
  state[which][RATE_SECONDS - 1] += 1;
}

function drawLines(canvas, series) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  ctx.fillStyle = "#6b7484";
  ctx.font = "11px sans-serif";
  ctx.fillText(String(max), 4, 12);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.values.forEach((v, i) => {
      const x = (i / Math.max(1, s.values.length - 1)) * (w - 2) + 1;
      const y = h - 2 - (v / max) * (h - 18);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function drawThroughput() {
  tick();
  const recent = state.completed.slice(-5).reduce((a, b) => a + b, 0) + state.failed.slice(-5).reduce((a, b) => a + b, 0);
  $("rate").textContent = (recent / 5).toFixed(1) + " jobs/s";
  drawLines($("throughput"), [
    { values: state.completed, color: css("--completed") },
    { values: state.failed, color: css("--failed") },
  ]);
}

function drawDepth() {
  drawLines(
    $("depth"),
    STATES.map((s) => ({ values: state.depths.map((d) => d[s] || 0), color: css("--" + s) })),
  );
}

// -- start -----------------------------------------------------------------------

function every(ms, fn) {
  fn();
  return setInterval(fn, ms);
}

// The cluster view (members, epochs) is for admins; other roles see the leader only.
async function loadOverview() {
  if (state.role && state.role !== "admin") {
    const l = await api("/api/v1/leader");
    $("node").textContent = "node " + l.node_id;
    $("leader").textContent = l.leader || "none";
    $("algorithm").textContent = l.algorithm;
    $("term").textContent = l.term === null ? "-" : l.term;
    $("members").replaceChildren(el("tr", {}, el("td", { colSpan: 4, class: "muted" }, "members: admins only")));
    return;
  }
  await loadCluster();
}

async function start() {
  try {
    await loadOverview();
  } catch (error) {
    if (!(error instanceof Unauthorized)) $("node").textContent = "cannot reach the API: " + error.message;
    return;
  }
  $("login").classList.add("hidden");
  $("main").classList.remove("hidden");
  applyRole();
  connect();
  await loadJobs().catch(() => {});
  if (state.started) return;
  state.started = true;
  loadSchedules().catch(() => {});
  loadElections().catch(() => {});
  every(2000, () => loadDepths().catch(() => {}));
  every(5000, () => loadOverview().catch(() => {}));
  every(1000, drawThroughput);
}

$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.filters = { status: $("filter-status").value, type: $("filter-type").value.trim() };
  state.cursors = [null];
  state.page = 0;
  loadJobs().catch(() => {});
});
$("next").addEventListener("click", () => {
  if (!state.nextCursor) return;
  state.cursors[state.page + 1] = state.nextCursor;
  state.page += 1;
  loadJobs().catch(() => {});
});
$("prev").addEventListener("click", () => {
  if (state.page === 0) return;
  state.page -= 1;
  loadJobs().catch(() => {});
});
$("cancel").addEventListener("click", () => jobAction("DELETE", ""));
$("retry").addEventListener("click", () => jobAction("POST", "/retry"));
$("close-detail").addEventListener("click", () => {
  state.detailId = null;
  $("detail").classList.add("hidden");
});
start();
