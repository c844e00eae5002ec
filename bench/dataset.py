"""The benchmark's references and backgrounds, made deterministically from the cached photographs.

Every photograph has one role only, so no two references share picture content and no
frame background appears in a reference:

- backgrounds: a held-out fifth of the landscape photos (frames and distractors only);
- real references: the other landscape photos, paintings and astrophotos, each whole (two
  thirds of the landscapes and paintings, the astrophotos smaller than 900 px);
- crop sources: the rest (the wallpapers, space backdrops, large astrophotos and a third
  of the landscapes and paintings), cut into non-overlapping crops with content
  (`bench.collages.crops_of`); each crop goes into one generated reference only.

Generated references are collages in the forms the product recognizes: posters, book and
CD covers, catalogue pages and flyers, one to four crops with a title and lines of text
in DejaVu and Liberation type (`bench.collages`). The packages hold about a thousand
whole photographs and some twelve thousand crops; once the crops are used up, the
remaining collages are text-only pages (type and coloured shapes), reported as their
own kind. Every reference is uploaded as a JPEG at its own size (real ones 240-2,400 px,
collages 300-4,000 px) through the same `describe_reference_image` the server uses;
references the engine refuses as too poor are counted and skipped.

The first 100 references, which the query frames are drawn from, are a fixed mix of
kinds (TARGET_QUOTAS); then come the other real photographs, then the collages in
order, so a smaller collection is a prefix of a larger one. Described references are
cached under .cache/bench in chunks, keyed by the feature code, the settings and this
code, so a larger collection extends a smaller one's cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import multiprocessing
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from bench import collages, sources
from bench.collages import Crop
from bench.scenes import jpeg
from matcher import alignment
from matcher.model import Features, Reference
from matcher.recognizer import PoorReference, describe_reference_image
from matcher.settings import MatcherSettings

DATASET_VERSION = 6  # 6: each tint of a Naev rocky planet is one picture (sources.painting_photos)
SEED = 20240611
REAL_KINDS = ("landscape", "painting", "astrophoto")
GENERATED_KINDS = (*collages.FORMS, collages.TEXT_ONLY)
KINDS = REAL_KINDS + GENERATED_KINDS
TARGET_QUOTAS = {
    "landscape": 20,
    "painting": 15,
    "astrophoto": 15,
    "poster": 10,
    "book cover": 10,
    "CD cover": 10,
    "catalogue page": 10,
    "flyer": 10,
}
"""How many of the first 100 references (the query targets) are of each kind."""
CROP_SIDES = (48, 224)
"""Shortest and longest side of a crop, in source pixels."""
LARGE_ASTROPHOTO = 900
"""Astrophotos at least this large on their shorter side are cut into crops instead of used whole."""
REAL_SIDES = (240, 2400)
GENERATED_SIDES = (300, 4000)
DESIGN_SIDE = 1600
"""Collages are laid out at most this large and scaled up to larger upload sizes, as a scan would be."""
CHUNK = 2000
"""Generated candidates described and cached together."""
BASELINE_CANDIDATES = 16_000
"""Generated candidates that also get the plain-OpenCV baseline's descriptors (enough for 10,000 references)."""


def origin(kind: str) -> str:
    """'real' for a whole photograph, 'generated' for a collage."""
    return "real" if kind in REAL_KINDS else "generated"


@dataclass(frozen=True)
class ReferenceSpec:
    """How to render one reference image from the cached sources."""

    item: str
    kind: str
    """One of KINDS: what the reference is (a landscape photo, a poster...)."""
    source: str | None
    """The whole photograph of a real reference."""
    crops: tuple[Crop, ...]
    """The crops on a collage, each used by no other reference."""
    crop_ids: tuple[int, ...]
    """Their positions in the crop store."""
    longer_side: int
    """The uploaded image's longer side in pixels."""
    seed: int
    """Lays the collage out (colours, fonts, words, picture cells)."""

    @property
    def origin(self) -> str:
        return origin(self.kind)


def _read(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise sources.SourceUnavailable(f"cannot read {path}")
    return image


def _resize(image: np.ndarray, longer_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    f = longer_side / max(w, h)
    if abs(f - 1.0) < 1e-6:
        return image
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)


def render(spec: ReferenceSpec) -> np.ndarray:
    """The reference image as uploaded: BGR uint8."""
    if spec.source is not None:
        return _resize(_read(spec.source), spec.longer_side)
    store = crop_store()
    pictures = [store.image(i) for i in spec.crop_ids]
    page = collages.compose(spec.kind, spec.seed, pictures, _fonts(), min(spec.longer_side, DESIGN_SIDE))
    return _resize(page, spec.longer_side)


_FONTS: list[Path] = []


def _fonts() -> list[Path]:
    if not _FONTS:
        _FONTS.extend(sources.font_files())
    return _FONTS


def background_paths() -> list[str]:
    """Held-out photographs used only as frame backgrounds and distractors."""
    return [str(p) for p in sources.landscape_photos()[::5]]


def _roles() -> tuple[list[tuple[str, Path]], list[Path]]:
    """(kind, photo) of every real reference candidate, and the photographs cut into crops."""
    from PIL import Image

    held_out = set(background_paths())
    landscapes = [p for p in sources.landscape_photos() if str(p) not in held_out]
    paintings = sources.painting_photos()
    large: list[Path] = []
    whole: list[tuple[str, Path]] = [("landscape", p) for i, p in enumerate(landscapes) if i % 3 != 2]
    whole += [("painting", p) for i, p in enumerate(paintings) if i % 3 != 2]
    for p in sources.nebula_photos():
        with Image.open(p) as image:
            shorter = min(image.size)
        if shorter >= LARGE_ASTROPHOTO:
            large.append(p)
        else:
            whole.append(("astrophoto", p))
    cropped = sources.wallpaper_photos() + sources.space_backdrops() + large + landscapes[2::3] + paintings[2::3]
    return whole, cropped


# -- the crop store --------------------------------------------------------------------------


class CropStore:
    """Every crop with content, JPEG-encoded in one memory-mapped array (shared by forked workers)."""

    def __init__(self, folder: Path) -> None:
        self.crops = [Crop(**c) for c in json.loads((folder / "crops.json").read_text())]
        self.blob = np.load(folder / "blob.npy", mmap_mode="r")
        self.offsets = np.load(folder / "offsets.npy")

    def __len__(self) -> int:
        return len(self.crops)

    def image(self, i: int) -> np.ndarray:
        data = np.asarray(self.blob[self.offsets[i] : self.offsets[i + 1]])
        return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _code_hash(*names: str) -> hashlib._Hash:
    h = hashlib.sha256()
    for name in names:
        h.update((sources.ROOT / name).read_bytes())
    h.update(f"{DATASET_VERSION}".encode())
    return h


_STORE: list[CropStore] = []


def crop_store(log: Callable[[str], None] = print) -> CropStore:
    """The crops of every crop source, cut once and cached under .cache/bench."""
    if _STORE:
        return _STORE[0]
    folder = sources.CACHE / "bench" / f"crops-{_code_hash('bench/collages.py', 'bench/dataset.py').hexdigest()[:16]}"
    if not (folder / "offsets.npy").exists():
        _, cropped = _roles()
        log(f"cutting {len(cropped)} photographs into crops")
        rng = np.random.default_rng([SEED, 3])
        crops: list[Crop] = []
        encoded: list[bytes] = []
        for path in cropped:
            image = _read(str(path))
            for crop in collages.crops_of(rng, str(path), image, *CROP_SIDES):
                crops.append(crop)
                encoded.append(jpeg(image[crop.y : crop.y + crop.h, crop.x : crop.x + crop.w], 95))
        order = rng.permutation(len(crops))  # mix the sources: consecutive collages get unrelated pictures
        crops = [crops[i] for i in order]
        encoded = [encoded[i] for i in order]
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "blob.npy", np.frombuffer(b"".join(encoded), np.uint8))
        (folder / "crops.json").write_text(json.dumps([asdict(c) for c in crops]))
        np.save(folder / "offsets.npy", np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64))
    _STORE.append(CropStore(folder))
    return _STORE[0]


# -- candidate references --------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, sides: tuple[int, int]) -> int:
    return int(np.exp(rng.uniform(np.log(sides[0]), np.log(sides[1]))))


def real_specs() -> list[ReferenceSpec]:
    """Every real reference candidate, in a fixed random order."""
    whole, _ = _roles()
    rng = np.random.default_rng([SEED, 1])
    return [
        ReferenceSpec(f"real-{n:05d}", whole[i][0], str(whole[i][1]), (), (), _log_uniform(rng, REAL_SIDES), 0)
        for n, i in enumerate(rng.permutation(len(whole)))
    ]


def generated_specs(count: int, store: CropStore) -> list[ReferenceSpec]:
    """The first `count` collage candidates; the same whatever `count` is (prefixes agree)."""
    rng = np.random.default_rng([SEED, 2])
    cursor = 0
    specs = []
    for n in range(count):
        form = str(rng.choice(collages.FORMS, p=collages.FORM_SHARES))
        pictures = int(rng.choice(collages.PICTURES_PER_FORM[form]))
        longer = _log_uniform(rng, GENERATED_SIDES)
        seed = int(rng.integers(2**31))
        if cursor + pictures <= len(store):
            ids = tuple(range(cursor, cursor + pictures))
            cursor += pictures
        else:
            form, ids = collages.TEXT_ONLY, ()
        specs.append(ReferenceSpec(f"gen-{n:06d}", form, None, tuple(store.crops[i] for i in ids), ids, longer, seed))
    return specs


# -- describing, cached in chunks -------------------------------------------------------------


@dataclass
class Described:
    spec: ReferenceSpec
    features: Features | None
    """None when the engine refused the reference."""
    baseline_points: np.ndarray | None
    """(K, 2) float32, or None where the baseline's descriptors were not computed."""
    baseline: np.ndarray | None
    """(K, 32) uint8 plain-ORB descriptors."""


def _describe_batch(args: tuple[list[ReferenceSpec], MatcherSettings, bool]) -> list[tuple]:
    specs, settings, with_baseline = args
    from bench.baseline import describe_reference as baseline_describe

    out = []
    for spec in specs:
        data = jpeg(render(spec), 92)
        try:
            features: Features | None = describe_reference_image(data, settings).features
        except PoorReference:
            features = None
        if features is not None and with_baseline:
            points, descriptors = baseline_describe(data)
        else:
            points, descriptors = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
        out.append((features, points, descriptors))
    return out


def _spec_from_json(s: dict) -> ReferenceSpec:
    return ReferenceSpec(**{**s, "crops": tuple(Crop(**c) for c in s["crops"]), "crop_ids": tuple(s["crop_ids"])})


def _save_chunk(path: Path, rows: list[Described], with_baseline: bool) -> None:
    kept = [r for r in rows if r.features is not None]
    empty_points, empty_descriptors = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    if not with_baseline:  # past BASELINE_CANDIDATES the rows hold no baseline descriptors at all
        kept = [dataclasses.replace(r, baseline_points=empty_points, baseline=empty_descriptors) for r in kept]
    np.savez(
        path.with_suffix(".npz"),
        lengths=np.array([len(r.features) for r in kept], np.int64),  # type: ignore[arg-type]
        sizes=np.array([[r.features.width, r.features.height] for r in kept], np.int64).reshape(-1, 2),  # type: ignore[union-attr]
        points=np.concatenate([empty_points] + [r.features.points for r in kept]),  # type: ignore[union-attr]
        descriptors=np.concatenate([empty_descriptors] + [r.features.descriptors for r in kept]),  # type: ignore[union-attr]
        angles=np.concatenate([np.zeros(0, np.uint8)] + [r.features.angles for r in kept]),  # type: ignore[union-attr,misc]
        patch_lengths=np.array([len(r.features.patch or b"") for r in kept], np.int64),  # type: ignore[union-attr]
        patches=np.frombuffer(b"".join(r.features.patch or b"" for r in kept), np.uint8),  # type: ignore[union-attr]
        base_lengths=np.array([len(r.baseline) for r in kept], np.int64),  # type: ignore[arg-type]
        base_points=np.concatenate([empty_points] + [r.baseline_points for r in kept]),  # type: ignore[misc]
        base_descriptors=np.concatenate([empty_descriptors] + [r.baseline for r in kept]),  # type: ignore[misc]
    )
    meta = {
        "specs": [asdict(r.spec) for r in rows],
        "accepted": [r.features is not None for r in rows],
        "baseline": with_baseline,
    }
    path.with_suffix(".json").write_text(json.dumps(meta))


def _load_chunk(path: Path) -> list[Described]:
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path.with_suffix(".npz")) as npz:
        a = {k: npz[k] for k in npz.files}  # each npz[k] reads the file again: read once
    ends, bends, pends = np.cumsum(a["lengths"]), np.cumsum(a["base_lengths"]), np.cumsum(a["patch_lengths"])
    rows, k = [], 0
    for s, accepted in zip(meta["specs"], meta["accepted"], strict=True):
        spec = _spec_from_json(s)
        if not accepted:
            rows.append(Described(spec, None, None, None))
            continue
        start, end = ends[k] - a["lengths"][k], ends[k]
        bstart, bend = bends[k] - a["base_lengths"][k], bends[k]
        w, h = a["sizes"][k]
        patch = a["patches"][pends[k] - a["patch_lengths"][k] : pends[k]].tobytes() or None
        features = Features(a["points"][start:end], a["descriptors"][start:end], int(w), int(h), a["angles"][start:end], patch)
        if meta["baseline"]:
            rows.append(Described(spec, features, a["base_points"][bstart:bend], a["base_descriptors"][bstart:bend]))
        else:
            rows.append(Described(spec, features, None, None))
        k += 1
    return rows


def _described(
    path: Path,
    specs: list[ReferenceSpec],
    settings: MatcherSettings,
    with_baseline: bool,
    processes: int,
    log: Callable[[str], None],
) -> list[Described]:
    if path.with_suffix(".json").exists():
        return _load_chunk(path)
    if any(s.crop_ids for s in specs):
        crop_store(log)  # cut before forking, so the workers share it
    batches = [specs[i : i + 25] for i in range(0, len(specs), 25)]
    rows: list[Described] = []
    # One image per process and no OpenCV threads, set here before forking and inherited: a child that
    # reconfigures a thread pool its parent had running (cutting the crops above starts one) hangs in it,
    # since the pool's threads were not copied.
    cv2.setNumThreads(1)
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for batch, results in zip(
            batches, pool.imap(_describe_batch, [(b, settings, with_baseline) for b in batches]), strict=True
        ):
            for spec, (features, points, descriptors) in zip(batch, results, strict=True):
                rows.append(
                    Described(spec, features, points if with_baseline else None, descriptors if with_baseline else None)
                )
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_chunk(path, rows, with_baseline)
    accepted = sum(r.features is not None for r in rows)
    log(f"  {path.name}: {accepted} of {len(rows)} accepted")
    return rows


def _cache_key(settings: MatcherSettings) -> str:
    """What the described references depend on: the description code and settings, not the
    rest of the engine (a change to search or tracking does not re-describe 10,000 images)."""
    h = _code_hash(
        "matcher/features.py",
        "matcher/decode.py",
        "bench/dataset.py",
        "bench/collages.py",
        "bench/baseline.py",
    )
    h.update(inspect.getsource(describe_reference_image).encode())
    # Of the alignment, only the copy each reference keeps: aligning differently re-describes nothing.
    h.update(f"{inspect.getsource(alignment.make_patch)} {alignment.PATCH_SIDE} {alignment.PATCH_JPEG_QUALITY}".encode())
    described_by = {
        name: value
        for name, value in dataclasses.asdict(settings).items()
        if name.startswith(("reference_", "min_reference_")) or name in ("grid_cells", "max_image_pixels")
    }
    h.update(repr(sorted(described_by.items())).encode())
    return h.hexdigest()[:16]


@dataclass
class Collection:
    """Described references, in the order collections are cut from (prefixes nest)."""

    specs: list[ReferenceSpec]
    features: list[Features]
    baseline: list[np.ndarray | None]
    """(K, 32) uint8 plain-ORB descriptors of each reference, for the baseline (None past BASELINE_CANDIDATES)."""
    baseline_points: list[np.ndarray | None]
    refused: dict[str, int]
    """References refused as too poor, per kind, among the candidates up to the last one used."""

    def references(self, count: int) -> list[Reference]:
        return [
            Reference(s.item, s.item, {"kind": s.kind}, f)
            for s, f in zip(self.specs[:count], self.features[:count], strict=True)
        ]

    def counts(self, count: int) -> dict[str, int]:
        """References per kind among the first `count`."""
        found = {k: 0 for k in KINDS}
        for s in self.specs[:count]:
            found[s.kind] += 1
        return {k: n for k, n in found.items() if n}


def build_collection(
    total: int, settings: MatcherSettings, processes: int = 2, log: Callable[[str], None] = print
) -> Collection:
    """Up to `total` accepted references: the stratified query targets, the other real photographs, then collages."""
    folder = sources.CACHE / "bench" / f"references-{_cache_key(settings)}"
    real = _described(folder / "real", real_specs(), settings, True, processes, log)
    rows: list[Described] = list(real)
    generated: list[Described] = []
    quota_left = dict(TARGET_QUOTAS)

    def accepted_count() -> int:
        return sum(r.features is not None for r in rows) + sum(r.features is not None for r in generated)

    def targets_filled() -> bool:
        found = {k: 0 for k in KINDS}
        for r in rows + generated:
            if r.features is not None:
                found[r.spec.kind] += 1
        return all(found[k] >= n for k, n in quota_left.items())

    specs: list[ReferenceSpec] = []
    chunk = 0
    while accepted_count() < total or not targets_filled():
        if not specs or len(specs) < (chunk + 1) * CHUNK:
            specs = generated_specs((chunk + 1 + 4) * CHUNK, crop_store(log))
        part = specs[chunk * CHUNK : (chunk + 1) * CHUNK]
        log(
            f"describing collages {chunk * CHUNK}-{(chunk + 1) * CHUNK} ({accepted_count()} of {total} references so far)"
        )
        generated += _described(
            folder / f"generated-{chunk:03d}", part, settings, chunk * CHUNK < BASELINE_CANDIDATES, processes, log
        )
        chunk += 1

    pool = [r for r in rows + generated if r.features is not None]
    targets: list[Described] = []
    by_kind = {k: [r for r in pool if r.spec.kind == k][:n] for k, n in TARGET_QUOTAS.items()}
    while any(by_kind.values()):  # interleave the kinds, so any prefix of the targets is a mix too
        for k in TARGET_QUOTAS:
            if by_kind[k]:
                targets.append(by_kind[k].pop(0))
    chosen = {r.spec.item for r in targets}
    ordered = targets + [r for r in pool if r.spec.item not in chosen and r.spec.origin == "real"]
    ordered += [r for r in pool if r.spec.item not in chosen and r.spec.origin == "generated"]
    ordered = ordered[:total]
    last_generated = max((int(r.spec.item[4:]) for r in ordered if r.spec.origin == "generated"), default=-1)
    refused = {k: 0 for k in KINDS}
    for r in rows + generated[: last_generated + 1]:
        if r.features is None:
            refused[r.spec.kind] += 1
    return Collection(
        [r.spec for r in ordered],
        [r.features for r in ordered],  # type: ignore[misc]
        [r.baseline for r in ordered],
        [r.baseline_points for r in ordered],
        {k: n for k, n in refused.items() if n},
    )
