"""The `python -m matcher` command line, run as a real subprocess against a real store.

A store is started once in a temporary data directory; every command reuses it
the way it reuses the store of a running server. The last test does exactly
that: it starts the server and checks that an item added from the command line
is recognized over HTTP within a second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from bench.scenes import corner_error, jpeg, paste, random_quad
from matcher.embedded_redis import EmbeddedRedis, start_or_reuse
from tests.conftest import RunningServer
from tests.videos import write_video

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / ".cache" / "demo"
CORNER_TOLERANCE_PX = 4.0

pytestmark = pytest.mark.timeout(120)


def run_cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "matcher", *args, "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def run_json(data_dir: Path, *args: str) -> Any:
    return json.loads(run_cli(data_dir, *args, "--json").stdout)


def demo_image(name: str) -> Path:
    path = DEMO / name
    if not path.exists():
        pytest.skip(f"demo images missing ({path}): run scripts/setup")
    return path


def scene_with(reference: Path, seed: int) -> tuple[bytes, np.ndarray]:
    """A 640x480 JPEG showing `reference` in perspective on a background that is in no collection."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    background = cv2.GaussianBlur(noise, (0, 0), 4)
    image = cv2.imread(str(reference), cv2.IMREAD_COLOR)
    assert image is not None, reference
    h, w = image.shape[:2]
    corners = random_quad(rng, w, h, 640, 480, size=(0.55, 0.7), rotation_deg=20, tilt_deg=30)
    return jpeg(paste(background, image, corners), 92), corners


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("data")
    store: EmbeddedRedis = start_or_reuse(directory)
    yield directory
    store.stop()


@pytest.fixture(scope="module")
def import_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three good images (two with sidecars, one per form), a corrupt file and a featureless one."""
    folder = tmp_path_factory.mktemp("import")
    shutil.copy(demo_image("coffee.png"), folder / "coffee.png")
    (folder / "coffee.json").write_text(json.dumps({"name": "Morning coffee", "price": 3.5, "tags": ["cup"]}))
    (folder / "posters").mkdir()
    shutil.copy(demo_image("rocket.jpg"), folder / "posters" / "rocket.jpg")
    (folder / "posters" / "rocket.json").write_text(json.dumps({"name": "Falcon", "metadata": {"stage": 2}}))
    shutil.copy(demo_image("brick.png"), folder / "brick_wall.png")
    write_bytes(folder / "corrupt.jpg", demo_image("rocket.jpg").read_bytes()[:300])
    cv2.imwrite(str(folder / "blank.png"), np.full((400, 400, 3), 128, np.uint8))
    (folder / "notes.txt").write_text("not an image, not imported")
    return folder


def test_added_item_is_listed_and_recognized_with_its_corners(data_dir: Path, tmp_path: Path) -> None:
    cat = demo_image("chelsea.png")
    added = run_json(data_dir, "add", "cards", str(cat), "--name", "Chelsea", "--metadata", '{"shelf": "A3"}')
    assert added["name"] == "Chelsea" and added["metadata"] == {"shelf": "A3"}
    assert added["keypoints"] >= 60 and 0 < added["quality"] <= 1

    listed = run_json(data_dir, "list", "cards")["items"]
    assert [i["item"] for i in listed] == [added["item"]]
    assert "Chelsea" in run_cli(data_dir, "list", "cards").stdout
    collections = run_json(data_dir, "list")["collections"]
    assert {"collection": "cards", "items": 1} in [{k: c[k] for k in ("collection", "items")} for c in collections]

    photo, truth = scene_with(cat, seed=3)
    found = run_json(data_dir, "recognize", "cards", str(write_bytes(tmp_path / "photo.jpg", photo)))
    assert [m["item"] for m in found["items"]] == [added["item"]]
    assert corner_error(found["items"][0]["corners"], truth) < CORNER_TOLERANCE_PX
    text = run_cli(data_dir, "recognize", "cards", str(tmp_path / "photo.jpg")).stdout
    assert "Chelsea" in text and "score" in text and "corners" in text


def test_recognize_finds_nothing_in_an_unrelated_photo(data_dir: Path, tmp_path: Path) -> None:
    run_cli(data_dir, "add", "unrelated", str(demo_image("astronaut.png")))
    photo, _ = scene_with(demo_image("motorcycle_left.png"), seed=5)
    found = run_json(data_dir, "recognize", "unrelated", str(write_bytes(tmp_path / "moto.jpg", photo)))
    assert found["items"] == []


def test_import_stores_good_images_with_sidecar_metadata_and_reports_bad_ones(
    data_dir: Path, import_folder: Path
) -> None:
    result = run_cli(data_dir, "import", "shop", str(import_folder), "--recursive", "--json")
    report = json.loads(result.stdout)
    assert sorted(i["file"] for i in report["imported"]) == ["brick_wall.png", "coffee.png", "posters/rocket.jpg"]
    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"blank.png", "corrupt.jpg"}
    assert "keypoints" in skipped["blank.png"]
    assert "image" in skipped["corrupt.jpg"]
    assert report["failed"] == []

    items = {i["name"]: i for i in run_json(data_dir, "list", "shop")["items"]}
    assert set(items) == {"Morning coffee", "Falcon", "brick wall"}
    assert items["Morning coffee"]["metadata"] == {"price": 3.5, "tags": ["cup"]}
    assert items["Falcon"]["metadata"] == {"stage": 2}
    assert items["brick wall"]["metadata"] == {}


def test_import_without_recursive_ignores_subfolders(data_dir: Path, import_folder: Path) -> None:
    report = json.loads(run_cli(data_dir, "import", "flat", str(import_folder), "--json").stdout)
    assert sorted(i["file"] for i in report["imported"]) == ["brick_wall.png", "coffee.png"]


def test_reimport_replaces_items_instead_of_duplicating_them(data_dir: Path, import_folder: Path) -> None:
    run_cli(data_dir, "import", "again", str(import_folder), "-r", "-q")
    before = {i["item"]: i["name"] for i in run_json(data_dir, "list", "again")["items"]}
    (import_folder / "brick_wall.json").write_text(json.dumps({"name": "Red bricks"}))
    try:
        result = run_cli(data_dir, "import", "again", str(import_folder), "-r", "-q")
    finally:
        (import_folder / "brick_wall.json").unlink()
    assert "Imported 3 of 5 images" in result.stdout and "0 new, 3 replaced" in result.stdout
    assert "blank.png:" in result.stdout and "corrupt.jpg:" in result.stdout
    after = {i["item"]: i["name"] for i in run_json(data_dir, "list", "again")["items"]}
    assert set(after) == set(before)
    assert "Red bricks" in after.values()


def test_import_fails_when_nothing_can_be_imported(data_dir: Path, tmp_path: Path) -> None:
    write_bytes(tmp_path / "broken.png", b"\x89PNG\r\n\x1a\n not really")
    result = run_cli(data_dir, "import", "empty", str(tmp_path), check=False)
    assert result.returncode == 1
    assert "Imported 0 of 1" in result.stdout and "broken.png:" in result.stdout


def test_remove_an_item_then_the_whole_collection(data_dir: Path) -> None:
    first = run_json(data_dir, "add", "trash", str(demo_image("coffee.png")))
    second = run_json(data_dir, "add", "trash", str(demo_image("rocket.jpg")))
    run_cli(data_dir, "remove", "trash", first["item"])
    assert [i["item"] for i in run_json(data_dir, "list", "trash")["items"]] == [second["item"]]

    unconfirmed = run_cli(data_dir, "remove", "trash", "--all", check=False)
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    run_cli(data_dir, "remove", "trash", "--all", "--yes")
    assert "trash" not in [c["collection"] for c in run_json(data_dir, "list")["collections"]]


def test_user_errors_are_one_line_messages_not_tracebacks(data_dir: Path, tmp_path: Path) -> None:
    cases = [
        (("list", "nosuch"), "no collection nosuch"),
        (("recognize", "nosuch", str(demo_image("coffee.png"))), "no collection nosuch"),
        (("add", "cards", str(tmp_path / "missing.jpg")), "cannot read"),
        (("add", "cards", str(write_bytes(tmp_path / "blank.jpg", jpeg(np.zeros((300, 300, 3), np.uint8))))), "poor"),
        (("add", "cards", str(demo_image("coffee.png")), "--metadata", "[1, 2]"), "JSON object"),
        (("remove", "cards", "nosuch-item"), "no item nosuch-item"),
        (("list", "--redis-url", "redis://127.0.0.1:1/0"), "unreachable"),
    ]
    for args, message in cases:
        result = run_cli(data_dir, *args, check=False)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_item_added_to_a_running_servers_data_dir_is_recognized_within_a_second(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = start_server(env={"CATCHLIGHT_DEMO_COLLECTION": ""})
    url, data_dir = server.url, server.data_dir
    reference = demo_image("coffee.png")
    photo, truth = scene_with(reference, seed=11)
    added = run_json(data_dir, "add", "live", str(reference))
    added_at = time.monotonic()
    with httpx.Client(base_url=url, timeout=5) as client:
        while True:
            reply = client.post("/v1/recognize", params={"collection": "live"}, content=photo)
            if reply.status_code == 200 and reply.json()["items"]:
                break
            assert time.monotonic() - added_at < 1.0, f"not recognized within 1 s: {reply.status_code} {reply.text}"
    elapsed = time.monotonic() - added_at
    found = reply.json()["items"][0]
    assert found["item"] == added["item"]
    assert corner_error(found["corners"], truth) < CORNER_TOLERANCE_PX
    assert elapsed < 1.0


def test_cli_reads_the_shipped_config_like_the_server() -> None:
    from matcher.cli import load_settings
    from server.config import load_config

    shipped = ROOT / "config.yaml"
    cli = load_settings(shipped, {"CATCHLIGHT_MATCHER_MIN_INLIERS": "20", "REDIS_URL": "redis://example:6379/1"})
    server = load_config(shipped, env={"CATCHLIGHT_MATCHER_MIN_INLIERS": "20", "REDIS_URL": "redis://example:6379/1"})
    assert cli.matcher == server.matcher
    assert (cli.data_dir, cli.redis_url, cli.redis_prefix, cli.thumbnail_side) == (
        server.server.data_dir,
        server.server.redis_url,
        server.server.redis_prefix,
        server.server.thumbnail_side,
    )
    assert (cli.max_name_length, cli.max_metadata_bytes) == (
        server.server.max_name_length,
        server.server.max_metadata_bytes,
    )


# Runs the real command in a fresh process with one image that kills the worker
# describing it, as the kernel's out-of-memory killer would. (Not in the test
# process: forking one that has run OpenCV's thread pool can deadlock the child.)
DIES_ON_COFFEE = """
import os, sys
import matcher.cli as cli

prepare = cli.prepare_import

def dies_on_coffee(task):
    if task.relative == "coffee.png":
        os._exit(9)
    return prepare(task)

cli.prepare_import = dies_on_coffee
sys.exit(cli.main(sys.argv[1:]))
"""


def test_import_reports_a_dead_describing_process_instead_of_hanging(data_dir: Path, tmp_path: Path) -> None:
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"):
        shutil.copy(demo_image(name), tmp_path / name)
    result = subprocess.run(
        [sys.executable, "-c", DIES_ON_COFFEE, "import", "dying", str(tmp_path), "--jobs", "2", "--quiet"]
        + ["--data-dir", str(data_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "coffee.png" in result.stdout and "process died" in result.stdout


def test_scan_command_prints_where_each_item_appears_and_records_the_scan(data_dir: Path, tmp_path: Path) -> None:
    run_cli(data_dir, "add", "clips", str(demo_image("coffee.png")), "--name", "Coffee")
    run_cli(data_dir, "add", "clips", str(demo_image("astronaut.png")), "--name", "Astronaut")
    video = write_video(tmp_path / "clip.avi", "MJPG")
    scan = run_json(data_dir, "scan", str(video), "--collection", "clips", "--sample-rate", "2")
    assert scan["state"] == "done" and scan["progress"]["samples_done"] == 20
    found = {i["name"]: [(a["start"], a["end"]) for a in i["appearances"]] for i in scan["items"]}
    assert found == {"Coffee": [(1.0, 3.0), (7.0, 8.0)], "Astronaut": [(4.0, 6.0), (7.0, 8.0)]}
    assert video.exists(), "the command line never deletes the user's own video"
    text = run_cli(data_dir, "scan", str(video), "-c", "clips", "-q").stdout
    assert "Coffee" in text and "1.0 s-3.0 s" in text and "video-seconds per second" in text
    bad = run_cli(data_dir, "scan", str(write_bytes(tmp_path / "x.mp4", b"no video")), "-c", "clips", check=False)
    assert bad.returncode == 1 and "invalid_video" in bad.stderr
