"""Image bytes to a grayscale array at the working resolution.

Pillow reads the header first, so the pixel count is checked before any
pixel is decoded (decompression bombs), EXIF orientation is honoured, and
JPEGs are decoded straight to a reduced size with `draft`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"})


class ImageError(ValueError):
    """Bytes that cannot be used as an image; `code` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodedImage:
    gray: np.ndarray
    """(h, w) uint8, at most `max_side` on its longer side."""
    width: int
    """Width of the full image after EXIF orientation, in pixels."""
    height: int
    scale: float
    """Factor from full-image pixels to `gray` pixels (<= 1)."""


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageError("invalid_image", "the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", str(exc)) from None
    except Image.DecompressionBombWarning:
        raise ImageError("image_too_large", "the image has too many pixels") from None
    except Exception:
        raise ImageError("invalid_image", "the bytes are not an image (JPEG, PNG, WebP, BMP, TIFF or GIF)") from None
    if img.format not in ACCEPTED_FORMATS:
        raise ImageError("invalid_image", f"unsupported image format {img.format}")
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError("invalid_image", "the image has no pixels")
    if w * h > max_pixels:
        raise ImageError(
            "image_too_large", f"{w}x{h} is {w * h} pixels, more than the limit of {max_pixels}"
        )
    return img


def decode_image(data: bytes, max_side: int, max_pixels: int) -> DecodedImage:
    """Decode `data` to grayscale no larger than `max_side`, honouring EXIF orientation."""
    img = _open(data, max_pixels)
    try:
        orientation = img.getexif().get(0x0112, 1)
        w, h = img.size
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        longer = max(w, h)
        if img.format == "JPEG" and longer > max_side:
            # draft picks a DCT scale >= the requested size: far less work than a full decode.
            shrink = longer / max_side
            draft_size = (int(img.size[0] / shrink) + 1, int(img.size[1] / shrink) + 1)
            img.draft("L", draft_size)
        img = ImageOps.exif_transpose(img)
        gray = np.asarray(img.convert("L"))
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError("invalid_image", f"the image could not be decoded: {exc}") from None
    if gray.ndim != 2 or gray.size == 0:
        raise ImageError("invalid_image", "the image has no pixels")
    gh, gw = gray.shape
    factor = max_side / max(gw, gh)
    if factor < 1.0:
        size = (max(1, round(gw * factor)), max(1, round(gh * factor)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    scale = gray.shape[1] / w
    return DecodedImage(gray=np.ascontiguousarray(gray), width=w, height=h, scale=scale)


def frame_from_array(pixels: np.ndarray, max_side: int) -> DecodedImage:
    """A decoded video frame ((h, w, 3) uint8 BGR or (h, w) uint8 gray) at the working size, like decode_image."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    h, w = pixels.shape[:2]
    if h == 0 or w == 0:
        raise ImageError("invalid_image", "the frame has no pixels")
    factor = max_side / max(w, h)
    gray = pixels
    if factor < 1.0:
        gray = cv2.resize(pixels, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return DecodedImage(gray=np.ascontiguousarray(gray), width=w, height=h, scale=gray.shape[1] / w)


def image_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Width and height of an image after EXIF orientation, read from its header."""
    img = _open(data, max_pixels)
    w, h = img.size
    if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
        w, h = h, w
    return w, h


def thumbnail_jpeg(data: bytes, max_side: int, max_pixels: int) -> bytes:
    """A small colour JPEG of an image, for collection listings."""
    img = _open(data, max_pixels)
    img.draft("RGB", (max_side, max_side))
    img = ImageOps.exif_transpose(img).convert("RGB")
    img.thumbnail((max_side, max_side))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()
