"""Fixtures for the browser tests: a real server on a free port, Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = Path("/usr/bin/chromium")
QUIET_CHROMIUM = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
READY_PREFIX = "Catchlight is ready: "
START_TIMEOUT_S = 90


class Server:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def item_named(self, collection: str, name: str) -> dict:
        items = self.get_json(f"/v1/collections/{collection}/items")["items"]
        return next(item for item in items if item["name"] == name)


@pytest.fixture(scope="session")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m server --port 0` with its own data dir and store (it loads the demo collection on first start)."""
    data_dir = tmp_path_factory.mktemp("server-data")
    log_path = data_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("CATCHLIGHT_")}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", "0", "--data-dir", str(data_dir)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    url = None
    try:
        while url is None:
            try:
                line = lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"server not ready within {START_TIMEOUT_S} s; log: {log_path.read_text()[-2000:]}")
            if line is None:
                pytest.fail(f"server exited ({process.wait()}); log: {log_path.read_text()[-2000:]}")
            if line.startswith(READY_PREFIX):
                url = line[len(READY_PREFIX) :].strip()
        yield Server(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[object]:
    # Per module, not per session: Playwright's sync API runs an event loop in the main thread
    # while it is started, and tests outside tests/browser/ call asyncio.run() (the SDK's stream).
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def launch_chromium(playwright_driver):  # type: ignore[no-untyped-def]
    """Start Debian's Chromium with extra flags; closes every browser it started after the test."""
    browsers = []

    def launch(*flags: str):  # type: ignore[no-untyped-def]
        browser = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=[*flags, *QUIET_CHROMIUM])
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ (git-ignored): screenshots for a human to look at."""
    folder = ROOT / "test-artifacts"
    folder.mkdir(exist_ok=True)
    return folder
