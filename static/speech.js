// Spoken results: say what is seen and where ("Coffee cup, top left"), once, not every frame.
//
// The position words come from the item's corners in the frame: the centroid
// of the outline falls in a third of the frame horizontally (left, centre,
// right) and vertically (top, middle, bottom); its share of the frame adds
// "close" or "far". An item is announced when it appears and again only when
// its position words change and the new ones hold for `settleResults`
// consecutive results (an object on a boundary does not make it chatter). An
// item not seen for `forgetMs` counts as gone: seen again, it is announced again.

const CLOSE_AREA = 0.3; // outline covers more than this share of the frame
const FAR_AREA = 0.03; // less than this

/** Area of a polygon given as [[x, y], ...] (shoelace formula), in square pixels. */
export function polygonArea(corners) {
  let twice = 0;
  for (let i = 0; i < corners.length; i++) {
    const [x1, y1] = corners[i];
    const [x2, y2] = corners[(i + 1) % corners.length];
    twice += x1 * y2 - x2 * y1;
  }
  return Math.abs(twice) / 2;
}

/**
 * Where an outline is in a frame, in words: "top left", "middle right", "centre",
 * "bottom centre", with ", close" or ", far" by its share of the frame.
 */
export function positionWords(corners, width, height) {
  const cx = corners.reduce((sum, [x]) => sum + x, 0) / corners.length;
  const cy = corners.reduce((sum, [, y]) => sum + y, 0) / corners.length;
  const column = cx < width / 3 ? "left" : cx < (2 * width) / 3 ? "centre" : "right";
  const row = cy < height / 3 ? "top" : cy < (2 * height) / 3 ? "middle" : "bottom";
  let words = row === "middle" && column === "centre" ? "centre" : `${row} ${column}`;
  const share = polygonArea(corners) / (width * height);
  if (share > CLOSE_AREA) words += ", close";
  else if (share < FAR_AREA) words += ", far";
  return words;
}

/** The browser's speech synthesis, or null where there is none. */
export function browserSpeaker(lang = document.documentElement.lang || "en") {
  if (!("speechSynthesis" in window) || typeof SpeechSynthesisUtterance === "undefined") return null;
  return (text) => {
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = lang;
    window.speechSynthesis.speak(utterance);
  };
}

/** Turns a stream of results into a few spoken sentences. `speak(text)` says one. */
export class Announcer {
  constructor(speak, { settleResults = 2, forgetMs = 2000 } = {}) {
    this.speak = speak;
    this.settleResults = settleResults;
    this.forgetMs = forgetMs;
    this.known = new Map(); // item id -> {said, candidate, count, seenAt}
  }

  /** Feed one result ({width, height, items}); speaks what changed. */
  update(result, now = performance.now()) {
    for (const item of result.items || []) {
      if (!item.corners || !result.width || !result.height) continue;
      const words = positionWords(item.corners, result.width, result.height);
      let entry = this.known.get(item.item);
      if (entry && now - entry.seenAt > this.forgetMs) entry = null;
      if (!entry) {
        this.known.set(item.item, { said: words, candidate: words, count: 0, seenAt: now });
        this.speak(`${item.name || "Unnamed item"}, ${words}`);
        continue;
      }
      entry.seenAt = now;
      if (words === entry.said) {
        entry.candidate = words;
        entry.count = 0;
        continue;
      }
      entry.count = words === entry.candidate ? entry.count + 1 : 1;
      entry.candidate = words;
      if (entry.count >= this.settleResults) {
        entry.said = words;
        entry.count = 0;
        this.speak(`${item.name || "Unnamed item"}, ${words}`);
      }
    }
    for (const [id, entry] of this.known) {
      if (now - entry.seenAt > this.forgetMs) this.known.delete(id);
    }
  }

  /** Forget everything: the next sighting of each item is announced. */
  reset() {
    this.known.clear();
  }
}
