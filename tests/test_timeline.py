"""Sampled hits become time ranges per item: runs merge, short gaps are bridged, each sample covers its interval."""

from __future__ import annotations

import pytest

from matcher.timeline import Hit, merge_hits


def hits(item: str, samples: list[int], score: float = 0.5) -> list[Hit]:
    return [Hit(k, item, item.title(), score) for k in samples]


def ranges(timelines, item: str) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    timeline = next(t for t in timelines if t.item == item)
    return [(a.start, a.end) for a in timeline.appearances]


def test_consecutive_samples_merge_and_each_covers_its_interval() -> None:
    found = merge_hits(hits("a", [2, 3, 4, 5]), sample_rate=2, max_gap=1)
    assert ranges(found, "a") == [(1.0, 3.0)]
    assert found[0].appearances[0].samples == 4


@pytest.mark.parametrize(
    "max_gap, expected",
    [(0, [(1.0, 2.0), (2.5, 3.0)]), (1, [(1.0, 3.0)]), (2, [(1.0, 3.0)])],
)
def test_a_gap_of_at_most_max_gap_missed_samples_is_bridged(max_gap: int, expected: list[tuple[float, float]]) -> None:
    assert ranges(merge_hits(hits("a", [2, 3, 5]), 2, max_gap), "a") == expected


def test_two_missed_samples_split_an_appearance_with_the_default_gap() -> None:
    assert ranges(merge_hits(hits("a", [0, 1, 4]), 1, 1), "a") == [(0.0, 2.0), (4.0, 5.0)]


def test_peak_is_the_best_score_and_duplicates_in_a_sample_count_once() -> None:
    found = merge_hits([Hit(1, "a", "A", 0.3), Hit(2, "a", "A", 0.9), Hit(2, "a", "A", 0.4), Hit(3, "a", "A", 0.5)], 4, 1)
    appearance = found[0].appearances[0]
    assert (appearance.peak_score, appearance.peak_time, appearance.samples) == (0.9, 0.5, 3)


def test_the_last_interval_stops_at_the_end_of_the_video_and_items_come_in_order_of_appearance() -> None:
    found = merge_hits(hits("late", [9]) + hits("early", [0]), sample_rate=1, max_gap=1, duration=9.4)
    assert [t.item for t in found] == ["early", "late"]
    assert ranges(found, "late") == [(9.0, 9.4)]
    assert merge_hits([], 2, 1) == []
