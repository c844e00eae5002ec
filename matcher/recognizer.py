"""The engine: a frame's bytes in, the references it shows out.

decode -> features -> index shortlist -> geometric verification -> result.
No I/O here: the worker feeds references in and frames through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from matcher.decode import DecodedImage, decode_image
from matcher.features import describe_frame, describe_reference, reference_quality
from matcher.index import DescriptorIndex, InvertedFileIndex
from matcher.model import Features, FrameResult, Reference
from matcher.settings import MatcherSettings
from matcher.verification import inlier_points, to_match, verify


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
    features = describe_reference(image.gray, image.width, image.height, settings)
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
        self, collection: str, image: DecodedImage, started: float | None = None, with_inliers: bool = False
    ) -> FrameResult:
        """Find every reference of `collection` in an already decoded frame (a video frame, say)."""
        index = self._collections.get(collection)
        if index is None:
            raise UnknownCollection(collection)
        decoded = time.perf_counter()
        started = decoded if started is None else started
        frame = describe_frame(image.gray, self.settings)
        described = time.perf_counter()
        shortlist = index.shortlist(frame.descriptors, self.settings)
        searched = time.perf_counter()
        result = FrameResult(width=image.width, height=image.height)
        for candidate in shortlist:
            reference = candidate.reference or index.reference(candidate.item)
            if reference is None:
                continue
            verified = verify(frame, reference, candidate, self.settings)
            if verified is not None:
                H, inliers, score = verified
                points = inlier_points(frame, reference, candidate, H, self.settings) if with_inliers else None
                result.matches.append(to_match(reference, H, image.scale, inliers, score, points))
        verified_at = time.perf_counter()
        result.matches.sort(key=lambda m: -m.score)
        result.timing = _milliseconds(
            decode=decoded - started,
            features=described - decoded,
            search=searched - described,
            verify=verified_at - searched,
            match=verified_at - started,
        )
        return result


def _milliseconds(**seconds: float) -> dict[str, Any]:
    return {f"{k}_ms": round(v * 1000.0, 2) for k, v in seconds.items()}
