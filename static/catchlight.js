// Catchlight browser client: the camera stream (frames out, one reply per frame back, docs/protocol.md),
// one-off photo recognition and video scans over HTTP (docs/api.md). Documented in docs/javascript.md.
//
// Reusable without the camera page: it knows the wire format and the pacing
// rule, nothing about the DOM. Messages are msgpack maps; the msgpack library
// is the npm package @msgpack/msgpack, served by the server at
// /vendor/msgpack/msgpack.min.js, which defines the global `MessagePack`.

const RTT_WINDOW = 20;

function msgpack() {
  const lib = globalThis.MessagePack;
  if (!lib) throw new Error("MessagePack is not loaded: include /vendor/msgpack/msgpack.min.js first");
  return lib;
}

/**
 * The credential the page was opened with (`?token=...`), kept for this tab in sessionStorage and
 * taken out of the address bar so it is not shared by copying the URL. Null when there is none
 * (a local server without credentials needs none).
 */
export function pageToken() {
  const url = new URL(window.location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem("catchlight-token", given);
    url.searchParams.delete("token");
    history.replaceState(null, "", url);
  }
  return sessionStorage.getItem("catchlight-token");
}

/** Fetch options that carry `token` as `Authorization: Bearer` (unchanged when there is none). */
export function withToken(token, options = {}) {
  if (!token) return options;
  return { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token}` } };
}

/** The websocket address of the stream for `collection`, on the server that served this page. */
export function streamUrl(collection, base = window.location) {
  const scheme = base.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${base.host}/v1/stream?collection=${encodeURIComponent(collection)}`;
}

/**
 * A connection to /v1/stream.
 *
 * Pacing: `ready` is true while fewer frames are unanswered than `depth`.
 * Depth starts at 1 (send the next frame when the reply arrives). When more
 * of the round trip is spent outside the server (network, encoding) than in
 * it, a second frame is allowed in flight so the worker is not idle during the
 * transfer; a `skipped` reply means the server had to drop one, so depth goes
 * back to 1.
 *
 * Callbacks (assign functions): onhello(hello), onresult(result),
 * onskipped(reply), onerror(reply), onclose({code, reason, willRetry}).
 * Every result/skipped/error reply that answers a frame carries `rtt_ms`.
 */
export class CatchlightClient {
  constructor(collection, { url = streamUrl(collection), maxDepth = 2, reconnect = true, token = null } = {}) {
    this.collection = collection;
    this.token = token;
    this.url = url;
    this.maxDepth = maxDepth;
    this.reconnect = reconnect;
    this.depth = 1;
    this.hello = null;
    this.socket = null;
    this.nextId = 1;
    this.pending = new Map(); // frame id -> performance.now() when sent
    this.rtts = [];
    this.retryDelay = 500;
    this.closedByUser = false;
    this.onhello = this.onresult = this.onskipped = this.onerror = this.onclose = null;
  }

  /** Open the socket; resolves with the server's hello, rejects if the socket closes first. */
  connect() {
    this.closedByUser = false;
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url);
      socket.binaryType = "arraybuffer";
      this.socket = socket;
      // Browsers cannot set headers on a websocket: the credential goes as the first message.
      if (this.token) socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: this.token }));
      socket.onmessage = (event) => {
        const message = this._decode(event.data);
        if (message === null) return;
        if (message.type === "hello") {
          this.hello = message;
          this.retryDelay = 500;
          resolve(message);
        }
        this._dispatch(message);
      };
      socket.onclose = (event) => {
        if (this.socket !== socket) return;
        this.socket = null;
        this.hello = null;
        this.pending.clear();
        // 44xx: the server refused this request (unknown collection): retrying will not help.
        const willRetry = this.reconnect && !this.closedByUser && !(event.code >= 4400 && event.code < 4500);
        this._call(this.onclose, { code: event.code, reason: event.reason, willRetry });
        reject(new Error(event.reason || `connection closed (${event.code})`));
        if (willRetry) {
          setTimeout(() => this.connect().catch(() => {}), this.retryDelay);
          this.retryDelay = Math.min(this.retryDelay * 2, 8000);
        }
      };
    });
  }

  close() {
    this.closedByUser = true;
    if (this.socket) this.socket.close(1000, "bye");
  }

  get connected() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN && this.hello !== null;
  }

  get inFlight() {
    return this.pending.size;
  }

  /** True when a new frame may be sent now. */
  get ready() {
    return this.connected && this.pending.size < this.depth;
  }

  /** Largest image side the server matches at; larger frames only cost bandwidth. */
  get frameMaxSide() {
    return (this.hello && this.hello.frame_max_side) || 640;
  }

  /** Median round trip of the recent replies, in milliseconds (null before the first). */
  get latencyMs() {
    if (this.rtts.length === 0) return null;
    const sorted = [...this.rtts].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  /** Send one encoded image (Uint8Array of JPEG/PNG/WebP bytes); returns its frame id. */
  sendFrame(image) {
    if (!this.connected) throw new Error("not connected");
    const id = this.nextId++;
    this.pending.set(id, performance.now());
    this.socket.send(msgpack().encode({ type: "frame", id, image }));
    return id;
  }

  _decode(data) {
    try {
      const message = typeof data === "string" ? JSON.parse(data) : msgpack().decode(new Uint8Array(data));
      return message && typeof message === "object" ? message : null;
    } catch (err) {
      console.warn("catchlight: undecodable message", err);
      return null;
    }
  }

  _dispatch(message) {
    if (message.id !== undefined && message.id !== null && this.pending.has(message.id)) {
      const sentAt = this.pending.get(message.id);
      this.pending.delete(message.id);
      message.rtt_ms = performance.now() - sentAt;
      this.rtts.push(message.rtt_ms);
      if (this.rtts.length > RTT_WINDOW) this.rtts.shift();
      this._adapt(message);
    }
    if (message.type === "hello") this._call(this.onhello, message);
    else if (message.type === "result") this._call(this.onresult, message);
    else if (message.type === "skipped") this._call(this.onskipped, message);
    else if (message.type === "error") this._call(this.onerror, message);
  }

  _adapt(message) {
    if (message.type === "skipped") {
      this.depth = 1;
    } else if (message.type === "result" && message.timing) {
      const server = message.timing.total_ms || 0;
      const outside = message.rtt_ms - server;
      this.depth = outside > server ? this.maxDepth : 1;
    }
  }

  _call(callback, value) {
    if (typeof callback !== "function") return;
    try {
      callback(value);
    } catch (err) {
      console.error("catchlight: callback failed", err);
    }
  }
}

/** An HTTP API refusal: `status` (HTTP), `code` (docs/api.md, program against it) and `message` (for people). */
export class CatchlightError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.name = "CatchlightError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

async function requestJson(url, options = {}) {
  const response = await fetch(url, options);
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const { code = "http_error", message = `HTTP ${response.status}`, ...details } = (body && body.error) || {};
    throw new CatchlightError(response.status, code, message, details);
  }
  return body;
}

/**
 * Recognize one photo over HTTP (POST /v1/recognize): a File or Blob of a JPEG, PNG or WebP image.
 * Resolves with the result ({width, height, items, timing}); rejects with a CatchlightError.
 * `baseUrl` is the server's address when the page is served from elsewhere (default: this page's server);
 * `token` a credential (see pageToken), sent as `Authorization: Bearer`. The scan helpers take both too.
 */
export async function recognizePhoto(file, collection, { baseUrl = "", token = null } = {}) {
  return requestJson(
    `${baseUrl}/v1/recognize?collection=${encodeURIComponent(collection)}`,
    withToken(token, { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } }),
  );
}

// ---- video scans (docs/api.md, "Video scans") ---------------------------------------------------

/**
 * Upload a video (File or Blob) and queue a scan of it against `collection`; resolves with the
 * queued scan (its id is `scan.scan`). The body is sent raw, so the server writes it to disk as it arrives.
 */
export async function startScan(file, collection, { sampleRate = null, filename = file.name || "video", baseUrl = "", token = null } = {}) {
  const params = new URLSearchParams({ collection, filename });
  if (sampleRate !== null) params.set("sample_rate", String(sampleRate));
  return requestJson(
    `${baseUrl}/v1/scans?${params}`,
    withToken(token, { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } }),
  );
}

/** One scan: state, progress and, per item, its appearances ({start, end, peak_score, ...} in seconds). */
export async function getScan(id, { baseUrl = "", token = null } = {}) {
  return requestJson(`${baseUrl}/v1/scans/${encodeURIComponent(id)}`, withToken(token));
}

/** The latest scans, newest first (without their items). */
export async function listScans({ baseUrl = "", token = null } = {}) {
  return (await requestJson(`${baseUrl}/v1/scans`, withToken(token))).scans;
}

/**
 * Poll a scan until it is done or failed; calls `onprogress(scan)` after every poll and resolves
 * with the final scan. Stop early with an AbortSignal (`signal`): the promise then rejects with its reason.
 */
export async function watchScan(id, { onprogress = null, intervalMs = 500, signal = null, baseUrl = "", token = null } = {}) {
  for (;;) {
    signal?.throwIfAborted();
    const scan = await getScan(id, { baseUrl, token });
    if (typeof onprogress === "function") onprogress(scan);
    if (scan.state === "done" || scan.state === "failed") return scan;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
