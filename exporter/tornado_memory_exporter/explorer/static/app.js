// Leak explorer page: renders the JSON API of this directory (api/...). No framework, no build
// step; every value is inserted as text (never as HTML), since type names come from the app.
"use strict";

const API = "api/";
const state = { auth: sessionStorage.getItem("tme-auth"), selected: null, walkTimer: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

class Unauthorized extends Error {}

async function call(path, body) {
  const headers = {};
  if (state.auth) headers.Authorization = state.auth;
  const init = { headers, credentials: "same-origin" };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  if (response.status === 401) throw new Unauthorized();
  const text = await response.text();
  if (!response.ok) throw new Error(text.trim());
  return JSON.parse(text);
}

function fmt(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: 3 });
}

function signed(n) {
  if (n === null || n === undefined) return "–";
  return (n > 0 ? "+" : "") + fmt(n);
}

function sparkline(values) {
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 24");
  const points = values.map((v, i) => [i, v ?? 0]);
  if (points.length > 1) {
    const max = Math.max(...points.map((p) => p[1]));
    const min = Math.min(...points.map((p) => p[1]));
    const span = max - min || 1;
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", points.map(([i, v]) =>
      `${(i * 118) / (points.length - 1) + 1},${22 - ((v - min) * 20) / span}`).join(" "));
    svg.append(line);
  }
  return svg;
}

function fill(tableId, rows) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows);
}

function renderSummary(summary) {
  const censuses = summary.censuses;
  const last = censuses[censuses.length - 1];
  $("status").textContent = summary.census_running === false
    ? "The heap census is not running in this process."
    : `${censuses.length} census(es) kept` + (last
      ? ` · last at ${new Date(last.finished_at * 1000).toLocaleTimeString()}, ` +
        `${fmt(last.scanned)} objects in ${fmt(last.duration_seconds)} s ` +
        `(longest pause ${fmt(last.max_stall_seconds * 1000)} ms)` : "") +
      (summary.contents_shown ? " · object contents SHOWN (truncated)" : " · object contents hidden");
  $("types-empty").hidden = summary.types.length > 0;
  fill("types", summary.types.map((row) => el("tr",
    { class: row.type === state.selected ? "selected" : "", "data-type": row.type },
    el("td", {}, el("button", { class: "type", type: "button", onclick: () => select(row.type) }, row.type)),
    el("td", { class: "num" }, fmt(row.count)),
    el("td", { class: row.growth > 0 ? "num grow" : "num" }, signed(row.growth)),
    el("td", { class: "num" }, signed(row.last_growth)),
    el("td", {}, sparkline(row.counts)),
    el("td", { class: "mono holder" }, row.holder || ""))));
  fill("handlers", summary.handlers.map((h) => el("tr", {},
    el("td", { class: "mono" }, h.handler), el("td", {}, h.state), el("td", { class: "num" }, fmt(h.count)),
    el("td", { class: "mono holder" }, h.holder || ""))));
  fill("watched", summary.watched.map((w) => el("tr", {},
    el("td", {}, w.name), el("td", { class: "num" }, fmt(w.items)), el("td", { class: "num" }, fmt(w.bytes)))));
  fill("pools", summary.pools.map((p) => el("tr", {},
    el("td", {}, p.pool), el("td", { class: "num" }, `${fmt(p.in_use)} / ${fmt(p.capacity)}`),
    el("td", { class: "num" }, fmt(p.oldest_checkout_seconds)), el("td", { class: "num" }, fmt(p.leaked)),
    el("td", { class: "mono" }, ...(p.checkouts || []).map((c) =>
      el("div", {}, `${fmt(c.age_seconds)} s` + (c.site ? ` at ${siteText(c.site)}` : "")))),
    el("td", { class: "mono" }, ...(p.leak_sites || []).map((s) =>
      el("div", {}, `${siteText(s)} (${fmt(s.count)})`))))));
  renderAllocations(summary.allocations);
}

function siteText(site) {
  return `${site.file}:${site.line}`;
}

function renderAllocations(alloc) {
  const status = $("alloc-status");
  const o = alloc.overhead || {};
  if (alloc.state === "idle") {
    status.textContent = "No allocation window yet. Start one while the leak grows: tracemalloc " +
      "traces allocations for the chosen seconds, then stops by itself.";
  } else if (alloc.state === "tracing") {
    const left = Math.max(0, Math.round(alloc.ends_at - Date.now() / 1000));
    status.textContent = `Tracing allocations (${alloc.frames} frame(s)) · ${left} s left · ` +
      `allocation measured ${fmt(o.allocation_slowdown)}× slower while tracing`;
  } else if (alloc.state === "finishing") {
    status.textContent = "Window closed: attributing allocations…";
  } else if (alloc.state === "done") {
    status.textContent = `Window of ${fmt(alloc.seconds)} s · tracing made allocation ` +
      `${fmt(o.allocation_slowdown)}× slower · tracemalloc used ${fmt(o.tracemalloc_memory_bytes)} bytes · ` +
      `snapshot took ${fmt(o.snapshot_seconds * 1000)} ms · tracing stopped`;
  } else {
    status.textContent = `Window ${alloc.state}${alloc.error ? ": " + alloc.error : ""}`;
  }
  fill("alloc-sites", (alloc.sites || []).map((s) => el("tr", {},
    el("td", { class: "mono" }, siteText(s)), el("td", { class: "mono" }, s.code),
    el("td", { class: "num" }, fmt(s.size_diff)), el("td", { class: "num" }, fmt(s.count_diff)))));
  renderTypeAllocations(alloc);
}

function renderTypeAllocations(alloc) {
  const box = $("type-allocations");
  if (!state.selected) return;
  if (alloc.state !== "done") {
    box.replaceChildren(el("p", { class: "muted" }, alloc.state === "tracing"
      ? "An allocation window is open; its sites appear here when it closes."
      : "Start an allocation window (top of the page) to see where these objects are allocated."));
    return;
  }
  const own = (alloc.by_type || {})[state.selected];
  if (own && own.length) {
    box.replaceChildren(el("ul", {}, ...own.map((s) => el("li", {},
      el("span", { class: "mono" }, siteText(s)), " ", el("code", {}, s.code),
      el("span", { class: "muted" }, ` · ${fmt(s.count)} live instance(s)`)))));
    return;
  }
  const top = (alloc.sites || []).slice(0, 5);
  box.replaceChildren(
    el("p", { class: "muted" }, alloc.by_type_note ||
      "No live instance of this type was allocated during the window."),
    el("p", {}, "Top allocation sites by growth during the window:"),
    el("ul", {}, ...top.map((s) => el("li", {},
      el("span", { class: "mono" }, siteText(s)), " ", el("code", {}, s.code),
      el("span", { class: "muted" }, ` · +${fmt(s.size_diff)} bytes`)))));
}

function renderWalk(walk) {
  const status = $("walk-status");
  if (!walk) { status.textContent = ""; $("chains").replaceChildren(); return; }
  if (walk.state === "running") {
    status.textContent = "Walking reference chains (in slices, the application keeps serving)…";
    return;
  }
  if (walk.state === "error") { status.textContent = `Walk failed: ${walk.error}`; return; }
  status.textContent = `${fmt(walk.count)} live instance(s); chains of ${walk.chains.length} sample(s) ` +
    `found in ${fmt(walk.duration_seconds)} s over ${walk.slices} slices ` +
    `(longest pause ${fmt(walk.max_stall_seconds * 1000)} ms)`;
  $("chains").replaceChildren(...walk.chains.map((chain) => {
    const parts = [];
    if (chain.root) {
      parts.push(el("span", { class: "root" }, `${chain.root.kind}: ${chain.root.name}`));
    } else {
      parts.push(el("span", { class: "root" }, chain.reason));
    }
    const links = el("div", { class: "link" });
    chain.steps.forEach((step, i) => {
      if (i > 0) links.append(" → ");
      let text = step.type;
      if (step.len !== undefined) text += ` (len ${fmt(step.len)})`;
      if (step.label) text += ` ${step.label}`;
      if (step.repr) text += ` ${step.repr}`;
      links.append(el("span", {}, text));
      if (step.via) links.append(el("span", { class: "via" }, ` ${step.via}`));
    });
    parts.push(links);
    if (chain.allocated_at) parts.push(el("div", { class: "muted" }, `allocated at ${chain.allocated_at}`));
    return el("li", {}, ...parts);
  }));
}

async function select(type) {
  state.selected = type;
  for (const row of document.querySelectorAll("#types tbody tr")) {
    row.classList.toggle("selected", row.dataset.type === type);
  }
  $("detail").hidden = false;
  $("detail-type").textContent = type;
  $("chains").replaceChildren();
  try {
    renderWalk(await call("chains", { type }));
  } catch (error) {
    $("walk-status").textContent = error.message;
    return;
  }
  clearTimeout(state.walkTimer);
  const poll = async () => {
    const detail = await call(`type?name=${encodeURIComponent(type)}`);
    if (state.selected !== type) return;
    renderWalk(detail.walk);
    renderTypeAllocations(detail.allocations);
    if (detail.walk && detail.walk.state === "running") state.walkTimer = setTimeout(poll, 400);
  };
  poll().catch(handle);
}

function handle(error) {
  if (error instanceof Unauthorized) {
    $("main").hidden = true;
    $("login").hidden = false;
    $("status").textContent = "Credentials needed.";
    if (state.auth) $("login-error").textContent = "Those credentials were refused.";
    return;
  }
  $("status").textContent = `Error: ${error.message}`;
}

async function refresh() {
  try {
    const summary = await call("summary");
    $("login").hidden = true;
    $("main").hidden = false;
    renderSummary(summary);
    // A dashboard link (#type=module.QualName) preselects the type it was clicked on.
    const linked = new URLSearchParams(location.hash.slice(1)).get("type");
    if (linked && state.selected === null) select(linked);
  } catch (error) {
    handle(error);
  }
}

function login(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  const user = $("user").value;
  state.auth = token ? `Bearer ${token}`
    : `Basic ${btoa(unescape(encodeURIComponent(`${user}:${$("password").value}`)))}`;
  sessionStorage.setItem("tme-auth", state.auth);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", login);
  $("census").addEventListener("click", () => call("census", {}).then(renderSummary).catch(handle));
  $("trim").addEventListener("click", () => call("malloc_trim", {}).then((r) => {
    $("trimmed").textContent = `RSS gave back ${(r.released_bytes / 1048576).toFixed(1)} MiB `
      + `(${(r.rss_before_bytes / 1048576).toFixed(0)} → ${(r.rss_after_bytes / 1048576).toFixed(0)} MiB, `
      + `${(r.seconds * 1000).toFixed(1)} ms)`;
  }).catch(handle));
  $("trace").addEventListener("click", () => {
    const seconds = Number($("seconds").value);
    const types = state.selected ? [state.selected] : [];
    call("allocations", { seconds, types }).then(refresh).catch(handle);
  });
  refresh();
  setInterval(refresh, 2000);
});
