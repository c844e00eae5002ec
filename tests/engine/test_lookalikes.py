"""Look-alike references: one picture with a different small part in each (a poster series, a catalogue page per size).

Their shared content fails the ratio test for all of them, so the shortlist must
still let the right one reach verification.
"""

from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

from bench import queries, sources
from bench.scenes import corner_error, jpeg
from matcher.model import Reference
from matcher.recognizer import Recognizer, describe_reference_image
from matcher.settings import MatcherSettings
from tests.engine.conftest import Photos

BASES = ("astronaut", "chelsea", "coffee", "motorcycle_left")
STRIPS = ("rocket", "camera", "coins", "page", "hubble_deep_field", "retina", "color", "text")
STRIP_SHARE = 0.1  # of the width: all that tells one family member from another


@functools.cache
def _every_photo() -> dict[str, np.ndarray]:
    """Every sample photo by name, usable as a reference or not (read once for all the tests here)."""
    return {path.stem: cv2.imread(str(path), cv2.IMREAD_COLOR) for path in sources.skimage_photos()}


def _family(base: np.ndarray, strips: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    w, h = 640, 480
    picture = cv2.resize(base, (w, h), interpolation=cv2.INTER_AREA)
    strip_w = int(w * STRIP_SHARE)
    family = {}
    for name, strip in strips.items():
        member = picture.copy()
        member[:, w - strip_w :] = cv2.resize(strip, (strip_w, h), interpolation=cv2.INTER_AREA)
        family[name] = member
    return family


def _recall(photos: Photos, settings: MatcherSettings) -> tuple[float, int]:
    """Recall@1 over every family's frames, and how many frames reported more than one item."""
    # Strips may be poor references on their own (a colour chart): any sample photo will do.
    images = _every_photo()
    found = shown = crowded = 0
    for base in BASES:
        family = _family(images[base], {f"{base}+{s}": images[s] for s in STRIPS})
        recognizer = Recognizer(settings)
        recognizer.load(
            "family",
            [Reference(k, k, {}, describe_reference_image(jpeg(v, 92), settings).features) for k, v in family.items()],
        )
        frames = queries.make_frames(5, 16, [(k, "real", v) for k, v in family.items()], photos.backgrounds, ("moderate",))
        for frame in frames:
            matches = recognizer.recognize("family", frame.data).matches
            truth = frame.placements[0]
            shown += 1
            crowded += len(matches) > 1
            found += bool(matches) and matches[0].item == truth.name and corner_error(matches[0].corners, truth.corners) <= 10
    return found / shown, crowded


def test_the_right_member_of_a_look_alike_family_is_recognized(photos: Photos, settings: MatcherSettings) -> None:
    with_shared_votes, crowded = _recall(photos, settings)
    assert with_shared_votes >= 0.65, f"recall {with_shared_votes:.2f}"  # today 0.70
    # The shared descriptors' votes are what brings the right member to verification (today 0.59 without).
    # Fallback candidates (a few votes turning alike) bring it there in some frames too; they are left
    # out of both counts here, so what is measured is the shared votes alone.
    alone = dataclasses.replace(settings, fallback_candidates=0)
    with_shared_votes_alone, _ = _recall(photos, alone)
    without, _ = _recall(photos, dataclasses.replace(alone, shared_vote_weight=0.0))
    assert with_shared_votes_alone - without >= 0.1, f"{with_shared_votes_alone:.2f} with shared votes, {without:.2f} without"
    # Its look-alikes verify too (nine tenths of each is in view) but are the same object: not reported.
    assert crowded == 0, f"{crowded} frames of one member reported several members"


def test_look_alikes_do_verify_so_the_one_place_rule_is_what_hides_them(photos: Photos, settings: MatcherSettings) -> None:
    _, crowded = _recall(photos, dataclasses.replace(settings, max_outline_overlap=1.0))
    assert crowded >= 32, f"only {crowded} of 64 frames reported several members"  # what the rule above removes


def _sharing_a_corner(shown: np.ndarray, other: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """The picture `shown` and a reference made of `other` with the top-left `share` (of each side) of
    `shown` pasted in its middle: they share a detail, and their outlines hardly overlap."""
    w, h = 640, 480
    picture = cv2.resize(shown, (w, h), interpolation=cv2.INTER_AREA)
    sharing = cv2.resize(other, (w, h), interpolation=cv2.INTER_AREA)
    cut_w, cut_h = int(w * share), int(h * share)
    x, y = (w - cut_w) // 2, (h - cut_h) // 2
    sharing[y : y + cut_h, x : x + cut_w] = picture[:cut_h, :cut_w]
    return picture, sharing


def test_a_reference_sharing_only_a_detail_with_the_picture_shown_is_not_reported(photos: Photos, settings: MatcherSettings) -> None:
    """Keypoint pairs verify both references on the shared detail; the appearance check (the pose puts
    the sharing reference's own picture over the frame, where it is not) removes the wrong one."""
    images = _every_photo()
    counts = {}
    for check in (settings.min_agreeing_cells, 0.0):
        variant = dataclasses.replace(settings, min_agreeing_cells=check)
        found = wrong = 0
        for shown, other in (("motorcycle_left", "chelsea"), ("astronaut", "chelsea")):
            picture, sharing = _sharing_a_corner(images[shown], images[other], 0.35)
            recognizer = Recognizer(variant)
            recognizer.load(
                "sharing",
                [Reference(k, k, {}, describe_reference_image(jpeg(v, 92), variant).features) for k, v in (("shown", picture), ("sharing", sharing))],
            )
            for frame in queries.make_frames(9, 12, [("shown", "real", picture)], photos.backgrounds, ("easy", "moderate")):
                items = [m.item for m in recognizer.recognize("sharing", frame.data).matches]
                found += bool(items) and items[0] == "shown"
                wrong += "sharing" in items
        counts[check] = found, wrong
    (found, wrong), (found_unchecked, wrong_unchecked) = counts[settings.min_agreeing_cells], counts[0.0]
    assert wrong_unchecked >= 20, f"only {wrong_unchecked} of 48 frames report the sharing reference unchecked"  # today 31
    assert wrong <= wrong_unchecked // 4, f"{wrong} frames report it checked, {wrong_unchecked} unchecked"  # today 4
    assert found == found_unchecked == 48
