"""Where recognition misses: corners, the search's shortlist, verification or the features; and what settings change.

    PYTHONPATH=. .venv/bin/python -m bench.misses                          # 10,000 references
    PYTHONPATH=. .venv/bin/python -m bench.misses --size 1000 --set candidates=10 --set ivf_probe=5,neighbours=6

Loads the benchmark's collection (bench/run.py's references, same drops) and its
query frames (seed 7, as `python -m bench`), then sorts each frame of a one-object
level: right item with its corners within 10 px; right item, corners further off;
wrong or no item, but found when matched against the right reference alone (the
way a stream looks for an item it lost: no search of the collection, the same
verification), so the search's shortlist lost it; not found alone although at
least `min_inliers` of the pairs verification starts from lie where the true pose
puts them, so verification rejected a pose the features carry; and fewer such
pairs than that, so the frame's features do not carry the object. Then recall,
false positives and latency of each `--set` variant of the settings next to the
defaults, on every level's frames and on a dim diagnostic level (how the settings
treat flat, dark frames); the variants take turns frame by frame, so the machine's
drift during the run weighs on all alike.
Writes bench/results/misses.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np

from bench import dataset, queries
from bench.queries import Frame
from bench.report import publish
from bench.run import COLLECTION, CORNER_TOLERANCE_PX, RESULTS, Outcome, one_thread, prepare_collection, run_ours
from bench.scenes import corner_error, on_true_pose
from matcher.decode import decode_image
from matcher.features import describe_frame
from matcher.index import match_descriptors
from matcher.model import Features, Reference
from matcher.recognizer import Recognizer
from matcher.settings import MatcherSettings

LEVELS = ("moderate", "hard", "several", queries.DIM)
SORTED_LEVELS = ("moderate", "hard")  # the one-object levels with targets: each frame sorted into MISS_KINDS


def add_variants_option(parser: argparse.ArgumentParser) -> None:
    """`--set NAME=VALUE[,NAME=VALUE]`, repeatable: settings variants to run next to the defaults (`variant`)."""
    parser.add_argument("--set", dest="variants", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]")


def as_flags(variants: list[str]) -> str:
    """The `--set` flags that run `variants` again, for a table's command line."""
    return "".join(f" --set {v}" for v in variants)


def variant(settings: MatcherSettings, text: str) -> MatcherSettings:
    """`settings` with `name=value,name=value` applied (values parsed as the setting's type)."""
    changes = {}
    for pair in filter(None, text.split(",")):
        name, _, value = pair.partition("=")
        if not hasattr(settings, name):
            raise SystemExit(f"no setting {name!r}")
        kind = type(getattr(settings, name))
        changes[name] = kind(float(v) for v in value.split(";")) if kind in (list, tuple) else kind(value)
    return dataclasses.replace(settings, **changes)


MISS_KINDS = (
    ("right", "right, corners within 10 px"),
    ("corners", "right item, a corner over 10 px off"),
    ("shortlist", "found matching the right reference alone (the shortlist lost it)"),
    ("verification", "not found alone, but enough pairs on the true pose (verification rejects it)"),
    ("features", "fewer than `min_inliers` pairs on the true pose (the features do not carry it)"),
)


def true_pose_pairs(frame: Features, reference: Reference, corners: np.ndarray, scale: float, settings: MatcherSettings) -> int:
    """How many of the frame's ratio-tested pairs with the reference lie where the true pose puts them.

    The pairs are those verification starts from (`match_descriptors`); a pair counts when the
    true homography brings its reference point within RANSAC's threshold of its frame point.
    """
    found = match_descriptors(frame.descriptors, reference, settings)
    if found is None:
        return 0
    frame_idx, ref_idx = found
    ref = reference.features
    pose = on_true_pose(ref.points[ref_idx], frame.points[frame_idx], ref.width, ref.height, corners * scale, settings.ransac_reprojection_px)
    return int(pose.sum())


def classify(recognizer: Recognizer, frame: Frame) -> str:
    """Which of MISS_KINDS a one-object frame is."""
    settings = recognizer.settings
    placement = frame.placements[0]
    result = recognizer.recognize(COLLECTION, frame.data)
    if result.matches and result.matches[0].item == placement.name:
        error = corner_error(result.matches[0].corners, placement.corners)
        return "right" if error <= CORNER_TOLERANCE_PX else "corners"
    image = decode_image(frame.data, settings.frame_max_side, settings.max_image_pixels)
    features = describe_frame(image.gray, settings)
    if recognizer.find_items(COLLECTION, image, features, [placement.name]).matches:
        return "shortlist"
    reference = recognizer.collection(COLLECTION).reference(placement.name)
    if reference is not None and true_pose_pairs(features, reference, placement.corners, image.scale, settings) >= settings.min_inliers:
        return "verification"
    return "features"


def classify_misses(recognizer: Recognizer, frames: list[Frame]) -> dict[str, dict[str, int]]:
    """Per one-object level: how many frames of each of MISS_KINDS."""
    out: dict[str, dict[str, int]] = {}
    for level in SORTED_LEVELS:
        counts = dict.fromkeys((kind for kind, _ in MISS_KINDS), 0)
        for frame in (f for f in frames if f.level == level):
            counts[classify(recognizer, frame)] += 1
        out[level] = counts
    return out


def in_turn(recognizer: Recognizer, variants: list[tuple[str, MatcherSettings]], frames: list[Frame]) -> list[list[Outcome]]:
    """Each variant's outcome on every frame; the variants take turns on each frame, in rotating order."""
    outcomes: list[list[Outcome]] = [[] for _ in variants]
    for n, frame in enumerate(frames):
        for i in range(len(variants)):
            k = (n + i) % len(variants)
            recognizer.settings = variants[k][1]
            outcomes[k] += run_ours(recognizer, [frame])
    return outcomes


def recall(outcomes: list[Outcome]) -> dict[str, float]:
    by_level: dict[str, list[bool]] = {}
    for o in outcomes:
        by_level.setdefault(o.level, []).extend(o.found)
    return {level: 100.0 * float(np.mean(hits)) for level, hits in by_level.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.misses", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=200, help="frames per level (200, as the full benchmark)")
    add_variants_option(parser)
    parser.add_argument("--output", type=Path, default=RESULTS / "misses.md")
    args = parser.parse_args(argv)
    one_thread()
    settings = MatcherSettings()
    collection, _, _ = prepare_collection(args.size, settings)
    backgrounds = [cv2.imread(p, cv2.IMREAD_COLOR) for p in dataset.background_paths()]
    targets = [(s.item, s.kind, dataset.render(s)) for s in collection.specs[:100]]
    every_level = queries.make_frames(7, args.frames, targets, backgrounds)
    frames = [f for f in every_level if f.level in LEVELS]
    dim = queries.make_frames(8, args.frames, targets, backgrounds, levels=(queries.DIM,))
    recognizer = Recognizer(settings)
    recognizer.load(COLLECTION, collection.references(len(collection.specs)))

    split = classify_misses(recognizer, frames)
    variants = [("defaults", variant(settings, "")), *((v, variant(settings, v)) for v in args.variants)]
    rows = []
    for label, outcomes in zip((label for label, _ in variants), in_turn(recognizer, variants, every_level + dim), strict=True):
        ms = [o.ms for o in outcomes if o.level != queries.DIM]
        false_positives = 100.0 * float(np.mean([o.false_items > 0 for o in outcomes if o.level == "distractors"]))
        wrong = sum(o.false_items for o in outcomes if o.level not in ("distractors", queries.DIM))
        rows.append((label, recall(outcomes), false_positives, wrong, float(np.median(ms)), float(np.percentile(ms, 95))))
        print(rows[-1], flush=True)

    lines = [
        "# Where recognition misses",
        "",
        f"`PYTHONPATH=. .venv/bin/python -m bench.misses --size {args.size}"
        + as_flags(args.variants)
        + f"`: {len(collection.specs):,} references, the benchmark's frames (seed 7, {args.frames} per level).",
        "",
        "Each frame of a one-object level, by what became of it (a frame counts once, in the first that fits):",
        "",
        "| level | frames | " + " | ".join(text for _, text in MISS_KINDS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in MISS_KINDS) + " |",
    ]
    for level, counts in split.items():
        lines.append(f"| {level} | {sum(counts.values())} | " + " | ".join(str(counts[kind]) for kind, _ in MISS_KINDS) + " |")
    lines += [
        "",
        f"Recall@1 (right item, corners within 10 px), false positives on distractors and latency per frame over "
        f"every level ({len(every_level)} frames, as `python -m bench` times them), one process; and recall on "
        f"{len(dim)} more frames of the diagnostic level `{queries.DIM}` (bench/queries.py: moderate frames in a room "
        "too dark for the camera, seed 8), which only this table shows. The variants take turns frame by frame (each "
        "frame goes through every variant, in rotating order, before the next), so the machine's drift during the "
        "run weighs on all of them alike. Wrong items: items returned that the frame did not show, on the frames "
        "showing references (look-alikes of what they show):",
        "",
        "| settings | " + " | ".join(LEVELS) + " | false positives | wrong items | p50 / p95 ms |",
        "| --- | " + " | ".join("---" for _ in LEVELS) + " | --- | --- | --- |",
    ]
    for label, hits, false_positives, wrong, p50, p95 in rows:
        lines.append(
            f"| {label} | "
            + " | ".join(f"{hits.get(level, float('nan')):.1f} %" for level in LEVELS)
            + f" | {false_positives:.1f} % | {wrong} | {p50:.1f} / {p95:.1f} |"
        )
    publish(lines, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
