"""Soak: many streams for minutes, a share of them malformed; the server's memory and file descriptors stay flat.

    .venv/bin/python -m bench.soak [--minutes 3] [--streams 24] [--bad-share 0.3]

Starts a real server (its own data directory, 2 workers), opens `--streams` websocket streams that
each send frames as fast as replies come back, a `--bad-share` of them malformed (garbage bytes,
broken JPEGs, wrong types, bad JSON), and reconnects every stream now and then so that connection
set-up and tear-down are soaked too. The server process's RSS and open file descriptors (and its
workers' RSS) are sampled after a warm-up and at the end; the figures are printed and written to
bench/results/soak.md.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path

import httpx
import msgpack
import psutil
from websockets.sync.client import connect

from matcher.process_name import WORKER
from tests.conftest import RunningServer
from tests.frames import composite
from tests.images import photo_bytes

RESULTS = Path(__file__).resolve().parent / "results"


def malformed(rng: random.Random, good: bytes) -> bytes | str:
    choice = rng.randrange(6)
    if choice == 0:
        return rng.randbytes(rng.randrange(1, 400))
    if choice == 1:
        return msgpack.packb({"type": "frame", "id": rng.randrange(1 << 40), "image": good[: rng.randrange(10, 3000)]})
    if choice == 2:
        return msgpack.packb({"type": rng.choice(["hello", "auth", 7, None]), "id": "x"})
    if choice == 3:
        return "{not json" + "[" * rng.randrange(1, 5000)
    if choice == 4:
        return msgpack.packb({"type": "frame", "id": -1, "image": good})
    return msgpack.packb([1, 2, 3])


def stream_worker(server: RunningServer, frames: list[bytes], bad_share: float, stop: threading.Event, seed: int, counts: dict[str, int], lock: threading.Lock) -> None:
    rng = random.Random(seed)
    frame_id = 0
    while not stop.is_set():
        try:
            with connect(f"{server.ws_url}/v1/stream?collection=soak", max_size=None) as ws:
                msgpack.unpackb(ws.recv(timeout=30))
                for _ in range(rng.randrange(20, 200)):
                    if stop.is_set():
                        break
                    frame_id += 1
                    if rng.random() < bad_share:
                        ws.send(malformed(rng, rng.choice(frames)))
                        kind = "malformed"
                    else:
                        ws.send(msgpack.packb({"type": "frame", "id": frame_id, "image": rng.choice(frames)}))
                        kind = "frames"
                    reply = ws.recv(timeout=60)
                    message = msgpack.unpackb(reply) if isinstance(reply, bytes) else None
                    with lock:
                        counts[kind] += 1
                        if message is not None and message.get("type") == "result":
                            counts["results"] += 1
                with lock:
                    counts["connections"] += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported, the soak goes on
            with lock:
                counts["client_errors"] += 1
                counts.setdefault(f"error:{type(exc).__name__}", 0)
                counts[f"error:{type(exc).__name__}"] += 1


def sample(server: RunningServer) -> dict[str, float]:
    process = psutil.Process(server.pid)
    workers = [c for c in process.children() if c.name() == WORKER]
    return {
        "rss_mb": process.memory_info().rss / 2**20,
        "fds": process.num_fds(),
        "threads": process.num_threads(),
        "workers_rss_mb": sum(w.memory_info().rss for w in workers) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--streams", type=int, default=24)
    parser.add_argument("--bad-share", type=float, default=0.3)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before the first sample")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data:
        server = RunningServer(Path(data), env={"CATCHLIGHT_DEMO_COLLECTION": ""}).start()
        try:
            for name in ("coffee.png", "astronaut.png"):
                reply = httpx.post(
                    f"{server.url}/v1/collections/soak/items",
                    files={"image": (name, photo_bytes(name))},
                    data={"name": name},
                    timeout=60,
                )
                reply.raise_for_status()
            frames = [composite(["coffee.png"], seed=s)[0] for s in range(4)] + [composite(["astronaut.png"], seed=9)[0]]
            stop = threading.Event()
            lock = threading.Lock()
            counts = {"frames": 0, "malformed": 0, "results": 0, "connections": 0, "client_errors": 0}
            threads = [
                threading.Thread(target=stream_worker, args=(server, frames, args.bad_share, stop, n, counts, lock), daemon=True)
                for n in range(args.streams)
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(args.warmup)
            before = sample(server)
            time.sleep(max(0.0, args.minutes * 60 - args.warmup))
            after_load = sample(server)
            stop.set()
            for thread in threads:
                thread.join(90)
            elapsed = time.monotonic() - started
            time.sleep(2)
            idle = sample(server)
            healthy = httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
            tracebacks = server.log().count("Traceback")
        finally:
            server.stop()
            server.kill_orphans()

    rows = [(k, before[k], after_load[k], idle[k]) for k in before]
    lines = [
        "# Soak",
        "",
        f"`python -m bench.soak --minutes {args.minutes:g} --streams {args.streams} --bad-share {args.bad_share:g}`: "
        f"{elapsed:.0f} s, {args.streams} concurrent streams reconnecting every 20-200 messages, 2 workers, "
        f"{psutil.cpu_count()} cores.",
        "",
        f"- messages: {counts['frames']} frames ({counts['results']} results), {counts['malformed']} malformed, "
        f"{counts['connections']} connections completed, {counts['client_errors']} client-side errors "
        f"({', '.join(f'{k[6:]} {v}' for k, v in counts.items() if k.startswith('error:')) or 'none'})",
        f"- server healthy at the end: {healthy}; tracebacks in its log: {tracebacks}",
        "",
        f"| server process | after {args.warmup:g} s warm-up | end of load | streams closed |",
        "| --- | --- | --- | --- |",
        *[f"| {k} | {a:.1f} | {b:.1f} | {c:.1f} |" for k, a, b, c in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.md").write_text(text)


if __name__ == "__main__":
    main()
