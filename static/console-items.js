// Console: one collection's items. Upload (drag and drop, one or many, with name and metadata),
// thumbnails with their keypoints drawn, recognition counts, edit and delete.

import { api, confirmDialog, count, credentialQuery, dropZone, el, enc, explain, itemPath, metadataEditor } from "./console.js";

const collection = document.body.dataset.collection;
const $ = (selector) => document.querySelector(selector);
const list = $("#items");
const message = $("#message");
const showKeypoints = $("#show-keypoints");

// ---- the items ----

async function load() {
  try {
    const [{ items }, stats] = await Promise.all([
      api("GET", `/v1/collections/${enc(collection)}/items`),
      api("GET", `/v1/collections/${enc(collection)}/stats?range=24h`).catch(() => null),
    ]);
    const counts = new Map((stats ? stats.items : []).map((s) => [s.item, s]));
    list.replaceChildren(...items.map((item) => tile(item, counts.get(item.item))));
    message.textContent = items.length
      ? `${items.length} item${items.length === 1 ? "" : "s"}`
      : "No items yet: drop reference images above.";
    document.body.dataset.items = items.length;
  } catch (err) {
    message.textContent =
      err.status === 404 ? `There is no collection ${collection}: add an image to create it.` : `Could not load: ${explain(err)}`;
    document.body.dataset.items = err.status === 404 ? "0" : "error";
    list.replaceChildren();
  }
}

function qualityWord(q) {
  return q >= 0.7 ? "good" : q >= 0.4 ? "fair" : "poor";
}

function tile(item, counts = { total: 0, recent: 0 }) {
  const img = el("img", { alt: item.name, decoding: "async", src: `${itemPath(collection, item.item)}/thumbnail?v=${item.updated}${credentialQuery()}` });
  const canvas = el("canvas", { class: "keypoints", "aria-hidden": "true" });
  img.addEventListener("load", () => {
    drawKeypoints(item, img, canvas);
    // Tiles change size with the window: redraw so the points stay on their features.
    new ResizeObserver(() => drawKeypoints(item, img, canvas)).observe(img);
  });
  const metadata = JSON.stringify(item.metadata || {}, null, 2);
  const meter = el("meter", { min: 0, max: 1, low: 0.4, high: 0.7, optimum: 1, value: item.quality });
  const edit = el("button", { type: "button", class: "small", text: "Edit", onclick: () => openEditor(item) });
  const remove = el("button", { type: "button", class: "small danger", text: "Delete", onclick: () => removeItem(item) });
  return el(
    "li",
    { class: "tile", dataset: { item: item.item, name: item.name, recognitions: counts.total } },
    el("div", { class: "thumb keypoint-frame" }, img, canvas),
    el(
      "div",
      { class: "info" },
      el("div", { class: "name", text: item.name }),
      el("div", { class: "muted small", text: `id ${item.item} · ${item.width}×${item.height}` }),
      el(
        "div",
        { class: "facts" },
        el("span", { class: "quality", title: "keypoint amount × how much of the image they cover" }, "quality ", meter,
          el("b", { text: `${item.quality.toFixed(2)} ${qualityWord(item.quality)}` })),
        el("span", {}, "keypoints ", el("b", { text: count(item.keypoints) })),
        el("span", { class: "recognitions", title: "times recognized since added (last 24 hours)" }, "recognized ",
          el("b", { class: "recognition-count", text: count(counts.total) }), ` (${count(counts.recent)} in 24 h)`),
      ),
      el("details", {}, el("summary", { text: "metadata" }), el("pre", { class: "metadata", text: metadata })),
      el("div", { class: "actions" }, edit, remove),
    ),
  );
}

const keypointCache = new Map();

async function drawKeypoints(item, img, canvas) {
  // The thumbnail keeps the image's aspect, so one scale maps reference pixels onto it.
  let data = keypointCache.get(item.item);
  if (!data) {
    try {
      data = await api("GET", `${itemPath(collection, item.item)}/keypoints`);
      keypointCache.set(item.item, data);
    } catch (err) {
      console.warn("keypoints not loaded", err);
      return;
    }
  }
  const box = img.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  const scale = Math.min(box.width / data.width, box.height / data.height);
  const [w, h] = [data.width * scale, data.height * scale];
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  canvas.style.left = `${(box.width - w) / 2}px`;
  canvas.style.top = `${(box.height - h) / 2}px`;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.lineWidth = 1;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.6)";
  ctx.fillStyle = "#3ddc97";
  for (const [x, y] of data.points) {
    ctx.beginPath();
    ctx.arc(x * scale, y * scale, 2, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  }
  canvas.dataset.points = data.points.length;
  canvas.hidden = !showKeypoints.checked;
}

showKeypoints.addEventListener("change", () => {
  for (const canvas of list.querySelectorAll("canvas.keypoints")) canvas.hidden = !showKeypoints.checked;
});

async function removeItem(item) {
  if (!(await confirmDialog(`Delete ${item.name}? Recognition stops finding it at once.`))) return;
  try {
    await api("DELETE", itemPath(collection, item.item));
    message.textContent = `Deleted ${item.name}.`;
  } catch (err) {
    message.textContent = `Not deleted: ${explain(err)}`;
  }
  await load();
}

// ---- edit ----

const dialog = $("#editor");
const nameInput = $("#editor-name");
const editorMessage = $("#editor-message");
const editorMetadata = metadataEditor({});
$("#editor-metadata").replaceWith(editorMetadata.node);
editorMetadata.node.id = "editor-metadata";
let editing = null;

editorMetadata.onchange = (state) => {
  $("#editor-save").disabled = !state.ok;
};

function openEditor(item) {
  editing = item;
  nameInput.value = item.name;
  editorMetadata.set(item.metadata || {});
  editorMessage.textContent = "";
  $("#editor-title").textContent = `Edit ${item.name}`;
  dialog.showModal();
}

$("#editor-cancel").addEventListener("click", () => dialog.close());
$("#editor-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!editorMetadata.valid()) {
    editorMessage.textContent = editorMetadata.message();
    return;
  }
  try {
    await api("PATCH", itemPath(collection, editing.item), { name: nameInput.value, metadata: editorMetadata.value() });
    dialog.close();
    message.textContent = `Saved ${nameInput.value.trim()}.`;
    await load();
  } catch (err) {
    editorMessage.textContent = explain(err);
  }
});

// ---- upload ----

const pending = $("#pending");
const pendingList = $("#pending-list");
const uploadButton = $("#upload-all");
const uploadMessage = $("#upload-message");
let uploads = [];

function nameFromFile(file) {
  return file.name.replace(/\.[^.]+$/, "").replace(/[_-]+/g, " ").trim() || "Untitled";
}

function addFiles(files) {
  for (const file of files) {
    const preview = URL.createObjectURL(file);
    const name = el("input", { class: "upload-name", value: nameFromFile(file), required: true, maxlength: 200, "aria-label": `name of ${file.name}` });
    const metadata = metadataEditor({}, `Metadata of ${file.name}`);
    const status = el("div", { class: "upload-status", role: "status" });
    const remove = el("button", { type: "button", class: "small", text: "Remove" });
    const row = el(
      "li",
      { class: "upload-row", dataset: { file: file.name } },
      el("img", { src: preview, alt: "" }),
      el("div", { class: "upload-fields" }, el("div", { class: "field" }, el("label", { text: "Name" }), name), metadata.node, status),
      remove,
    );
    const entry = { file, row, name, metadata, status, preview };
    remove.addEventListener("click", () => {
      uploads = uploads.filter((u) => u !== entry);
      URL.revokeObjectURL(preview);
      row.remove();
      refresh();
    });
    name.addEventListener("input", refresh);
    metadata.onchange = refresh;
    uploads.push(entry);
    pendingList.append(row);
  }
  uploadMessage.textContent = "";
  refresh();
}

function refresh() {
  pending.hidden = !uploads.length;
  const invalid = uploads.filter((u) => !u.metadata.valid() || !u.name.value.trim());
  uploadButton.disabled = !uploads.length || invalid.length > 0;
  uploadButton.textContent = uploads.length > 1 ? `Upload ${uploads.length} images` : "Upload";
  if (invalid.length) uploadMessage.textContent = "Fix the marked fields first.";
  else if (uploadMessage.textContent === "Fix the marked fields first.") uploadMessage.textContent = "";
}

async function uploadAll() {
  uploadButton.disabled = true;
  let added = 0;
  const failed = [];
  for (const entry of [...uploads]) {
    entry.status.textContent = "uploading…";
    entry.row.dataset.state = "uploading";
    const form = new FormData();
    form.append("image", entry.file, entry.file.name);
    form.append("name", entry.name.value.trim());
    form.append("metadata", JSON.stringify(entry.metadata.value()));
    try {
      await api("POST", `/v1/collections/${enc(collection)}/items`, form);
      added += 1;
      uploads = uploads.filter((u) => u !== entry);
      URL.revokeObjectURL(entry.preview);
      entry.row.remove();
    } catch (err) {
      entry.status.textContent = explain(err);
      entry.row.dataset.state = "failed";
      failed.push(entry);
    }
  }
  uploadMessage.textContent =
    `${added} image${added === 1 ? "" : "s"} added` + (failed.length ? `, ${failed.length} refused (see above).` : ".");
  refresh();
  await load();
}

uploadButton.addEventListener("click", uploadAll);
$("#clear-pending").addEventListener("click", () => {
  for (const u of uploads) URL.revokeObjectURL(u.preview);
  uploads = [];
  pendingList.replaceChildren();
  uploadMessage.textContent = "";
  refresh();
});
dropZone($("#dropzone"), $("#file-input"), addFiles);

load();
