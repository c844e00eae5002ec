"""docs/openapi.yaml, as served at /v1/openapi.json, stays in step with the routes and the real answers."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from tornado.routing import PathMatches

from server.app import make_app
from server.config import Config
from server.handlers import api as api_handlers
from tests.conftest import RunningServer
from tests.frames import composite
from tests.images import photo_bytes

SPEC_URI = "urn:catchlight:openapi"
HTTP_METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def spec(client: httpx.Client) -> dict[str, Any]:
    reply = client.get("/v1/openapi.json")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    document: dict[str, Any] = reply.json()
    return document


def api_routes() -> dict[str, type]:
    """Route pattern -> handler class of every API route (JSON handlers: not pages, assets or the websocket)."""
    app = make_app(Config(), None, None, None)  # type: ignore[arg-type]
    return {
        rule.matcher.regex.pattern: rule.target
        for rule in app.wildcard_router.rules
        if isinstance(rule.matcher, PathMatches)
        and inspect.isclass(rule.target)
        and issubclass(rule.target, api_handlers.ApiHandler)
    }


def path_regex(template: str) -> str:
    """/v1/collections/{collection} -> the tornado pattern the route would be written as."""
    return re.sub(r"\{[^}]+\}", "([^/]+)", template) + "$"


def schema_of(spec: dict[str, Any], path: str, method: str, status: int) -> Draft202012Validator:
    """A validator for the JSON body the document promises for this path, method and status."""
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document status {status}"
    response = responses[str(status)]
    if "$ref" in response:
        pointer = response["$ref"]
    else:
        escaped = path.replace("~", "~0").replace("/", "~1")
        pointer = f"#/paths/{escaped}/{method}/responses/{status}"
    return validator_at(spec, pointer + "/content/application~1json/schema")


def validator_at(spec: dict[str, Any], pointer: str) -> Draft202012Validator:
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": SPEC_URI + pointer}, registry=registry)


def assert_documented(spec: dict[str, Any], path: str, method: str, reply: httpx.Response) -> None:
    errors = [e.message for e in schema_of(spec, path, method, reply.status_code).iter_errors(reply.json())]
    assert not errors, f"{method.upper()} {path} {reply.status_code} {reply.text[:300]}: {errors}"


def test_served_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    validate_openapi(spec)


def test_every_api_route_and_method_is_documented_and_nothing_else(spec: dict[str, Any]) -> None:
    routes = api_routes()
    documented = {path_regex(path): path for path in spec["paths"]}
    assert sorted(documented) == sorted(routes)
    for pattern, handler in routes.items():
        implemented = {m for m in HTTP_METHODS if getattr(handler, m) is not getattr(api_handlers.ApiHandler, m)}
        described = {m for m in HTTP_METHODS if m in spec["paths"][documented[pattern]]}
        assert described == implemented, documented[pattern]


def test_every_example_matches_its_schema(spec: dict[str, Any]) -> None:
    checked = 0
    for path, operations in spec["paths"].items():
        escaped = path.replace("~", "~0").replace("/", "~1")
        for method in HTTP_METHODS:
            for status, response in operations.get(method, {}).get("responses", {}).items():
                base = response["$ref"] if "$ref" in response else f"#/paths/{escaped}/{method}/responses/{status}"
                target = spec["components"]["responses"][base.rsplit("/", 1)[1]] if "$ref" in response else response
                media = target.get("content", {}).get("application/json")
                if not media:
                    continue
                examples = [media["example"]] if "example" in media else []
                examples += [e["value"] for e in media.get("examples", {}).values()]
                validator = validator_at(spec, base + "/content/application~1json/schema")
                for example in examples:
                    errors = [e.message for e in validator.iter_errors(example)]
                    assert not errors, f"example of {method.upper()} {path} {status}: {errors}"
                    checked += 1
    assert checked > 20


def test_real_answers_match_the_documented_schemas(client: httpx.Client, spec: dict[str, Any]) -> None:
    items = "/v1/collections/{collection}/items"
    item = "/v1/collections/{collection}/items/{item}"

    assert_documented(spec, "/healthz", "get", client.get("/healthz"))
    assert_documented(spec, "/v1/streams", "get", client.get("/v1/streams"))
    assert_documented(spec, "/v1/collections", "get", client.get("/v1/collections"))
    assert_documented(spec, "/v1/collections/{collection}", "get", client.get("/v1/collections/demo"))
    assert_documented(spec, "/v1/collections/{collection}", "put", client.put("/v1/collections/openapi"))

    upload = client.post(
        "/v1/collections/openapi/items",
        files={"image": ("coffee.png", photo_bytes("coffee.png"))},
        data={"name": "Coffee", "metadata": json.dumps({"url": "https://example.org/coffee"})},
    )
    assert upload.status_code == 201
    assert_documented(spec, items, "post", upload)
    item_id = upload.json()["item"]
    assert_documented(spec, items, "get", client.get("/v1/collections/openapi/items"))
    assert_documented(spec, item, "get", client.get(f"/v1/collections/openapi/items/{item_id}"))
    assert_documented(spec, item, "patch", client.patch(f"/v1/collections/openapi/items/{item_id}", json={"name": "Cup"}))

    frame = composite(["coffee.png"], seed=3)[0]
    found = client.post("/v1/recognize?collection=openapi", content=frame, headers={"Content-Type": "image/jpeg"})
    assert found.status_code == 200
    assert [m["item"] for m in found.json()["items"]] == [item_id]
    assert_documented(spec, "/v1/recognize", "post", found)
    with_inliers = client.post(
        "/v1/recognize?collection=openapi&inliers=1", content=frame, headers={"Content-Type": "image/jpeg"}
    )
    assert with_inliers.json()["items"][0]["inlier_points"]
    assert_documented(spec, "/v1/recognize", "post", with_inliers)

    keypoints = "/v1/collections/{collection}/items/{item}/keypoints"
    assert_documented(spec, keypoints, "get", client.get(f"/v1/collections/openapi/items/{item_id}/keypoints"))
    assert_documented(spec, keypoints, "get", client.get("/v1/collections/openapi/items/missing/keypoints"))
    usage = "/v1/collections/{collection}/stats"
    assert_documented(spec, usage, "get", client.get("/v1/collections/openapi/stats"))
    assert_documented(spec, usage, "get", client.get("/v1/collections/openapi/stats?range=forever"))
    for query in ("", "?range=1h&collection=openapi", "?range=30d", "?range=7d&collection=nothing-here"):
        assert_documented(spec, "/v1/stats", "get", client.get("/v1/stats" + query))
    assert_documented(spec, "/v1/stats", "get", client.get("/v1/stats?range=forever"))
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_real_errors_match_the_documented_schemas(client: httpx.Client, spec: dict[str, Any]) -> None:
    items = "/v1/collections/{collection}/items"
    flat = cv2.imencode(".png", np.full((200, 300), 128, np.uint8))[1].tobytes()  # no keypoints at all

    missing = client.get("/v1/collections/no-such-collection/items")
    assert missing.status_code == 404
    assert_documented(spec, items, "get", missing)

    unknown = client.post("/v1/recognize?collection=no-such-collection", content=b"x")
    assert unknown.status_code == 404
    assert_documented(spec, "/v1/recognize", "post", unknown)

    bad_name = client.get("/v1/collections/bad%20name")
    assert bad_name.status_code == 400
    assert_documented(spec, "/v1/collections/{collection}", "get", bad_name)

    poor = client.post("/v1/collections/openapi/items", files={"image": ("flat.jpg", flat)}, data={"name": "Flat"})
    assert poor.status_code == 422, poor.text
    assert_documented(spec, items, "post", poor)

    unknown_field = client.patch("/v1/collections/demo/items/whatever", json={"price": 3})
    assert unknown_field.status_code == 400
    assert_documented(spec, "/v1/collections/{collection}/items/{item}", "patch", unknown_field)
