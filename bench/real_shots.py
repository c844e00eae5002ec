"""Real camera shots: the engine on photographs a camera took of flat objects from other viewpoints.

    PYTHONPATH=. .venv/bin/python -m bench.real_shots [--size 10000] [--views 20]

The main benchmark pastes each reference into a photo under a homography it picks, so its
views are exact but synthetic. Here a camera took them, with its own optics, focus, light and
noise, and nothing in them was chosen by this project. Three subjects from Debian packages
(`bench/sources.py`):

- **graffiti wall** (`opencv-doc`, `graf1.png` -> `graf3.png`): a wall shot head-on and from
  about 40 degrees to the side; ground truth is the homography `H1to3p.xml` that ships with the
  images (the Oxford affine-covariant regions set).
- **biscuit box** (`opencv-doc`, `box.png` -> `box_in_scene.png`): a box front shot flat, and a
  grey shot of the box small and tilted in a heap of other boxes, partly under one of them.
- **comic poster** (`visp-images-data`, `cube/image.*.pgm`): a hand-held camera (384x288) moving
  over a poster of comic panels with a cube standing on it. The references are the poster's
  left and right columns cut from the first frame; the queries are the later frames in which
  the camera has moved at least `MIN_CAMERA_MOVE_PX` from there.

Ground truth for the box and the poster is fitted with SIFT (up to 8,000 keypoints at the
shots' own resolution, Lowe's ratio 0.75, MAGSAC at 2 px), a slower feature than the engine's
ORB and independent of it; each poster column on the pairs inside it; a fit on fewer than `MIN_TRUTH_INLIERS` inliers or with a median
residual above `MAX_TRUTH_RESIDUAL_PX` stops the run instead of judging against it.

Views are 640x480 JPEGs (quality 85), as the camera page sends them. The graffiti and box
shots are framed as a phone held at a slant would frame them: the first view is the whole
shot, the others are turned by up to 30 degrees and zoomed in by up to a third (`--views` per
shot, fixed seed). Poster frames are scaled up to 640x480 as they are.

A reference is judged in a view when at least half its outline lies inside the view (a
poster column the camera has left is not); it is found when the engine returns it with every
corner within 10 px of the truth. Any item returned that the view does not show is wrong.

The references go into the benchmark's own collection (10,000 by default, described and
cached as `python -m bench` does), and into one of its 100 query targets only, where the
plain OpenCV approach (`bench/baseline.py`) runs on the same views for comparison (it takes
about a minute per frame at 10,000). Writes bench/results/real_shots.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import faiss
import numpy as np

from bench import sources
from bench.baseline import Baseline
from bench.baseline import describe_reference as baseline_describe
from bench.report import publish
from bench.run import COLLECTION, CORNER_TOLERANCE_PX, RESULTS, prepare_collection
from bench.scenes import corner_error, jpeg
from matcher.model import Reference
from matcher.recognizer import Recognizer, describe_reference_image
from matcher.settings import MatcherSettings

VIEW_W, VIEW_H = 640, 480
MIN_TRUTH_INLIERS = 60
MAX_TRUTH_RESIDUAL_PX = 1.0
MIN_CAMERA_MOVE_PX = 10.0
"""Poster frames whose view moved less than this (largest corner move of the whole frame, native px) from the
first frame, which the references are cut from, are near copies of the references and are left out."""
MIN_VISIBLE = 0.5
MAX_TURN_DEGREES = 30.0
MAX_ZOOM = 1.33
POSTER_COLUMNS = {"comic-poster-left": (0, 10, 175, 288), "comic-poster-right": (255, 10, 384, 288)}
"""x0, y0, x1, y1 in the first frame: the columns on either side of the cube."""
SUBJECTS = ("graffiti wall", "biscuit box", "comic poster")


@dataclass(frozen=True)
class RealReference:
    item: str
    subject: str
    image: np.ndarray
    """BGR, as uploaded."""


@dataclass(frozen=True)
class Shot:
    """A photograph a camera took, and where each reference lies in it."""

    subject: str
    image: np.ndarray
    truth: dict[str, np.ndarray]
    """item -> (3, 3) homography from reference pixels to shot pixels."""


@dataclass(frozen=True)
class View:
    subject: str
    data: bytes
    corners: dict[str, np.ndarray]
    """item -> (4, 2) true corners in the view, for every reference the view shows."""
    judged: list[str] = field(default_factory=list)
    """The items at least MIN_VISIBLE inside the view."""


@dataclass
class Tally:
    judged: int = 0
    returned: int = 0
    """Judged references returned, wherever their corners."""
    found: int = 0
    """...with every corner within CORNER_TOLERANCE_PX."""
    errors: list[float] = field(default_factory=list)
    wrong: int = 0
    ms: list[float] = field(default_factory=list)


class SiftTruth:
    """Ground-truth homographies from SIFT pairs (not the engine's feature)."""

    def __init__(self) -> None:
        self.sift = cv2.SIFT_create(8000)
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)

    def describe(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keypoints, descriptors = self.sift.detectAndCompute(gray, None)
        return cv2.KeyPoint_convert(keypoints).reshape(-1, 2), descriptors

    def homography(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], what: str) -> np.ndarray:
        """(3, 3) from image a's pixels to image b's; stops the run when the fit is weak."""
        H, weakness = self.fit(a, b)
        if H is None:
            raise SystemExit(f"ground truth for {what}: {weakness}")
        return H

    def fit(
        self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], within: tuple[int, ...] | None = None
    ) -> tuple[np.ndarray | None, str]:
        """(3, 3) from image a's pixels to image b's, or None and why the fit is too weak to judge against.

        `within`: x0, y0, x1, y1 of the part of image a to fit on (the pairs whose a side lies there).
        """
        pairs = self.matcher.knnMatch(a[1], b[1], k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
        src = a[0][[m.queryIdx for m in good]].astype(np.float32)
        dst = b[0][[m.trainIdx for m in good]].astype(np.float32)
        if within is not None:
            x0, y0, x1, y1 = within
            inside = (src[:, 0] >= x0) & (src[:, 0] <= x1) & (src[:, 1] >= y0) & (src[:, 1] <= y1)
            src, dst = src[inside], dst[inside]
        H, mask = (None, None) if len(src) < 8 else cv2.findHomography(src, dst, cv2.USAC_MAGSAC, 2.0, maxIters=10000, confidence=0.9999)
        inliers = 0 if mask is None else int(mask.sum())
        if H is None or inliers < MIN_TRUTH_INLIERS:
            return None, f"SIFT fit on {inliers} inliers, fewer than {MIN_TRUTH_INLIERS}"
        keep = mask.ravel().astype(bool)
        residual = float(np.median(np.linalg.norm(cv2.perspectiveTransform(src[keep][None], H)[0] - dst[keep], axis=1)))
        if residual > MAX_TRUTH_RESIDUAL_PX:
            return None, f"SIFT fit's median residual {residual:.2f} px"
        return H / H[2, 2], ""


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def opencv_subjects(sift: SiftTruth) -> tuple[list[RealReference], list[Shot]]:
    """The graffiti wall and the biscuit box: references, and one shot of each with its ground truth."""
    samples = sources.opencv_samples()
    graffiti = cv2.imread(str(samples / "graf1.png"), cv2.IMREAD_COLOR)
    fs = cv2.FileStorage(str(samples / "H1to3p.xml"), cv2.FILE_STORAGE_READ)
    graffiti_truth = fs.getFirstTopLevelNode().mat()
    fs.release()
    box = cv2.imread(str(samples / "box.png"), cv2.IMREAD_COLOR)
    box_scene = cv2.imread(str(samples / "box_in_scene.png"), cv2.IMREAD_COLOR)
    references = [RealReference("graffiti-wall", "graffiti wall", graffiti), RealReference("biscuit-box", "biscuit box", box)]
    box_truth = sift.homography(sift.describe(_gray(box)), sift.describe(_gray(box_scene)), "box_in_scene.png")
    shots = [
        Shot("graffiti wall", cv2.imread(str(samples / "graf3.png"), cv2.IMREAD_COLOR), {"graffiti-wall": graffiti_truth}),
        Shot("biscuit box", box_scene, {"biscuit-box": box_truth}),
    ]
    return references, shots


def poster_subjects(sift: SiftTruth) -> tuple[list[RealReference], list[Shot], int]:
    """The comic poster's two columns, the frames that moved away from the first, and how many did not."""
    frames = sorted((sources.visp_images() / "cube").glob("image.*.pgm"))
    first = cv2.imread(str(frames[0]), cv2.IMREAD_GRAYSCALE)
    references = [
        RealReference(item, "comic poster", cv2.cvtColor(first[y0:y1, x0:x1], cv2.COLOR_GRAY2BGR))
        for item, (x0, y0, x1, y1) in POSTER_COLUMNS.items()
    ]
    first_described = sift.describe(first)
    h, w = first.shape
    outline = np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float32)
    shots, near_copies = [], 0
    for path in frames[1:]:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        described = sift.describe(gray)
        H = sift.homography(first_described, described, path.name)
        if np.max(np.linalg.norm(cv2.perspectiveTransform(outline, H)[0] - outline[0], axis=1)) < MIN_CAMERA_MOVE_PX:
            near_copies += 1
            continue
        # Each column's truth is fitted on its own pairs: the poster is not quite flat, nor the lens quite free of
        # distortion, and a fit on the whole view puts a column's corners out of view several px elsewhere.
        # A column mostly out of view, whose own pairs are too few, is placed by the whole view's fit.
        truth = {}
        for item, box in POSTER_COLUMNS.items():
            column, _ = sift.fit(first_described, described, within=box)
            truth[item] = (H if column is None else column) @ np.array([[1, 0, box[0]], [0, 1, box[1]], [0, 0, 1]], np.float64)
        shots.append(Shot("comic poster", cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), truth))
    return references, shots, near_copies


def load_subjects() -> tuple[list[RealReference], list[Shot], int]:
    """Every subject's references and shots, and how many poster frames were left out as near copies."""
    sift = SiftTruth()
    references, shots = opencv_subjects(sift)
    poster_references, poster_shots, near_copies = poster_subjects(sift)
    return references + poster_references, shots + poster_shots, near_copies


def _outline(H: np.ndarray, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.perspectiveTransform(np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float64), H)[0]


def _visible(corners: np.ndarray) -> float:
    """Share of a convex outline's area inside the view."""
    quad = corners.astype(np.float32)
    area = abs(cv2.contourArea(quad))
    if area <= 0:
        return 0.0
    inside, _ = cv2.intersectConvexConvex(quad, np.array([[0, 0], [VIEW_W, 0], [VIEW_W, VIEW_H], [0, VIEW_H]], np.float32))
    return float(inside) / area


def _framing(rng: np.random.Generator, shot: Shot, references: dict[str, RealReference], whole: bool) -> np.ndarray:
    """(3, 3) shot pixels -> view pixels: a 640x480 window of the shot, turned and zoomed, never past its edges."""
    h, w = shot.image.shape[:2]
    turn = 0.0 if whole else np.radians(rng.uniform(-MAX_TURN_DEGREES, MAX_TURN_DEGREES))
    c, s = abs(np.cos(turn)), abs(np.sin(turn))
    # The window, turned back into the shot, spans this much of it at zoom 1 (view px per shot px)...
    span_w, span_h = VIEW_W * c + VIEW_H * s, VIEW_W * s + VIEW_H * c
    least = max(span_w / w, span_h / h)  # ...so this is the least zoom that stays inside the shot.
    zoom = least * (1.0 if whole else rng.uniform(1.0, MAX_ZOOM))
    half_w, half_h = span_w / (2 * zoom), span_h / (2 * zoom)
    if whole:
        centre = np.array([w / 2, h / 2])
    else:
        # Aimed at the references, a little off.
        aim = np.mean([_outline(H, references[item].image).mean(axis=0) for item, H in shot.truth.items()], axis=0)
        centre = aim + rng.uniform(-0.15, 0.15, 2) * np.array([w, h])
    centre = np.clip(centre, [half_w, half_h], [max(half_w, w - half_w), max(half_h, h - half_h)])
    cos, sin = np.cos(turn), np.sin(turn)
    to_origin = np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1]])
    turn_zoom = np.array([[zoom * cos, -zoom * sin, 0], [zoom * sin, zoom * cos, 0], [0, 0, 1]])
    to_view = np.array([[1, 0, VIEW_W / 2], [0, 1, VIEW_H / 2], [0, 0, 1]])
    return to_view @ turn_zoom @ to_origin


def make_views(references: list[RealReference], shots: list[Shot], views_per_shot: int, seed: int = 11) -> list[View]:
    by_item = {r.item: r for r in references}
    rng = np.random.default_rng(seed)
    views = []
    for shot in shots:
        if shot.subject == "comic poster":  # a camera frame already: scaled to the view as it is
            h, w = shot.image.shape[:2]
            framings = [np.diag([VIEW_W / w, VIEW_H / h, 1.0])]
        else:
            framings = [_framing(rng, shot, by_item, i == 0) for i in range(views_per_shot)]
        for V in framings:
            image = cv2.warpPerspective(shot.image, V, (VIEW_W, VIEW_H), flags=cv2.INTER_LINEAR)
            corners = {item: _outline(V @ H, by_item[item].image) for item, H in shot.truth.items()}
            judged = [item for item, c in corners.items() if _visible(c) >= MIN_VISIBLE]
            views.append(View(shot.subject, jpeg(image, 85), corners, judged))
    return views


def run(recognize, views: list[View]) -> dict[str, Tally]:
    """`recognize(data) -> [(item, corners)]`; the tally per subject and over all."""
    tallies = {s: Tally() for s in (*SUBJECTS, "all")}
    for view in views:
        started = time.perf_counter()
        found = recognize(view.data)
        ms = (time.perf_counter() - started) * 1000.0
        for tally in (tallies[view.subject], tallies["all"]):
            tally.ms.append(ms)
            tally.wrong += sum(1 for item, _ in found if item not in view.corners)
            for item in view.judged:
                tally.judged += 1
                mine = [c for i, c in found if i == item]
                if mine:
                    tally.returned += 1
                    error = corner_error(np.asarray(mine[0]).tolist(), view.corners[item])
                    tally.errors.append(error)
                    tally.found += error <= CORNER_TOLERANCE_PX
    return tallies


def _engine(recognizer: Recognizer):
    def recognize(data: bytes) -> list[tuple[str, list[list[float]]]]:
        return [(m.item, m.corners) for m in recognizer.recognize(COLLECTION, data).matches]

    return recognize


def _baseline(baseline: Baseline):
    def recognize(data: bytes) -> list[tuple[str, np.ndarray]]:
        return baseline.recognize(data)[0]

    return recognize


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def as_reference(reference: RealReference, settings: MatcherSettings) -> Reference:
    """The engine's reference for a real one, uploaded as a lossless PNG."""
    return Reference(reference.item, reference.item, {"subject": reference.subject}, describe_reference_image(_png(reference.image), settings).features)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_shots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="references of the benchmark's collection to add them to")
    parser.add_argument("--views", type=int, default=20, help="views of each of the graffiti and box shots")
    parser.add_argument("--out", type=Path, default=RESULTS / "real_shots.md")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    settings = MatcherSettings()

    references, shots, near_copies = load_subjects()
    views = make_views(references, shots, args.views)
    real = [as_reference(r, settings) for r in references]
    collection, _, _ = prepare_collection(args.size, settings)
    small = min(100, len(collection.specs))
    print(f"{len(views)} views of {len(shots)} shots ({near_copies} poster frames left out as near copies of the references)")

    rows: dict[str, dict[str, Tally]] = {}
    for label, count in ((f"engine, {args.size:,} + 4 references", args.size), (f"engine, {small} + 4 references", small)):
        recognizer = Recognizer(settings)
        recognizer.load(COLLECTION, collection.references(count) + real)
        run(_engine(recognizer), views[:3])  # warm-up
        rows[label] = run(_engine(recognizer), views)
        del recognizer
    points = collection.baseline_points[:small]
    descriptors = collection.baseline[:small]
    if any(d is None for d in descriptors) or any(p is None for p in points):
        raise SystemExit("the benchmark's first references lack the baseline's descriptors")
    described = [baseline_describe(_png(r.image)) for r in references]
    baseline = Baseline(
        [s.item for s in collection.specs[:small]] + [r.item for r in references],
        [(f.width, f.height) for f in collection.features[:small]] + [(r.image.shape[1], r.image.shape[0]) for r in references],
        list(points) + [p for p, _ in described],
        list(descriptors) + [d for _, d in described],
    )
    rows[f"plain OpenCV, {small} + 4 references"] = run(_baseline(baseline), views)

    lines = [
        "# Real camera shots",
        "",
        f"`{' '.join(['python -m bench.real_shots', *(argv if argv is not None else sys.argv[1:])])}`: {len(views)} views "
        f"(640x480 JPEG) of {len(shots)} real shots; {near_copies} poster frames left out as near copies of the references. "
        f"A reference is judged where at least {MIN_VISIBLE:.0%} of it is in view, and found when every corner is within "
        f"{CORNER_TOLERANCE_PX:.0f} px of the truth (in brackets: returned at all, wherever its corners). How the views and the ground truth are made: bench/real_shots.py.",
        "",
        "| subject | views | judged | " + " | ".join(f"{label}: found (returned)" for label in rows) + " | median corner error (engine, largest) | wrong items (per label) | engine p50 / p95 ms (largest) |",
        "| --- | --- | --- | " + " | ".join("---" for _ in rows) + " | --- | --- | --- |",
    ]
    first = next(iter(rows.values()))
    for subject in (*SUBJECTS, "all"):
        n_views = sum(1 for v in views if subject in ("all", v.subject))
        judged = first[subject].judged
        found = [f"{100 * t[subject].found / max(1, judged):.1f} % ({100 * t[subject].returned / max(1, judged):.1f} %)" for t in rows.values()]
        errors = first[subject].errors
        error = f"{statistics.median(errors):.2f} px" if errors else "-"
        wrong = " / ".join(str(t[subject].wrong) for t in rows.values())
        ms = sorted(first[subject].ms)
        timing = f"{statistics.median(ms):.1f} / {ms[min(len(ms) - 1, int(0.95 * len(ms)))]:.1f}"
        lines.append(f"| {subject} | {n_views} | {judged} | " + " | ".join(found) + f" | {error} | {wrong} | {timing} |")
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
