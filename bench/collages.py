"""Generated references that look like what people point a camera at: posters, book and CD covers,
catalogue pages and flyers, laid out from crops of photographs with titles and lines of text.

`crop_supply` cuts every crop source into non-overlapping rectangles of varied size and shape
(a random guillotine partition) and keeps the ones with something in them; each crop goes to
one collage only, so two references never share picture content. `compose` lays one page
out: the form sets the aspect ratio and the arrangement, a seed sets the rest (paper colour,
fonts, words, where the pictures go), so every collage is different and reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FORMS = ("poster", "book cover", "CD cover", "catalogue page", "flyer")
FORM_SHARES = (0.25, 0.2, 0.2, 0.15, 0.2)
TEXT_ONLY = "text-only page"
"""The kind of a collage made once the crops have run out: type and coloured shapes only."""

# Width / height of each form: portrait covers and pages, square CD covers, posters either way.
ASPECTS = {
    "poster": (1 / 1.414, 2 / 3, 1.414, 16 / 9),
    "book cover": (2 / 3, 1 / 1.5, 0.7, 0.62),
    "CD cover": (1.0,),
    "catalogue page": (1 / 1.414, 0.75),
    "flyer": (1 / 1.414, 1 / 2.1, 1.414),
    TEXT_ONLY: (1 / 1.414, 1.0, 1.414),
}
# How many pictures each form may hold (one drawn at random); the supply of crops is what limits
# how many collages have pictures, so most forms hold one or two.
PICTURES_PER_FORM = {
    "poster": (1, 1, 2, 3),
    "book cover": (1,),
    "CD cover": (1, 1, 1, 4),
    "catalogue page": (2, 3, 4),
    "flyer": (1, 1, 2),
}

SYLLABLES = tuple(
    "ka lo mi ra ven tor sel an dri mo lu ber cas tel no vi sa ren gal or pe din mar te qui lin fo har za el bri os".split()
)
WORDS = tuple(
    "summer festival night live tour garden river market gallery exhibition the of and collection edition new classic complete volume songs "
    "stories journey light north winter harbour city open house museum concert orchestra quartet jazz club cinema season tickets sale offer "
    "autumn spring island mountain valley coast home kitchen travel guide history science art modern ancient lost secret last first world".split()
)
STREETS = ("Street", "Road", "Avenue", "Square", "Hall", "Park", "Lane", "Quay")
CONTENT_SIDE = 128
"""Longer side (px) at which a crop is judged for content: about its size on a page."""
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Crop:
    """A rectangle of a source photograph, used by one collage only."""

    source: str
    x: int
    y: int
    w: int
    h: int


# -- crop supply -----------------------------------------------------------------------------


def _partition(
    rng: np.random.Generator, x: int, y: int, w: int, h: int, smallest: int, largest: int, out: list
) -> None:
    """Split the rectangle in two along its longer side until pieces are at most `largest` (and
    sometimes stop earlier below that), never making a side shorter than `smallest`."""
    longer = max(w, h)
    if longer < 2 * smallest or (longer <= largest and rng.random() < 0.35):
        out.append((x, y, w, h))
        return
    cut = int(longer * rng.uniform(0.3, 0.7))
    cut = min(max(cut, smallest), longer - smallest)
    if w >= h:
        _partition(rng, x, y, cut, h, smallest, largest, out)
        _partition(rng, x + cut, y, w - cut, h, smallest, largest, out)
    else:
        _partition(rng, x, y, w, cut, smallest, largest, out)
        _partition(rng, x, y + cut, w, h - cut, smallest, largest, out)


def has_content(gray: np.ndarray) -> bool:
    """A crop worth printing: not a flat sky, gradient or an empty patch of black space, judged at
    about the size it takes on a page."""
    h, w = gray.shape
    if h == 0 or w == 0:
        return False
    f = min(1.0, CONTENT_SIDE / max(w, h))
    if f < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    if float(gray.std()) < 16.0:
        return False
    edges = np.abs(cv2.Laplacian(gray, cv2.CV_16S, ksize=3))
    return float((edges > 24).mean()) > 0.05


def crops_of(rng: np.random.Generator, path: str, image: np.ndarray, smallest: int, largest: int) -> list[Crop]:
    """Non-overlapping crops of one photograph that have content, in a random order."""
    h, w = image.shape[:2]
    rects: list[tuple[int, int, int, int]] = []
    _partition(rng, 0, 0, w, h, smallest, largest, rects)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    kept = [Crop(path, x, y, cw, ch) for x, y, cw, ch in rects if has_content(gray[y : y + ch, x : x + cw])]
    return [kept[i] for i in rng.permutation(len(kept))]


# -- text ------------------------------------------------------------------------------------


def _name(rng: np.random.Generator) -> str:
    return "".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), rng.integers(2, 4))).capitalize()


def _phrase(rng: np.random.Generator, words: tuple[int, int]) -> str:
    parts = []
    for _ in range(rng.integers(words[0], words[1] + 1)):
        parts.append(_name(rng) if rng.random() < 0.3 else str(WORDS[rng.integers(len(WORDS))]))
    text = " ".join(parts)
    return text.upper() if rng.random() < 0.4 else text.capitalize()


def _detail(rng: np.random.Generator) -> str:
    """A line of the kind that fills the rest of a page: a date, a price, an address."""
    pick = rng.integers(6)
    if pick == 0:
        return f"{rng.integers(1, 29)} {MONTHS[rng.integers(12)]} {rng.integers(1990, 2031)} · {rng.integers(10, 23)}:{rng.choice(['00', '30'])}"
    if pick == 1:
        return f"{_phrase(rng, (1, 3))}  {rng.integers(2, 400)}.{rng.integers(0, 100):02d}"
    if pick == 2:
        return f"{rng.integers(1, 300)} {_name(rng)} {STREETS[rng.integers(len(STREETS))]}"
    if pick == 3:
        return f"www.{_name(rng).lower()}.{rng.choice(['org', 'com', 'net', 'eu'])}"
    if pick == 4:
        return f"No. {rng.integers(1, 9999)} — {_phrase(rng, (1, 2))}"
    return _phrase(rng, (3, 7)).capitalize()


@lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _fit_font(draw: ImageDraw.ImageDraw, font_path: str, text: str, width: int, height: int) -> ImageFont.FreeTypeFont:
    """The largest size of `font_path` at which `text` fits in width x height (at least 6 px)."""
    size = max(6, int(height))
    while True:
        font = _font(font_path, size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if (right - left <= width and bottom - top <= height) or size <= 6:
            return font
        size = max(6, int(size * min(0.92, width / max(1, right - left))))


def _text_lines(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    lines: list[str],
    font_path: str,
    colour: tuple,
    align: str,
) -> None:
    """Lines stacked in `box`, each as large as fits its share of the height."""
    x0, y0, x1, y1 = box
    if not lines or x1 - x0 < 8 or y1 - y0 < 8:
        return
    step = (y1 - y0) / len(lines)
    for n, line in enumerate(lines):
        font = _fit_font(draw, font_path, line, x1 - x0, int(step * 0.78))
        left, top, right, _ = draw.textbbox((0, 0), line, font=font)
        width = right - left
        x = {"left": x0, "centre": x0 + (x1 - x0 - width) // 2, "right": x1 - width}[align] - left
        draw.text((x, int(y0 + n * step) - top), line, font=font, fill=colour)


# -- pictures --------------------------------------------------------------------------------


def _cover(picture: np.ndarray, width: int, height: int) -> Image.Image:
    """The picture scaled to fill width x height, the overflow cut off evenly (RGB)."""
    h, w = picture.shape[:2]
    f = max(width / w, height / h)
    scaled = cv2.resize(
        picture,
        (max(width, round(w * f)), max(height, round(h * f))),
        interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC,
    )
    sh, sw = scaled.shape[:2]
    x, y = (sw - width) // 2, (sh - height) // 2
    return Image.fromarray(cv2.cvtColor(scaled[y : y + height, x : x + width], cv2.COLOR_BGR2RGB))


def _cells(
    rng: np.random.Generator, box: tuple[int, int, int, int], count: int, gutter: int
) -> list[tuple[int, int, int, int]]:
    """`count` picture cells filling `box`: one, a pair, one large and two small, or a 2x2 grid."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if count == 1:
        return [box]
    if count == 2:
        if w >= h:
            m = x0 + int(w * rng.uniform(0.4, 0.6))
            return [(x0, y0, m - gutter // 2, y1), (m + gutter // 2, y0, x1, y1)]
        m = y0 + int(h * rng.uniform(0.4, 0.6))
        return [(x0, y0, x1, m - gutter // 2), (x0, m + gutter // 2, x1, y1)]
    if count == 3:
        if w >= h:
            m = x0 + int(w * rng.uniform(0.5, 0.65))
            c = (y0 + y1) // 2
            return [
                (x0, y0, m - gutter // 2, y1),
                (m + gutter // 2, y0, x1, c - gutter // 2),
                (m + gutter // 2, c + gutter // 2, x1, y1),
            ]
        m = y0 + int(h * rng.uniform(0.5, 0.65))
        c = (x0 + x1) // 2
        return [
            (x0, y0, x1, m - gutter // 2),
            (x0, m + gutter // 2, c - gutter // 2, y1),
            (c + gutter // 2, m + gutter // 2, x1, y1),
        ]
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    g = gutter // 2
    return [(x0, y0, cx - g, cy - g), (cx + g, y0, x1, cy - g), (x0, cy + g, cx - g, y1), (cx + g, cy + g, x1, y1)]


def _colour(rng: np.random.Generator, light: bool) -> tuple[int, int, int]:
    hsv = np.uint8(
        [[[rng.integers(0, 180), rng.integers(0, 160), rng.integers(215, 256) if light else rng.integers(20, 90)]]]
    )
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _shapes(rng: np.random.Generator, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], light: bool) -> None:
    """Coloured discs and bars: the graphic design of a page without pictures. They are as light
    (or as dark) as the paper, so the type printed over them stays legible."""
    x0, y0, x1, y1 = box
    size = min(x1 - x0, y1 - y0)
    for _ in range(rng.integers(3, 9)):
        fill = _colour(rng, light)
        cx, cy = rng.integers(x0, x1), rng.integers(y0, y1)
        r = int(size * rng.uniform(0.05, 0.3))
        if rng.random() < 0.5:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.rectangle((cx - r, cy - r // 3, cx + r, cy + r // 3), fill=fill)


# -- pages -----------------------------------------------------------------------------------


def page_size(form: str, aspect: float, longer_side: int) -> tuple[int, int]:
    if aspect >= 1:
        return longer_side, max(1, round(longer_side / aspect))
    return max(1, round(longer_side * aspect)), longer_side


def compose(form: str, seed: int, pictures: list[np.ndarray], fonts: list[Path], longer_side: int) -> np.ndarray:
    """One page of `form` (BGR uint8, `longer_side` on its longer side) from `pictures` (BGR crops)."""
    rng = np.random.default_rng(seed)
    aspects = ASPECTS[form]
    width, height = page_size(form, float(aspects[rng.integers(len(aspects))]), longer_side)
    light = bool(rng.random() < 0.65)
    paper = _colour(rng, light)
    ink = _colour(rng, not light)
    page = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(page)
    title_font = str(fonts[rng.integers(len(fonts))])
    body_font = str(fonts[rng.integers(len(fonts))])
    margin = int(min(width, height) * rng.uniform(0.03, 0.07))
    gutter = max(2, margin // 2)
    inner = (margin, margin, width - margin, height - margin)

    def put_pictures(box: tuple[int, int, int, int]) -> None:
        for cell, picture in zip(_cells(rng, box, len(pictures), gutter), pictures, strict=True):
            cw, ch = cell[2] - cell[0], cell[3] - cell[1]
            if cw > 4 and ch > 4:
                page.paste(_cover(picture, cw, ch), cell[:2])

    def split(
        box: tuple[int, int, int, int], fraction: float
    ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        x0, y0, x1, y1 = box
        m = y0 + int((y1 - y0) * fraction)
        return (x0, y0, x1, m - gutter // 2), (x0, m + gutter // 2, x1, y1)

    align = str(rng.choice(["left", "centre", "right"]))
    if form == TEXT_ONLY or not pictures:
        _shapes(rng, draw, (0, 0, width, height), light)
        top, rest = split(inner, rng.uniform(0.15, 0.3))
        _text_lines(draw, top, [_phrase(rng, (1, 3)) for _ in range(rng.integers(1, 3))], title_font, ink, align)
        _text_lines(draw, rest, [_detail(rng) for _ in range(rng.integers(6, 16))], body_font, ink, align)
    elif form == "poster":
        title, rest = split(inner, rng.uniform(0.12, 0.22))
        pictures_box, text = split(rest, rng.uniform(0.6, 0.8))
        if rng.random() < 0.4:  # title under the picture
            pictures_box, title = split(inner, rng.uniform(0.6, 0.75))
            title, text = split(title, 0.5)
        put_pictures(pictures_box)
        _text_lines(draw, title, [_phrase(rng, (1, 3))], title_font, ink, align)
        _text_lines(draw, text, [_detail(rng) for _ in range(rng.integers(2, 5))], body_font, ink, align)
    elif form == "book cover":
        if rng.random() < 0.5:  # full-bleed picture with the title on a band
            put_pictures((0, 0, width, height))
            y = int(height * rng.uniform(0.05, 0.6))
            band = (0, y, width, y + int(height * rng.uniform(0.18, 0.3)))
            draw.rectangle(band, fill=paper)
            title, author = split((margin, band[1] + gutter, width - margin, band[3] - gutter), 0.65)
        else:
            title, rest = split(inner, rng.uniform(0.2, 0.3))
            pictures_box, author = split(rest, rng.uniform(0.75, 0.88))
            put_pictures(pictures_box)
        _text_lines(draw, title, [_phrase(rng, (1, 3)) for _ in range(rng.integers(1, 3))], title_font, ink, align)
        _text_lines(draw, author, [f"{_name(rng)} {_name(rng)}"], body_font, ink, align)
    elif form == "CD cover":
        put_pictures((0, 0, width, height) if rng.random() < 0.6 else inner)
        y = int(height * rng.choice([0.04, 0.8]))
        strip = (margin, y, width - margin, y + int(height * rng.uniform(0.1, 0.16)))
        if rng.random() < 0.5:
            draw.rectangle((0, strip[1] - gutter, width, strip[3] + gutter), fill=paper)
        _text_lines(draw, strip, [_name(rng).upper(), _phrase(rng, (1, 3))], title_font, ink, align)
    elif form == "catalogue page":
        header, rest = split(inner, rng.uniform(0.07, 0.12))
        draw.rectangle((0, 0, width, header[3] + gutter), fill=_colour(rng, not light))
        _text_lines(draw, header, [f"{_phrase(rng, (1, 2))}   {rng.integers(2, 300)}"], title_font, paper, "left")
        products, footer = split(rest, rng.uniform(0.75, 0.88))
        cells = _cells(rng, products, len(pictures), gutter * 2)
        for cell, picture in zip(cells, pictures, strict=True):
            picture_box, caption = split(cell, rng.uniform(0.65, 0.8))
            cw, ch = picture_box[2] - picture_box[0], picture_box[3] - picture_box[1]
            if cw > 4 and ch > 4:
                page.paste(_cover(picture, cw, ch), picture_box[:2])
            _text_lines(
                draw,
                caption,
                [_phrase(rng, (1, 3)), f"{rng.integers(2, 900)}.{rng.integers(0, 100):02d}"],
                body_font,
                ink,
                "left",
            )
        _text_lines(draw, footer, [_detail(rng) for _ in range(rng.integers(2, 4))], body_font, ink, "left")
    elif form == "flyer":
        title, rest = split(inner, rng.uniform(0.12, 0.2))
        pictures_box, text = split(rest, rng.uniform(0.4, 0.6))
        put_pictures(pictures_box)
        _text_lines(draw, title, [_phrase(rng, (2, 4))], title_font, ink, align)
        _text_lines(draw, text, [_detail(rng) for _ in range(rng.integers(4, 9))], body_font, ink, align)
    else:
        raise ValueError(f"unknown form {form}")
    return cv2.cvtColor(np.asarray(page), cv2.COLOR_RGB2BGR)
