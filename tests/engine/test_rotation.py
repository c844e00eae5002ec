"""Matches must turn the object's keypoints alike; references stored without orientations still work."""

from __future__ import annotations

import dataclasses

import numpy as np

from bench import queries
from bench.scenes import corner_error, jpeg
from matcher.model import Features, Reference
from matcher.recognizer import Recognizer, describe_reference_image
from matcher.settings import MatcherSettings
from matcher.store import pack_features, unpack_features
from tests.engine.conftest import COLLECTION, Photos


def _objects_found(recognizer: Recognizer, frames: list[queries.Frame]) -> int:
    found = 0
    for frame in frames:
        matches = {m.item: m for m in recognizer.recognize(COLLECTION, frame.data).matches}
        for placement in frame.placements:
            m = matches.get(placement.name)
            found += m is not None and corner_error(m.corners, placement.corners) <= 10.0
    return found


def _recognizer(photos: Photos, settings: MatcherSettings, strip_orientations: bool = False) -> Recognizer:
    references = []
    for item, image in sorted(photos.references.items()):
        features = describe_reference_image(jpeg(image, 92), settings).features
        if strip_orientations:  # as a reference stored before orientations were kept comes back from the store
            features = unpack_features(pack_features(dataclasses.replace(features, angles=None)))
            assert features.angles is None
        references.append(Reference(item, item, {}, features))
    recognizer = Recognizer(settings)
    recognizer.load(COLLECTION, references)
    return recognizer


def _several(photos: Photos) -> list[queries.Frame]:
    pool = [(item, "real", image) for item, image in sorted(photos.references.items())]
    return queries.make_frames(8, 16, pool, photos.backgrounds, ("several",))


def test_the_rotation_check_finds_more_of_several_objects_in_a_frame(photos: Photos, settings: MatcherSettings) -> None:
    frames = _several(photos)
    with_check = _objects_found(_recognizer(photos, settings), frames)
    without = _objects_found(_recognizer(photos, dataclasses.replace(settings, orientation_tolerance_degrees=0.0)), frames)
    assert with_check >= without + 3, f"{with_check} objects found with the check, {without} without"


def test_references_stored_without_orientations_are_recognized_as_before(photos: Photos, settings: MatcherSettings) -> None:
    frames = _several(photos)
    old = _objects_found(_recognizer(photos, settings, strip_orientations=True), frames)
    unchecked = _objects_found(_recognizer(photos, dataclasses.replace(settings, orientation_tolerance_degrees=0.0)), frames)
    assert old == unchecked > 0


def test_orientations_survive_the_store() -> None:
    rng = np.random.default_rng(1)
    features = Features(
        rng.random((50, 2), dtype=np.float32), rng.integers(0, 256, (50, 32), dtype=np.uint8), 64, 48,
        rng.integers(0, 256, 50, dtype=np.uint8),
    )  # fmt: skip
    back = unpack_features(pack_features(features))
    assert back.angles is not None and np.array_equal(back.angles, features.angles)
    assert np.array_equal(back.descriptors, features.descriptors) and np.array_equal(back.points, features.points)
