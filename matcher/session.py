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

import numpy as np

from matcher.decode import decode_image
from matcher.model import FrameResult
from matcher.recognizer import Recognizer, UnknownCollection
from matcher.tracking import Sighting, StreamTracker
from matcher.verification import to_match


class StreamSessions:
    """Tracking state of the streams pinned to this worker."""

    def __init__(self, recognizer: Recognizer) -> None:
        self.recognizer = recognizer
        self._trackers: OrderedDict[tuple[int, str], StreamTracker] = OrderedDict()

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

    def process(self, stream: int, collection: str, data: bytes) -> FrameResult:
        """One frame of a stream: tracked and/or recognized items, with where the time went (ms)."""
        recognizer = self.recognizer
        settings = recognizer.settings
        if not recognizer.has(collection):
            raise UnknownCollection(collection)
        started = time.perf_counter()
        image = decode_image(data, settings.frame_max_side, settings.max_image_pixels)
        decoded = time.perf_counter()
        tracker = self._tracker(stream, collection)
        tracker.follow(image.gray)
        tracking = time.perf_counter() - decoded
        timing = {"features_ms": 0.0, "search_ms": 0.0, "verify_ms": 0.0}
        recognized: list = []
        if tracker.recognition_due:
            found = recognizer.recognize_image(collection, image)
            timing.update({k: found.timing[k] for k in timing})
            recognized = found.matches
            confirming = time.perf_counter()
            scale = np.diag([image.scale, image.scale, 1.0])
            sightings = []
            for match in recognized:
                reference = recognizer.collection(collection).reference(match.item)
                if reference is None:
                    continue
                H = scale @ np.asarray(match.homography, np.float64).reshape(3, 3)
                sightings.append(
                    Sighting(
                        match.item, H / H[2, 2], reference.features.width, reference.features.height,
                        match.score, match.inliers,
                    )
                )
            tracker.confirm(image.gray, sightings)
            tracking += time.perf_counter() - confirming
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
            **timing,
            "tracking_ms": round(tracking * 1000.0, 2),
            "match_ms": round((done - started) * 1000.0, 2),
        }
        return result
