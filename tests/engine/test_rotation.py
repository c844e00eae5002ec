"""Matches must turn the object's keypoints alike; references stored without orientations still work."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from bench import queries
from bench.scenes import corner_error, fit_background, jpeg, on_true_pose, paste
from matcher.features import describe_frame
from matcher.model import Correspondences, Features, Reference
from matcher.recognizer import Recognizer, describe_reference_image
from matcher.settings import MatcherSettings
from matcher.store import pack_features, unpack_features
from matcher.verification import project, reference_corners, verify
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


def test_pairs_of_a_second_rotation_are_verified_when_the_commonest_turn_is_wrong(photos: Photos, settings: MatcherSettings) -> None:
    # A repeated pattern (rows of windows, a tiled floor) gives many wrong pairs that all turn alike;
    # when they outnumber the object's own pairs, the object's pose is in the second commonest turn.
    item, image = sorted(photos.references.items())[0]
    reference = Reference(item, item, {}, describe_reference_image(jpeg(image, 92), settings).features)
    h, w = image.shape[:2]
    scale = 300.0 / max(w, h)
    turn = np.deg2rad(30.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    centred = (np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64) - [w / 2, h / 2]) * scale
    corners = centred @ rotation.T + [320, 240]
    frame_image = paste(fit_background(photos.backgrounds[0]), image, corners)
    gray = cv2.imdecode(np.frombuffer(jpeg(frame_image, 90), np.uint8), cv2.IMREAD_GRAYSCALE)
    frame = describe_frame(gray, settings)

    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(frame.descriptors, reference.features.descriptors)
    frame_indices = np.array([m.queryIdx for m in matches])
    reference_indices = np.array([m.trainIdx for m in matches])
    true = on_true_pose(
        reference.features.points[reference_indices], frame.points[frame_indices], reference.features.width,
        reference.features.height, corners, 3.0,
    )  # fmt: skip
    frame_indices, reference_indices = frame_indices[true], reference_indices[true]
    assert len(frame_indices) >= 40, f"only {len(frame_indices)} true pairs: the frame does not test verification"
    one_turn = dataclasses.replace(settings, rotation_modes=1)
    assert verify(frame, reference, Correspondences(item, frame_indices, reference_indices, 1.0), one_turn) is not None

    # Twice as many wrong pairs, each turning half a turn from the object's keypoints, at random places.
    rng = np.random.default_rng(3)
    object_turn = int(np.median((frame.angles[frame_indices].astype(np.int32) - reference.features.angles[reference_indices]) % 256))
    wrong_frame, wrong_reference = [], []
    while len(wrong_frame) < 2 * len(frame_indices):
        f = int(rng.integers(len(frame.points)))
        wanted = (int(frame.angles[f]) - object_turn - 128) % 256
        same_turn = np.flatnonzero(np.abs((reference.features.angles.astype(np.int32) - wanted + 128) % 256 - 128) <= 2)
        if len(same_turn):
            wrong_frame.append(f)
            wrong_reference.append(int(rng.choice(same_turn)))
    pairs = Correspondences(
        item, np.concatenate([frame_indices, wrong_frame]), np.concatenate([reference_indices, wrong_reference]), 1.0
    )

    assert verify(frame, reference, pairs, one_turn) is None
    verified = verify(frame, reference, pairs, settings)
    assert verified is not None
    found, _ = project(verified.H, reference_corners(reference.features.width, reference.features.height))
    assert corner_error(found.tolist(), corners) <= 3.0
