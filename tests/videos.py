"""Generated videos with known appearances, for the video scan tests.

The script of the default video (10 s): the coffee cup from 1 s to 3 s, the
astronaut from 4 s to 6 s, both from 7 s to 8 s, nothing else (a gravel
background). The references drift a few pixels per frame, as in a hand-held
shot. Written with cv2.VideoWriter in whichever container and codec the test
asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.scenes import fit_background, paste, random_quad
from tests.images import photo

WIDTH, HEIGHT = 640, 480


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    references: tuple[str, ...]


SCRIPT = (
    Segment(1.0, 3.0, ("coffee.png",)),
    Segment(4.0, 6.0, ("astronaut.png",)),
    Segment(7.0, 8.0, ("coffee.png", "astronaut.png")),
)


def expected_ranges(script: tuple[Segment, ...] = SCRIPT) -> dict[str, list[tuple[float, float]]]:
    """reference file -> its (start, end) ranges in seconds, merging touching segments."""
    ranges: dict[str, list[tuple[float, float]]] = {}
    for segment in script:
        for name in segment.references:
            found = ranges.setdefault(name, [])
            if found and abs(found[-1][1] - segment.start) < 1e-9:
                found[-1] = (found[-1][0], segment.end)
            else:
                found.append((segment.start, segment.end))
    return ranges


def write_video(
    path: Path, fourcc: str, fps: float = 10.0, seconds: float = 10.0, script: tuple[Segment, ...] = SCRIPT, seed: int = 5
) -> Path:
    """Write the scripted video; raises if this OpenCV cannot write `fourcc` into `path`'s container."""
    rng = np.random.default_rng(seed)
    background = fit_background(photo("gravel.png"))
    images = {name: photo(name) for segment in script for name in segment.references}
    # Where each reference sits when it is alone, and in its half of the frame when both are shown.
    alone = {name: random_quad(rng, im.shape[1], im.shape[0], WIDTH, HEIGHT, (0.55, 0.7), 15, 20) for name, im in images.items()}
    halves = {}
    for i, (name, im) in enumerate(sorted(images.items())):
        region = (i / 2, 0.0, 0.5, 1.0)
        halves[name] = random_quad(rng, im.shape[1], im.shape[0], WIDTH, HEIGHT, (0.5, 0.7), 15, 20, region=region)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} into {path.suffix}")
    try:
        for index in range(round(seconds * fps)):
            t = index / fps
            frame = background.copy()
            drift = np.array([3.0 * np.sin(index / 4), 2.0 * np.cos(index / 5)])
            for segment in script:
                if segment.start <= t < segment.end:
                    place = alone if len(segment.references) == 1 else halves
                    for name in segment.references:
                        frame = paste(frame, images[name], place[name] + drift)
            writer.write(frame)
    finally:
        writer.release()
    return path
