"""Image preparation for the judge: the size rule, the content hash the cache key uses, and the data URL sent.

The default rule is the protocol's pixel budget (``ecac_bench.protocol.PIXEL_BUDGET``): an image with more than
``max_pixels`` pixels is downscaled (aspect ratio kept) to fit, the same cap the captioning routes use; smaller
images are sent as they are (upscaling to ``min_pixels`` adds nothing; the server's processor does it). An explicit
``max_side`` (``--image-max-side``) replaces the budget with a cap on the longer side.

Speed: a JPEG is decoded at reduced size (libjpeg's DCT scaling, ``Image.draft``) to the smallest power-of-two
reduction still at least the target size, then resized with LANCZOS; the EXIF rotation is read from the header and
applied to the small result. The full-size pixels are never decoded (bench/image_prep.py measures the gain).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from ecac_bench.protocol import PIXEL_BUDGET

# Formats every OpenAI-compatible server decodes; others are re-encoded even when small enough.
_PASS_THROUGH = ("JPEG", "PNG", "WEBP")
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that turn the picture by 90 degrees
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageError(Exception):
    """An image part that cannot be sent (missing, unreadable, not an image): that request fails, the run goes on."""


@dataclass(frozen=True)
class ImageRule:
    """How big the judge's images may be: ``max_side`` (longer side, px) when given, else ``max_pixels``."""

    max_side: int | None = None
    max_pixels: int = PIXEL_BUDGET.max_pixels

    def target_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The downscaled size of a ``width`` x ``height`` picture (as displayed), or None when it fits."""
        if self.max_side is not None:
            return _thumbnail_size(width, height, self.max_side)
        if width * height <= self.max_pixels:
            return None
        scale = math.sqrt(self.max_pixels / (width * height))
        w, h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
        while w * h > self.max_pixels:  # float rounding at the boundary
            w, h = (w - 1, h) if w >= h else (w, h - 1)
        return w, h

    def key_part(self) -> dict[str, int]:
        """What the cache key records about the preparation (a change of rule is a new request)."""
        return {"max_side": self.max_side} if self.max_side is not None else {"max_pixels": self.max_pixels}

    def describe(self) -> dict[str, Any]:
        if self.max_side is not None:
            return {"rule": "max_side", "max_side": self.max_side}
        return {"rule": "pixel_budget", "max_pixels": self.max_pixels, "min_pixels": PIXEL_BUDGET.min_pixels}


def _thumbnail_size(width: int, height: int, side: int) -> tuple[int, int] | None:
    """The size ``Image.thumbnail((side, side))`` gives a ``width`` x ``height`` image (its own rounding rule, so
    the ``max_side`` rule keeps the sizes of earlier versions exactly), or None when it fits."""
    if side >= width and side >= height:
        return None
    aspect = width / height
    x = y = side
    if x / y >= aspect:
        x = max(min(math.floor(y * aspect), math.ceil(y * aspect), key=lambda n: abs(aspect - n / y)), 1)
    else:
        y = max(
            min(math.floor(x / aspect), math.ceil(x / aspect), key=lambda n: 0 if n == 0 else abs(aspect - x / n)), 1
        )
    return x, y


@lru_cache(maxsize=65_536)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def image_sha256(path: str) -> str:
    """Content hash of an image file's bytes, computed once per (path, mtime, size): re-runs and repair turns of
    the same image do not re-read it. Raises :class:`ImageError` for a file that cannot be read."""
    try:
        st = os.stat(path)
        return _sha256_of(path, st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise ImageError(f"image {path}: {exc.strerror or exc}") from exc


def prepare_image(path: str | Path, rule: ImageRule) -> tuple[str, bytes]:
    """(MIME type, bytes) to send for an image file: the file itself when it fits ``rule`` and is JPEG/PNG/WEBP,
    else re-encoded (JPEG quality 90, or PNG when it has transparency) at the rule's size, EXIF rotation applied."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"image {path}: {exc.strerror or exc}") from exc
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt = (img.format or "").upper()
            orientation = img.getexif().get(_ORIENTATION_TAG, 1)  # from the header: no pixel is decoded
            swapped = orientation in _SWAPS_AXES
            shown = (img.height, img.width) if swapped else img.size
            target = rule.target_size(*shown)
            if target is None and fmt in _PASS_THROUGH:
                return f"image/{fmt.lower()}", raw
            return _reencode(img, target or shown, swapped, orientation)
    except Exception as exc:  # a hostile file may raise anything from any decoder: that request fails, clearly
        reason = "not an image" if isinstance(exc, Image.UnidentifiedImageError) else f"{type(exc).__name__}: {exc}"
        raise ImageError(f"image {path}: cannot be read ({reason})") from exc


def _reencode(img: Image.Image, shown_size: tuple[int, int], swapped: bool, orientation: int) -> tuple[str, bytes]:
    size = (shown_size[1], shown_size[0]) if swapped else shown_size  # in the file's own orientation
    box = None
    if size != img.size:
        drafted = img.draft(None, size)  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still >= size; others: no-op
        if drafted is not None:
            box = drafted[1]
        img = img.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=2.0)
    method = _TRANSPOSE.get(orientation)
    if method is not None:  # re-encoding drops EXIF: apply its rotation to the pixels
        img = img.transpose(method)
    out = io.BytesIO()
    if img.mode in ("RGBA", "LA", "P"):
        img.save(out, format="PNG")
        return "image/png", out.getvalue()
    img.convert("RGB").save(out, format="JPEG", quality=90)
    return "image/jpeg", out.getvalue()


def image_data_url(path: str | Path, rule: ImageRule) -> str:
    """The image as a ``data:`` URL, prepared by :func:`prepare_image`."""
    mime, data = prepare_image(path, rule)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
