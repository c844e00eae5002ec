"""Query frames at the issue's difficulty levels, with ground truth.

Each frame is 640x480: a held-out background photo, the reference(s) pasted
under a known homography, then degraded as the level says, then JPEG-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from bench.scenes import Placement, fit_background, jpeg, paste, random_quad

FRAME_W, FRAME_H = 640, 480
LEVELS = ("easy", "moderate", "hard", "several", "distractors")
HARD_WITHOUT = {
    "hard, light kept": "low light",
    "hard, not occluded": "occlusion",
    "hard, no motion blur": "motion blur",
}
"""Diagnostic levels: the hard level with one of its degradations left out, to show what costs recall."""
DIM = "moderate, dim"
"""Diagnostic level: the moderate level in a room too dark for the camera's exposure (every intensity cut to a
tenth to a fifth, so they span a few dozen levels), to judge how the engine treats flat, dim frames. (The hard
level's low light darkens the mean but keeps most of the contrast.)"""
ONE_OBJECT = ("easy", "moderate", "hard", *HARD_WITHOUT, DIM)


@dataclass(frozen=True)
class Frame:
    level: str
    data: bytes
    """The JPEG bytes sent to the engine."""
    placements: list[Placement] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    """'real' or 'generated', per placement."""


def _background(rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    # A random crop of 60-100 % of the photo, sometimes mirrored, so backgrounds rarely repeat.
    f = rng.uniform(0.6, 1.0)
    cw, ch = max(64, int(w * f)), max(48, int(h * f))
    x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    crop = photo[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return fit_background(np.ascontiguousarray(crop), FRAME_W, FRAME_H)


def _sized(reference: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The reference pre-shrunk to about twice its size in the frame: a camera averages, it does not alias."""
    longer = float(np.max(np.ptp(corners, axis=0)))
    h, w = reference.shape[:2]
    f = min(1.0, 2.0 * longer / max(w, h))
    if f < 1.0:
        reference = cv2.resize(reference, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return reference


def _place(frame: np.ndarray, reference: np.ndarray, corners: np.ndarray) -> np.ndarray:
    small = _sized(reference, corners)
    # Corners refer to the reference outline; paste() maps the small image's outline the same way.
    return paste(frame, small, corners)


def _light(rng: np.random.Generator, image: np.ndarray, gain: tuple[float, float], contrast: tuple[float, float]) -> np.ndarray:
    f = image.astype(np.float32)
    mean = f.mean()
    f = (f - mean) * rng.uniform(*contrast) + mean * rng.uniform(*gain)
    return np.clip(f, 0, 255).astype(np.uint8)


def _noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def motion_blur(image: np.ndarray, length: float, angle: float) -> np.ndarray:
    """`image` smeared along a `length` px streak at `angle` radians, as a camera moving while it exposes."""
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    kernel /= kernel.sum()
    return cv2.filter2D(image, -1, kernel)


def _motion_blur(rng: np.random.Generator, image: np.ndarray, max_length: float) -> np.ndarray:
    length = rng.uniform(1, max_length)
    if length < 1.5:
        return image
    return motion_blur(image, length, rng.uniform(0, np.pi))


def _occlude(rng: np.random.Generator, frame: np.ndarray, corners: np.ndarray, ref_w: int, ref_h: int, cover: np.ndarray, fraction: float) -> np.ndarray:
    """Hide `fraction` of the object behind a strip of another photo, from a random side."""
    side = rng.integers(4)
    x0, y0, x1, y1 = 0.0, 0.0, float(ref_w), float(ref_h)
    if side == 0:
        x1 = fraction * ref_w
    elif side == 1:
        x0 = (1 - fraction) * ref_w
    elif side == 2:
        y1 = fraction * ref_h
    else:
        y0 = (1 - fraction) * ref_h
    src = np.array([[0, 0], [ref_w, 0], [ref_w, ref_h], [0, ref_h]], np.float32)
    H = cv2.getPerspectiveTransform(src, corners.astype(np.float32))
    strip = np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], np.float32)
    polygon = cv2.perspectiveTransform(strip, H)[0]
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, np.round(polygon * 16).astype(np.int32), 255, cv2.LINE_AA, 4)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    return (cover * alpha + frame * (1 - alpha)).astype(np.uint8)


def make_frame(
    rng: np.random.Generator,
    level: str,
    targets: list[tuple[str, str, np.ndarray]],
    backgrounds: list[np.ndarray],
) -> Frame:
    """One frame of `level`; `targets` are (item, kind, BGR image) to show (ignored for distractors)."""
    frame = _background(rng, backgrounds)
    placements: list[Placement] = []
    kinds: list[str] = []
    if level == "easy":
        item, kind, ref = targets[0]
        corners = random_quad(rng, ref.shape[1], ref.shape[0], FRAME_W, FRAME_H, (0.45, 0.80), 15, 20)
        frame = _place(frame, ref, corners)
        placements, kinds = [Placement(item, corners)], [kind]
        quality = 85
    elif level in ("moderate", DIM):
        item, kind, ref = targets[0]
        corners = random_quad(rng, ref.shape[1], ref.shape[0], FRAME_W, FRAME_H, (0.30, 0.85), 45, 45)
        frame = _place(frame, ref, corners)
        sigma = rng.uniform(0, 1.5)
        if sigma > 0.3:
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        frame = _light(rng, frame, (0.7, 1.3), (0.7, 1.3))
        if level == DIM:
            frame = np.clip(frame.astype(np.float32) * rng.uniform(0.1, 0.2), 0, 255).astype(np.uint8)
        frame = _noise(rng, frame, rng.uniform(1, 5))
        placements, kinds = [Placement(item, corners)], [kind]
        quality = 60
    elif level == "hard" or level in HARD_WITHOUT:
        spared = HARD_WITHOUT.get(level)
        item, kind, ref = targets[0]
        corners = random_quad(rng, ref.shape[1], ref.shape[0], FRAME_W, FRAME_H, (0.15, 0.90), 180, 60)
        frame = _place(frame, ref, corners)
        cover = _background(rng, backgrounds)
        if spared != "occlusion":
            frame = _occlude(rng, frame, corners, ref.shape[1], ref.shape[0], cover, 0.4)
        if spared != "motion blur":
            frame = _motion_blur(rng, frame, 9)
        if spared != "low light":
            frame = _light(rng, frame, (0.25, 0.5), (0.6, 0.9))  # low light: dark and flat...
            frame = _noise(rng, frame, rng.uniform(3, 8))  # ...and noisy
        placements, kinds = [Placement(item, corners)], [kind]
        quality = 40
    elif level == "several":
        cells = [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5)]
        chosen = rng.permutation(4)[: len(targets)]
        for (item, kind, ref), c in zip(targets, chosen, strict=True):
            cx, cy = cells[c]
            # 20-40 % of the frame's longer side, inside one quarter of the frame.
            corners = random_quad(rng, ref.shape[1], ref.shape[0], FRAME_W, FRAME_H, (0.40, 0.80), 30, 30, (cx, cy, 0.5, 0.5))
            frame = _place(frame, ref, corners)
            placements.append(Placement(item, corners))
            kinds.append(kind)
        sigma = rng.uniform(0, 1.0)
        if sigma > 0.3:
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        frame = _noise(rng, frame, rng.uniform(1, 4))
        quality = 70
    elif level == "distractors":
        sigma = rng.uniform(0, 1.5)
        if sigma > 0.3:
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        frame = _light(rng, frame, (0.7, 1.3), (0.7, 1.3))
        frame = _noise(rng, frame, rng.uniform(1, 5))
        quality = 60
    else:
        raise ValueError(f"unknown level {level}")
    return Frame(level, jpeg(frame, quality), placements, kinds)


def make_frames(
    seed: int,
    per_level: int,
    pool: list[tuple[str, str, np.ndarray]],
    backgrounds: list[np.ndarray],
    levels: tuple[str, ...] = LEVELS,
) -> list[Frame]:
    """`per_level` frames of each level; targets drawn from `pool` (item, kind, image), in turn."""
    rng = np.random.default_rng(seed)
    frames = []
    for level in levels:
        order = rng.permutation(len(pool))
        for n in range(per_level):
            if level == "several":
                count = int(rng.integers(2, 5))
                picks = rng.choice(len(pool), count, replace=False)
                targets = [pool[i] for i in picks]
            else:
                targets = [pool[order[n % len(pool)]]]
            frames.append(make_frame(rng, level, targets, backgrounds))
    return frames
