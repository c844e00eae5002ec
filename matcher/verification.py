"""Geometric verification: a homography that explains enough matches, and is plausible.

A shortlisted reference is only reported when RANSAC finds a homography with
enough inliers and the reference outline it implies could be a real flat
object seen by a camera: convex, in front of the camera, not a sliver, not a
speck, and supported by inliers spread over the reference instead of one
repeated spot.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import cv2
import numpy as np

from matcher.model import Correspondences, Features, Match, Reference
from matcher.settings import MatcherSettings

_RANSAC_ITERATIONS = 2000
_RANSAC_CONFIDENCE = 0.995
_LAYOUT_TOLERANCE = 0.1  # of the object's size in the frame: how far same_layout lets a pair be from the fitted similarity
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int32)


def reference_corners(width: int, height: int) -> np.ndarray:
    """(4, 2) float32: top-left, top-right, bottom-right, bottom-left of a reference."""
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)


def project(H: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) points through a 3x3 homography; also returns the homogeneous w of each."""
    ones = np.ones((len(points), 1), np.float64)
    p = np.hstack([points.astype(np.float64), ones]) @ H.T
    w = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[:, :2] / w[:, None], w


def pair_error(H: np.ndarray, src: np.ndarray, dst: np.ndarray) -> float:
    """Median distance (px) between the (K, 2) pairs' frame points `dst` and where H puts their reference points `src`."""
    return float(np.median(np.linalg.norm(project(H, src)[0] - dst, axis=1)))


def area_covered(points: np.ndarray, width: int, height: int) -> float:
    """Area of the (K, 2) reference points' convex hull over the whole reference's: how much of it a pose
    resting on them pins down (the rest, and the corners in it, are extrapolated)."""
    return float(cv2.contourArea(cv2.convexHull(points.astype(np.float32)))) / float(max(1, width * height))


def plausible_outline(H: np.ndarray, width: int, height: int, frame_w: int, frame_h: int, settings: MatcherSettings) -> bool:
    """Whether H maps the reference rectangle to an outline a real camera could see."""
    quad, w = project(H, reference_corners(width, height))
    if not np.all(w > 1e-6) or not np.all(np.isfinite(quad)):
        return False  # a corner behind the camera, or at infinity
    edges = np.roll(quad, -1, axis=0) - quad
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not (np.all(cross > 0) or np.all(cross < 0)):
        return False  # twisted or concave
    if np.all(cross < 0):
        return False  # mirrored: a picture is never seen from behind
    area = 0.5 * abs(float(np.sum(quad[:, 0] * np.roll(quad[:, 1], -1) - np.roll(quad[:, 0], -1) * quad[:, 1])))
    frame_area = float(frame_w * frame_h)
    if area < settings.min_area_fraction * frame_area or area > 50 * frame_area:
        return False
    sides = np.linalg.norm(edges, axis=1)
    if sides.min() <= 1e-3 or sides.max() / sides.min() > settings.max_side_ratio:
        return False
    return True


def verify(
    frame: Features,
    reference: Reference,
    correspondences: Correspondences,
    settings: MatcherSettings,
) -> Verified | None:
    """Homography reference pixels -> frame pixels, inlier count, score and coverage; None if rejected.

    The pairs go to RANSAC by rotation (`same_rotation`): those turning like most, and when they
    do not verify, those turning like most of the rest, up to `rotation_modes` turns.
    """
    rest = correspondences
    for _ in range(max(1, settings.rotation_modes)):
        turning_alike = same_rotation(frame, reference.features, rest, settings.orientation_tolerance_degrees)
        if len(turning_alike.frame_indices) < max(4, settings.min_inliers):
            return None
        verified = _verify_turning_alike(frame, reference, turning_alike, settings)
        if verified is not None or len(turning_alike.frame_indices) == len(rest.frame_indices):
            return verified
        rest = _without(rest, turning_alike)
    return None


def _without(correspondences: Correspondences, taken: Correspondences) -> Correspondences:
    """`correspondences` less the pairs in `taken` (a subset of them)."""
    pairs = correspondences.frame_indices.astype(np.int64) << 32 | correspondences.reference_indices
    gone = taken.frame_indices.astype(np.int64) << 32 | taken.reference_indices
    keep = ~np.isin(pairs, gone)
    return dataclasses.replace(
        correspondences, frame_indices=correspondences.frame_indices[keep], reference_indices=correspondences.reference_indices[keep]
    )


def _verify_turning_alike(frame: Features, reference: Reference, correspondences: Correspondences, settings: MatcherSettings) -> Verified | None:
    """`verify` on pairs that turn alike."""
    n = len(correspondences.frame_indices)
    if n < max(4, settings.min_inliers):
        return None
    src = reference.features.points[correspondences.reference_indices].astype(np.float32)
    dst = frame.points[correspondences.frame_indices].astype(np.float32)
    # Fitted reference -> frame, so the reprojection threshold is in frame pixels.
    H, mask = cv2.findHomography(
        src,
        dst,
        cv2.USAC_MAGSAC,
        settings.ransac_reprojection_px,
        maxIters=_RANSAC_ITERATIONS,
        confidence=_RANSAC_CONFIDENCE,
    )
    if H is None or mask is None:
        return None
    inlier_mask = mask.ravel().astype(bool)
    inliers = int(inlier_mask.sum())
    # One frame keypoint explaining several inliers is one piece of evidence, not several.
    distinct = len(np.unique(correspondences.frame_indices[inlier_mask]))
    # Few RANSAC inliers may still be a true sighting (blur, low light, a far poster): such a
    # homography is kept only if guided matching then finds many more pairs that agree with it.
    weak = inliers < settings.min_inliers or inliers < settings.min_inlier_ratio * n or distinct < settings.min_inliers
    if weak and (distinct < settings.min_seed_inliers or not settings.refine_radii_px):
        return None
    if _inlier_spread(src[inlier_mask], reference.features) < settings.min_inlier_spread:
        return None
    # Inliers bunched on one part of the reference pin that part down but may swing the far
    # corners into an impossible outline; the guided refit over the whole reference settles them,
    # so plausibility is judged on the refitted homography when there is one.
    refined = refine(H, frame, reference, settings)
    if refined is not None:
        if weak and refined.pairs < settings.min_guided_inliers:
            return None
        H, distinct, support = refined.H, max(distinct, refined.pairs), (refined.reference_points, refined.frame_points)
    elif weak or not plausible_outline(H, reference.features.width, reference.features.height, frame.width, frame.height, settings):
        return None
    else:
        support = src[inlier_mask], dst[inlier_mask]
    score = distinct / (distinct + 2.0 * settings.min_inliers)
    return Verified(H, distinct, round(float(score), 3), coverage(support[0], reference.features), support[0], support[1])


def same_rotation(frame: Features, reference: Features, correspondences: Correspondences, tolerance: float) -> Correspondences:
    """The matches whose keypoint rotation is within `tolerance` degrees of the most common one.

    A flat object seen by a camera turns every keypoint by about the same angle (exactly, up to
    the perspective's shear), while a wrong match's rotation is anything: on a blurred, noisy or
    half-hidden object, where only one match in six or seven is right, this leaves RANSAC a set
    in which right ones are the many. Unchanged when either side's orientations are unknown.
    """
    if tolerance <= 0 or frame.angles is None or reference.angles is None or len(correspondences.frame_indices) == 0:
        return correspondences
    keep = agreeing_turns(frame.angles[correspondences.frame_indices], reference.angles[correspondences.reference_indices], tolerance)
    if keep.all():
        return correspondences
    return dataclasses.replace(
        correspondences,
        frame_indices=correspondences.frame_indices[keep],
        reference_indices=correspondences.reference_indices[keep],
    )


def agreeing_turns(
    frame_angles: np.ndarray, reference_angles: np.ndarray, tolerance: float, groups: np.ndarray | None = None
) -> np.ndarray:
    """(N,) bool: which of N pairs turn within `tolerance` degrees of the most common turn of their group.

    Angles are uint8 256ths of a turn (`features.orientations`), paired frame and reference side;
    `groups`: (N,) int 0..G-1, the pairs of each reference a frame was paired with (None: one group).
    """
    turn = (frame_angles.astype(np.int32) - reference_angles) % 256
    group = np.zeros(len(turn), np.int64) if groups is None else np.asarray(groups, np.int64)
    count = int(group.max()) + 1 if len(group) else 0
    # The most common rotation: the fullest window of three 32nds of a turn, in a circular histogram.
    histogram = np.bincount(group * 32 + (turn >> 3), minlength=count * 32).reshape(count, 32)
    window = histogram + np.roll(histogram, 1, axis=1) + np.roll(histogram, -1, axis=1)
    centre = np.argmax(window, axis=1) * 8 + 4
    off = np.abs((turn - centre[group] + 128) % 256 - 128) * (360.0 / 256.0)
    return off <= tolerance


def same_layout(reference_points: np.ndarray, frame_points: np.ndarray, reference_size: float, settings: MatcherSettings) -> bool:
    """Whether a few pairs lie as on one object: a turn, a scale and a shift put at least
    `min_agreeing_votes` of the (K, 2) reference points near their frame points.

    Near is a tenth of the object's size in the frame (the reference's `reference_size` px
    times the fitted scale): loose, since a tilted object is no similarity, but pairs
    bunched by chance on one spot of the frame do not pass as a speck-sized object.
    Decides whether a fallback candidate is worth reading and verifying.
    """
    least = max(3, settings.min_agreeing_votes)
    if len(reference_points) < least:
        return False
    src, dst = reference_points.astype(np.float32), frame_points.astype(np.float32)
    M, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if M is None or not np.all(np.isfinite(M)):
        return False
    scale = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    residual = np.linalg.norm(src @ M[:, :2].T + M[:, 2] - dst, axis=1)
    return int(np.sum(residual <= _LAYOUT_TOLERANCE * scale * reference_size)) >= least


def coverage(points: np.ndarray, reference: Features) -> float:
    """0-1: area of the (K, 2) reference points' convex hull over that of all the reference's keypoints.

    A homography fitted on pairs from one small part of a reference (a hand over
    the rest, most of it out of the frame) pins that part down but may put the
    far corners tens of pixels off: the tracker does not let such a pose override
    one it follows.
    """
    if len(points) < 3 or len(reference) < 3:
        return 0.0
    everything = cv2.contourArea(cv2.convexHull(reference.points.astype(np.float32)))
    if everything <= 0.0:
        return 0.0
    return round(min(1.0, cv2.contourArea(cv2.convexHull(points.astype(np.float32))) / everything), 3)


def _inlier_spread(points: np.ndarray, reference: Features) -> float:
    """Area of the (K, 2) inliers' bounding box over that of all the reference's keypoints.

    Measured against where the reference has keypoints at all, not its whole
    area: a galaxy on black or a logo on a plain card has them in one spot only.
    """
    if len(points) == 0 or len(reference) == 0:
        return 0.0
    inliers = np.ptp(points, axis=0)
    everything = np.maximum(np.ptp(reference.points, axis=0), 1.0)
    return float(inliers[0] * inliers[1]) / float(everything[0] * everything[1])


def one_item_per_place(matches: list[Match], max_overlap: float) -> list[Match]:
    """`matches` (best first) without those whose outline mostly covers a better one's.

    Two items cannot be the same object: when the outlines of two verified items overlap
    by more than `max_overlap` (intersection over union), the frame shows one of them, and
    the other is a look-alike (a poster of the same series, the same page in another
    edition) whose shared part verified too. An item shown inside another one (a cover on a
    catalogue page) has a much smaller outline and is kept.
    """
    kept: list[tuple[Match, np.ndarray, float]] = []
    for match in matches:
        outline = cv2.convexHull(np.asarray(match.corners, np.float32))  # convex already; snapping may bend it a hair
        area = float(cv2.contourArea(outline))
        if not any(_overlap(outline, area, other, other_area) > max_overlap for _, other, other_area in kept):
            kept.append((match, outline, area))
    return [match for match, _, _ in kept]


def _overlap(a: np.ndarray, area_a: float, b: np.ndarray, area_b: float) -> float:
    """Intersection over union of two convex outlines."""
    common, _ = cv2.intersectConvexConvex(a, b)
    union = area_a + area_b - common
    return float(common / union) if union > 0 else 0.0


def guided_pairs(
    H: np.ndarray, frame: Features, reference: Features, radius: float, max_hamming: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference and frame indices of one-to-one pairs that H brings within `radius` px.

    Each reference keypoint is projected into the frame and paired with the
    frame keypoint of most similar descriptor among those near its projection;
    a frame keypoint keeps only its most similar reference keypoint.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(frame) == 0 or len(reference) == 0:
        return empty
    projected, w = project(H, reference.points)
    inside = (w > 1e-6) & np.all(np.isfinite(projected), axis=1)
    inside &= (projected[:, 0] > -radius) & (projected[:, 0] < frame.width + radius)
    inside &= (projected[:, 1] > -radius) & (projected[:, 1] < frame.height + radius)
    ref_idx = np.nonzero(inside)[0]
    if ref_idx.size == 0:
        return empty
    # Bucket frame keypoints on a grid of `radius` cells; a projection looks in its 3x3 block.
    columns = int(frame.width / radius) + 3
    cell_of = np.floor(frame.points / radius).astype(np.int64) + 1
    keys = cell_of[:, 1] * columns + cell_of[:, 0]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pcell = np.floor(projected[ref_idx] / radius).astype(np.int64) + 1
    pkey = pcell[:, 1] * columns + pcell[:, 0]
    offsets = np.array([dy * columns + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)], np.int64)
    queries = (pkey[:, None] + offsets[None, :]).ravel()
    starts = np.searchsorted(sorted_keys, queries, side="left")
    ends = np.searchsorted(sorted_keys, queries, side="right")
    counts = ends - starts
    total = int(counts.sum())
    if total == 0:
        return empty
    query_of = np.repeat(np.arange(queries.size), counts)
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    f = order[starts[query_of] + within]
    r = ref_idx[query_of // offsets.size]
    d2 = np.sum((projected[r] - frame.points[f]) ** 2, axis=1)
    near = d2 <= radius * radius
    f, r, d2 = f[near], r[near], d2[near]
    hamming = _POPCOUNT[reference.descriptors[r] ^ frame.descriptors[f]].sum(axis=1)
    good = hamming <= max_hamming
    f, r, d2, hamming = f[good], r[good], d2[good], hamming[good]
    if f.size == 0:
        return empty
    # Most similar first; keep each reference keypoint's and then each frame keypoint's first pair.
    best = np.lexsort((d2, hamming))
    f, r = f[best], r[best]
    _, first_r = np.unique(r, return_index=True)
    f, r = f[first_r], r[first_r]
    hamming = hamming[best][first_r]
    again = np.lexsort((hamming,))
    f, r = f[again], r[again]
    _, first_f = np.unique(f, return_index=True)
    return r[first_f].astype(np.int64), f[first_f].astype(np.int64)


class Verified(NamedTuple):
    """A reference's pose in a frame, as verification accepted it."""

    H: np.ndarray
    """(3, 3) reference pixels -> frame pixels."""
    inliers: int
    score: float
    coverage: float
    """Share of the reference's keypoint area the pose rests on (`coverage`)."""
    reference_points: np.ndarray
    """(K, 2) reference and frame points of the pairs H rests on."""
    frame_points: np.ndarray


class Refined(NamedTuple):
    H: np.ndarray
    pairs: int
    reference_points: np.ndarray
    """(K, 2) reference and frame points of the pairs the last refit rests on."""
    frame_points: np.ndarray


def refine(H: np.ndarray, frame: Features, reference: Reference, settings: MatcherSettings) -> Refined | None:
    """A homography refitted on every keypoint pair a first H explains, and the pair count.

    RANSAC's H rests on the matches that passed the ratio test, often bunched
    on a few textured spots, so the corners far from them drift. Guided matching
    pairs every reference keypoint with a frame keypoint near where H puts it,
    and the least-squares refit over those many, well-spread pairs pins the
    corners down. None when too few pairs are found (H is kept).
    """
    current = H
    count = 0
    support = np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    for radius in settings.refine_radii_px:
        r, f = guided_pairs(current, frame, reference.features, radius, settings.refine_max_hamming)
        if len(r) < max(8, settings.min_inliers):
            break
        src = reference.features.points[r].astype(np.float32)
        dst = frame.points[f].astype(np.float32)
        fitted, _ = cv2.findHomography(src, dst, 0)
        if fitted is None or not np.all(np.isfinite(fitted)):
            break
        # Pairs far from the fit (a coarse keypoint's rough position, a neighbour taken for the
        # right corner) pull the least squares off: refit once without the worst of them.
        residual = np.linalg.norm(project(fitted, src)[0] - dst, axis=1)
        close = residual <= max(1.5, 2.0 * float(np.median(residual)))
        if close.sum() >= max(8, settings.min_inliers) and not close.all():
            trimmed, _ = cv2.findHomography(src[close], dst[close], 0)
            if trimmed is not None and np.all(np.isfinite(trimmed)):
                fitted = trimmed
        current, count, support = fitted, len(r), (src, dst)
    if count == 0:
        return None
    if not plausible_outline(current, reference.features.width, reference.features.height, frame.width, frame.height, settings):
        return None
    return Refined(current, count, support[0], support[1])


def to_match(
    reference: Reference,
    H_work: np.ndarray,
    scale: float,
    inliers: int,
    score: float,
    points_work: np.ndarray | None = None,
    coverage: float = 1.0,
) -> Match:
    """A verified reference as a result, in full-frame pixels (the frame was decoded at `scale`).

    `points_work`: (K, 2) inlier positions in working pixels, reported when given.
    """
    H = np.diag([1.0 / scale, 1.0 / scale, 1.0]) @ H_work
    H = H / H[2, 2]
    corners, _ = project(H, reference_corners(reference.features.width, reference.features.height))
    return Match(
        item=reference.item,
        name=reference.name,
        metadata=reference.metadata,
        corners=[[round(float(x), 2), round(float(y), 2)] for x, y in corners],
        homography=[float(v) for v in H.ravel()],
        score=score,
        inliers=inliers,
        coverage=coverage,
        inlier_points=None
        if points_work is None
        else [[round(float(x) / scale, 1), round(float(y) / scale, 1)] for x, y in points_work],
    )


def inlier_points(
    frame: Features, reference: Reference, correspondences: Correspondences, H: np.ndarray, settings: MatcherSettings
) -> np.ndarray:
    """(K, 2) float32 frame positions (working pixels) of the distinct matches that H explains.

    Recomputed from H with the RANSAC threshold, so verify() keeps its shape; used
    only when a client asks to see the inliers.
    """
    if len(correspondences.frame_indices) == 0:
        return np.zeros((0, 2), np.float32)
    src = reference.features.points[correspondences.reference_indices]
    dst = frame.points[correspondences.frame_indices]
    projected, w = project(H, src)
    with np.errstate(invalid="ignore"):
        close = (w > 1e-6) & (np.linalg.norm(projected - dst, axis=1) <= settings.ransac_reprojection_px)
    indices = np.unique(correspondences.frame_indices[close])
    return frame.points[indices].astype(np.float32)
