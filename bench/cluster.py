"""Several nodes on one store: per-node capacity, change propagation, failover gap, per-shard figures.

  PYTHONPATH=. .venv/bin/python -m bench.cluster            # everything, ~5 minutes on 2 cores
  PYTHONPATH=. .venv/bin/python -m bench.cluster --quick    # shorter runs

Writes bench/results/cluster.md and cluster.json. Real nodes (`python -m server`) and real
valkey-servers on loopback; the references and frames are the ones of `python -m bench`
(bench/dataset.py, bench/queries.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import platform
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import faiss
import httpx
import numpy as np
import psutil

from bench import dataset, queries, single_additions
from catchlight.client import Catchlight
from matcher.decode import decode_image
from matcher.embedded_redis import start_or_reuse
from matcher.features import describe_frame
from matcher.index import release_free_memory
from matcher.model import Features, Reference
from matcher.recognizer import Recognizer
from matcher.sentinel import start_replicated
from matcher.settings import MatcherSettings
from matcher.store import RedisCollectionStore, change_order
from tests.conftest import RunningServer

RESULTS = Path(__file__).resolve().parent / "results"
COLLECTION = "bench"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def load_references(store: RedisCollectionStore, references: list[Reference]) -> None:
    """Straight into the store (features already described): what an upload stores, without the uploads."""
    for reference in references:
        store.put_item(COLLECTION, reference.name, reference.metadata, reference.features, 1.0, b"", item=reference.item)


def node_capacity(data_dir: Path, references: list[Reference], frames: list[bytes], seconds: float, streams: int) -> dict:
    """Frames per second one node (pool of one worker per core) answers with results, `streams` cameras at once."""
    node = RunningServer(data_dir)
    node.start(timeout=120)
    try:
        load_references(RedisCollectionStore.from_url(node.redis_url), references)
        # Restart so the workers bulk-load the collection, as every node does at start: the steady
        # state of a node, rather than an index grown by 1,000 single additions a moment ago.
        node.stop()
        node.start(timeout=120)
        answered: list[int] = []

        async def camera(number: int) -> None:
            client = Catchlight(node.url)
            deadline = time.monotonic() + seconds

            def own_frames():  # type: ignore[no-untyped-def]
                i = number
                while time.monotonic() < deadline:
                    yield frames[i % len(frames)]
                    i += streams

            count = 0
            async for reply in client.stream(COLLECTION, own_frames()):
                count += reply.get("type") == "result"
            answered.append(count)
            client.close()

        async def all_cameras() -> float:
            started = time.monotonic()
            await asyncio.gather(*(camera(n) for n in range(streams)))
            return time.monotonic() - started

        asyncio.run(all_cameras())  # warm-up: first frames pay for allocations
        answered.clear()
        elapsed = asyncio.run(all_cameras())
        workers = os.cpu_count() or 1
        return {"streams": streams, "seconds": elapsed, "frames": sum(answered), "fps": sum(answered) / elapsed, "workers": workers}
    finally:
        node.stop()
        node.kill_orphans()


def propagation(base: Path, changes: int) -> dict:
    """From a change's acknowledgement by node A to every worker of node B having applied it."""
    store_server = start_or_reuse(base / "shared")
    nodes: list[RunningServer] = []
    try:
        env = {"REDIS_URL": store_server.url}
        nodes = [RunningServer(base / f"node{n}", env=env).start(timeout=120) for n in range(2)]
        a, b = nodes
        store = RedisCollectionStore.from_url(store_server.url)
        item = httpx.post(
            f"{a.url}/v1/collections/prop/items", files={"image": ("p.jpg", _photo())}, data={"name": "p"}, timeout=30
        ).json()["item"]
        latencies = []
        with httpx.Client(timeout=10) as http:
            for number in range(changes):
                reply = http.patch(f"{a.url}/v1/collections/prop/items/{item}", json={"name": f"p{number}"})
                acknowledged = time.perf_counter()
                assert reply.status_code == 200, reply.text
                target = change_order(store.last_change())
                while True:
                    health = http.get(f"{b.url}/healthz").json()
                    workers = health["change_log"]["workers"]
                    if workers and all(change_order(w["position"]) >= target for w in workers):
                        break
                    time.sleep(0.002)
                latencies.append((time.perf_counter() - acknowledged) * 1000)
                time.sleep(0.02)
        return {"changes": changes, "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95), "max_ms": max(latencies)}
    finally:
        for node in nodes:
            node.stop()
        store_server.stop()


def _photo() -> bytes:
    from tests.images import photo_bytes

    return photo_bytes("coffee.png")


def failover(base: Path, runs: int) -> dict:
    """Kill the Redis primary under a node: how long management fails, and the longest pause in recognition."""
    from tests.images import photo_bytes

    results = []
    for run in range(runs):
        replicated = start_replicated(base / f"redis{run}", replicas=2, sentinels=3, down_after_ms=1000)
        node = RunningServer(
            base / f"failover-node{run}",
            env={"CATCHLIGHT_REDIS_SENTINELS": ",".join(replicated.sentinel_addresses), "CATCHLIGHT_REDIS_MIN_REPLICAS": "1"},
        )
        try:
            node.start(timeout=120)
            http = httpx.Client(base_url=node.url, timeout=30)
            frame = photo_bytes("astronaut.png")
            assert http.post("/v1/collections/fo/items", files={"image": ("a.png", frame)}, data={"name": "a"}).status_code == 201
            recognized_at: list[float] = []
            stop = threading.Event()
            loop = threading.Thread(target=_recognize_loop, args=(node.url, frame, stop, recognized_at))
            loop.start()
            time.sleep(1.0)  # a steady recognition rate before the primary goes
            primary = replicated.primary_port()
            assert primary is not None
            killed = time.monotonic()
            replicated.node_on(primary).stop(signal.SIGKILL)
            failures = 0
            while True:
                reply = http.put(f"/v1/collections/fo{run}-{failures}")
                if reply.status_code in (200, 201):
                    break
                failures += 1
                time.sleep(0.05)
            management_gap = time.monotonic() - killed
            time.sleep(1.0)
            stop.set()
            loop.join()
            around = [t for t in recognized_at if killed - 1.0 <= t <= killed + management_gap + 1.0]
            pauses = [b - a for a, b in zip(around, around[1:], strict=False)]
            results.append({"management_gap_s": management_gap, "longest_recognition_pause_s": max(pauses) if pauses else float("nan"),
                            "recognitions_during_failover": sum(1 for t in recognized_at if killed <= t <= killed + management_gap)})  # fmt: skip
            http.close()
        finally:
            node.stop()
            node.kill_orphans()
            replicated.stop()
    return {
        "runs": results,
        "management_gap_s": {"median": statistics.median(r["management_gap_s"] for r in results), "max": max(r["management_gap_s"] for r in results)},
        "longest_recognition_pause_s": max(r["longest_recognition_pause_s"] for r in results),
        "sentinel": "3 Sentinels, quorum 2, down-after-milliseconds 1000; 2 replicas; redis_min_replicas 1",
    }  # fmt: skip


def _recognize_loop(url: str, frame: bytes, stop: threading.Event, recognized_at: list[float]) -> None:
    """Recognize `frame` until `stop`, noting when each recognition succeeded."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            reply = client.post("/v1/recognize", params={"collection": "fo"}, content=frame)
            if reply.status_code == 200 and reply.json()["items"]:
                recognized_at.append(time.monotonic())


def synthetic(references: list[Reference], count: int, seed: int = 3) -> list[Reference]:
    """`count` references made from the real ones: each copy flips 12 % of the descriptor bits and jitters the points.

    Real photographs run out at a few thousand; copies keep the real descriptor distribution
    (what the inverted file's cells and the shortlist see) while being distinct references.
    """
    rng = np.random.default_rng(seed)
    made = []
    for number in range(count):
        source = references[number % len(references)]
        f = source.features
        if number < len(references):
            made.append(source)
            continue
        flips = rng.random(f.descriptors.shape + (8,)) < 0.12
        bits = np.unpackbits(f.descriptors, axis=1).reshape(f.descriptors.shape + (8,)) ^ flips
        descriptors = np.packbits(bits.reshape(f.descriptors.shape[0], -1), axis=1)
        points = (f.points + rng.normal(0, 1.0, f.points.shape)).astype(np.float32)
        made.append(Reference(f"s{number}", f"s{number}", {}, Features(points, descriptors, f.width, f.height, f.angles)))
    return made


def _shard_child(references: list[Reference], frames: list[bytes], repeats: int, build_threads: int, queue: Any) -> None:
    """Build one shard's index, then time every frame `repeats` times, single-threaded as a worker is.

    Building and frames run on `build_threads` and one FAISS thread respectively, timed on the
    CPU clock of this process as well as the wall clock, so that other processes competing for
    the cores lengthen the wall times but not the CPU times. (With more than one thread on a
    loaded machine, OpenMP threads spin while waiting for each other and the CPU time grows
    too: build on one thread, as a worker does, to measure the work.) Each frame's figure is
    the median of its `repeats` runs.
    """
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(build_threads)
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    settings = MatcherSettings()
    recognizer = Recognizer(settings)
    started, started_cpu = time.perf_counter(), time.process_time()
    recognizer.load(COLLECTION, references)
    build_s, build_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    gc.collect()
    grown = process.memory_info().rss - before
    faiss.omp_set_num_threads(1)
    index = recognizer.collection(COLLECTION)
    held = getattr(index, "index", index)  # the InvertedFileIndex under the recognizer's wrapper
    for frame in frames[:5]:  # warm-up: the first frames pay for allocations
        recognizer.recognize(COLLECTION, frame)
    load_before = os.getloadavg()[0]
    timed: dict[str, list[float]] = {"search_cpu": [], "search_wall": [], "frame_cpu": [], "frame_wall": []}
    for frame in frames:
        described = describe_frame(decode_image(frame, settings.frame_max_side, settings.max_image_pixels).gray, settings)
        runs: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            index.shortlist(described.descriptors, settings, described.angles)
            runs["search_wall"].append((time.perf_counter() - wall) * 1000)
            runs["search_cpu"].append((time.process_time() - cpu) * 1000)
            wall, cpu = time.perf_counter(), time.process_time()
            recognizer.recognize(COLLECTION, frame)
            runs["frame_wall"].append((time.perf_counter() - wall) * 1000)
            runs["frame_cpu"].append((time.process_time() - cpu) * 1000)
        for name, values in runs.items():
            timed[name].append(statistics.median(values))
    # What the index holds is what dropping it gives back: RSS growth since the fork is not a measure here,
    # since the build frees (and hands back to the system) memory the parent's copy of the references shared.
    descriptors = held.descriptor_count
    holding = process.memory_info().rss
    del index, held, recognizer
    gc.collect()
    release_free_memory()
    freed = holding - process.memory_info().rss
    queue.put({
        "build_s": build_s, "build_cpu_s": build_cpu_s, "build_threads": build_threads, **timed,
        "bytes_per_reference": freed / len(references), "rss_growth_per_reference": grown / len(references),
        "descriptors": descriptors,
        "load_average": [load_before, os.getloadavg()[0]],
    })  # fmt: skip


def shards(references: list[Reference], frames: list[bytes], sizes: list[int], repeats: int = 5, build_threads: int = 1) -> dict:
    """Per-shard search time and memory per reference at each size, each in a fresh worker-like process.

    Memory is what dropping the index gives back, in the same process that times the frames, so a
    shard is built once.
    """
    everything = synthetic(references, max(sizes))
    rows = {}
    context = multiprocessing.get_context("fork")
    for size in sizes:
        queue = context.Queue()
        child = context.Process(target=_shard_child, args=(everything[:size], frames, repeats, build_threads, queue))
        child.start()
        measured = queue.get()
        child.join()
        rows[str(size)] = {
            "build_s": measured["build_s"],
            "build_cpu_s": measured["build_cpu_s"],
            "build_threads": measured["build_threads"],
            "descriptors": measured["descriptors"],
            "repeats": repeats,
            **{f"{name}_ms_p50": percentile(measured[name], 50) for name in ("search_cpu", "search_wall", "frame_cpu", "frame_wall")},
            **{f"{name}_ms_p95": percentile(measured[name], 95) for name in ("search_cpu", "search_wall", "frame_cpu", "frame_wall")},
            "bytes_per_reference": measured["bytes_per_reference"],
            "load_average": measured["load_average"],
        }  # fmt: skip
        print(f"  shard of {size}: {rows[str(size)]}", flush=True)
    return rows


def extrapolate(rows: dict, total: int = 1_000_000) -> list[dict]:
    """Shards of each measured size covering `total` references: per-shard latency (measured) and memory (bytes/ref × size)."""
    plan = []
    sizes = sorted(int(s) for s in rows)
    # The inverted file has 8·sqrt(descriptors) cells and probes a fixed number of them, so a query
    # descriptor costs ~sqrt(N) (quantizer) + ~sqrt(N) (entries in the probed cells); re-matching each
    # shortlisted candidate alone does not depend on N: fit a + c·sqrt(N), least squares over the
    # measured sizes. CPU times: what a frame costs a worker, whatever else the machine was doing.
    roots = np.sqrt(np.array(sizes, dtype=float))
    measured = np.array([rows[str(s)]["search_cpu_ms_p50"] for s in sizes])
    c, a = (float(v) for v in np.polyfit(roots, measured, 1))
    bytes_per_ref = statistics.median(rows[str(s)]["bytes_per_reference"] for s in sizes)
    other_ms = statistics.median(rows[str(s)]["frame_cpu_ms_p50"] - rows[str(s)]["search_cpu_ms_p50"] for s in sizes)
    # Building: training the partition (lists x training points, both ~sqrt(N)) and filling it (descriptors x
    # lists: ~N^1.5) grow faster than N: fit a power law over the measured sizes rather than assume one.
    exponent, log_scale = np.polyfit(np.log(sizes), np.log([rows[str(s)]["build_cpu_s"] for s in sizes]), 1)
    for shard in (25_000, 50_000, 100_000, 250_000):
        search = a + c * float(np.sqrt(shard))
        plan.append({
            "shard_size": shard, "shards": -(-total // shard),
            "search_ms": search, "frame_ms": search + other_ms, "fit_c": c, "fit_a": a,
            "memory_gb_per_worker": shard * bytes_per_ref / 1e9,
            "build_cpu_s": float(np.exp(log_scale) * shard**exponent), "build_exponent": float(exponent),
        })  # fmt: skip
    return plan


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster.json").write_text(json.dumps(report, indent=1))
    c, p, f = report["capacity"], report["propagation"], report["failover"]
    lines = [
        "# Cluster",
        "",
        f"`PYTHONPATH=. .venv/bin/python -m bench.cluster{' --quick' if report['quick'] else ''}` on {report['machine']}.",
        "Real nodes (`python -m server`), real valkey-servers, loopback; the machine's cores are shared by every process.",
        "",
        *([f"Conditions: {report['conditions']}", ""] if report.get("conditions") else []),
        "## Per-node capacity",
        "",
        f"One node, {c['workers']} matcher workers (one per core), {report['references']} references (bench/dataset.py), "
        f"{c['streams']} camera streams through the websocket sending bench frames (bench/queries.py, 640×480 JPEG) as fast as replies come:",
        "",
        f"**{c['fps']:.1f} frames/s** with a result ({c['frames']} frames in {c['seconds']:.1f} s).",
        "",
        "## Change propagation",
        "",
        f"Two nodes on one store; {p['changes']} item changes (PATCH) through node A; time from A's `200` to every worker of "
        "node B reporting the change applied (`/healthz` `change_log`, polled every 2 ms, so the figures include up to one poll and one HTTP round trip):",
        "",
        f"**p50 {p['p50_ms']:.1f} ms, p95 {p['p95_ms']:.1f} ms** (max {p['max_ms']:.1f} ms).",
        "",
        "## Failover gap",
        "",
        f"{f['sentinel']}. A node recognizing in a loop and retrying a management call every 50 ms; the primary killed with SIGKILL:",
        "",
        "| run | management unavailable (s) | longest pause between recognitions (s) | recognitions while no primary |",
        "| --- | --- | --- | --- |",
    ]
    for number, run in enumerate(f["runs"], 1):
        lines.append(f"| {number} | {run['management_gap_s']:.2f} | {run['longest_recognition_pause_s']:.2f} | {run['recognitions_during_failover']} |")
    lines += [
        "",
        f"Management gap: median **{f['management_gap_s']['median']:.1f} s**, max {f['management_gap_s']['max']:.1f} s "
        f"(Sentinel's `down-after-milliseconds` plus the election and promotion). Recognition never stopped: its longest pause, "
        f"{f['longest_recognition_pause_s']:.2f} s, is one frame's time on a busy machine.",
        "",
        *(single_additions.markdown(report["single_additions"]) if "single_additions" in report else []),
        "## Shards: per-shard latency and memory, extrapolated to 1M references",
        "",
        f"One worker-like process loading a shard of N references, then recognizing {report['shard_frames']} bench "
        "frames, each timed several times (the median of its runs is its figure). References beyond the real ones are "
        "copies with 12 % of their descriptor bits flipped and their points jittered (`bench.cluster.synthetic`), so "
        "the descriptor distribution the inverted file sees stays that of real photographs. The frames run on one "
        "OpenCV/FAISS thread, as in a worker, and are timed on the process's **CPU clock** (`time.process_time`) as "
        "well as the wall clock: other processes competing for the cores lengthen the wall times, not the CPU times, "
        "so the CPU times are the figures to plan with. `search` is the index's shortlist (the part that grows with N); "
        "`frame` is decode to verification. The build (training the inverted file's partition, then filling it) ran "
        "on one thread, as a worker loads it at start. Memory per "
        "reference: what the process's RSS falls by when the shard's index is dropped (its descriptors, ids, "
        "position map, keypoint positions and metadata), divided by N.",
        "",
        "| shard size | descriptors | build wall (s) / CPU (s) | search CPU p50 / p95 (ms) | search wall p50 (ms) | frame CPU p50 / p95 (ms) | frame wall p50 (ms) | bytes per reference | load average |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, row in report["shards"].items():
        lines.append(
            f"| {int(size):,} | {row['descriptors']:,} | {row['build_s']:.0f} / {row['build_cpu_s']:.0f} | "
            f"{row['search_cpu_ms_p50']:.1f} / {row['search_cpu_ms_p95']:.1f} | {row['search_wall_ms_p50']:.1f} | "
            f"{row['frame_cpu_ms_p50']:.1f} / {row['frame_cpu_ms_p95']:.1f} | {row['frame_wall_ms_p50']:.1f} | "
            f"{row['bytes_per_reference']:,.0f} | {row['load_average'][0]:.1f}-{row['load_average'][1]:.1f} |"
        )
    plan = report["plan"]
    lines += [
        "",
        "Extrapolated to 1,000,000 references. The inverted file has 8·√(descriptors) cells and probes a fixed number, so "
        "a query costs ~√N for choosing the cells plus ~√N for the entries in them, and re-matching each shortlisted "
        "candidate on its own costs the same at any N: search CPU time per shard is fitted as a + c·√N (least squares "
        f"over the measured sizes: a = {plan[0]['fit_a']:.2f} ms, c = {plan[0]['fit_c']:.4f} ms); the rest of a "
        "frame (decode, features, verification) does not depend on N; memory = median bytes per reference × N, per "
        f"worker process; loading (training + filling) is fitted as a·N^b over the measured sizes (b = {plan[0]['build_exponent']:.2f}):",
        "",
        "| shard size | shards for 1M | search CPU per shard (ms) | frame CPU on a shard (ms) | memory per worker (GB) | load CPU per worker (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in plan:
        lines.append(
            f"| {row['shard_size']:,} | {row['shards']} | {row['search_ms']:.1f} | {row['frame_ms']:.1f} | "
            f"{row['memory_gb_per_worker']:.2f} | {row['build_cpu_s']:,.0f} |"
        )
    (out / "cluster.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--shard-sizes", type=int, nargs="*", default=None)
    parser.add_argument("--resume", action="store_true", help="keep the sections already in <out>/cluster.json")
    parser.add_argument("--only", nargs="+", default=None, metavar="SECTION",
                        help="measure these sections again, keep the others from <out>/cluster.json")  # fmt: skip
    parser.add_argument("--add-shard-sizes", type=int, nargs="+", default=None, metavar="N",
                        help="measure shards of these sizes too, keeping the sizes already in <out>/cluster.json")  # fmt: skip
    args = parser.parse_args(argv)
    # One OpenCV/FAISS thread here too: the shard processes are forked from this one, and a
    # forked child deadlocks in a thread pool its parent had started.
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    settings = MatcherSettings()
    collection = dataset.build_collection(1000, settings)
    references = collection.references(len(collection.specs))
    backgrounds = [cv2.imread(p, cv2.IMREAD_COLOR) for p in dataset.background_paths()]
    pool = [(s.item, s.kind, dataset.render(s)) for s in collection.specs[:100]]
    frames = [f.data for f in queries.make_frames(7, 10 if args.quick else 20, pool, backgrounds, levels=("easy", "moderate"))]
    saved = args.out / "cluster.json"
    keep = args.resume or args.only or args.add_shard_sizes
    previous = json.loads(saved.read_text()) if keep and saved.exists() else {}
    for name in args.only or []:
        previous.pop(name, None)
    report: dict = {
        "conditions": f"load average {os.getloadavg()[0]:.1f} at the start on {os.cpu_count()} cores",
        **previous,
        "quick": args.quick,
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, OpenCV {cv2.__version__}",
        "references": len(references),
        "shard_frames": len(frames),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    sections = {
        "capacity": lambda base: node_capacity(base / "capacity", references, frames, 10 if args.quick else 30, streams=4),
        "propagation": lambda base: propagation(base / "propagation", 30 if args.quick else 100),
        "failover": lambda base: failover(base / "failover", 1 if args.quick else 3),
        "single_additions": lambda base: single_additions.measure(base, 300 if args.quick else 1000),
        "shards": lambda base: shards(
            references, frames, args.shard_sizes or ([2_000, 5_000] if args.quick else [5_000, 10_000, 20_000])
        ),
    }
    if args.add_shard_sizes:
        # A shard of each new size, each built once; the sizes measured before are kept as they are.
        added = shards(references, frames, args.add_shard_sizes)
        merged = {**report.get("shards", {}), **added}
        report["shards"] = {size: merged[size] for size in sorted(merged, key=int)}
    for name, measure in sections.items():
        if name in report:
            continue
        print(f"{name}...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            report[name] = measure(Path(tmp))
        print(report[name], flush=True)
        saved.write_text(json.dumps(report, indent=1))  # a later section failing keeps this one
    report["plan"] = extrapolate(report["shards"])
    write(report, args.out)
    print((args.out / "cluster.md").read_text())


if __name__ == "__main__":
    main()
