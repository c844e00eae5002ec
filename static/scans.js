// The video scans page: start a scan, list recent ones, follow one (progress, then a timeline per item).

import { getScan, listScans, pageToken, startScan, watchScan } from "./catchlight.js";

const POLL_MS = 500;
const token = pageToken();
const page = document.body;
const $ = (selector) => document.querySelector(selector);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

/** Seconds as m:ss.s (or s.s s under a minute). */
export function formatTime(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m}:${(seconds - m * 60).toFixed(1).padStart(4, "0")}`;
}

function describeProgress(scan) {
  const { samples_done: done, samples_total: total } = scan.progress;
  if (scan.state === "queued") return "waiting for the scan process";
  if (scan.state === "failed") return "failed";
  if (scan.state === "done") return `done: ${done} frames looked at`;
  return total ? `${done} of ${total} frames` : `${done} frames`;
}

// ---- one scan ------------------------------------------------------------------------------

function renderTimeline(scan) {
  const timeline = $("#timeline");
  const duration = (scan.video && scan.video.duration) || 0;
  const items = scan.items || [];
  timeline.replaceChildren();
  if (!duration) return;
  const scanned = Math.min(duration, scan.progress.samples_done / (scan.sample_rate || 1));
  for (const item of items) {
    const label = el("div", "label", item.name);
    label.title = item.item;
    const track = el("div", "track");
    track.dataset.item = item.item;
    for (const a of item.appearances) {
      const bar = el("div", "appearance");
      bar.style.left = `${(100 * a.start) / duration}%`;
      bar.style.width = `${(100 * (a.end - a.start)) / duration}%`;
      bar.dataset.start = a.start;
      bar.dataset.end = a.end;
      bar.style.opacity = 0.45 + 0.55 * a.peak_score;
      bar.title = `${item.name}: ${formatTime(a.start)} – ${formatTime(a.end)}, peak score ${a.peak_score.toFixed(2)} at ${formatTime(a.peak_time)}`;
      track.append(bar);
    }
    if (scan.state === "running") {
      const mark = el("div", "done-mark");
      mark.style.left = `${(100 * scanned) / duration}%`;
      track.append(mark);
    }
    timeline.append(label, track);
  }
  // A time axis under the tracks: about six ticks at round numbers of seconds.
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800].find((s) => duration / s <= 6) || 3600;
  const axis = el("div", "axis");
  for (let t = 0; t <= duration + 1e-9; t += step) {
    const tick = el("span", "", formatTime(t));
    tick.style.left = `${(100 * t) / duration}%`;
    axis.append(tick);
  }
  timeline.append(el("div"), axis);
}

function renderTable(scan) {
  const table = $("#appearances");
  const rows = [];
  for (const item of scan.items || []) {
    for (const a of item.appearances) {
      const tr = el("tr");
      tr.append(
        el("td", "", item.name),
        el("td", "", formatTime(a.start)),
        el("td", "", formatTime(a.end)),
        el("td", "", a.peak_score.toFixed(2)),
        el("td", "", formatTime(a.peak_time)),
      );
      rows.push(tr);
    }
  }
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = rows.length === 0;
}

function renderScan(scan) {
  $("#scan").hidden = false;
  $("#start").hidden = true;
  $("#scan-title").textContent = `${scan.filename} · ${scan.collection}`;
  const video = scan.video ? `${formatTime(scan.video.duration)}, ${scan.video.width}×${scan.video.height}, ` : "";
  const found = (scan.items || []).length;
  $("#scan-summary").textContent =
    `${video}${describeProgress(scan)}` +
    (scan.state === "done" || found ? ` · ${found} item${found === 1 ? "" : "s"} seen` : "") +
    (scan.resumed ? ` · resumed after a restart` : "");
  const fraction = scan.progress.fraction ?? (scan.state === "done" ? 1 : 0);
  $("#progress-bar").style.width = `${Math.round(fraction * 100)}%`;
  $(".progress").setAttribute("aria-valuenow", Math.round(fraction * 100));
  const error = $("#scan-error");
  error.hidden = !scan.error;
  error.textContent = scan.error ? `${scan.error.message} (${scan.error.code})` : "";
  renderTimeline(scan);
  renderTable(scan);
  page.dataset.state = scan.state;
}

async function follow(id) {
  try {
    await getScan(id, { token }); // a missing scan is reported at once
    await watchScan(id, { onprogress: renderScan, intervalMs: POLL_MS, token });
  } catch (err) {
    $("#scan").hidden = false;
    $("#scan-summary").textContent = `This scan cannot be shown: ${err.message}`;
    page.dataset.state = "missing";
    return;
  }
  await renderList().catch(() => {});
}

// ---- list and form -------------------------------------------------------------------------

async function renderList() {
  const scans = await listScans({ token });
  const rows = scans.map((scan) => {
    const tr = el("tr");
    tr.dataset.scan = scan.scan;
    const link = el("a", "", scan.filename);
    link.href = `/scans/${scan.scan}`;
    const name = el("td");
    name.append(link);
    const state = el("td", "", scan.state);
    state.dataset.state = scan.state;
    const fraction = scan.progress.fraction;
    tr.append(
      name,
      el("td", "", scan.collection),
      state,
      el("td", "", fraction === null ? "–" : `${Math.round(fraction * 100)}%`),
      el("td", "", new Date(scan.created * 1000).toLocaleString()),
    );
    return tr;
  });
  $("#scan-list").tBodies[0].replaceChildren(...rows);
}

async function fillCollections() {
  const select = $("#collection-input");
  const wanted = page.dataset.collection;
  const { collections } = await getJson("/v1/collections");
  select.replaceChildren(
    ...collections.map((c) => {
      const option = el("option", "", `${c.collection} (${c.items})`);
      option.value = c.collection;
      option.selected = c.collection === wanted;
      return option;
    }),
  );
}

$("#scan-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("#video-input").files[0];
  if (!file) return;
  const message = $("#form-message");
  message.textContent = "Uploading…";
  try {
    const scan = await startScan(file, $("#collection-input").value, { sampleRate: Number($("#rate-input").value) || null, token });
    window.location.assign(`/scans/${scan.scan}`);
  } catch (err) {
    message.textContent = `The video was not accepted: ${err.message}`;
  }
});

const current = page.dataset.scan;
if (current) follow(current);
renderList().catch((err) => console.warn("scans:", err));
fillCollections().catch((err) => console.warn("collections:", err));
