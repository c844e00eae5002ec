"""Outline snapping: move a verified pose's outline onto the object's own edges in the frame.

A homography fitted on keypoint pairs is exact where the pairs are and only
extrapolated elsewhere: a cover whose detail is all in its top half, a
landscape whose lower half is textured and whose sky is not, put the far
corners 10-30 px off while every pair agrees to a pixel. But a printed picture
ends somewhere, and where it ends the frame usually has an edge (poster on a
wall, cover on a table). Each side of the projected outline is looked for
along its normal, a line is fitted through the strongest edge points found,
and the corners become the intersections of those lines. A side whose edge is
found along less than 40 % of it (out of the frame, a hand over it, the same
colour as the background) keeps the homography's line, and the snapped pose is
kept only if the keypoint pairs still agree with it.
"""

from __future__ import annotations

import cv2
import numpy as np

from matcher.settings import MatcherSettings
from matcher.verification import area_covered, pair_error, project, reference_corners

_SAMPLES_PER_SIDE = 24
_END_MARGIN = 0.1  # share of a side left out at each end: corners are where two edges blur together
_MIN_FOUND_SHARE = 0.4  # of a side's samples that must find an edge for the side to move (a hand or the frame's border may hide the rest)
_STEP_REACH = 4  # px each way over which an edge's step is measured: a 9 px motion blur spreads it over about that
_MIN_EDGE_STEP = 48.0  # rise or fall (grey levels) across 2 x _STEP_REACH px that counts as an edge in a frame of full contrast
_MAX_LINE_RESIDUAL_PX = 1.0  # RMS distance of a side's edge points from their fitted line
_MAX_PAIR_DRIFT_PX = 1.0  # the pairs' median reprojection error may grow by this much, no more
_WIDE_SEARCH_BELOW_COVER = 0.5  # pairs covering less of the reference than this: search wider first...
_WIDE_SEARCH = 2.0  # ...this many times outline_search_px
_BLEND_BELOW_COVER = 0.35  # pairs covering less than this: when the edges' own outline disagrees with them, fit both together


def snap_outline(
    gray: np.ndarray, H: np.ndarray, width: int, height: int, src: np.ndarray, dst: np.ndarray, settings: MatcherSettings
) -> np.ndarray:
    """H with its outline moved onto the frame's edges, or H itself when they are not found clearly.

    `gray`: the (h, w) uint8 frame at working resolution; H: reference pixels -> working
    pixels; `src`/`dst`: (K, 2) reference and frame points of the pairs H rests on.
    """
    radius = settings.outline_search_px
    if radius <= 0 or len(src) < 4:
        return H
    corners = reference_corners(width, height).astype(np.float64)
    drift = pair_error(H, src, dst) + _MAX_PAIR_DRIFT_PX
    covered = area_covered(src, width, height)
    blend = covered < _BLEND_BELOW_COVER
    if covered < _WIDE_SEARCH_BELOW_COVER:
        # Pairs on a small part of the reference: its far corners may lie further off than the
        # search reaches. A first, wider search brings the sides near; the second places them.
        H = _snapped(gray, H, corners, _WIDE_SEARCH * radius, src, dst, drift, blend)
    return _snapped(gray, H, corners, radius, src, dst, drift, blend)


def _snapped(
    gray: np.ndarray, H: np.ndarray, corners: np.ndarray, radius: float, src: np.ndarray, dst: np.ndarray, drift: float, blend: bool
) -> np.ndarray:
    """H with the sides found within `radius` px moved onto their edges, if the pairs' median error stays within `drift` px.

    `blend`: when the outline of the edges' lines moves the pairs further than that, try a
    homography fitted to the pairs and the edge points together (`_fitted_to_pairs_and_edges`).
    """
    quad, w = project(H, corners)
    if not np.all(w > 1e-6) or not np.all(np.isfinite(quad)):
        return H
    found = _side_edges(gray, H, corners, radius)
    if found is None:
        return H
    points, usable = found
    lines = []
    on_line = np.zeros(4, bool)  # sides whose edge points lie on one line
    for side in range(4):
        line = _fit_line(points[side, usable[side]]) if usable[side].sum() >= _MIN_FOUND_SHARE * _SAMPLES_PER_SIDE else None
        on_line[side] = line is not None
        if line is None:  # not found clearly: the homography's own line
            p, q = quad[side], quad[(side + 1) % 4]
            line = _cross((p[0], p[1], 1.0), (q[0], q[1], 1.0))
        lines.append(line)
    snapped = np.empty((4, 2), np.float64)
    for i in range(4):
        x = _cross(lines[(i + 3) % 4], lines[i])  # corner i joins the side before it and side i
        if abs(x[2]) < 1e-9:
            return H
        snapped[i] = x[:2] / x[2]
    moves = np.linalg.norm(snapped - quad, axis=1)
    if moves.max() < 0.05 or moves.max() > 3.0 * radius:
        return H
    fitted = cv2.getPerspectiveTransform(corners.astype(np.float32), snapped.astype(np.float32))
    if fitted is None or not np.all(np.isfinite(fitted)):
        return H
    if not pair_error(fitted, src, dst) <= drift:  # also false when not finite
        if not blend:
            return H
        fitted = _fitted_to_pairs_and_edges(corners, points, usable & on_line[:, None], src, dst)
        if fitted is None or not pair_error(fitted, src, dst) <= drift:
            return H
        if np.linalg.norm(project(fitted, corners)[0] - quad, axis=1).max() > 3.0 * radius:
            return H
    return fitted / fitted[2, 2]


def _fitted_to_pairs_and_edges(corners: np.ndarray, points: np.ndarray, found: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares homography through the (K, 2) pairs `src` -> `dst` and the edge points found.

    The outline through four edge lines puts each corner where two lines cross, so a line a
    pixel or two off (an edge smeared by motion blur, found on part of its side) moves the
    corners enough to pull the pairs away, and that outline is refused. When the pairs pin down
    little of the reference (a hand or another picture over the rest), the edges are the only
    evidence for the far corners; fitted together with the pairs, each side's sample points
    (reference) -> their edge points (frame) weigh in beside them instead of deciding alone.
    `points`: (4, S, 2) edge points of the sides (`_side_edges`); `found`: (4, S) bool, those to use.
    """
    if not found.any():
        return None
    fitted, _ = cv2.findHomography(
        np.vstack([src, _side_samples(corners)[found]]).astype(np.float32), np.vstack([dst, points[found]]).astype(np.float32), 0
    )
    if fitted is None or not np.all(np.isfinite(fitted)) or abs(fitted[2, 2]) < 1e-12:
        return None
    return fitted


def _cross(a: np.ndarray | tuple[float, ...], b: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Cross product of two homogeneous 3-vectors: the line through two points, the point on two lines.
    (np.cross takes about 20 us a call, checking its arguments; this takes 1, and a pose calls it a dozen times.)"""
    a0, a1, a2 = float(a[0]), float(a[1]), float(a[2])
    b0, b1, b2 = float(b[0]), float(b[1]), float(b[2])
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _side_samples(corners: np.ndarray) -> np.ndarray:
    """(4, S, 2): the points along each side of the (4, 2) outline where its edge is looked for."""
    t = np.linspace(_END_MARGIN, 1.0 - _END_MARGIN, _SAMPLES_PER_SIDE)
    direction = np.roll(corners, -1, axis=0) - corners
    return corners[:, None, :] + t[None, :, None] * direction[:, None, :]


def _side_edges(gray: np.ndarray, H: np.ndarray, corners: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Edge points across each side of the projected outline: (4, S, 2) positions and (4, S) bool usable."""
    direction = np.roll(corners, -1, axis=0) - corners
    along = _side_samples(corners).reshape(-1, 2)
    # Each side's inward normal in reference pixels (corners run clockwise in image coordinates),
    # carried through H: the frame's normal is the difference of two projections.
    inward = np.stack([-direction[:, 1], direction[:, 0]], axis=1) / np.linalg.norm(direction, axis=1, keepdims=True)
    nudge = 1e-3 * float(max(np.abs(direction).max(), 1.0))
    on, w1 = project(H, along)
    off, w2 = project(H, along + np.repeat(inward, _SAMPLES_PER_SIDE, axis=0) * nudge)
    if not (np.all(w1 > 1e-6) and np.all(w2 > 1e-6)):
        return None
    normal = on - off
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    if np.any(length < 1e-12):
        return None
    normal /= length
    steps = np.arange(-radius, radius + 1.0, 1.0)
    # Intensity profiles across the sides, one row per sample point.
    xs = (on[:, None, 0] + steps[None, :] * normal[:, None, 0]).astype(np.float32)
    ys = (on[:, None, 1] + steps[None, :] * normal[:, None, 1]).astype(np.float32)
    h, w = gray.shape[:2]
    whole = np.all((xs >= 1) & (xs <= w - 2) & (ys >= 1) & (ys <= h - 2), axis=1)
    if not whole.any():
        return None
    profile = cv2.remap(gray, xs, ys, cv2.INTER_LINEAR).astype(np.float32)
    # Where the edge is: the largest rise or fall across _STEP_REACH px each way. A motion-blurred
    # or defocused edge spreads its step over several pixels, so its gradient at any one pixel is
    # faint, but the whole step is as tall as when sharp; measured on a smoothed profile, the
    # noise of a dark frame averages out as well.
    smooth = cv2.GaussianBlur(profile, (5, 1), 0)  # along each profile only
    reach = _STEP_REACH
    wide = np.abs(smooth[:, 2 * reach :] - smooth[:, : -2 * reach])  # centred at steps[reach:-reach]
    rows = np.arange(len(wide))
    centre = np.argmax(wide, axis=1) + reach  # profile index
    strength = wide[rows, centre - reach]
    # Exactly where: the steepest pixel within that step (central differences of a lightly smoothed
    # profile), with a parabola through it and its neighbours for the sub-pixel position.
    fine = cv2.GaussianBlur(profile, (3, 1), 0)
    step = np.abs(fine[:, 2:] - fine[:, :-2]) / 2.0  # central differences, at steps[1:-1]
    near = np.abs(np.arange(step.shape[1])[None, :] + 1 - centre[:, None]) <= reach
    best = np.argmax(np.where(near, step, -1.0), axis=1)
    peak = step[rows, best]
    left = step[rows, np.maximum(best - 1, 0)]
    right = step[rows, np.minimum(best + 1, step.shape[1] - 1)]
    curvature = left - 2.0 * peak + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
    offset = steps[1:-1][best] + np.clip(shift, -0.5, 0.5)
    # A dim frame's edges are as weak as its contrast: the threshold scales with the profiles' span.
    span = float(profile[whole].max() - profile[whole].min())
    threshold = _MIN_EDGE_STEP * min(1.0, max(span, 48.0) / 192.0)
    interior = (centre > reach) & (centre < profile.shape[1] - reach - 1) & (best > 0) & (best < step.shape[1] - 1)
    usable = whole & interior & (strength >= threshold)
    points = on + offset[:, None] * normal
    return points.reshape(4, _SAMPLES_PER_SIDE, 2), usable.reshape(4, _SAMPLES_PER_SIDE)


def _fit_line(points: np.ndarray) -> np.ndarray | None:
    """Homogeneous line (3,) through (N, 2) points (total least squares, refitted on the closest
    two thirds); None when they do not lie on one line."""

    def fit(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centre = p.mean(axis=0)
        normal = np.linalg.svd(p - centre)[2][1]
        return normal, centre, np.abs((p - centre) @ normal)

    normal, centre, distance = fit(points)
    closest = points[distance <= np.sort(distance)[(2 * len(distance)) // 3]]
    if len(closest) >= 4:
        normal, centre, distance = fit(closest)
    if float(np.sqrt(np.mean(distance**2))) > _MAX_LINE_RESIDUAL_PX:
        return None
    return np.array([normal[0], normal[1], -float(normal @ centre)])
