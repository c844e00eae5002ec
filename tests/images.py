"""Real photographs for tests: the scikit-image sample photos, from its wheel on PyPI.

The wheel is fetched once with pip and cached in .cache/skimage; images are
read from it by name (e.g. "coffee.png"). BSD-3-Clause / public domain, see
skimage/data/README.txt in the wheel.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "skimage"


@cache
def _wheel() -> Path:
    found = sorted(CACHE.glob("scikit_image-*.whl"))
    if found:
        return found[-1]
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(CACHE), "scikit-image"],
        check=True,
    )
    return sorted(CACHE.glob("scikit_image-*.whl"))[-1]


def photo_bytes(name: str) -> bytes:
    """The file bytes of a scikit-image sample photo."""
    with zipfile.ZipFile(_wheel()) as archive:
        return archive.read(f"skimage/data/{name}")


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as a BGR array."""
    image = cv2.imdecode(np.frombuffer(photo_bytes(name), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image
