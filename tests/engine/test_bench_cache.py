"""The benchmark's cache of described references: what a long run (`python -m bench --with-100k`)
describes once must be read back the same, including the chunks past the baseline's candidates,
which hold no baseline descriptors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import dataset
from matcher.settings import MatcherSettings


def _quiet(_: str) -> None:
    pass


def test_references_described_without_the_baseline_are_cached_and_read_back(tmp_path: Path, settings: MatcherSettings) -> None:
    specs = dataset.real_specs()[:3]
    chunk = tmp_path / "generated-050"

    described = dataset._described(chunk, specs, settings, False, 1, _quiet)
    read_back = dataset._described(chunk, specs, settings, False, 1, _quiet)

    assert chunk.with_suffix(".json").exists()
    assert [r.spec for r in read_back] == specs
    for first, again in zip(described, read_back, strict=True):
        assert (first.features is None) == (again.features is None)
        assert again.baseline is None and again.baseline_points is None
        if first.features is not None:
            np.testing.assert_array_equal(again.features.descriptors, first.features.descriptors)
            np.testing.assert_array_equal(again.features.points, first.features.points)
            assert again.features.patch == first.features.patch
    assert any(r.features is not None for r in read_back)
