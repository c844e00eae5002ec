"""Domain objects passed between the engine's steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matcher.features import Features


@dataclass(frozen=True)
class Reference:
    """One item of a collection, as the engine needs it."""

    item: str
    name: str
    metadata: dict[str, Any]
    features: Features
    """Keypoints in full-reference pixels; features.width/height is the reference size."""


@dataclass(frozen=True)
class Correspondences:
    """Tentative matches between a frame and one reference."""

    item: str
    frame_indices: np.ndarray
    """(M,) int indices into the frame's keypoints."""
    reference_indices: np.ndarray
    """(M,) int indices into the reference's keypoints."""
    votes: float
    """Shortlist score: more and more distinctive matches score higher."""


@dataclass(frozen=True)
class Match:
    """A reference verified in a frame."""

    item: str
    name: str
    metadata: dict[str, Any]
    corners: list[list[float]]
    """Reference TL, TR, BR, BL mapped into frame pixels."""
    homography: list[float]
    """9 floats, row-major, reference pixels -> frame pixels."""
    score: float
    inliers: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "name": self.name,
            "metadata": self.metadata,
            "corners": self.corners,
            "homography": self.homography,
            "score": self.score,
            "inliers": self.inliers,
        }


@dataclass
class FrameResult:
    """What the engine found in one frame, with where its time went (ms)."""

    width: int
    height: int
    matches: list[Match] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
