"""The benchmark's references and backgrounds, chosen deterministically from the cached photographs.

Real references are whole photographs; generated references are
non-overlapping tiles of large photographs (wallpapers, astrophotos, space
backdrops), some with a printed caption, because the packages hold about a
thousand distinct photographs and the largest collection needs ten times
that. Every reference is uploaded at its own size (thumbnails to 2,400-px
scans) as a JPEG, through the same `describe_reference_image` the server uses;
references the engine refuses as too poor are counted and skipped.

Backgrounds come from a held-out fifth of the landscape photos, never from a
reference's source.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from bench import sources
from bench.scenes import jpeg
from matcher.model import Features, Reference
from matcher.recognizer import PoorReference, describe_reference_image
from matcher.settings import MatcherSettings

DATASET_VERSION = 4
TILE = (160, 120)
CAPTION_WORDS = (
    "ALPINE", "HARBOUR", "SUMMIT", "EXPO", "GALLERY", "NORTH", "MARKET", "VOYAGE", "ATLAS", "RIVER",
    "ORCHARD", "CINEMA", "SALE", "TICKET", "MUSEUM", "FESTIVAL", "LIBRARY", "STATION", "GARDEN", "CANYON",
)


@dataclass(frozen=True)
class ReferenceSpec:
    """How to render one reference image from the cached sources."""

    item: str
    kind: str
    """'real' (a whole photograph) or 'generated' (a tile of a large photograph)."""
    source: str
    crop: tuple[int, int, int, int] | None
    """x, y, w, h of the tile in the source, or None for the whole photograph."""
    longer_side: int
    """The uploaded image's longer side in pixels."""
    caption: str | None


def _read(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise sources.SourceUnavailable(f"cannot read {path}")
    return image


def render(spec: ReferenceSpec, source: np.ndarray | None = None) -> np.ndarray:
    """The reference image as uploaded: BGR uint8."""
    image = _read(spec.source) if source is None else source
    if spec.crop is not None:
        x, y, w, h = spec.crop
        image = image[y : y + h, x : x + w]
    h, w = image.shape[:2]
    f = spec.longer_side / max(w, h)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
    if spec.caption:
        image = image.copy()
        h, w = image.shape[:2]
        scale = w / 420.0
        thickness = max(1, round(2 * scale))
        (tw, th), _ = cv2.getTextSize(spec.caption, cv2.FONT_HERSHEY_DUPLEX, scale, thickness)
        y0 = h - th - round(14 * scale)
        cv2.rectangle(image, (0, y0 - round(8 * scale)), (w, h), (245, 245, 245), -1)
        cv2.putText(image, spec.caption, (round(10 * scale), h - round(10 * scale)), cv2.FONT_HERSHEY_DUPLEX, scale, (30, 30, 30), thickness, cv2.LINE_AA)
    return image


def _real_candidates(rng: np.random.Generator, backgrounds: set[str]) -> list[ReferenceSpec]:
    paths = [p for p in sources.landscape_photos() if str(p) not in backgrounds]
    paths += sources.painting_photos() + sources.nebula_photos()
    specs = []
    for i in rng.permutation(len(paths)):
        longer = int(np.exp(rng.uniform(np.log(240), np.log(2400))))
        specs.append(ReferenceSpec(f"real-{len(specs):05d}", "real", str(paths[i]), None, longer, None))
    return specs


def _tile_candidates(rng: np.random.Generator) -> list[ReferenceSpec]:
    from PIL import Image

    big = sources.wallpaper_photos() + [
        p for p in sources.nebula_photos() + sources.space_backdrops() if min(Image.open(p).size) >= 900
    ]
    tw, th = TILE
    specs = []
    for path in big:
        w, h = Image.open(path).size
        for y in range(0, h - th + 1, th):
            for x in range(0, w - tw + 1, tw):
                specs.append((str(path), (x, y, tw, th)))
    order = rng.permutation(len(specs))
    out = []
    for n, i in enumerate(order):
        path, crop = specs[i]
        longer = int(np.exp(rng.uniform(np.log(200), np.log(1200))))
        caption = None
        if rng.random() < 0.5:
            caption = f"{CAPTION_WORDS[rng.integers(len(CAPTION_WORDS))]} {rng.integers(10, 1000)}"
        out.append(ReferenceSpec(f"gen-{n:06d}", "generated", path, crop, longer, caption))
    return out


def background_paths() -> list[str]:
    """Held-out photographs used only as frame backgrounds and distractors."""
    return [str(p) for p in sources.landscape_photos()[::5]]


@dataclass
class Collection:
    """Described references, in the order collections are cut from (prefixes nest)."""

    specs: list[ReferenceSpec]
    features: list[Features]
    baseline: list[np.ndarray]
    """(K, 32) uint8 plain-ORB descriptors of each reference, for the baseline."""
    baseline_points: list[np.ndarray]
    refused: dict[str, int]

    def references(self, count: int) -> list[Reference]:
        return [
            Reference(
                s.item,
                s.item,
                {"kind": s.kind},
                Features(f.points.copy(), f.descriptors.copy(), f.width, f.height),
            )
            for s, f in zip(self.specs[:count], self.features[:count], strict=True)
        ]


def _describe_group(args: tuple[list[ReferenceSpec], MatcherSettings]) -> list[tuple[ReferenceSpec, Features | None, np.ndarray, np.ndarray]]:
    specs, settings = args
    cv2.setNumThreads(1)
    from bench.baseline import describe_reference as baseline_describe

    out = []
    source = _read(specs[0].source)
    for spec in specs:
        data = jpeg(render(spec, source), 92)
        try:
            features: Features | None = describe_reference_image(data, settings).features
        except PoorReference:
            features = None
        points, descriptors = baseline_describe(data) if features is not None else (np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
        out.append((spec, features, points, descriptors))
    return out


def _cache_key(settings: MatcherSettings, total: int) -> str:
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for name in ("matcher/features.py", "matcher/decode.py", "matcher/recognizer.py", "bench/dataset.py", "bench/baseline.py"):
        h.update((root / name).read_bytes())
    h.update(repr(settings).encode())
    h.update(f"{DATASET_VERSION}/{total}".encode())
    return h.hexdigest()[:16]


def build_collection(total: int, settings: MatcherSettings, real_share_of_first: tuple[int, int] = (70, 100), processes: int = 2, log=print) -> Collection:
    """`total` accepted references: the first 100 mix real and generated, then all real ones, then tiles.

    Cached under .cache/bench by a hash of the feature code and settings.
    """
    cache = sources.CACHE / "bench" / f"collection-{_cache_key(settings, total)}"
    if (cache / "specs.json").exists():
        return _load(cache)
    rng = np.random.default_rng(20240611)
    backgrounds = set(background_paths())
    real = _real_candidates(rng, backgrounds)
    tiles = _tile_candidates(rng)
    real_first, first = real_share_of_first
    log(f"describing up to {len(real)} photographs and {len(tiles)} tiles for {total} references")

    accepted: dict[str, list] = {"real": [], "generated": []}
    refused = {"real": 0, "generated": 0}

    def describe(candidates: list[ReferenceSpec], need: int, kind: str) -> None:
        cursor = 0
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            while len(accepted[kind]) < need and cursor < len(candidates):
                batch = candidates[cursor : cursor + max(64, int((need - len(accepted[kind])) * 1.3))]
                cursor += len(batch)
                groups: dict[str, list[ReferenceSpec]] = {}
                for spec in batch:
                    groups.setdefault(spec.source, []).append(spec)
                results = {}
                for group in pool.imap_unordered(_describe_group, [(g, settings) for g in groups.values()]):
                    for spec, features, points, descriptors in group:
                        results[spec.item] = (spec, features, points, descriptors)
                for spec in batch:
                    _, features, points, descriptors = results[spec.item]
                    if features is None:
                        refused[kind] += 1
                    elif len(accepted[kind]) < need:
                        accepted[kind].append((spec, features, points, descriptors))
                log(f"  {kind}: {len(accepted[kind])} accepted, {refused[kind]} refused")

    describe(real, len(real), "real")
    n_real = len(accepted["real"])
    n_generated = max(total - n_real, first - real_first)
    describe(tiles, n_generated, "generated")
    if len(accepted["generated"]) < n_generated:
        log(f"only {len(accepted['generated'])} tiles were usable; the largest collection is smaller than asked")
    real_rows, gen_rows = accepted["real"], accepted["generated"]
    ordered = real_rows[:real_first] + gen_rows[: first - real_first] + real_rows[real_first:] + gen_rows[first - real_first :]
    ordered = ordered[:total]
    collection = Collection(
        [r[0] for r in ordered], [r[1] for r in ordered], [r[3] for r in ordered], [r[2] for r in ordered], refused
    )
    _save(cache, collection)
    return collection


def _save(folder: Path, c: Collection) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(f) for f in c.features])
    base_lengths = np.array([len(d) for d in c.baseline])
    np.savez(
        folder / "arrays.npz",
        lengths=lengths,
        sizes=np.array([[f.width, f.height] for f in c.features]),
        points=np.concatenate([f.points for f in c.features]),
        descriptors=np.concatenate([f.descriptors for f in c.features]),
        base_lengths=base_lengths,
        base_points=np.concatenate(c.baseline_points),
        base_descriptors=np.concatenate(c.baseline),
    )
    (folder / "specs.json").write_text(json.dumps({"specs": [asdict(s) for s in c.specs], "refused": c.refused}))


def _load(folder: Path) -> Collection:
    meta = json.loads((folder / "specs.json").read_text())
    specs = [ReferenceSpec(**{**s, "crop": tuple(s["crop"]) if s["crop"] else None}) for s in meta["specs"]]
    with np.load(folder / "arrays.npz") as npz:
        a = {k: npz[k] for k in npz.files}  # each npz[k] reads the file again: read once
    ends = np.cumsum(a["lengths"])
    starts = ends - a["lengths"]
    features = [
        Features(a["points"][s:e], a["descriptors"][s:e], int(w), int(h))
        for s, e, (w, h) in zip(starts, ends, a["sizes"], strict=True)
    ]
    bends = np.cumsum(a["base_lengths"])
    bstarts = bends - a["base_lengths"]
    baseline = [a["base_descriptors"][s:e] for s, e in zip(bstarts, bends, strict=True)]
    baseline_points = [a["base_points"][s:e] for s, e in zip(bstarts, bends, strict=True)]
    return Collection(specs, features, baseline, baseline_points, meta["refused"])
