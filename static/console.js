// What the console pages share: calls to the HTTP API (docs/api.md), small DOM helpers,
// a JSON metadata editor that validates as you type, and a drop zone for image files.

import { pageToken, withToken } from "./catchlight.js";

export const enc = encodeURIComponent;

/** The credential the console was opened with (`?token=`), sent with every call; null on an open server. */
export const token = pageToken();

/** `?token=` (or `&token=`) for URLs the browser fetches by itself, such as <img src>. */
export function credentialQuery(separator = "&") {
  return token ? `${separator}token=${enc(token)}` : "";
}

/** An API error: HTTP `status`, the server's error `code` and `message`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the API; resolves with the JSON body (null for 204), rejects with ApiError. */
export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (body instanceof FormData || body instanceof Blob) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, withToken(token, init));
  if (response.status === 204) return null;
  const reply = await response.json().catch(() => null);
  if (!response.ok) {
    const error = reply && reply.error ? reply.error : { code: "http_error", message: `HTTP ${response.status}` };
    throw new ApiError(response.status, error.code, error.message);
  }
  return reply;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== undefined && c !== null));
  return node;
}

export const itemPath = (collection, item) => `/v1/collections/${enc(collection)}/items/${enc(item)}`;

/** A short, human message for a failed call. */
export function explain(err) {
  return err instanceof ApiError ? `${err.message} (${err.code})` : String(err.message || err);
}

// ---- JSON metadata editor ----

const METADATA_LIMIT = 16 * 1024;

/** Whether `text` is acceptable item metadata: {ok, value} or {ok: false, message}. Empty means {}. */
export function checkMetadata(text) {
  if (!text.trim()) return { ok: true, value: {} };
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, message: `Not valid JSON: ${where(text, err)}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, message: "Metadata must be a JSON object: { \"key\": value, … }" };
  }
  const size = new TextEncoder().encode(JSON.stringify(value)).length;
  if (size > METADATA_LIMIT) return { ok: false, message: `Metadata is ${size} bytes; at most ${METADATA_LIMIT}` };
  return { ok: true, value };
}

function where(text, err) {
  // V8 says "... at position N" (and sometimes "(line L column C)"); turn a position into line and column.
  const message = String(err.message).replace(/^JSON\.parse: /, "");
  const found = /position (\d+)/.exec(message);
  if (!found || /line \d+/.test(message)) return message;
  const before = text.slice(0, Number(found[1]));
  const line = before.split("\n").length;
  const column = before.length - before.lastIndexOf("\n");
  return `${message.replace(/ in JSON at position \d+.*$/, "")} at line ${line}, column ${column}`;
}

/**
 * A textarea for item metadata that checks its text on every keystroke.
 * Returns {node, textarea, valid(), value(), set(obj), onchange}; `node` shows the error under the field.
 */
export function metadataEditor(initial = {}, label = "Metadata (JSON object)") {
  const id = `metadata-${Math.random().toString(36).slice(2, 8)}`;
  const textarea = el("textarea", {
    id,
    class: "json-editor",
    rows: 5,
    spellcheck: "false",
    autocomplete: "off",
    "aria-describedby": `${id}-status`,
  });
  const status = el("div", { id: `${id}-status`, class: "json-status", role: "status", "aria-live": "polite" });
  const node = el("div", { class: "field" }, el("label", { for: id, text: label }), textarea, status);
  const editor = { node, textarea, onchange: null };
  let state = { ok: true, value: {} };
  const check = () => {
    state = checkMetadata(textarea.value);
    textarea.classList.toggle("invalid", !state.ok);
    textarea.setAttribute("aria-invalid", String(!state.ok));
    status.textContent = state.ok ? "✓ valid JSON object" : state.message;
    status.dataset.state = state.ok ? "ok" : "invalid";
    if (editor.onchange) editor.onchange(state);
  };
  textarea.addEventListener("input", check);
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Tab" && !event.shiftKey) {
      // Indent instead of leaving the field: JSON is easier to write with indentation.
      event.preventDefault();
      textarea.setRangeText("  ", textarea.selectionStart, textarea.selectionEnd, "end");
      check();
    }
  });
  editor.valid = () => state.ok;
  editor.value = () => state.value;
  editor.message = () => (state.ok ? "" : state.message);
  editor.set = (value) => {
    textarea.value = value && Object.keys(value).length ? JSON.stringify(value, null, 2) : "{}";
    check();
  };
  editor.set(initial);
  return editor;
}

// ---- drop zone ----

/** Make `zone` accept dropped image files (and clicks that open `input`); calls `onfiles(File[])`. */
export function dropZone(zone, input, onfiles) {
  const images = (list) => [...list].filter((f) => f.type.startsWith("image/") || /\.(jpe?g|png|webp|bmp|tiff?|gif)$/i.test(f.name));
  zone.addEventListener("click", (event) => {
    if (event.target === zone || event.target.closest(".dropzone-text")) input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("dragging");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = images(event.dataTransfer.files);
    if (files.length) onfiles(files);
  });
  input.addEventListener("change", () => {
    const files = images(input.files);
    input.value = "";
    if (files.length) onfiles(files);
  });
}

/** A modal <dialog> asking to confirm; resolves true when confirmed. */
export function confirmDialog(question, action = "Delete") {
  return new Promise((resolve) => {
    const dialog = el(
      "dialog",
      { class: "confirm" },
      el("p", { text: question }),
      el(
        "div",
        { class: "actions" },
        el("button", { type: "button", class: "danger", "data-answer": "yes", text: action }),
        el("button", { type: "button", "data-answer": "no", text: "Cancel" }),
      ),
    );
    dialog.addEventListener("click", (event) => {
      const answer = event.target.dataset && event.target.dataset.answer;
      if (answer) dialog.close(answer);
    });
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A number with thin-space thousands: 12 345. */
export function count(n) {
  return Number(n || 0).toLocaleString("en-US").replace(/,/g, "\u202f");
}
