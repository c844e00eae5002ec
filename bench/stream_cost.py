"""CPU time per camera frame in one process, by stream frame rate: what the load test costs without the machine's noise.

    PYTHONPATH=. .venv/bin/python -m bench.stream_cost                 # 1,000 references
    PYTHONPATH=. .venv/bin/python -m bench.stream_cost --references 100

The same clips as bench/load.py (a reference moving in perspective over a
held-out photo, 640x480 JPEG at 15 fps) go through one worker's stream
sessions (matcher/session.py) in this process, with one OpenCV and one FAISS
thread like a worker. A stream served at a lower rate gets every k-th frame
of the clip, so its object moves k times further between the frames it sees:
that is what a camera gets when many streams share the pool. A last row sends
unrelated scenes (a different reference in a different place every frame), the
worst case for tracking: every track fails.

Per rate: CPU ms per frame (mean over all frames, and the median of frames that
ran full recognition and of frames that were only tracked), the share of frames
that ran full recognition, the share of frames where the clip's reference was
reported, and the corner error of reported outlines against the truth. CPU time
is counted with `time.process_time`, so other work on the machine slows the
wall clock but hardly changes these figures; the capacity column is what two
such workers on two free cores serve (2 x 1000 / mean ms). Writes
bench/results/stream_cost.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import faiss
import numpy as np

from bench import dataset
from bench.load import CLIP_FRAMES, CLIPS, path_quad
from bench.scenes import fit_background, jpeg, paste, random_quad
from matcher.recognizer import Recognizer
from matcher.session import StreamSessions
from matcher.settings import MatcherSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COLLECTION = "cost"
CAMERA_FPS = 15.0
STEPS = (1, 2, 4, 8, 12)  # 15, 7.5, 3.75, 1.9 and 1.25 frames per second per stream
FRAMES_PER_STREAM = 90
WORKERS = 2


@dataclass
class Clip:
    item: str
    frames: list[bytes]
    truth: list[np.ndarray]
    """(4, 2) corners of the item in each frame."""


@dataclass
class Tally:
    cpu_ms: list[float] = field(default_factory=list)
    recognized_ms: list[float] = field(default_factory=list)
    tracked_ms: list[float] = field(default_factory=list)
    tracking_step_ms: list[float] = field(default_factory=list)
    found: int = 0
    corner_errors: list[float] = field(default_factory=list)
    off_by_clip: dict[str, int] = field(default_factory=dict)
    """Frames where the clip's reference was not reported or came with a corner over 10 px off, per clip."""


OFF_PX = 10.0  # a reported outline with a corner further off than this is counted per clip


def make_clips(recognizer: Recognizer, collection: dataset.Collection, count: int) -> list[Clip]:
    """CLIPS clips of references that recognition finds in the clip's first frame (as bench/load.py picks them)."""
    backgrounds = [fit_background(cv2.imread(p)) for p in dataset.background_paths()[:CLIPS]]
    clips: list[Clip] = []
    for spec in collection.specs[:count]:
        if len(clips) == CLIPS:
            break
        reference = dataset.render(spec)
        h, w = reference.shape[:2]
        background = backgrounds[len(clips)]
        truth = [path_quad(i / CLIP_FRAMES, w, h) for i in range(CLIP_FRAMES)]
        frames = [jpeg(paste(background, reference, quad), 80) for quad in truth]
        if any(m.item == spec.item for m in recognizer.recognize(COLLECTION, frames[0]).matches):
            clips.append(Clip(spec.item, frames, truth))
    if not clips:
        raise SystemExit("no reference was recognized in its clip: nothing to measure")
    return clips


def unrelated_scenes(collection: dataset.Collection, count: int, frames: int) -> list[bytes]:
    """A different reference at a different place in every frame: nothing a tracker can follow."""
    rng = np.random.default_rng(5)
    backgrounds = [fit_background(cv2.imread(p)) for p in dataset.background_paths()[:4]]
    out = []
    for i in range(frames):
        reference = dataset.render(collection.specs[i % min(count, 50)])
        h, w = reference.shape[:2]
        corners = random_quad(rng, w, h, 640, 480, (0.4, 0.8), 30, 30)
        out.append(jpeg(paste(backgrounds[i % len(backgrounds)], reference, corners), 80))
    return out


def measure(
    sessions: StreamSessions,
    stream: int,
    frames: list[bytes],
    tally: Tally,
    clip: Clip | None,
    indices: list[int],
    interval: float,
) -> None:
    """Frames `indices` of one stream, received `interval` seconds apart on the stream's own clock.

    The clock is simulated (the frames are processed back to back), so rules that depend on the time
    between frames, such as recognizing at least every few seconds, act as in a stream at that rate.
    """
    for k, index in enumerate(indices):
        started = time.process_time()
        result = sessions.process(stream, COLLECTION, frames[index], at=k * interval)
        spent = (time.process_time() - started) * 1000.0
        tally.cpu_ms.append(spent)
        tally.tracking_step_ms.append(result.timing["tracking_ms"])
        (tally.recognized_ms if result.timing["features_ms"] > 0 else tally.tracked_ms).append(spent)
        if clip is None:
            continue
        error = float("inf")
        for match in result.matches:
            if match.item == clip.item:
                tally.found += 1
                error = float(np.max(np.linalg.norm(np.asarray(match.corners) - clip.truth[index], axis=1)))
                tally.corner_errors.append(error)
                break
        if error > OFF_PX:
            tally.off_by_clip[clip.item] = tally.off_by_clip.get(clip.item, 0) + 1


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--references", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=FRAMES_PER_STREAM, help="frames per stream and rate")
    parser.add_argument("--output", type=Path, default=RESULTS / "stream_cost.md")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    settings = MatcherSettings()
    collection = dataset.build_collection(args.references, settings)
    recognizer = Recognizer(settings)
    recognizer.load(COLLECTION, collection.references(args.references))
    clips = make_clips(recognizer, collection, args.references)
    load_before = os.getloadavg()[0]

    rows = []
    for step in STEPS:
        tally = Tally()
        sessions = StreamSessions(recognizer)
        for stream, clip in enumerate(clips):
            # Each stream starts at its own point of its clip, as the load test's cameras do.
            indices = [(stream * 7 + step * k) % CLIP_FRAMES for k in range(args.frames)]
            measure(sessions, stream, clip.frames, tally, clip, indices, step / CAMERA_FPS)
        rows.append((f"{CAMERA_FPS / step:.3g}", tally, len(clips) * args.frames))
        print(f"{CAMERA_FPS / step:.3g} fps: {np.mean(tally.cpu_ms):.1f} ms/frame", flush=True)
    scenes = unrelated_scenes(collection, args.references, args.frames)
    tally = Tally()
    measure(StreamSessions(recognizer), 0, scenes, tally, None, list(range(len(scenes))), 1.0 / CAMERA_FPS)
    rows.append(("unrelated scenes", tally, len(scenes)))
    write_report(args, rows, len(clips), load_before, os.getloadavg()[0])
    return 0


def write_report(
    args: argparse.Namespace, rows: list[tuple[str, Tally, int]], clips: int, load_before: float, load_after: float
) -> None:
    command = "PYTHONPATH=. .venv/bin/python -m bench.stream_cost" + (
        f" --references {args.references}" if args.references != 1000 else ""
    )
    lines = [
        "# CPU time per camera frame, one process",
        "",
        f"`{command}` — {args.references} references, {clips} clips of bench/load.py ({CLIP_FRAMES} frames of 640x480",
        f"JPEG at {CAMERA_FPS:g} fps, a reference moving in perspective), {args.frames} frames per clip and rate, one stream",
        "per clip, one OpenCV and one FAISS thread. A stream at a lower rate gets every k-th frame of its clip.",
        f"CPU time (`time.process_time`), so the figures hold under other load; 1-minute load average {load_before:.1f} → {load_after:.1f}.",
        "",
        "| frames/s per stream | CPU ms per frame, mean | median: recognized / tracked frame | tracking step median / p95 ms (wall clock) | recognized frames | reference reported | corner error median / p95 px | frames missed or > 10 px off, by clip | capacity of 2 workers, frames/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, t, frames in rows:
        mean = float(np.mean(t.cpu_ms))
        errors = (
            f"{median(t.corner_errors):.1f} / {float(np.percentile(t.corner_errors, 95)):.1f}"
            if t.corner_errors
            else "–"
        )
        found = f"{100 * t.found / frames:.0f} %" if label != "unrelated scenes" else "–"
        worst = sorted(t.off_by_clip.items(), key=lambda kv: -kv[1])
        off = ", ".join(f"{item} {n}" for item, n in worst) if label != "unrelated scenes" else "–"
        lines.append(
            f"| {label} | {mean:.1f} | {median(t.recognized_ms):.1f} / {median(t.tracked_ms):.1f} "
            f"| {median(t.tracking_step_ms):.1f} / {float(np.percentile(t.tracking_step_ms, 95)):.1f} "
            f"| {100 * len(t.recognized_ms) / frames:.0f} % | {found} | {errors} | {off or 'none'} | {WORKERS * 1000.0 / mean:.0f} |"
        )
    lines += [
        "",
        "- *tracking step*: the frame's `tracking_ms` (following every track, taking in recognition's sightings, the",
        "  poses), the part that tracking adds to a recognized frame and all a tracked frame costs after decoding;",
        "  measured by the worker's wall clock, so unlike the CPU columns it grows with the machine's load.",
        f"- *by clip*: the frames of each clip ({args.frames} per rate) where its reference was not reported or had a corner",
        f"  over {OFF_PX:g} px off, the clips with none left out.",
        "- *capacity*: frames per second that two workers on two free cores serve at this mix, all streams at this rate;",
        "  8 streams at 15 fps need 120, 64 streams at 2 fps need 128.",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
