"""The engine: a frame's bytes in, the references it shows out.

decode -> features -> index shortlist -> geometric verification -> pose on the pixels -> appearance check
-> result.
No I/O here: the worker feeds references in and frames through.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from matcher.alignment import Templates, aligned_pose, make_patch
from matcher.appearance import agreeing_share
from matcher.decode import DecodedImage, decode_image
from matcher.features import describe_frame, describe_reference, reference_quality
from matcher.index import DescriptorIndex, InvertedFileIndex, match_descriptors, rematched
from matcher.model import Correspondences, Features, FrameResult, Reference
from matcher.outline import snap_outline
from matcher.settings import MatcherSettings
from matcher.verification import (
    Verified,
    area_covered,
    inlier_points,
    one_item_per_place,
    same_layout,
    to_match,
    verify,
)


class UnknownCollection(LookupError):
    """A frame named a collection this engine does not hold."""


class PoorReference(ValueError):
    """A reference image with too few usable features to be recognized."""

    def __init__(self, message: str, keypoints: int, quality: float) -> None:
        super().__init__(message)
        self.keypoints = keypoints
        self.quality = quality


@dataclass(frozen=True)
class DescribedReference:
    """Features of a newly uploaded reference, ready to store."""

    features: Features
    quality: float


def describe_reference_image(data: bytes, settings: MatcherSettings) -> DescribedReference:
    """Decode and describe a reference image; raises ImageError or PoorReference."""
    image = decode_image(data, settings.reference_max_side, settings.max_image_pixels)
    features = dataclasses.replace(describe_reference(image.gray, image.width, image.height, settings), patch=make_patch(image.gray))
    quality = reference_quality(features, settings)
    if len(features) < settings.min_reference_keypoints:
        raise PoorReference(
            f"only {len(features)} usable keypoints were found, at least "
            f"{settings.min_reference_keypoints} are needed: use a sharper, more textured image",
            len(features),
            quality,
        )
    if quality < settings.min_reference_quality:
        raise PoorReference(
            f"the image's features cover too little of it (quality {quality}, at least "
            f"{settings.min_reference_quality} is needed): use an image with detail all over",
            len(features),
            quality,
        )
    return DescribedReference(features, quality)


class Recognizer:
    """Holds one index per collection and recognizes frames against them."""

    def __init__(self, settings: MatcherSettings) -> None:
        self.settings = settings
        self._collections: dict[str, DescriptorIndex] = {}
        self._templates = Templates()

    def collection(self, name: str) -> DescriptorIndex:
        index = self._collections.get(name)
        if index is None:
            index = self._collections[name] = InvertedFileIndex()
        return index

    def load(self, name: str, references: list[Reference]) -> None:
        index = InvertedFileIndex()
        index.bulk_load(references)
        self._collections[name] = index

    def drop(self, name: str) -> None:
        self._collections.pop(name, None)

    def has(self, name: str) -> bool:
        return name in self._collections

    def collections(self) -> dict[str, int]:
        """Item count of each collection held (a copy is iterated: the follower thread may load one meanwhile)."""
        return {name: len(index) for name, index in dict(self._collections).items()}

    def recognize(self, collection: str, data: bytes, with_inliers: bool = False) -> FrameResult:
        """Decode a frame and find every reference of `collection` in it (with inlier positions if asked)."""
        if collection not in self._collections:
            raise UnknownCollection(collection)
        started = time.perf_counter()
        image = decode_image(data, self.settings.frame_max_side, self.settings.max_image_pixels)
        return self.recognize_image(collection, image, started, with_inliers)

    def recognize_image(
        self,
        collection: str,
        image: DecodedImage,
        started: float | None = None,
        with_inliers: bool = False,
        frame: Features | None = None,
    ) -> FrameResult:
        """Find every reference of `collection` in an already decoded frame (a video frame, say).

        `frame`: the frame's features when they were already taken (then `features_ms` is 0).
        """
        index = self._collections.get(collection)
        if index is None:
            raise UnknownCollection(collection)
        decoded = time.perf_counter()
        started = decoded if started is None else started
        if frame is None:
            frame = describe_frame(image.gray, self.settings)
        described = time.perf_counter()
        shortlist = index.shortlist(frame.descriptors, self.settings, frame.angles)
        searched = time.perf_counter()
        result = FrameResult(width=image.width, height=image.height)
        for candidate in shortlist:
            if not candidate.fallback:
                self._verify_candidate(index, image, frame, candidate, with_inliers, result)
        if not result.matches:
            # Nothing the search was sure of is here: the items a few agreeing votes point to may be.
            for candidate in shortlist:
                positions = index.keypoint_positions(candidate.item) if candidate.fallback else None
                if positions is not None and same_layout(
                    positions[candidate.reference_indices],
                    frame.points[candidate.frame_indices],
                    float(np.ptp(positions, axis=0).max()),
                    self.settings,
                ):
                    self._verify_candidate(index, image, frame, self._rematched(index, frame, candidate), with_inliers, result)
        verified_at = time.perf_counter()
        result.matches.sort(key=lambda m: -m.score)
        result.matches = one_item_per_place(result.matches, self.settings.max_outline_overlap)
        result.timing = _milliseconds(
            decode=decoded - started,
            features=described - decoded,
            search=searched - described,
            verify=verified_at - searched,
            match=verified_at - started,
        )
        return result

    def _verify_candidate(
        self, index: DescriptorIndex, image: DecodedImage, frame: Features, candidate: Correspondences, with_inliers: bool, result: FrameResult
    ) -> None:
        """Verify one candidate and add it to `result` if it is there."""
        reference = candidate.reference or index.reference(candidate.item)
        if reference is None:
            return
        verified = verify(frame, reference, candidate, self.settings)
        if verified is not None:
            H = self._placed(image, verified, reference)
            if not self._looks_like(image, reference, H):
                return
            points = inlier_points(frame, reference, candidate, H, self.settings) if with_inliers else None
            result.matches.append(to_match(reference, H, image.scale, verified.inliers, verified.score, points, verified.coverage))

    def _rematched(self, index: DescriptorIndex, frame: Features, candidate: Correspondences) -> Correspondences:
        """A fallback candidate with its reference read (`matcher.index.rematched`)."""
        reference = index.reference(candidate.item)
        return candidate if reference is None else rematched(candidate, reference, frame.descriptors, self.settings)

    def _placed(self, image: DecodedImage, verified: Verified, reference: Reference) -> np.ndarray:
        """The verified pose with its outline on the object's edges in the frame (matcher/outline.py), then,
        when its pairs leave much of the reference to extrapolation, aligned on the reference's pixels
        (matcher/alignment.py)."""
        features = reference.features
        H = snap_outline(
            image.gray, verified.H, features.width, features.height, verified.reference_points, verified.frame_points, self.settings
        )
        if features.patch is None or area_covered(verified.reference_points, features.width, features.height) >= self.settings.align_below_coverage:
            return H
        template = self._templates.get(reference.item, features.patch, features.width, features.height)
        if template is None:
            return H
        return aligned_pose(template, image.gray, H, verified.reference_points, verified.frame_points, self.settings.align_min_correlation)

    def _looks_like(self, image: DecodedImage, reference: Reference, H: np.ndarray) -> bool:
        """Whether the frame looks like the reference wherever the pose H puts it (matcher/appearance.py):
        a look-alike sharing only a title or a logo with what the frame shows does not."""
        features = reference.features
        if self.settings.min_agreeing_cells <= 0 or features.patch is None:
            return True
        template = self._templates.get(reference.item, features.patch, features.width, features.height)
        if template is None:
            return True
        share = agreeing_share(template, image.gray, H)
        return share is None or share >= self.settings.min_agreeing_cells

    def find_items(self, collection: str, image: DecodedImage, frame: Features, items: Iterable[str]) -> FrameResult:
        """Look for the given items only in a described frame: no search of the whole collection.

        Each item's reference is matched on its own against the frame's features and verified
        as in full recognition, so what is found here is as sure as what recognition finds.
        """
        index = self._collections.get(collection)
        if index is None:
            raise UnknownCollection(collection)
        result = FrameResult(width=image.width, height=image.height)
        searching, verifying = 0.0, 0.0
        for item in items:
            started = time.perf_counter()
            reference = index.reference(item)
            found = match_descriptors(frame.descriptors, reference, self.settings) if reference is not None else None
            matched = time.perf_counter()
            searching += matched - started
            if reference is None or found is None:
                continue
            candidate = Correspondences(item, found[0], found[1], float(len(found[0])), reference)
            self._verify_candidate(index, image, frame, candidate, False, result)
            verifying += time.perf_counter() - matched
        result.matches.sort(key=lambda m: -m.score)
        result.timing = _milliseconds(search=searching, verify=verifying)
        return result


def _milliseconds(**seconds: float) -> dict[str, Any]:
    return {f"{k}_ms": round(v * 1000.0, 2) for k, v in seconds.items()}
