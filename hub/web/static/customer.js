// SMSA customer page: balance, a top-up form, bills with their PDFs, the usage chart of the
// newest bill, and the insights: the daily load shape, the comparison with similar homes, offers. Plain JavaScript, no build step; the key lives in sessionStorage (this tab only).
"use strict";

const API = "/api/v1";
const KEY = "smsa.customer.key";
const WHO = "smsa.customer.id";
const $ = (sel) => document.querySelector(sel);

function key() { return sessionStorage.getItem(KEY); }
function who() { return sessionStorage.getItem(WHO); }

async function call(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + key() }, options.headers || {});
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let detail = response.statusText;
    try { const body = await response.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) { /* not JSON */ }
    throw new Error(response.status + " " + detail);
  }
  return response;
}

const json = async (path, options) => (await call(path, options)).json();

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

async function showBalance() {
  const account = await json("/accounts/" + encodeURIComponent(who()));
  $("#balance").textContent = account.balance + " " + account.currency;
}

async function pdfLink(bill, td) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.textContent = "PDF";
  button.addEventListener("click", async () => {
    const blob = await (await call("/bills/" + bill.id + "/pdf")).blob();
    const link = document.createElement("a");
    link.className = "pdf";
    link.href = URL.createObjectURL(blob);
    link.download = bill.number + ".pdf";
    link.textContent = bill.number + ".pdf";
    td.replaceChildren(link);
  });
  td.append(button);
}

async function showBills() {
  const bills = await json("/customers/" + encodeURIComponent(who()) + "/bills");
  const body = $("#bills tbody");
  body.replaceChildren();
  for (const bill of bills) {
    const row = document.createElement("tr");
    row.dataset.bill = bill.id;
    row.append(cell(bill.period), cell(bill.number), cell(bill.charges), cell(bill.amount_due),
      cell(bill.status));
    const td = document.createElement("td");
    await pdfLink(bill, td);
    row.append(td);
    body.append(row);
  }
  if (bills.length) await showChart(bills[0]);
}

async function showChart(bill) {
  const page = await (await call("/bills/" + bill.id + "/html")).text();
  const svg = new DOMParser().parseFromString(page, "text/html").querySelector("svg");
  if (svg) $("#chart").replaceChildren(document.importNode(svg, true));
}

const SVG = "http://www.w3.org/2000/svg";

function loadShape(hourly) {
  const max = Math.max(...hourly, 1);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 240 100");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "average use per hour of the day");
  hourly.forEach((value, hour) => {
    const bar = document.createElementNS(SVG, "rect");
    const height = Math.round((value / max) * 90);
    bar.setAttribute("x", String(hour * 10 + 1));
    bar.setAttribute("y", String(95 - height));
    bar.setAttribute("width", "8");
    bar.setAttribute("height", String(height));
    bar.setAttribute("class", "bar");
    const title = document.createElementNS(SVG, "title");
    title.textContent = hour + ":00 – " + value + " Wh";
    bar.append(title);
    svg.append(bar);
  });
  return svg;
}

// The offers are shown once: the next visit in the same month lists only new ones.
async function showInsights() {
  const insights = await json("/customers/" + encodeURIComponent(who()) + "/insights");
  const meter = insights.usage.meters.find((m) => m.total > 0);
  if (meter) {
    $("#load-shape").replaceChildren(loadShape(meter.hourly));
    const c = meter.comparison;
    $("#comparison").textContent = c
      ? "You use " + c.daily_average + " Wh a day. Similar homes: " + Math.round(c.median) +
        " (median), efficient homes: " + Math.round(c.efficient) + "."
      : "Not enough similar homes to compare with yet.";
  }
  const list = $("#offers");
  list.replaceChildren(...(insights.offers.length ? insights.offers.map((o) => {
    const item = document.createElement("li");
    item.dataset.kind = o.kind;
    item.textContent = (o.saving ? "Save " + o.saving + ": " : "") + o.reason;
    return item;
  }) : [Object.assign(document.createElement("li"), { className: "empty muted", textContent: "No offers." })]));
}

async function topUp(event) {
  event.preventDefault();
  const body = JSON.stringify({ amount: $("#topup-amount").value, reference: $("#topup-reference").value });
  try {
    const answer = await json("/accounts/" + encodeURIComponent(who()) + "/topups",
      { method: "POST", body, headers: { "Idempotency-Key": crypto.randomUUID() } });
    $("#topup-result").textContent = "Topped up " + answer.amount + "; balance " + answer.balance;
    await showBalance();
  } catch (error) {
    $("#topup-result").textContent = "Not topped up: " + error.message;
  }
}

async function start() {
  try {
    await showBalance();
  } catch (error) {
    sessionStorage.removeItem(KEY);
    $("#login-error").textContent = "Not signed in: " + error.message;
    return;
  }
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  $("#who-status").textContent = who();
  await Promise.all([showBills(), showInsights()]);
}

function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#key").value.trim());
  sessionStorage.setItem(WHO, $("#customer").value.trim());
  $("#key").value = "";
  start();
}

function signOut() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(WHO);
  location.reload();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", signIn);
  $("#topup-form").addEventListener("submit", topUp);
  $("#logout").addEventListener("click", signOut);
  if (key() && who()) start();
});
