// Console: try a photo against a collection and draw what matched (outline and inliers).

import { api, count, dropZone, el, enc, explain } from "./console.js";

const $ = (selector) => document.querySelector(selector);
const select = $("#collection");
const message = $("#message");
const canvas = $("#canvas");
const showInliers = $("#show-inliers");
const COLORS = ["#3ddc97", "#ffc53d", "#5ab0ff", "#ff7ab6", "#c18cff", "#ff8a4c"];
let last = null; // {image, result}

async function loadCollections() {
  const wanted = document.body.dataset.collection;
  try {
    const { collections } = await api("GET", "/v1/collections");
    const names = collections.map((c) => c.collection);
    if (wanted && !names.includes(wanted)) names.unshift(wanted);
    select.replaceChildren(...names.map((name) => el("option", { value: name, text: name, selected: name === wanted })));
  } catch (err) {
    message.textContent = `Collections not listed: ${explain(err)}`;
  }
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser cannot show this file as an image"));
    image.src = URL.createObjectURL(file);
  });
}

async function tryPhoto(files) {
  const file = files[0];
  const collection = select.value;
  message.textContent = `Looking for ${collection}'s items in ${file.name}…`;
  document.body.dataset.state = "working";
  try {
    const [image, result] = await Promise.all([
      loadImage(file),
      api("POST", `/v1/recognize?collection=${enc(collection)}&inliers=1`, file, {
        "Content-Type": file.type || "application/octet-stream",
      }),
    ]);
    last = { image, result };
    draw();
    list(result, collection);
    const n = result.items.length;
    message.textContent = n
      ? `Found ${n} item${n === 1 ? "" : "s"} in ${Math.round(result.timing.total_ms)} ms.`
      : `Nothing of ${collection} was found in this photo (${Math.round(result.timing.total_ms)} ms).`;
    document.body.dataset.state = "done";
  } catch (err) {
    message.textContent = `Not recognized: ${explain(err)}`;
    document.body.dataset.state = "failed";
  }
}

function draw() {
  const { image, result } = last;
  // Draw at the size the server measured (the image as sent, after its EXIF orientation).
  canvas.width = result.width;
  canvas.height = result.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, result.width, result.height);
  const unit = Math.max(result.width, result.height) / 640;
  let inliers = 0;
  result.items.forEach((match, i) => {
    const color = COLORS[i % COLORS.length];
    if (showInliers.checked) {
      for (const [x, y] of match.inlier_points || []) {
        ctx.beginPath();
        ctx.arc(x, y, 2.5 * unit, 0, 2 * Math.PI);
        ctx.fillStyle = color;
        ctx.fill();
        ctx.lineWidth = unit;
        ctx.strokeStyle = "rgba(0,0,0,0.7)";
        ctx.stroke();
        inliers += 1;
      }
    }
    ctx.beginPath();
    match.corners.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.lineJoin = "round";
    ctx.lineWidth = 6 * unit;
    ctx.strokeStyle = "rgba(0,0,0,0.55)";
    ctx.stroke();
    ctx.lineWidth = 3 * unit;
    ctx.strokeStyle = color;
    ctx.stroke();
    // The label sits above the item's top-left corner, kept inside the picture.
    ctx.font = `600 ${Math.round(16 * unit)}px system-ui, sans-serif`;
    const label = `${i + 1}. ${match.name}`;
    const [w, h] = [ctx.measureText(label).width + 12 * unit, 22 * unit];
    const x = Math.min(Math.max(0, match.corners[0][0]), result.width - w);
    const y = Math.min(Math.max(h + 2 * unit, match.corners[0][1] - 2 * unit), result.height);
    ctx.fillStyle = color;
    ctx.fillRect(x, y - h, w, h);
    ctx.fillStyle = "#111418";
    ctx.fillText(label, x + 6 * unit, y - 6 * unit);
  });
  canvas.dataset.outlines = result.items.length;
  canvas.dataset.inliers = inliers;
  $("#result").hidden = false;
}

function list(result, collection) {
  $("#matches").replaceChildren(
    ...result.items.map((match, i) =>
      el(
        "li",
        { dataset: { item: match.item }, style: `--swatch: ${COLORS[i % COLORS.length]}` },
        el("a", { class: "name", href: `/console/collections/${enc(collection)}#${enc(match.item)}`, text: match.name }),
        el("span", { class: "facts" },
          "score ", el("b", { text: match.score.toFixed(2) }),
          " · inliers ", el("b", { class: "inlier-count", text: count(match.inliers) })),
      ),
    ),
  );
}

showInliers.addEventListener("change", () => last && draw());
dropZone($("#dropzone"), $("#file-input"), tryPhoto);
loadCollections();
