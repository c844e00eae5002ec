"""The video scans page in Chromium: upload a generated video through the form, watch it finish, read the timeline."""

from __future__ import annotations

import pytest

from tests.videos import expected_ranges, write_video

COLLECTION = "demo"
NAMES = {"coffee.png": "Coffee cup", "astronaut.png": "Astronaut"}
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def video(tmp_path_factory):  # type: ignore[no-untyped-def]
    return write_video(tmp_path_factory.mktemp("video") / "desk.mp4", "mp4v")


def test_scans_page_uploads_a_video_and_draws_where_each_item_appears(page_server, launch_chromium, video, artifacts):  # type: ignore[no-untyped-def]
    page = launch_chromium().new_page(viewport={"width": 1100, "height": 800})
    page.goto(f"{page_server.url}/scans?collection={COLLECTION}")
    page.wait_for_selector(f'#collection-input option[value="{COLLECTION}"]', state="attached", timeout=WAIT_MS)
    page.set_input_files("#video-input", str(video))
    page.fill("#rate-input", "2")
    page.click("#scan-form button[type=submit]")
    page.wait_for_url("**/scans/*", timeout=WAIT_MS)
    page.wait_for_selector("body[data-state=done]", state="attached", timeout=WAIT_MS)

    drawn = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#timeline .track')].map((track) => [
            track.previousElementSibling.textContent,
            [...track.querySelectorAll('.appearance')].map((bar) => [Number(bar.dataset.start), Number(bar.dataset.end),
                bar.getBoundingClientRect().left - track.getBoundingClientRect().left, track.clientWidth]),
        ]))"""
    )
    expected = {NAMES[file]: ranges for file, ranges in expected_ranges().items()}
    assert sorted(drawn) == sorted(expected)
    for name, ranges in expected.items():
        found = [value for start, end, _, _ in drawn[name] for value in (start, end)]
        assert found == pytest.approx([value for span in ranges for value in span], abs=0.5), (name, drawn[name])
        for start, _end, left, width in drawn[name]:
            assert left == pytest.approx(width * start / 10.0, abs=3), "bars are placed on a 10 s axis"
    assert "2 items seen" in page.inner_text("#scan-summary")
    assert page.locator("#appearances tbody tr").count() == 4
    page.screenshot(path=str(artifacts / "scan_page.png"), full_page=True)

    page.click("header a[href='/scans']")
    row = page.locator("#scan-list tbody tr").first
    row.wait_for(timeout=WAIT_MS)
    assert "desk.mp4" in row.inner_text() and "done" in row.inner_text()
    page.screenshot(path=str(artifacts / "scans_list.png"), full_page=True)
