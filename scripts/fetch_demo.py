"""Put the demo collection's images in .cache/demo (run by scripts/setup).

The images are the photographs bundled in the scikit-image wheel on PyPI
(BSD-3-Clause / public domain, see skimage/data/README.txt in the wheel);
pip fetches the wheel, nothing is downloaded from elsewhere. Each image gets a
JSON sidecar with the name and metadata the server stores with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".cache" / "demo"

# file in skimage/data -> (name, caption); textured photos that make good targets
IMAGES = {
    "astronaut.png": ("Astronaut", "Eileen Collins, NASA portrait (public domain)"),
    "coffee.png": ("Coffee cup", "A cup of coffee on a saucer, by Rachel Michetti"),
    "chelsea.png": ("Chelsea the cat", "Chelsea the cat, by Stefan van der Walt"),
    "rocket.jpg": ("Rocket", "A SpaceX Falcon 9 on its pad (public domain)"),
    "motorcycle_left.png": ("Motorcycle", "Middlebury stereo dataset motorcycle"),
    "hubble_deep_field.jpg": ("Hubble deep field", "Hubble eXtreme Deep Field, NASA (public domain)"),
    "retina.jpg": ("Retina", "Human retina, by Mikael Häggström (public domain)"),
    "brick.png": ("Brick wall", "Brick wall texture (public domain)"),
}
ACTIONS = {
    "astronaut.png": {"action": {"type": "url", "url": "https://www.nasa.gov/"}},
    "rocket.jpg": {"action": {"type": "text", "text": "Falcon 9: 70 m tall, two stages."}},
    # A video action: the camera page plays it in a sheet when the card's button is tapped.
    "chelsea.png": {
        "action": {"type": "video", "url": "https://download.blender.org/peach/bigbuckbunny_movies/BigBuckBunny_320x180.mp4"}
    },
}


def fetch_wheel(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(folder), "scikit-image"],
        check=True,
    )
    return next(folder.glob("scikit_image-*.whl"))


def write_sidecars() -> None:
    """Names, captions and actions of the demo images (rewritten every time, so a change here reaches old caches)."""
    for name, (title, caption) in IMAGES.items():
        metadata = {"name": title, "caption": caption, "source": "scikit-image sample data"}
        metadata.update(ACTIONS.get(name, {}))
        text = json.dumps(metadata, indent=2) + "\n"
        sidecar = (DEMO / name).with_suffix(".json")
        if not sidecar.exists() or sidecar.read_text() != text:
            sidecar.write_text(text)


def main() -> int:
    DEMO.mkdir(parents=True, exist_ok=True)
    if not all((DEMO / name).exists() for name in IMAGES):
        with tempfile.TemporaryDirectory() as tmp:
            wheel = fetch_wheel(Path(tmp))
            with zipfile.ZipFile(wheel) as archive:
                for name in IMAGES:
                    (DEMO / name).write_bytes(archive.read(f"skimage/data/{name}"))
        print(f"demo images in {DEMO}")
    write_sidecars()
    return 0


if __name__ == "__main__":
    sys.exit(main())
