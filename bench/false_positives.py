"""False positives measured on many distractor frames: 200 cannot tell 0.2 % from 0.

    PYTHONPATH=. .venv/bin/python -m bench.false_positives                  # 1,000 and 10,000 references, 2,000 frames
    PYTHONPATH=. .venv/bin/python -m bench.false_positives --sizes 10000 --set min_inliers=10

Distractor frames are the benchmark's (bench/queries.py: a background photograph that no
reference shows, blurred, lit and noisy as moderate frames, JPEG 60), drawn with their own
seed so they are not the main run's 200. Each collection is the benchmark's (bench/run.py),
and each `--set` variant of the settings runs on the same frames as the defaults. A frame
counts once however many items it returns; the items are listed to trace them.
Writes bench/results/false_positives.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from bench import dataset, queries
from bench.misses import add_variants_option, as_flags, variant
from bench.report import publish
from bench.run import COLLECTION, RESULTS, one_thread, prepare_collection
from matcher.recognizer import Recognizer
from matcher.settings import MatcherSettings

SEED = 11  # not the main run's 7 or the diagnostic levels' 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.false_positives", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--frames", type=int, default=2_000)
    add_variants_option(parser)
    parser.add_argument("--output", type=Path, default=RESULTS / "false_positives.md")
    args = parser.parse_args(argv)
    one_thread()
    settings = MatcherSettings()
    backgrounds = [cv2.imread(p, cv2.IMREAD_COLOR) for p in dataset.background_paths()]
    lines = [
        "# False positives on many distractor frames",
        "",
        f"`PYTHONPATH=. .venv/bin/python -m bench.false_positives --sizes {' '.join(map(str, args.sizes))} --frames {args.frames}"
        + as_flags(args.variants)
        + f"`: {args.frames:,} distractor frames (seed {SEED}), no reference in any of them. Target: at most 0.2 % at 10,000 references.",
        "",
        "| references | settings | frames returning an item | rate | items returned (inliers) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size in args.sizes:
        collection, _, _ = prepare_collection(size, settings)
        targets = [(s.item, s.kind, dataset.render(s)) for s in collection.specs[:100]]
        frames = queries.make_frames(SEED, args.frames, targets, backgrounds, levels=("distractors",))
        recognizer = Recognizer(settings)
        recognizer.load(COLLECTION, collection.references(len(collection.specs)))
        for label in ["defaults", *args.variants]:
            recognizer.settings = variant(settings, "" if label == "defaults" else label)
            returned = [[f"{m.name} ({m.inliers})" for m in recognizer.recognize(COLLECTION, f.data).matches] for f in frames]
            hit = [items for items in returned if items]
            listed = ", ".join(item for items in hit for item in items) or "none"
            lines.append(f"| {len(collection.specs):,} | {label} | {len(hit)} of {len(frames):,} | {100.0 * len(hit) / len(frames):.2f} % | {listed} |")
            print(lines[-1], flush=True)
    publish(lines, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
