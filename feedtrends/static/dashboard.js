// The feedtrends dashboard: reads /api/* (the same JSON as `feedtrends query --format json`),
// draws inline SVG, and refreshes when /api/changes says new part files were committed.
"use strict";

const body = document.body;
const POLL_MS = Number(body.dataset.pollMs) || 5000;
const HISTORY = Number(body.dataset.historyWindows) || 12;
const LATEST_WINDOWS = 3;
let lastStamp = null;
let windowStarts = [];

function el(tag, attrs = {}, ...children) {
  const ns = ["svg", "rect", "polyline", "text", "title", "line"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path) {
  const res = await fetch(path, { cache: "no-store" });
  const data = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw Object.assign(new Error(data.error || res.statusText), { status: res.status });
  return data;
}

const utc = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ");
const score = (x) => Number(x).toFixed(2);

// Bars: the term's articles per window; dashed line: its baseline.  Windows where the
// term has no row count 0 articles (it did not appear), with no baseline point.
function chart(term, history, starts, { width = 240, height = 56 } = {}) {
  const byStart = new Map(history.map((r) => [r.window_start, r]));
  const pad = 12;
  const max = Math.max(1, ...history.map((r) => Math.max(r.articles, r.baseline)));
  const step = (width - 2) / Math.max(starts.length, 1);
  const y = (v) => height - pad - (v / max) * (height - 2 * pad);
  const svg = el("svg", {
    class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "data-term": term,
    "aria-label": `${term}: articles per window, ${history.map((r) => `${utc(r.window_start)} ${r.articles}`).join(", ")}`,
  });
  svg.append(el("title", {}, `${term}: articles (bars) and baseline (dashed) per window`));
  const points = [];
  starts.forEach((ws, i) => {
    const r = byStart.get(ws);
    const articles = r ? r.articles : 0;
    const top = y(articles);
    svg.append(el("rect", {
      class: "bar", x: 1 + i * step + 1, y: top, width: Math.max(step - 2, 1), height: height - pad - top,
      "data-window-start": ws, "data-articles": articles,
    }, el("title", {}, `${utc(ws)} UTC: ${articles} articles${r ? `, baseline ${score(r.baseline)}` : ""}`)));
    if (r) points.push(`${1 + i * step + step / 2},${y(r.baseline)}`);
  });
  if (points.length) svg.append(el("polyline", { class: "baseline", points: points.join(" ") }));
  svg.append(el("text", { x: 2, y: height - 1 }, starts.length ? utc(starts[0]) : ""));
  svg.append(el("text", { x: width - 2, y: height - 1, "text-anchor": "end" }, `max ${max}`));
  return svg;
}

function termCell(r) {
  const cell = el("td", { class: "term" }, el("strong", {}, r.term));
  if (r.aliases && r.aliases.length) cell.append(el("div", { class: "aliases" }, `also: ${r.aliases.join(", ")}`));
  return cell;
}

// The first example title, linking to its article when the row has the article's address.
// Only http(s) addresses become links (the job writes no other kind; this keeps it so).
function exampleCell(r) {
  const title = r.examples[0] || "";
  const link = (r.links || [])[0] || "";
  const cell = el("td", { class: "example" });
  if (title && /^https?:\/\//i.test(link)) cell.append(el("a", { href: link, rel: "noopener noreferrer" }, title));
  else cell.append(title);
  return cell;
}

function topTable(rows, charts) {
  const head = ["rank", "term", "score", "articles", "feeds", "example title"].concat(charts ? ["last windows"] : []);
  const table = el("table", { class: "top" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", class: ["rank", "score", "articles", "feeds"].includes(h) ? "num" : null }, h)))));
  const tbody = el("tbody");
  for (const r of rows) {
    const tr = el("tr", { "data-term": r.term },
      el("td", { class: "num" }, r.rank), termCell(r), el("td", { class: "num" }, score(r.score)),
      el("td", { class: "num" }, r.articles), el("td", { class: "num" }, r.feeds),
      exampleCell(r));
    if (charts) tr.append(el("td", { class: "history" }, charts.get(r.term) || ""));
    tbody.append(tr);
  }
  table.append(tbody);
  return table;
}

async function history(term) {
  return api(`/api/term?term=${encodeURIComponent(term)}`);
}

async function renderWindows(windows) {
  const box = document.getElementById("windows");
  const latest = windows.slice(-LATEST_WINDOWS).reverse();
  const starts = windowStarts.slice(-HISTORY);
  const parts = [];
  for (const [i, w] of latest.entries()) {
    const section = el("div", { class: "window", "data-window-start": w.window_start });
    section.append(el("h3", {}, `${utc(w.window_start)} – ${utc(w.window_end)} UTC`,
      el("span", { class: "muted" }, ` · ${w.articles} articles, ${w.terms} terms, revision ${w.max_revision}`)));
    try {
      const top = await api(`/api/top?window=${w.window_start}&k=${i === 0 ? 10 : 5}`);
      let charts = null;
      if (i === 0) {
        charts = new Map();
        for (const r of top) charts.set(r.term, chart(r.term, await history(r.term), starts));
      }
      section.append(topTable(top, charts));
      if (i === 0) section.append(el("p", { class: "legend" }, el("span", { class: "swatch-bar" }, "■"), " articles per window, ",
        el("span", { class: "swatch-base" }, "- -"), ` baseline; last ${starts.length} windows`));
    } catch (err) {
      section.append(el("p", { class: "muted" }, err.message));
    }
    parts.push(section);
  }
  box.replaceChildren(...parts);
}

function renderFeeds(feeds) {
  const latest = Math.max(...feeds.map((f) => f.window_start));
  const totals = new Map();
  for (const f of feeds) totals.set(f.feed, (totals.get(f.feed) || 0) + f.articles);
  const inLatest = new Map(feeds.filter((f) => f.window_start === latest).map((f) => [f.feed, f.articles]));
  const table = el("table", { class: "feeds" }, el("thead", {}, el("tr", {},
    el("th", { scope: "col" }, "feed"), el("th", { scope: "col", class: "num" }, `latest window (${utc(latest)})`),
    el("th", { scope: "col", class: "num" }, `all ${new Set(feeds.map((f) => f.window_start)).size} windows`))));
  const tbody = el("tbody");
  for (const [feed, total] of [...totals].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))) {
    tbody.append(el("tr", { "data-feed": feed }, el("td", {}, feed), el("td", { class: "num" }, inLatest.get(feed) || 0),
      el("td", { class: "num" }, total)));
  }
  table.append(tbody);
  document.getElementById("feed-table").replaceChildren(table);
}

function ageText(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

function renderHealth(info) {
  const items = [];
  const add = (id, label, value, ok) => items.push(el("dt", {}, label),
    el("dd", { id, class: ok === undefined ? null : ok ? "state-ok" : "state-bad" }, value));
  if (!info.kafka_ready && !info.flink_running) {
    add("health-state", "stack", "not running (Kafka down, Flink down): start it with `make demo` or `feedtrends up`", false);
  } else {
    add("health-kafka", "Kafka", `${info.kafka_ready ? "ready" : "down"} (${info.kafka_bootstrap})`, info.kafka_ready);
    add("health-flink", "Flink", info.flink_running ? `up, ${info.slots_available}/${info.slots_total} slots free` : "down", info.flink_running);
    const job = (info.jobs || []).find((j) => j.state === "RUNNING") || (info.jobs || [])[0];
    if (!job) {
      add("health-state", "job", "no job on the cluster (feedtrends submit)", false);
    } else {
      add("health-state", "job", `${job.state} ${job.name}`, job.state === "RUNNING");
      const cp = job.last_checkpoint;
      add("health-checkpoint", "last checkpoint", cp ? `#${cp.id}, ${ageText(cp.completed_at)}` : "none yet");
      add("health-lag", "consumer lag", job.consumer_lag ? `${job.consumer_lag.total} events` : "unknown");
      const c = job.counters || {};
      add("health-dlq", "dead letters", c.dead_letters ?? "unknown");
      add("health-late", "late beyond lateness", c.late_beyond_lateness ?? "unknown");
    }
  }
  add("health-version", "output version", info.current_version || "?");
  document.getElementById("health-list").replaceChildren(...items);
}

async function refreshHealth() {
  try {
    renderHealth(await api("/api/status"));
  } catch (err) {
    document.getElementById("health-list").replaceChildren(el("dt", {}, "status"), el("dd", { id: "health-state", class: "state-bad" }, err.message));
  }
}

async function refreshTrends() {
  const notice = document.getElementById("notice");
  let windows;
  try {
    windows = await api("/api/windows");
  } catch (err) {
    // No output yet, or its directory is missing: say so, keep polling.
    notice.textContent = `No trends to show: ${err.message}`;
    windowStarts = [];
    document.getElementById("windows").replaceChildren();
    document.getElementById("feed-table").replaceChildren();
    return;
  }
  notice.textContent = "";
  windowStarts = windows.map((w) => w.window_start);
  await renderWindows(windows);
  try {
    renderFeeds(await api("/api/feeds"));
  } catch (err) {
    document.getElementById("feed-table").replaceChildren(el("p", { class: "muted" }, err.message));
  }
}

async function showTerm(term) {
  const out = document.getElementById("term-result");
  const error = document.getElementById("term-error");
  error.textContent = "";
  try {
    const rows = await history(term);
    const first = rows[0].window_start, last = rows[rows.length - 1].window_start;
    const starts = windowStarts.filter((ws) => ws >= first && ws <= last);
    const table = el("table", { class: "term-rows" }, el("thead", {}, el("tr", {},
      ["window (UTC)", "articles", "baseline", "score", "rank"].map((h, i) => el("th", { scope: "col", class: i ? "num" : null }, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, el("td", {}, utc(r.window_start)), el("td", { class: "num" }, r.articles),
        el("td", { class: "num" }, score(r.baseline)), el("td", { class: "num" }, score(r.score)), el("td", { class: "num" }, r.rank ?? "–")))));
    out.replaceChildren(el("h3", {}, rows[0].term), chart(rows[0].term, rows, starts.length ? starts : rows.map((r) => r.window_start), { width: 640, height: 160 }), table);
  } catch (err) {
    out.replaceChildren();
    error.textContent = err.message;
  }
}

async function poll() {
  try {
    const changes = await api("/api/changes");
    document.getElementById("source").textContent =
      `output version ${changes.version}, ${changes.parts} part files · checked ${new Date().toISOString().slice(11, 19)} UTC`;
    if (changes.stamp !== lastStamp) {
      lastStamp = changes.stamp;
      await refreshTrends();
    }
  } catch (err) {
    document.getElementById("source").textContent = `cannot reach the output: ${err.message}`;
  }
  await refreshHealth();
  body.dataset.ready = "true";
  setTimeout(poll, POLL_MS);
}

document.getElementById("term-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const term = document.getElementById("term-input").value.trim();
  if (term) showTerm(term);
});
poll();
