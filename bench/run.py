"""The benchmark: `python -m bench` (full) or `python -m bench --quick` (smoke check, a few minutes).

For each collection size it loads the references into a Recognizer, runs the
same query frames through it and through the plain OpenCV baseline, and
writes `bench/results/results.md`, `results.json` and plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import faiss
import numpy as np
import psutil

from bench import dataset, overlap, queries, sources
from bench.baseline import Baseline
from bench.queries import HARD_WITHOUT, LEVELS, ONE_OBJECT, Frame
from bench.scenes import corner_error, jpeg
from matcher.index import release_free_memory
from matcher.model import Reference
from matcher.recognizer import Recognizer, describe_reference_image
from matcher.settings import MatcherSettings
from matcher.store import pack_features, unpack_features

RESULTS = Path(__file__).resolve().parent / "results"
CORNER_TOLERANCE_PX = 10.0
COLLECTION = "bench"


@dataclass
class Outcome:
    """How one system did on one frame."""

    level: str
    found: list[bool]
    """Per placement: right item with corners within tolerance (recall@1 for one-object levels)."""
    errors: list[float]
    """Corner error (px) of each placement whose item was returned."""
    false_items: int
    """Returned items that are not in the frame."""
    ms: float
    kinds: list[str] = field(default_factory=list)
    """Kind of reference (dataset.KINDS) of each placement."""
    wrong: list[dict] = field(default_factory=list)
    """Each returned item that is not in the frame, with its inliers (to trace false positives)."""


def _judge(frame: Frame, found: list[tuple[str, np.ndarray]], ms: float, inliers: list[int] | None = None) -> Outcome:
    """`found` is (item, corners) best first, `inliers` the count behind each (ours only)."""
    truth = {p.name: p.corners for p in frame.placements}
    hits, errors = [], []
    if frame.level in ONE_OBJECT:
        p = frame.placements[0]
        top = found[0] if found else None
        ok = False
        if top is not None and top[0] == p.name:
            err = corner_error(top[1].tolist(), p.corners)
            errors.append(err)
            ok = err <= CORNER_TOLERANCE_PX
        hits.append(ok)
    else:
        for p in frame.placements:
            mine = [c for item, c in found if item == p.name]
            ok = False
            if mine:
                err = corner_error(mine[0].tolist(), p.corners)
                errors.append(err)
                ok = err <= CORNER_TOLERANCE_PX
            hits.append(ok)
    false_items = sum(1 for item, _ in found if item not in truth)
    wrong = [
        {"item": item, "inliers": None if inliers is None else inliers[i], "truth": sorted(truth)}
        for i, (item, _) in enumerate(found)
        if item not in truth
    ]
    return Outcome(frame.level, hits, errors, false_items, ms, list(frame.kinds), wrong)


def run_ours(recognizer: Recognizer, frames: list[Frame]) -> list[Outcome]:
    out = []
    for frame in frames:
        started = time.perf_counter()
        result = recognizer.recognize(COLLECTION, frame.data)
        ms = (time.perf_counter() - started) * 1000.0
        found = [(m.item, np.asarray(m.corners, np.float64)) for m in result.matches]
        out.append(_judge(frame, found, ms, [m.inliers for m in result.matches]))
    return out


def run_baseline(baseline: Baseline, frames: list[Frame]) -> list[Outcome]:
    out = []
    for frame in frames:
        found, ms = baseline.recognize(frame.data)
        out.append(_judge(frame, found, ms))
    return out


def summarize(outcomes: list[Outcome]) -> dict:
    """Figures per level, and per reference kind for recall."""
    summary: dict = {}
    for level in (*LEVELS, *HARD_WITHOUT):
        rows = [o for o in outcomes if o.level == level]
        if not rows:
            continue
        s: dict = {"frames": len(rows)}
        if level == "distractors":
            s["false_positive_rate"] = sum(o.false_items > 0 for o in rows) / len(rows)
            s["false_items"] = [w for o in rows for w in o.wrong]
        else:
            hits = [h for o in rows for h in o.found]
            s["recall"] = sum(hits) / len(hits)
            for group in ("real", "generated"):
                k = [h for o in rows for h, kind in zip(o.found, o.kinds, strict=True) if dataset.origin(kind) == group]
                s[f"recall_{group}"] = sum(k) / len(k) if k else None
            s["recall_by_kind"] = {}
            for kind in dataset.KINDS:
                k = [h for o in rows for h, kk in zip(o.found, o.kinds, strict=True) if kk == kind]
                if k:
                    s["recall_by_kind"][kind] = {"found": sum(k), "shown": len(k)}
            errors = [e for o in rows for e in o.errors]
            s["median_corner_error_px"] = statistics.median(errors) if errors else None
            s["wrong_item_rate"] = sum(o.false_items > 0 for o in rows) / len(rows)
            s["wrong_items"] = [w for o in rows for w in o.wrong]
        ms = [o.ms for o in rows]
        s["p50_ms"] = float(np.percentile(ms, 50))
        s["p95_ms"] = float(np.percentile(ms, 95))
        summary[level] = s
    ms = [o.ms for o in outcomes]
    summary["all"] = {"frames": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}
    return summary


def one_thread() -> None:
    """OpenCV and FAISS on one thread each: a worker's own latency, not the machine's cores'."""
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)


def _pool_worker(recognizer: Recognizer, frames: list[Frame], start, results) -> None:
    one_thread()
    start.wait()
    for frame in frames:
        recognizer.recognize(COLLECTION, frame.data)
    results.put(len(frames))


def pool_fps(recognizer: Recognizer, frames: list[Frame], processes: int) -> float:
    """Frames per second with `processes` workers, each holding the (forked) index."""
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    results = ctx.Queue()
    workers = [ctx.Process(target=_pool_worker, args=(recognizer, frames[i::processes], start, results)) for i in range(processes)]
    for w in workers:
        w.start()
    time.sleep(0.5)  # let the workers reach the start line; the clock starts below
    t0 = time.perf_counter()
    start.set()
    done = sum(results.get() for _ in workers)
    elapsed = time.perf_counter() - t0
    for w in workers:
        w.join()
    return done / elapsed


def _reset_peak_resident() -> bool:
    """Start the process's peak resident size (Linux VmHWM) afresh from what it holds now; False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_resident() -> int:
    """The process's peak resident bytes since it started or `_reset_peak_resident` (0 where not readable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _memory_child(references: list[Reference], settings: MatcherSettings, queue) -> None:
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    # Fresh copies of every part, as a worker gets them from Redis.
    held = [Reference(r.item, r.name, dict(r.metadata), unpack_features(pack_features(r.features))) for r in references]
    peak_known = _reset_peak_resident()
    recognizer = Recognizer(settings)
    recognizer.load(COLLECTION, held)
    # How far above what it then holds a worker's memory goes while it builds the index (the training).
    building = _peak_resident() - process.memory_info().rss if peak_known else None
    del held
    gc.collect()
    release_free_memory()  # as a worker does after loading
    loaded = process.memory_info().rss
    del recognizer
    gc.collect()
    release_free_memory()
    queue.put((loaded - before, loaded - process.memory_info().rss, building))


def memory_per_reference(references: list[Reference], settings: MatcherSettings) -> tuple[float, float, float | None]:
    """Bytes per reference a fresh worker grows by when it loads a collection, and of those the bytes
    the engine itself holds (given back when it is dropped); the rest is heap left fragmented by the
    freed input references. Third: the bytes per reference its memory went above what it held once
    loaded, while it built the index (None where the peak cannot be read)."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_memory_child, args=(references, settings, queue))
    p.start()
    grown, held, building = queue.get()
    p.join()
    return grown / len(references), held / len(references), None if building is None else building / len(references)


def time_to_add(recognizer: Recognizer, settings: MatcherSettings, backgrounds: list[np.ndarray], seed: int) -> dict:
    """Upload-to-recognizable time for new items: describe + index insert, then a frame must find them."""
    rng = np.random.default_rng(seed)
    index = recognizer.collection(COLLECTION)
    times, describe_times, found = [], [], 0
    photos = sources.skimage_photos()[:6]
    for n, path in enumerate(photos):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        data = jpeg(image, 92)
        item = f"new-{n}"
        t0 = time.perf_counter()
        described = describe_reference_image(data, settings)
        t1 = time.perf_counter()
        index.add(Reference(item, item, {}, described.features))
        t2 = time.perf_counter()
        times.append((t2 - t0) * 1000.0)
        describe_times.append((t1 - t0) * 1000.0)
        frame = queries.make_frame(rng, "easy", [(item, "real", image)], backgrounds)
        result = recognizer.recognize(COLLECTION, frame.data)
        found += bool(result.matches and result.matches[0].item == item)
    for n in range(len(photos)):
        index.remove(f"new-{n}")
    return {
        "add_ms_median": statistics.median(times),
        "add_ms_max": max(times),
        "describe_ms_median": statistics.median(describe_times),
        "recognized_after_add": f"{found}/{len(photos)}",
    }


COPY_CHECK_FRAME = {"frame_features": 1100, "searched_features": 1100, "frame_corner_threshold": 12, "min_contrast_range": 160, "fallback_candidates": 0}
"""How the copy check describes a target's image and shortlists for it: the engine's frame settings when the query
set was fixed, whatever the engine's defaults are now."""


def without_copies_of_targets(
    collection: dataset.Collection, first: int, settings: MatcherSettings, also_drop: set[str] = frozenset()
) -> tuple[dataset.Collection, list[str]]:
    """The collection without references that show the same picture as one of the query targets.

    The packages hold a few pictures twice (two surveys' photographs of one
    nebula, one painting in two sizes, one planet in red and in green); a frame
    of such a target rightly finds both, which would count as a wrong item. Each
    target's own image is recognized against the whole collection and the other
    items found are dropped (of two targets showing one picture, the later one),
    and so are the items in `also_drop`. A dropped target's place goes to the next
    reference, which is checked in turn.
    """
    recognizer = Recognizer(settings)
    recognizer.load(COLLECTION, collection.references(len(collection.specs)))
    order = {s.item: i for i, s in enumerate(collection.specs)}
    copies: set[str] = set()
    checked: set[str] = set()
    while True:
        targets = [s for s in collection.specs if s.item not in copies and s.item not in also_drop][:first]
        unchecked = [s for s in targets if s.item not in checked]
        if not unchecked:
            break
        for spec in unchecked:
            checked.add(spec.item)
            if spec.item in copies:
                continue
            result = recognizer.recognize(COLLECTION, jpeg(dataset.render(spec), 90))
            for item in {m.item for m in result.matches} - {spec.item}:
                if item in checked and order[item] < order[spec.item]:
                    copies.add(spec.item)  # it shows an earlier target's picture: that one stays
                else:
                    copies.add(item)
    del recognizer
    dropped = copies | set(also_drop)
    keep = [i for i, s in enumerate(collection.specs) if s.item not in dropped]
    kept = dataset.Collection(
        [collection.specs[i] for i in keep],
        [collection.features[i] for i in keep],
        [collection.baseline[i] for i in keep],
        [collection.baseline_points[i] for i in keep],
        collection.refused,
    )
    return kept, sorted(copies)


def prepare_collection(
    size: int, settings: MatcherSettings
) -> tuple[dataset.Collection, list[str], dict[str, tuple[str, str]]]:
    """The benchmark's references, `size` of them: the collection, the copies of targets and the scenes dropped."""
    # A few more than the size, so that it is still reached after the references below are dropped.
    collection = dataset.build_collection(size + size // 100, settings)
    first = min(100, len(collection.specs))
    scenes = overlap.showing_a_background(collection.specs, dataset.background_paths())
    if any(s.item in scenes for s in collection.specs[:first]):
        raise SystemExit(f"query targets show a background's scene: {sorted(s.item for s in collection.specs[:first] if s.item in scenes)}")
    # Copies are looked for with the strict shortlist (no look-alike votes, no items shortlisted
    # on a few agreeing votes): it finds a picture shown twice, with votes to spare, while those
    # also verify collages that share only typeset text with a target (a date, a web address in
    # the same face), which are confusers to keep, not copies.
    # Every item that verifies counts: a copy lies exactly where the target does, which is what
    # one-item-per-place would hide.
    # The frame side is pinned (COPY_CHECK_FRAME): which references are dropped decides which are
    # the query targets, and the frames must stay the same when the engine's frame settings change.
    strict = dataclasses.replace(
        settings, shared_vote_weight=0.0, min_agreeing_votes=0, max_outline_overlap=1.0, **COPY_CHECK_FRAME
    )
    collection, copies = without_copies_of_targets(collection, first, strict, set(scenes))
    if copies:
        print(f"dropped {len(copies)} references showing the same picture as a query target: {', '.join(copies)}")
    if scenes:
        print(f"dropped {len(scenes)} references made from a photo of a background's scene: {', '.join(sorted(scenes))}")
    trimmed = dataclasses.replace(
        collection, **{f: getattr(collection, f)[:size] for f in ("specs", "features", "baseline", "baseline_points")}
    )
    return trimmed, copies, scenes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="sizes 100 and 1,000, few frames: a smoke check")
    parser.add_argument("--sizes", type=int, nargs="*", help="collection sizes (default 100 1000 10000)")
    parser.add_argument("--with-100k", action="store_true", help="also 100,000 references (most of them text-only pages: the crops run out)")
    parser.add_argument("--frames", type=int, help="frames per difficulty level")
    parser.add_argument("--baseline-frames", type=int, nargs="*", help="baseline frames per level at each size")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("matplotlib") is None:  # checked now, not when the plots are drawn minutes later
        parser.exit(2, "the benchmark draws its plots with matplotlib: .venv/bin/pip install -r bench/requirements.txt\n")

    one_thread()
    settings = MatcherSettings()
    if args.quick:
        sizes = args.sizes or [100, 1000]
        per_level = args.frames or 40
        base_frames = args.baseline_frames or [10, 2]
    else:
        sizes = args.sizes or [100, 1000, 10_000]
        per_level = args.frames or 200
        base_frames = args.baseline_frames or [40, 10, 3]
    if args.with_100k:
        sizes.append(100_000)
        base_frames.append(0)
    base_frames = (base_frames + [base_frames[-1]] * len(sizes))[: len(sizes)]
    started = time.perf_counter()

    collection, copies, scenes = prepare_collection(max(sizes), settings)
    backgrounds = [cv2.imread(p, cv2.IMREAD_COLOR) for p in dataset.background_paths()]
    n_available = len(collection.specs)
    first = min(100, n_available)
    pool = [(s.item, s.kind, dataset.render(s)) for s in collection.specs[:first]]
    frames = queries.make_frames(7, per_level, pool, backgrounds)
    # The hard level again, each time with one degradation left out: what each costs (own seed,
    # so the frames of the levels above stay the same).
    hard_explained = queries.make_frames(8, per_level, pool, backgrounds, ("hard", *HARD_WITHOUT))
    print(f"{len(frames)} frames over {len(LEVELS)} levels; references: {n_available} described, refused {collection.refused}")
    for size, n_base in zip(sizes, base_frames, strict=True):
        if n_base and any(b is None for b in collection.baseline[: min(size, n_available)]):
            parser.error(f"the baseline's descriptors are kept for the first {dataset.BASELINE_CANDIDATES:,} collages only: no baseline frames at {size:,}")

    report: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "opencv": cv2.__version__,
            "faiss": faiss.__version__,
            "load_average_at_start": list(os.getloadavg()),
        },
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "frames_per_level": per_level,
        "targets": collection.counts(first),
        "refused": collection.refused,
        "copies_of_targets_dropped": copies,
        "background_scenes_dropped": {item: [Path(p).name for p in pair] for item, pair in sorted(scenes.items())},
        "sizes": {},
    }
    for size, n_base in zip(sizes, base_frames, strict=True):
        size = min(size, n_available)
        references = collection.references(size)
        kinds = collection.counts(size)
        recognizer = Recognizer(settings)
        gc.collect()
        t0 = time.perf_counter()
        recognizer.load(COLLECTION, references)
        build_s = time.perf_counter() - t0
        run_ours(recognizer, frames[:5])  # warm-up: first-call allocations are not a frame's cost
        ours = run_ours(recognizer, frames)
        entry: dict = {"references": kinds, "build_s": build_s, "ours": summarize(ours), "load_average": list(os.getloadavg())}
        entry["hard_explained"] = summarize(run_ours(recognizer, hard_explained))
        entry["fps_pool"] = pool_fps(recognizer, frames[: min(len(frames), 400)], 2)
        (
            entry["memory_per_reference_bytes"],
            entry["memory_held_per_reference_bytes"],
            entry["memory_building_per_reference_bytes"],
        ) = memory_per_reference(references, settings)
        entry["add"] = time_to_add(recognizer, settings, backgrounds, size)
        if n_base:
            subset = [f for level in LEVELS for f in [x for x in frames if x.level == level][:n_base]]
            baseline = Baseline(
                [s.item for s in collection.specs[:size]],
                [(f.width, f.height) for f in collection.features[:size]],
                [p for p in collection.baseline_points[:size] if p is not None],
                [d for d in collection.baseline[:size] if d is not None],
            )
            base = run_baseline(baseline, subset)
            ours_subset = [o for o, f in zip(ours, frames, strict=True) if any(f is x for x in subset)]
            entry["baseline"] = summarize(base)
            entry["ours_on_baseline_frames"] = summarize(ours_subset)
        report["sizes"][str(size)] = entry
        print(_size_line(size, entry))
        del recognizer
    report["elapsed_s"] = time.perf_counter() - started
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    from bench.report import write_report

    write_report(report, args.out, quick=args.quick)
    print((args.out / "results.md").read_text())


def _size_line(size: int, e: dict) -> str:
    o = e["ours"]
    parts = [f"{size} refs: build {e['build_s']:.1f}s", f"p50 {o['all']['p50_ms']:.1f} ms", f"p95 {o['all']['p95_ms']:.1f} ms"]
    for level in LEVELS:
        if level in o:
            v = o[level].get("recall", o[level].get("false_positive_rate"))
            parts.append(f"{level} {100 * v:.1f}%")
    if "baseline" in e:
        parts.append(f"baseline p50 {e['baseline']['all']['p50_ms']:.0f} ms")
    return ", ".join(parts)
