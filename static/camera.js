// The camera page: camera -> JPEG frames -> stream -> overlay; photo upload when there is no camera.

import { CatchlightClient, pageToken, recognizePhoto } from "./catchlight.js";
import { Overlay, renderCardContent, safeUrl } from "./overlay.js";
import { Announcer, browserSpeaker } from "./speech.js";

const JPEG_QUALITY = 0.8;
const STATS_WINDOW_MS = 2000;

const page = document.body;
const collection = page.dataset.collection;
const $ = (selector) => document.querySelector(selector);

const video = $("#video");
const cameraLayer = $("#camera-overlay");
const photo = $("#photo");
const photoLayer = $("#photo-overlay");
const statusBox = $("#status");
const statusText = $("#status-text");
const fpsOut = $("#fps");
const latencyOut = $("#latency");
const connectionOut = $("#connection");
const photoInput = $("#photo-input");
const details = $("#details");

const cameraOverlay = new Overlay(cameraLayer, video, { onselect: showDetails });
const photoOverlay = new Overlay(photoLayer, photo, { holdMs: Infinity, onselect: showDetails });
const token = pageToken();
const client = new CatchlightClient(collection, { token });
const canvas = document.createElement("canvas");

let mode = "starting"; // "camera" | "photo" | "starting" | "no-camera"
let cameraLive = false;
let encoding = false;
// A camera frame is sent at most once: requestVideoFrameCallback counts the frames the video presents
// (where it is missing, a changed currentTime stands for a new frame).
const countsFrames = "requestVideoFrameCallback" in HTMLVideoElement.prototype;
let presentedFrames = 0;
let sentFrame = -1;
// When the frame on screen was taken (rVFC clock, ms), and when each frame in flight was taken:
// the overlay moves results forward by the difference (Overlay.predict).
let shownFrameAt = null;
const takenAt = new Map();
const resultTimes = [];

// ---- status and stats ------------------------------------------------------------------------

function setStatus(state, message) {
  statusBox.dataset.state = state;
  statusText.textContent = message;
  statusBox.hidden = !message;
}

function updateStats() {
  const now = performance.now();
  while (resultTimes.length && now - resultTimes[0] > STATS_WINDOW_MS) resultTimes.shift();
  const fps = resultTimes.length > 1 ? ((resultTimes.length - 1) * 1000) / (now - resultTimes[0]) : 0;
  fpsOut.textContent = fps ? fps.toFixed(1) : "–";
  fpsOut.dataset.value = fps.toFixed(2);
  const latency = client.latencyMs;
  latencyOut.textContent = latency === null ? "–" : `${Math.round(latency)}`;
  latencyOut.dataset.value = latency === null ? "" : latency.toFixed(1);
}
setInterval(updateStats, 500);

// ---- details sheet (tap a card) -------------------------------------------------------------

function showDetails(item, { play = false } = {}) {
  const body = $("#details-body");
  const card = document.createElement("div");
  renderCardContent(card, item);
  const list = document.createElement("dl");
  for (const [key, value] of Object.entries(item.metadata || {})) {
    if (key === "caption" || key === "action") continue;
    const dt = document.createElement("dt");
    dt.textContent = key;
    const dd = document.createElement("dd");
    dd.textContent = typeof value === "string" ? value : JSON.stringify(value);
    list.append(dt, dd);
  }
  const score = document.createElement("p");
  score.className = "muted";
  score.textContent = `score ${(item.score ?? 0).toFixed(2)} · ${item.inliers ?? 0} inliers`;
  body.replaceChildren(...card.childNodes, list, score);
  const note = body.querySelector(".card-note");
  if (note) note.hidden = false;
  body.querySelector("button[data-action]")?.remove();
  const action = (item.metadata || {}).action;
  if (action && action.type === "video" && safeUrl(action.url)) {
    const player = document.createElement("video");
    player.src = safeUrl(action.url);
    player.controls = true;
    player.playsInline = true;
    player.dataset.action = "video";
    player.className = "sheet-video";
    body.insertBefore(player, list);
    if (play) player.play().catch(() => {});
  }
  details.hidden = false;
}
document.addEventListener("catchlight:action", (event) => showDetails(event.detail.item, { play: true }));
function closeDetails() {
  details.hidden = true;
  details.querySelector("video")?.pause();
}
$("#details-close").addEventListener("click", closeDetails);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeDetails();
});

// ---- spoken results ----------------------------------------------------------------------------

const speakSwitch = $("#speak-switch");
const speaker = browserSpeaker();
const announcer = speaker ? new Announcer(speaker) : null;
let speaking = false;

function setSpeaking(on, { announce = true } = {}) {
  speaking = Boolean(on && announcer);
  speakSwitch.setAttribute("aria-checked", String(speaking));
  page.dataset.speaking = speaking;
  try {
    localStorage.setItem("catchlight.speak", speaking ? "on" : "off");
  } catch {
    // storage may be off (private mode): the switch still works for this page
  }
  if (!announcer) return;
  announcer.reset();
  if (!speaking) window.speechSynthesis.cancel();
  else if (announce) speaker("Spoken results on");
}
if (!announcer) {
  speakSwitch.disabled = true;
  speakSwitch.title = "This browser cannot speak";
} else {
  speakSwitch.addEventListener("click", () => setSpeaking(!speaking));
  let saved = null;
  try {
    saved = localStorage.getItem("catchlight.speak");
  } catch {
    saved = null;
  }
  if (saved === "on") setSpeaking(true, { announce: false });
}

// ---- camera ----------------------------------------------------------------------------------

function cameraProblem(err) {
  if (!window.isSecureContext) {
    return ["insecure", "The camera only works over HTTPS or on localhost. You can recognize a photo instead."];
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return ["unsupported", "This browser gives no access to a camera. You can recognize a photo instead."];
  }
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return ["refused", "Camera access was refused. Allow the camera for this site and reload, or recognize a photo instead."];
    case "NotFoundError":
    case "OverconstrainedError":
      return ["absent", "No camera was found. You can recognize a photo instead."];
    case "NotReadableError":
      return ["busy", "The camera is in use by another application. Close it and reload, or recognize a photo instead."];
    default:
      return ["error", `The camera could not start (${(err && err.message) || err}). You can recognize a photo instead.`];
  }
}

async function startCamera() {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return noCamera(cameraProblem(null));
  }
  setStatus("starting", "Starting the camera…");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
    });
  } catch (err) {
    return noCamera(cameraProblem(err));
  }
  video.srcObject = stream;
  await video.play().catch(() => {});
  cameraLive = true;
  page.dataset.camera = "live";
  showCamera();
  stream.getVideoTracks()[0]?.addEventListener("ended", () => {
    cameraLive = false;
    noCamera(["ended", "The camera stopped. Reload to start it again, or recognize a photo instead."]);
  });
}

function noCamera([state, message]) {
  cameraLive = false;
  page.dataset.camera = state;
  mode = "no-camera";
  page.dataset.mode = mode;
  setStatus(state, message);
  $("#status-upload").hidden = false;
}

function showCamera() {
  mode = "camera";
  page.dataset.mode = mode;
  photoOverlay.clear();
  setStatus("live", "");
  pump();
}

/**
 * Send the newest camera frame if the client has room for one.
 *
 * Where frames are counted, frames are taken only in the video-frame callback
 * (`inFrameCallback`): there the canvas gets exactly the frame the callback
 * describes, so its capture time is known; elsewhere a newer frame may already
 * be in the element. Otherwise every call may take the current frame.
 */
async function pump(inFrameCallback = false) {
  if (countsFrames && !inFrameCallback) return;
  if (mode !== "camera" || !cameraLive || encoding || !client.ready) return;
  if (video.readyState < 2 || !video.videoWidth) return;
  const frame = countsFrames ? presentedFrames : video.currentTime;
  if (frame === sentFrame) return;
  encoding = true;
  try {
    sentFrame = frame;
    const frameTakenAt = shownFrameAt;
    const scale = Math.min(1, client.frameMaxSide / Math.max(video.videoWidth, video.videoHeight));
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
    if (blob && client.ready) {
      const id = client.sendFrame(new Uint8Array(await blob.arrayBuffer()));
      if (frameTakenAt !== null) takenAt.set(id, frameTakenAt);
    }
  } catch (err) {
    console.warn("frame not sent", err);
  } finally {
    encoding = false;
  }
}

// Offer each new video frame to the stream (every animation frame where frames are not counted).
function watchFrames() {
  const next = countsFrames ? (cb) => video.requestVideoFrameCallback(cb) : requestAnimationFrame;
  const tick = (_now, metadata) => {
    if (countsFrames && metadata) {
      presentedFrames = metadata.presentedFrames;
      shownFrameAt = metadata.captureTime ?? metadata.presentationTime;
      if (mode === "camera") cameraOverlay.predict(shownFrameAt);
    }
    pump(true);
    next(tick);
  };
  next(tick);
}

// ---- stream ----------------------------------------------------------------------------------

client.onhello = () => {
  connectionOut.textContent = "connected";
  connectionOut.dataset.state = "open";
  pump();
};
client.onresult = (result) => {
  resultTimes.push(performance.now());
  const capturedAt = takenAt.get(result.id) ?? null;
  for (const id of takenAt.keys()) if (id <= result.id) takenAt.delete(id);
  if (mode === "camera") {
    cameraOverlay.update(result, { capturedAt });
    if (shownFrameAt !== null) cameraOverlay.predict(shownFrameAt);
    page.dataset.items = cameraOverlay.size;
    if (speaking) announcer.update(result);
  }
  pump();
};
client.onskipped = () => pump();
client.onerror = (error) => {
  if (error.code === "unknown_collection") {
    const banner = $("#stream-problem");
    banner.replaceChildren(`There is no collection “${collection}”. `);
    const link = document.createElement("a");
    link.href = "/collection";
    link.textContent = "Pick one on the collection page.";
    banner.append(link);
    banner.hidden = false;
  } else {
    console.warn("catchlight:", error.code, error.message);
  }
  pump();
};
client.onclose = ({ willRetry }) => {
  connectionOut.textContent = willRetry ? "reconnecting…" : "disconnected";
  connectionOut.dataset.state = "closed";
  cameraOverlay.clear();
};

// ---- photo upload ----------------------------------------------------------------------------

const captureInput = $("#capture-input");

function openPicker(event) {
  const input = event.currentTarget.dataset.pickPhoto === "capture" ? captureInput : photoInput;
  input.value = "";
  input.click();
}
for (const button of document.querySelectorAll("[data-pick-photo]")) button.addEventListener("click", openPicker);
for (const input of [photoInput, captureInput]) input.addEventListener("change", () => recognizeFile(input.files && input.files[0]));

async function recognizeFile(file) {
  if (!file) return;
  mode = "photo";
  page.dataset.mode = mode;
  cameraOverlay.clear();
  photoOverlay.clear();
  delete page.dataset.photoItems;
  if (photo.src.startsWith("blob:")) URL.revokeObjectURL(photo.src);
  photo.src = URL.createObjectURL(file);
  await photo.decode().catch(() => {});
  $("#photo-message").textContent = "Recognizing…";
  try {
    const result = await recognizePhoto(file, collection, { token });
    photoOverlay.update({ ...result, id: 0 });
    if (speaking) {
      announcer.reset();
      announcer.update(result);
    }
    const n = (result.items || []).length;
    $("#photo-message").textContent = n
      ? `Found ${(result.items || []).map((i) => i.name).join(", ")}`
      : "No item of this collection was found in the photo.";
    page.dataset.photoItems = n;
  } catch (err) {
    $("#photo-message").textContent = `The photo could not be recognized: ${err.message}`;
    page.dataset.photoItems = "error";
  }
}

$("#photo-back").addEventListener("click", () => {
  if (cameraLive) showCamera();
  else {
    photoOverlay.clear();
    noCamera([page.dataset.camera, statusText.textContent]);
  }
});

// ---- layout ----------------------------------------------------------------------------------

new ResizeObserver(() => {
  cameraOverlay.layout();
  photoOverlay.layout();
}).observe(document.documentElement);
video.addEventListener("resize", () => cameraOverlay.layout());
photo.addEventListener("load", () => photoOverlay.layout());

for (const a of document.querySelectorAll("a[data-keep-collection]")) {
  a.href = `${a.getAttribute("href")}?collection=${encodeURIComponent(collection)}`;
}

client.connect().catch(() => {});
watchFrames();
startCamera();
