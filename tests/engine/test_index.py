"""The descriptor index keeps what it is given through adds, removals and rebuilds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from matcher.index import DescriptorIndex, InvertedFileIndex
from matcher.model import Features, Reference
from matcher.settings import MatcherSettings
from matcher.verification import same_layout

IMPLEMENTATIONS = [InvertedFileIndex]


def _reference(item: str, rng: np.random.Generator, n: int = 300) -> Reference:
    points = rng.uniform(0, 400, (n, 2)).astype(np.float32)
    descriptors = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    return Reference(item, item.upper(), {"n": n}, Features(points, descriptors, 400, 300))


def _same(a: Reference | None, b: Reference) -> bool:
    return (
        a is not None
        and a.item == b.item
        and a.name == b.name
        and a.metadata == b.metadata
        # Positions are kept in 16-bit steps of the longer side over 65,535: within half a step.
        and bool(np.all(np.abs(a.features.points - b.features.points) <= 0.5 * max(b.features.width, b.features.height) / 65_535 + 1e-4))
        and np.array_equal(a.features.descriptors, b.features.descriptors)
    )


@pytest.mark.parametrize("make_index", IMPLEMENTATIONS)
def test_references_read_back_unchanged_after_adds_removals_and_rebuilds(make_index: type[DescriptorIndex]) -> None:
    rng = np.random.default_rng(3)
    refs = {f"r{i:03d}": _reference(f"r{i:03d}", rng) for i in range(60)}  # 18,000 descriptors: inverted file
    index = make_index()
    if isinstance(index, InvertedFileIndex):
        index.bulk_load(list(refs.values())[:30])
        for ref in list(refs.values())[30:]:
            index.add(ref)
    else:
        for ref in refs.values():
            index.add(ref)
    for item in refs:  # read once before the changes: what the index kept of them must not outlive them
        assert _same(index.reference(item), refs[item]), item
    for i in [i for i in range(60) if i % 3]:  # removals past half of the rows trigger a compaction
        index.remove(f"r{i:03d}")
        del refs[f"r{i:03d}"]
    replaced = _reference("r001", rng, 200)
    index.add(replaced)
    refs["r001"] = replaced
    assert len(index) == len(refs)
    assert index.reference("r002") is None
    for item, ref in refs.items():
        assert _same(index.reference(item), ref), item


@pytest.mark.parametrize("make_index", IMPLEMENTATIONS)
def test_a_reference_is_shortlisted_from_its_own_descriptors_only_while_present(make_index: type[DescriptorIndex]) -> None:
    rng = np.random.default_rng(4)
    refs = [_reference(f"r{i:03d}", rng) for i in range(30)]
    index = make_index()
    for ref in refs:
        index.add(ref)
    settings = MatcherSettings()
    query = refs[7].features.descriptors[:100]
    assert [c.item for c in index.shortlist(query, settings)][:1] == ["r007"]
    index.remove("r007")
    assert "r007" not in [c.item for c in index.shortlist(query, settings)]


@pytest.mark.parametrize("make_index", IMPLEMENTATIONS)
@pytest.mark.parametrize("others", [0, 40], ids=["exact", "inverted-file"])
def test_a_reference_put_again_is_still_found_by_all_its_descriptors(make_index: type[DescriptorIndex], others: int) -> None:
    rng = np.random.default_rng(5)
    index = make_index()
    for i in range(others):
        index.add(_reference(f"o{i:03d}", rng))
    ref = _reference("again", rng)
    for _ in range(4):  # a worker replaying the change log puts the same reference several times
        index.add(ref)
    found = {c.item: len(c.frame_indices) for c in index.shortlist(ref.features.descriptors, MatcherSettings())}
    assert found.get("again", 0) >= 0.9 * len(ref.features)


def test_only_the_searched_keypoints_vote_in_the_index() -> None:
    rng = np.random.default_rng(6)
    first, second = _reference("first", rng), _reference("second", rng)
    index = InvertedFileIndex()
    index.bulk_load([first, second, *(_reference(f"o{i:03d}", rng) for i in range(40))])
    # A frame whose first 60 keypoints show `first`, the next 200 `second`.
    frame = np.concatenate([first.features.descriptors[:60], second.features.descriptors[:200]])
    settings = dataclasses.replace(MatcherSettings(), searched_features=60)
    found = [c.item for c in index.shortlist(frame, settings)]
    assert found == ["first"]  # `second` holds most of the frame, but none of its searched part
    everything = {c.item for c in index.shortlist(frame, dataclasses.replace(settings, searched_features=260))}
    assert {"first", "second"} <= everything


def test_every_keypoint_is_matched_against_a_reference_the_searched_ones_shortlist() -> None:
    rng = np.random.default_rng(7)
    ref = _reference("it", rng)
    index = InvertedFileIndex()
    index.bulk_load([ref, *(_reference(f"o{i:03d}", rng) for i in range(40))])
    settings = dataclasses.replace(MatcherSettings(), searched_features=50)
    found = {c.item: c.frame_indices for c in index.shortlist(ref.features.descriptors, settings)}
    assert len(found["it"]) >= 0.9 * len(ref.features)  # not only the 50 searched


def test_a_collection_past_a_thousand_cells_still_finds_and_forgets_each_reference() -> None:
    # 30,000 descriptors make over a thousand inverted lists, whose centres are then searched
    # through an index of their own: a descriptor must still reach its reference's cells.
    rng = np.random.default_rng(6)
    refs = [_reference(f"r{i:03d}", rng) for i in range(100)]
    index = InvertedFileIndex()
    index.bulk_load(refs)
    assert index._index.nlist >= 1_024
    settings = MatcherSettings()
    for ref in refs[::15]:
        noisy = ref.features.descriptors[:150].copy()
        noisy[:, 0] ^= 0b101  # two bits off, as a camera's view of the same corner would be
        assert [c.item for c in index.shortlist(noisy, settings)][:1] == [ref.item]
    index.remove("r050")
    assert "r050" not in [c.item for c in index.shortlist(refs[50].features.descriptors, settings)]
    index.add(refs[50])
    assert _same(index.reference("r050"), refs[50])
    assert [c.item for c in index.shortlist(refs[50].features.descriptors, settings)][:1] == ["r050"]


def test_workers_loading_the_same_references_in_any_order_build_the_same_partition() -> None:
    # A worker restarting on another machine loads the collection from the store in whatever
    # order it comes and must search it exactly as every other worker does.
    rng = np.random.default_rng(7)
    refs = [_reference(f"r{i:03d}", rng) for i in range(100)]
    first, second = InvertedFileIndex(), InvertedFileIndex()
    first.bulk_load(refs)
    second.bulk_load(refs[::-1])
    assert first._index.nlist == second._index.nlist >= 1_024
    sizes = [[index._index.invlists.list_size(i) for i in range(index._index.nlist)] for index in (first, second)]
    assert sizes[0] == sizes[1]
    query = np.ascontiguousarray(np.concatenate([ref.features.descriptors[:20] for ref in refs[::10]]))
    found = [index._index.search(query, 4) for index in (first, second)]
    assert np.array_equal(found[0][0], found[1][0]) and np.array_equal(found[0][1], found[1][1])


def test_an_item_nearest_to_a_few_descriptors_that_turn_alike_is_a_fallback_candidate() -> None:
    """Too few votes to be shortlisted, but all turning by one angle: worth verifying if nothing else is found."""
    rng = np.random.default_rng(11)
    refs = []
    for i in range(60):
        ref = _reference(f"r{i:03d}", rng)
        angles = rng.integers(0, 256, len(ref.features), dtype=np.uint8)
        refs.append(Reference(ref.item, ref.name, ref.metadata, dataclasses.replace(ref.features, angles=angles)))
    index = InvertedFileIndex()
    index.bulk_load(refs)
    settings = MatcherSettings(fallback_candidates=2)
    seen = refs[7].features
    picked = rng.choice(len(seen), settings.min_agreeing_votes + 1, replace=False)  # fewer than the shortlist's 7 votes
    # The rest of the frame is far from everything (random 256-bit strings differ in about 128 bits).
    descriptors = np.vstack([seen.descriptors[picked], rng.integers(0, 256, (800, 32), dtype=np.uint8)])
    noise_angles = rng.integers(0, 256, 800, dtype=np.uint8)

    def candidates(turns: np.ndarray, settings: MatcherSettings) -> list[tuple[str, bool]]:
        angles = np.concatenate([turns, noise_angles]).astype(np.uint8)
        return [(c.item, c.fallback) for c in index.shortlist(descriptors, settings, angles)]

    turned_alike = (seen.angles[picked].astype(int) + 40) % 256  # the object seen turned by 56 degrees
    turned_anyhow = (seen.angles[picked].astype(int) + np.array([0, 64, 128, 192, 96])[: len(picked)]) % 256
    assert candidates(turned_alike, settings) == [("r007", True)]
    assert candidates(turned_anyhow, settings) == []
    assert candidates(turned_alike, dataclasses.replace(settings, fallback_candidates=0)) == []
    assert index.shortlist(descriptors, settings) == []  # no orientations known, no fallback


def test_a_fallback_is_verified_only_when_its_pairs_lie_as_on_one_object() -> None:
    settings = MatcherSettings(fallback_candidates=2)
    rng = np.random.default_rng(5)
    on_reference = rng.uniform(0, 600, (6, 2))
    turn = np.radians(30)
    similarity = 0.4 * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    seen = on_reference @ similarity.T + [200, 120] + rng.normal(0, 2, (6, 2))  # an object a third of the frame wide
    assert same_layout(on_reference, seen, 600, settings)
    assert not same_layout(on_reference, rng.uniform(0, 640, (6, 2)), 600, settings)  # scattered by chance
    assert not same_layout(on_reference, [320, 240] + rng.normal(0, 3, (6, 2)), 600, settings)  # bunched on one spot
