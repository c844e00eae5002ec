"""Where recognition misses: the search's shortlist or the features, and what settings change.

    PYTHONPATH=. .venv/bin/python -m bench.misses                          # 10,000 references
    PYTHONPATH=. .venv/bin/python -m bench.misses --size 1000 --set candidates=10 --set ivf_probe=5,neighbours=6

Loads the benchmark's collection (bench/run.py's references, same drops) and its
query frames (seed 7, as `python -m bench`), then for each frame of a one-object
level whose top item is wrong or missing, matches the frame against the right
reference alone (the way a stream looks for an item it lost: no search of the
collection, the same verification). Found that way, the search's shortlist lost
it; not found, the frame's features do not carry it. Then recall and latency of
each `--set` variant of the settings on the same frames, next to the defaults.
Writes bench/results/misses.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import faiss
import numpy as np

from bench import dataset, queries
from bench.queries import Frame
from bench.run import COLLECTION, RESULTS, Outcome, prepare_collection, run_ours
from matcher.decode import decode_image
from matcher.features import describe_frame
from matcher.recognizer import Recognizer
from matcher.settings import MatcherSettings

LEVELS = ("moderate", "hard", "several")
ONE_OBJECT = ("moderate", "hard")


def variant(settings: MatcherSettings, text: str) -> MatcherSettings:
    """`settings` with `name=value,name=value` applied (values parsed as the setting's type)."""
    changes = {}
    for pair in filter(None, text.split(",")):
        name, _, value = pair.partition("=")
        if not hasattr(settings, name):
            raise SystemExit(f"no setting {name!r}")
        kind = type(getattr(settings, name))
        changes[name] = kind(value) if kind is not list else [float(v) for v in value.split(";")]
    return dataclasses.replace(settings, **changes)


def split_misses(recognizer: Recognizer, frames: list[Frame]) -> dict[str, tuple[int, int, int]]:
    """Per one-object level: (frames, top item wrong or missing, of those found when matched alone)."""
    settings = recognizer.settings
    out = {}
    for level in ONE_OBJECT:
        shown = [f for f in frames if f.level == level]
        missed = found_alone = 0
        for frame in shown:
            truth = frame.placements[0].name
            result = recognizer.recognize(COLLECTION, frame.data)
            if result.matches and result.matches[0].item == truth:
                continue
            missed += 1
            image = decode_image(frame.data, settings.frame_max_side, settings.max_image_pixels)
            alone = recognizer.find_items(COLLECTION, image, describe_frame(image.gray, settings), [truth])
            found_alone += bool(alone.matches)
        out[level] = (len(shown), missed, found_alone)
    return out


def recall(outcomes: list[Outcome]) -> dict[str, float]:
    by_level: dict[str, list[bool]] = {}
    for o in outcomes:
        by_level.setdefault(o.level, []).extend(o.found)
    return {level: 100.0 * float(np.mean(hits)) for level, hits in by_level.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.misses", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=60, help="frames per level (60, as the full benchmark)")
    parser.add_argument("--set", dest="variants", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]")
    parser.add_argument("--output", type=Path, default=RESULTS / "misses.md")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    settings = MatcherSettings()
    collection, _, _ = prepare_collection(args.size, settings)
    backgrounds = [cv2.imread(p, cv2.IMREAD_COLOR) for p in dataset.background_paths()]
    targets = [(s.item, s.kind, dataset.render(s)) for s in collection.specs[:100]]
    frames = [f for f in queries.make_frames(7, args.frames, targets, backgrounds) if f.level in LEVELS]
    recognizer = Recognizer(settings)
    recognizer.load(COLLECTION, collection.references(len(collection.specs)))

    split = split_misses(recognizer, frames)
    rows = []
    # The defaults run first and last: the difference between the two is how far the times drift in one run.
    for label, text in [("defaults", ""), *((v, v) for v in args.variants), ("defaults, again", "")]:
        recognizer.settings = variant(settings, text)
        outcomes = run_ours(recognizer, frames)
        ms = [o.ms for o in outcomes]
        rows.append((label, recall(outcomes), float(np.median(ms)), float(np.percentile(ms, 95))))
        print(rows[-1], flush=True)

    lines = [
        "# Where recognition misses",
        "",
        f"`PYTHONPATH=. .venv/bin/python -m bench.misses --size {args.size}"
        + "".join(f" --set {v}" for v in args.variants)
        + f"`: {len(collection.specs):,} references, the benchmark's frames (seed 7, {args.frames} per level).",
        "",
        "| level | frames | top item wrong or missing | of those, found matching the right reference alone (shortlist lost it) | not found even so (features) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for level, (shown, missed, alone) in split.items():
        lines.append(f"| {level} | {shown} | {missed} | {alone} | {missed - alone} |")
    lines += [
        "",
        "Recall@1 (right item, corners within 10 px) and latency per frame, one process, on the same frames:",
        "",
        "| settings | " + " | ".join(LEVELS) + " | p50 / p95 ms |",
        "| --- | " + " | ".join("---" for _ in LEVELS) + " | --- |",
    ]
    for label, hits, p50, p95 in rows:
        lines.append(f"| {label} | " + " | ".join(f"{hits.get(level, float('nan')):.1f} %" for level in LEVELS) + f" | {p50:.1f} / {p95:.1f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
