"""Domain objects passed between the engine's steps (no OpenCV here: the server uses them too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DESCRIPTOR_BYTES = 32


@dataclass(frozen=True)
class Features:
    points: np.ndarray
    """(N, 2) float32 keypoint positions, in pixels of the image they describe."""
    descriptors: np.ndarray
    """(N, 32) uint8 ORB descriptors, row i describing points[i]."""
    width: int
    height: int
    angles: np.ndarray | None = None
    """(N,) uint8 keypoint orientations in 256ths of a turn; None where unknown (references stored
    before orientations were kept), and then matches are not checked for a consistent rotation."""
    patch: bytes | None = None
    """A reference's own pixels, small (matcher/alignment.py: grayscale JPEG, about 2 KB), that a
    verified pose is aligned on; None for frames, and for references stored before patches were kept."""

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def subset(self, keep: np.ndarray) -> Features:
        """The keypoints selected by a boolean mask or index array."""
        angles = None if self.angles is None else self.angles[keep]
        return Features(self.points[keep], self.descriptors[keep], self.width, self.height, angles, self.patch)

    @staticmethod
    def empty(width: int, height: int) -> Features:
        return Features(
            np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8), width, height, np.zeros(0, np.uint8)
        )


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
    reference: Reference | None = None
    """The candidate reference itself, when the index already had to read it back."""
    fallback: bool = False
    """Shortlisted on a few agreeing votes only: worth verifying when no other candidate is found."""


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
    tracked: bool = False
    """True when the item was followed by optical flow from an earlier frame, not recognized in this one."""
    inlier_points: list[list[float]] | None = None
    """Frame positions of the inliers, in full-frame pixels; only when asked for (it is bulky)."""
    coverage: float = 1.0
    """0-1: how much of the reference the pose rests on (verification.coverage); not sent to clients."""

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "item": self.item,
            "name": self.name,
            "metadata": self.metadata,
            "corners": self.corners,
            "homography": self.homography,
            "score": self.score,
            "inliers": self.inliers,
            "tracked": self.tracked,
        }
        if self.inlier_points is not None:
            wire["inlier_points"] = self.inlier_points
        return wire


@dataclass
class FrameResult:
    """What the engine found in one frame, with where its time went (ms)."""

    width: int
    height: int
    matches: list[Match] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
