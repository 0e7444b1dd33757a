// SMSA operator dashboard: plain JavaScript, no build step.
// The API key lives in sessionStorage (this tab only) and goes out as a Bearer header.
// The live feed uses EventSource, which cannot send headers: it authenticates with a
// short-lived token from POST /api/v1/events/stream-token and resumes after the last event id.
"use strict";

const API = "/api/v1";
const KEY = "smsa.key";
const FEED_MAX = 200;
// Acknowledgements of every credit-state command would drown the feed.
const FEED_EXCLUDE = "exclude=command_ack";
const state = { lastEventId: 0, source: null, refreshTimer: null, meters: new Map() };

const $ = (sel) => document.querySelector(sel);

function key() { return sessionStorage.getItem(KEY); }

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + key() }, options.headers || {});
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, Object.assign({}, options, { headers }));
  if (response.status === 401) { signOut("Key refused (401)."); throw new Error("401"); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail
      : body.detail.map((d) => d.loc.join(".") + ": " + d.msg).join("; ")) : response.statusText;
    throw new Error(response.status + " " + detail);
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function timeOf(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour12: false });
}

function money(value) {
  if (value === null || value === undefined) return el("span", { class: "muted" }, "–");
  return el("span", { class: value.startsWith("-") ? "neg" : "" }, value);
}

// ---- meters -------------------------------------------------------------------------------

function meterRow(m) {
  const relay = el("span", {}, el("span", { class: "badge " + m.relay }, m.relay),
    m.pending_command ? el("span", { class: "badge pending", "data-pending": m.pending_command,
      title: "the last disconnect/reconnect is not applied yet" },
    "command " + m.pending_command) : "");
  const online = el("span", {}, el("span", { class: "dot" + (m.online ? " up" : "") }),
    m.online ? "online" : "offline");
  const kwh = m.import_wh === null ? "–" : (m.import_wh / 1000).toFixed(3);
  const actions = el("td", { class: "actions" },
    el("button", { type: "button", class: "small danger", "data-action": "disconnect",
      onclick: () => command(m.id, "disconnect") }, "Disconnect"), " ",
    el("button", { type: "button", class: "small secondary", "data-action": "reconnect",
      onclick: () => command(m.id, "reconnect") }, "Reconnect"));
  return el("tr", { "data-meter": m.id },
    el("td", {}, el("strong", {}, m.id)), el("td", {}, m.gateway), el("td", {}, m.customer ?? "–"),
    el("td", { class: "relay" }, relay), el("td", { class: "online" }, online),
    el("td", { class: "num" }, money(m.balance)), el("td", { class: "num" }, kwh),
    el("td", { class: "muted" }, timeOf(m.last_seen_at)), actions);
}

async function loadMeters() {
  const meters = await api("/meters");
  const body = $("#meters tbody");
  body.replaceChildren(...(meters.length ? meters.map(meterRow)
    : [el("tr", { class: "empty" }, el("td", { colspan: 9 }, "No meters yet."))]));
  $("#stat-meters").textContent = meters.length;
  $("#stat-online").textContent = meters.filter((m) => m.online).length;
  $("#stat-off").textContent = meters.filter((m) => m.relay === "off").length;
}

async function command(meterId, action) {
  const reason = window.prompt(`Reason to ${action} meter ${meterId}:`);
  if (!reason) return;
  try {
    const answer = await api(`/meters/${encodeURIComponent(meterId)}/${action}`,
      { method: "POST", body: JSON.stringify({ reason }) });
    flash(`${action} ${meterId}: command ${answer.command_id} ${answer.status}`);
  } catch (err) { flash(String(err.message || err), true); }
}

function flash(text, bad = false) {
  const status = $("#who-status");
  status.textContent = text;
  status.classList.toggle("error", bad);
}

// ---- providers and ledger ----------------------------------------------------------------

async function loadProviders() {
  const providers = await api("/providers");
  const body = $("#providers tbody");
  body.replaceChildren(...(providers.length ? providers.map((p) => el("tr", { "data-provider": p.id },
    el("td", {}, el("strong", {}, p.id), " ", el("span", { class: "muted small" }, p.name)),
    el("td", {}, p.tier), el("td", { class: "num" }, money(p.balance))))
    : [el("tr", { class: "empty" }, el("td", { colspan: 3 }, "No providers yet."))]));
  // Sum in integer minor units: decimal strings, never floats.
  const exp = Math.max(0, ...providers.map((p) => (p.balance.split(".")[1] || "").length));
  const total = providers.reduce((sum, p) => {
    const [whole, frac = ""] = p.balance.replace("-", "").split(".");
    const minor = BigInt(whole + frac.padEnd(exp, "0"));
    return sum + (p.balance.startsWith("-") ? -minor : minor);
  }, 0n);
  const neg = total < 0n; const digits = (neg ? -total : total).toString().padStart(exp + 1, "0");
  $("#providers-total").textContent = (neg ? "-" : "") +
    (exp ? digits.slice(0, -exp) + "." + digits.slice(-exp) : digits);
}

async function loadLedger() {
  const report = await api("/ledger/check");
  const node = $("#stat-ledger");
  node.textContent = report.ok ? "balanced" : "VIOLATED";
  node.className = "value " + (report.ok ? "" : "neg");
}

async function refresh() {
  try { await Promise.all([loadMeters(), loadProviders(), loadLedger()]); }
  catch (err) { if (err.message !== "401") flash(String(err.message || err), true); }
}

function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refresh(); }, 300);
}

// ---- live events -----------------------------------------------------------------------

function addEvent(ev, fresh) {
  const feed = $("#feed");
  feed.querySelector(".empty")?.remove();
  const item = el("li", { class: "k-" + ev.kind + (fresh ? " fresh" : ""), "data-event": ev.id },
    el("span", { class: "time" }, timeOf(ev.at)),
    el("span", { class: "kind" }, ev.kind.replace("_", " ")),
    el("span", {}, el("strong", {}, ev.meter ?? ""), " ", el("span", { class: "muted" }, ev.reason)));
  feed.prepend(item);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  state.lastEventId = Math.max(state.lastEventId, ev.id);
}

async function openStream() {
  if (!key()) return;
  const { token } = await api("/events/stream-token", { method: "POST" });
  const url = `${API}/events/stream?token=${encodeURIComponent(token)}` +
    `&last_event_id=${state.lastEventId}&${FEED_EXCLUDE}`;
  const source = new EventSource(url);
  state.source = source;
  source.onopen = () => { $("#stat-stream").textContent = "live"; };
  source.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    if (ev.id <= state.lastEventId) return;
    addEvent(ev, true);
    scheduleRefresh();
  };
  source.onerror = () => {
    $("#stat-stream").textContent = "reconnecting";
    if (source.readyState === EventSource.CLOSED && state.source === source) {
      // The token expired or the server restarted: get a new token, resume after the last id.
      setTimeout(() => openStream().catch(() => {}), 2000);
    }
  };
}

async function loadRecentEvents() {
  const recent = await api(`/events?order=desc&limit=50&${FEED_EXCLUDE}`);
  for (const ev of recent.reverse()) addEvent(ev, false);
}

// ---- sign in / out ------------------------------------------------------------------------

async function start() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  flash("signed in");
  await refresh();
  await loadRecentEvents();
  await openStream();
  setInterval(refresh, 10000);
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY);
  if (state.source) { state.source.close(); state.source = null; }
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("#who-status").textContent = "signed out";
  $("#login-error").textContent = message;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("#key").value.trim());
    $("#key").value = "";
    try {
      await api("/meters?limit=1");
      await start();
    } catch (err) {
      if (err.message !== "401") signOut(String(err.message || err));
    }
  });
  $("#logout").addEventListener("click", () => signOut());
  if (key()) start().catch(() => {});
});
