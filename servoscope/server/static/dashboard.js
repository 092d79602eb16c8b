// servoscope live dashboard: polls /v1/stats, keeps five minutes of polls, draws them with uPlot.
// Times arrive in seconds and are shown in ms. The test reads the data-* attributes written here.
"use strict";

const POLL_MS = 1000;
const HISTORY_S = 300;
const WINDOW = "1m"; // the stats window read: the shortest, so a regression shows soonest
const STAGE_COLORS = {
  ingest: "#8c564b", preprocess_wait: "#e377c2", preprocess: "#2ca02c", batch_wait: "#ff7f0e",
  inference: "#1f77b4", postprocess: "#9467bd", respond: "#17becf", total: "#222",
};
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const QUANTILES = ["p50", "p95", "p99"];
const TICK_STEPS_S = [10, 15, 30, 60, 120, 300]; // time-axis tick spacings, whole seconds

const samples = []; // one per poll: {t, doc}, oldest first, the last HISTORY_S seconds of server time
const charts = new Map(); // chart name -> {plot, key}
let selected = null; // the model shown
let polls = 0;

const $ = (selector) => document.querySelector(selector);
const ms = (seconds) => (seconds == null ? null : seconds * 1000);
const fmt = (v, digits = 2) => (v == null ? "–" : Number(v).toFixed(digits));
const color = (i) => PALETTE[i % PALETTE.length];
const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB", { hour12: false }); // 14:03:20

// The time axis spans the history kept (HISTORY_S) from the first poll: one poll or a few, the
// charts fill from the left in clock time; with the history full, it slides.
const timeRange = () => { const first = samples.length ? samples[0].t : 0; return [first, first + HISTORY_S]; };

function timeTicks(u, splits) {
  const labels = splits.map((t) => (t == null ? "" : clock(t)));
  u.root.parentElement.dataset.xTicks = labels.join(" "); // what the axis shows, for the test
  return labels;
}

// --- reading one sample ------------------------------------------------------------------------

const modelOf = (s) => s.doc.models[selected];
const windowOf = (s) => (modelOf(s) ? modelOf(s).windows[WINDOW] : null);
const stagesOf = (doc) => doc.stages.filter((name) => name !== "total");
const stageMs = (s, stage, q) => { const w = windowOf(s); return w && w.stages[stage] ? ms(w.stages[stage][q]) : null; };
const rate = (s, field) => { const w = windowOf(s); return w ? w.throughput[field] : null; };

function stackedP95(s, stages) {
  // Cumulative P95 from the first stage up: series i spans the stages up to i.
  let sum = 0, any = false;
  return stages.map((stage) => {
    const v = stageMs(s, stage, "p95");
    if (v != null) { sum += v; any = true; }
    return any ? sum : null;
  });
}

// --- chart definitions: series, and the columns they draw from the history ---------------------

function definitions(latest) {
  const doc = latest.doc;
  const stages = stagesOf(doc);
  const model = modelOf(latest);
  const instances = model ? model.instances : 0;
  const cores = doc.system && doc.system.cpu_core_utilization_ratio ? doc.system.cpu_core_utilization_ratio.length : 0;
  const devices = doc.gpu && doc.gpu.available ? doc.gpu.devices : [];
  const line = (label, stroke, extra = {}) => ({ label, stroke, width: 1.5, ...extra });
  const defs = {
    "stage-p95": {
      height: 300,
      // Each band's legend shows the stage's own P95, not the running sum the band is drawn at.
      series: [...stages].reverse().map((st) => line(st, STAGE_COLORS[st], {
        fill: STAGE_COLORS[st] + "cc",
        value: (u, v, si, idx) => (idx == null ? "–" : fmt(stageMs(samples[idx], st, "p95"), 2)),
      }))
        .concat([line("total P95", STAGE_COLORS.total, { dash: [6, 4], width: 2 })]),
      columns: (s) => [...stackedP95(s, stages).reverse(), stageMs(s, "total", "p95")],
    },
    total: {
      height: 300,
      series: QUANTILES.map((q, i) => line(`total ${q}`, PALETTE[i])),
      columns: (s) => QUANTILES.map((q) => stageMs(s, "total", q)),
    },
    throughput: {
      series: [line("answered/s", color(0)), line("ok/s", color(2))],
      columns: (s) => [rate(s, "answered_per_s"), rate(s, "ok_per_s")],
    },
    errors: {
      series: [line("errors/s", color(3)), line("refused/s", color(1))],
      columns: (s) => [rate(s, "errors_per_s"), rate(s, "refused_per_s")],
    },
    queues: {
      series: [line("preprocess queue", color(2)), line("batch queue", color(0)), line("pending", color(1)),
        line("batches in flight", color(4))],
      columns: (s) => {
        const q = modelOf(s) ? modelOf(s).queues : {};
        return [s.doc.preprocess.queue, q.batch_queue, q.pending, q.batches_in_flight];
      },
    },
    "batch-mean": {
      series: [line("mean batch size", color(0))],
      columns: (s) => { const w = windowOf(s); return [w ? w.batches.mean_size : null]; },
    },
    busy: {
      series: [...Array(instances).keys()].map((i) => line(`instance ${i} busy %`, color(i))),
      columns: (s) => [...Array(instances).keys()].map((i) => {
        const w = windowOf(s), r = w ? w.busy_ratio[String(i)] : null;
        return r == null ? null : r * 100;
      }),
    },
    cpu: {
      range: [0, 100],
      series: [line("all cores", "#000", { width: 2.5 })]
        .concat([...Array(cores).keys()].map((i) => line(`core ${i}`, color(i) + "99", { width: 1 }))),
      columns: (s) => {
        const sys = s.doc.system || {}, per = sys.cpu_core_utilization_ratio || [];
        return [sys.cpu_utilization_ratio].concat([...Array(cores).keys()].map((i) => per[i] ?? null))
          .map((r) => (r == null ? null : r * 100));
      },
    },
    gpu: {
      range: [0, 100],
      series: devices.map((d, i) => line(`GPU ${d.index} ${d.name || ""}`.trim(), color(i))),
      columns: (s) => devices.map((d, i) => {
        const now = s.doc.gpu && s.doc.gpu.devices ? s.doc.gpu.devices[i] : null;
        return now && now.utilization_ratio != null ? now.utilization_ratio * 100 : null;
      }),
    },
    "loop-lag": {
      series: QUANTILES.map((q, i) => line(`lag ${q}`, PALETTE[i])),
      columns: (s) => {
        const lag = s.doc.event_loop_lag_s[WINDOW];
        return QUANTILES.map((q) => (lag ? ms(lag[q]) : null));
      },
    },
  };
  for (const stage of doc.stages) {
    defs[`stage-${stage}`] = {
      height: 150,
      title: stage,
      series: QUANTILES.map((q, i) => line(`${stage} ${q}`, PALETTE[i])),
      columns: (s) => QUANTILES.map((q) => stageMs(s, stage, q)),
    };
  }
  return defs;
}

// --- drawing -------------------------------------------------------------------------------------

function columnsOf(def) {
  const xs = samples.map((s) => s.t);
  const rows = samples.map(def.columns);
  return [xs, ...def.series.map((_, i) => rows.map((r) => r[i] ?? null))];
}

function showLatest(plot) {
  // The legend reads out the newest poll, unless the pointer is on the chart reading another.
  if (plot.cursor.idx == null && plot.data[0].length) plot.setLegend({ idx: plot.data[0].length - 1 });
}

function timeChart(name, def, el) {
  const key = `${selected}|${def.series.map((s) => s.label).join(",")}`;
  const known = charts.get(name);
  const data = columnsOf(def);
  if (known && known.key === key) {
    known.plot.setData(data);
    showLatest(known.plot);
  } else {
    if (known) known.plot.destroy();
    const opts = {
      title: def.title, width: el.clientWidth || 400, height: def.height || 200,
      series: [{ label: "time", value: (u, t) => (t == null ? "–" : clock(t)) }, ...def.series],
      scales: {
        x: { time: true, range: timeRange },
        y: def.range ? { range: def.range } : { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.1 : 1] },
      },
      axes: [{ space: 70, incrs: TICK_STEPS_S, values: timeTicks }, {}],
      legend: { live: true },
      hooks: { ready: [showLatest] },
    };
    charts.set(name, { plot: new uPlot(opts, data, el), key });
  }
  el.dataset.points = String(data[0].length);
  el.dataset.xRange = JSON.stringify(timeRange());
  el.dataset.latest = JSON.stringify(data.slice(1).map((column) => column[column.length - 1] ?? null));
}

function batchSizes(el, latest) {
  const w = windowOf(latest);
  const counts = w ? w.batches.size_counts : {};
  const sizes = Object.keys(counts).map(Number).sort((a, b) => a - b);
  const data = [sizes, sizes.map((n) => counts[String(n)])];
  const known = charts.get("batch-sizes");
  if (known) known.plot.destroy(); // its x range follows the sizes seen: rebuilt each poll, it is small
  const lo = sizes.length ? sizes[0] - 1 : 0, hi = sizes.length ? sizes[sizes.length - 1] + 1 : 2;
  const opts = {
    width: el.clientWidth || 400, height: 200,
    scales: { x: { time: false, range: [lo, hi] }, y: { range: (u, a, b) => [0, b > 0 ? b * 1.1 : 1] } },
    series: [{ label: "batch size" }, { label: "batches", stroke: color(0), fill: color(0) + "aa",
      paths: uPlot.paths.bars({ size: [0.8, 40] }), points: { show: false } }],
    axes: [{ label: "batch size" }, { label: "batches" }],
    legend: { show: false },
  };
  charts.set("batch-sizes", { plot: new uPlot(opts, data, el), key: "" });
  el.dataset.points = String(sizes.length);
}

function ensureStageCharts(stages) {
  const grid = $("#stage-charts");
  if (grid.dataset.stages === stages.join(",")) return;
  grid.replaceChildren(...stages.map((stage) => {
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.chart = `stage-${stage}`;
    return div;
  }));
  grid.dataset.stages = stages.join(",");
}

function stageTable(latest) {
  const head = "<tr><th>stage</th><th>P50</th><th>P95</th><th>P99</th><th>count</th></tr>";
  const rows = latest.doc.stages.map((stage) => {
    const w = windowOf(latest), sum = w ? w.stages[stage] : null;
    const cells = QUANTILES.map((q) => {
      const v = sum ? ms(sum[q]) : null;
      return `<td data-${q}-ms="${v ?? ""}">${fmt(v, 3)}</td>`;
    }).join("");
    return `<tr data-stage="${stage}"><th><i style="background:${STAGE_COLORS[stage] || "#888"}"></i>${stage}</th>` +
      `${cells}<td>${sum ? sum.count : 0}</td></tr>`;
  });
  $("#stage-table").innerHTML = head + rows.join("");
}

function modelTable(doc) {
  const head = "<tr><th>model</th><th>instances</th><th>batch queue</th><th>pending</th><th>batches in flight</th></tr>";
  const rows = Object.entries(doc.models).map(([name, m]) =>
    `<tr data-model="${name}"><th>${name}</th><td>${m.instances}</td><td>${m.queues.batch_queue}</td>` +
    `<td>${m.queues.pending}</td><td>${m.queues.batches_in_flight}</td></tr>`);
  const pre = doc.preprocess;
  $("#model-table").innerHTML = head + rows.join("") +
    `<tr><th>preprocess pool</th><td>${pre.workers} workers</td><td>${pre.queue} queued</td><td>${pre.busy} busy</td><td></td></tr>`;
}

function tiles(latest) {
  const doc = latest.doc, w = windowOf(latest);
  const total = (q) => fmt(stageMs(latest, "total", q), 1);
  const lag = doc.event_loop_lag_s[WINDOW];
  const gpu = doc.gpu && doc.gpu.available
    ? doc.gpu.devices.map((d) => (d.utilization_ratio == null ? "–" : `${fmt(100 * d.utilization_ratio, 0)}%`)).join(" ")
      || "0 devices"
    : "no GPU";
  const items = [
    ["total P50 / P95 / P99 ms", `${total("p50")} / ${total("p95")} / ${total("p99")}`],
    ["answered/s", fmt(rate(latest, "answered_per_s"), 1)], ["ok/s", fmt(rate(latest, "ok_per_s"), 1)],
    ["errors/s", fmt(rate(latest, "errors_per_s"), 2)], ["refused/s", fmt(rate(latest, "refused_per_s"), 2)],
    ["mean batch", fmt(w ? w.batches.mean_size : null, 1)],
    ["loop lag P95 ms", fmt(lag ? ms(lag.p95) : null, 1)],
    ["CPU", doc.system && doc.system.cpu_utilization_ratio != null ? `${fmt(100 * doc.system.cpu_utilization_ratio, 0)}%` : "–"],
    ["GPU", gpu],
  ];
  $("#tiles").innerHTML = items.map(([k, v]) => `<div><span>${k}</span><b>${v}</b></div>`).join("");
}

function gpuNote(doc) {
  const off = !doc.gpu || !doc.gpu.available;
  const note = $("#gpu-note");
  note.hidden = !off;
  note.textContent = off ? `no GPU — ${doc.gpu ? doc.gpu.reason : "no reading yet"}` : "";
  document.querySelector('[data-chart="gpu"]').hidden = off;
}

function modelSelector(doc) {
  const names = Object.keys(doc.models);
  if (!names.includes(selected)) selected = names[0] ?? null;
  const select = $("#model");
  if (select.dataset.names !== names.join(",")) {
    select.replaceChildren(...names.map((n) => new Option(n, n, false, n === selected)));
    select.dataset.names = names.join(",");
  }
  select.parentElement.hidden = names.length < 2;
  document.body.dataset.model = selected ?? "";
}

function render() {
  const latest = samples[samples.length - 1];
  modelSelector(latest.doc);
  ensureStageCharts(latest.doc.stages);
  const defs = definitions(latest);
  for (const [name, def] of Object.entries(defs)) {
    const el = document.querySelector(`[data-chart="${name}"]`);
    if (el) timeChart(name, def, el);
  }
  batchSizes(document.querySelector('[data-chart="batch-sizes"]'), latest);
  stageTable(latest);
  modelTable(latest.doc);
  tiles(latest);
  gpuNote(latest.doc);
}

// --- polling ------------------------------------------------------------------------------------

function show(state, message) {
  document.body.dataset.state = state;
  if (state !== "ok") $("#status").textContent = `no data at ${new Date().toLocaleTimeString()} · retrying every second`;
  $("#message").hidden = state === "ok";
  $("#message").textContent = message || "";
  $("#board").hidden = state !== "ok";
}

function remember(doc) {
  const last = samples[samples.length - 1];
  if (last && last.t >= doc.time) return false; // the server's cached document, already drawn
  samples.push({ t: doc.time, doc });
  while (samples.length && samples[0].t < doc.time - HISTORY_S) samples.shift();
  return true;
}

async function poll() {
  try {
    const response = await fetch("v1/stats", { cache: "no-store", signal: AbortSignal.timeout(5000) });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      show("unavailable", `/v1/stats answered ${response.status}: ${body.error || response.statusText}`);
    } else {
      show("ok");
      if (remember(body)) render();
      document.body.dataset.statsTime = String(body.time);
      $("#status").textContent = `updated ${new Date(body.time * 1000).toLocaleTimeString()} · ` +
        `${samples.length} polls kept · window ${WINDOW}`;
    }
  } catch (err) {
    show("error", `cannot reach /v1/stats: ${err.message}`);
  }
  document.body.dataset.polls = String(++polls);
  setTimeout(poll, POLL_MS);
}

$("#model").addEventListener("change", (e) => { selected = e.target.value; if (samples.length) render(); });
window.addEventListener("resize", () => {
  for (const [, { plot }] of charts) plot.setSize({ width: plot.root.parentElement.clientWidth, height: plot.height });
});
poll();
