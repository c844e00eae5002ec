"""Appearance check: does the frame look like the reference wherever the found pose puts it?

Keypoint pairs prove that some part of a reference is in the frame, not that the
reference is. Two references sharing a detail (a title in one typeface, a logo,
a band of one photograph) both verify on a frame showing either, and when their
outlines hardly overlap both are reported. The pose says where the rest of the
reference should be: the reference's own pixels (the 120-px copy alignment uses)
are compared with the frame's there, cell by cell on a grid over the reference,
and the pose is kept only if enough of the textured cells that lie in the frame
correlate. A look-alike agrees in the cells of the shared detail only. The right
reference agrees nearly everywhere; half hidden, dark and noisy it still agrees
in a third of its cells or more, since the comparison works on the copy shrunk
to the reference's scale in the frame, where noise averages out. Cells a hand or
another object covers disagree, but never the majority of what is visible.
"""

from __future__ import annotations

import cv2
import numpy as np

from matcher.alignment import Template, frame_window, sample

CELLS = 4
"""The reference's copy is judged on CELLS x CELLS cells."""

_AGREEING_CORRELATION = 0.5  # a cell agrees when its pixels correlate at least this closely (zero-mean, normalised)
_MIN_CELL_PIXELS = 20  # of a cell's pixels in the frame for it to be judged
_FLAT_DEVIATION = 0.15  # a cell whose reference pixels vary less than this (in the copy's deviations) is blank: not judged
_MIN_IN_FRAME = 0.1  # share of the copy's pixels that must lie in the frame to judge the pose at all


def agreeing_share(template: Template, gray: np.ndarray, H: np.ndarray) -> float | None:
    """0-1: share of the reference's textured cells in view whose pixels correlate with the frame's
    under H (reference pixels -> frame pixels); None when nothing can be judged (the pose puts too
    little of the reference in the frame, or the reference is blank).

    `gray`: the (h, w) uint8 frame at working resolution.
    """
    level = template.fine
    cut = frame_window(level, gray, H, smoothed=False)
    if cut is None:
        return None
    window, to_window, per_pixel = cut
    if per_pixel > 1.0:
        # Shrunk to about the copy's own scale: averaging pixels smooths noise as a blur would, for less.
        shrunk = cv2.resize(window, None, fx=1.0 / per_pixel, fy=1.0 / per_pixel, interpolation=cv2.INTER_AREA)
        to_window = np.diag([shrunk.shape[1] / window.shape[1], shrunk.shape[0] / window.shape[0], 1.0]) @ to_window
        window = shrunk
    sampled = sample(window, to_window @ H @ level.to_reference, level, _MIN_IN_FRAME)
    if sampled is None:
        return None
    values, inside = sampled
    w, h = level.size
    rows, columns = np.divmod(level.pixels[inside], w)
    cells = (rows * CELLS // h) * CELLS + columns * CELLS // w
    seen, reference = values[inside].astype(np.float64), level.values[inside].astype(np.float64)

    def per_cell(weights: np.ndarray) -> np.ndarray:
        return np.bincount(cells, weights, minlength=CELLS * CELLS)

    count = np.bincount(cells, minlength=CELLS * CELLS).astype(np.float64)
    n = np.maximum(count, 1.0)
    mean_seen, mean_reference = per_cell(seen) / n, per_cell(reference) / n
    # Per cell: covariance and variances of the two sides, as sums of products less n x the means' product.
    covariance = per_cell(seen * reference) - n * mean_seen * mean_reference
    variance_seen = np.maximum(per_cell(seen * seen) - n * mean_seen**2, 0.0)
    variance_reference = np.maximum(per_cell(reference * reference) - n * mean_reference**2, 0.0)
    judged = (count >= _MIN_CELL_PIXELS) & (variance_reference >= n * _FLAT_DEVIATION**2)
    if not judged.any():
        return None
    correlation = covariance / (np.sqrt(variance_seen * variance_reference) + 1e-9)
    return float(np.mean(correlation[judged] >= _AGREEING_CORRELATION))
