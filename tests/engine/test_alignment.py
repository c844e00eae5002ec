"""A found pose is aligned on the reference's own pixels where no keypoint pins its corners down (matcher/alignment.py)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from bench.scenes import corner_error, fit_background, jpeg, paste
from matcher.alignment import PATCH_SIDE
from matcher.model import Reference
from matcher.recognizer import Recognizer, describe_reference_image
from matcher.settings import MatcherSettings
from matcher.store import pack_features, unpack_features
from tests.images import photo

# Tilted views of a print: where the frame shows it, and how.
PRINT_CORNERS = [
    np.array([[150, 70], [470, 100], [490, 420], [130, 400]], np.float64),
    np.array([[120, 50], [450, 30], [500, 380], [90, 440]], np.float64),
    np.array([[200, 40], [520, 90], [500, 440], [170, 450]], np.float64),
]


def landscape_print(ground_rows: int = 100, sky_rows: int = 300) -> np.ndarray:
    """A print like a landscape photo: detail along the bottom (rocks, a shore), above it a sky whose
    clouds are broad soft shapes, with no corner for a keypoint detector."""
    ground = cv2.resize(photo("coffee.png"), (400, ground_rows), interpolation=cv2.INTER_AREA)
    sky = cv2.resize(photo("chelsea.png"), (400, sky_rows), interpolation=cv2.INTER_AREA)
    sky = cv2.GaussianBlur(sky, (0, 0), 16).astype(np.float32)
    sky = np.clip((sky - sky.mean()) * 1.6 + 170, 0, 255).astype(np.uint8)
    return np.vstack([sky, ground])


def camera_frames(picture: np.ndarray, views: list[np.ndarray]) -> list[tuple[bytes, np.ndarray]]:
    """JPEG frames of `picture` seen at each of the (4, 2) corner sets `views`, slightly blurred and noisy."""
    # A backdrop as soft as the sky, so that no sharp edge shows where the print ends.
    background = fit_background(cv2.GaussianBlur(photo("chelsea.png"), (0, 0), 12))
    rng = np.random.default_rng(3)
    out = []
    for corners in views:
        image = paste(background, picture, corners).astype(np.float32)
        image = cv2.GaussianBlur(image, (0, 0), 1.0) + rng.normal(0, 2.0, background.shape)
        out.append((jpeg(np.clip(image, 0, 255).astype(np.uint8), 70), corners))
    return out


@pytest.fixture(scope="module")
def frames() -> list[tuple[bytes, np.ndarray]]:
    return camera_frames(landscape_print(), PRINT_CORNERS)


def errors(settings: MatcherSettings, frames: list[tuple[bytes, np.ndarray]], patch: bool = True, picture: np.ndarray | None = None) -> list[float]:
    engine = Recognizer(settings)
    picture = landscape_print() if picture is None else picture
    features = describe_reference_image(jpeg(picture, 95), settings).features
    if not patch:
        features = dataclasses.replace(features, patch=None)
    engine.load("prints", [Reference("print", "Print", {}, features)])
    found = []
    for data, corners in frames:
        matches = engine.recognize("prints", data).matches
        assert [m.item for m in matches] == ["print"]
        found.append(corner_error(matches[0].corners, corners))
    return found


def test_a_print_whose_sky_has_no_keypoints_is_placed_by_its_pixels(frames: list[tuple[bytes, np.ndarray]]) -> None:
    aligned = errors(MatcherSettings(), frames)
    extrapolated = errors(dataclasses.replace(MatcherSettings(), align_below_coverage=0.0), frames)
    assert max(aligned) <= 2.0, f"corner errors {aligned}"
    # The case alignment is for: without it the sky's corners are only extrapolated from the ground's pairs.
    assert max(extrapolated) > 4.0, f"corner errors without alignment {extrapolated}"


def test_corners_extrapolated_tens_of_pixels_off_are_drawn_in() -> None:
    # Keypoints only along the bottom sixth: the sky's corners, extrapolated from them, land some 70 px
    # off. The full copy's detail catches an alignment started that far off; the coarse copy's broad
    # shapes draw it in first.
    picture = landscape_print(ground_rows=60, sky_rows=300)
    far_off = camera_frames(picture, [np.array([[140, 60], [490, 90], [460, 440], [110, 400]], np.float64)])
    aligned = errors(MatcherSettings(), far_off, picture=picture)
    extrapolated = errors(dataclasses.replace(MatcherSettings(), align_below_coverage=0.0), far_off, picture=picture)
    assert min(extrapolated) > 25.0, f"corner errors without alignment {extrapolated}"
    assert max(aligned) <= 2.5, f"corner errors {aligned}"


def test_references_stored_without_a_patch_are_recognized_as_before(frames: list[tuple[bytes, np.ndarray]]) -> None:
    without = errors(MatcherSettings(), frames, patch=False)
    extrapolated = errors(dataclasses.replace(MatcherSettings(), align_below_coverage=0.0), frames)
    assert without == extrapolated


def test_the_patch_survives_the_store() -> None:
    features = describe_reference_image(jpeg(landscape_print(), 95), MatcherSettings()).features
    assert features.patch is not None and 500 < len(features.patch) < 4096
    back = unpack_features(pack_features(features))
    assert back.patch == features.patch
    small = cv2.imdecode(np.frombuffer(back.patch, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert max(small.shape) == PATCH_SIDE
