"""Real photographs from packages any machine can install, fetched once and cached under `.cache/`.

Nothing here is in the repository; the images come from:

| source | licence | used as |
| --- | --- | --- |
| Debian `endless-sky-data`, `images/land/*.jpg` (273 photos, 720x360) | CC-BY-SA-4.0 / public domain (see the package's copyright file) | references, and held-out backgrounds |
| Debian `plasma-workspace-wallpapers` (largest size of each scene) | LGPL/CC-BY-SA (package copyright file) | crops for generated references (collages) |
| Debian `stellarium-data`, `nebulae/default/*.png` | various free licences (package copyright file) | references; the large ones cropped for collages |
| Debian `naev-data`, `dat/gfx/planet/exterior`, `dat/gfx/loading`, `dat/gfx/bkg` | CC-BY-SA / GPL (package copyright file) | references (paintings); bkg cropped for collages |
| Debian `fonts-dejavu-core`, `fonts-liberation` | Bitstream Vera derivative / SIL OFL 1.1 (package copyright files) | the type set on collages |
| scikit-image wheel from PyPI, `skimage/data/*` | BSD-3-Clause and public domain (its README.txt) | the small fixed set of the engine tests |
| Debian `opencv-doc`, `examples/data`: `graf1.png`, `graf3.png`, `H1to3p.xml`, `box.png`, `box_in_scene.png` | BSD-3-Clause / Apache-2.0 (package copyright file) | real camera shots (bench/real_shots.py) |
| Debian `visp-images-data`, `ViSP-images/cube/image.*.pgm` (80 frames, 384x288) | GPL-2 (package copyright file) | a real camera sequence (bench/real_shots.py) |

Fetching uses the ordinary clients: `apt-get download` + `dpkg-deb -x`, and
`pip download --no-deps`. A failure raises `SourceUnavailable` with the
command that failed: the benchmark and the tests never skip silently.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CATCHLIGHT_CACHE", ROOT / ".cache"))

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")

# Photographs of scikit-image's data folder (the rest are line art, microscopy, binary masks).
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "color.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "moon.png",
    "motorcycle_left.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)


class SourceUnavailable(RuntimeError):
    """Images could not be fetched; the message says which command failed."""


def _run(command: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise SourceUnavailable(f"`{' '.join(command)}` could not run: {exc}") from None
    if done.returncode != 0:
        raise SourceUnavailable(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()[-800:]}")


def debian_package(name: str) -> Path:
    """Root of the extracted Debian package `name` (downloaded with apt-get once)."""
    target = CACHE / "debian" / name
    if (target / ".complete").exists():
        return target
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{name}_*.deb"))
    if not found:
        try:
            _run(["apt-get", "download", name], cwd=debs)
        except SourceUnavailable:
            # A fresh machine may have no package lists yet: fetch them once (as root only) and try again.
            if not hasattr(os, "geteuid") or os.geteuid() != 0:
                raise
            _run(["apt-get", "update", "-qq"], cwd=debs)
            _run(["apt-get", "download", name], cwd=debs)
        found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            raise SourceUnavailable(f"apt-get download {name} left no .deb in {debs} (try `apt-get update`)")
    target.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(found[-1]), str(target)], cwd=debs)
    (target / ".complete").touch()
    return target


def skimage_data() -> Path:
    """Folder holding scikit-image's sample images, read from its wheel (pip download once)."""
    target = CACHE / "skimage" / "skimage" / "data"
    if all((target / n).exists() for n in SKIMAGE_PHOTOS):
        return target
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("scikit_image-*.whl"))
    if not found:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels), "scikit-image"], cwd=wheels)
        found = sorted(wheels.glob("scikit_image-*.whl"))
        if not found:
            raise SourceUnavailable(f"pip download scikit-image left no wheel in {wheels}")
    with zipfile.ZipFile(found[-1]) as wheel:
        for member in wheel.namelist():
            if member.startswith("skimage/data/") and not member.endswith("/"):
                wheel.extract(member, CACHE / "skimage")
    missing = [n for n in SKIMAGE_PHOTOS if not (target / n).exists()]
    if missing:
        raise SourceUnavailable(f"the scikit-image wheel {found[-1].name} lacks {missing}")
    return target


def skimage_photos() -> list[Path]:
    """scikit-image's photographs, in a fixed order."""
    folder = skimage_data()
    return [folder / n for n in SKIMAGE_PHOTOS]


def _files(folder: Path, pattern: str = "*") -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(str(folder / pattern)) if p.lower().endswith(PHOTO_SUFFIXES))
    if not paths:
        raise SourceUnavailable(f"no images under {folder}")
    return paths


def landscape_photos() -> list[Path]:
    """Endless Sky's 273 landscape and city photographs (720x360)."""
    return _files(debian_package("endless-sky-data") / "usr/share/games/endless-sky/images/land")


def wallpaper_photos() -> list[Path]:
    """The largest version of each Plasma wallpaper (up to 5120x2880); dark variants left out."""
    root = debian_package("plasma-workspace-wallpapers") / "usr/share/wallpapers"
    largest = []
    for scene in sorted(p for p in root.iterdir() if p.is_dir()):
        images = _files(scene / "contents" / "images")

        def pixels(p: Path) -> int:
            w, _, h = p.stem.partition("x")
            return int(w) * int(h) if w.isdigit() and h.isdigit() else 0

        largest.append(max(images, key=pixels))
    return largest


def nebula_photos() -> list[Path]:
    """Stellarium's astrophotographs of deep-sky objects."""
    return _files(debian_package("stellarium-data") / "usr/share/stellarium/nebulae/default")


def painting_photos() -> list[Path]:
    """Naev's planet and loading-screen paintings, each picture once.

    The uninhabited rocky planets are five pictures in seven tints each
    (uninhabited-rocky-red-02.png is uninhabited-rocky-green-02.png recoloured):
    in grey, which is what the engine sees, they are one picture, so only the
    first tint of each is used.
    """
    gfx = debian_package("naev-data") / "usr/share/naev/dat/gfx"
    kept, pictures = [], set()
    for path in _files(gfx / "planet" / "exterior"):
        tinted = re.fullmatch(r"uninhabited-rocky-[a-z]+-(\d+)", path.stem)
        if tinted is not None:
            if tinted.group(1) in pictures:
                continue
            pictures.add(tinted.group(1))
        kept.append(path)
    return kept + _files(gfx / "loading")


def space_backdrops() -> list[Path]:
    """Naev's large space backdrops (cropped for generated references)."""
    return _files(debian_package("naev-data") / "usr/share/naev/dat/gfx/bkg")


def font_files() -> list[Path]:
    """TrueType faces of DejaVu and Liberation (sans, serif, mono, narrow; regular, bold, italic)."""
    fonts = []
    for package, folder in (("fonts-dejavu-core", "dejavu"), ("fonts-liberation", "liberation")):
        root = debian_package(package) / "usr/share/fonts/truetype" / folder
        fonts += sorted(root.glob("*.ttf"))
    if not fonts:
        raise SourceUnavailable("the font packages hold no .ttf files")
    return fonts


def opencv_samples() -> Path:
    """OpenCV's sample images (Debian `opencv-doc`): real camera shots used by its feature-matching samples."""
    folder = debian_package("opencv-doc") / "usr/share/doc/opencv-doc/examples/data"
    if not (folder / "H1to3p.xml").exists():
        raise SourceUnavailable(f"opencv-doc has no examples/data/H1to3p.xml under {folder}")
    return folder


def visp_images() -> Path:
    """ViSP's test images (Debian `visp-images-data`): camera sequences recorded for its trackers."""
    folder = debian_package("visp-images-data") / "usr/share/visp-images-data/ViSP-images"
    if not (folder / "cube").is_dir():
        raise SourceUnavailable(f"visp-images-data has no ViSP-images/cube under {folder}")
    return folder
