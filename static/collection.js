// The collection page: the items of one collection, with a switcher and a full-screen view of each reference.

import { pageToken, withToken } from "./catchlight.js";

const collection = document.body.dataset.collection;
const token = pageToken();
const $ = (selector) => document.querySelector(selector);
const list = $("#items");
const message = $("#message");
const viewer = $("#viewer");
const viewerImage = $("#viewer-image");
let items = [];
let shownIndex = -1;

const enc = encodeURIComponent;

async function getJson(url) {
  const response = await fetch(url, withToken(token, { headers: { Accept: "application/json" } }));
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body && body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function thumbnailUrl(item) {
  // An <img> cannot send headers: a credential goes in the query string.
  const credential = token ? `&token=${enc(token)}` : "";
  return `/v1/collections/${enc(collection)}/items/${enc(item.item)}/thumbnail?v=${item.updated || ""}${credential}`;
}

function fact(label, value) {
  const span = el("span");
  span.append(`${label} `, el("b", "", value));
  return span;
}

function tile(item, index) {
  const li = el("li", "tile");
  li.dataset.item = item.item;
  const thumb = el("button", "thumb");
  thumb.type = "button";
  thumb.title = `Show ${item.name} full screen`;
  const img = el("img");
  img.src = thumbnailUrl(item);
  img.alt = item.name;
  img.loading = "lazy";
  img.decoding = "async";
  thumb.append(img);
  thumb.addEventListener("click", () => show(index));

  const info = el("div", "info");
  info.append(el("div", "name", item.name));
  const metadata = item.metadata && typeof item.metadata === "object" ? item.metadata : {};
  if (typeof metadata.caption === "string") info.append(el("div", "caption", metadata.caption));

  const facts = el("div", "facts");
  const quality = el("span", "quality");
  const meter = el("meter");
  meter.min = 0;
  meter.max = 1;
  meter.low = 0.4;
  meter.high = 0.7;
  meter.optimum = 1;
  meter.value = item.quality ?? 0;
  quality.append("quality ", meter, el("b", "", (item.quality ?? 0).toFixed(2)));
  facts.append(quality, fact("keypoints", String(item.keypoints ?? "?")), fact("size", `${item.width}×${item.height}`));
  info.append(facts);

  const action = metadata.action;
  if (action && action.type === "url") info.append(el("div", "caption", `Opens ${action.url}`));
  if (action && action.type === "text") info.append(el("div", "caption", `Note: ${action.text}`));

  const rest = Object.fromEntries(Object.entries(metadata).filter(([key]) => key !== "caption"));
  if (Object.keys(rest).length) {
    const details = el("details");
    details.append(el("summary", "", "metadata"), el("pre", "", JSON.stringify(rest, null, 2)));
    info.append(details);
  }
  li.append(thumb, info);
  return li;
}

// ---- full-screen reference ----

function show(index) {
  if (!items.length) return;
  shownIndex = (index + items.length) % items.length;
  const item = items[shownIndex];
  viewerImage.src = thumbnailUrl(item);
  viewerImage.alt = item.name;
  viewer.hidden = false;
  if (document.fullscreenEnabled && !document.fullscreenElement) viewer.requestFullscreen().catch(() => {});
}

function hide() {
  viewer.hidden = true;
  shownIndex = -1;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
}

viewer.addEventListener("click", hide);
document.addEventListener("fullscreenchange", () => {
  if (!document.fullscreenElement && !viewer.hidden) hide();
});
document.addEventListener("keydown", (event) => {
  if (viewer.hidden) return;
  if (event.key === "Escape") hide();
  else if (event.key === "ArrowRight") show(shownIndex + 1);
  else if (event.key === "ArrowLeft") show(shownIndex - 1);
});

// ---- loading ----

async function loadSwitcher() {
  const switcher = $("#switcher");
  try {
    const { collections } = await getJson("/v1/collections");
    const names = collections.map((c) => c.collection);
    if (!names.includes(collection)) names.unshift(collection);
    switcher.replaceChildren(
      ...names.map((name) => {
        const info = collections.find((c) => c.collection === name);
        const option = el("option", "", info ? `${name} (${info.items})` : name);
        option.value = name;
        option.selected = name === collection;
        return option;
      }),
    );
  } catch (err) {
    console.warn("collections not listed", err);
  }
  switcher.addEventListener("change", () => {
    window.location.search = `?collection=${enc(switcher.value)}`;
  });
}

async function loadItems() {
  try {
    const body = await getJson(`/v1/collections/${enc(collection)}/items`);
    items = body.items;
    list.replaceChildren(...items.map(tile));
    message.textContent = items.length
      ? `${items.length} item${items.length === 1 ? "" : "s"}`
      : "This collection has no items yet. Add some with POST /v1/collections/{collection}/items or python -m matcher import.";
    document.body.dataset.items = items.length;
  } catch (err) {
    message.textContent = `The collection could not be loaded: ${err.message}`;
    document.body.dataset.items = "error";
  }
}

loadSwitcher();
loadItems();
