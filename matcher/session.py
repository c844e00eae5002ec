"""A camera stream's frames in one worker: follow the items already found, recognize when due.

The server pins each stream to one worker (server/scheduler.py), so a stream's
tracking state (matcher/tracking.py) lives here, keyed by the server's stream
id. The server says when a stream closes; beyond `max_tracked_streams` the
least recently used state is forgotten as well, so memory stays bounded even if
that message is lost. Losing the state only costs a full recognition.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from matcher.decode import decode_image
from matcher.features import describe_frame
from matcher.model import Features, FrameResult, Match
from matcher.recognizer import Recognizer, UnknownCollection
from matcher.tracking import Sighting, StreamTracker
from matcher.verification import to_match


class StreamSessions:
    """Tracking state of the streams pinned to this worker."""

    def __init__(self, recognizer: Recognizer) -> None:
        self.recognizer = recognizer
        self._trackers: OrderedDict[tuple[int, str], StreamTracker] = OrderedDict()
        self._recognized_last: int | None = None
        """The stream whose frame this worker just ran full recognition on, if the last frame was one."""

    def __len__(self) -> int:
        return len(self._trackers)

    def forget(self, stream: int) -> None:
        """Drop a closed stream's state."""
        for key in [k for k in self._trackers if k[0] == stream]:
            del self._trackers[key]

    def _tracker(self, stream: int, collection: str) -> StreamTracker:
        key = (stream, collection)
        tracker = self._trackers.get(key)
        if tracker is None:
            tracker = self._trackers[key] = StreamTracker(self.recognizer.settings)
            while len(self._trackers) > self.recognizer.settings.max_tracked_streams:
                self._trackers.popitem(last=False)
        else:
            self._trackers.move_to_end(key)
        return tracker

    def process(self, stream: int, collection: str, data: bytes, at: float | None = None) -> FrameResult:
        """One frame of a stream, received at `at` (monotonic seconds; now if None): tracked and/or recognized items.

        Timing (ms): `features_ms`, `search_ms`, `verify_ms` are what recognition cost on this frame, whether
        it searched the whole collection or only looked again for items the flow lost; `tracking_ms` is
        following the tracks and taking in what recognition found.
        """
        recognizer = self.recognizer
        settings = recognizer.settings
        if not recognizer.has(collection):
            raise UnknownCollection(collection)
        started = time.perf_counter()
        image = decode_image(data, settings.frame_max_side, settings.max_image_pixels)
        decoded = time.perf_counter()
        tracker = self._tracker(stream, collection)
        tracker.follow(image.gray, time.monotonic() if at is None else at)
        tracking = time.perf_counter() - decoded
        timing = {"features_ms": 0.0, "search_ms": 0.0, "verify_ms": 0.0}
        recognized: list[Match] = []
        frame: Features | None = None
        # A routine recognition right after another stream's full recognition waits one frame: the streams
        # pinned here queue behind each frame, and two recognitions in a row double their wait. Staggered,
        # a stream is still recognized every `recognize_every` frames, a frame later at most.
        routine = tracker.recognition_routine
        due = tracker.recognition_needed or (routine and (self._recognized_last in (None, stream) or tracker.deferred))
        tracker.deferred = routine and not due
        full = False
        lost = tracker.to_relocalize if not due else []
        if lost:
            # Items the flow lost (a fast move between far-apart frames, blur) or that run low on points are
            # looked for on their own: the frame's features against their references, no collection search.
            described = time.perf_counter()
            frame = describe_frame(image.gray, settings)
            timing["features_ms"] += _ms(time.perf_counter() - described)
            found = recognizer.find_items(collection, image, frame, lost)
            _add_steps(timing, found.timing)
            recognized = found.matches
            confirming = time.perf_counter()
            tracker.confirm(image.gray, self._sightings(collection, image.scale, found.matches), searched=lost)
            tracking += time.perf_counter() - confirming
        if due or any(tracker.tracks[item].lost for item in lost if item in tracker.tracks):
            # Still lost: the scene may have changed altogether, so search the whole collection (with the
            # features already taken, if any) for whatever is there now.
            if frame is None:
                described = time.perf_counter()
                frame = describe_frame(image.gray, settings)
                timing["features_ms"] += _ms(time.perf_counter() - described)
            followed = tracker.followed_outlines() if not tracker.recognition_needed else {}
            if followed:
                # The items the flow still follows are re-verified on their own, and only the rest of the
                # frame is searched for new or lost ones (the search costs as many descriptors as it is
                # given, and those on a followed item would only find that item again).
                again = recognizer.find_items(collection, image, frame, followed)
                _add_steps(timing, again.timing)
                found = recognizer.recognize_image(collection, image, frame=_outside(frame, followed.values()))
                found.matches = again.matches + [m for m in found.matches if m.item not in followed]
            else:
                found = recognizer.recognize_image(collection, image, frame=frame)
            full = True
            _add_steps(timing, found.timing)
            recognized = found.matches
            confirming = time.perf_counter()
            tracker.confirm(image.gray, self._sightings(collection, image.scale, found.matches))
            tracking += time.perf_counter() - confirming
        self._recognized_last = stream if full else None
        reporting = time.perf_counter()
        result = FrameResult(width=image.width, height=image.height)
        index = recognizer.collection(collection)
        for pose in tracker.poses():
            reference = index.reference(pose.item)
            if reference is None:  # deleted meanwhile
                tracker.forget(pose.item)
                continue
            match = to_match(reference, pose.H, image.scale, pose.points, pose.score)
            result.matches.append(dataclasses.replace(match, tracked=pose.tracked))
        # Items recognized but too plain to follow are still reported.
        reported = {m.item for m in result.matches}
        result.matches.extend(m for m in recognized if m.item not in reported)
        result.matches.sort(key=lambda m: -m.score)
        done = time.perf_counter()
        tracking += done - reporting
        result.timing = {
            "decode_ms": round((decoded - started) * 1000.0, 2),
            **{k: round(v, 2) for k, v in timing.items()},
            "tracking_ms": round(tracking * 1000.0, 2),
            "match_ms": round((done - started) * 1000.0, 2),
        }
        return result

    def _sightings(self, collection: str, scale: float, matches: list[Match]) -> list[Sighting]:
        """Recognition's matches as the tracker takes them: homographies in working-frame pixels."""
        index = self.recognizer.collection(collection)
        working = np.diag([scale, scale, 1.0])
        sightings = []
        for match in matches:
            reference = index.reference(match.item)
            if reference is None:
                continue
            H = working @ np.asarray(match.homography, np.float64).reshape(3, 3)
            sightings.append(
                Sighting(
                    match.item,
                    H / H[2, 2],
                    reference.features.width,
                    reference.features.height,
                    match.score,
                    match.inliers,
                    match.coverage,
                )
            )
        return sightings


def _outside(frame: Features, outlines: Iterable[np.ndarray]) -> Features:
    """The frame's features that lie outside every (convex, 4-corner) outline."""
    keep = np.ones(len(frame), bool)
    for quad in outlines:
        edges = np.roll(quad, -1, axis=0) - quad
        # Inside a convex polygon: the same side of every edge.
        offsets = frame.points[:, None, :] - quad[None, :, :]
        cross = edges[None, :, 0] * offsets[:, :, 1] - edges[None, :, 1] * offsets[:, :, 0]
        keep &= ~(np.all(cross > 0, axis=1) | np.all(cross < 0, axis=1))
    return frame.subset(keep)


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _add_steps(timing: dict[str, float], steps: dict[str, float]) -> None:
    for key in timing:
        timing[key] += float(steps.get(key, 0.0))
