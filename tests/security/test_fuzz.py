"""Hostile input: every message, image and upload gets a defined answer and the server stays up.

Property tests (hypothesis) on the pure decoders, then a bounded fuzz run over raw bytes against the
live websocket and the upload API. Each test prints how many inputs it tried (pytest -s shows them);
bench/soak.py runs the same kind of input for minutes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import httpx
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from websockets.sync.client import ClientConnection, connect

from matcher.decode import DecodedImage, ImageError, decode_image
from server import protocol
from tests.conftest import RunningServer
from tests.images import photo_bytes
from tests.security.helpers import QUIET

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes about the broken files we feed it

PROTOCOL_CODES = {protocol.BAD_MESSAGE, protocol.BAD_FRAME, protocol.UNKNOWN_TYPE}
IMAGE_CODES = {"invalid_image", "image_too_large"}
STREAM_CODES = PROTOCOL_CODES | IMAGE_CODES | {protocol.MESSAGE_TOO_LARGE}
def budget(examples: int) -> settings:
    """A fixed number of inputs, no per-input deadline (the machine is shared), no example database on disk."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
maps = st.dictionaries(
    st.sampled_from(["type", "id", "image", "token", "x"]) | st.text(max_size=6),
    st.sampled_from(["frame", "auth", "hello"]) | json_values,
    max_size=5,
)


def small_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    pixels = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out = []
    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"):
        buffer = io.BytesIO()
        pixels.save(buffer, fmt)
        out.append(buffer.getvalue())
    return out


SEEDS = small_images()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid small image with some bytes flipped, cut short or spliced: the inputs decoders choke on."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def check_decoded(raw: bytes | str) -> protocol.FrameMessage | protocol.AuthMessage | None:
    try:
        message = protocol.decode_client_message(raw)
    except protocol.ProtocolError as exc:
        assert exc.code in PROTOCOL_CODES and exc.message
        assert len(exc.message) < 200  # no echo of the input
        return None
    assert isinstance(message, protocol.FrameMessage | protocol.AuthMessage)
    return message


@budget(1000)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_any_bytes_or_text_decode_to_a_message_or_a_protocol_error(raw: bytes | str) -> None:
    check_decoded(raw)


@budget(800)
@given(maps, st.booleans())
def test_any_map_decodes_to_a_message_or_a_protocol_error(message: dict, binary: bool) -> None:
    if binary:
        check_decoded(msgpack.packb(message, use_bin_type=True))
    else:
        check_decoded(json.dumps(message, default=lambda b: b.hex()))


def test_deeply_nested_json_is_a_bad_message_not_a_crash() -> None:
    assert check_decoded("[" * 100_000) is None
    assert check_decoded(b"\x91" * 100_000) is None


@budget(400)
@given(mutated_images() | st.binary(max_size=200))
def test_any_image_bytes_decode_or_raise_image_error(data: bytes) -> None:
    try:
        decoded = decode_image(data, max_side=64, max_pixels=100_000)
    except ImageError as exc:
        assert exc.code in IMAGE_CODES
        return
    assert isinstance(decoded, DecodedImage)
    assert decoded.gray.dtype == np.uint8 and decoded.gray.ndim == 2 and max(decoded.gray.shape) <= 64


# -- against the live server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = RunningServer(tmp_path_factory.mktemp("fuzz"), env={**QUIET, "CATCHLIGHT_MAX_MESSAGE_BYTES": "65536"}).start()
    reply = httpx.post(
        f"{server.url}/v1/collections/fz/items", files={"image": ("c.png", photo_bytes("coffee.png"))}, data={"name": "c"}
    )
    assert reply.status_code == 201
    yield server
    server.stop()
    server.kill_orphans()


@pytest.fixture(scope="module")
def stream(target: RunningServer) -> Iterator[ClientConnection]:
    with connect(f"{target.ws_url}/v1/stream?collection=fz", max_size=None) as ws:
        assert msgpack.unpackb(ws.recv(timeout=10))["type"] == "hello"
        yield ws


def frame_maps() -> st.SearchStrategy[bytes | str]:
    frames = st.builds(
        lambda i, image: msgpack.packb({"type": "frame", "id": i, "image": image}),
        st.integers(0, 2**53 - 1),
        mutated_images() | st.binary(max_size=64),
    )
    packed = maps.map(lambda m: msgpack.packb(m, use_bin_type=True))
    return frames | packed | st.binary(max_size=200) | st.text(max_size=200)


tried = {"stream": 0, "http": 0}


@budget(250)
@given(raw=frame_maps())
def test_live_stream_answers_every_fuzzed_message(stream: ClientConnection, raw: bytes | str) -> None:
    tried["stream"] += 1
    expected = check_decoded(raw)
    stream.send(raw)
    if isinstance(expected, protocol.AuthMessage):
        return  # an open server has nothing to say to an auth message
    reply = stream.recv(timeout=60)
    message = msgpack.unpackb(reply) if isinstance(reply, bytes) else json.loads(reply)
    assert message["type"] in {"result", "error", "skipped"}
    if message["type"] == "error":
        assert message["code"] in STREAM_CODES, message
    if isinstance(expected, protocol.FrameMessage):
        assert message["id"] == expected.id


@budget(120)
@given(body=mutated_images() | st.binary(max_size=300), path=st.sampled_from(["recognize", "upload"]))
def test_live_upload_api_answers_every_fuzzed_body(target: RunningServer, body: bytes, path: str) -> None:
    tried["http"] += 1
    if path == "recognize":
        reply = httpx.post(f"{target.url}/v1/recognize?collection=fz", content=body, timeout=60)
        allowed = {200, 400, 413}
    else:
        reply = httpx.post(
            f"{target.url}/v1/collections/fz/items", files={"image": ("x", body)}, data={"name": "x", "item": "fuzz"}, timeout=60
        )
        allowed = {201, 400, 413, 422}
    assert reply.status_code in allowed, reply.text
    if reply.status_code >= 400:
        assert set(reply.json()["error"]) >= {"code", "message"}


def test_server_is_still_up_after_the_fuzzing(target: RunningServer) -> None:
    print(f"\nfuzz inputs tried against the live server: stream {tried['stream']}, http {tried['http']}")
    assert httpx.get(f"{target.url}/healthz", timeout=30).status_code == 200
    assert "Traceback" not in target.log(), target.log()[-3000:]
