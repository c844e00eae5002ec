"""Frames of a video file at a fixed sample rate, decoded by OpenCV (FFmpeg): any container and codec it reads."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


class VideoError(ValueError):
    """The file is not a video OpenCV can decode; `code` is `invalid_video`."""

    code = "invalid_video"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frames: int
    """Frame count the container declares (0 when it does not say; then the end is found by reading)."""
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.frames > 0 else 0.0

    def samples(self, sample_rate: float) -> int:
        """How many samples a scan at `sample_rate` takes (0 when the frame count is unknown)."""
        if self.frames <= 0:
            return 0
        return max(1, math.ceil(self.frames * sample_rate / self.fps - 1e-9))


@dataclass(frozen=True)
class Sample:
    index: int
    """k: the sample's number, from 0."""
    time: float
    """Seconds from the start: k / sample_rate."""
    frame: np.ndarray
    """(h, w, 3) uint8 BGR."""


def _open(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError("the file is not a video that can be decoded (OpenCV/FFmpeg could not open it)")
    return capture


def probe(path: Path) -> VideoInfo:
    """Size, frame rate and frame count; raises VideoError if no frame decodes."""
    capture = _open(path)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoError("the file opened as a video but no frame could be decoded")
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = 25.0  # the container does not say; FFmpeg's own default
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(fps=fps, frames=max(0, frames), width=frame.shape[1], height=frame.shape[0])
    finally:
        capture.release()


def sample_frames(path: Path, info: VideoInfo, sample_rate: float, first: int = 0) -> Iterator[Sample]:
    """Samples `first`, `first`+1, ... to the end of the video, reading it once from the start.

    Frames between samples are only grabbed, not converted. Sample k is the frame
    shown at k / sample_rate s (the nearest frame at or before it); a sample rate
    above the frame rate is capped at it by the caller.
    """
    capture = _open(path)
    try:
        position = 0  # index of the next frame grab() returns
        k = first
        while True:
            wanted = int(math.floor(k * info.fps / sample_rate + 1e-6))
            while position < wanted:
                if not capture.grab():
                    return
                position += 1
            ok, frame = capture.read()
            if not ok or frame is None:
                return
            position += 1
            yield Sample(k, k / sample_rate, frame)
            k += 1
    finally:
        capture.release()
