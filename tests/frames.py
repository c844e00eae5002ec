"""Camera frames with ground truth for the end-to-end tests, built from real photos."""

from __future__ import annotations

import numpy as np

from bench.scenes import fit_background, jpeg, paste, random_quad
from tests.images import photo

# References for the server tests (the engine's accuracy on harder ones is measured by bench/),
# and photos that are in no test collection.
REFERENCES = ["coffee.png", "astronaut.png", "motorcycle_left.png", "rocket.jpg", "chelsea.png"]
WELL_TEXTURED = ["coffee.png", "astronaut.png", "motorcycle_left.png"]
BACKGROUNDS = ["grass.png", "gravel.png"]
UNRELATED = ["camera.png", "moon.png", "coins.png", "page.png", "grass.png", "gravel.png", "text.png", "color.png"]


def composite(
    references: list[str],
    seed: int,
    background: str = "gravel.png",
    size: tuple[float, float] = (0.5, 0.75),
    rotation: float = 20.0,
    tilt: float = 25.0,
    quality: int = 85,
) -> tuple[bytes, dict[str, np.ndarray]]:
    """A 640x480 JPEG with each reference pasted in its own part of the frame, and their true corners."""
    rng = np.random.default_rng(seed)
    frame = fit_background(photo(background))
    truth = {}
    n = len(references)
    for i, name in enumerate(references):
        image = photo(name)
        h, w = image.shape[:2]
        region = (i / n, 0.0, 1.0 / n, 1.0)
        corners = random_quad(rng, w, h, 640, 480, size, rotation, tilt, region=region)
        frame = paste(frame, image, corners)
        truth[name] = corners
    return jpeg(frame, quality), truth


def plain(name: str, quality: int = 85) -> bytes:
    """A 640x480 JPEG of a photo with no reference in it."""
    return jpeg(fit_background(photo(name)), quality)
