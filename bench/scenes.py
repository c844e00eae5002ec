"""Synthetic camera frames with ground truth: a reference pasted into a photo under a known homography.

Shared by the tests and the benchmark. Nothing here is used by the server.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Placement:
    """Where one reference appears in a generated frame."""

    name: str
    corners: np.ndarray
    """(4, 2) float64: reference TL, TR, BR, BL in frame pixels."""


def random_quad(
    rng: np.random.Generator,
    ref_w: int,
    ref_h: int,
    frame_w: int,
    frame_h: int,
    size: tuple[float, float],
    rotation_deg: float,
    tilt_deg: float,
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> np.ndarray:
    """Corners of a reference seen rotated, tilted and scaled so its longer side spans `size` of the frame."""
    rx, ry, rw, rh = region
    box_w, box_h = frame_w * rw, frame_h * rh
    fraction = rng.uniform(*size)
    longer = fraction * max(box_w, box_h)
    scale = longer / max(ref_w, ref_h)
    w, h = ref_w * scale, ref_h * scale
    quad = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], np.float64)
    # Out-of-plane tilt: foreshorten one axis and shrink the far edge.
    tilt = np.radians(rng.uniform(-tilt_deg, tilt_deg))
    axis = rng.integers(2)
    squeeze = np.cos(tilt)
    far = 1.0 - 0.5 * np.sin(abs(tilt))
    for i in range(4):
        near_side = (quad[i, axis] > 0) == (tilt > 0)
        quad[i, axis] *= squeeze
        if not near_side:
            quad[i, 1 - axis] *= far
    angle = np.radians(rng.uniform(-rotation_deg, rotation_deg))
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    quad = quad @ R.T
    # Keep it inside the region when it fits; otherwise centre it.
    span = quad.max(axis=0) - quad.min(axis=0)
    room = np.array([box_w, box_h]) - span
    offset = np.array([rx * frame_w, ry * frame_h]) - quad.min(axis=0)
    offset += np.where(room > 0, rng.uniform(0, 1, 2) * np.maximum(room, 0), room / 2)
    return quad + offset


def paste(frame: np.ndarray, reference: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Warp a BGR reference onto a BGR frame so its corners land on `corners`."""
    h, w = reference.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    H = cv2.getPerspectiveTransform(src, corners.astype(np.float32))
    size = (frame.shape[1], frame.shape[0])
    warped = cv2.warpPerspective(reference, H, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), H, size, flags=cv2.INTER_LINEAR)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    return (warped * alpha + frame * (1 - alpha)).astype(np.uint8)


def fit_background(background: np.ndarray, width: int = 640, height: int = 480) -> np.ndarray:
    """Crop and scale a photo to fill a frame."""
    h, w = background.shape[:2]
    s = max(width / w, height / h)
    resized = cv2.resize(background, (max(width, round(w * s)), max(height, round(h * s))), interpolation=cv2.INTER_AREA)
    y = (resized.shape[0] - height) // 2
    x = (resized.shape[1] - width) // 2
    return resized[y : y + height, x : x + width].copy()


def jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def corner_error(found: list[list[float]], truth: np.ndarray) -> float:
    """Largest distance in pixels between found and true corners."""
    return float(np.max(np.linalg.norm(np.asarray(found, np.float64) - truth, axis=1)))


def true_pose(width: int, height: int, corners: np.ndarray) -> np.ndarray:
    """(3, 3) homography putting a `width` x `height` reference's outline on `corners` (Placement.corners)."""
    outline = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    return cv2.getPerspectiveTransform(outline, np.asarray(corners, np.float32))


def on_true_pose(reference_points: np.ndarray, frame_points: np.ndarray, width: int, height: int, corners: np.ndarray, px: float) -> np.ndarray:
    """(N,) bool: which pairs of (N, 2) reference and frame points the true pose explains within `px`.

    `width` x `height`: the reference's size in its points' pixels; `corners`: where its outline
    lies in the frame (Placement.corners, in the frame points' pixels).
    """
    if len(reference_points) == 0:
        return np.zeros(0, bool)
    H = true_pose(width, height, corners)
    projected = cv2.perspectiveTransform(np.asarray(reference_points, np.float32).reshape(-1, 1, 2), H).reshape(-1, 2)
    return np.linalg.norm(projected - np.asarray(frame_points, np.float32), axis=1) <= px
