"""Real camera shots: objects a camera photographed from another viewpoint are found where it saw them.

The other engine tests paste a photograph into another under a homography they pick. These
views were taken by a camera (OpenCV's sample shots, Debian `opencv-doc`, fetched and cached
like the benchmark's photographs): a graffiti wall from about 40 degrees to the side, with the
ground-truth homography that ships with it, and a biscuit box small and tilted in a heap of
other boxes (ground truth fitted with SIFT, not the engine's ORB). `bench.real_shots` frames
each shot as a phone held at a slant would. No timings.
"""

from __future__ import annotations

import pytest

from bench import real_shots
from bench.scenes import corner_error, jpeg
from matcher.model import Reference
from matcher.recognizer import Recognizer, describe_reference_image
from matcher.settings import MatcherSettings
from tests.engine.conftest import COLLECTION, Photos

TOLERANCE_PX = 10.0


@pytest.fixture(scope="module")
def views_and_recognizer(photos: Photos, settings: MatcherSettings) -> tuple[list[real_shots.View], Recognizer]:
    references, shots = real_shots.opencv_subjects(real_shots.SiftTruth())
    views = real_shots.make_views(references, shots, views_per_shot=5)
    collection = [
        Reference(item, item, {}, describe_reference_image(jpeg(image, 92), settings).features) for item, image in photos.references.items()
    ]
    collection += [real_shots.as_reference(reference, settings) for reference in references]
    recognizer = Recognizer(settings)
    recognizer.load(COLLECTION, collection)
    return views, recognizer


def test_real_shots_from_other_viewpoints_are_found_with_their_corners(views_and_recognizer) -> None:
    views, recognizer = views_and_recognizer
    judged = [(view, item) for view in views for item in view.judged]
    assert len(judged) >= 8, "the framing should keep most of each subject in view"
    for view, item in judged:
        result = recognizer.recognize(COLLECTION, view.data)
        mine = [m for m in result.matches if m.item == item]
        assert mine, f"{item} not found in a view of the {view.subject} (found {[m.item for m in result.matches]})"
        error = corner_error(mine[0].corners, view.corners[item])
        assert error <= TOLERANCE_PX, f"{item}'s corners {error:.1f} px off in a view of the {view.subject}"


def test_real_shots_return_nothing_they_do_not_show(views_and_recognizer) -> None:
    views, recognizer = views_and_recognizer
    for view in views:
        returned = {m.item for m in recognizer.recognize(COLLECTION, view.data).matches}
        assert returned <= set(view.corners), f"a view of the {view.subject} returned {sorted(returned - set(view.corners))}"
