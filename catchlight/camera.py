"""Stream a camera that is not a browser: a webcam, a video file, or an RTSP/HTTP stream, read with OpenCV.

    python -m catchlight.camera 0 --server http://127.0.0.1:8080 --collection demo
    python -m catchlight.camera clip.mp4 --collection demo --replay-fps 15
    python -m catchlight.camera rtsp://camera.local/stream --collection demo --speak

Frames go through the same protocol as the browser page (catchlight.client):
downscaled to the server's `frame_max_side`, JPEG-encoded, and sent when the
reply to the previous one has arrived; meanwhile newer frames replace older
ones (latest frame wins on this side too, so a slow link never builds a
backlog). Items are printed when they appear and disappear (`--speak` also
says their names with espeak-ng, if installed); `--json` prints every reply.

`run_camera` is the reusable part: any async source of encoded frames in,
replies out, with counters. bench/load.py drives many of them at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from catchlight.client import Catchlight, CatchlightError, Stream

JPEG_QUALITY = 80


@dataclass
class CameraStats:
    """What happened to a camera's frames, seen from the client."""

    captured: int = 0
    """Frames the source produced."""
    replaced: int = 0
    """Frames replaced by a newer one before they could be sent (the link or server was busy)."""
    sent: int = 0
    results: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    round_trips_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def results_per_second(self) -> float:
        return self.results / self.seconds if self.seconds > 0 else 0.0


async def run_camera(
    stream: Stream,
    frames: AsyncIterator[bytes],
    on_reply: Callable[[dict[str, Any]], None] | None = None,
    in_flight: int = 1,
    stats: CameraStats | None = None,
) -> CameraStats:
    """Send the newest frame of `frames` whenever fewer than `in_flight` are unanswered; returns the counters."""
    stats = stats or CameraStats()
    latest: bytes | None = None
    exhausted = False
    wake = asyncio.Event()
    sent_at: dict[int, float] = {}

    async def capture() -> None:
        nonlocal latest, exhausted
        async for frame in frames:
            stats.captured += 1
            if latest is not None:
                stats.replaced += 1
            latest = frame
            wake.set()
        exhausted = True
        wake.set()

    async def send() -> None:
        nonlocal latest
        while True:
            await wake.wait()
            wake.clear()
            if latest is not None and len(sent_at) < in_flight:
                frame, latest = latest, None
                frame_id = await stream.send(frame)
                sent_at[frame_id] = time.perf_counter()
                stats.sent += 1
            if exhausted and latest is None and not sent_at:
                return

    async def receive() -> None:
        while not (exhausted and latest is None and not sent_at):
            reply = await stream.receive()
            started = sent_at.pop(reply.get("id", -1), None)
            if started is not None:
                stats.round_trips_ms.append((time.perf_counter() - started) * 1000.0)
            kind = reply.get("type")
            if kind == "result":
                stats.results += 1
            elif kind == "skipped":
                stats.skipped += 1
            elif kind == "error":
                code = str(reply.get("code"))
                stats.errors[code] = stats.errors.get(code, 0) + 1
            if on_reply is not None:
                on_reply(reply)
            wake.set()

    tasks = [asyncio.ensure_future(t) for t in (capture(), send(), receive())]
    try:
        await tasks[1]  # the sender ends once every frame was answered
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats.finished = time.monotonic()
    return stats


async def replay(frames: Sequence[bytes], fps: float, seconds: float | None = None, loop: bool = True) -> AsyncIterator[bytes]:
    """Encoded frames at a fixed rate, like a camera: late ticks are dropped, not bunched."""
    period = 1.0 / fps
    start = time.monotonic()
    tick = 0
    while True:
        if seconds is not None and tick * period >= seconds:
            return
        if not loop and tick >= len(frames):
            return
        yield frames[tick % len(frames)]
        tick += 1
        now = time.monotonic()
        due = start + tick * period
        if now > due:  # a busy machine: skip the ticks already missed
            tick = int((now - start) / period) + 1
            due = start + tick * period
        await asyncio.sleep(due - now if due > now else 0)


async def capture_frames(
    source: str, max_side: int, replay_fps: float | None = None, loop: bool = False
) -> AsyncIterator[bytes]:
    """JPEG frames of a webcam index, video file or stream URL, read with OpenCV (off the event loop)."""
    import cv2

    device: int | str = int(source) if source.isdigit() else source
    capture = cv2.VideoCapture(device)
    if not capture.isOpened():
        raise CatchlightError(0, "camera_unavailable", f"OpenCV cannot open {source!r}")
    is_file = not isinstance(device, int) and "://" not in source
    rate = replay_fps or (capture.get(cv2.CAP_PROP_FPS) if is_file else 0) or 0
    period = 1.0 / rate if rate > 0 else 0.0
    next_due = time.monotonic()
    try:
        while True:
            ok, image = await asyncio.to_thread(capture.read)
            if not ok:
                if is_file and loop:
                    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                return
            h, w = image.shape[:2]
            scale = max_side / max(w, h)
            if scale < 1:
                image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                yield encoded.tobytes()
            if period:  # a file plays at its own (or the given) rate, not as fast as it decodes
                next_due += period
                delay = next_due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    next_due = time.monotonic()
    finally:
        capture.release()


class Announcer:
    """Prints (and optionally speaks) items as they come into view and leave it."""

    def __init__(self, speak: bool, every_reply: bool) -> None:
        self.voice = shutil.which("espeak-ng") if speak else None
        if speak and self.voice is None:
            print("espeak-ng is not installed: printing only", file=sys.stderr)
        self.every_reply = every_reply
        self.visible: dict[str, str] = {}

    def __call__(self, reply: dict[str, Any]) -> None:
        if self.every_reply:
            print(json.dumps(reply, default=str), flush=True)
        if reply.get("type") == "error":
            print(f"! {reply.get('code')}: {reply.get('message')}", file=sys.stderr, flush=True)
            return
        if reply.get("type") != "result":
            return
        now = {item["item"]: item for item in reply.get("items", [])}
        for item_id, item in now.items():
            if item_id not in self.visible:
                if not self.every_reply:
                    caption = (item.get("metadata") or {}).get("caption", "")
                    print(f"+ {item['name']}  score {item['score']:.2f}  {caption}".rstrip(), flush=True)
                self.say(item["name"])
        for item_id, name in self.visible.items():
            if item_id not in now and not self.every_reply:
                print(f"- {name}", flush=True)
        self.visible = {item_id: item["name"] for item_id, item in now.items()}

    def say(self, text: str) -> None:
        if self.voice:
            subprocess.Popen([self.voice, text], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m catchlight.camera", description="Stream a webcam, video file or RTSP/HTTP stream to a Catchlight server."
    )
    parser.add_argument("source", help="webcam index (0), video file, or stream URL (rtsp://, http://)")
    parser.add_argument("--server", default="http://127.0.0.1:8080", help="server address (default %(default)s)")
    parser.add_argument("--collection", default="demo", help="collection to recognize against (default %(default)s)")
    parser.add_argument("--token", default=None, help="bearer token, if the server wants one")
    parser.add_argument("--replay-fps", type=float, default=None, help="play a file at this many frames a second")
    parser.add_argument("--loop", action="store_true", help="start a file again at its end")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--speak", action="store_true", help="say the names of items coming into view (espeak-ng)")
    parser.add_argument("--json", action="store_true", help="print every reply as a JSON line")
    return parser.parse_args(argv)


async def amain(args: argparse.Namespace) -> CameraStats:
    with Catchlight(args.server, token=args.token) as client:
        stream = await client.open_stream(args.collection)
    try:
        frames = capture_frames(args.source, int(stream.hello.get("frame_max_side", 640)), args.replay_fps, args.loop)
        stats = CameraStats()
        try:
            await asyncio.wait_for(run_camera(stream, frames, Announcer(args.speak, args.json), stats=stats), args.seconds)
        except TimeoutError:
            stats.finished = time.monotonic()
        return stats
    finally:
        await stream.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        stats = asyncio.run(amain(args))
    except CatchlightError as exc:
        print(f"catchlight.camera: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    rtts = sorted(stats.round_trips_ms)
    median = rtts[len(rtts) // 2] if rtts else float("nan")
    print(
        f"{stats.results} results, {stats.skipped} skipped, {sum(stats.errors.values())} errors from "
        f"{stats.sent} frames sent of {stats.captured} captured; {stats.results_per_second:.1f} results/s, "
        f"round trip median {median:.0f} ms",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
