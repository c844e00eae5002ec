"""Outlines snap to the object's edges where no keypoint pins the corners down (matcher/outline.py)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from bench.queries import motion_blur
from bench.scenes import corner_error, fit_background, jpeg, paste
from matcher.model import Reference
from matcher.recognizer import Recognizer, describe_reference_image
from matcher.settings import MatcherSettings
from matcher.verification import reference_corners
from tests.images import photo

# A card whose picture is a strip along its top: the rest is plain paper with no keypoint on it.
CARD_CORNERS = [
    np.array([[190, 60], [450, 90], [470, 440], [170, 420]], np.float64),
    np.array([[140, 40], [430, 20], [480, 400], [100, 460]], np.float64),
    np.array([[230, 30], [500, 80], [480, 430], [200, 460]], np.float64),
]


def card() -> np.ndarray:
    picture = cv2.resize(photo("astronaut.png"), (400, 160), interpolation=cv2.INTER_AREA)
    paper = np.full((440, 400, 3), (215, 225, 235), np.uint8)
    return np.vstack([picture, paper])


@pytest.fixture(scope="module")
def frames() -> list[tuple[bytes, np.ndarray]]:
    background = fit_background(cv2.GaussianBlur(photo("gravel.png"), (0, 0), 1.0) // 2)
    rng = np.random.default_rng(5)
    out = []
    for corners in CARD_CORNERS:
        image = paste(background, card(), corners).astype(np.float32) + rng.normal(0, 2.0, background.shape)
        out.append((jpeg(np.clip(image, 0, 255).astype(np.uint8), 85), corners))
    return out


def errors(settings: MatcherSettings, frames: list[tuple[bytes, np.ndarray]]) -> list[float]:
    engine = Recognizer(settings)
    described = describe_reference_image(jpeg(card(), 95), settings)
    engine.load("cards", [Reference("card", "Card", {}, described.features)])
    found = []
    for data, corners in frames:
        matches = engine.recognize("cards", data).matches
        assert [m.item for m in matches] == ["card"]
        found.append(corner_error(matches[0].corners, corners))
    return found


def test_the_plain_part_of_a_card_is_outlined_on_its_edges(frames: list[tuple[bytes, np.ndarray]]) -> None:
    snapped = errors(MatcherSettings(), frames)
    extrapolated = errors(dataclasses.replace(MatcherSettings(), outline_search_px=0.0), frames)
    assert max(snapped) <= 2.0, f"corner errors {snapped}"
    # The case the snapping is for: without it the plain part's corners are only extrapolated.
    assert max(extrapolated) > 4.0, f"corner errors without snapping {extrapolated}"


def test_a_side_half_hidden_by_a_hand_still_outlines_the_card(frames: list[tuple[bytes, np.ndarray]]) -> None:
    """A hand over the lower left of the card hides about half of its left and bottom sides
    (and the corner between them): the visible halves of those sides still carry their lines."""
    covered = []
    rng = np.random.default_rng(6)
    height, width = card().shape[:2]
    for data, corners in frames:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        card_to_frame = cv2.getPerspectiveTransform(reference_corners(width, height), corners.astype(np.float32))
        # Reaching in from outside the card, so the hand's own edges cross its sides at an angle.
        hand = np.array([[[-120, 330], [170, 300], [230, 720], [-60, 760]]], np.float32)
        outline = cv2.perspectiveTransform(hand, card_to_frame)[0]
        skin = np.clip(np.array([120, 150, 190], np.float32) + rng.normal(0, 6.0, image.shape), 0, 255).astype(np.uint8)
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, np.round(outline).astype(np.int32), 255)
        image[mask > 0] = skin[mask > 0]
        covered.append((jpeg(image, 85), corners))
    found = errors(MatcherSettings(), covered)
    assert max(found) <= 2.0, f"corner errors {found}"


def shaken(frames: list[tuple[bytes, np.ndarray]], length: int, gain: float, noise: float, quality: int) -> list[tuple[bytes, np.ndarray]]:
    """The card frames shot by a moving camera (a `length` px streak, each its own way) in dimmer light."""
    rng = np.random.default_rng(7)
    out = []
    for (data, corners), degrees in zip(frames, (20.0, 75.0, 140.0), strict=True):
        image = motion_blur(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), length, np.radians(degrees)).astype(np.float32)
        dim = image * gain + rng.normal(0, noise, image.shape)
        out.append((jpeg(np.clip(dim, 0, 255).astype(np.uint8), quality), corners))
    return out


# The snapping on its own: no alignment on the reference's pixels after it.
WITHOUT_ALIGNMENT = dataclasses.replace(MatcherSettings(), align_below_coverage=0.0)


def test_a_card_shot_moving_in_dim_light_is_outlined_on_its_blurred_edges(frames: list[tuple[bytes, np.ndarray]]) -> None:
    """A camera moving in a dim room smears each edge over several pixels and buries it in noise:
    no single pixel steps much, but the whole rise from table to card is still there."""
    blurred = shaken(frames, 7, 0.45, 4.0, 60)
    snapped = errors(WITHOUT_ALIGNMENT, blurred)
    extrapolated = errors(dataclasses.replace(WITHOUT_ALIGNMENT, outline_search_px=0.0), blurred)
    assert max(snapped) <= 3.0, f"corner errors {snapped}"
    assert max(extrapolated) > 6.0, f"corner errors without snapping {extrapolated}"


def test_edges_that_disagree_with_the_pairs_by_a_pixel_still_place_the_far_corners(frames: list[tuple[bytes, np.ndarray]]) -> None:
    """A 9 px streak: the card's sides are found, but an outline through their four lines moves
    the picture's pairs too far to be taken as it is; fitted together with the pairs, the edges
    still bring the plain part's corners in."""
    blurred = shaken(frames, 9, 0.6, 2.0, 85)
    snapped = errors(WITHOUT_ALIGNMENT, blurred)
    extrapolated = errors(dataclasses.replace(WITHOUT_ALIGNMENT, outline_search_px=0.0), blurred)
    assert max(snapped) <= 5.0, f"corner errors {snapped}"
    assert max(extrapolated) > 10.0, f"corner errors without snapping {extrapolated}"
