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
const PAGE = 50;  // meters per page: the table never holds the whole fleet
const DAYS = 30;
const state = { lastEventId: 0, source: null, refreshTimer: null, offset: 0, total: 0, query: "",
  meter: null, charts: {} };

const $ = (sel) => document.querySelector(sel);

function key() { return sessionStorage.getItem(KEY); }

async function api(path, options = {}) {
  return (await apiResponse(path, options)).body;
}

// The answer's body and headers (X-Total-Count of the meter list).
async function apiResponse(path, options = {}) {
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
  return { body, headers: response.headers };
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
    el("td", {}, el("a", { href: "#/meter/" + encodeURIComponent(m.id) }, el("strong", {}, m.id))),
    el("td", {}, m.gateway), el("td", {}, m.customer ?? "–"),
    el("td", { class: "relay" }, relay), el("td", { class: "online" }, online),
    el("td", { class: "num" }, money(m.balance)), el("td", { class: "num" }, kwh),
    el("td", { class: "muted" }, timeOf(m.last_seen_at)), actions);
}

async function loadMeters() {
  const params = new URLSearchParams({ limit: PAGE, offset: state.offset });
  if (state.query) params.set("q", state.query);
  const { body: meters, headers } = await apiResponse("/meters?" + params);
  state.total = Number(headers.get("X-Total-Count") || meters.length);
  const body = $("#meters tbody");
  const none = state.query ? `No meter matches “${state.query}”.` : "No meters yet.";
  body.replaceChildren(...(meters.length ? meters.map(meterRow)
    : [el("tr", { class: "empty" }, el("td", { colspan: 9 }, none))]));
  const first = meters.length ? state.offset + 1 : 0;
  $("#page-info").textContent = `${first.toLocaleString()}–${(state.offset + meters.length)
    .toLocaleString()} of ${state.total.toLocaleString()}`;
  $("#page-prev").disabled = state.offset === 0;
  $("#page-next").disabled = state.offset + PAGE >= state.total;
}

async function loadSummary() {
  const s = await api("/fleet/summary");
  $("#stat-meters").textContent = s.meters.toLocaleString();
  $("#stat-online").textContent = s.online.toLocaleString();
  $("#stat-off").textContent = s.off.toLocaleString();
}

// ---- charts (uPlot, vendored) -------------------------------------------------------------

function seconds(day) { return Date.parse(day + "T00:00:00Z") / 1000; }

function chart(name, container, series, data) {
  const existing = state.charts[name];
  if (existing && existing.root.isConnected) { existing.setData(data); return existing; }
  container.replaceChildren();
  const bars = uPlot.paths.bars({ size: [0.6, 40] });
  const options = {
    width: Math.max(320, container.clientWidth), height: 220, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true } },
    series: [{}].concat(series.map((s) => Object.assign({ paths: bars, width: 1 }, s))),
    axes: [{}, { label: series.length === 1 ? series[0].label : "" }],
  };
  const made = new uPlot(options, data, container);
  state.charts[name] = made;
  return made;
}

async function loadDaily() {
  const days = await api(`/fleet/daily?days=${DAYS}`);
  chart("daily", $("#daily-chart"), [
    { label: "Disconnections", stroke: "#cf222e", fill: "rgba(207,34,46,.35)" },
    { label: "Top-ups", stroke: "#1a7f37", fill: "rgba(26,127,55,.25)" },
  ], [days.map((d) => seconds(d.day)), days.map((d) => d.disconnects), days.map((d) => d.topups)]);
}

// ---- one meter ----------------------------------------------------------------------------

async function showMeter(id) {
  state.meter = id;
  $("#fleet").hidden = true;
  $("#meter-page").hidden = false;
  const path = "/meters/" + encodeURIComponent(id);
  const [m, use, events, commands, mismatches] = await Promise.all([api(path),
    api(`${path}/consumption?days=${DAYS}`), api(`/events?meter=${encodeURIComponent(id)}&order=desc&limit=50`),
    api(`${path}/commands?limit=20`), api(`${path}/mismatches`)]);
  if (state.meter !== id) return;
  $("#mp-title").textContent = "Meter " + m.id;
  const facts = [["Gateway", m.gateway], ["Customer", m.customer ?? "–"], ["Relay", m.relay],
    ["Online", m.online ? "online" : "offline"], ["Balance", m.balance ?? "–"],
    ["Service", m.service], ["Last seq", m.last_seq ?? "–"], ["Last seen", timeOf(m.last_seen_at)]];
  $("#mp-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const unit = m.service === "water" ? "litres" : "kWh";
  const scale = m.service === "water" ? 1 : 1000;
  chart("meter", $("#mp-chart"), [{ label: `Used (${unit})`, stroke: "#1f6feb", fill: "rgba(31,111,235,.3)" }],
    [use.map((d) => seconds(d.day)), use.map((d) => d.used / scale)]);
  $("#mp-events").replaceChildren(...(events.length ? events.map((ev) => el("li", { class: "k-" + ev.kind },
    el("span", { class: "time" }, timeOf(ev.at)), el("span", { class: "kind" }, ev.kind.replace("_", " ")),
    el("span", { class: "muted" }, ev.reason))) : [el("li", { class: "empty muted" }, "No events.")]));
  showBus(m.bus);
  const shares = (o) => Object.entries(o).map(([p, v]) => `${p} ${v}`).join(", ");
  $("#mp-mismatches tbody").replaceChildren(...(mismatches.length ? mismatches.slice(0, 20).map((r) =>
    el("tr", {}, el("td", {}, r.seq), el("td", {}, shares(r.hub_shares)), el("td", {}, shares(r.agent_shares)),
      el("td", { class: "muted" }, timeOf(r.at)))) : [el("tr", { class: "empty" }, el("td", { colspan: 4 }, "None."))]));
  $("#mp-commands tbody").replaceChildren(...(commands.length ? commands.map((c) => el("tr", {},
    el("td", {}, c.action), el("td", {}, c.status), el("td", { class: "muted" }, timeOf(c.created_at)),
    el("td", { class: "muted" }, c.detail))) : [el("tr", { class: "empty" }, el("td", { colspan: 4 }, "No commands."))]));
}

// The gateway's newest bus report for the meter: Modbus requests and failures by kind.
function showBus(bus) {
  $("#mp-bus-at").textContent = bus ? "reported " + timeOf(bus.reported_at) : "";
  if (!bus) {
    $("#mp-bus").replaceChildren(el("dt", {}, "Report"), el("dd", { class: "muted" }, "none from the gateway yet"));
    return;
  }
  const rate = bus.requests ? ` (${(100 * bus.errors / bus.requests).toFixed(1)} %)` : "";
  const facts = [["Poll state", bus.state], ["Requests", bus.requests], ["Failed requests", bus.errors + rate],
    ["Timeouts and CRC", bus.timeouts], ["Modbus exceptions", bus.exceptions], ["Connection", bus.connection],
    ["Bad frames", bus.frame], ["Polls", bus.polls], ["Failed polls", bus.failed_polls],
    ["Skipped (back-off)", bus.skipped], ["Last error", bus.last_error || "–"]];
  $("#mp-bus").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
}

function showFleet() {
  state.meter = null;
  $("#meter-page").hidden = true;
  $("#fleet").hidden = false;
}

async function route() {
  const match = location.hash.match(/^#\/meter\/(.+)$/);
  try {
    if (match) await showMeter(decodeURIComponent(match[1]));
    else { showFleet(); await refresh(); }
  } catch (err) { if (err.message !== "401") flash(String(err.message || err), true); }
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

// Anomaly events raised by the insights (GET /insights/anomalies), with their evidence.
async function loadAnomalies() {
  const rows = await api("/insights/anomalies?limit=50");
  const body = $("#anomalies tbody");
  body.replaceChildren(...(rows.length ? rows.map((a) => el("tr", { "data-anomaly": a.id },
    el("td", {}, timeOf(a.at)), el("td", {}, a.meter || "–"), el("td", {}, a.anomaly || "–"),
    el("td", { class: a.severity === "high" ? "neg" : "" }, a.severity || "–"), el("td", {}, a.reason)))
    : [el("tr", { class: "empty" }, el("td", { colspan: 5 }, "No anomalies."))]));
}

async function loadLedger() {
  const report = await api("/ledger/check");
  const node = $("#stat-ledger");
  node.textContent = report.ok ? "balanced" : "VIOLATED";
  node.className = "value " + (report.ok ? "" : "neg");
}

async function refresh() {
  if (state.meter) return;  // the meter page loads when opened
  try { await Promise.all([loadSummary(), loadMeters(), loadProviders(), loadLedger(), loadDaily(),
    loadAnomalies()]); }
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
  await route();
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
  let typing = null;
  $("#meter-search").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.query = event.target.value.trim();
      state.offset = 0;
      loadMeters().catch((err) => flash(String(err.message || err), true));
    }, 250);
  });
  $("#page-prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE);
    loadMeters().catch((err) => flash(String(err.message || err), true));
  });
  $("#page-next").addEventListener("click", () => {
    state.offset += PAGE;
    loadMeters().catch((err) => flash(String(err.message || err), true));
  });
  window.addEventListener("hashchange", () => { if (key()) route(); });
  if (key()) start().catch(() => {});
});
