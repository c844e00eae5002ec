"""Actions on the overlay card and spoken results, in Chromium against the real server.

Speech is observed through the browser's own API: an init script wraps
window.speechSynthesis.speak to record each utterance's text (and still speaks
it). Nothing of the page's own code is replaced.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.browser.fake_camera import composite_photo, make_fake_camera, quad
from tests.browser.test_camera_page import DEMO, SNAPSHOT_JS, VIEWPORT, WAIT_MS, check_drawn_item, upload_photo

RECORD_SPEECH = """
window.__spoken = [];
if (window.speechSynthesis) {
  const speak = window.speechSynthesis.speak.bind(window.speechSynthesis);
  window.speechSynthesis.speak = (utterance) => {
    window.__spoken.push(utterance.text);
    try { speak(utterance); } catch (err) { /* no audio device: recording is enough */ }
  };
}
"""
STILL_RESULTS = 15  # results to watch after the first announcement: a still object is not announced again


def test_spoken_results_say_the_item_and_where_once_for_a_still_object(page_server, launch_chromium, tmp_path: Path, artifacts):  # type: ignore[no-untyped-def]
    reference = cv2.imread(str(DEMO / "coffee.png"))
    item = page_server.item_named("demo", "Coffee cup")["item"]
    h, w = reference.shape[:2]
    top_left = quad(w, h, (150, 115), 230, 4, 0.95)  # centroid in the top-left third of the 640x480 frame
    camera = make_fake_camera(reference, tmp_path / "still.y4m", seconds=2, motion=lambda t, rw, rh: top_left)
    browser = launch_chromium(
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={camera.path}",
    )
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(RECORD_SPEECH)
    page = context.new_page()
    page.goto(f"{page_server.url}/?collection=demo")
    assert page.evaluate("() => typeof window.speechSynthesis.speak") == "function"
    page.wait_for_selector(f'#camera-overlay g.item[data-item="{item}"]', state="attached", timeout=WAIT_MS)
    assert page.evaluate("() => window.__spoken") == [], "nothing is spoken until the switch is on"

    page.click("#speak-switch")
    assert page.get_attribute("#speak-switch", "aria-checked") == "true"
    page.wait_for_function("() => window.__spoken.length >= 2", timeout=WAIT_MS)
    first = int(page.get_attribute(f'#camera-overlay g.item[data-item="{item}"]', "data-frame-id"))
    page.wait_for_function(
        """([item, after]) => Number(document.querySelector(`#camera-overlay g.item[data-item="${item}"]`)
            ?.dataset.frameId) > after""",
        arg=[item, first + STILL_RESULTS],
        timeout=WAIT_MS,
    )
    assert page.evaluate("() => window.__spoken") == ["Spoken results on", "Coffee cup, top left"]
    page.screenshot(path=str(artifacts / "camera_speaking.png"))

    page.click("#speak-switch")
    assert page.get_attribute("#speak-switch", "aria-checked") == "false"


def test_announcer_speaks_on_a_settled_move_and_after_an_absence(page_server, launch_chromium) -> None:  # type: ignore[no-untyped-def]
    page = launch_chromium().new_page()
    page.goto(f"{page_server.url}/?collection=demo")
    outcome = page.evaluate(
        """async () => {
            const { Announcer, positionWords } = await import("/static/speech.js");
            const said = [];
            const announcer = new Announcer((text) => said.push(text));
            const box = (cx, cy, s = 60) => [[cx - s, cy - s], [cx + s, cy - s], [cx + s, cy + s], [cx - s, cy + s]];
            const see = (corners, now) => announcer.update({ width: 640, height: 480, items: [{ item: "x", name: "Cup", corners }] }, now);
            see(box(100, 80), 0);
            see(box(100, 80), 100);
            see(box(320, 240), 200);  // one result in a new place: could be a boundary flicker
            const afterOne = said.length;
            see(box(320, 240), 300);  // it held: say it
            see(box(320, 240), 400);
            see(box(600, 450), 5000); // gone for longer than forgetMs, now back: say it again
            return {
                said, afterOne,
                close: positionWords(box(320, 240, 250), 640, 480),
                far: positionWords(box(600, 450, 10), 640, 480),
                left: positionWords(box(60, 240), 640, 480),
            };
        }"""
    )
    assert outcome["said"] == ["Cup, top left", "Cup, centre", "Cup, bottom right"]
    assert outcome["afterOne"] == 1
    assert (outcome["close"], outcome["far"], outcome["left"]) == ("centre, close", "bottom right, far", "middle left")


def test_video_action_plays_in_the_details_sheet(page_server, launch_chromium, artifacts) -> None:  # type: ignore[no-untyped-def]
    cat = page_server.item_named("demo", "Chelsea the cat")
    action = cat["metadata"]["action"]
    assert action["type"] == "video", "scripts/fetch_demo.py gives the demo cat a video action"
    page = launch_chromium().new_page(viewport=VIEWPORT)
    page.goto(f"{page_server.url}/?collection=demo")
    page.wait_for_selector("#status-upload:not([hidden])", timeout=WAIT_MS)
    image = cv2.imread(str(DEMO / "chelsea.png"))
    truth = quad(image.shape[1], image.shape[0], (320, 240), 440, 5, 0.92)
    assert upload_photo(page, composite_photo([image], [truth])) == "1"
    check_drawn_item(page.evaluate(SNAPSHOT_JS, [cat["item"], None]), np.asarray(truth))
    page.locator(f'#photo-overlay .card[data-item="{cat["item"]}"] button[data-action="video"]').click()
    page.wait_for_selector("#details:not([hidden])", timeout=WAIT_MS)
    player = page.locator('#details video[data-action="video"]')
    assert player.get_attribute("src") == action["url"]
    assert page.evaluate("() => document.querySelector('#details video').controls")
    page.screenshot(path=str(artifacts / "card_video_action.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#details", state="hidden", timeout=WAIT_MS)
