"""Copy bottle and MTD at a reduced size, so that both travel to a lent GPU machine (64 MiB limit).

    .venv/bin/python benchmarks/shrink_for_device.py ../shared/data .gpu/data --side 256

Images whose longer side exceeds ``--side`` are resized to it (Lanczos; aspect ratio kept) and
their masks with them (nearest neighbour), so each mask keeps its image's size, as the loaders
require. Bottle stays PNG (lossless); MTD's resized tiles are re-encoded as JPEG at ``--quality``
(the originals are JPEG too), the others are copied byte for byte. Pixel metrics on the copy run at
the copy's mask size (256 px for bottle instead of 900): a GPU row says so.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image


def shrunk(im: Image.Image, side: int, resample: Image.Resampling) -> Image.Image | None:
    """``im`` with its longer side at ``side``, or None if it is no larger already."""
    w, h = im.size
    scale = side / max(w, h)
    if scale >= 1:
        return None
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="data root holding mvtec/bottle and mtd")
    p.add_argument("dst")
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of resized MTD tiles")
    a = p.parse_args(argv)
    src, dst = Path(a.src), Path(a.dst)
    for path in sorted(src.glob("mvtec/bottle/**/*.png")):
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        is_mask = "ground_truth" in path.parts
        im = Image.open(path)
        small = shrunk(im, a.side, Image.Resampling.NEAREST if is_mask else Image.Resampling.LANCZOS)
        (small or im).save(out, optimize=True)
    for path in sorted(src.glob("mtd/MT_*/Imgs/*.jpg")):
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        mask = path.with_suffix(".png")
        small = shrunk(Image.open(path), a.side, Image.Resampling.LANCZOS)
        if small is None:
            shutil.copy(path, out)
            shutil.copy(mask, out.with_suffix(".png"))
        else:
            small.save(out, quality=a.quality)
            shrunk(Image.open(mask), a.side, Image.Resampling.NEAREST).save(out.with_suffix(".png"), optimize=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
