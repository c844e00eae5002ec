"""Per-frame latency through the whole server: one camera streaming over the websocket.

    .venv/bin/python -m bench.stream_latency [--frames 200] [--pool-size 2]

Starts a real server on a temporary data directory (embedded store, worker
pool), uploads the demo references over HTTP, then sends camera frames (a
reference pasted in perspective into a photo that is not in the collection,
640x480 JPEG) one at a time, each sent when the previous reply arrived, as the
camera page does. Reports the client-side round trip and the server's own
timing breakdown, and writes bench/results/stream_latency.md.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import msgpack
import numpy as np
from websockets.sync.client import connect

from bench.scenes import fit_background, jpeg, paste, random_quad

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
READY = re.compile(r"Catchlight is ready: http://[^:]+:(\d+)/")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def start_server(data_dir: Path, pool_size: int) -> tuple[subprocess.Popen[str], int]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("CATCHLIGHT_")}
    env.update({"PYTHONUNBUFFERED": "1", "CATCHLIGHT_DEMO_COLLECTION": ""})
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", "0", "--data-dir", str(data_dir), "--pool-size", str(pool_size)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = process.stdout
    assert output is not None
    for line in output:
        found = READY.search(line)
        if found:
            # Keep reading so the server never blocks on a full pipe.
            threading.Thread(target=output.read, daemon=True).start()
            return process, int(found.group(1))
    raise RuntimeError("server did not start")


def make_frames(count: int, references: list[Path], backgrounds: list[np.ndarray]) -> list[bytes]:
    import cv2

    rng = np.random.default_rng(7)
    frames = []
    images = [cv2.imread(str(p)) for p in references]
    for i in range(count):
        image = images[i % len(images)]
        h, w = image.shape[:2]
        corners = random_quad(rng, w, h, 640, 480, (0.4, 0.8), 30, 30)
        frames.append(jpeg(paste(backgrounds[i % len(backgrounds)], image, corners), 80))
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--pool-size", type=int, default=2)
    args = parser.parse_args(argv)

    import cv2

    demo = ROOT / ".cache" / "demo"
    references = sorted(p for p in demo.iterdir() if p.suffix in (".png", ".jpg"))
    if not references:
        raise SystemExit("no demo images: run scripts/setup first")
    # Backgrounds: blurred noise with printed text, so no background is a reference.
    rng = np.random.default_rng(3)
    backgrounds = []
    for _ in range(4):
        noise = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
        for _ in range(12):
            x, y = int(rng.integers(0, 560)), int(rng.integers(20, 470))
            cv2.putText(noise, "catalogue", (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (20, 20, 20), 2)
        backgrounds.append(fit_background(noise))
    frames = make_frames(args.frames, references, backgrounds)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        process, port = start_server(Path(tmp), args.pool_size)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                for path in references:
                    client.post(
                        "/v1/collections/bench/items",
                        files={"image": (path.name, path.read_bytes())},
                        data={"name": path.stem},
                    ).raise_for_status()
            round_trips, server_total, match, found, timings = [], [], [], 0, []
            with connect(f"ws://127.0.0.1:{port}/v1/stream?collection=bench", max_size=None) as ws:
                ws.recv()
                for i, frame in enumerate(frames):
                    sent = time.perf_counter()
                    ws.send(msgpack.packb({"type": "frame", "id": i, "image": frame}))
                    reply = msgpack.unpackb(ws.recv())
                    round_trips.append((time.perf_counter() - sent) * 1000.0)
                    server_total.append(reply["timing"]["total_ms"])
                    match.append(reply["timing"]["match_ms"])
                    timings.append(reply["timing"])
                    found += bool(reply["items"])
        finally:
            process.terminate()
            process.wait(20)

    rows = [
        ("round trip (client, loopback)", round_trips),
        ("server total (receive → reply)", server_total),
        ("matcher (decode, features, search, verify, tracking)", match),
    ]
    lines = [
        "# Stream latency, one camera",
        "",
        f"{args.frames} frames of 640x480 JPEG, {len(references)} references, pool of {args.pool_size} workers, "
        "each frame sent when the previous reply arrived. Command: `.venv/bin/python -m bench.stream_latency`.",
        "Every frame shows a different reference in a different place, so the items tracked from the previous frame",
        f"are never there any more (the worst case for tracking). 1-minute load average {load_before:.1f} → "
        f"{os.getloadavg()[0]:.1f} (other work on the machine included; wall-clock figures grow with it).",
        "",
        "| measure | p50 ms | p95 ms | mean ms |",
        "| --- | --- | --- | --- |",
    ]
    for label, values in rows:
        lines.append(
            f"| {label} | {percentile(values, 50):.1f} | {percentile(values, 95):.1f} | {statistics.fmean(values):.1f} |"
        )
    lines += ["", f"Frames with an item found: {found}/{args.frames}.", f"Frames per second achieved: {1000.0 / statistics.fmean(round_trips):.1f}."]
    steps = sorted({k for t in timings for k in t})
    lines += ["", "Median per step (ms): " + ", ".join(f"{k} {statistics.median(t.get(k, 0.0) for t in timings):.1f}" for k in steps) + "."]
    report = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stream_latency.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
