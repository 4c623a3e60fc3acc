// The live dashboard: polls GetStatus and GetMetricsHistory (Connect protocol, JSON over HTTP/1.1,
// same origin) once a second and redraws. Field names are the protobuf JSON names; proto3 JSON
// leaves out fields at their default value (0, "", false), hence the `?? 0` throughout.
import { LineChart } from "./line-chart.js";

const POLL_MS = 1000;
const PALETTE = ["#3559e0", "#e8743b", "#19a979", "#945ecf", "#ed4a7b", "#13a4b4", "#bf399e", "#6c8893", "#d6a21e", "#525df4"];
const color = (slot) => PALETTE[slot % PALETTE.length];
/** The settings shown up front; the rest are under "all settings". */
const KEY_SETTINGS = [
  "SERVER_MODE", "TOTAL_WORKERS_EXPECTED", "OPTIMIZER", "LEARNING_RATE", "LR_SCHEDULE", "LR_WARMUP_STEPS", "MOMENTUM",
  "WEIGHT_DECAY", "STALENESS_BOUND", "MAX_STALENESS", "LEASE_MS", "SYNC_TIMEOUT_MS",
];

const state = {
  since: 0,
  samples: [],
  reports: new Map(), // "slot:receivedMs" → report, so overlapping polls add nothing twice
  startMs: undefined,
  failures: 0,
};

const $ = (id) => document.getElementById(id);
const fmt = {
  int: (v) => Math.round(v).toLocaleString("en-US"),
  num: (v, d = 1) => (Number.isFinite(v) ? v.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }) : "–"),
  pct: (v) => (v >= 0 ? `${(v * 100).toFixed(1)}%` : "–"),
  loss: (v) => (v >= 0 ? v.toFixed(4) : "–"),
  ms: (v) => (v > 0 ? (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`) : "–"),
  clock: (s) => {
    const t = Math.max(0, Math.round(s));
    const h = Math.floor(t / 3600);
    const mm = String(Math.floor((t % 3600) / 60)).padStart(h > 0 ? 2 : 1, "0");
    const ss = String(t % 60).padStart(2, "0");
    return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  },
  ago: (ms) => (ms === undefined ? "–" : ms < 1000 ? "just now" : `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s ago`),
};

async function rpc(service, method, body) {
  const res = await fetch(`/paramserver.v1.${service}/${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}

const charts = {
  loss: new LineChart($("chart-loss"), { xLabel: "step (parameter version)", yLabel: "training loss", yFormat: (v) => v.toFixed(2), xMin: 0 }),
  accuracy: new LineChart($("chart-accuracy"), {
    xLabel: "step (parameter version)", yLabel: "test accuracy", yFormat: (v) => `${v}%`, xMin: 0, empty: "evaluated after each epoch…",
  }),
  throughput: new LineChart($("chart-throughput"), { xLabel: "time since start (m:ss)", yLabel: "samples / s", xFormat: fmt.clock, xTime: true, yFormat: (v) => fmt.int(v), yMin: 0 }),
  staleness: new LineChart($("chart-staleness"), { xLabel: "time since start (m:ss)", yLabel: "staleness", xFormat: fmt.clock, xTime: true, yMin: 0, yInteger: true }),
};

function legend(id, entries) {
  $(id).replaceChildren(
    ...entries.map(([name, c]) => {
      const s = document.createElement("span");
      s.style.setProperty("--swatch", c);
      s.textContent = name;
      return s;
    }),
  );
}

function merge(history) {
  for (const s of history.samples ?? []) {
    state.samples.push(s);
    state.since = Math.max(state.since, s.timestampMs ?? 0);
  }
  for (const r of history.reports ?? []) state.reports.set(`${r.slot ?? 0}:${r.receivedMs}`, r);
}

function render(status, history) {
  const slots = status.slots ?? [];
  const total = status.config?.totalWorkers ?? slots.length;
  const count = (s) => slots.filter((x) => x.state === s).length;
  const active = count("SLOT_STATE_ACTIVE");
  const finished = count("SLOT_STATE_FINISHED");
  const config = history.configuration ?? {};
  const mode = (status.config?.mode ?? "MODE_UNSPECIFIED").replace("MODE_", "").toLowerCase();
  state.startMs ??= (history.nowMs ?? Date.now()) - (status.uptimeSeconds ?? 0) * 1000;

  // Header.
  const badge = $("state");
  const [cls, text, st] = status.runComplete
    ? ["complete", "run complete", "complete"]
    : status.initialized
      ? ["training", "training", "training"]
      : ["waiting", `waiting for workers (${active}/${total})`, "waiting"];
  badge.className = `badge badge-${cls}`;
  badge.textContent = text;
  badge.dataset.state = st;
  $("subtitle").textContent =
    `mode ${mode} · ${total} worker${total === 1 ? "" : "s"} · optimizer ${config.OPTIMIZER ?? "?"} · lr ${config.LEARNING_RATE ?? "?"}` +
    ` (${config.LR_SCHEDULE ?? "constant"}) · up ${fmt.clock(status.uptimeSeconds ?? 0)}`;
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;

  // Key numbers.
  const last = state.samples.at(-1) ?? {};
  $("kpi-version").textContent = fmt.int(status.version ?? 0);
  $("kpi-version-note").textContent = `${fmt.num(last.updatesPerSecond ?? 0)} updates / s`;
  $("kpi-workers").textContent = `${active} / ${total}`;
  const retired = count("SLOT_STATE_RETIRED");
  $("kpi-workers-note").textContent = `active · ${finished} finished${retired > 0 ? ` · ${retired} retired` : ""}`;
  $("kpi-throughput").textContent = fmt.int(last.samplesPerSecond ?? 0);
  $("kpi-step").textContent = fmt.ms(last.stepTimeMs ?? 0);
  $("kpi-loss").textContent = fmt.loss(last.trainLoss ?? -1);
  $("kpi-accuracy").textContent = fmt.pct(last.testAccuracy ?? -1);
  $("kpi-staleness").textContent = fmt.num(last.meanStaleness ?? 0);
  $("kpi-staleness-note").textContent = `max ${last.maxStaleness ?? 0} · ${status.staleGradientsRejected ?? 0} refused`;

  // Curves.
  const reports = [...state.reports.values()].sort((a, b) => a.receivedMs - b.receivedMs);
  const bySlot = new Map();
  for (const r of reports) {
    const slot = r.slot ?? 0;
    if (!bySlot.has(slot)) bySlot.set(slot, []);
    bySlot.get(slot).push(r.metrics ?? {});
  }
  const slotIds = [...bySlot.keys()].sort((a, b) => a - b);
  const lossSeries = slotIds.map((slot) => ({
    name: `worker ${slot}`,
    color: color(slot),
    points: bySlot.get(slot).filter((m) => (m.trainLoss ?? 0) >= 0 && m.trainLoss !== undefined).map((m) => [m.version ?? 0, m.trainLoss]),
  }));
  const accuracySeries = slotIds.map((slot) => ({
    name: `worker ${slot}`,
    color: color(slot),
    dots: true,
    points: bySlot.get(slot).filter((m) => (m.testAccuracy ?? 0) >= 0).map((m) => [m.version ?? 0, (m.testAccuracy ?? 0) * 100]),
  }));
  charts.loss.draw(lossSeries);
  charts.accuracy.draw(accuracySeries);
  legend("legend-loss", lossSeries.map((s) => [s.name, s.color]));
  legend("legend-accuracy", accuracySeries.map((s) => [s.name, s.color]));

  const t = (s) => ((s.timestampMs ?? 0) - state.startMs) / 1000;
  charts.throughput.draw([
    { name: "samples/s", color: "#3559e0", points: state.samples.map((s) => [t(s), s.samplesPerSecond ?? 0]) },
  ]);
  legend("legend-throughput", [["samples / s (all workers)", "#3559e0"]]);
  charts.staleness.draw([
    { name: "mean", color: "#e8743b", points: state.samples.map((s) => [t(s), s.meanStaleness ?? 0]) },
    { name: "max", color: "#945ecf", dashed: true, points: state.samples.map((s) => [t(s), s.maxStaleness ?? 0]) },
  ]);
  legend("legend-staleness", [["mean (last 30 s)", "#e8743b"], ["max (last 30 s)", "#945ecf"]]);

  // Workers.
  const rates = new Map((history.slots ?? []).map((r) => [r.slot ?? 0, r]));
  const lastValid = (slot, key) => {
    const ms = bySlot.get(slot) ?? [];
    for (let i = ms.length - 1; i >= 0; i--) if (ms[i][key] !== undefined && ms[i][key] >= 0) return ms[i][key];
    return -1;
  };
  const rows = slots.map((s) => {
    const slot = s.slot ?? 0;
    const r = rates.get(slot) ?? {};
    const st = s.retiring ? "retiring" : s.abandoned ? "abandoned" : (s.state ?? "SLOT_STATE_FREE").replace("SLOT_STATE_", "").toLowerCase();
    const tr = document.createElement("tr");
    tr.dataset.slot = String(slot);
    tr.dataset.state = st;
    const cells = [
      [`<span class="swatch" data-color="${color(slot)}"></span>${slot}`, ""],
      [`<span class="state state-${st}">${st}</span>`, ""],
      [escapeHtml(s.workerLabel ?? "–") || "–", ""],
      [s.lastSeenMsAgo === undefined && (s.registrations ?? 0) === 0 ? "–" : fmt.ago(s.lastSeenMsAgo ?? 0), "num"],
      [fmt.int(s.pushes ?? 0), "num"],
      [(s.registrations ?? 0) === 0 ? "–" : `epoch ${(s.position?.epoch ?? 0) + 1} · batch ${s.position?.batch ?? 0}`, ""],
      [fmt.int(r.samplesPerSecond ?? 0), "num"],
      [fmt.ms(r.stepTimeMs ?? 0), "num"],
      [`${fmt.num(r.meanStaleness ?? 0)} <span class="muted">(max ${r.maxStaleness ?? 0})</span>`, "num"],
      [fmt.loss(lastValid(slot, "trainLoss")), "num"],
      [fmt.pct(lastValid(slot, "testAccuracy")), "num"],
    ];
    for (const [html, cls] of cells) {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      td.innerHTML = html;
      tr.appendChild(td);
    }
    // Colours go through the CSSOM: the page's CSP allows no inline style attributes.
    for (const sw of tr.querySelectorAll(".swatch")) sw.style.background = sw.dataset.color;
    return tr;
  });
  $("workers").tBodies[0].replaceChildren(...rows);

  // Configuration and checkpoints.
  const keys = Object.keys(config).sort();
  const main = KEY_SETTINGS.filter((k) => k in config);
  const rest = keys.filter((k) => !KEY_SETTINGS.includes(k));
  const dl = $("config");
  if (dl.dataset.filled !== String(keys.length)) {
    dl.dataset.filled = String(keys.length);
    dl.replaceChildren(...main.flatMap((k) => pair(k, config[k])));
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = `all settings (${keys.length})`;
    const inner = document.createElement("dl");
    inner.className = "config";
    inner.replaceChildren(...rest.flatMap((k) => pair(k, config[k])));
    details.append(summary, inner);
    const wrap = document.createElement("div");
    wrap.style.gridColumn = "1 / -1";
    wrap.appendChild(details);
    dl.appendChild(wrap);
  }
  const cp = history.checkpoint ?? {};
  $("checkpoint").replaceChildren(
    ...(cp.enabled
      ? [...pair("destination", cp.destination ?? ""), ...pair("written", String(cp.saved ?? 0)), ...pair("latest", cp.lastKey || "none yet")]
      : pair("status", "off (set CHECKPOINT_URI)")),
    ...(cp.restoredFrom ? pair("resumed from", cp.restoredFrom) : []),
  );
}

function pair(k, v) {
  const dt = document.createElement("dt");
  dt.textContent = k;
  const dd = document.createElement("dd");
  dd.textContent = v;
  return [dt, dd];
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function poll() {
  try {
    const [status, history] = await Promise.all([
      rpc("ParameterServerService", "GetStatus", {}),
      rpc("TelemetryService", "GetMetricsHistory", { sinceMs: state.since }),
    ]);
    merge(history);
    render(status, history);
    state.failures = 0;
  } catch (err) {
    state.failures++;
    const badge = $("state");
    // A completed run's server exits by default (EXIT_ON_COMPLETE): the page keeps what it drew.
    const ended = badge.dataset.state === "complete" || badge.dataset.state === "ended";
    badge.className = ended ? "badge badge-complete" : "badge badge-down";
    badge.textContent = ended ? "run complete · server stopped" : "server unreachable";
    badge.dataset.state = ended ? "ended" : "unreachable";
    $("updated").textContent = String(err.message ?? err).slice(0, 120);
  }
  setTimeout(poll, POLL_MS);
}

poll();
