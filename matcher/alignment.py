"""Dense alignment: bring a verified pose's corners onto the reference's own pixels in the frame.

A homography fitted on keypoint pairs is exact where the pairs are and only
extrapolated elsewhere: a landscape whose rocks carry every pair and whose sky
carries none has its sky corners 10-60 px off. The sky is not blank, though: a
faint gradient, a horizon, a cloud's outline. Aligning the reference's pixels
themselves (a small grayscale copy, `Features.patch`) with the frame uses all
of them. The alignment is inverse-compositional Lucas-Kanade over the eight
homography parameters (Baker & Matthews): the template's gradients and the
Gauss-Newton Hessian are computed once per reference, so each iteration costs
one warp of the frame into the template's grid and one 8-column product. It
runs coarse to fine: first on a 40-px copy against the frame blurred to match,
whose broad shapes draw in corners tens of pixels off, then on the 120-px copy,
whose detail places them to a pixel but would catch on the wrong detail from
that far. Both sides are normalised to zero mean and unit deviation, so light
and contrast do not matter, and the result is kept only where the aligned
pixels correlate closely (zero-mean normalised cross-correlation), which a pose
on a hand over the object or on the wrong object does not reach.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

from matcher.verification import pair_error, project, reference_corners

PATCH_SIDE = 120
"""Longer side (px) of the grayscale copy of a reference that alignment works on."""
PATCH_JPEG_QUALITY = 75
"""The copy is held JPEG-compressed (about 2 KB): quality 75 aligns as the uncompressed copy does."""
COARSE_SIDE = 40
"""Longer side (px) of the copy shrunk further that a first, coarse alignment works on: only the
broad shapes left, it is drawn in from tens of pixels off, where the 120-px copy is caught by detail."""
_BLUR_SIGMA = 1.0  # both template and warped frame are smoothed alike: a camera's blur and JPEG blocks matter less
_MAX_ITERATIONS = 20
_CONVERGED_PX = 0.05  # stop once an update moves no template corner further than this (template px)
_MIN_INSIDE = 0.5  # of the template's pixels that must land inside the frame
_MARGIN_PX = 24  # frame pixels around the projected outline that the warp may read
_MAX_CORNER_MOVE_SHARE = 0.5  # of the outline's mean diagonal: an alignment moving a corner further went somewhere else
_MAX_PAIR_DRIFT_PX = 1.0  # the pose's pairs' median reprojection error may grow by this much, no more
_TEMPLATES_KEPT = 256  # templates kept per recognizer: the items camera streams keep finding


def make_patch(gray: np.ndarray) -> bytes:
    """The JPEG of a (h, w) uint8 reference image shrunk to PATCH_SIDE on its longer side."""
    h, w = gray.shape[:2]
    scale = min(1.0, PATCH_SIDE / max(h, w))
    small = cv2.resize(gray, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, PATCH_JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode a reference patch")
    return data.tobytes()


class Level:
    """A reference patch at one resolution, made ready for alignment: its pixels normalised, its
    steepest-descent images and Hessian."""

    def __init__(self, small: np.ndarray, width: int, height: int) -> None:
        image = cv2.GaussianBlur(small.astype(np.float32), (0, 0), _BLUR_SIGMA)
        h, w = image.shape
        self.size = (w, h)
        self.to_reference = np.diag([width / w, height / h, 1.0])
        """Template pixels -> reference pixels."""
        self.corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
        gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
        gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
        # One-sided gradients on the outer ring: left out.
        ys, xs = np.mgrid[1 : h - 1, 1 : w - 1]
        self.pixels = (ys * w + xs).ravel()
        x, y = xs.ravel().astype(np.float32), ys.ravel().astype(np.float32)
        gx, gy = gx.ravel()[self.pixels], gy.ravel()[self.pixels]
        values = image.ravel()[self.pixels]
        deviation = float(values.std()) + 1e-6
        self.values = (values - values.mean()) / deviation
        # d(warped intensity)/d(parameters) at the identity, parameters as Baker & Matthews order them.
        self.steepest = (
            np.stack([gx * x, gy * x, gx * y, gy * y, gx, gy, -gx * x * x - gy * x * y, -gx * x * y - gy * y * y], 1) / deviation
        ).astype(np.float32)
        hessian = self.steepest.T.astype(np.float64) @ self.steepest.astype(np.float64)
        flat = np.linalg.cond(hessian) > 1e12  # a blank patch: nothing to align on
        self.inverse_hessian = None if flat else np.linalg.inv(hessian)


class Template:
    """A reference patch made ready for alignment, at its own resolution and at COARSE_SIDE."""

    def __init__(self, patch: bytes, width: int, height: int) -> None:
        small = cv2.imdecode(np.frombuffer(patch, np.uint8), cv2.IMREAD_GRAYSCALE)
        if small is None:
            raise ValueError("unreadable reference patch")
        self.reference_corners = reference_corners(width, height)
        self.fine = Level(small, width, height)
        h, w = small.shape
        scale = COARSE_SIDE / max(h, w)
        coarse = cv2.resize(small, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
        self.coarse = Level(coarse, width, height) if scale < 0.75 else None


class Templates:
    """Templates of the references recently aligned, least recently used forgotten first."""

    def __init__(self, kept: int = _TEMPLATES_KEPT) -> None:
        self._kept = kept
        self._templates: OrderedDict[tuple[str, int], Template | None] = OrderedDict()

    def get(self, item: str, patch: bytes, width: int, height: int) -> Template | None:
        key = (item, hash(patch))
        if key in self._templates:
            self._templates.move_to_end(key)
            return self._templates[key]
        try:
            template: Template | None = Template(patch, width, height)
        except (ValueError, cv2.error):
            template = None
        self._templates[key] = template
        if len(self._templates) > self._kept:
            self._templates.popitem(last=False)
        return template


def _update(parameters: np.ndarray) -> np.ndarray:
    p = parameters
    return np.array([[1 + p[0], p[2], p[4]], [p[1], 1 + p[3], p[5]], [p[6], p[7], 1.0]])


def align(template: Template, gray: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The pose H (reference pixels -> frame pixels) aligned on the frame's pixels, and how closely
    they then correlate with the reference's (-1..1); None when it cannot be aligned (out of the frame,
    a blank patch, a singular pose).

    Coarse to fine: aligned first on the COARSE_SIDE copy against the frame blurred to its scale,
    then on the full copy from there. `gray`: the (h, w) uint8 frame at working resolution.
    """
    start = H
    if template.coarse is not None:
        coarse = _aligned_level(template.coarse, gray, H, smoothed=True)
        if coarse is not None:
            start = coarse[0]
    return _aligned_level(template.fine, gray, start, smoothed=False)


def _aligned_level(level: Level, gray: np.ndarray, H: np.ndarray, smoothed: bool) -> tuple[np.ndarray, float] | None:
    """`align` on one level of the template; `smoothed`: blur the frame first to the level's scale
    (frame pixels per template pixel), so that its sampling on the level's grid does not alias."""
    if level.inverse_hessian is None:
        return None
    cut = frame_window(level, gray, H, smoothed)
    if cut is None:
        return None
    window, to_window, _ = cut
    warp = to_window @ H @ level.to_reference  # template pixels -> window pixels
    for _ in range(_MAX_ITERATIONS):
        sampled = sample(window, warp, level)
        if sampled is None:
            return None
        values, inside = sampled
        error = np.where(inside, values - level.values, 0.0).astype(np.float32)
        update = _update(level.inverse_hessian @ (level.steepest.T @ error).astype(np.float64))
        try:
            warp = warp @ np.linalg.inv(update)
        except np.linalg.LinAlgError:
            return None
        warp /= warp[2, 2]
        if not np.all(np.isfinite(warp)):
            return None
        moved = cv2.perspectiveTransform(level.corners[None], update)[0] - level.corners
        if np.abs(moved).max() < _CONVERGED_PX:
            break
    sampled = sample(window, warp, level)
    if sampled is None:
        return None
    values, inside = sampled
    a = values[inside]
    b = level.values[inside] - level.values[inside].mean()
    correlation = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
    aligned = np.linalg.inv(to_window) @ warp @ np.linalg.inv(level.to_reference)
    return aligned / aligned[2, 2], correlation


def frame_window(level: Level, gray: np.ndarray, H: np.ndarray, smoothed: bool) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The float32 part of the frame around where H (reference pixels -> frame pixels) puts the level's
    outline, with a margin; the 3x3 shift from frame to window pixels; and how many frame pixels one of
    the level's pixels spans there (mean along the outline). None when H puts the outline out of the frame
    or at infinity. `smoothed`: the window blurred to that scale, so that sampling it on the level's grid
    does not alias."""
    outline = cv2.perspectiveTransform(level.corners[None], H @ level.to_reference)[0]
    if not np.all(np.isfinite(outline)):
        return None
    x0, y0 = np.maximum(0, np.floor(outline.min(axis=0) - _MARGIN_PX)).astype(int)
    x1 = min(gray.shape[1], int(np.ceil(outline[:, 0].max() + _MARGIN_PX)))
    y1 = min(gray.shape[0], int(np.ceil(outline[:, 1].max() + _MARGIN_PX)))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    window = gray[y0:y1, x0:x1].astype(np.float32)
    sides = np.linalg.norm(np.roll(outline, -1, axis=0) - outline, axis=1)
    per_pixel = float(sides.sum()) / float(2 * sum(level.size))
    if smoothed and per_pixel > 1.5:
        window = cv2.GaussianBlur(window, (0, 0), per_pixel / 2.0)
    return window, np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]), per_pixel


def sample(window: np.ndarray, warp: np.ndarray, level: Level, min_inside: float = _MIN_INSIDE) -> tuple[np.ndarray, np.ndarray] | None:
    """The frame window's intensities at the level's pixels under `warp`, normalised to zero mean and
    unit deviation, and which of them lie inside the window; None when less than `min_inside` of them do."""
    w, h = level.size
    warped = cv2.warpPerspective(window, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=np.nan)
    values = cv2.GaussianBlur(warped, (0, 0), _BLUR_SIGMA).ravel()[level.pixels]
    inside = np.isfinite(values)
    if inside.mean() < min_inside:
        return None
    seen = values[inside]
    normalised = np.zeros_like(values)
    normalised[inside] = (seen - seen.mean()) / (float(seen.std()) + 1e-6)
    return normalised, inside


def aligned_pose(
    template: Template, gray: np.ndarray, H: np.ndarray, src: np.ndarray, dst: np.ndarray, min_correlation: float
) -> np.ndarray:
    """H aligned on the frame's pixels when that is sure, else H itself.

    Sure means: the aligned pixels correlate at least `min_correlation` with the reference's, no
    corner moved further than half the outline's diagonal, and the keypoint pairs the pose rests on
    (`src` reference and `dst` frame points) still agree with it.
    """
    found = align(template, gray, H)
    if found is None or found[1] < min_correlation:
        return H
    aligned = found[0]
    before, _ = project(H, template.reference_corners)
    after, w = project(aligned, template.reference_corners)
    diagonal = 0.5 * float(np.linalg.norm(before[2] - before[0]) + np.linalg.norm(before[3] - before[1]))
    if not np.all(w > 1e-6) or not np.linalg.norm(after - before, axis=1).max() <= _MAX_CORNER_MOVE_SHARE * diagonal:
        return H
    if len(src) and not pair_error(aligned, src, dst) <= pair_error(H, src, dst) + _MAX_PAIR_DRIFT_PX:
        return H
    return aligned
