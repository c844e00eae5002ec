"""Tracking between recognitions: follow recognized items from frame to frame with optical flow.

Recognition (features, search, verification) costs tens of milliseconds and its
corners wobble by about a pixel from one frame to the next, because every frame
gets a fresh set of ORB keypoints. Following the points of an item already found
with pyramidal Lucas-Kanade flow costs a few milliseconds, and refitting the
homography from points that stay on the object keeps the outline still when the
camera is still (the approach of OpenCV's samples/python/plane_tracker.py and
lk_homography.py).

A `StreamTracker` holds one camera stream's tracks. It does no I/O and knows
nothing about collections: recognition results come in as `Sighting`s, poses go
out as `Pose`s, all in working-frame pixels (the decoded grayscale frame).

Per frame: `follow(gray, at)` moves every track to the new frame; when
`recognition_needed` (or `recognition_routine`, which the caller may put off a
frame) it runs full recognition on the same frame and hands its sightings to
`confirm(gray, sightings)`; otherwise, for the items in
`to_relocalize` (a track the flow lost or that runs low on points) it may look
for those items alone and hand what it found to `confirm(gray, sightings,
searched=items)`. `poses()` is what to report.

- A step starts with a probe: a few of the track's points are flowed through a
  deep pyramid from where the track's recent motion predicts them (and, if that
  fails, from where they were). Unless enough of them agree on one motion the
  item is taken as not followable in this frame, at a fraction of the cost of
  flowing every point (a scene that changed altogether costs about a
  millisecond per track). The other points then start from the probe's motion,
  so a stream that gets a frame every half second still follows an object that
  moved a hundred pixels.
- Each flow step is checked forward and backward; points that do not come back
  to where they started, or leave the frame, are dropped.
- The homography is refitted (RANSAC) from the surviving points' reference
  positions each frame, so errors do not accumulate point by point.
- A track whose points run low is re-verified by recognition; one that cannot
  be followed in a frame (blur, a hand over it) is not reported in that frame
  but kept for a few frames and followed again from its last good frame, so
  it comes back without a new recognition; then it is dropped.
- Full recognition also runs every `recognize_every` frames, which re-verifies
  every track and picks up items that entered the view.
- Corners are smoothed with a speed-dependent filter: a still object stays
  still to a fraction of a pixel, a moving one is followed without lag.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import cv2
import numpy as np

from matcher.settings import MatcherSettings
from matcher.verification import project, reference_corners

_LK_WINDOW = (21, 21)
_LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
# The probe flows a few points through a deep pyramid (a move of about a hundred pixels at the working size);
# the others start from the probe's motion, so two levels are enough for them and for the way back.
_PROBE_POINTS = 20
_PROBE_LEVELS = 4
# Share of the probe one homography must explain: a hand may cover half of the object, while points flowed
# into a scene that changed move every which way and hardly four of them agree on anything.
_PROBE_AGREEMENT = 0.4
_PROBE_MIN_POINTS = 6
# The probe fits an affine motion, not a homography: RANSAC over an affine model costs a few hundredths of a
# millisecond where a homography's costs milliseconds when there is no consensus (a scene that changed); the
# perspective an affine motion leaves out between two frames is a few pixels, within the probe's tolerance,
# and the full step refits the homography anyway.
_PROBE_TOLERANCE_PX = 6.0
_PROBE_RANSAC_ITERATIONS = 200
_REFINE_LEVELS = 2
# Motion is extrapolated over at most this long a gap: beyond it, where the object was is as good a guess.
_MAX_PREDICTION_SECONDS = 1.0
_MIN_FRAMES_BETWEEN_TIMED_RECOGNITIONS = 4  # the time rule recognizes at most every 4th frame
_SEED_QUALITY = 0.01  # goodFeaturesToTrack: corners at least this fraction of the strongest
_SEED_MARGIN_PX = 4  # seed points this far inside the outline, off its edges
_SMOOTHING_FLOOR = 0.05  # smallest share of a new measurement taken in (still camera)
_MIN_FLOW_AGREEMENT = 0.6  # share of the flowed points the refitted homography must explain
_MAX_SIDE_CHANGE = 1.3  # an outline side grows or shrinks by less than this from one frame to the next
# Share of a confirming recognition taken into the track's pose: averages recognition's own error of a
# pixel or two, yet corrects the flow's slow drift within a couple of recognitions.
_FUSE_WEIGHT = 0.5


@dataclass(frozen=True)
class Sighting:
    """An item found by recognition in the current frame."""

    item: str
    H: np.ndarray
    """(3, 3) float64: reference pixels -> working-frame pixels."""
    width: int
    """Reference width and height in reference pixels."""
    height: int
    score: float
    inliers: int
    coverage: float = 1.0
    """How much of the reference the pose rests on (verification.coverage)."""


@dataclass(frozen=True)
class Pose:
    """Where a tracked item is in the current frame."""

    item: str
    H: np.ndarray
    """(3, 3) float64: reference pixels -> working-frame pixels, smoothed."""
    tracked: bool
    """True when only followed by optical flow in this frame; False when recognition saw it in this frame."""
    score: float
    """Score of the last recognition that saw it."""
    points: int
    """Points that agree with H: flow inliers when tracked, recognition inliers when recognized."""


@dataclass
class Track:
    item: str
    width: int
    height: int
    reference_points: np.ndarray
    """(N, 2) float32: where the tracked points are on the reference, in reference pixels."""
    points: np.ndarray
    """(N, 2) float32: the same points in `anchor`, in working-frame pixels."""
    anchor: np.ndarray
    """(h, w) uint8: the last frame the points were found in."""
    anchor_at: float
    """When `anchor` was received, in seconds (monotonic clock)."""
    H: np.ndarray
    """(3, 3) float64: raw fit, reference -> working pixels in `anchor`."""
    corners: np.ndarray
    """(4, 2) float64: smoothed corners reported."""
    seeded: int
    score: float
    inliers: int
    velocity: np.ndarray | None = None
    """(4, 2) float64: how fast the raw corners moved between the last two frames followed, px/s."""
    lost: int = 0
    """Consecutive frames the track could not be followed."""
    misses: int = 0
    """Consecutive recognitions that did not see the item."""
    weak_misses: int = 0
    """Recognitions in a row that did not see the item while it was weak or lost."""
    disagreements: int = 0
    """Consecutive recognitions that saw the item elsewhere than the flow did."""
    recheck: bool = False
    """Recognize the next frame again: the last recognition disagreed."""
    recognized_now: bool = False
    """Recognition (full, or of this item alone) saw it in the current frame."""


@dataclass
class StreamTracker:
    """One camera stream's tracked items (pure computation; one per stream, in the worker the stream is pinned to)."""

    settings: MatcherSettings
    tracks: dict[str, Track] = field(default_factory=dict)
    frames_since_recognition: int = 0
    recognized_at: float | None = None
    """When full recognition last ran on this stream, in seconds (monotonic clock)."""
    at: float = 0.0
    """When the current frame was received, in seconds (monotonic clock)."""
    deferred: bool = False
    """The routine recognition due on the previous frame was put off (matcher/session.py): it runs on this one."""

    @property
    def recognition_needed(self) -> bool:
        """Recognition cannot wait: nothing is tracked, or the last recognition disagreed with the flow."""
        return not self.tracks or any(t.recheck for t in self.tracks.values())

    @property
    def recognition_routine(self) -> bool:
        """The periodic recognition that re-verifies the tracks and looks for new items is due (it may wait a frame)."""
        s = self.settings
        if self.frames_since_recognition >= s.recognize_every:  # counted by follow(), this frame included
            return True
        # A stream served a few frames a second still picks up new items within a bounded time; but one served
        # a frame every few seconds (a pool far behind) is not recognized on every frame for it, which would
        # make each of its frames dearer exactly when frames are scarce.
        return (
            self.recognized_at is not None
            and self.at - self.recognized_at >= s.recognize_every_seconds
            and self.frames_since_recognition >= _MIN_FRAMES_BETWEEN_TIMED_RECOGNITIONS
        )

    def followed_outlines(self) -> dict[str, np.ndarray]:
        """Outline (4, 2), in working pixels, of each item the flow followed into the current frame."""
        return {
            t.item: project(t.H, reference_corners(t.width, t.height))[0] for t in self.tracks.values() if not self._weak(t)
        }

    @property
    def to_relocalize(self) -> list[str]:
        """Items to look for on their own in the current frame: tracks the flow lost or that run low on points."""
        return [t.item for t in self.tracks.values() if self._weak(t)]

    def follow(self, gray: np.ndarray, at: float) -> None:
        """Move every track to `gray`, a (h, w) uint8 frame at working resolution received at `at` (seconds)."""
        self.at = at
        self.frames_since_recognition += 1
        for track in list(self.tracks.values()):
            track.recognized_now = False
            if not self._step(track, gray):
                track.lost += 1
                if track.lost > self.settings.track_max_lost_frames:
                    del self.tracks[track.item]

    def confirm(self, gray: np.ndarray, sightings: list[Sighting], searched: Collection[str] | None = None) -> None:
        """Take in what recognition found in `gray` (the frame just followed to).

        `searched`: the items recognition looked for when it looked for some items only (the others'
        counts of missed recognitions are left alone, and so is a lost track's: the caller goes on with
        full recognition of the frame, which counts it); None after full recognition.
        """
        if searched is None:
            self.frames_since_recognition = 0
            self.recognized_at = self.at
        seen = set()
        for sighting in sightings:
            if sighting.item in seen:
                continue  # two copies of one item: follow the best one
            seen.add(sighting.item)
            track = self.tracks.get(sighting.item)
            if track is not None and not track.lost and not self._agrees(track, sighting.H):
                # Recognition can be wrong too (a hand over half the object leaves few, bunched
                # matches): a pose resting on a small part of the reference never overrides a
                # track that still follows; another is believed only when the very next frame's
                # recognition says the same.
                if sighting.coverage < self.settings.track_override_min_coverage:
                    track.misses = 0
                    continue
                track.disagreements += 1
                if track.disagreements < 2:
                    track.misses = 0
                    track.recheck = True
                    continue
            if track is not None and not track.lost and self._agrees(track, sighting.H):
                track.disagreements = 0
                track.recheck = False
                # Keep following with the flow's (steadier) geometry, moved halfway to recognition's:
                # each recognition errs by a pixel or two, the flow drifts slowly, and the flow alone would
                # keep the first recognition's error for ever. Then top up points that were lost.
                track.score, track.inliers, track.misses, track.weak_misses = sighting.score, sighting.inliers, 0, 0
                track.recognized_now = True
                self._fuse(track, sighting.H, _FUSE_WEIGHT)
                if len(track.points) < self.settings.track_reseed_fraction * track.seeded:
                    self._reseed(track, gray, track.H)
                continue
            fresh = self._start(gray, sighting)
            if fresh is None:
                self.tracks.pop(sighting.item, None)
                continue
            if track is not None:
                # Same item, corrected pose: smooth the correction too, unless it is a jump.
                fresh.corners = _smooth(track.corners, fresh.corners, self.settings.track_smoothing_px)
            self.tracks[sighting.item] = fresh
        for item, track in list(self.tracks.items()):
            if item in seen or (searched is not None and (item not in searched or track.lost)):
                continue
            # Blur or a hand that stops recognition also weakens the flow: a weak or lost track is
            # given as many frames as a lost one; a healthy track as many recognition periods.
            track.recheck = False
            if self._weak(track):
                track.weak_misses += 1
            else:
                track.misses += 1
            if (
                track.misses >= self.settings.track_max_misses
                or track.weak_misses > self.settings.track_max_lost_frames
            ):
                del self.tracks[item]

    def poses(self) -> list[Pose]:
        """Every item to report for the current frame, best score first."""
        out = []
        for track in self.tracks.values():
            if track.lost:
                # Kept to be picked up again when the blur or the hand goes, but not shown where it no longer is:
                # the scene may have changed altogether.
                continue
            H = cv2.getPerspectiveTransform(
                reference_corners(track.width, track.height), track.corners.astype(np.float32)
            ).astype(np.float64)
            points = track.inliers if track.recognized_now else len(track.points)
            out.append(Pose(track.item, H, not track.recognized_now, track.score, points))
        out.sort(key=lambda p: -p.score)
        return out

    def forget(self, item: str) -> None:
        self.tracks.pop(item, None)

    # -- steps ----------------------------------------------------------------

    def _weak(self, track: Track) -> bool:
        return track.lost > 0 or len(track.points) < self.settings.track_reseed_fraction * track.seeded

    def _start(self, gray: np.ndarray, sighting: Sighting) -> Track | None:
        corners, _ = project(sighting.H, reference_corners(sighting.width, sighting.height))
        track = Track(
            item=sighting.item,
            width=sighting.width,
            height=sighting.height,
            reference_points=np.zeros((0, 2), np.float32),
            points=np.zeros((0, 2), np.float32),
            anchor=gray,
            anchor_at=self.at,
            H=sighting.H,
            corners=corners,
            seeded=0,
            score=sighting.score,
            inliers=sighting.inliers,
            recognized_now=True,
        )
        self._reseed(track, gray, sighting.H)
        return track if len(track.points) >= self.settings.track_min_points else None

    def _reseed(self, track: Track, gray: np.ndarray, H: np.ndarray) -> None:
        """Pick fresh corners inside the item's outline in `gray`; their reference positions come from H."""
        outline, _ = project(H, reference_corners(track.width, track.height))
        h, w = gray.shape
        # Only the outline's bounding box is searched: the mask keeps corners off its edges anyway.
        x0, y0 = np.clip(np.floor(outline.min(axis=0)).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(outline.max(axis=0)).astype(int) + 1, 0, [w, h])
        if x1 - x0 <= 2 * _SEED_MARGIN_PX or y1 - y0 <= 2 * _SEED_MARGIN_PX:
            return
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(inside, np.round(outline - [x0, y0]).astype(np.int32), 255)
        mask = cv2.erode(inside, np.ones((2 * _SEED_MARGIN_PX + 1,) * 2, np.uint8))
        found = cv2.goodFeaturesToTrack(
            gray[y0:y1, x0:x1],
            maxCorners=self.settings.track_points,
            qualityLevel=_SEED_QUALITY,
            minDistance=self.settings.track_point_spacing_px,
            mask=mask,
        )
        if found is None or len(found) < self.settings.track_min_points:
            return
        points = found.reshape(-1, 2).astype(np.float32) + np.array([x0, y0], np.float32)
        reference_points, weights = project(np.linalg.inv(H), points)
        ok = (weights > 0) & np.all(np.isfinite(reference_points), axis=1)
        track.points = points[ok]
        track.reference_points = reference_points[ok].astype(np.float32)
        track.anchor = gray
        track.anchor_at = self.at
        track.H = H
        track.seeded = len(track.points)

    def _predicted_motion(self, track: Track) -> np.ndarray | None:
        """(3, 3) homography from `anchor` to the current frame if the track keeps its speed; None if still."""
        if track.velocity is None:
            return None
        gap = min(self.at - track.anchor_at, _MAX_PREDICTION_SECONDS)
        if gap <= 0:
            return None
        before, _ = project(track.H, reference_corners(track.width, track.height))
        shift = track.velocity * gap
        if float(np.max(np.abs(shift))) < 1.0:
            return None
        return cv2.getPerspectiveTransform(before.astype(np.float32), (before + shift).astype(np.float32)).astype(
            np.float64
        )

    def _probe(self, track: Track, gray: np.ndarray) -> np.ndarray | None:
        """(3, 3) affine motion from `anchor` to `gray` that enough probe points agree on; None if there is none.

        Tried from the predicted motion first, then from no motion (the object stopped or turned).
        """
        n = len(track.points)
        chosen = np.unique(np.linspace(0, n - 1, min(_PROBE_POINTS, n)).round().astype(np.int64))
        probe = track.points[chosen]
        wanted = max(_PROBE_MIN_POINTS, int(np.ceil(_PROBE_AGREEMENT * len(probe))))
        h, w = gray.shape
        guesses = [m for m in (self._predicted_motion(track), np.eye(3)) if m is not None]
        for motion in guesses:
            start, _ = project(motion, probe)
            moved, status, _ = cv2.calcOpticalFlowPyrLK(
                track.anchor,
                gray,
                probe.reshape(-1, 1, 2),
                start.astype(np.float32).reshape(-1, 1, 2),
                winSize=_LK_WINDOW,
                maxLevel=_PROBE_LEVELS,
                criteria=_LK_CRITERIA,
                flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
            )
            if moved is None:
                continue
            moved = moved.reshape(-1, 2)
            ok = (status.ravel() == 1) & np.all((moved >= 0) & (moved < [w, h]), axis=1)
            if int(ok.sum()) < wanted:
                continue
            A, mask = cv2.estimateAffine2D(
                probe[ok],
                moved[ok],
                method=cv2.RANSAC,
                ransacReprojThreshold=_PROBE_TOLERANCE_PX,
                maxIters=_PROBE_RANSAC_ITERATIONS,
                refineIters=0,
            )
            if A is not None and mask is not None and int(mask.sum()) >= wanted:
                return np.vstack([A, [0.0, 0.0, 1.0]]).astype(np.float64)
        return None

    def _step(self, track: Track, gray: np.ndarray) -> bool:
        """Flow the track's points from its anchor to `gray` and refit; False if it cannot be followed."""
        s = self.settings
        if len(track.points) < s.track_min_points or track.anchor.shape != gray.shape:
            return False
        motion = self._probe(track, gray)
        if motion is None:
            return False
        # Every point starts where the probe's motion puts it, and comes back from where the
        # inverse motion puts it: both ways only the residual is left to the (shallow) pyramid.
        p0 = track.points.reshape(-1, 1, 2)
        start, _ = project(motion, track.points)
        p1, status, _ = cv2.calcOpticalFlowPyrLK(
            track.anchor,
            gray,
            p0,
            start.astype(np.float32).reshape(-1, 1, 2),
            winSize=_LK_WINDOW,
            maxLevel=_REFINE_LEVELS,
            criteria=_LK_CRITERIA,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        if p1 is None:
            return False
        p1 = np.asarray(p1).reshape(-1, 2)
        return_start, _ = project(np.linalg.inv(motion), p1)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(
            gray,
            track.anchor,
            p1.reshape(-1, 1, 2),
            return_start.astype(np.float32).reshape(-1, 1, 2),
            winSize=_LK_WINDOW,
            maxLevel=_REFINE_LEVELS,
            criteria=_LK_CRITERIA,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        if back is None:
            return False
        h, w = gray.shape
        good = (
            (status.ravel() == 1)
            & (status_back.ravel() == 1)
            & (np.linalg.norm(back.reshape(-1, 2) - track.points, axis=1) < s.track_flow_check_px)
            & (p1[:, 0] >= 0)
            & (p1[:, 1] >= 0)
            & (p1[:, 0] < w)
            & (p1[:, 1] < h)
        )
        if int(good.sum()) < s.track_min_points:
            return False
        H, mask = cv2.findHomography(track.reference_points[good], p1[good], cv2.RANSAC, s.track_ransac_px)
        if H is None or mask is None:
            return False
        inliers = np.flatnonzero(good)[mask.ravel().astype(bool)]
        if len(inliers) < s.track_min_points or len(inliers) < _MIN_FLOW_AGREEMENT * int(good.sum()):
            return False
        corners, depth = project(H, reference_corners(track.width, track.height))
        previous, _ = project(track.H, reference_corners(track.width, track.height))
        if not _plausible(corners, depth, w, h) or not _similar_shape(previous, corners):
            # Blur or a hand over the object can drag the points into a consistent but wrong motion.
            return False
        gap = self.at - track.anchor_at
        track.velocity = (corners - previous) / gap if gap > 0 else None
        track.points = p1[inliers].astype(np.float32)
        track.reference_points = track.reference_points[inliers]
        track.anchor = gray
        track.anchor_at = self.at
        track.H = H
        track.corners = _smooth(track.corners, corners, s.track_smoothing_px)
        track.lost = 0
        return True

    def _fuse(self, track: Track, H: np.ndarray, weight: float) -> None:
        """Move the track's pose `weight` of the way to H, keeping its points where they are in the frame."""
        corners = reference_corners(track.width, track.height)
        followed, _ = project(track.H, corners)
        found, _ = project(H, corners)
        fused = followed + weight * (found - followed)
        track.H = cv2.getPerspectiveTransform(corners, fused.astype(np.float32)).astype(np.float64)
        reference_points, _ = project(np.linalg.inv(track.H), track.points)
        track.reference_points = reference_points.astype(np.float32)
        track.corners = _smooth(track.corners, fused, self.settings.track_smoothing_px)

    def _agrees(self, track: Track, H: np.ndarray) -> bool:
        """Whether recognition's pose and the flow's are the same object within tolerance."""
        found, _ = project(H, reference_corners(track.width, track.height))
        followed, _ = project(track.H, reference_corners(track.width, track.height))
        return float(np.max(np.linalg.norm(found - followed, axis=1))) <= self.settings.track_agreement_px


def _plausible(corners: np.ndarray, depth: np.ndarray, frame_w: int, frame_h: int) -> bool:
    """A convex, unmirrored outline in front of the camera and not absurdly large."""
    if not np.all(depth > 1e-6) or not np.all(np.isfinite(corners)):
        return False
    edges = np.roll(corners, -1, axis=0) - corners
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not np.all(cross > 0):
        return False
    x, y = corners[:, 0], corners[:, 1]
    area = 0.5 * abs(float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)))
    return 16.0 < area < 50.0 * frame_w * frame_h


def _similar_shape(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether an outline (4, 2) kept its side lengths within what one frame of camera motion changes."""
    sides_before = np.linalg.norm(np.roll(before, -1, axis=0) - before, axis=1)
    sides_after = np.linalg.norm(np.roll(after, -1, axis=0) - after, axis=1)
    ratio = sides_after / np.maximum(sides_before, 1e-6)
    return bool(np.all(ratio > 1.0 / _MAX_SIDE_CHANGE) and np.all(ratio < _MAX_SIDE_CHANGE))


def _smooth(previous: np.ndarray, measured: np.ndarray, scale_px: float) -> np.ndarray:
    """Corners (4, 2) moved towards a measurement by a share that grows with the move (no lag on motion).

    A share of move/scale_px keeps the steady lag below scale_px/4 at any speed while
    damping sub-pixel noise on a still camera.
    """
    move = float(np.max(np.linalg.norm(measured - previous, axis=1)))
    share = min(1.0, max(_SMOOTHING_FLOOR, move / scale_px)) if scale_px > 0 else 1.0
    return previous + share * (measured - previous)
