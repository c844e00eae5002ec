"""The camera client for feeds that are not browsers: a video file replayed through the stream protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import httpx

from bench.scenes import paste
from tests.browser.fake_camera import background, quad_at
from tests.conftest import ROOT, RunningServer
from tests.images import photo, photo_bytes


def write_video(path: Path, frames: int = 30, fps: int = 15) -> None:
    """An MJPEG .avi of the coffee photo moving over a desk (OpenCV writes MJPEG without extra codecs)."""
    reference = photo("coffee.png")
    desk = background()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (desk.shape[1], desk.shape[0]))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(paste(desk, reference, quad_at(i / frames, reference.shape[1], reference.shape[0])))
    for _ in range(frames // 2):  # the object leaves the view
        writer.write(desk)
    writer.release()


def test_camera_client_replays_a_video_file_and_prints_items_coming_and_going(server: RunningServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        reply = client.post("/v1/collections/camera/items", files={"image": ("c.png", photo_bytes("coffee.png"))}, data={"name": "Coffee"})
        assert reply.status_code == 201
    video = tmp_path / "clip.avi"
    write_video(video)
    done = subprocess.run(
        [sys.executable, "-m", "catchlight.camera", str(video), "--server", server.url, "--collection", "camera", "--replay-fps", "15"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("+ Coffee"), done.stdout
    assert "- Coffee" in lines, done.stdout
    assert "results" in done.stderr and "0 errors" in done.stderr
