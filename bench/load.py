"""Many cameras at once against one server: per-stream frame rate, round trip, skips, server CPU and memory.

    PYTHONPATH=. .venv/bin/python -m bench.load            # N = 1, 4, 8, 16, 64; 1,000 references; 30 s each
    PYTHONPATH=. .venv/bin/python -m bench.load --quick    # N = 1, 4, 8, 16; 100 references; 8 s each

Starts a real server (embedded store, pool of `--pool-size` workers) on a
temporary data directory and uploads the references over HTTP: real
photographs from Debian and PyPI packages and collages cut from them, chosen and cached by
bench/dataset.py (sources and licences in bench/sources.py). Then, for each N,
N simulated cameras connect, each a real websocket client
(catchlight.camera.run_camera, the same loop as `python -m catchlight.camera`)
replaying a generated 640x480 video at 15 fps: one of the references moving
in perspective over a held-out landscape photo, as JPEG. Each camera sends its
newest frame when the previous reply arrives, like the browser page.

Reported per N, over the measuring window (after a warm-up):
- results per second per stream (min / median), from the client;
- round trip p50 / p95 / p99 (send -> reply, loopback);
- frames the camera produced but never sent because the previous one was
  still out (the camera outran the server), and frames the server skipped;
- share of items that were tracked rather than recognized;
- server CPU (process tree, % of one core) and memory (RSS of the tree: at the
  start and end of the window, and the peak);
- errors of any kind.

The load generator runs on the same 2-core machine and takes CPU from the
server; its own CPU use is reported too. Writes bench/results/load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import psutil

from bench import dataset
from bench.scenes import fit_background, jpeg, paste
from bench.stream_latency import start_server
from catchlight.camera import CameraStats, replay, run_camera
from catchlight.client import Catchlight
from matcher.settings import MatcherSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COLLECTION = "load"
CLIPS = 8
CLIP_FRAMES = 60  # 4 s at 15 fps, a closed path so the loop does not jump


@dataclass
class Reply:
    at: float
    kind: str
    rtt_ms: float | None
    items: int = 0
    tracked: int = 0
    recognized: bool = False
    """Full recognition ran on this frame (else every item was tracked)."""
    match_ms: float = 0.0


@dataclass
class Camera:
    replies: list[Reply] = field(default_factory=list)
    stats: CameraStats = field(default_factory=CameraStats)


# -- references and video -------------------------------------------------------------


def upload_references(url: str, total: int) -> tuple[list[np.ndarray], int]:
    """Upload `total` references; returns the first few images (the cameras' targets) and how many were stored."""
    collection = dataset.build_collection(total, MatcherSettings())
    specs = collection.specs[:total]

    def upload(spec: dataset.ReferenceSpec) -> int:
        data = jpeg(dataset.render(spec), 90)
        with httpx.Client(base_url=url, timeout=120) as client:
            reply = client.post(
                f"/v1/collections/{COLLECTION}/items",
                files={"image": (f"{spec.item}.jpg", data)},
                data={"name": spec.item, "metadata": json.dumps({"kind": spec.kind})},
            )
        return reply.status_code

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(upload, specs))
    stored = sum(code == 201 for code in codes)
    print(f"uploaded {stored}/{len(specs)} references in {time.monotonic() - started:.0f} s", flush=True)
    return [dataset.render(spec) for spec, code in zip(specs, codes, strict=True) if code == 201], stored


def make_clips(url: str, references: list[np.ndarray]) -> list[list[bytes]]:
    """CLIPS videos, each of a different reference that the server recognizes in the clip's first frame.

    The load test measures throughput, not recall (bench/ measures that): a camera pointed at something
    the engine cannot see would only ever run full recognition.
    """
    backgrounds = [fit_background(cv2.imread(p)) for p in dataset.background_paths()[:CLIPS]]
    clips: list[list[bytes]] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for reference in references:
            if len(clips) == CLIPS:
                break
            background = backgrounds[len(clips)]
            h, w = reference.shape[:2]
            frames = [jpeg(paste(background, reference, path_quad(i / CLIP_FRAMES, w, h)), 80) for i in range(CLIP_FRAMES)]
            found = client.post(
                f"/v1/recognize?collection={COLLECTION}", content=frames[0], headers={"Content-Type": "image/jpeg"}
            ).json()
            if found.get("items"):
                clips.append(frames)
    if not clips:
        raise SystemExit("no reference was recognized in its clip: nothing to measure")
    return clips


def path_quad(t: float, ref_w: int, ref_h: int) -> np.ndarray:
    """Corners (4, 2) of a reference moving on a closed loop in perspective, at phase t in [0, 1)."""
    angle = 2 * np.pi * t
    cx, cy = 320 + 90 * np.cos(angle), 240 + 45 * np.sin(angle)
    longer = 300 * (1 + 0.08 * np.cos(2 * angle))
    w, h = (longer, longer * ref_h / ref_w) if ref_w >= ref_h else (longer * ref_w / ref_h, longer)
    far = 0.86 + 0.06 * np.sin(angle)
    quad = np.array([[-w / 2 * far, -h / 2], [w / 2 * far, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    r = np.radians(10 * np.sin(angle))
    R = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    return quad @ R.T + np.array([cx, cy])


# -- server measurements -------------------------------------------------------------------


class ServerMeter:
    """CPU and memory of the server's process tree (server, workers, store), sampled every 0.5 s."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, float, int]] = []  # time, cpu seconds, rss bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)]

    def sample(self) -> tuple[float, float, int]:
        cpu, rss = 0.0, 0
        for process in self._tree():
            try:
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return time.monotonic(), cpu, rss

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append(self.sample())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def window(self, start: float, end: float) -> dict[str, float]:
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {"cpu_percent": float("nan"), "rss_start_mb": float("nan"), "rss_end_mb": float("nan"), "rss_peak_mb": float("nan")}
        (t0, c0, r0), (t1, c1, r1) = inside[0], inside[-1]
        return {
            "cpu_percent": 100.0 * (c1 - c0) / (t1 - t0),
            "rss_start_mb": r0 / 2**20,
            "rss_end_mb": r1 / 2**20,
            "rss_peak_mb": max(s[2] for s in inside) / 2**20,
        }


# -- one load level --------------------------------------------------------------------------


async def run_level(url: str, clips: list[list[bytes]], n: int, fps: float, warmup: float, seconds: float) -> tuple[list[Camera], float, float]:
    cameras = [Camera() for _ in range(n)]
    client = Catchlight(url)
    streams = [await client.open_stream(COLLECTION) for _ in range(n)]

    def recorder(camera: Camera) -> Any:
        def on_reply(reply: dict[str, Any]) -> None:
            now = time.monotonic()
            # run_camera has just recorded this reply's round trip.
            rtt = camera.stats.round_trips_ms[-1] if camera.stats.round_trips_ms else None
            items = reply.get("items") or []
            timing = reply.get("timing") or {}
            camera.replies.append(
                Reply(
                    now, str(reply.get("type")), rtt, len(items), sum(bool(i.get("tracked")) for i in items),
                    timing.get("features_ms", 0) > 0, timing.get("match_ms", 0.0),
                )
            )

        return on_reply

    start = time.monotonic() + 0.2
    tasks = []
    # Independent cameras tick at unrelated instants: each starts at a random point of its frame period
    # (seeded, so runs compare). Started together, every camera would send on the same tick and each
    # worker would get all its streams' frames at once, a worst case no real set of cameras keeps up.
    phases = np.random.default_rng(n).uniform(0.0, 1.0 / fps, n)
    for i, (camera, stream) in enumerate(zip(cameras, streams, strict=True)):
        clip = clips[i % len(clips)]
        # Each camera starts at its own point of its clip, so the cameras do not show the same thing.
        offset = (i * 7) % len(clip)
        frames = _after(phases[i], replay(clip[offset:] + clip[:offset], fps, seconds=warmup + seconds))
        tasks.append(asyncio.ensure_future(run_camera(stream, frames, recorder(camera), stats=camera.stats)))
    await asyncio.gather(*tasks, return_exceptions=True)
    for stream in streams:
        await stream.close()
    client.close()
    return cameras, start + warmup, start + warmup + seconds


async def _after(delay: float, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`frames`, starting `delay` seconds from now."""
    await asyncio.sleep(delay)
    async for frame in frames:
        yield frame


def summarize(cameras: list[Camera], start: float, end: float, seconds: float) -> dict[str, Any]:
    per_stream_fps, rtts, errors, items, tracked, found = [], [], 0, 0, 0, 0
    recognition_ms, tracking_ms = [], []
    results = 0
    for camera in cameras:
        window = [r for r in camera.replies if start <= r.at <= end]
        got = [r for r in window if r.kind == "result"]
        results += len(got)
        per_stream_fps.append(len(got) / seconds)
        rtts += [r.rtt_ms for r in got if r.rtt_ms is not None]
        errors += sum(r.kind == "error" for r in window)
        items += sum(r.items for r in got)
        tracked += sum(r.tracked for r in got)
        found += sum(r.items > 0 for r in got)
        recognition_ms += [r.match_ms for r in got if r.recognized]
        tracking_ms += [r.match_ms for r in got if not r.recognized and r.items]
    captured = sum(c.stats.captured for c in cameras)
    replaced = sum(c.stats.replaced for c in cameras)
    skipped = sum(c.stats.skipped for c in cameras)
    sent = sum(c.stats.sent for c in cameras)
    errors_total = sum(sum(c.stats.errors.values()) for c in cameras)

    def pct(q: float) -> float:
        return float(np.percentile(rtts, q)) if rtts else float("nan")

    return {
        "streams": len(cameras),
        "fps_min": min(per_stream_fps),
        "fps_median": float(np.median(per_stream_fps)),
        "fps_total": sum(per_stream_fps),
        "rtt_p50": pct(50),
        "rtt_p95": pct(95),
        "rtt_p99": pct(99),
        "not_sent": replaced / captured if captured else 0.0,
        "server_skipped": skipped / sent if sent else 0.0,
        "tracked_share": tracked / items if items else 0.0,
        "found_share": found / results if results else 0.0,
        "recognition_frame_ms": float(np.median(recognition_ms)) if recognition_ms else float("nan"),
        "tracking_frame_ms": float(np.median(tracking_ms)) if tracking_ms else float("nan"),
        "errors": errors_total,
        "errors_in_window": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 references, N = 1, 4, 8, 16, 8 s each")
    parser.add_argument("--streams", type=int, nargs="+", default=None, help="N values (default 1 4 8 16 64)")
    parser.add_argument("--references", type=int, default=None, help="collection size (default 1000)")
    parser.add_argument("--seconds", type=float, default=None, help="measuring window per N (default 30)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=15.0, help="camera frame rate")
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS / "load.md")
    args = parser.parse_args(argv)
    levels = args.streams or ([1, 4, 8, 16] if args.quick else [1, 4, 8, 16, 64])
    total = args.references or (100 if args.quick else 1000)
    seconds = args.seconds or (8.0 if args.quick else 30.0)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        process, port = start_server(Path(tmp), args.pool_size)
        url = f"http://127.0.0.1:{port}"
        meter = ServerMeter(process.pid)
        try:
            references, stored = upload_references(url, total)
            clips = make_clips(url, references)
            meter.start()
            me = psutil.Process()
            for n in levels:
                load_before = os.getloadavg()
                mine = me.cpu_times()
                began = time.monotonic()
                cameras, start, end = asyncio.run(run_level(url, clips, n, args.fps, args.warmup, seconds))
                mine_after = me.cpu_times()
                row = summarize(cameras, start, end, seconds)
                row.update(meter.window(start, end))
                row["client_cpu_percent"] = 100.0 * (
                    (mine_after.user + mine_after.system) - (mine.user + mine.system)
                ) / (time.monotonic() - began)
                row["load_before"] = load_before[0]
                row["load_after"] = os.getloadavg()[0]
                rows.append(row)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
                time.sleep(1.0)
        finally:
            meter.stop()
            process.terminate()
            process.wait(30)

    write_report(args, rows, stored, total, seconds)
    return 0


def write_report(args: argparse.Namespace, rows: list[dict[str, Any]], stored: int, total: int, seconds: float) -> None:
    command = "PYTHONPATH=. .venv/bin/python -m bench.load" + (" --quick" if args.quick else "")
    lines = [
        "# Many cameras at once",
        "",
        f"`{command}` — {stored} references stored (of {total} asked; bench/dataset.py: real photographs and collages),",
        f"pool of {args.pool_size} matcher workers on {os.cpu_count()} cores, each camera a websocket client replaying",
        f"a 640x480 JPEG video of one reference moving in perspective at {args.fps:g} fps (each camera's first tick at a",
        "random point of its frame period, as independent cameras tick), sending its newest frame when",
        f"the previous reply arrived. {seconds:g} s measured per row after {args.warmup:g} s of warm-up. The load generator",
        "runs on the same machine (its CPU is the last column); `load` is the 1-minute load average before and after",
        "the row (other work on the machine included).",
        "",
        "| streams | fps/stream min | fps/stream median | round trip p50 / p95 / p99 ms | not sent | server skipped | tracked | worker ms: recognized / tracked frame | found | errors | server CPU % | server RSS start → end (peak) MB | load | client CPU % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['streams']} | {r['fps_min']:.1f} | {r['fps_median']:.1f} | {r['rtt_p50']:.0f} / {r['rtt_p95']:.0f} / {r['rtt_p99']:.0f} "
            f"| {100 * r['not_sent']:.0f} % | {100 * r['server_skipped']:.1f} % | {100 * r['tracked_share']:.0f} % "
            f"| {r['recognition_frame_ms']:.1f} / {r['tracking_frame_ms']:.1f} "
            f"| {100 * r['found_share']:.0f} % | {r['errors']} | {r['cpu_percent']:.0f} "
            f"| {r['rss_start_mb']:.0f} → {r['rss_end_mb']:.0f} ({r['rss_peak_mb']:.0f}) | {r['load_before']:.1f} → {r['load_after']:.1f} "
            f"| {r['client_cpu_percent']:.0f} |"
        )
    lines += [
        "",
        "- *not sent*: frames the camera produced while its previous frame was still unanswered (the newest one",
        "  replaces them; the camera outran the round trip). *server skipped*: frames replaced on the server before a",
        "  worker took them (near zero with one frame in flight per camera).",
        "- *tracked*: share of reported items followed by optical flow rather than recognized in that frame;",
        "  *found*: share of results with the moving reference (or any item) in them.",
        "- *worker ms*: median `match_ms` (all the work in the worker, decoding included) of frames where full",
        "  recognition ran, and of frames where every item was only tracked.",
    ]
    lines += _against_targets(rows, args.fps)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _against_targets(rows: list[dict[str, Any]], fps: float) -> list[str]:
    """Issue 4's load targets, judged on this run's rows (only the stream counts that were run)."""
    by_streams = {r["streams"]: r for r in rows}
    # The camera makes `fps` frames a second, so a stream can at best keep up with it; a window edge
    # costs a frame, so "sustained" allows 3 % under the camera's rate.
    sustained = 0.97 * fps
    checks = []
    if 8 in by_streams:
        r = by_streams[8]
        checks.append((
            f"8 streams: every stream ≥ 15 fps (camera {fps:g}; counted met from {sustained:.1f}), round trip p95 ≤ 80 ms",
            f"slowest stream {r['fps_min']:.1f} fps, p95 {r['rtt_p95']:.0f} ms",
            r["fps_min"] >= min(15.0, sustained) and r["rtt_p95"] <= 80.0,
        ))
    if 64 in by_streams:
        r = by_streams[64]
        checks.append(("64 streams: no stream below 2 fps", f"slowest stream {r['fps_min']:.1f} fps", r["fps_min"] >= 2.0))
        grew = r["rss_end_mb"] - r["rss_start_mb"]
        checks.append((
            "64 streams: memory flat (server tree grows ≤ 5 % over the window)",
            f"{r['rss_start_mb']:.0f} → {r['rss_end_mb']:.0f} MB",
            grew <= 0.05 * r["rss_start_mb"],
        ))
    errors = sum(r["errors"] for r in rows)
    checks.append(("no errors at any stream count", f"{errors}", errors == 0))
    lines = ["", "## Against the targets (issue 4), this run", "", "| target | measured | |", "| --- | --- | --- |"]
    lines += [f"| {target} | {measured} | {'met' if ok else 'MISSED'} |" for target, measured, ok in checks]
    return lines


if __name__ == "__main__":
    sys.exit(main())
