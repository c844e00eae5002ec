"""The management console in Chromium: manage items, try a photo, read the usage dashboard.

Each test works on a collection of its own (the camera tests share the demo one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np

from catchlight import Catchlight
from tests.conftest import wait_until
from tests.frames import composite
from tests.images import photo_bytes

VIEWPORT = {"width": 1200, "height": 900}
WAIT_MS = 20_000
LINE_COLOR = (0x3D, 0xDC, 0x97)  # the first match's colour on the try page


def open_page(launch_chromium, url: str):  # type: ignore[no-untyped-def]
    page = launch_chromium().new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return page, errors


def drop_files(page, selector: str, files: list[tuple[str, str, bytes]]) -> None:  # type: ignore[no-untyped-def]
    """Drop files on an element as a person dragging them from their desktop would."""
    transfer = page.evaluate_handle(
        """(files) => {
          const transfer = new DataTransfer();
          for (const { name, type, data } of files) {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], name, { type }));
          }
          return transfer;
        }""",
        [{"name": n, "type": t, "data": base64.b64encode(b).decode()} for n, t, b in files],
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def recognize(server_url: str, collection: str, image: bytes) -> dict:
    request = urllib.request.Request(
        f"{server_url}/v1/recognize?collection={collection}", data=image, headers={"Content-Type": "image/jpeg"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_console_uploads_dropped_images_validates_metadata_edits_and_deletes(page_server, launch_chromium, artifacts):  # type: ignore[no-untyped-def]
    collection = "console-items"
    page, errors = open_page(launch_chromium, f"{page_server.url}/console")
    page.fill("#new-name", collection)
    page.click("#create button[type=submit]")
    page.wait_for_url(f"**/console/collections/{collection}", timeout=WAIT_MS)
    page.wait_for_selector('body[data-items="0"]', timeout=WAIT_MS)

    flat = cv2.imencode(".png", np.full((200, 300, 3), 128, np.uint8))[1].tobytes()  # no texture: refused
    drop_files(
        page,
        "#dropzone",
        [
            ("coffee.png", "image/png", photo_bytes("coffee.png")),
            ("astronaut.png", "image/png", photo_bytes("astronaut.png")),
            ("flat-grey.png", "image/png", flat),
        ],
    )
    assert page.locator("#pending-list li").count() == 3
    coffee_row = page.locator('#pending-list li[data-file="coffee.png"]')
    coffee_row.locator("textarea").fill('{"url": "https://example.org/coffee",}')
    assert page.is_disabled("#upload-all")
    assert "Not valid JSON" in coffee_row.locator(".json-status").inner_text()
    page.screenshot(path=str(artifacts / "console_upload_invalid_metadata.png"), full_page=True)
    coffee_row.locator("textarea").fill('{"url": "https://example.org/coffee"}')
    assert coffee_row.locator(".json-status").inner_text().startswith("✓")
    assert page.is_enabled("#upload-all")

    page.click("#upload-all")
    page.wait_for_selector('body[data-items="2"]', timeout=WAIT_MS)
    page.wait_for_function("document.querySelector('#upload-message').textContent.includes('refused')", timeout=WAIT_MS)
    assert page.inner_text("#upload-message") == "2 images added, 1 refused (see above)."
    refused = page.locator('#pending-list li[data-file="flat-grey.png"]')
    assert "poor_reference" in refused.locator(".upload-status").inner_text()
    stored = {i["name"]: i for i in page_server.get_json(f"/v1/collections/{collection}/items")["items"]}
    assert set(stored) == {"coffee", "astronaut"}
    assert stored["coffee"]["metadata"] == {"url": "https://example.org/coffee"}

    # Each thumbnail gets the item's keypoints drawn over it.
    for name, item in stored.items():
        canvas = f'li.tile[data-name="{name}"] canvas.keypoints[data-points]'
        page.wait_for_selector(canvas, timeout=WAIT_MS)
        assert int(page.get_attribute(canvas, "data-points")) == item["keypoints"]

    # Recognitions show up on the item's tile.
    for seed in (301, 302):
        found = recognize(page_server.url, collection, composite(["coffee.png"], seed=seed)[0])
        assert [m["name"] for m in found["items"]] == ["coffee"]
    page.reload()
    page.wait_for_selector('body[data-items="2"]', timeout=WAIT_MS)
    assert page.inner_text('li.tile[data-name="coffee"] .recognition-count') == "2"
    assert page.inner_text('li.tile[data-name="astronaut"] .recognition-count') == "0"
    page.wait_for_selector('li.tile canvas.keypoints[data-points]', timeout=WAIT_MS)
    page.screenshot(path=str(artifacts / "console_items.png"), full_page=True)

    # Edit: invalid JSON cannot be saved, valid JSON is.
    page.click('li.tile[data-name="coffee"] button:text("Edit")')
    page.fill("#editor-name", "Coffee cup")
    page.fill("#editor textarea", '{"price": 3')
    assert page.is_disabled("#editor-save")
    assert "Not valid JSON" in page.inner_text("#editor .json-status")
    page.screenshot(path=str(artifacts / "console_edit_invalid_metadata.png"))
    page.fill("#editor textarea", '{"price": 3, "action": {"type": "text", "text": "On sale"}}')
    page.click("#editor-save")
    page.wait_for_selector('li.tile[data-name="Coffee cup"]', timeout=WAIT_MS)
    edited = page_server.item_named(collection, "Coffee cup")
    assert edited["metadata"] == {"price": 3, "action": {"type": "text", "text": "On sale"}}
    assert json.loads(page.text_content('li.tile[data-name="Coffee cup"] pre.metadata')) == edited["metadata"]

    # Delete, after confirming.
    page.click('li.tile[data-name="astronaut"] button:text("Delete")')
    page.click('dialog.confirm button[data-answer="yes"]')
    page.wait_for_selector('body[data-items="1"]', timeout=WAIT_MS)
    remaining = page_server.get_json(f"/v1/collections/{collection}/items")["items"]
    assert [i["name"] for i in remaining] == ["Coffee cup"]
    assert errors == []


def test_console_lists_collections_and_deletes_one(page_server, launch_chromium, artifacts):  # type: ignore[no-untyped-def]
    with Catchlight(page_server.url) as client:
        client.add_item("console-doomed", photo_bytes("rocket.jpg"), name="Rocket")
        client.create_collection("console-empty")
    page, errors = open_page(launch_chromium, f"{page_server.url}/console")
    page.wait_for_selector('tr[data-collection="console-doomed"]', timeout=WAIT_MS)
    cells = page.locator('tr[data-collection="console-doomed"] td')
    assert cells.nth(1).inner_text() == "1"
    assert page.locator('tr[data-collection="demo"]').count() == 1
    page.screenshot(path=str(artifacts / "console_collections.png"), full_page=True)

    page.click('tr[data-collection="console-doomed"] button:text("Delete")')
    page.click('dialog.confirm button[data-answer="yes"]')
    page.wait_for_selector('tr[data-collection="console-doomed"]', state="detached", timeout=WAIT_MS)
    names = [c["collection"] for c in page_server.get_json("/v1/collections")["collections"]]
    assert "console-doomed" not in names and "console-empty" in names
    assert errors == []


def test_try_a_photo_draws_the_outline_and_inliers_of_what_matched(page_server, launch_chromium, artifacts):  # type: ignore[no-untyped-def]
    image, truth = composite(["coffee.png"], seed=17)
    page, errors = open_page(launch_chromium, f"{page_server.url}/console/try?collection=demo")
    page.set_input_files("#file-input", files=[{"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": image}])
    page.wait_for_selector('body[data-state="done"]', timeout=WAIT_MS)
    assert page.get_attribute("#canvas", "data-outlines") == "1"
    assert page.inner_text("#matches li .name") == "Coffee cup"
    inliers = int(page.inner_text("#matches li .inlier-count"))
    assert int(page.get_attribute("#canvas", "data-inliers")) >= min(14, inliers)

    # The outline is drawn where the cup really is: the line colour around the middle of each true edge.
    corners = truth["coffee.png"]
    for k in range(4):
        (x0, y0), (x1, y1) = corners[k], corners[(k + 1) % 4]
        x, y = round((x0 + x1) / 2), round((y0 + y1) / 2)
        pixels = page.evaluate(
            """([x, y]) => Array.from(document.querySelector('#canvas').getContext('2d')
                 .getImageData(x - 5, y - 5, 11, 11).data)""",
            [x, y],
        )
        rgb = np.array(pixels, np.int32).reshape(-1, 4)[:, :3]
        distance = np.abs(rgb - np.array(LINE_COLOR)).sum(axis=1).min()
        assert distance < 60, f"no outline near edge {k} at {(x, y)}"
    page.screenshot(path=str(artifacts / "console_try_a_photo.png"), full_page=True)
    assert errors == []


def test_dashboard_plots_the_usage_that_was_sent(page_server, launch_chromium, artifacts):  # type: ignore[no-untyped-def]
    collection = "console-usage"
    with Catchlight(page_server.url) as client:
        client.create_collection(collection)
        client.add_item(collection, photo_bytes("astronaut.png"), name="Astronaut")
        for seed in (401, 402, 403):
            assert len(client.recognize(collection, composite(["astronaut.png"], seed=seed)[0])["items"]) == 1
        frames = [composite(["astronaut.png"], seed=s)[0] for s in (404, 405)]

        async def stream() -> list[dict]:
            return [reply async for reply in client.stream(collection, frames)]

        # Playwright's sync API keeps an event loop in this thread: stream from another one.
        with ThreadPoolExecutor(1) as thread:
            replies = thread.submit(asyncio.run, stream()).result(timeout=60)
        assert [len(r["items"]) for r in replies] == [1, 1]

    page, errors = open_page(launch_chromium, f"{page_server.url}/console/stats?collection={collection}")
    page.wait_for_selector("body[data-generated]", timeout=WAIT_MS)
    # PUT + upload + 3 recognitions are requests; the 2 stream frames are frames; 5 recognitions in all.
    assert page.inner_text("#total-requests") == "5"
    assert page.inner_text("#total-frames") == "2"
    assert page.inner_text("#total-recognitions") == "5"
    top = page.locator("#top-items li")
    assert top.count() == 1 and top.get_attribute("data-count") == "5"
    assert "Astronaut" in top.inner_text()
    assert page.locator("#series canvas").count() == 1 and page.locator("#latency canvas").count() == 1
    assert page.input_value("#endpoint") == "POST recognize"
    assert int(page.inner_text("#latency-summary").split()[0]) >= 3  # latency is for every collection
    page.screenshot(path=str(artifacts / "console_dashboard.png"), full_page=True)

    page.select_option("#range", "1h")
    page.wait_for_function("document.querySelector('#updated').textContent.includes('per minute')", timeout=WAIT_MS)
    assert page.inner_text("#total-recognitions") == "5"
    assert errors == []


def test_console_works_on_a_server_that_requires_credentials(start_server, launch_chromium):  # type: ignore[no-untyped-def]
    from tests.security.helpers import QUIET, make_credential

    server = start_server(env=QUIET)
    _, key = make_credential(server.data_dir, "management")
    with Catchlight(server.url, token=key) as client:
        # The server notices the new credential within its refresh interval.
        wait_until(lambda: httpx.get(f"{server.url}/v1/collections").status_code == 401, timeout=10)
        client.add_item("guarded", photo_bytes("coffee.png"), name="Coffee")
    assert httpx.get(f"{server.url}/v1/collections/guarded/items").status_code == 401

    page, errors = open_page(launch_chromium, f"{server.url}/console/collections/guarded?token={key}")
    page.wait_for_selector('[data-item] img', timeout=WAIT_MS)
    page.wait_for_function("() => [...document.querySelectorAll('[data-item] img')].every(i => i.naturalWidth > 0)", timeout=WAIT_MS)
    assert "token=" not in page.url  # the credential leaves the address bar
    assert page.locator("[data-item]").count() == 1
    assert errors == []
