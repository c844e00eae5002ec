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
import ctypes
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import faiss
import numpy as np

from matcher.model import DESCRIPTOR_BYTES, Correspondences, Features, Reference
from matcher.settings import MatcherSettings
from matcher.verification import agreeing_turns

log = logging.getLogger("catchlight.index")

_EXACT_BELOW = 4_000  # descriptors: below this an exact search is as fast as any
_RETRAIN_GROWTH = 4.0  # retrain the partition once the index grew this much since training
_TRAINING_POINTS_PER_LIST = 20  # training descriptors per cell: 40 (FAISS's default minimum) finds the same neighbours
_TRAINING_ROUNDS = 10  # k-means iterations: 25 (FAISS's default) takes 4.6x as long for 2 % more neighbours found
_MAX_DEAD_SHARE = 0.5  # compact once this share of the index's rows belongs to removed references
_REPLAYED_UNDER_LOCK = 16  # changes made during a background rebuild that are applied while holding the lock
_CENTRES_EXACT_BELOW = 1_024  # inverted-file cells: above this their centres are searched through an index too
_LISTS_PER_ROOT = 8.0  # inverted-file cells per square root of the descriptor count
_TRAINING_SEED = 1234  # k-means starts from the same centres on every worker, so all build the same partition
_CENTRE_PROBE = 8  # cells of the centres' index searched to find a descriptor's nearest cells
_READ_BACK_KEPT = 512  # references read back kept per collection: the items camera streams follow, with room to spare


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
    def keypoint_positions(self, item: str) -> np.ndarray | None:
        """(N, 2) positions of a reference's keypoints, without reading its descriptors."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of references."""

    @abc.abstractmethod
    def shortlist(self, descriptors: np.ndarray, settings: MatcherSettings, angles: np.ndarray | None = None) -> list[Correspondences]:
        """Best candidates for a frame's (N, 32) uint8 descriptors, most votes first.

        `angles`: the (N,) uint8 orientations of the frame's keypoints, when known.
        """


@dataclass(frozen=True)
class _Held:
    """A reference as the index keeps it: its descriptors live only in the FAISS index, rows first_row on."""

    item: str
    name: str
    metadata: dict[str, Any]
    positions: np.ndarray
    """(N, 2) uint16 keypoint positions in units of `unit` reference pixels (half the memory of float32)."""
    angles: np.ndarray | None
    unit: float
    width: int
    height: int
    first_row: int
    patch: bytes | None
    """The reference's small grayscale copy (`Features.patch`), copied like the points so the index owns what it holds."""

    @property
    def points(self) -> np.ndarray:
        """(N, 2) float32 keypoint positions in reference pixels."""
        return self.positions.astype(np.float32) * np.float32(self.unit)


_INDEX_STATE = (
    "_held", "_first_rows", "_item_of_slot", "_slot_of", "_live_rows", "_live_mask", "_trained_for", "_index",
    "_list_codes", "_slot_arrays", "_read_back",
)  # fmt: skip


class InvertedFileIndex(DescriptorIndex):
    """Every descriptor is held once, in FAISS, as row `first_row + i` of its reference.

    FAISS answers with row numbers; a reference's own descriptors (for
    re-matching a candidate) are read back from the index, which keeps a map
    from row to position for that. Removing a reference leaves its rows in
    place, unreachable, until they make up half of the index and it is rebuilt.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._held: dict[str, _Held] = {}
        self._first_rows: list[int] = []
        """First row of each slot, ascending: slots are numbered in the order they were added."""
        self._item_of_slot: list[str | None] = []
        self._slot_of: dict[str, int] = {}
        self._live_rows = 0
        self._live_mask: np.ndarray | None = None
        """Exact index only: False for rows of removed references (None: all rows live)."""
        self._trained_for = 0
        self._index: faiss.IndexBinary = faiss.IndexBinaryFlat(DESCRIPTOR_BYTES * 8)
        self._list_codes: dict[int, memoryview] = {}
        """Inverted file only: flat views of the lists' codes read so far; cleared when any list changes."""
        self._slot_arrays: _SlotArrays | None = None
        """The slot lists as arrays, for turning FAISS's rows into items; None once a slot changes."""
        self._journal: list[tuple[str, Reference | str]] | None = None
        """Changes made while a background rebuild runs (None: no rebuild running)."""
        self._read_back: OrderedDict[str, tuple[_Held, Reference]] = OrderedDict()
        """References read back lately, with the entry they were read from: valid while that is still held."""

    background_rebuilds = True
    """Retrain in a background thread (workers) or in the calling thread (bulk tools)."""

    # -- building -----------------------------------------------------------

    def bulk_load(self, references: list[Reference]) -> None:
        """Replace the whole content at once (start-up): trains the partition once."""
        with self._lock:
            self._rebuild(references)

    def add(self, reference: Reference) -> None:
        with self._lock:
            if reference.item in self._held:
                self._remove_locked(reference.item)
            self._append(reference)
            if self._journal is not None:
                self._journal.append(("add", reference))
            self._maybe_rebuild()

    def remove(self, item: str) -> None:
        with self._lock:
            if item in self._held:
                self._remove_locked(item)
                if self._journal is not None:
                    self._journal.append(("remove", item))
                self._maybe_rebuild()

    def _maybe_rebuild(self) -> None:
        """Retrain when the index outgrew its partition: in the background, so that a change
        (and every change after it) reaches recognition at once instead of after the training."""
        if self._journal is not None or not self._needs_rebuild():
            return
        if not self.background_rebuilds:
            self._rebuild(self._all_references())
            return
        self._start_background_rebuild()

    def _start_background_rebuild(self) -> None:
        snapshot = self._all_references()
        self._journal = []
        # FAISS's OpenMP thread count is per thread: a new thread would use every core, not the caller's choice.
        threads = faiss.omp_get_max_threads()
        threading.Thread(target=self._rebuild_in_background, args=(snapshot, threads), name="index-rebuild", daemon=True).start()

    def _rebuild_in_background(self, snapshot: list[Reference], threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        fresh = InvertedFileIndex()
        try:
            fresh._rebuild(snapshot)
            self._catch_up_and_take_over(fresh)
        except Exception:
            log.exception("rebuilding an index failed; the current one stays in use")
            with self._lock:
                self._journal = None

    def _catch_up_and_take_over(self, fresh: InvertedFileIndex) -> None:
        """Apply to `fresh` the changes made while it was built, in order; then it takes over.

        Changes keep arriving meanwhile, so they are applied without the lock (recognition
        goes on) until only a few are left; those and the switch hold it. The new index never
        retrains here (that would hold the lock for a whole training): if the changes outgrew
        its partition, the next rebuild starts in the background once it has taken over.
        """
        applied = 0
        while True:
            with self._lock:
                pending = (self._journal or [])[applied:]
                if len(pending) <= _REPLAYED_UNDER_LOCK:
                    _replay(fresh, pending)
                    for name in _INDEX_STATE:
                        setattr(self, name, getattr(fresh, name))
                    # The journal goes straight from this rebuild's to the next one's: never None in between,
                    # which wait_for_rebuild (reading it without the lock) would take for "done".
                    if self._needs_rebuild():
                        self._start_background_rebuild()
                    else:
                        self._journal = None
                    return
            _replay(fresh, pending)
            applied += len(pending)

    def wait_for_rebuild(self, timeout: float = 600.0) -> None:
        """Block until a background rebuild (if any) has taken over (for tools and tests)."""
        deadline = time.monotonic() + timeout
        while self._journal is not None and time.monotonic() < deadline:
            time.sleep(0.01)

    def _remove_locked(self, item: str) -> None:
        held = self._held.pop(item)
        self._read_back.pop(item, None)
        self._item_of_slot[self._slot_of.pop(item)] = None
        self._slot_arrays = None
        self._live_rows -= len(held.positions)
        rows = np.arange(held.first_row, held.first_row + len(held.positions), dtype=np.int64)
        if isinstance(self._index, faiss.IndexBinaryIVF):
            _drop_rows(self._index, rows)
            self._list_codes = {}
        else:
            # An exact index is searched with the removed rows masked out (rows keep their numbers).
            if self._live_mask is None or len(self._live_mask) < self._index.ntotal:
                mask = np.ones(int(self._index.ntotal), bool)
                if self._live_mask is not None:
                    mask[: len(self._live_mask)] = self._live_mask
                self._live_mask = mask
            self._live_mask[rows] = False

    def _append(self, reference: Reference) -> None:
        """Add a reference's descriptors as new rows (FAISS numbers them in order)."""
        features = reference.features
        first_row = int(self._index.ntotal)
        self._slot_of[reference.item] = len(self._item_of_slot)
        self._item_of_slot.append(reference.item)
        self._first_rows.append(first_row)
        self._slot_arrays = None
        unit = _unit(features.width, features.height)
        self._held[reference.item] = _Held(
            reference.item,
            reference.name,
            dict(reference.metadata),
            _positions(features.points, unit),
            _own_angles(features),
            unit,
            features.width,
            features.height,
            first_row,
            _own_patch(features),
        )
        if len(features):
            self._index.add(np.ascontiguousarray(features.descriptors, np.uint8))
            self._list_codes = {}
        self._live_rows += len(features)

    def _needs_rebuild(self) -> bool:
        n = self._live_rows
        if int(self._index.ntotal) - n > _MAX_DEAD_SHARE * max(int(self._index.ntotal), _EXACT_BELOW):
            return True
        if self._trained_for == 0:
            return n >= _EXACT_BELOW
        return n > self._trained_for * _RETRAIN_GROWTH or n < self._trained_for / _RETRAIN_GROWTH

    def _all_references(self) -> list[Reference]:
        # Not through reference(): that would push the references streams follow out of those kept.
        return [self._read(held) for held in list(self._held.values())]

    def _rebuild(self, references: list[Reference]) -> None:
        ordered = sorted(references, key=lambda r: r.item)
        total = sum(len(r.features) for r in ordered)
        bits = DESCRIPTOR_BYTES * 8
        codes = (
            np.ascontiguousarray(np.concatenate([r.features.descriptors for r in ordered]), np.uint8)
            if total
            else np.zeros((0, DESCRIPTOR_BYTES), np.uint8)
        )
        if total < _EXACT_BELOW:
            index: faiss.IndexBinary = faiss.IndexBinaryFlat(bits)
            if total:
                index.add(codes)
            self._trained_for = 0
        else:
            lists = int(np.clip(_LISTS_PER_ROOT * np.sqrt(total), 16, 65_536))
            sample = codes
            limit = lists * _TRAINING_POINTS_PER_LIST
            if len(sample) > limit:
                sample = np.ascontiguousarray(sample[np.linspace(0, len(sample) - 1, limit).astype(np.int64)])
            ivf = _trained_inverted_file(sample, lists)
            del sample
            _fill_exactly(ivf, codes)
            self._trained_for = total
            index = ivf
        self._index = index
        self._list_codes = {}
        self._live_mask = None
        self._held = {}
        self._first_rows = []
        self._item_of_slot = []
        self._slot_of = {}
        self._slot_arrays = None
        self._live_rows = 0
        self._read_back = OrderedDict()  # every entry is held anew: none of those kept is valid any more
        # One array for every keypoint position: nothing here keeps the callers' arrays alive, so the
        # memory they free after the load is in one piece and goes back to the system.
        positions = np.zeros((total, 2), np.uint16)
        row = 0
        for reference in ordered:
            n = len(reference.features)
            self._slot_of[reference.item] = len(self._item_of_slot)
            self._item_of_slot.append(reference.item)
            self._first_rows.append(row)
            f = reference.features
            unit = _unit(f.width, f.height)
            positions[row : row + n] = _positions(f.points, unit)
            self._held[reference.item] = _Held(
                reference.item, reference.name, dict(reference.metadata), positions[row : row + n], _own_angles(f), unit, f.width, f.height, row, _own_patch(f)
            )
            row += n
            self._live_rows += n
        del codes, ordered
        release_free_memory()

    # -- queries ------------------------------------------------------------

    def reference(self, item: str) -> Reference | None:
        """The item's reference; its descriptors are read back from the index once per change of the item.

        Reading them back takes about half a millisecond (byte slices of hundreds of inverted
        lists), and camera streams ask for the same few references on every frame.
        """
        with self._lock:
            held = self._held.get(item)
            if held is None:
                return None
            kept = self._read_back.get(item)
            if kept is not None and kept[0] is held:  # a changed or re-added item is held anew
                self._read_back.move_to_end(item)
                return kept[1]
            reference = self._read(held)
            self._read_back[item] = (held, reference)
            while len(self._read_back) > _READ_BACK_KEPT:
                self._read_back.popitem(last=False)
            return reference

    def _read(self, held: _Held) -> Reference:
        n = len(held.positions)
        descriptors = _read_rows(self._index, held.first_row, n, self._list_codes) if n else np.zeros((0, DESCRIPTOR_BYTES), np.uint8)
        return Reference(held.item, held.name, held.metadata, Features(held.points, descriptors, held.width, held.height, held.angles, held.patch))

    def __len__(self) -> int:
        return len(self._held)

    @property
    def descriptor_count(self) -> int:
        return self._live_rows

    def shortlist(self, descriptors: np.ndarray, settings: MatcherSettings, angles: np.ndarray | None = None) -> list[Correspondences]:
        if len(descriptors) == 0:
            return []
        # The frame's keypoints come best spread first (features.detect): the first `searched_features`
        # vote in the index, and every one of them is matched against the shortlisted references.
        searched = np.ascontiguousarray(descriptors[: settings.searched_features])
        if angles is not None:
            angles = angles[: settings.searched_features]
        with self._lock:
            if self._live_rows == 0:
                return []
            if isinstance(self._index, faiss.IndexBinaryIVF):
                self._index.nprobe = settings.ivf_probe
            k = max(2, settings.neighbours)
            params = None
            if self._live_mask is not None and isinstance(self._index, faiss.IndexBinaryFlat):
                live = np.ones(int(self._index.ntotal), bool)
                live[: len(self._live_mask)] = self._live_mask
                bitmap = np.packbits(live, bitorder="little")
                params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(bitmap)))
            distances, rows = self._index.search(searched, k, params=params)
            if self._slot_arrays is None:
                self._slot_arrays = _SlotArrays.of(self._first_rows, self._item_of_slot)
            first_rows, dead = self._slot_arrays
            slots = np.where(rows >= 0, np.searchsorted(first_rows, rows, side="right") - 1, -1)
            keypoints = np.where(rows >= 0, rows - first_rows[np.maximum(slots, 0)], -1)
            # Rows of removed references are still in FAISS: they count as no neighbour at all.
            gone = dead[slots]
            slots = np.where(gone, -1, slots)
            distances = np.where(gone, np.iinfo(np.int32).max, distances)
            voted = _vote(distances, slots, keypoints, self._item_of_slot, settings, angles, self._angles_of_slot)
            references = [None if c.fallback else self.reference(c.item) for c in voted]
        # The global ratio test above is strict where references look alike (tiles of one photo,
        # one brand's posters): re-match each candidate on its own to recover its correspondences.
        result = []
        for candidate, reference in zip(voted, references, strict=True):
            # Fallbacks are read and re-matched by the recognizer, if it comes to verifying them.
            result.append(candidate if candidate.fallback or reference is None else rematched(candidate, reference, descriptors, settings))
        return result

    def keypoint_positions(self, item: str) -> np.ndarray | None:
        held = self._held.get(item)
        return None if held is None else held.points

    def _angles_of_slot(self, slot: int) -> np.ndarray | None:
        item = self._item_of_slot[slot]
        return None if item is None else self._held[item].angles


_MAX_POSITION = 65_535


def _unit(width: int, height: int) -> float:
    """Reference pixels per stored position step: the longer side spans every uint16 step
    (1/16 px for a 4,000-px scan, finer than any keypoint is placed)."""
    return max(1, width, height) / _MAX_POSITION


def _positions(points: np.ndarray, unit: float) -> np.ndarray:
    """(N, 2) float positions in reference pixels as uint16 steps of `unit` pixels."""
    return np.clip(np.round(np.asarray(points, np.float32) / unit), 0, _MAX_POSITION).astype(np.uint16)


def _own_patch(features: Features) -> bytes | None:
    return None if features.patch is None else bytes(memoryview(features.patch))  # bytes(b) would be b itself


def _own_angles(features: Features) -> np.ndarray | None:
    """A copy of the keypoint orientations (none for references stored before they were kept)."""
    return None if features.angles is None else np.array(features.angles, np.uint8)


class _SlotArrays(NamedTuple):
    """What a search needs of the slots, as arrays: made once per change of the index, not per frame."""

    first_rows: np.ndarray
    """(slots,) int64: first FAISS row of each slot, ascending."""
    dead: np.ndarray
    """(slots + 1,) bool: the slot's reference was removed; the last entry stands for "no neighbour" (slot -1)."""

    @classmethod
    def of(cls, first_rows: list[int], item_of_slot: list[str | None]) -> _SlotArrays:
        dead = np.array([item is None for item in item_of_slot] + [True], bool)
        return cls(np.asarray(first_rows, np.int64), dead)


def _replay(index: InvertedFileIndex, changes: list[tuple[str, Reference | str]]) -> None:
    """Apply journaled changes to an index no other thread uses yet, without retraining it."""
    for op, change in changes:
        item = change.item if isinstance(change, Reference) else change
        if item in index._held:
            index._remove_locked(item)
        if op == "add":
            index._append(change)  # type: ignore[arg-type]


def _trained_inverted_file(sample: np.ndarray, lists: int) -> faiss.IndexBinaryIVF:
    """An empty inverted file of `lists` cells trained on (N, 32) uint8 `sample`.

    Finding a descriptor's nearest cells is itself a search over every cell
    centre, which costs as much as scanning the cells once there are thousands
    of them. Past _CENTRES_EXACT_BELOW cells the centres get a small inverted
    file of their own, so that step grows with the square root of the cells.
    """
    bits = DESCRIPTOR_BYTES * 8
    if lists < _CENTRES_EXACT_BELOW:
        flat = faiss.IndexBinaryFlat(bits)
        trainer = faiss.IndexBinaryIVF(flat, bits, lists)
        trainer.cp.niter = _TRAINING_ROUNDS
        trainer.cp.min_points_per_centroid = 5  # fewer than FAISS's default, on purpose (above)
        trainer.train(sample)
        trainer.own_fields = True
        flat.this.disown()
        return trainer
    centres = _cell_centres(sample, lists)
    lists = len(centres)  # one fewer now and then, where a group had fewer descriptors than cells
    centre_lists = max(16, int(np.sqrt(lists)))
    centre_quantizer = faiss.IndexBinaryFlat(bits)
    centre_index = faiss.IndexBinaryIVF(centre_quantizer, bits, centre_lists)
    centre_index.cp.min_points_per_centroid = 5  # centres are few per cell by design
    centre_index.train(centres)
    centre_index.add(centres)
    centre_index.nprobe = _CENTRE_PROBE
    ivf = faiss.IndexBinaryIVF(centre_index, bits, lists)
    ivf.is_trained = True
    # The C++ objects now belong to the index that uses them, so they live exactly as long as it does.
    centre_index.own_fields = True
    centre_quantizer.this.disown()
    ivf.own_fields = True
    centre_index.this.disown()
    return ivf


def _cell_centres(sample: np.ndarray, lists: int) -> np.ndarray:
    """(about `lists`, 32) uint8 centres of a Hamming k-means partition of (N, 32) uint8 `sample`, in two levels.

    One k-means over thousands of centres compares every training descriptor with every
    centre in every round; clustering first into the square root of that many groups, then
    each group into its share of the cells, compares each descriptor with two square roots'
    worth (for the 17,800 cells of 10,000 references, 267 centres instead of 17,800). As FAISS
    trains a binary inverted file, bits become -1/+1 coordinates (squared distance is then
    four times the Hamming distance) and each centre's bits are the signs of its coordinates.
    """
    coordinates = np.unpackbits(sample, axis=1, bitorder="little").astype(np.float32) * 2.0 - 1.0
    groups = max(1, int(np.sqrt(lists)))
    _, group_of = _kmeans(coordinates, groups).assign(coordinates)
    # Each group gets cells in proportion to its descriptors, `lists` in all.
    sizes = np.bincount(group_of, minlength=groups)
    shares = np.diff(np.concatenate([[0], np.cumsum(sizes) * lists // len(coordinates)]))
    centres = []
    for group in np.nonzero(shares)[0]:
        members = coordinates[group_of == group]
        share = min(int(shares[group]), len(members))
        centres.append(_kmeans(members, share).centroids if share > 1 else members.mean(axis=0, keepdims=True))
    return np.packbits(np.concatenate(centres) >= 0.0, axis=1, bitorder="little")


def _kmeans(points: np.ndarray, k: int) -> faiss.Kmeans:
    kmeans = faiss.Kmeans(
        points.shape[1], k, niter=_TRAINING_ROUNDS, seed=_TRAINING_SEED,
        min_points_per_centroid=5,  # fewer than FAISS's default, on purpose (above)
        max_points_per_centroid=256,
    )  # fmt: skip
    kmeans.train(points)
    return kmeans


def _fill_exactly(index: faiss.IndexBinaryIVF, codes: np.ndarray) -> None:
    """Put (N, 32) uint8 `codes` into a trained IVF as rows 0..N-1, each inverted list sized exactly.

    FAISS's own add grows every list one entry at a time, leaving up to half of
    each list's memory unused; filling each list in one go allocates what it needs.
    A row-to-position map is kept so a reference's descriptors can be read back.
    """
    n = len(codes)
    _, assigned = index.quantizer.search(codes, 1)
    assigned = assigned.ravel()
    order = np.argsort(assigned, kind="stable")
    counts = np.bincount(assigned, minlength=index.nlist)
    rows = np.ascontiguousarray(order.astype(np.int64))
    grouped = np.ascontiguousarray(codes[order])
    invlists = index.invlists
    start = 0
    for list_no in np.nonzero(counts)[0]:
        m = int(counts[list_no])
        invlists.add_entries(int(list_no), m, faiss.swig_ptr(rows[start : start + m]), faiss.swig_ptr(grouped[start : start + m]))
        start += m
    index.ntotal = n
    index.make_direct_map(True)


def _read_rows(index: faiss.IndexBinary, first: int, n: int, list_codes: dict[int, memoryview]) -> np.ndarray:
    """(n, 32) uint8 descriptors of rows first..first+n-1.

    FAISS's reconstruct_n on a binary inverted file scans every list for the
    rows' ids (7 ms at 10,000 references); the direct map says where each row
    is, so only the lists that hold them are read. `list_codes` keeps a flat
    view of each list read, valid until a list changes (its owner then clears
    it). A reference's rows lie in hundreds of lists, one or two in each: they
    are gathered as byte slices, which costs a fifth of a numpy copy per list.
    """
    if not isinstance(index, faiss.IndexBinaryIVF):
        return index.reconstruct_n(first, n).reshape(n, DESCRIPTOR_BYTES)
    direct = faiss.rev_swig_ptr(index.direct_map.array.data(), index.direct_map.array.size())
    where = np.asarray(direct[first : first + n], np.int64)
    lists = (where >> 32).tolist()
    starts = ((where & 0xFFFFFFFF) * DESCRIPTOR_BYTES).tolist()
    invlists = index.invlists
    for list_no in set(lists).difference(list_codes):
        size = invlists.list_size(list_no) * DESCRIPTOR_BYTES
        list_codes[list_no] = memoryview(faiss.rev_swig_ptr(invlists.get_codes(list_no), size))
    gathered = b"".join([list_codes[list_no][start : start + DESCRIPTOR_BYTES] for list_no, start in zip(lists, starts, strict=True)])
    return np.frombuffer(gathered, np.uint8).reshape(n, DESCRIPTOR_BYTES).copy()


def _drop_rows(index: faiss.IndexBinaryIVF, rows: np.ndarray) -> None:
    """Take `rows` out of their inverted lists, so removed descriptors never shadow live ones.

    Each is overwritten by its list's last entry (whose place the direct map then
    records) and the list shortened; row numbers of the others do not change.
    """
    direct = faiss.rev_swig_ptr(index.direct_map.array.data(), index.direct_map.array.size())
    invlists = index.invlists
    code_size = index.code_size
    for row in rows.tolist():
        where = int(direct[row])
        if where < 0:
            continue
        list_no, offset = where >> 32, where & 0xFFFFFFFF
        last = invlists.list_size(list_no) - 1
        if offset != last:
            moved = int(invlists.get_single_id(list_no, last))
            code = faiss.rev_swig_ptr(invlists.get_single_code(list_no, last), code_size).copy()
            invlists.update_entry(list_no, offset, moved, faiss.swig_ptr(code))
            direct[moved] = (list_no << 32) | offset
        invlists.resize(list_no, last)
        direct[row] = -1


def release_free_memory() -> None:
    """Hand heap memory freed after a build back to the system (glibc keeps it otherwise).

    A build's temporary arrays, and the references it was built from, are as
    large as the index itself; glibc keeps such freed memory for reuse, and
    every worker would show about twice its real size.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _vote(
    distances: np.ndarray,
    slots: np.ndarray,
    keypoints: np.ndarray,
    item_of_slot: list[str | None],
    settings: MatcherSettings,
    frame_angles: np.ndarray | None = None,
    angles_of_slot: Callable[[int], np.ndarray | None] | None = None,
) -> list[Correspondences]:
    """Ratio-test each frame descriptor's nearest neighbour against the nearest of another item.

    The candidates are the items with the most votes among those with enough support
    (descriptors that passed the test, and those shared with a look-alike item), at
    least one of which passed the test. After them come the fallback candidates
    (`_turning_alike`; `frame_angles`: the frame keypoints' orientations,
    `angles_of_slot`: a reference's).
    `distances`, `slots`, `keypoints`: (N, k) per frame descriptor and neighbour;
    slot -1 is no neighbour.
    """
    valid = slots >= 0
    best_slot = slots[:, 0]
    other = valid & (slots != best_slot[:, None])
    # Distance to the nearest neighbour in a different item. When all k neighbours belong to the
    # best item (always so in a one-item collection), the k-th distance is a lower bound of it: the
    # test then still rejects descriptors that match many places of that item equally well.
    other_distance = np.where(other, distances, np.iinfo(np.int32).max).min(axis=1)
    other_distance = np.minimum(other_distance, distances[:, -1])
    best_distance = distances[:, 0]
    close = valid[:, 0] & (best_distance <= settings.max_hamming)
    keep = close & (best_distance < settings.ratio * other_distance)
    frame_idx = np.nonzero(keep)[0]
    kept_slots = best_slot[frame_idx]
    kp_idx = keypoints[frame_idx, 0].astype(np.int64)
    weight = 1.0 - best_distance[frame_idx] / (settings.max_hamming + 1)
    voters, voter_weights = kept_slots, weight
    if settings.shared_vote_weight > 0:
        # Look-alike references (one brand's posters, crops of one photo) hold near-equal
        # descriptors; the ratio test drops those for all of them, and the right item can be
        # left with too little support to be shortlisted. They vote, weakly, for both items:
        # enough to reach verification, which (matching the item alone) tells them apart.
        shared = np.nonzero(close & ~keep & other.any(axis=1) & (other_distance <= settings.max_hamming))[0]
        nearest_other = slots[shared, np.argmax(other[shared], axis=1)]
        shared_weight = settings.shared_vote_weight * (1.0 - best_distance[shared] / (settings.max_hamming + 1))
        voters = np.concatenate([kept_slots, best_slot[shared], nearest_other])
        voter_weights = np.concatenate([weight, shared_weight, shared_weight])
    if voters.size == 0:
        return []
    unique_slots, inverse = np.unique(voters, return_inverse=True)
    votes = np.bincount(inverse, weights=voter_weights)
    strict = inverse[: len(kept_slots)]
    # Enough support, and at least one descriptor pointing to this item alone: items that only
    # share generic detail (type, a texture) with the frame are not worth verifying.
    supported = np.nonzero(
        (np.bincount(inverse) >= max(4, settings.min_inliers // 2))
        & (np.bincount(strict, minlength=len(unique_slots)) >= 1)
    )[0]
    result = []
    for j in supported[np.argsort(-votes[supported])]:
        if len(result) == settings.candidates:
            break
        item = item_of_slot[int(unique_slots[j])]
        if item is None:
            continue
        members = strict == j
        result.append(
            Correspondences(
                item=item,
                frame_indices=frame_idx[members],
                reference_indices=kp_idx[members],
                votes=float(votes[j]),
            )
        )
    if frame_angles is not None and angles_of_slot is not None:
        shortlisted = {c.item for c in result}
        result += _turning_alike(close, best_slot, keypoints, frame_angles, angles_of_slot, shortlisted, item_of_slot, settings)
    return result


def _turning_alike(
    close: np.ndarray,
    best_slot: np.ndarray,
    keypoints: np.ndarray,
    frame_angles: np.ndarray,
    angles_of_slot: Callable[[int], np.ndarray | None],
    shortlisted: set[str],
    item_of_slot: list[str | None],
    settings: MatcherSettings,
) -> list[Correspondences]:
    """Fallback candidates: items nearest to a few frame descriptors that all turn by one angle.

    In a large collection a small, dim or blurred object's descriptors are mostly nearer to
    some other item's, or fail the ratio test, and it is not shortlisted; but the few whose
    nearest neighbour is in it turn alike, while chance neighbours turn by any angle. At most
    `fallback_candidates` such items, most agreeing first, marked `fallback`: they are only
    verified when no shortlisted item is found, and only if the pairs lie as on one object
    (`verification.same_layout`).
    """
    least = settings.min_agreeing_votes
    if least <= 0 or settings.fallback_candidates <= 0 or settings.orientation_tolerance_degrees <= 0:
        return []
    nearest = np.nonzero(close)[0]
    slots, group, counts = np.unique(best_slot[nearest], return_inverse=True, return_counts=True)
    wanted: list[str] = []
    members: list[np.ndarray] = []
    reference_angles: list[np.ndarray] = []
    for g in np.nonzero(counts >= least)[0]:
        slot = int(slots[g])
        item = item_of_slot[slot]
        angles = None if item is None or item in shortlisted else angles_of_slot(slot)
        if item is not None and angles is not None:
            these = nearest[group == g]
            wanted.append(item)
            members.append(these)
            reference_angles.append(angles[keypoints[these, 0]])
    if not wanted:
        return []
    # All the items' turns are judged at once, each item against its own most common turn.
    of_item = np.repeat(np.arange(len(wanted)), [len(m) for m in members])
    agree = agreeing_turns(
        frame_angles[np.concatenate(members)], np.concatenate(reference_angles), settings.orientation_tolerance_degrees, of_item
    )
    agreeing = np.bincount(of_item, weights=agree, minlength=len(wanted))
    found = []
    for i in np.argsort(-agreeing, kind="stable")[: settings.fallback_candidates]:
        if agreeing[i] < least:
            break
        pairs = members[i][agree[of_item == i]]
        found.append(Correspondences(wanted[i], pairs, keypoints[pairs, 0].astype(np.int64), float(agreeing[i]), fallback=True))
    return found


def rematched(candidate: Correspondences, reference: Reference, frame_descriptors: np.ndarray, settings: MatcherSettings) -> Correspondences:
    """The candidate with its reference, and with the pairs of the frame matched against that reference alone
    when those are more than the search found."""
    found = match_descriptors(frame_descriptors, reference, settings)
    if found is None or len(found[0]) <= len(candidate.frame_indices):
        return replace(candidate, reference=reference)
    return replace(candidate, frame_indices=found[0], reference_indices=found[1], reference=reference)


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
