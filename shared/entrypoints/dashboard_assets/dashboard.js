// georollout dashboard: reads the same JSON as the API (GET /api/rollouts, GET /api/stats),
// draws it, and asks again every REFRESH_MS. Every value from the API is put on the page as
// text (textContent, SVG attributes), never as markup.
"use strict";

const REFRESH_MS = 3000;
const LISTED = 30;
const SVG = "http://www.w3.org/2000/svg";
const REGION_COLOURS = ["#39a7d8", "#d29922", "#2ea043", "#c869d8", "#e5534b", "#6e7fd6"];
const SEGMENT_COLOURS = {
  replicating: "#6e7fd6", waiting: "#d29922", deploying: "#39a7d8", live: "#2ea043",
  failed: "#e5534b", expected: "#6e7fd6",
};
const ACTIONS = ["approve", "hold", "resume", "retry", "rollback"];

// In Azure the page is opened with the function key (?code=...): every call carries it on.
const functionKey = new URLSearchParams(window.location.search).get("code");
let selectedId = decodeURIComponent(window.location.hash.slice(1)) || null;
let rollouts = [];

function apiUrl(path, query) {
  const params = new URLSearchParams(query || {});
  if (functionKey) params.set("code", functionKey);
  const text = params.toString();
  return path + (text ? "?" + text : "");
}

async function getJson(path, query) {
  const response = await fetch(apiUrl(path, query), { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    throw new Error(`${path} answered ${response.status}: ${message}`);
  }
  return body;
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function time(value) {
  return value ? new Date(value) : null;
}

function duration(seconds) {
  if (seconds === null || !isFinite(seconds)) return "-";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function clock(date) {
  return date ? date.toISOString().slice(11, 19) + "Z" : "-";
}

function badge(state) {
  return el("span", { class: `state ${state}` }, state);
}

function shortDigest(digest) {
  return String(digest || "").replace(/^(sha256:)([0-9a-f]{12}).*$/, "$1$2");
}

function regionNames(list) {
  const names = [];
  for (const rollout of list) {
    for (const region of rollout.regions || []) {
      if (!names.includes(region.region)) names.push(region.region);
    }
  }
  return names;
}

// --- the rollouts grid ------------------------------------------------------------------

function regionNote(rollout, region, now) {
  const created = time(rollout.created_at);
  if (region.live_at) return `live +${duration((time(region.live_at) - created) / 1000)}`;
  if (region.eta) {
    const left = (time(region.eta) - now) / 1000;
    return left > 0 ? `eta ${clock(time(region.eta))} (in ${duration(left)})`
      : `eta ${clock(time(region.eta))} (late ${duration(-left)})`;
  }
  if (region.waiting_for) return `waiting for ${region.waiting_for}`;
  if (region.deploy_step && region.state === "deploying") return region.deploy_step;
  if (region.replicated_at) return `replicated +${duration((time(region.replicated_at) - created) / 1000)}`;
  return "";
}

function drawGrid(now) {
  const names = regionNames(rollouts);
  const head = el("tr", {}, el("th", {}, "image"), el("th", {}, "state"),
    ...names.map((name) => el("th", {}, name)), el("th", {}, "pushed"));
  const body = el("tbody");
  for (const rollout of rollouts) {
    const byName = Object.fromEntries((rollout.regions || []).map((r) => [r.region, r]));
    const row = el("tr", { "data-id": rollout.id, "data-state": rollout.state },
      el("td", { class: "image", title: `${rollout.repository}@${rollout.digest}` },
        rollout.repository, el("span", { class: "cell-note digest" },
          `${shortDigest(rollout.digest)} ${(rollout.tags || []).join(", ")}`)),
      el("td", {}, badge(rollout.state)),
      ...names.map((name) => {
        const region = byName[name];
        if (!region) return el("td", { class: "empty" }, "-");
        return el("td", { "data-region": name, "data-state": region.state },
          badge(region.state), el("span", { class: "cell-note" }, regionNote(rollout, region, now)));
      }),
      el("td", {}, clock(time(rollout.created_at))));
    if (rollout.id === selectedId) row.classList.add("selected");
    row.addEventListener("click", () => select(rollout.id));
    body.append(row);
  }
  const table = document.getElementById("rollouts");
  table.replaceChildren(el("thead", {}, head), body);
  document.getElementById("rollouts-empty").hidden = rollouts.length > 0;
}

// --- one rollout's timeline ---------------------------------------------------------------

// pushed -> replicated -> (waiting) -> deploying -> live, each region on its own line.
function segmentsOf(region, created, now) {
  const replicated = time(region.replicated_at);
  const started = time(region.deploy_started_at);
  const live = time(region.live_at);
  const failed = ["failed", "rolled_back", "timed_out", "superseded"].includes(region.state);
  const parts = [];
  parts.push(["replicating", created, replicated || now, replicated ? "replicating" : "waiting for replica"]);
  if (!replicated && region.eta) parts.push(["expected", now, time(region.eta), "expected"]);
  if (replicated) {
    const waitEnd = started || now;
    if (waitEnd - replicated > 0) {
      parts.push(["waiting", replicated, waitEnd, started ? "waited" : `waiting for ${region.waiting_for || "its turn"}`]);
    }
  }
  if (started) parts.push([failed ? "failed" : "deploying", started, live || now, region.deploy_step || region.state]);
  if (live) parts.push(["live", live, now, region.state === "soaking" ? "soaking" : region.state]);
  return parts;
}

function drawTimeline(rollout, now) {
  const holder = document.getElementById("timeline");
  const title = document.getElementById("selected-title");
  if (!rollout) {
    title.textContent = "no rollout selected";
    holder.replaceChildren(el("p", { class: "empty" }, "Choose a rollout above."));
    return;
  }
  title.textContent = `${rollout.repository}@${shortDigest(rollout.digest)}  ${rollout.state}`;
  const created = time(rollout.created_at);
  const regions = rollout.regions || [];
  let end = now;
  for (const region of regions) {
    const eta = time(region.eta);
    if (eta && eta > end) end = eta;
  }
  const span = Math.max(1, end - created);
  const width = 640, label = 110, rowHeight = 30, top = 18;
  const height = top + rowHeight * regions.length + 24;
  const x = (t) => label + ((t - created) / span) * (width - label - 10);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
    "aria-label": "rollout timeline by region" });
  regions.forEach((region, index) => {
    const y = top + index * rowHeight;
    const group = svgEl("g", { "data-region": region.region, "data-state": region.state });
    group.append(svgEl("text", { x: 0, y: y + 15 }, region.region + (region.primary ? " *" : "")));
    for (const [kind, from, to, text] of segmentsOf(region, created, now)) {
      const left = x(from), right = Math.max(x(to), left + 2);
      const bar = svgEl("rect", { x: left, y: y + 4, width: right - left, height: 16, rx: 3,
        fill: SEGMENT_COLOURS[kind], "fill-opacity": kind === "expected" ? 0.25 : 0.85,
        "data-segment": kind });
      if (kind === "expected") bar.setAttribute("stroke-dasharray", "4 3");
      if (kind === "expected") bar.setAttribute("stroke", SEGMENT_COLOURS.expected);
      bar.append(svgEl("title", {}, `${region.region}: ${text} ${clock(from)} to ${clock(to)}`));
      group.append(bar);
      if (right - left > 60) group.append(svgEl("text", { x: left + 4, y: y + 16 }, text));
    }
    svg.append(group);
  });
  const axisY = top + rowHeight * regions.length + 4;
  svg.append(svgEl("line", { class: "axis", x1: label, x2: width - 10, y1: axisY, y2: axisY }));
  svg.append(svgEl("text", { class: "dim", x: label, y: axisY + 14 }, `pushed ${clock(created)}`));
  svg.append(svgEl("text", { class: "dim", x: width - 10, y: axisY + 14, "text-anchor": "end" },
    `+${duration(span / 1000)}`));
  holder.replaceChildren(svg);
}

// --- operator actions ---------------------------------------------------------------------

async function act(action) {
  const rollout = rollouts.find((r) => r.id === selectedId);
  const result = document.getElementById("action-result");
  if (!rollout) return;
  const reason = window.prompt(`${action} ${rollout.repository}@${shortDigest(rollout.digest)}: reason?`, "");
  if (reason === null) return;
  result.classList.remove("refused");
  result.textContent = `${action}…`;
  let response;
  try {
    response = await fetch(apiUrl(`/api/rollouts/${encodeURIComponent(rollout.id)}/${action}`), {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(reason ? { reason, actor: "dashboard" } : { actor: "dashboard" }),
    });
  } catch (error) {
    result.classList.add("refused");
    result.textContent = `${action} not sent: ${error.message}`;
    return;
  }
  const body = await response.json().catch(() => null);
  if (response.ok) {
    result.textContent = `${action} accepted`;
  } else {
    result.classList.add("refused");
    result.textContent = `${action} refused: ${body && body.error ? body.error.message : response.status}`;
  }
  await refresh();
}

// --- replication statistics ---------------------------------------------------------------

function drawStats(stats) {
  const regions = stats.regions || [];
  const chart = document.getElementById("latency-chart");
  const legend = document.getElementById("latency-legend");
  const points = regions.flatMap((r) => r.recent.map((s) => [time(s.replicated_at), s.latency_s]));
  legend.replaceChildren(...regions.map((region, index) => {
    const item = el("span", { "data-region": region.region },
      `${region.region}: ${region.samples} sample(s)` +
      (region.typical_latency_s !== null ? `, typical ${region.typical_latency_s.toFixed(1)}s` : "") +
      (region.throughput_bytes_per_s ? `, ${(region.throughput_bytes_per_s / 1e6).toFixed(1)} MB/s` : ""));
    item.style.setProperty("--swatch", REGION_COLOURS[index % REGION_COLOURS.length]);
    return item;
  }));
  if (points.length === 0) {
    chart.replaceChildren(el("p", { class: "empty" }, "No arrivals observed yet."));
    return;
  }
  const width = 420, height = 200, left = 40, bottom = 22, top = 10;
  const first = Math.min(...points.map((p) => p[0])), last = Math.max(...points.map((p) => p[0]));
  const most = Math.max(1, ...points.map((p) => p[1]));
  const x = (t) => left + (last > first ? ((t - first) / (last - first)) * (width - left - 10) : (width - left) / 2);
  const y = (v) => height - bottom - (v / most) * (height - bottom - top);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img",
    "aria-label": "replication latency per region" });
  svg.append(svgEl("line", { class: "axis", x1: left, x2: width - 10, y1: y(0), y2: y(0) }));
  svg.append(svgEl("line", { class: "axis", x1: left, x2: left, y1: top, y2: y(0) }));
  svg.append(svgEl("text", { class: "dim", x: left - 4, y: y(most) + 4, "text-anchor": "end" }, `${most.toFixed(0)}s`));
  svg.append(svgEl("text", { class: "dim", x: left - 4, y: y(0), "text-anchor": "end" }, "0s"));
  regions.forEach((region, index) => {
    const colour = REGION_COLOURS[index % REGION_COLOURS.length];
    const samples = region.recent.map((s) => [x(time(s.replicated_at)), y(s.latency_s), s]);
    if (samples.length > 1) {
      svg.append(svgEl("polyline", { points: samples.map(([px, py]) => `${px},${py}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": 1.5, "data-region": region.region }));
    }
    for (const [px, py, s] of samples) {
      const dot = svgEl("circle", { cx: px, cy: py, r: 3.5, fill: colour, "data-region": region.region });
      dot.append(svgEl("title", {}, `${region.region}: ${s.latency_s}s (${s.image_size_bytes ?? "?"} bytes)`));
      svg.append(dot);
    }
  });
  chart.replaceChildren(svg);
}

function drawWaiting(now) {
  const rows = [];
  for (const rollout of rollouts) {
    for (const region of rollout.regions || []) {
      if (region.state !== "awaiting_replication") continue;
      const eta = time(region.eta);
      rows.push(el("tr", { "data-region": region.region },
        el("td", {}, `${rollout.repository}@${shortDigest(rollout.digest)}`),
        el("td", {}, region.region),
        el("td", {}, eta ? clock(eta) : "unknown (no history)"),
        el("td", {}, eta ? (eta > now ? `in ${duration((eta - now) / 1000)}` : `late ${duration((now - eta) / 1000)}`) : "-")));
    }
  }
  const table = document.getElementById("waiting");
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", {}, "image"), el("th", {}, "region"),
    el("th", {}, "expected"), el("th", {}, ""))), el("tbody", {}, ...rows));
  document.getElementById("waiting-empty").hidden = rows.length > 0;
}

// --- refresh ------------------------------------------------------------------------------

function select(id) {
  selectedId = id;
  window.location.hash = encodeURIComponent(id);
  draw();
}

let lastStats = { regions: [] };

function draw() {
  const now = new Date();
  if (!rollouts.some((r) => r.id === selectedId)) selectedId = rollouts.length ? rollouts[0].id : null;
  drawGrid(now);
  drawTimeline(rollouts.find((r) => r.id === selectedId), now);
  drawWaiting(now);
  drawStats(lastStats);
}

async function refresh() {
  const problem = document.getElementById("problem");
  try {
    const [listing, stats] = await Promise.all([
      getJson("/api/rollouts", { limit: String(LISTED) }),
      getJson("/api/stats"),
    ]);
    rollouts = listing.rollouts || [];
    lastStats = stats;
    problem.classList.remove("shown");
    document.getElementById("refreshed").textContent = `refreshed ${clock(new Date())}`;
    draw();
  } catch (error) {
    problem.textContent = `Could not read the API: ${error.message}. Trying again.`;
    problem.classList.add("shown");
  }
}

for (const action of ACTIONS) {
  document.getElementById(`action-${action}`).addEventListener("click", () => act(action));
}
refresh();
setInterval(refresh, REFRESH_MS);
