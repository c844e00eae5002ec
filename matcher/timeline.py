"""Where each item appears in a video: sampled hits merged into time ranges. Pure, no I/O.

A scan looks at one frame every `1 / sample_rate` seconds: sample k is the frame
shown at t_k = k / sample_rate. Each sample stands for the interval until the
next one, [t_k, t_k + 1/sample_rate). An item's appearance is the union of the
intervals of the samples it was seen in, where samples seen in a row are merged
and a run of at most `max_gap` samples that missed it is bridged (a blurred or
occluded frame does not split an appearance). So with 2 samples per second an
item seen at 1.0, 1.5, 2.5 s (missing at 2.0) with max_gap 1 appears from 1.0 to
3.0 s; with max_gap 0 it appears from 1.0 to 2.0 and from 2.5 to 3.0 s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One item seen in one sample."""

    sample: int
    item: str
    name: str
    score: float


@dataclass
class Appearance:
    """One time range in which an item was seen, in seconds from the start of the video."""

    start: float
    end: float
    peak_score: float
    peak_time: float
    samples: int
    """Samples that saw the item inside the range (bridged misses do not count)."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "peak_score": round(self.peak_score, 3),
            "peak_time": round(self.peak_time, 3),
            "samples": self.samples,
        }


@dataclass
class ItemTimeline:
    item: str
    name: str
    appearances: list[Appearance] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(a.end - a.start for a in self.appearances)

    @property
    def peak_score(self) -> float:
        return max((a.peak_score for a in self.appearances), default=0.0)

    def to_wire(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "name": self.name,
            "seconds": round(self.seconds, 3),
            "peak_score": round(self.peak_score, 3),
            "appearances": [a.to_wire() for a in self.appearances],
        }


def merge_hits(hits: Iterable[Hit], sample_rate: float, max_gap: int, duration: float | None = None) -> list[ItemTimeline]:
    """Time ranges per item from sampled hits; items ordered by first appearance.

    `duration` (seconds), when known, caps the end of the last sample's interval.
    """
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    interval = 1.0 / sample_rate
    by_item: dict[str, list[Hit]] = {}
    names: dict[str, str] = {}
    for hit in hits:
        by_item.setdefault(hit.item, []).append(hit)
        names[hit.item] = hit.name
    timelines = []
    for item, item_hits in by_item.items():
        # One hit per sample (the best) in sample order.
        best: dict[int, Hit] = {}
        for hit in item_hits:
            if hit.sample not in best or hit.score > best[hit.sample].score:
                best[hit.sample] = hit
        ordered = [best[k] for k in sorted(best)]
        timeline = ItemTimeline(item, names[item])
        run: list[Hit] = []
        for hit in ordered:
            if run and hit.sample - run[-1].sample - 1 > max_gap:
                timeline.appearances.append(_appearance(run, interval, duration))
                run = []
            run.append(hit)
        if run:
            timeline.appearances.append(_appearance(run, interval, duration))
        timelines.append(timeline)
    timelines.sort(key=lambda t: (t.appearances[0].start, t.name, t.item))
    return timelines


def _appearance(run: list[Hit], interval: float, duration: float | None) -> Appearance:
    peak = max(run, key=lambda h: (h.score, -h.sample))
    end = (run[-1].sample + 1) * interval
    if duration is not None and duration > 0:
        end = min(end, max(duration, run[-1].sample * interval))
    return Appearance(
        start=run[0].sample * interval,
        end=end,
        peak_score=peak.score,
        peak_time=peak.sample * interval,
        samples=len(run),
    )
