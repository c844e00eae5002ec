"""Manage collections from the command line: add, import, list, remove, recognize; scan videos.

The command line writes straight to the collection store, one atomic
transaction per item, so a running server picks every change up from the
store's change log within milliseconds. Reference images go through the same
`prepare_reference` as uploads to the server, so an image is refused or stored
the same way whichever way it came in.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import redis
import yaml
from tqdm import tqdm

from matcher.embedded_redis import RedisStartError, start_or_reuse
from matcher.scan_store import ScanJob, ScanStore
from matcher.settings import MatcherSettings
from matcher.store import (
    InvalidName,
    NotFound,
    RedisCollectionStore,
    StoreError,
    StoreUnavailable,
    check_collection_name,
    check_item_id,
)

if TYPE_CHECKING:
    from matcher.recognizer import PoorReference
    from matcher.worker import PreparedReference

# OpenCV and FAISS (matcher.decode, matcher.recognizer, matcher.worker) are imported
# by the commands that describe or recognize images only: list and remove start at once.

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
PROG = "python -m matcher"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A problem the user can fix; printed as one line, never as a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# -- settings -------------------------------------------------------------------


@dataclass(frozen=True)
class CliSettings:
    """What the command line needs of the server's settings (same names, same defaults)."""

    matcher: MatcherSettings = dataclasses.field(default_factory=MatcherSettings)
    data_dir: str = "var"
    redis_url: str = ""
    redis_prefix: str = "cl"
    thumbnail_side: int = 320
    max_name_length: int = 200
    max_metadata_bytes: int = 16 << 10
    scan_sample_rate: float = 2.0
    scan_max_gap: int = 1
    scan_webhook_url: str = ""


_SERVER_KEYS = (
    "data_dir",
    "redis_url",
    "redis_prefix",
    "thumbnail_side",
    "max_name_length",
    "max_metadata_bytes",
    "scan_sample_rate",
    "scan_max_gap",
    "scan_webhook_url",
)


def _coerce(value: Any, default: Any, name: str) -> Any:
    """`value` as the type of `default` (config files and the environment give strings and lists)."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            return tuple(float(v) for v in value)
        return "" if value is None else str(value)
    except (TypeError, ValueError):
        raise CliError(f"setting {name}: {value!r} is not a valid {type(default).__name__}") from None


def load_settings(path: Path | None, env: Mapping[str, str]) -> CliSettings:
    """The `server` keys the command line uses and the whole `matcher` section of config.yaml, then the environment.

    Precedence matches the server: defaults < config.yaml < environment (< command-line flags, applied by the caller).
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise CliError(f"cannot read the settings file {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise CliError(f"the settings file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise CliError(f"the settings file {path} must be a mapping of sections")
    server = dict(data.get("server") or {})
    matcher = dict(data.get("matcher") or {})
    matcher_defaults = {f.name: getattr(MatcherSettings(), f.name) for f in dataclasses.fields(MatcherSettings)}
    unknown = set(matcher) - set(matcher_defaults)
    if unknown:
        raise CliError(f"unknown setting(s) in matcher section of {path}: {', '.join(sorted(unknown))}")
    for name in matcher_defaults:
        if f"CATCHLIGHT_MATCHER_{name.upper()}" in env:
            matcher[name] = env[f"CATCHLIGHT_MATCHER_{name.upper()}"]
    for name in _SERVER_KEYS:
        if f"CATCHLIGHT_{name.upper()}" in env:
            server[name] = env[f"CATCHLIGHT_{name.upper()}"]
    if env.get("REDIS_URL"):
        server["redis_url"] = env["REDIS_URL"]
    defaults = CliSettings()
    return CliSettings(
        matcher=MatcherSettings(**{k: _coerce(v, matcher_defaults[k], f"matcher.{k}") for k, v in matcher.items()}),
        **{k: _coerce(server[k], getattr(defaults, k), f"server.{k}") for k in _SERVER_KEYS if k in server},
    )


def settings_from_args(args: argparse.Namespace) -> CliSettings:
    path: Path | None = args.config
    if path is None and (ROOT / "config.yaml").exists():
        path = ROOT / "config.yaml"
    settings = load_settings(path, os.environ)
    overrides = {"data_dir": args.data_dir, "redis_url": args.redis_url, "redis_prefix": args.prefix}
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


# -- the store --------------------------------------------------------------------


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def open_store(settings: CliSettings) -> Iterator[RedisCollectionStore]:
    """The configured store, or the local one under the data directory (reused if a server runs there)."""
    embedded = None
    url = settings.redis_url
    if not url:
        try:
            embedded = start_or_reuse(Path(settings.data_dir))
        except (RedisStartError, OSError) as exc:
            raise CliError(f"could not start the local store under {settings.data_dir}/redis: {exc}") from None
        url = embedded.url
    try:
        try:
            store = RedisCollectionStore.from_url(url, settings.redis_prefix)
            store.redis.ping()
        except (redis.RedisError, ValueError) as exc:
            raise CliError(
                f"the collection store at {_redacted(url)} is unreachable ({exc}); "
                "check --redis-url / REDIS_URL, or leave it unset to use the local store in --data-dir"
            ) from None
        yield store
    finally:
        if embedded is not None:
            embedded.stop()


# -- names and metadata (the same rules as the HTTP API) -------------------------------


def check_name(name: Any, settings: CliSettings) -> str:
    if not isinstance(name, str):
        raise CliError(f"the name must be text, not {json.dumps(name)}")
    if not name.strip():
        raise CliError("a name is required: a short text naming the item")
    if len(name) > settings.max_name_length:
        raise CliError(f"the name is longer than {settings.max_name_length} characters")
    return name.strip()


def check_metadata(metadata: Any, settings: CliSettings) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise CliError("metadata must be a JSON object, e.g. '{\"price\": 12}'")
    size = len(json.dumps(metadata, separators=(",", ":")).encode())
    if size > settings.max_metadata_bytes:
        raise CliError(f"metadata is {size} bytes as JSON, the limit is {settings.max_metadata_bytes}")
    return metadata


def parse_metadata_option(text: str) -> Any:
    """--metadata: a JSON object, or @FILE holding one."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise CliError(f"cannot read metadata file {text[1:]}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"--metadata is not valid JSON: {exc}") from None


def default_name(path: Path) -> str:
    return path.stem.replace("_", " ")


def item_id_for(relative_path: str) -> str:
    """A stable item id for an imported file: a readable slug of its path plus a short hash of it.

    Importing the same folder again replaces items instead of duplicating them;
    the hash keeps paths that slug alike (`a b.jpg`, `a_b.jpg`, `a.png`) apart.
    """
    stem = PurePosixPath(relative_path).with_suffix("").as_posix()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-").lower()[:48].strip("-") or "image"
    digest = hashlib.sha1(relative_path.encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


def read_image_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise CliError(f"{path} is a folder; use `{PROG} import COLLECTION {path}` for folders") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


def _checked_collection(name: str) -> str:
    try:
        return check_collection_name(name)
    except StoreError as exc:
        raise CliError(f"invalid collection name {name!r}: {exc}") from None


def _poor_reason(exc: PoorReference) -> str:
    return f"{exc} (quality {exc.quality:.2f})"


def _print_json(value: Any, out: TextIO) -> None:
    json.dump(value, out, indent=2, ensure_ascii=False)
    out.write("\n")


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _short(text: str, length: int = 40) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


# -- add --------------------------------------------------------------------------------


def cmd_add(args: argparse.Namespace, settings: CliSettings, out: TextIO) -> int:
    collection = _checked_collection(args.collection)
    if args.item is not None:
        try:
            check_item_id(args.item)
        except StoreError as exc:
            raise CliError(f"invalid item id {args.item!r}: {exc}") from None
    path = Path(args.image)
    name = check_name(args.name if args.name is not None else default_name(path), settings)
    metadata = check_metadata(parse_metadata_option(args.metadata) if args.metadata else None, settings)
    data = read_image_file(path)
    from matcher.decode import ImageError
    from matcher.recognizer import PoorReference
    from matcher.worker import prepare_reference

    try:
        prepared = prepare_reference(data, settings.matcher, settings.thumbnail_side)
    except ImageError as exc:
        raise CliError(f"{path} is not a usable image: {exc.message}") from None
    except PoorReference as exc:
        raise CliError(f"{path} is too poor a reference: {_poor_reason(exc)}") from None
    with open_store(settings) as store:
        item = store.put_item(
            collection, name, metadata, prepared.features, prepared.quality, prepared.thumbnail, args.item
        )
    if args.json:
        _print_json(item.to_wire(), out)
    else:
        out.write(
            f"Added item {item.item} to {collection}: {item.name!r}, {item.width}x{item.height}, "
            f"{item.keypoints} keypoints, quality {item.quality:.2f}\n"
        )
    return EXIT_OK


# -- import ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportTask:
    path: str
    relative: str
    item: str
    name: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ImportOutcome:
    task: ImportTask
    prepared: PreparedReference | None
    reason: str = ""
    crashed: bool = False
    """Failed for a reason that is not the file's fault (a bug, not a bad image)."""


def find_images(folder: Path, recursive: bool) -> list[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for path in candidates:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue  # hidden files and folders (.git, editor swap files)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def read_sidecar(image: Path, settings: CliSettings) -> tuple[str, dict[str, Any]]:
    """Name and metadata for `image` from `<stem>.json` next to it, if there is one.

    Two forms: {"name": ..., "metadata": {...}} when those are its only keys, else
    {"name": ..., any other key: ...} where every key but name is metadata.
    """
    sidecar = image.with_suffix(".json")
    if not sidecar.is_file():
        return check_name(default_name(image), settings), {}
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {sidecar.name}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"{sidecar.name} is not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise CliError(f"{sidecar.name} must hold a JSON object")
    name = info.pop("name", default_name(image))
    if set(info) == {"metadata"} and isinstance(info["metadata"], dict):
        info = info["metadata"]
    try:
        return check_name(name, settings), check_metadata(info, settings)
    except CliError as exc:
        raise CliError(f"{sidecar.name}: {exc.message}") from None


_pool_settings: CliSettings | None = None


def _init_pool_worker(settings: CliSettings) -> None:
    global _pool_settings
    _pool_settings = settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled once, by the parent
    import cv2

    cv2.setNumThreads(1)  # one image per process is faster than threads fighting over the cores


def prepare_import(task: ImportTask) -> ImportOutcome:
    """Read and describe one file; every failure becomes an outcome with the reason."""
    from matcher.decode import ImageError
    from matcher.recognizer import PoorReference
    from matcher.worker import prepare_reference

    settings = _pool_settings or CliSettings()
    try:
        data = Path(task.path).read_bytes()
        prepared = prepare_reference(data, settings.matcher, settings.thumbnail_side)
    except OSError as exc:
        return ImportOutcome(task, None, f"cannot read the file: {exc.strerror or exc}")
    except ImageError as exc:
        return ImportOutcome(task, None, exc.message)
    except PoorReference as exc:
        return ImportOutcome(task, None, _poor_reason(exc))
    except Exception as exc:  # a bug, not a bad file: report it and fail the run
        return ImportOutcome(task, None, f"unexpected {type(exc).__name__}: {exc}", crashed=True)
    return ImportOutcome(task, prepared)


@contextmanager
def _described(tasks: list[ImportTask], jobs: int, settings: CliSettings) -> Iterator[Iterator[ImportOutcome]]:
    """Outcomes of `tasks` as they finish, from `jobs` processes started on entry.

    concurrent.futures rather than multiprocessing.Pool: when a worker dies (killed
    for memory, a crash in an image library) it fails the pending results with
    BrokenProcessPool, where Pool would wait for them forever.
    """
    if jobs <= 1 or len(tasks) <= 1:
        global _pool_settings
        _pool_settings = settings
        yield map(prepare_import, tasks)
        return
    # Forked workers (the default here) are safe because this process has run no OpenCV
    # code yet: forking after OpenCV's thread pool has worked can deadlock the children.
    # Importing the engine first lets every worker inherit it instead of importing it again.
    import matcher.worker  # noqa: F401

    executor = ProcessPoolExecutor(min(jobs, len(tasks)), initializer=_init_pool_worker, initargs=(settings,))
    try:
        futures = {executor.submit(prepare_import, task): task for task in tasks}
        yield _as_finished(futures)
    finally:
        # Waiting joins the pool's manager thread here. Left running (wait=False) after a worker died,
        # it may still be closing its wake-up pipe when the interpreter exits, and Python's exit hook
        # then writes to it: an "Exception ignored ... Bad file descriptor" traceback after the
        # command's own report (CPython gh-132969). Unfinished tasks are cancelled; those running
        # take a second at most.
        executor.shutdown(wait=True, cancel_futures=True)


def _as_finished(futures: dict[Future[ImportOutcome], ImportTask]) -> Iterator[ImportOutcome]:
    for future in as_completed(futures):
        try:
            yield future.result()
        except BrokenProcessPool:
            yield ImportOutcome(
                futures[future],
                None,
                "not imported: a describing process died (out of memory, or a crash reading an image); "
                "run the import again to retry",
                crashed=True,
            )
        except Exception as exc:  # e.g. a result that could not be sent back
            yield ImportOutcome(futures[future], None, f"unexpected {type(exc).__name__}: {exc}", crashed=True)


def _store_imported(
    store: RedisCollectionStore, collection: str, task: ImportTask, prepared: PreparedReference
) -> dict[str, Any]:
    try:
        item = store.put_item(
            collection, task.name, task.metadata, prepared.features, prepared.quality, prepared.thumbnail, task.item
        )
    except StoreUnavailable as exc:
        raise CliError(
            f"{exc} while storing {task.relative}; every image stored before it is complete, "
            "run the same import again to finish"
        ) from None
    return {"file": task.relative, **item.to_wire()}


def cmd_import(args: argparse.Namespace, settings: CliSettings, out: TextIO) -> int:
    collection = _checked_collection(args.collection)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder" + ("" if folder.exists() else " (it does not exist)"))
    images = find_images(folder, args.recursive)
    if not images:
        hint = "" if args.recursive else " (add --recursive to look in subfolders)"
        raise CliError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}{hint}")

    skipped: list[tuple[str, str]] = []
    crashed: list[tuple[str, str]] = []
    tasks = []
    for path in images:
        relative = path.relative_to(folder).as_posix()
        try:
            name, metadata = read_sidecar(path, settings)
        except CliError as exc:
            skipped.append((relative, exc.message))
            continue
        tasks.append(ImportTask(str(path), relative, item_id_for(relative), name, metadata))

    imported: list[dict[str, Any]] = []
    replaced = 0
    with open_store(settings) as store:
        existing = {i.item for i in store.list_items(collection)} if store.has_collection(collection) else set()
        started = time.perf_counter()
        with _described(tasks, args.jobs, settings) as outcomes:
            bar = tqdm(
                total=len(images),
                initial=len(images) - len(tasks),
                unit="img",
                desc=f"import {collection}",
                disable=True if args.quiet else None,  # None: only on a terminal
            )
            try:
                for outcome in outcomes:
                    if outcome.prepared is None:
                        (crashed if outcome.crashed else skipped).append((outcome.task.relative, outcome.reason))
                    else:
                        imported.append(_store_imported(store, collection, outcome.task, outcome.prepared))
                        replaced += outcome.task.item in existing
                    bar.update()
            finally:
                bar.close()
        elapsed = time.perf_counter() - started

    order = {path.relative_to(folder).as_posix(): i for i, path in enumerate(images)}
    imported.sort(key=lambda i: order[i["file"]])
    skipped.sort(key=lambda s: order[s[0]])
    if args.json:
        _print_json(
            {
                "collection": collection,
                "imported": imported,
                "skipped": [{"file": f, "reason": r} for f, r in skipped],
                "failed": [{"file": f, "reason": r} for f, r in crashed],
                "seconds": round(elapsed, 3),
            },
            out,
        )
    else:
        rate = len(tasks) / elapsed if elapsed > 0 else 0.0
        out.write(
            f"Imported {len(imported)} of {len(images)} images into {collection} "
            f"({len(imported) - replaced} new, {replaced} replaced) in {elapsed:.1f} s, {rate:.1f} images/s\n"
        )
        if skipped:
            out.write(f"Skipped {len(skipped)}:\n")
            for file, reason in skipped:
                out.write(f"  {file}: {reason}\n")
        if crashed:
            out.write(f"Failed unexpectedly on {len(crashed)} (please report):\n")
            by_reason: dict[str, list[str]] = {}
            for file, reason in crashed:
                by_reason.setdefault(reason, []).append(file)
            for reason, files in by_reason.items():
                shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
                out.write(f"  {shown}: {reason}\n")
    if crashed or not imported:
        return EXIT_FAILED
    return EXIT_OK


# -- list ----------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, settings: CliSettings, out: TextIO) -> int:
    if args.collection is None:
        with open_store(settings) as store:
            summaries = store.collections()
        if args.json:
            _print_json({"collections": [s.to_wire() for s in summaries]}, out)
        elif not summaries:
            out.write(f"No collections yet. Add an image with: {PROG} add COLLECTION IMAGE\n")
        else:
            _table([("COLLECTION", "ITEMS")] + [(s.name, str(s.items)) for s in summaries], out)
        return EXIT_OK
    collection = _checked_collection(args.collection)
    with open_store(settings) as store:
        items = store.list_items(collection)
    if args.json:
        _print_json({"collection": collection, "items": [i.to_wire() for i in items]}, out)
    elif not items:
        out.write(f"Collection {collection} is empty.\n")
    else:
        rows = [("ITEM", "NAME", "KEYPOINTS", "QUALITY", "SIZE")]
        rows += [(i.item, _short(i.name), str(i.keypoints), f"{i.quality:.2f}", f"{i.width}x{i.height}") for i in items]
        _table(rows, out)
    return EXIT_OK


# -- remove ----------------------------------------------------------------------------------


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def cmd_remove(args: argparse.Namespace, settings: CliSettings, out: TextIO) -> int:
    collection = _checked_collection(args.collection)
    if args.all == bool(args.items):
        raise CliError("name the item(s) to remove, or give --all to remove the whole collection", EXIT_USAGE)
    with open_store(settings) as store:
        if args.all:
            if not store.has_collection(collection):
                raise NotFound(f"no collection {collection}")
            count = len(store.list_items(collection))
            if not args.yes and not _confirm(f"Remove collection {collection} and its {count} items?"):
                raise CliError(f"not removing collection {collection} ({count} items): confirm with --yes")
            store.delete_collection(collection)
            out.write(f"Removed collection {collection} and its {count} items.\n")
            return EXIT_OK
        missing = []
        for item in args.items:
            try:
                store.delete_item(collection, item)
                out.write(f"Removed item {item} from {collection}.\n")
            except NotFound:
                missing.append(item)
            except InvalidName as exc:
                raise CliError(f"invalid item id {item!r}: {exc}") from None
        if missing:
            known = "" if store.has_collection(collection) else f" (there is no collection {collection})"
            raise CliError(f"no item {', '.join(missing)} in collection {collection}{known}")
    return EXIT_OK


# -- recognize ----------------------------------------------------------------------------------


def cmd_recognize(args: argparse.Namespace, settings: CliSettings, out: TextIO) -> int:
    collection = _checked_collection(args.collection)
    path = Path(args.image)
    data = read_image_file(path)
    with open_store(settings) as store:
        if not store.has_collection(collection):
            raise NotFound(f"no collection {collection}")
        references = list(store.references(collection))
    from matcher.decode import ImageError
    from matcher.recognizer import Recognizer

    recognizer = Recognizer(settings.matcher)
    recognizer.load(collection, references)
    try:
        result = recognizer.recognize(collection, data)
    except ImageError as exc:
        raise CliError(f"{path} is not a usable image: {exc.message}") from None
    matches = [m.to_wire() for m in result.matches]
    if args.json:
        _print_json({"width": result.width, "height": result.height, "items": matches, "timing": result.timing}, out)
        return EXIT_OK
    found = f"{len(matches)} item{'' if len(matches) == 1 else 's'}" if matches else "nothing"
    out.write(
        f"Found {found} of {collection} ({len(references)} references) in {path.name} "
        f"({result.width}x{result.height}) in {result.timing.get('match_ms', 0):.0f} ms\n"
    )
    for match in matches:
        corners = " ".join(f"({x:.1f}, {y:.1f})" for x, y in match["corners"])
        out.write(f"  {match['item']}  {match['name']!r}  score {match['score']:.2f}, {match['inliers']} inliers\n")
        out.write(f"    corners (TL TR BR BL): {corners}\n")
    return EXIT_OK


# -- scan ----------------------------------------------------------------------------------


def _seconds(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}" if t >= 60 else f"{t:.1f} s"


def cmd_scan(args: argparse.Namespace, settings: CliSettings, out: TextIO) -> int:
    import cv2
    import faiss

    from matcher.scan_worker import cli_runner_id, notify, run_scan

    # One thread each, as in the workers: frames are processed one after the other, and OpenMP
    # threads spinning for work cost far more than they give on a few cores (7x slower on 2).
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    collection = _checked_collection(args.collection)
    path = Path(args.video).resolve()
    if not path.is_file():
        raise CliError(f"{args.video}: no such file")
    rate = settings.scan_sample_rate if args.sample_rate is None else args.sample_rate
    if not 0 < rate <= 60:
        raise CliError("--sample-rate must be above 0 and at most 60 frames per second", EXIT_USAGE)
    with open_store(settings) as store:
        if not store.has_collection(collection):
            raise NotFound(f"no collection {collection}")
        scans = ScanStore(store.redis, settings.redis_prefix)
        # Recorded like a server scan (GET /v1/scans and the scans page show it); the file is the user's, never deleted.
        job = ScanJob.new(collection, path.name, str(path), True, rate, settings.scan_max_gap, cli_runner_id())
        scans.create(job, enqueue=False)
        bar = tqdm(total=0, unit="frame", desc=f"scan {path.name}", disable=True if args.quiet else None)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        started = time.perf_counter()
        try:
            run_scan(job, store, scans, settings.matcher, on_progress=progress)
        except KeyboardInterrupt:
            scans.finish(job.scan, "failed", {"code": "interrupted", "message": "the scan was interrupted"})
            raise
        finally:
            bar.close()
        elapsed = time.perf_counter() - started
        notify(scans, job.scan, settings.scan_webhook_url)
        record = scans.get(job.scan)
    body = record.to_wire()
    if args.json:
        _print_json(body, out)
    if record.state != "done":
        error = record.error or {}
        raise CliError(f"{path.name}: {error.get('message', 'the scan failed')} ({error.get('code', 'failed')})")
    if args.json:
        return EXIT_OK
    video = record.video or {}
    duration = float(video.get("duration") or 0.0)
    speed = f", {duration / elapsed:.1f} video-seconds per second" if elapsed > 0 and duration else ""
    out.write(
        f"Scanned {path.name} ({_seconds(duration)}, {record.samples_done} frames at {record.sample_rate:g} per second) "
        f"against {collection} in {elapsed:.1f} s{speed}; scan {job.scan}\n"
    )
    timelines = record.timelines()
    if not timelines:
        out.write("No item of the collection was seen.\n")
    for timeline in timelines:
        ranges = ", ".join(
            f"{_seconds(a.start)}-{_seconds(a.end)} (peak {a.peak_score:.2f} at {_seconds(a.peak_time)})"
            for a in timeline.appearances
        )
        out.write(f"  {timeline.name} [{timeline.item}]: {ranges}\n")
    return EXIT_OK


# -- entry point -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    store_options = argparse.ArgumentParser(add_help=False)
    group = store_options.add_argument_group("store")
    group.add_argument(
        "--data-dir",
        default=None,
        help="data directory of the local store: the one a server started there is reused, "
        "else one is started for this command (default: $CATCHLIGHT_DATA_DIR, config.yaml, or ./var)",
    )
    group.add_argument(
        "--redis-url", default=None, help="use this Redis-protocol server instead (default: $REDIS_URL, config.yaml)"
    )
    group.add_argument("--prefix", default=None, help="key prefix in the store (default: cl)")
    group.add_argument(
        "--config", type=Path, default=None, help="settings file (default: config.yaml of the project, if present)"
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage Catchlight collections: reference images and what a recognized item carries. "
        "Changes reach a running server within a second.",
        epilog="Exit status: 0 on success, 1 on an error (message on stderr), 2 on a usage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = commands.add_parser(
        "add", parents=[store_options], help="add one reference image", description="Add one reference image."
    )
    add.add_argument("collection", metavar="COLLECTION")
    add.add_argument("image", metavar="IMAGE", help="JPEG, PNG, WebP, BMP or TIFF file")
    add.add_argument("--name", help="name shown when it is recognized (default: the file name)")
    add.add_argument("--metadata", metavar="JSON", help="a JSON object carried with the item, or @FILE holding one")
    add.add_argument("--item", metavar="ID", help="item id to use; an existing item with this id is replaced")
    add.add_argument("--json", action="store_true", help="print the stored item as JSON")
    add.set_defaults(run=cmd_add)

    imp = commands.add_parser(
        "import",
        parents=[store_options],
        help="import every image of a folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Import every image file (jpg, jpeg, png, webp, bmp, tif, tiff) of a folder.",
        epilog="""\
Names and metadata come from an optional sidecar next to each image: NAME.json
for NAME.jpg. Either form works:
  {"name": "Rocket", "caption": "Falcon 9", "price": 12}   every key but name is metadata
  {"name": "Rocket", "metadata": {"caption": "Falcon 9"}}  when name and metadata are its only keys
Without a sidecar the name is the file name (underscores as spaces) and there is no metadata.

Each file becomes the item whose id is derived from its path inside FOLDER, so
importing the same folder again replaces those items instead of adding copies.
Files that cannot be used (unreadable, not an image, too few features, bad
sidecar) are skipped and listed at the end with the reason.

Exit status: 0 when at least one image was imported and none failed
unexpectedly (skipped files do not count); 1 when nothing could be imported,
an image failed unexpectedly, or the store could not be reached.""",
    )
    imp.add_argument("collection", metavar="COLLECTION")
    imp.add_argument("folder", metavar="FOLDER")
    imp.add_argument("-r", "--recursive", action="store_true", help="also import images in subfolders")
    imp.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes describing images in parallel (default: one per core, %(default)s here)",
    )
    imp.add_argument("-q", "--quiet", action="store_true", help="no progress bar (it shows on a terminal only)")
    imp.add_argument("--json", action="store_true", help="print the report as JSON")
    imp.set_defaults(run=cmd_import)

    lst = commands.add_parser(
        "list",
        parents=[store_options],
        help="list collections, or the items of one",
        description="List the collections with their item counts, or the items of COLLECTION.",
    )
    lst.add_argument("collection", metavar="COLLECTION", nargs="?")
    lst.add_argument("--json", action="store_true", help="print JSON (the HTTP API's shape)")
    lst.set_defaults(run=cmd_list)

    rem = commands.add_parser(
        "remove",
        parents=[store_options],
        help="remove items, or a whole collection",
        description="Remove items of COLLECTION, or the whole collection with --all.",
    )
    rem.add_argument("collection", metavar="COLLECTION")
    rem.add_argument("items", metavar="ITEM", nargs="*", help="item id(s), as shown by list")
    rem.add_argument("--all", action="store_true", help="remove the whole collection and all its items")
    rem.add_argument("-y", "--yes", action="store_true", help="do not ask before removing a whole collection")
    rem.set_defaults(run=cmd_remove)

    rec = commands.add_parser(
        "recognize",
        parents=[store_options],
        help="find a collection's items in a photo",
        description="Find the items of COLLECTION in a photo, with their corners in the photo and a score.",
    )
    rec.add_argument("collection", metavar="COLLECTION")
    rec.add_argument("image", metavar="IMAGE")
    rec.add_argument("--json", action="store_true", help="print JSON (the shape of POST /v1/recognize)")
    rec.set_defaults(run=cmd_recognize)

    scan = commands.add_parser(
        "scan",
        parents=[store_options],
        help="find where a collection's items appear in a video",
        description="Sample VIDEO (any format OpenCV/FFmpeg decodes) and report, for each item of the collection, "
        "the time ranges in which it appears, with its peak score. The scan is recorded in the store like one "
        "made through the server (GET /v1/scans); the video file is left untouched.",
    )
    scan.add_argument("video", metavar="VIDEO")
    scan.add_argument("-c", "--collection", required=True, help="the collection to look for")
    scan.add_argument(
        "--sample-rate", type=float, default=None, metavar="FPS", help="frames looked at per second (default: config, 2)"
    )
    scan.add_argument("-q", "--quiet", action="store_true", help="no progress bar (it shows on a terminal only)")
    scan.add_argument("--json", action="store_true", help="print the scan as JSON (the shape of GET /v1/scans/{scan})")
    scan.set_defaults(run=cmd_scan)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        code: int = args.run(args, settings, out)
        return code
    except CliError as exc:
        print(f"{PROG} {args.command}: error: {exc.message}", file=sys.stderr)
        return exc.code
    except NotFound as exc:
        print(f"{PROG} {args.command}: error: {exc} (see `{PROG} list`)", file=sys.stderr)
        return EXIT_FAILED
    except StoreError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted (every item stored so far is complete)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); stay quiet like other command-line tools.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
