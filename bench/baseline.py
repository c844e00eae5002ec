"""The plain OpenCV approach, as the OpenCV samples and most tutorials do it.

ORB on the frame, brute-force Hamming kNN (k=2) against every reference one
by one, Lowe's ratio test, and RANSAC on the references with at least
MIN_MATCH_COUNT good matches (best first, at most a few, so it can find several
objects in a frame). It reads references at the same working resolution as
the engine, so the comparison is about search and verification, not input size.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

WORKING_SIDE = 640
FRAME_FEATURES = 1000
REFERENCE_FEATURES = 500
RATIO = 0.75
MIN_MATCH_COUNT = 10
RANSAC_PX = 5.0
MAX_OBJECTS = 4

_orb_frame = cv2.ORB_create(FRAME_FEATURES)
_orb_reference = cv2.ORB_create(REFERENCE_FEATURES)


def _gray(data: bytes) -> tuple[np.ndarray, float]:
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    h, w = gray.shape
    f = min(1.0, WORKING_SIDE / max(w, h))
    if f < 1.0:
        gray = cv2.resize(gray, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return gray, f


def describe_reference(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) float32 points in full-reference pixels and (K, 32) uint8 descriptors."""
    gray, f = _gray(data)
    kp, des = _orb_reference.detectAndCompute(gray, None)
    if des is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in kp], np.float32).reshape(-1, 2) / f, des


class Baseline:
    """References held as lists; one BFMatcher pass per reference for every frame."""

    def __init__(self, items: list[str], sizes: list[tuple[int, int]], points: list[np.ndarray], descriptors: list[np.ndarray]) -> None:
        self.items = items
        self.sizes = sizes
        self.points = points
        self.descriptors = descriptors
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def recognize(self, data: bytes) -> tuple[list[tuple[str, np.ndarray]], float]:
        """Found items with their corners in frame pixels, and the time taken in ms."""
        started = time.perf_counter()
        gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        kp, des = _orb_frame.detectAndCompute(gray, None)
        found: list[tuple[str, np.ndarray]] = []
        if des is not None and len(kp) >= 2:
            frame_points = np.array([k.pt for k in kp], np.float32)
            candidates = []
            for i, ref_des in enumerate(self.descriptors):
                if len(ref_des) < 2:
                    continue
                pairs = self.matcher.knnMatch(des, ref_des, k=2)
                good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
                if len(good) >= MIN_MATCH_COUNT:
                    candidates.append((len(good), i, good))
            candidates.sort(key=lambda c: -c[0])
            for _, i, good in candidates[:MAX_OBJECTS]:
                src = self.points[i][[m.trainIdx for m in good]]
                dst = frame_points[[m.queryIdx for m in good]]
                H, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PX)
                if H is None or int(mask.sum()) < MIN_MATCH_COUNT:
                    continue
                w, h = self.sizes[i]
                corners = cv2.perspectiveTransform(np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float32), H)[0]
                found.append((self.items[i], corners.astype(np.float64)))
        return found, (time.perf_counter() - started) * 1000.0
