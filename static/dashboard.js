// Console: usage statistics as plots (GET /v1/stats). uPlot is served from /vendor/uplot/.

import { api, count, el, enc, explain } from "./console.js";

const $ = (selector) => document.querySelector(selector);
const rangeSelect = $("#range");
const collectionSelect = $("#collection");
const endpointSelect = $("#endpoint");
const REFRESH_MS = 5000;
const SERIES = [
  { key: "requests", label: "requests", stroke: "#5ab0ff" },
  { key: "frames", label: "stream frames", stroke: "#ffc53d" },
  { key: "recognitions", label: "recognitions", stroke: "#3ddc97" },
];
let seriesPlot = null;
let latencyPlot = null;
let summary = null;

const axis = { stroke: "#a4adb7", grid: { stroke: "#262c33" }, ticks: { stroke: "#3b434d" } };

function chartWidth(node) {
  return Math.max(280, node.clientWidth);
}

function drawSeries(data) {
  const node = $("#series");
  const xs = data.series.map((p) => p.t);
  const columns = [xs, ...SERIES.map((s) => data.series.map((p) => p[s.key]))];
  if (seriesPlot) {
    seriesPlot.setData(columns);
    return;
  }
  seriesPlot = new uPlot(
    {
      width: chartWidth(node),
      height: 240,
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [axis, { ...axis, size: 50 }],
      series: [{}, ...SERIES.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, points: { show: true, size: 5 } }))],
    },
    columns,
    node,
  );
}

function drawLatency(data) {
  const node = $("#latency");
  const endpoints = data.latency.map((h) => h.endpoint);
  const chosen = endpoints.includes(endpointSelect.value) ? endpointSelect.value : preferred(endpoints);
  endpointSelect.replaceChildren(...endpoints.map((e) => el("option", { value: e, text: e, selected: e === chosen })));
  const histogram = data.latency.find((h) => h.endpoint === chosen);
  const buckets = histogram ? histogram.buckets : [];
  const labels = buckets.map((b, i) => (b.le_ms === null ? `>${buckets[i - 1].le_ms}` : `≤${b.le_ms}`));
  const columns = [buckets.map((_, i) => i), buckets.map((b) => b.count)];
  $("#latency-summary").textContent = histogram
    ? `${count(histogram.count)} timed · mean ${histogram.mean_ms} ms · median ≤ ${histogram.p50_ms ?? "∞"} ms · 95% ≤ ${histogram.p95_ms ?? "∞"} ms`
    : "Nothing timed in this period.";
  if (latencyPlot) latencyPlot.destroy();
  latencyPlot = new uPlot(
    {
      width: chartWidth(node),
      height: 220,
      legend: { show: false },
      scales: { x: { time: false, range: (u, min, max) => [min - 0.5, max + 0.5] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [
        { ...axis, values: (u, splits) => splits.map((i) => labels[i] ?? ""), incrs: [1, 2], space: 24, label: "milliseconds", labelSize: 20, font: "11px system-ui, sans-serif" },
        { ...axis, size: 50 },
      ],
      series: [{}, { label: "requests", fill: "rgba(90, 176, 255, 0.6)", stroke: "#5ab0ff", paths: uPlot.paths.bars({ size: [0.8, 60] }), points: { show: false } }],
    },
    columns,
    node,
  );
  node.dataset.endpoint = chosen || "";
}

function preferred(endpoints) {
  return endpoints.find((e) => e === "POST recognize") || endpoints.find((e) => e === "stream frame") || endpoints[0];
}

function drawTopItems(data) {
  const top = data.top_items;
  const most = Math.max(1, ...top.map((t) => t.recognitions));
  $("#top-items").replaceChildren(
    ...(top.length
      ? top.map((t) =>
          el(
            "li",
            { dataset: { item: t.item, count: t.recognitions } },
            el("a", { class: "hbar-label", href: `/console/collections/${enc(t.collection)}#${enc(t.item)}`, text: t.name || t.item }),
            el("span", { class: "hbar-track" }, el("span", { class: "hbar", style: `width: ${(100 * t.recognitions) / most}%` })),
            el("b", { class: "hbar-value", text: count(t.recognitions) }),
          ),
        )
      : [el("li", { class: "muted", text: "No item was recognized in this period." })]),
  );
}

function fillTable(table, rows, key) {
  table.tBodies[0].replaceChildren(
    ...rows.map((r) =>
      el("tr", { dataset: { key: r[key] } },
        el("td", { text: r[key] || "(none)" }),
        el("td", { class: "num", text: count(r.requests) }),
        el("td", { class: "num", text: count(r.frames) }),
        el("td", { class: "num", text: count(r.recognitions) })),
    ),
  );
}

async function refresh() {
  const params = new URLSearchParams({ range: rangeSelect.value });
  if (collectionSelect.value) params.set("collection", collectionSelect.value);
  try {
    summary = await api("GET", `/v1/stats?${params}`);
  } catch (err) {
    $("#updated").textContent = `Statistics unavailable: ${explain(err)}`;
    return;
  }
  $("#total-requests").textContent = count(summary.totals.requests);
  $("#total-frames").textContent = count(summary.totals.frames);
  $("#total-recognitions").textContent = count(summary.totals.recognitions);
  $("#active-streams").textContent = count(summary.active_streams);
  drawSeries(summary);
  drawTopItems(summary);
  drawLatency(summary);
  fillTable($("#by-collection"), summary.collections, "collection");
  fillTable($("#by-token"), summary.tokens, "token");
  $("#updated").textContent = `updated ${new Date(summary.generated * 1000).toLocaleTimeString()} · per ${summary.resolution}`;
  document.body.dataset.generated = summary.generated;
}

async function loadCollections() {
  const wanted = document.body.dataset.collection;
  try {
    const { collections } = await api("GET", "/v1/collections");
    collectionSelect.append(...collections.map((c) => el("option", { value: c.collection, text: c.collection })));
  } catch (err) {
    console.warn("collections not listed", err);
  }
  if (wanted && ![...collectionSelect.options].some((o) => o.value === wanted)) {
    collectionSelect.append(el("option", { value: wanted, text: wanted }));
  }
  collectionSelect.value = wanted || "";
}

function restart() {
  if (seriesPlot) seriesPlot.destroy();
  seriesPlot = null;
  refresh();
}

rangeSelect.addEventListener("change", restart);
collectionSelect.addEventListener("change", () => {
  const url = new URL(window.location);
  if (collectionSelect.value) url.searchParams.set("collection", collectionSelect.value);
  else url.searchParams.delete("collection");
  history.replaceState(null, "", url);
  restart();
});
endpointSelect.addEventListener("change", () => summary && drawLatency(summary));
window.addEventListener("resize", () => {
  if (seriesPlot) seriesPlot.setSize({ width: chartWidth($("#series")), height: 240 });
  if (summary) drawLatency(summary);
});

await loadCollections();
await refresh();
setInterval(() => {
  if (!document.hidden) refresh();
}, REFRESH_MS);
