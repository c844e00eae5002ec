"""A node that received its references one upload at a time versus one that bulk-loaded them.

  PYTHONPATH=. .venv/bin/python -m bench.single_additions              # 1,000 references, prints the table
  PYTHONPATH=. .venv/bin/python -m bench.cluster --only single_additions   # the same, into bench/results/cluster.md

One real node (`python -m server`, a pool of 2 workers) on a real valkey-server. The
references of `python -m bench` (bench/dataset.py) are uploaded over HTTP one request
after the other, as a user adding them one by one would (the node's workers describe
each; every worker's follower applies each change on its own), while a camera-like
client recognizes bench frames one after another. Then the same frames are recognized on
the node as it is, then once more after a restart, when its workers bulk-load the same
collection: the two must cost about the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import httpx

from bench import dataset, queries
from bench.scenes import jpeg
from matcher.embedded_redis import start_or_reuse
from matcher.settings import MatcherSettings
from matcher.store import RedisCollectionStore
from tests.conftest import RunningServer, wait_until

RESULTS = Path(__file__).resolve().parent / "results"
COLLECTION = "single"


class FrameTimes:
    """Per-frame times of recognitions sent one at a time: the worker's (match_ms) and the whole request's."""

    def __init__(self) -> None:
        self.worker_ms: list[float] = []
        self.request_ms: list[float] = []
        self.found = 0

    def recognize(self, http: httpx.Client, frame: bytes) -> None:
        sent = time.perf_counter()
        reply = http.post("/v1/recognize", params={"collection": COLLECTION}, content=frame)
        self.request_ms.append((time.perf_counter() - sent) * 1000)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        self.worker_ms.append(body["timing"]["match_ms"])
        self.found += bool(body["items"])

    def summary(self) -> dict[str, Any]:
        return {
            "frames": len(self.worker_ms),
            "found": self.found,
            "worker_ms_p50": statistics.median(self.worker_ms),
            "worker_ms_p95": _p95(self.worker_ms),
            "worker_ms_max": max(self.worker_ms),
            "request_ms_p50": statistics.median(self.request_ms),
            "request_ms_p95": _p95(self.request_ms),
            "request_ms_max": max(self.request_ms),
            "load_average": os.getloadavg()[0],
        }


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def steady(url: str, frames: list[bytes], rounds: int) -> dict[str, Any]:
    """Every frame `rounds` times, after a warm-up (the first frames pay for allocations)."""
    times = FrameTimes()
    with httpx.Client(base_url=url, timeout=120) as http:
        for frame in frames[:3]:
            http.post("/v1/recognize", params={"collection": COLLECTION}, content=frame)
        for _ in range(rounds):
            for frame in frames:
                times.recognize(http, frame)
    return times.summary()


def upload_one_at_a_time(specs: list[dataset.ReferenceSpec], url: str) -> float:
    """Upload each reference image over HTTP, one request after the other; returns the seconds it took."""
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=120) as http:
        for spec in specs:
            reply = http.post(
                f"/v1/collections/{COLLECTION}/items",
                files={"image": (f"{spec.item}.jpg", jpeg(dataset.render(spec), 92))},
                data={"name": spec.item, "item": spec.item},
            )
            assert reply.status_code in (201, 422), reply.text  # 422: a rendering too poor to keep
    return time.monotonic() - started


def all_applied(http: httpx.Client, change: str) -> bool:
    workers = http.get("/healthz").json()["change_log"]["workers"]
    return bool(workers) and all(w["position"] == change for w in workers)


def measure(base: Path, count: int = 1000, rounds: int = 2) -> dict[str, Any]:
    settings = MatcherSettings()
    collection = dataset.build_collection(1000, settings)
    backgrounds = [cv2.imread(p, cv2.IMREAD_COLOR) for p in dataset.background_paths()]
    shown = [(s.item, s.kind, dataset.render(s)) for s in collection.specs[: min(100, count)]]
    frames = [f.data for f in queries.make_frames(7, 10, shown, backgrounds, levels=("easy", "moderate"))]
    valkey = start_or_reuse(base / "store")
    node = RunningServer(base / "node", env={"REDIS_URL": valkey.url})
    try:
        node.start(timeout=300)
        store = RedisCollectionStore.from_url(valkey.url)
        store.create_collection(COLLECTION)
        during = FrameTimes()
        adding = threading.Event()
        adding.set()

        def camera() -> None:
            with httpx.Client(base_url=node.url, timeout=300) as http:
                number = 0
                while adding.is_set():
                    during.recognize(http, frames[number % len(frames)])
                    number += 1

        watcher = threading.Thread(target=camera)
        watcher.start()
        try:
            adding_s = upload_one_at_a_time(collection.specs[:count], node.url)
            last = store.last_change()
            with httpx.Client(base_url=node.url, timeout=30) as http:
                wait_until(lambda: all_applied(http, last), 600, interval=0.05)
        finally:
            adding.clear()
            watcher.join()
        after_single = steady(node.url, frames, rounds)
        node.stop()
        node.start(timeout=300)
        after_bulk = steady(node.url, frames, rounds)
        return {
            "references": store.item_count(COLLECTION)[0],
            "adding_s": adding_s,
            "during": during.summary(),
            "single": after_single,
            "bulk": after_bulk,
            "ratio_worker_p50": after_single["worker_ms_p50"] / after_bulk["worker_ms_p50"],
        }
    finally:
        node.stop()
        node.kill_orphans()
        valkey.stop()


def markdown(report: dict[str, Any]) -> list[str]:
    single = report["single"]
    lines = [
        "## Many single additions",
        "",
        f"`python -m bench.single_additions`: one node (2 workers) on one valkey-server; {report['references']:,} "
        f"references (bench/dataset.py) uploaded over HTTP one request after the other ({report['adding_s']:.0f} s in "
        "all; the node's workers describe each image, every worker applies each change on its own), while a client "
        "recognized bench frames one after another. Then "
        f"{single['frames']} bench frames recognized one at a time on the node as it was, then again after a restart "
        "(its workers bulk-load the same collection). `worker`: the worker's time per frame, decode to verification, "
        "including any wait for the index; `request`: the whole HTTP round trip, including the wait for a free worker "
        "(while adding, the workers also describe the uploads).",
        "",
        "| node | worker p50 / p95 / max (ms) | request p50 / p95 / max (ms) | frames with a result | load average |",
        "| --- | --- | --- | --- | --- |",
    ]
    names = (("while the 1,000 additions arrive", "during"), ("after the single additions", "single"),
             ("after a restart (bulk load)", "bulk"))  # fmt: skip
    for name, key in names:
        row = report[key]
        lines.append(
            f"| {name} | {row['worker_ms_p50']:.1f} / {row['worker_ms_p95']:.1f} / {row['worker_ms_max']:.0f} | "
            f"{row['request_ms_p50']:.1f} / {row['request_ms_p95']:.1f} / {row['request_ms_max']:.0f} | "
            f"{row['found']} of {row['frames']} | {row['load_average']:.1f} |"
        )
    lines += ["", f"After single additions / after a bulk load, worker p50: **{report['ratio_worker_p50']:.2f}×**.", ""]
    before = report.get("before_fix")
    if before is not None:
        # The same command run on the code before the fix, kept for comparison (see bench/results/cluster.json).
        lines += [
            f"The same command on the code before the fix ({before['code']}):",
            "",
            "| node | worker p50 / p95 / max (ms) | request p50 / p95 / max (ms) | frames with a result | load average |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, key in names:
            row = before[key]
            lines.append(
                f"| {name} | {row['worker_ms_p50']:.1f} / {row['worker_ms_p95']:.1f} / {row['worker_ms_max']:.0f} | "
                f"{row['request_ms_p50']:.1f} / {row['request_ms_p95']:.1f} / {row['request_ms_max']:.0f} | "
                f"{row['found']} of {row['frames']} | {row['load_average']:.1f} |"
            )
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.single_additions", description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = measure(Path(tmp), args.count, args.rounds)
    print(json.dumps(report, indent=1))
    print("\n".join(markdown(report)))


if __name__ == "__main__":
    main()
