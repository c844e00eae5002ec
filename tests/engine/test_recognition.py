"""Recall, false-positive and corner-accuracy floors on a fixed seed (no timings)."""

from __future__ import annotations

import statistics

import cv2
import numpy as np

from bench import queries
from bench.scenes import corner_error, jpeg
from matcher.model import Reference
from matcher.recognizer import Recognizer, describe_reference_image
from matcher.settings import MatcherSettings
from tests.engine.conftest import COLLECTION, Photos

TOLERANCE_PX = 10.0


def _frames(photos: Photos, level: str, count: int, seed: int) -> list[queries.Frame]:
    pool = [(item, "real", image) for item, image in sorted(photos.references.items())]
    return queries.make_frames(seed, count, pool, photos.backgrounds, (level,))


def _recall(recognizer: Recognizer, frames: list[queries.Frame]) -> tuple[float, list[float]]:
    hits, errors = 0, []
    for frame in frames:
        result = recognizer.recognize(COLLECTION, frame.data)
        truth = frame.placements[0]
        if result.matches and result.matches[0].item == truth.name:
            error = corner_error(result.matches[0].corners, truth.corners)
            errors.append(error)
            hits += error <= TOLERANCE_PX
    return hits / len(frames), errors


def test_easy_frames_are_recognized_with_their_outline(recognizer: Recognizer, photos: Photos) -> None:
    recall, errors = _recall(recognizer, _frames(photos, "easy", 24, seed=1))
    assert recall >= 0.95
    assert statistics.median(errors) <= 3.0


def test_moderate_frames_keep_recall_and_corner_accuracy(recognizer: Recognizer, photos: Photos) -> None:
    recall, errors = _recall(recognizer, _frames(photos, "moderate", 30, seed=2))
    assert recall >= 0.86, f"recall {recall:.2f}"  # floor: today's 28 of 30 less two frames; the target is 0.97
    assert statistics.median(errors) <= 3.0


def test_hard_frames_are_sometimes_recognized_and_never_misplaced(recognizer: Recognizer, photos: Photos) -> None:
    frames = _frames(photos, "hard", 20, seed=3)
    recall, _ = _recall(recognizer, frames)
    assert recall >= 0.3, f"recall {recall:.2f}"  # floor: today's 8 of 20 less two frames; the target is 0.85
    for frame in frames:
        for match in recognizer.recognize(COLLECTION, frame.data).matches:
            assert match.item == frame.placements[0].name


def test_several_objects_in_one_frame_are_all_found(recognizer: Recognizer, photos: Photos) -> None:
    frames = _frames(photos, "several", 12, seed=4)
    found = total = 0
    for frame in frames:
        matches = {m.item: m for m in recognizer.recognize(COLLECTION, frame.data).matches}
        for placement in frame.placements:
            total += 1
            m = matches.get(placement.name)
            found += m is not None and corner_error(m.corners, placement.corners) <= TOLERANCE_PX
        assert set(matches) <= {p.name for p in frame.placements}
    assert found / total >= 0.7, f"{found} of {total}"  # floor: today's 27 of 34 less three


def test_frames_without_any_reference_return_nothing(recognizer: Recognizer, photos: Photos) -> None:
    frames = _frames(photos, "distractors", 40, seed=5)
    returned = [m.item for f in frames for m in recognizer.recognize(COLLECTION, f.data).matches]
    assert returned == []


def test_a_dark_flat_frame_is_still_recognized(recognizer: Recognizer, photos: Photos) -> None:
    item, image = sorted(photos.references.items())[0]
    rng = np.random.default_rng(6)
    frame = queries.make_frame(rng, "easy", [(item, "real", image)], photos.backgrounds)
    bright = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
    dark = (bright.astype(np.float32) * 0.3 + 5).astype(np.uint8)  # a dim room: a third of the light
    result = recognizer.recognize(COLLECTION, jpeg(dark, 80))
    assert result.matches and result.matches[0].item == item
    assert corner_error(result.matches[0].corners, frame.placements[0].corners) <= TOLERANCE_PX


def test_reference_upload_size_does_not_change_the_outline(photos: Photos, settings: MatcherSettings) -> None:
    item, image = sorted(photos.references.items())[1]
    rng = np.random.default_rng(7)
    frame = queries.make_frame(rng, "moderate", [(item, "real", image)], photos.backgrounds)
    h, w = image.shape[:2]
    for factor in (0.5, 3.0):  # a thumbnail and a large scan of the same picture
        upload = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
        recognizer = Recognizer(settings)
        recognizer.load(COLLECTION, [Reference(item, item, {}, describe_reference_image(jpeg(upload, 92), settings).features)])
        result = recognizer.recognize(COLLECTION, frame.data)
        assert result.matches, f"not found when uploaded at {factor}x"
        # Corners are the reference's outline in the frame, whatever size it was uploaded at.
        assert corner_error(result.matches[0].corners, frame.placements[0].corners) <= TOLERANCE_PX


def test_an_added_item_is_found_and_a_removed_one_is_not(photos: Photos, settings: MatcherSettings) -> None:
    items = sorted(photos.references)
    recognizer = Recognizer(settings)
    recognizer.load(COLLECTION, [])
    index = recognizer.collection(COLLECTION)
    newcomer = items[2]
    rng = np.random.default_rng(8)
    frame = queries.make_frame(rng, "easy", [(newcomer, "real", photos.references[newcomer])], photos.backgrounds)
    assert recognizer.recognize(COLLECTION, frame.data).matches == []
    described = describe_reference_image(jpeg(photos.references[newcomer], 92), settings)
    index.add(Reference(newcomer, newcomer, {}, described.features))
    assert [m.item for m in recognizer.recognize(COLLECTION, frame.data).matches] == [newcomer]
    index.remove(newcomer)
    assert recognizer.recognize(COLLECTION, frame.data).matches == []
