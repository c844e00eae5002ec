"""Which local feature carries the benchmark's frames: the engine's ORB next to OpenCV's other detectors.

    PYTHONPATH=. .venv/bin/python -m bench.detectors [--frames 200]

Takes the benchmark's 100 query targets and its moderate and hard frames (seed 7, as
`python -m bench`). Every detector describes each frame and the frame's right reference;
each frame descriptor is paired with its nearest reference descriptor when it passes
Lowe's ratio test (0.8), and the pairs that the true pose explains within RANSAC's
threshold (5 px) are counted. The engine's verification keeps a pose on its own from
`min_inliers` (12) such pairs, and from `min_seed_inliers` (8) only with many guided pairs
besides; with fewer than 8 it never finds the object, whatever the search does. So the
share of frames with 8 or more bounds the recall of an engine that pairs that feature's
descriptors this way, and the time is what the feature costs per frame.

A last row gives a ceiling for the engine's features whatever the pairing: at the exact true
pose, guided matching (`matcher.verification.guided_pairs`, as the refit uses it) pairs each
reference keypoint with the frame keypoint within RANSAC's threshold whose descriptor is
nearest, if it differs by at most `refine_max_hamming` (64) bits, one to one. No search,
ratio test or RANSAC can start from more pairs than these, so a frame short of `min_inliers`
of them is out of reach of any verification built on these keypoints.

Every detector gets the same start: the reference at the engine's working size (640 px),
at most `reference_features` (500) keypoints of it; the frame decoded and, when dim,
contrast-stretched as the engine does; at most `frame_features` (1,100) keypoints. The
engine's row is its own description (multi-scale references, grid spreading) and its own
pairing (`match_descriptors`); the others keep their strongest keypoints and pair by
brute force. One thread. Writes bench/results/detectors.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import faiss
import numpy as np

from bench import dataset, queries
from bench.misses import true_pose_pairs
from bench.report import publish
from bench.run import RESULTS
from bench.scenes import on_true_pose, true_pose
from matcher.decode import decode_image
from matcher.features import describe_frame, stretch_contrast
from matcher.model import Features, Reference
from matcher.settings import MatcherSettings
from matcher.verification import guided_pairs

LEVELS = ("moderate", "hard")
RATIO = 0.8


@dataclass(frozen=True)
class Detector:
    name: str
    make: Callable[[], cv2.Feature2D]
    norm: int


OPENCV_DETECTORS = (
    Detector("ORB, OpenCV's defaults", lambda: cv2.ORB_create(nfeatures=5000), cv2.NORM_HAMMING),
    Detector("SIFT", cv2.SIFT_create, cv2.NORM_L2),
    Detector("AKAZE", cv2.AKAZE_create, cv2.NORM_HAMMING),
    Detector("BRISK", cv2.BRISK_create, cv2.NORM_HAMMING),
)


@dataclass
class Row:
    name: str
    descriptor_bytes: int
    pairs: dict[str, list[int]]
    """Per level: pairs on the true pose, per frame."""
    ms: list[float]
    """Detection and description time per frame."""


def _strongest(detector: cv2.Feature2D, gray: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 2) points and descriptors of the `count` strongest keypoints of `gray`."""
    keypoints, descriptors = detector.detectAndCompute(gray, None)
    if descriptors is None or not keypoints:
        return np.zeros((0, 2), np.float32), None
    order = np.argsort([-kp.response for kp in keypoints], kind="stable")[:count]
    points = cv2.KeyPoint_convert(keypoints).reshape(-1, 2)[order]
    return points.astype(np.float32), descriptors[order]


def _at_working_size(image: np.ndarray, longer_side: int) -> tuple[np.ndarray, float]:
    """The grey image with its longer side at most `longer_side`, and the factor back to full pixels."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    f = min(1.0, longer_side / max(h, w))
    if f < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return gray, 1.0 / f


def _ratio_pairs(matcher: cv2.DescriptorMatcher, frame: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame and reference indices of the nearest-neighbour pairs passing the ratio test."""
    if len(reference) < 2 or len(frame) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    pairs = [m[0] for m in matcher.knnMatch(frame, reference, 2) if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    return np.array([m.queryIdx for m in pairs], int), np.array([m.trainIdx for m in pairs], int)


def measure_opencv(detector: Detector, frames: list[queries.Frame], images: dict[str, np.ndarray], settings: MatcherSettings) -> Row:
    made = detector.make()
    matcher = cv2.BFMatcher(detector.norm)
    references = {}
    for item, image in images.items():
        gray, to_full = _at_working_size(image, settings.reference_max_side)
        points, descriptors = _strongest(made, gray, settings.reference_features)
        references[item] = (points * to_full, descriptors, image.shape[1], image.shape[0])
    row = Row(detector.name, int(made.descriptorSize()) * (4 if detector.norm == cv2.NORM_L2 else 1), {lv: [] for lv in LEVELS}, [])
    for frame in frames:
        image = decode_image(frame.data, settings.frame_max_side, settings.max_image_pixels)
        started = time.perf_counter()
        points, descriptors = _strongest(made, stretch_contrast(image.gray, settings), settings.frame_features)
        row.ms.append((time.perf_counter() - started) * 1000.0)
        placement = frame.placements[0]
        ref_points, ref_descriptors, width, height = references[placement.name]
        if descriptors is None or ref_descriptors is None:
            row.pairs[frame.level].append(0)
            continue
        f, r = _ratio_pairs(matcher, descriptors, ref_descriptors)
        pose = on_true_pose(ref_points[r], points[f], width, height, placement.corners * image.scale, settings.ransac_reprojection_px)
        row.pairs[frame.level].append(int(pose.sum()))
    return row


def measure_engine(frames: list[queries.Frame], references: dict[str, Reference], settings: MatcherSettings) -> tuple[Row, Row]:
    """The engine's row, and its ceiling row: the pairs guided matching finds at the true pose."""
    row = Row("ORB, the engine's (multi-scale, spread)", 32, {lv: [] for lv in LEVELS}, [])
    ceiling = Row("ORB, the engine's: ceiling (guided pairs at the true pose)", 32, {lv: [] for lv in LEVELS}, [])
    for frame in frames:
        image = decode_image(frame.data, settings.frame_max_side, settings.max_image_pixels)
        started = time.perf_counter()
        features: Features = describe_frame(image.gray, settings)
        row.ms.append((time.perf_counter() - started) * 1000.0)
        placement = frame.placements[0]
        reference = references[placement.name]
        row.pairs[frame.level].append(true_pose_pairs(features, reference, placement.corners, image.scale, settings))
        truth = true_pose(reference.features.width, reference.features.height, placement.corners * image.scale)
        guided, _ = guided_pairs(truth, features, reference.features, settings.ransac_reprojection_px, settings.refine_max_hamming)
        ceiling.pairs[frame.level].append(len(guided))
    ceiling.ms = row.ms
    return row, ceiling


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detectors", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="frames per level (200, as the full benchmark)")
    parser.add_argument("--output", type=Path, default=RESULTS / "detectors.md")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    settings = MatcherSettings()
    collection = dataset.build_collection(100, settings)
    specs = collection.specs[:100]
    images = {s.item: dataset.render(s) for s in specs}
    backgrounds = [cv2.imread(p, cv2.IMREAD_COLOR) for p in dataset.background_paths()]
    targets = [(s.item, s.kind, images[s.item]) for s in specs]
    frames = [f for f in queries.make_frames(7, args.frames, targets, backgrounds) if f.level in LEVELS]
    engine_refs = {r.item: r for r in collection.references(len(specs))}

    engine, ceiling = measure_engine(frames, engine_refs, settings)
    rows = [engine]
    print(engine.name, flush=True)
    for detector in OPENCV_DETECTORS:
        rows.append(measure_opencv(detector, frames, images, settings))
        print(rows[-1].name, flush=True)
    rows.append(ceiling)

    need, least = settings.min_inliers, settings.min_seed_inliers
    lines = [
        "# Which feature carries the frames",
        "",
        f"`PYTHONPATH=. .venv/bin/python -m bench.detectors --frames {args.frames}`: the benchmark's 100 query targets, "
        f"its moderate and hard frames (seed 7, {args.frames} per level), one thread. A frame is carried when at least "
        f"{need} ratio-tested pairs with its right reference lie where the true pose puts them (within "
        f"{settings.ransac_reprojection_px:g} px): what the engine's verification needs for a pose on its own. With "
        f"{least} to {need - 1}, a pose is kept only if guided matching then finds {settings.min_guided_inliers} pairs; "
        f"with fewer than {least}, never. So the share of frames with {least} or more bounds the recall of an engine "
        "that pairs that feature's descriptors this way, before its search or verification loses a frame. "
        f"The last row is a ceiling for the engine's keypoints whatever the pairing: guided matching at the exact true "
        f"pose (within {settings.ransac_reprojection_px:g} px, descriptors at most {settings.refine_max_hamming} bits apart, "
        "one to one); no search, ratio test or RANSAC starts from more pairs.",
        "",
        "| feature | "
        + " | ".join(f"{lv}: frames with ≥ {need} / ≥ {least} pairs | {lv}: median pairs" for lv in LEVELS)
        + " | frame detection + description p50 ms | bytes per descriptor |",
        "| --- | " + " | ".join("--- | ---" for _ in LEVELS) + " | --- | --- |",
    ]
    for row in rows:
        cells = []
        for level in LEVELS:
            pairs = np.array(row.pairs[level])
            carried = f"{100.0 * float(np.mean(pairs >= need)):.1f} % / {100.0 * float(np.mean(pairs >= least)):.1f} %"
            cells += [carried, f"{float(np.median(pairs)):.0f}"]
        lines.append(f"| {row.name} | " + " | ".join(cells) + f" | {statistics.median(row.ms):.1f} | {row.descriptor_bytes} |")
    publish(lines, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
