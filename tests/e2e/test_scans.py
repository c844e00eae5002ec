"""Video scans end to end: upload a generated video with known appearances, read back where each item was seen.

The videos are written by cv2.VideoWriter (tests/videos.py): the coffee cup in
seconds 1-3, the astronaut in 4-6, both in 7-8, nothing else. Found ranges
must match within one sample interval.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from catchlight import Catchlight, CatchlightError
from tests.conftest import RunningServer, wait_until
from tests.e2e.test_openapi import assert_documented
from tests.images import photo_bytes
from tests.videos import expected_ranges, write_video

COLLECTION = "scans"
NAMES = {"coffee.png": "Coffee", "astronaut.png": "Astronaut"}
SCAN_TIMEOUT_S = 90


class WebhookReceiver:
    """A tiny HTTP server on a free loopback port that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def scan_server(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver) -> Iterator[RunningServer]:
    env = {"CATCHLIGHT_SCAN_WEBHOOK_URL": webhook.url, "CATCHLIGHT_DEMO_COLLECTION": ""}
    running = RunningServer(tmp_path_factory.mktemp("scan-server"), env=env).start()
    with Catchlight(running.url) as cl:
        for file, name in NAMES.items():
            cl.add_item(COLLECTION, photo_bytes(file), name=name)
    yield running
    running.stop()
    running.kill_orphans()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "mjpg.avi": write_video(folder / "mjpg.avi", "MJPG"),
        "mp4v.mp4": write_video(folder / "mp4v.mp4", "mp4v"),
    }


def assert_ranges_match(scan: dict[str, Any], tolerance: float) -> None:
    found = {item["name"]: [(a["start"], a["end"]) for a in item["appearances"]] for item in scan["items"]}
    expected = {NAMES[file]: ranges for file, ranges in expected_ranges().items()}
    assert sorted(found) == sorted(expected), found
    for name, ranges in expected.items():
        assert len(found[name]) == len(ranges), (name, found[name])
        for (start, end), (want_start, want_end) in zip(found[name], ranges, strict=True):
            assert abs(start - want_start) <= tolerance and abs(end - want_end) <= tolerance, (name, found[name], ranges)
    for item in scan["items"]:
        for appearance in item["appearances"]:
            assert 0 < appearance["peak_score"] <= 1
            assert appearance["start"] <= appearance["peak_time"] < appearance["end"]


@pytest.mark.parametrize("video", ["mjpg.avi", "mp4v.mp4"])
def test_scan_finds_each_item_in_its_time_ranges(scan_server: RunningServer, videos: dict[str, Path], video: str) -> None:
    with Catchlight(scan_server.url) as cl:
        queued = cl.start_scan(COLLECTION, videos[video], sample_rate=2)
        assert queued["state"] in ("queued", "running")
        scan = cl.wait_for_scan(queued["scan"], SCAN_TIMEOUT_S)
    assert scan["state"] == "done", scan["error"]
    assert scan["video"]["duration"] == pytest.approx(10.0)
    assert scan["progress"] == {"samples_done": 20, "samples_total": 20, "fraction": 1.0}
    assert scan["filename"] == video
    assert_ranges_match(scan, tolerance=1 / scan["sample_rate"])
    # The upload is kept only until the job ends.
    assert not any(scan_server.data_dir.glob(f"scans/{scan['scan']}*"))


def test_webhook_gets_the_summary_when_a_scan_ends(
    scan_server: RunningServer, videos: dict[str, Path], webhook: WebhookReceiver
) -> None:
    with Catchlight(scan_server.url) as cl:
        scan = cl.scan(COLLECTION, videos["mjpg.avi"], sample_rate=1, timeout=SCAN_TIMEOUT_S)
        body = wait_until(lambda: next((b for b in webhook.bodies if b["scan"]["scan"] == scan["scan"]), None), 15)
        assert body["event"] == "scan.finished"
        assert body["scan"]["state"] == "done"
        assert {i["name"] for i in body["scan"]["items"]} == set(NAMES.values())
        delivered = wait_until(lambda: cl.get_scan(scan["scan"])["webhook"], 10)
        assert delivered["status"] == "delivered" and delivered["http_status"] == 204


def test_a_file_that_is_not_a_video_fails_with_a_clear_error(scan_server: RunningServer) -> None:
    with Catchlight(scan_server.url) as cl:
        scan = cl.scan(COLLECTION, b"these bytes are no video at all" * 100, timeout=SCAN_TIMEOUT_S)
        assert scan["state"] == "failed"
        assert scan["error"]["code"] == "invalid_video"
        assert "decode" in scan["error"]["message"]
        with pytest.raises(CatchlightError) as unknown:
            cl.start_scan("no-such-collection", b"x" * 10)
        assert (unknown.value.status, unknown.value.code) == (404, "unknown_collection")
        with pytest.raises(CatchlightError) as missing:
            cl.get_scan("0123456789abcdef")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        with pytest.raises(CatchlightError) as bad_rate:
            cl.start_scan(COLLECTION, b"x" * 10, sample_rate=0)
        assert (bad_rate.value.status, bad_rate.value.code) == (400, "invalid_request")
    assert not any(scan_server.data_dir.glob("scans/*"))


def test_scan_answers_match_the_documented_schemas(scan_server: RunningServer, videos: dict[str, Path]) -> None:
    import httpx

    with httpx.Client(base_url=scan_server.url, timeout=30) as client:
        spec = client.get("/v1/openapi.json").json()
        with open(videos["mp4v.mp4"], "rb") as video:
            started = client.post("/v1/scans", files={"video": ("clip.mp4", video)}, data={"collection": COLLECTION})
        assert started.status_code == 202, started.text
        assert started.headers["Location"] == f"/v1/scans/{started.json()['scan']}"
        assert started.json()["filename"] == "clip.mp4"
        assert_documented(spec, "/v1/scans", "post", started)
        done = wait_until(lambda: (r := client.get(started.headers["Location"])).json()["state"] == "done" and r, 60)
        assert_documented(spec, "/v1/scans/{scan}", "get", done)
        assert_documented(spec, "/v1/scans", "get", client.get("/v1/scans"))
        assert_documented(spec, "/v1/scans/{scan}", "get", client.get("/v1/scans/nope"))
        no_video = client.post("/v1/scans", files={"other": ("x.txt", b"x")}, data={"collection": COLLECTION})
        assert no_video.status_code == 400
        assert_documented(spec, "/v1/scans", "post", no_video)


def test_a_scan_cut_short_by_a_server_crash_is_resumed_at_the_next_start(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(env={"CATCHLIGHT_DEMO_COLLECTION": ""})
    video = write_video(tmp_path / "long.avi", "MJPG")
    with Catchlight(server.url) as cl:
        for file, name in NAMES.items():
            cl.add_item(COLLECTION, photo_bytes(file), name=name)
        scan_id = cl.start_scan(COLLECTION, video, sample_rate=10)["scan"]
        wait_until(lambda: cl.get_scan(scan_id)["progress"]["samples_done"] >= 5, 60)
    server.stop(signal.SIGKILL)  # no goodbye: the job is left "running" in the store

    server.start()
    with Catchlight(server.url) as cl:
        scan = cl.wait_for_scan(scan_id, SCAN_TIMEOUT_S)
    assert scan["state"] == "done", scan["error"]
    assert scan["resumed"] >= 1
    assert scan["progress"]["samples_done"] == scan["progress"]["samples_total"] == 100
    assert_ranges_match(scan, tolerance=0.1)
    assert not any(server.data_dir.glob(f"scans/{scan_id}*"))
