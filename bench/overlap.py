"""Which source photographs show the same scene as a background photograph.

The packages hold a few places twice: one mountain range photographed from the
same summit at dawn and at dusk, say, one file held out as a frame background
and the other cut into collage crops. A frame with that background then
rightly shows the collage's picture, and finding it would count as a false
positive. Such pairs are found here with SIFT, not with the engine under test:
each source photo's SIFT descriptors are matched against every background's
(ratio test), and a pair that a RANSAC homography confirms with many inliers
shares a scene. The answer is cached per list of files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import cv2
import numpy as np

from bench import sources

LONGER_SIDE = 1024
"""Photos are compared at most this large."""
RATIO = 0.75
MIN_INLIERS = 25
"""Distinct RANSAC inliers (4 px) that make two photos one scene."""
MIN_EXTENT = 64
"""Smallest width and height (px) of the inliers' bounding box in the background."""
CANDIDATES = 3
"""Backgrounds with the most ratio-test matches that are checked by RANSAC for each photo."""


def _sift(path: str) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    scale = min(1.0, LONGER_SIDE / max(image.shape))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    keypoints, descriptors = cv2.SIFT_create(nfeatures=2000).detectAndCompute(image, None)
    points = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
    return points, descriptors if descriptors is not None else np.zeros((0, 128), np.float32)


def _inliers(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], matcher: cv2.BFMatcher) -> int:
    if len(a[1]) < 2 or len(b[1]) < 2:
        return 0
    pairs = [p for p in matcher.knnMatch(a[1], b[1], k=2) if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(pairs) < MIN_INLIERS:
        return 0
    src = a[0][[p[0].queryIdx for p in pairs]]
    dst = b[0][[p[0].trainIdx for p in pairs]]
    H, mask = cv2.findHomography(src, dst, cv2.RANSAC, 4.0)
    if H is None or mask is None:
        return 0
    # Star fields and flat textures give degenerate fits: many points sent to one spot, or a
    # plane squashed to a line. Count only distinct, spread inliers of a plausible scale.
    kept = dst[mask.ravel().astype(bool)]
    distinct = len(np.unique(np.round(kept), axis=0))
    scale = float(np.linalg.det(H[:2, :2] / H[2, 2]))
    if not 0.1 < scale < 10 or np.min(np.ptp(kept, axis=0)) < MIN_EXTENT:
        return 0
    return distinct


def photos_showing_a_background(
    photos: list[str], backgrounds: list[str], log: Callable[[str], None] = print
) -> dict[str, str]:
    """{photo: background} for every photo that shows a background's scene."""
    key = hashlib.sha256(json.dumps([sorted(set(photos)), backgrounds, LONGER_SIDE, RATIO, MIN_INLIERS, MIN_EXTENT]).encode())
    cache = sources.CACHE / "bench" / f"scene-overlap-{key.hexdigest()[:16]}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    log(f"comparing {len(set(photos))} source photos with {len(backgrounds)} backgrounds (SIFT)")
    described = [_sift(b) for b in backgrounds]
    index = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 32})
    index.add([d[1] for d in described])
    index.train()
    exact = cv2.BFMatcher(cv2.NORM_L2)
    found: dict[str, str] = {}
    for photo in sorted(set(photos)):
        mine = _sift(photo)
        if len(mine[1]) < 2:
            continue
        nearest = index.knnMatch(mine[1], k=2)
        good = [p[0] for p in nearest if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
        votes = np.bincount([p.imgIdx for p in good], minlength=len(backgrounds)) if good else np.zeros(len(backgrounds))
        for b in np.argsort(-votes)[:CANDIDATES]:
            if votes[b] >= MIN_INLIERS // 2 and _inliers(mine, described[b], exact) >= MIN_INLIERS:
                found[photo] = backgrounds[b]
                break
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(found, indent=1))
    return found


def _sources_of(spec) -> list[str]:
    return [spec.source] if spec.source else [c.source for c in spec.crops]


def showing_a_background(
    specs: list, backgrounds: list[str], log: Callable[[str], None] = print
) -> dict[str, tuple[str, str]]:
    """{item: (photo, background)} for the references (dataset.ReferenceSpec) made from a photo of a background's scene."""
    photos = [p for s in specs for p in _sources_of(s)]
    overlapping = photos_showing_a_background(photos, backgrounds, log)
    return {s.item: (p, overlapping[p]) for s in specs for p in _sources_of(s) if p in overlapping}
