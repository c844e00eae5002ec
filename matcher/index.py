"""Search: which references share descriptors with a frame, and which ones.

`DescriptorIndex` is the contract; `InvertedFileIndex` keeps every
reference descriptor of a collection in one FAISS binary index (exact for small
collections, an inverted file over a Hamming k-means partition for large
ones), so a frame is compared against the collection in one search instead of
reference by reference. Its partition is trained from the collection's own
descriptors, taken in item order, so any worker that loads the same items
from Redis builds the same index.
"""

from __future__ import annotations

import abc
import threading

import faiss
import numpy as np

from matcher.model import DESCRIPTOR_BYTES, Correspondences, Reference
from matcher.settings import MatcherSettings

_SLOT_SHIFT = 20  # a descriptor's id is slot << 20 | keypoint index
_EXACT_BELOW = 4_000  # descriptors: below this an exact search is as fast as any
_RETRAIN_GROWTH = 4.0  # retrain the partition once the index grew this much since training
_TRAINING_POINTS_PER_LIST = 40  # FAISS wants at least 39 training points per centroid


class DescriptorIndex(abc.ABC):
    """Holds the references of one collection; finds tentative matches for a frame."""

    @abc.abstractmethod
    def add(self, reference: Reference) -> None:
        """Add or replace a reference (replacing keeps recognition running)."""

    @abc.abstractmethod
    def remove(self, item: str) -> None:
        """Forget a reference; unknown items are ignored."""

    @abc.abstractmethod
    def reference(self, item: str) -> Reference | None:
        """The stored reference of an item."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of references."""

    @abc.abstractmethod
    def shortlist(self, descriptors: np.ndarray, settings: MatcherSettings) -> list[Correspondences]:
        """Best candidates for a frame's (N, 32) uint8 descriptors, most votes first."""


class InvertedFileIndex(DescriptorIndex):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._references: dict[str, Reference] = {}
        self._slot_of: dict[str, int] = {}
        self._item_of_slot: list[str | None] = []
        self._free_slots: list[int] = []
        self._descriptor_count = 0
        self._trained_for = 0
        self._index: faiss.IndexBinary = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(DESCRIPTOR_BYTES * 8))

    # -- building -----------------------------------------------------------

    def bulk_load(self, references: list[Reference]) -> None:
        """Replace the whole content at once (start-up): trains the partition once."""
        with self._lock:
            self._references = {r.item: r for r in references}
            self._slot_of = {}
            self._item_of_slot = []
            self._free_slots = []
            self._rebuild()

    def add(self, reference: Reference) -> None:
        with self._lock:
            if reference.item in self._references:
                self._remove_locked(reference.item)
            self._references[reference.item] = reference
            self._add_to_faiss(reference)
            if self._needs_retraining():
                self._rebuild()

    def remove(self, item: str) -> None:
        with self._lock:
            if item in self._references:
                self._remove_locked(item)

    def _remove_locked(self, item: str) -> None:
        reference = self._references.pop(item)
        slot = self._slot_of.pop(item)
        self._index.remove_ids(faiss.IDSelectorRange(slot << _SLOT_SHIFT, (slot + 1) << _SLOT_SHIFT))
        self._item_of_slot[slot] = None
        self._free_slots.append(slot)
        self._descriptor_count -= len(reference.features)

    def _allocate_slot(self, item: str) -> int:
        if self._free_slots:
            slot = self._free_slots.pop()
            self._item_of_slot[slot] = item
        else:
            slot = len(self._item_of_slot)
            self._item_of_slot.append(item)
        self._slot_of[item] = slot
        return slot

    def _add_to_faiss(self, reference: Reference) -> None:
        slot = self._allocate_slot(reference.item)
        n = len(reference.features)
        if n == 0:
            return
        ids = (np.int64(slot) << _SLOT_SHIFT) + np.arange(n, dtype=np.int64)
        self._index.add_with_ids(reference.features.descriptors, ids)
        self._descriptor_count += n

    def _needs_retraining(self) -> bool:
        n = self._descriptor_count
        if self._trained_for == 0:
            return n >= _EXACT_BELOW
        return n > self._trained_for * _RETRAIN_GROWTH or n < self._trained_for / _RETRAIN_GROWTH

    def _rebuild(self) -> None:
        ordered = sorted(self._references.values(), key=lambda r: r.item)
        total = sum(len(r.features) for r in ordered)
        bits = DESCRIPTOR_BYTES * 8
        if total < _EXACT_BELOW:
            index: faiss.IndexBinary = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(bits))
            self._trained_for = 0
        else:
            lists = int(np.clip(2 * np.sqrt(total), 16, 65_536))
            quantizer = faiss.IndexBinaryFlat(bits)
            index = faiss.IndexBinaryIVF(quantizer, bits, lists)
            index.own_fields = True
            quantizer.this.disown()
            sample = np.concatenate([r.features.descriptors for r in ordered if len(r.features)])
            limit = lists * _TRAINING_POINTS_PER_LIST
            if len(sample) > limit:
                sample = sample[np.linspace(0, len(sample) - 1, limit).astype(np.int64)]
            index.train(np.ascontiguousarray(sample))
            self._trained_for = total
        self._index = index
        self._slot_of = {}
        self._item_of_slot = []
        self._free_slots = []
        self._descriptor_count = 0
        for reference in ordered:
            self._add_to_faiss(reference)

    # -- queries ------------------------------------------------------------

    def reference(self, item: str) -> Reference | None:
        return self._references.get(item)

    def __len__(self) -> int:
        return len(self._references)

    @property
    def descriptor_count(self) -> int:
        return self._descriptor_count

    def shortlist(self, descriptors: np.ndarray, settings: MatcherSettings) -> list[Correspondences]:
        if len(descriptors) == 0:
            return []
        with self._lock:
            if self._descriptor_count == 0:
                return []
            if isinstance(self._index, faiss.IndexBinaryIVF):
                self._index.nprobe = settings.ivf_probe
            k = max(2, settings.neighbours)
            distances, ids = self._index.search(np.ascontiguousarray(descriptors), k)
            item_of_slot = list(self._item_of_slot)
            voted = _vote(distances, ids, item_of_slot, settings)
            references = [self._references.get(c.item) for c in voted]
        # The global ratio test above is strict where references look alike (tiles of one photo,
        # one brand's posters): re-match each candidate on its own to recover its correspondences.
        result = []
        for candidate, reference in zip(voted, references, strict=True):
            found = match_descriptors(descriptors, reference, settings) if reference is not None else None
            if found is not None and len(found[0]) > len(candidate.frame_indices):
                candidate = Correspondences(candidate.item, found[0], found[1], candidate.votes)
            result.append(candidate)
        return result


def _vote(
    distances: np.ndarray, ids: np.ndarray, item_of_slot: list[str | None], settings: MatcherSettings
) -> list[Correspondences]:
    """Ratio-test each frame descriptor's nearest neighbour against the nearest of another item."""
    valid = ids >= 0
    slots = np.where(valid, ids >> _SLOT_SHIFT, -1)
    best_slot = slots[:, 0]
    other = valid & (slots != best_slot[:, None])
    # Distance to the nearest neighbour in a different item. When all k neighbours belong to the
    # best item (always so in a one-item collection), the k-th distance is a lower bound of it: the
    # test then still rejects descriptors that match many places of that item equally well.
    other_distance = np.where(other, distances, np.iinfo(np.int32).max).min(axis=1)
    other_distance = np.minimum(other_distance, distances[:, -1])
    best_distance = distances[:, 0]
    keep = valid[:, 0] & (best_distance <= settings.max_hamming)
    keep &= best_distance < settings.ratio * other_distance
    frame_idx = np.nonzero(keep)[0]
    if frame_idx.size == 0:
        return []
    kept_slots = best_slot[frame_idx]
    kp_idx = (ids[frame_idx, 0] & ((1 << _SLOT_SHIFT) - 1)).astype(np.int64)
    weight = 1.0 - best_distance[frame_idx] / (settings.max_hamming + 1)
    unique_slots, inverse = np.unique(kept_slots, return_inverse=True)
    votes = np.bincount(inverse, weights=weight)
    counts = np.bincount(inverse)
    order = np.argsort(-votes)
    result = []
    for j in order[: settings.candidates]:
        if counts[j] < max(4, settings.min_inliers // 2):
            break
        item = item_of_slot[int(unique_slots[j])]
        if item is None:
            continue
        members = inverse == j
        result.append(
            Correspondences(
                item=item,
                frame_indices=frame_idx[members],
                reference_indices=kp_idx[members],
                votes=float(votes[j]),
            )
        )
    return result


def match_descriptors(frame_descriptors: np.ndarray, reference: Reference, settings: MatcherSettings) -> tuple[np.ndarray, np.ndarray] | None:
    """Frame and reference indices of descriptor pairs passing the ratio test; None if too few.

    The second-nearest neighbour of the ratio test is the nearest one lying
    elsewhere on the reference, since a multi-scale reference describes the same
    spot at several scales with near-identical descriptors.
    """
    ref = reference.features
    if len(ref) < 2:
        return None
    k = min(4, len(ref))
    distances, ids = faiss.knn_hamming(np.ascontiguousarray(frame_descriptors), ref.descriptors, k)
    best = ids[:, 0]
    near = np.linalg.norm(ref.points[ids] - ref.points[best][:, None, :], axis=2)
    same_spot = near <= settings.same_spot_fraction * max(ref.width, ref.height)
    elsewhere = np.where(same_spot, np.iinfo(np.int32).max, distances).min(axis=1)
    elsewhere = np.minimum(elsewhere, settings.max_hamming / settings.ratio + 1)
    keep = (distances[:, 0] <= settings.max_hamming) & (distances[:, 0] < settings.ratio * elsewhere)
    frame_idx = np.nonzero(keep)[0]
    if len(frame_idx) < max(4, settings.min_inliers):
        return None
    return frame_idx, best[frame_idx].astype(np.int64)
