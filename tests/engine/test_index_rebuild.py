"""Retraining the index happens in the background and loses no change made meanwhile."""

from __future__ import annotations

import numpy as np

from matcher.index import InvertedFileIndex
from matcher.model import Features, Reference
from matcher.settings import MatcherSettings


def random_reference(item: str, rng: np.random.Generator, n: int = 500) -> Reference:
    points = rng.uniform(0, 600, (n, 2)).astype(np.float32)
    descriptors = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    return Reference(item, item, {}, Features(points, descriptors, 600, 600))


def test_changes_during_a_background_rebuild_reach_the_new_index() -> None:
    rng = np.random.default_rng(0)
    index = InvertedFileIndex()
    references = {f"r{i}": random_reference(f"r{i}", rng) for i in range(12)}
    # Holding the index's lock keeps the rebuild from taking over until these changes are made.
    with index._lock:
        for reference in list(references.values())[:8]:  # the 8th crosses the exact-search limit
            index.add(reference)
        assert index._journal is not None, "crossing the limit starts a background rebuild"
        for reference in list(references.values())[8:]:
            index.add(reference)  # made while the rebuild runs
        index.remove("r0")
    index.wait_for_rebuild()
    assert index._journal is None and index._trained_for > 0
    assert len(index) == 11 and index.reference("r0") is None
    settings = MatcherSettings()
    for name in ("r3", "r11"):
        # A reference's own descriptors shortlist it first, before and after the swap alike.
        best = index.shortlist(references[name].features.descriptors, settings)[0]
        assert best.item == name


def test_a_rebuild_that_fell_far_behind_takes_over_then_retrains_again_in_the_background() -> None:
    """Changes that outgrew the partition being trained do not retrain it while holding the lock:
    the new index takes over as trained, and the next rebuild follows in the background."""
    rng = np.random.default_rng(1)
    index = InvertedFileIndex()
    references = [random_reference(f"r{i}", rng) for i in range(60)]
    with index._lock:
        for reference in references:  # the 8th starts a rebuild of 8 references; 52 more arrive meanwhile
            index.add(reference)
        snapshot_size = 8 * 500
        assert index._journal is not None and len(index._journal) == 52
    index.wait_for_rebuild()
    assert index._trained_for > 4 * snapshot_size, "the index that took over, outgrown, was retrained after"
    assert len(index) == 60
    settings = MatcherSettings()
    for reference in (references[0], references[59]):
        assert index.shortlist(reference.features.descriptors, settings)[0].item == reference.item
