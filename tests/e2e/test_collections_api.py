"""The collection management API, as an app developer or the console uses it."""

from __future__ import annotations

import io
import json

import cv2
import httpx
import numpy as np
from PIL import Image

from tests.images import photo_bytes


def upload(api: httpx.Client, collection: str, name: str, photo: str = "coffee.png", **data: str) -> httpx.Response:
    return api.post(
        f"/v1/collections/{collection}/items", files={"image": (photo, photo_bytes(photo))}, data={"name": name, **data}
    )


def test_upload_answers_201_with_the_item_and_its_quality(api: httpx.Client) -> None:
    reply = upload(api, "crud", "Coffee", metadata=json.dumps({"url": "https://example.org/c", "model": 7}))
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["name"] == "Coffee"
    assert body["metadata"] == {"url": "https://example.org/c", "model": 7}
    assert (body["width"], body["height"]) == (600, 400)
    assert body["keypoints"] >= 100
    assert 0.5 <= body["quality"] <= 1.0
    assert reply.headers["Location"] == f"/v1/collections/crud/items/{body['item']}"


def test_items_can_be_listed_read_changed_and_deleted(api: httpx.Client) -> None:
    item = upload(api, "crud2", "Astronaut", "astronaut.png").json()["item"]
    upload(api, "crud2", "Rocket", "rocket.jpg")
    listed = api.get("/v1/collections/crud2/items").json()["items"]
    assert [i["name"] for i in listed] == ["Astronaut", "Rocket"]
    assert {"collection": "crud2", "items": 2} == {
        k: v for k, v in api.get("/v1/collections/crud2").json().items() if k in ("collection", "items")
    }
    assert any(c["collection"] == "crud2" and c["items"] == 2 for c in api.get("/v1/collections").json()["collections"])

    changed = api.patch(f"/v1/collections/crud2/items/{item}", json={"name": "Eileen", "metadata": {"caption": "NASA"}})
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["metadata"]) == ("Eileen", {"caption": "NASA"})
    assert api.get(f"/v1/collections/crud2/items/{item}").json()["name"] == "Eileen"

    thumbnail = api.get(f"/v1/collections/crud2/items/{item}/thumbnail")
    assert thumbnail.headers["Content-Type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 320

    assert api.delete(f"/v1/collections/crud2/items/{item}").status_code == 204
    assert api.get(f"/v1/collections/crud2/items/{item}").status_code == 404
    assert api.delete(f"/v1/collections/crud2/items/{item}").status_code == 404
    assert [i["name"] for i in api.get("/v1/collections/crud2/items").json()["items"]] == ["Rocket"]


def test_collections_can_be_created_empty_and_deleted(api: httpx.Client) -> None:
    assert api.put("/v1/collections/empty-one").status_code == 201
    assert api.put("/v1/collections/empty-one").status_code == 200
    assert api.get("/v1/collections/empty-one/items").json()["items"] == []
    assert api.delete("/v1/collections/empty-one").status_code == 204
    assert api.get("/v1/collections/empty-one/items").status_code == 404


def featureless_images() -> list[bytes]:
    gradient = np.tile(np.linspace(0, 255, 400).astype(np.uint8), (300, 1))
    logo = np.full((400, 400, 3), 200, np.uint8)
    cv2.circle(logo, (200, 200), 80, (40, 40, 40), -1)
    return [cv2.imencode(".png", image)[1].tobytes() for image in (gradient, logo)]


def test_featureless_images_are_refused_with_422_and_their_quality(api: httpx.Client) -> None:
    for png in featureless_images():
        reply = api.post("/v1/collections/crud3/items", files={"image": ("flat.png", png)}, data={"name": "flat"})
        assert reply.status_code == 422
        error = reply.json()["error"]
        assert error["code"] == "poor_reference"
        assert "keypoints" in error["message"] or "quality" in error["message"]
        assert 0 <= error["quality"] < 0.2
    assert api.get("/v1/collections/crud3/items").status_code == 404  # nothing half-made


def test_bad_item_fields_are_refused_and_nothing_is_stored(api: httpx.Client) -> None:
    before = api.get("/v1/collections").json()
    assert upload(api, "crud4", "").status_code == 400
    assert upload(api, "crud4", "x", metadata="[1, 2]").json()["error"]["code"] == "invalid_metadata"
    assert upload(api, "crud4", "x", metadata="{broken").status_code == 400
    too_big = json.dumps({"text": "x" * 20_000})
    assert upload(api, "crud4", "x", metadata=too_big).status_code == 413
    assert api.post("/v1/collections/crud4/items", data={"name": "no image"}).status_code == 400
    assert api.post("/v1/collections/bad name!/items", files={"image": ("a", b"x")}).status_code == 400
    assert api.get("/v1/collections").json() == before
    item = upload(api, "crud4", "fine").json()["item"]
    assert api.patch(f"/v1/collections/crud4/items/{item}", json={"width": 5}).status_code == 400
    assert api.patch(f"/v1/collections/crud4/items/{item}", content=b"nope").status_code == 400
    assert api.get(f"/v1/collections/crud4/items/{item}").json()["name"] == "fine"


def test_health_reports_ready_workers(api: httpx.Client) -> None:
    body = api.get("/healthz").json()
    assert (body["status"], body["workers"], body["workers_ready"]) == ("ok", 2, 2)
    assert [w["state"] for w in body["change_log"]["workers"]] == ["current", "current"]


def test_raw_body_upload_takes_name_and_metadata_from_the_query(api: httpx.Client) -> None:
    reply = api.post(
        "/v1/collections/raw/items",
        params={"name": "Rocket", "metadata": '{"model": "f9"}'},
        content=photo_bytes("rocket.jpg"),
        headers={"Content-Type": "image/jpeg"},
    )
    assert reply.status_code == 201, reply.text
    assert (reply.json()["name"], reply.json()["metadata"]) == ("Rocket", {"model": "f9"})


def test_metadata_may_come_as_a_json_file_part(api: httpx.Client) -> None:
    reply = api.post(
        "/v1/collections/raw/items",
        files={"image": ("c.png", photo_bytes("coffee.png")), "metadata": ("m.json", b'{"caption": "cup"}')},
        data={"name": "Cup"},
    )
    assert reply.json()["metadata"] == {"caption": "cup"}


def test_unknown_paths_and_methods_answer_in_the_json_error_shape(api: httpx.Client) -> None:
    missing = api.get("/v1/nothing-here")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    wrong = api.post("/v1/collections")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
