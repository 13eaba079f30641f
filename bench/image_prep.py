"""Image preparation for the judge: the old path (full decode, ``exif_transpose``, then ``thumbnail``) against
reduce-on-load (JPEG draft mode, rotation applied after the resize), on a 12 MP phone-sized JPEG, in the same run.

    .venv/bin/python bench/image_prep.py [--repeat 7]

Prints milliseconds per image (median of the repeats) for the protocol's pixel budget (the judge's default) and for
``--image-max-side 1024``, upright and with an EXIF rotation, the ratio old / new, and the output sizes of both
(they must be identical). The goal (issue 16): >= 2x at the default size.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ecac_bench.llm import ImageRule, image_data_url

SIZE = (4000, 3000)  # 12 MP, a phone camera's


def make_photo(path: Path, orientation: int) -> Path:
    """A JPEG with photo-like content (gradients, edges, sensor-like noise) and an EXIF orientation tag."""
    rng = np.random.default_rng(0)
    w, h = SIZE
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * 255 // w), (y * 255 // h), ((x // 200 + y // 200) % 2) * 200], -1).astype(np.int16)
    arr = (arr + rng.integers(-12, 12, arr.shape)).clip(0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=92, exif=exif.tobytes())
    return path


def old_data_url(path: Path, rule: ImageRule) -> str:
    """The client's preparation before reduce-on-load (ecac_bench/llm_client.py), at the same target size."""
    raw = path.read_bytes()
    with Image.open(io.BytesIO(raw)) as img:
        img = ImageOps.exif_transpose(img)  # loads every pixel of the full-size image
        if rule.max_side is not None:
            img.thumbnail((rule.max_side, rule.max_side), Image.Resampling.LANCZOS)
        else:
            img = img.resize(rule.target_size(*img.size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        out = io.BytesIO()
        img.convert("RGB").save(out, format="JPEG", quality=90)
    return f"data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


def size_of(url: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
        return img.size


def median_ms(func, repeat: int) -> float:
    func()  # warm: file cache, imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"{SIZE[0]} x {SIZE[1]} JPEG (quality 92); median of {args.repeat} runs, ms per image")
    print(f"{'rule':>22} {'EXIF':>5} {'old ms':>8} {'new ms':>8} {'old/new':>8} {'old size':>11} {'new size':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for orientation in (1, 6):
            path = make_photo(Path(tmp) / f"photo{orientation}.jpg", orientation)
            for name, rule in (("pixel budget (default)", ImageRule()), ("max side 1024", ImageRule(max_side=1024))):
                old = median_ms(lambda: old_data_url(path, rule), args.repeat)  # noqa: B023
                new = median_ms(lambda: image_data_url(path, rule), args.repeat)  # noqa: B023
                old_size, new_size = size_of(old_data_url(path, rule)), size_of(image_data_url(path, rule))
                assert old_size == new_size, (old_size, new_size)
                sizes = [f"{w} x {h}" for w, h in (old_size, new_size)]
                print(
                    f"{name:>22} {orientation:>5} {old:>8.1f} {new:>8.1f} {old / new:>7.2f}x "
                    f"{sizes[0]:>11} {sizes[1]:>11}"
                )


if __name__ == "__main__":
    main()
