"""A fake camera for Chromium: a reference moving in perspective over a background, with ground truth.

Chromium plays a .y4m file as its camera (--use-file-for-fake-video-capture)
and loops it. Every frame carries its index as a 7-bit barcode in the
bottom-right corner, so a test can tell which frame a JPEG sent by the page
was taken from, and so which corners the overlay must show for it.

The background is generated (smooth colour noise, paper-like rectangles and
text), so it is not in any collection and needs no download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.scenes import paste

WIDTH, HEIGHT = 640, 480
BARCODE_BITS = 7
BARCODE_CELL = 14
# Top-left of the barcode's first cell; a white margin of 4 px surrounds the cells.
BARCODE_X = WIDTH - BARCODE_BITS * BARCODE_CELL - 8
BARCODE_Y = HEIGHT - BARCODE_CELL - 8


@dataclass(frozen=True)
class FakeCamera:
    path: Path
    fps: int
    corners: np.ndarray
    """(N, 4, 2) float64: the reference's TL, TR, BR, BL in frame pixels for each of the N frames."""
    reference_size: tuple[int, int]
    still_frames: int = 0
    """The first frames hold the reference still (see make_fake_camera)."""

    def corners_between(self, first: int, last: int, steps: int = 4) -> list[np.ndarray]:
        """The reference's corners along its path from frame `first` to frame `last`, `steps` per frame."""
        count = len(self.corners)
        return [
            quad_at(((first + k / steps) % count) / count, *self.reference_size)
            for k in range((last - first) * steps + 1)
        ]


def background(seed: int = 7) -> np.ndarray:
    """A desk-like (HEIGHT, WIDTH, 3) uint8 BGR scene that matches no reference."""
    rng = np.random.default_rng(seed)
    # A muted, wood-like table top: one tint, varying brightness.
    tint = np.array([0.78, 0.9, 1.0], np.float32)
    coarse = (rng.uniform(95, 175, (6, 8, 1)) * tint).astype(np.float32)
    image = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    image += cv2.GaussianBlur(rng.normal(0, 18, (HEIGHT, WIDTH, 3)).astype(np.float32), (0, 0), 1.2)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(5):
        centre = (float(rng.uniform(0, WIDTH)), float(rng.uniform(0, HEIGHT)))
        size = (float(rng.uniform(90, 220)), float(rng.uniform(60, 160)))
        box = cv2.boxPoints((centre, size, float(rng.uniform(0, 180)))).astype(np.int32)
        shade = tuple(int(v) for v in rng.uniform(200, 245, 3))
        cv2.fillConvexPoly(image, box, shade, lineType=cv2.LINE_AA)
        x0, y0 = box.min(axis=0)
        for line in range(3):
            text = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz  "), 12))
            cv2.putText(
                image,
                text,
                (int(x0) + 10, int(y0) + 25 + 18 * line),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (60, 60, 60),
                1,
                cv2.LINE_AA,
            )
    return image


def quad(
    ref_w: int, ref_h: int, centre: tuple[float, float], longer: float, rotation_deg: float, far: float
) -> np.ndarray:
    """Corners (4, 2) of a reference whose longer side spans `longer` px, tilted so its top edge is `far` times shorter."""
    w, h = (longer, longer * ref_h / ref_w) if ref_w >= ref_h else (longer * ref_w / ref_h, longer)
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    corners[:2, 0] *= far
    rotation = np.radians(rotation_deg)
    R = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
    return corners @ R.T + np.asarray(centre, np.float64)


def quad_at(t: float, ref_w: int, ref_h: int) -> np.ndarray:
    """Corners (4, 2) of the reference at phase t in [0, 1): a closed, smooth path, so the loop has no jump.

    The centre goes round a circle: like a hand-held camera, the motion has no sharp turns (a flat ellipse
    would turn within a few frames at its ends, where no tracker can follow)."""
    angle = 2 * np.pi * t
    centre = (WIDTH / 2 + 85 * np.cos(angle), HEIGHT / 2 - 8 + 70 * np.sin(angle))
    longer = 290 * (1 + 0.06 * np.cos(2 * angle))
    return quad(ref_w, ref_h, centre, longer, 12 * np.sin(angle), 0.86 + 0.06 * np.sin(angle))


def draw_barcode(frame: np.ndarray, index: int) -> None:
    cv2.rectangle(frame, (BARCODE_X - 4, BARCODE_Y - 4), (WIDTH - 4, HEIGHT - 4), (255, 255, 255), -1)
    for bit in range(BARCODE_BITS):
        if index >> bit & 1:
            x = BARCODE_X + bit * BARCODE_CELL
            cv2.rectangle(frame, (x, BARCODE_Y), (x + BARCODE_CELL - 1, BARCODE_Y + BARCODE_CELL - 1), (0, 0, 0), -1)


def read_barcode(frame: np.ndarray) -> int:
    """The frame index drawn by draw_barcode, read from a (possibly JPEG-compressed) BGR frame of WIDTH x HEIGHT."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    index = 0
    for bit in range(BARCODE_BITS):
        x = BARCODE_X + bit * BARCODE_CELL
        cell = gray[BARCODE_Y + 3 : BARCODE_Y + BARCODE_CELL - 3, x + 3 : x + BARCODE_CELL - 3]
        if cell.mean() < 128:
            index |= 1 << bit
    return index


def make_fake_camera(
    reference: np.ndarray,
    path: Path,
    seconds: float = 4.0,
    fps: int = 15,
    motion: Callable[[float, int, int], np.ndarray] = quad_at,
    still_seconds: float = 0.0,
    noise: float = 0.0,
) -> FakeCamera:
    """Write a y4m of `reference` (BGR) over the background; returns the ground truth per frame.

    `motion(t, ref_w, ref_h)` gives the corners at phase t in [0, 1) of the loop: by default a smooth
    closed path; a function that ignores t makes a still object. With `still_seconds`, the video first
    holds the reference still where the loop starts and ends (so there is no jump); `noise` adds that much
    Gaussian sensor noise (grey levels) to every frame.
    """
    count = round(seconds * fps)
    still = round(still_seconds * fps)
    assert still + count < 2**BARCODE_BITS
    ref_h, ref_w = reference.shape[:2]
    scene = background()
    rng = np.random.default_rng(5)
    corners = np.stack(
        [motion(0.0, ref_w, ref_h)] * still + [motion(i / count, ref_w, ref_h) for i in range(count)]
    )
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(len(corners)):
            frame = paste(scene, reference, corners[i])
            if noise:
                frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
            draw_barcode(frame, i)
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return FakeCamera(path, fps, corners, (ref_w, ref_h), still)


def composite_photo(references: list[np.ndarray], corners: list[np.ndarray]) -> np.ndarray:
    """A still BGR photo of the background with each reference pasted at its corners."""
    photo = background()
    for reference, quad_corners in zip(references, corners, strict=True):
        photo = paste(photo, reference, quad_corners)
    return photo
