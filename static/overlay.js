// Drawing recognized items over a <video> or <img>: an outline and a card that
// lies in the object's plane.
//
// Coordinates: the server answers in *frame pixels* (the image it was sent,
// result.width x result.height). The media element shows the source at its
// intrinsic size (videoWidth/naturalWidth) scaled into its CSS box according to
// `object-fit`. `frameToBox` is that chain as one 3x3 matrix; the card's
// CSS matrix3d is frameToBox * homography * cardToReference.

const SVG_NS = "http://www.w3.org/2000/svg";

// ---- 3x3 matrices, row-major arrays of 9 numbers -------------------------------------------

export function multiply(a, b) {
  const out = new Array(9);
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 3; c++) {
      out[r * 3 + c] = a[r * 3] * b[c] + a[r * 3 + 1] * b[3 + c] + a[r * 3 + 2] * b[6 + c];
    }
  }
  return out;
}

export function invert(m) {
  const [a, b, c, d, e, f, g, h, i] = m;
  const A = e * i - f * h;
  const B = -(d * i - f * g);
  const C = d * h - e * g;
  const det = a * A + b * B + c * C;
  if (Math.abs(det) < 1e-12) return null;
  const adj = [A, -(b * i - c * h), b * f - c * e, B, a * i - c * g, -(a * f - c * d), C, -(a * h - b * g), a * e - b * d];
  return adj.map((v) => v / det);
}

export function apply(m, x, y) {
  const w = m[6] * x + m[7] * y + m[8];
  return [(m[0] * x + m[1] * y + m[2]) / w, (m[3] * x + m[4] * y + m[5]) / w];
}

/** The homography mapping four points `from` onto four points `to` ([[x, y] x4] each); null if degenerate. */
export function homographyFromPoints(from, to) {
  // Eight equations in h0..h7 (h8 = 1), solved by Gaussian elimination with partial pivoting.
  const rows = [];
  for (let i = 0; i < 4; i++) {
    const [x, y] = from[i];
    const [u, v] = to[i];
    rows.push([x, y, 1, 0, 0, 0, -u * x, -u * y, u]);
    rows.push([0, 0, 0, x, y, 1, -v * x, -v * y, v]);
  }
  for (let col = 0; col < 8; col++) {
    let pivot = col;
    for (let r = col + 1; r < 8; r++) if (Math.abs(rows[r][col]) > Math.abs(rows[pivot][col])) pivot = r;
    if (Math.abs(rows[pivot][col]) < 1e-10) return null;
    [rows[col], rows[pivot]] = [rows[pivot], rows[col]];
    for (let r = 0; r < 8; r++) {
      if (r === col) continue;
      const f = rows[r][col] / rows[col][col];
      for (let c = col; c < 9; c++) rows[r][c] -= f * rows[col][c];
    }
  }
  return [...rows.map((row, i) => row[8] / row[i]), 1];
}

/** CSS matrix3d() for a 2D homography (with transform-origin 0 0). */
export function matrix3d(m) {
  const n = m.map((v) => v / m[8]);
  const cols = [n[0], n[3], 0, n[6], n[1], n[4], 0, n[7], 0, 0, 1, 0, n[2], n[5], 0, n[8]];
  return `matrix3d(${cols.map((v) => (Math.abs(v) < 1e-12 ? 0 : +v.toPrecision(9))).join(",")})`;
}

// ---- frame pixels -> CSS pixels of the media element -----------------------------------------

function intrinsicSize(media) {
  if (media instanceof HTMLVideoElement) return [media.videoWidth, media.videoHeight];
  return [media.naturalWidth, media.naturalHeight];
}

/**
 * Matrix from frame pixels (frameW x frameH, what the server saw) to CSS pixels
 * relative to the media element's content box, honouring object-fit and a
 * centred object-position. Null while the media has no size yet.
 */
export function frameToBox(media, frameW, frameH) {
  const [mediaW, mediaH] = intrinsicSize(media);
  const boxW = media.clientWidth;
  const boxH = media.clientHeight;
  if (!mediaW || !mediaH || !boxW || !boxH || !frameW || !frameH) return null;
  const fit = getComputedStyle(media).objectFit || "fill";
  let sx = boxW / mediaW;
  let sy = boxH / mediaH;
  if (fit === "cover") sx = sy = Math.max(sx, sy);
  else if (fit === "contain") sx = sy = Math.min(sx, sy);
  else if (fit === "none") sx = sy = 1;
  else if (fit === "scale-down") sx = sy = Math.min(1, Math.min(sx, sy));
  const tx = (boxW - mediaW * sx) / 2;
  const ty = (boxH - mediaH * sy) / 2;
  // frame pixels -> intrinsic pixels (the frame may have been downscaled before sending)
  const fx = mediaW / frameW;
  const fy = mediaH / frameH;
  return [sx * fx, 0, tx, 0, sy * fy, ty, 0, 0, 1];
}

// ---- the overlay -----------------------------------------------------------------------------

function hostname(url) {
  try {
    return new URL(url, window.location.href).hostname || url;
  } catch {
    return url;
  }
}

/** A safe http(s) link target, or null (metadata is user-supplied). */
export function safeUrl(url) {
  try {
    const parsed = new URL(url, window.location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Fill `card` with an item's name, caption and action (the action element gets data-action):
 * `url` a link that opens in a new tab, `text` a button that shows the text, `video` a button that
 * dispatches a bubbling `catchlight:action` event with detail {item, action} for the page to play it.
 */
export function renderCardContent(card, item) {
  const metadata = item.metadata && typeof item.metadata === "object" ? item.metadata : {};
  card.replaceChildren();
  card.append(el("div", "card-name", item.name || item.item));
  if (typeof metadata.caption === "string" && metadata.caption) card.append(el("div", "card-caption", metadata.caption));
  const action = metadata.action;
  if (action && action.type === "url" && safeUrl(action.url)) {
    const link = el("a", "card-action", `Open ${hostname(action.url)} ↗`);
    link.href = safeUrl(action.url);
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.dataset.action = "url";
    card.append(link);
  } else if (action && action.type === "text" && typeof action.text === "string") {
    const button = el("button", "card-action", "Show note");
    button.type = "button";
    button.dataset.action = "text";
    const note = el("div", "card-note", action.text);
    note.hidden = true;
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      note.hidden = !note.hidden;
      button.textContent = note.hidden ? "Show note" : "Hide note";
    });
    card.append(button, note);
  } else if (action && action.type === "video" && safeUrl(action.url)) {
    // A moving card is no place to watch a video: the page shows it in a steady sheet (event catchlight:action).
    const button = el("button", "card-action", "Play video ▶");
    button.type = "button";
    button.dataset.action = "video";
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      const detail = { item, action: { type: "video", url: safeUrl(action.url) } };
      card.dispatchEvent(new CustomEvent("catchlight:action", { bubbles: true, detail }));
    });
    card.append(button);
  }
}

/**
 * Outlines and cards for the items of the latest result, drawn in `layer`
 * (an element exactly covering `media`).
 *
 * Each item's group exposes what it shows, for tests and debugging:
 * data-item, data-frame-id, data-corners (the server's corners, frame
 * pixels, JSON), data-media-corners (the same in intrinsic media pixels) and
 * data-drawn-corners (what is drawn, intrinsic media pixels: the server's
 * corners moved forward to the frame on screen, see `predict`); the SVG
 * polygon's points are CSS pixels inside the layer.
 */
export class Overlay {
  constructor(layer, media, { holdMs = 400, maxLeadMs = 100, onselect = null } = {}) {
    this.layer = layer;
    this.media = media;
    this.holdMs = holdMs; // keep an item drawn this long after a frame that missed it (no flicker)
    this.maxLeadMs = maxLeadMs; // never extrapolate a motion further ahead than this
    this.onselect = onselect;
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.svg.classList.add("outlines");
    this.cards = el("div", "cards");
    layer.replaceChildren(this.svg, this.cards);
    this.shown = new Map(); // item id -> {item, frame, seenAt, polygon, card}
    // A card whose content changes height (a revealed note) must be placed again to stay on its edge.
    this.resizes = new ResizeObserver(() => this.layout());
  }

  /**
   * Draw the items of a result (frame size result.width x result.height).
   * `capturedAt` (ms, any clock also used for `predict`) is when the frame was taken.
   */
  update(result, { capturedAt = null, now = performance.now() } = {}) {
    for (const item of result.items || []) {
      let entry = this.shown.get(item.item);
      if (!entry) entry = this._create(item);
      else if (JSON.stringify(entry.item.metadata) !== JSON.stringify(item.metadata) || entry.item.name !== item.name) {
        renderCardContent(entry.card, item);
        entry.cardWidth = 0;
      }
      const previous = entry.frame && entry.frame.width === result.width ? entry.observed : null;
      entry.item = item;
      entry.frame = { id: result.id, width: result.width, height: result.height };
      entry.seenAt = now;
      entry.observed = capturedAt === null ? null : { at: capturedAt, corners: item.corners };
      entry.velocity = null;
      if (previous && entry.observed && capturedAt > previous.at && capturedAt - previous.at < 300) {
        // Corner velocities in frame pixels per ms, between the last two frames the item was found in.
        const dt = capturedAt - previous.at;
        entry.velocity = item.corners.map(([x, y], i) => [(x - previous.corners[i][0]) / dt, (y - previous.corners[i][1]) / dt]);
      }
      entry.drawn = null;
    }
    for (const [id, entry] of this.shown) {
      if (now - entry.seenAt > this.holdMs) this._remove(id, entry);
    }
    this.layout();
  }

  clear() {
    for (const [id, entry] of this.shown) this._remove(id, entry);
  }

  get size() {
    return this.shown.size;
  }

  /** Recompute positions (after a result, or when the page is resized). */
  layout() {
    const boxW = this.media.clientWidth;
    const boxH = this.media.clientHeight;
    this.svg.setAttribute("viewBox", `0 0 ${boxW} ${boxH}`);
    this.svg.setAttribute("width", boxW);
    this.svg.setAttribute("height", boxH);
    for (const entry of this.shown.values()) this._place(entry);
  }

  /**
   * Move each outline and card to where its object is in the frame on screen
   * (taken at `shownAt`): the result belongs to an older frame, so the object
   * has moved on by its recent velocity times the age of that frame. Without
   * two recent observations the server's corners are drawn as they are.
   */
  predict(shownAt) {
    for (const entry of this.shown.values()) {
      const { observed, velocity } = entry;
      if (!observed || !velocity) continue;
      const lead = Math.min(Math.max(shownAt - observed.at, 0), this.maxLeadMs);
      entry.drawn = observed.corners.map(([x, y], i) => [x + velocity[i][0] * lead, y + velocity[i][1] * lead]);
      entry.group.dataset.leadMs = lead.toFixed(1);
      this._place(entry);
    }
  }

  _create(item) {
    const group = document.createElementNS(SVG_NS, "g");
    group.classList.add("item");
    const polygon = document.createElementNS(SVG_NS, "polygon");
    group.append(polygon);
    this.svg.append(group);
    const card = el("div", "card");
    card.tabIndex = 0;
    card.setAttribute("role", "button");
    renderCardContent(card, item);
    card.addEventListener("click", (event) => {
      if (event.target.closest("[data-action]")) return;
      if (this.onselect) this.onselect(entry.item);
    });
    card.addEventListener("keydown", (event) => {
      if ((event.key === "Enter" || event.key === " ") && this.onselect) this.onselect(entry.item);
    });
    this.cards.append(card);
    this.resizes.observe(card);
    const entry = { item, group, polygon, card, cardWidth: 0 };
    this.shown.set(item.item, entry);
    return entry;
  }

  _remove(id, entry) {
    this.resizes.unobserve(entry.card);
    entry.group.remove();
    entry.card.remove();
    this.shown.delete(id);
  }

  _place(entry) {
    const { item, frame, group, polygon, card } = entry;
    const toBox = frameToBox(this.media, frame.width, frame.height);
    const corners = entry.drawn || item.corners;
    group.dataset.item = card.dataset.item = item.item;
    group.dataset.frameId = card.dataset.frameId = frame.id;
    group.dataset.corners = JSON.stringify(item.corners);
    // Followed by optical flow from an earlier frame (true) or recognized in this one (false).
    group.dataset.tracked = card.dataset.tracked = item.tracked ? "true" : "false";
    if (!toBox) return;
    const [mediaW] = intrinsicSize(this.media);
    const toMedia = mediaW / frame.width;
    const inMedia = (points) => JSON.stringify(points.map(([x, y]) => [+(x * toMedia).toFixed(2), +(y * toMedia).toFixed(2)]));
    group.dataset.mediaCorners = inMedia(item.corners);
    group.dataset.drawnCorners = inMedia(corners);
    const css = corners.map(([x, y]) => apply(toBox, x, y));
    polygon.setAttribute("points", css.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
    this._placeCard(entry, toBox, css, corners);
  }

  _placeCard(entry, toBox, css, corners) {
    const { item, card } = entry;
    const Hinv = item.homography && item.homography.length === 9 ? invert(item.homography) : null;
    // The reference's size is where its bottom-right corner comes from.
    const [refW, refH] = Hinv ? apply(Hinv, item.corners[2][0], item.corners[2][1]) : [0, 0];
    const H =
      refW > 1 && refH > 1
        ? corners === item.corners
          ? item.homography
          : homographyFromPoints([[0, 0], [refW, 0], [refW, refH], [0, refH]], corners)
        : null;
    card.hidden = !H;
    if (!H) return;
    // Lay the card out about as wide as the object's top edge looks on screen,
    // so the text keeps a readable size; re-layout only on a clear change.
    const topEdge = Math.hypot(css[1][0] - css[0][0], css[1][1] - css[0][1]);
    const wanted = Math.max(170, Math.min(340, topEdge));
    if (!entry.cardWidth || Math.abs(wanted - entry.cardWidth) / entry.cardWidth > 0.2) {
      entry.cardWidth = Math.round(wanted);
      card.style.width = `${entry.cardWidth}px`;
    }
    const cardW = entry.cardWidth;
    const cardH = card.offsetHeight || 60;
    // Card box (CSS px) -> reference pixels: as wide as the reference, along its bottom edge,
    // inside it while that hides at most half of the object, else just below it in the same plane.
    const k = refW / cardW;
    const inside = cardH * k <= 0.5 * refH;
    card.dataset.placement = inside ? "inside" : "below";
    const cardToRef = [k, 0, 0, 0, k, inside ? refH - cardH * k : refH, 0, 0, 1];
    card.style.transform = matrix3d(multiply(toBox, multiply(H, cardToRef)));
  }
}
