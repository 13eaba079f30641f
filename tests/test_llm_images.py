"""Image preparation: the size rules, reduce-on-load giving the old path's sizes and pictures, EXIF rotation, files
that are not images, and the content hash computed once."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from judge_server import JudgeServer
from PIL import Image, ImageOps, JpegImagePlugin

from ecac_bench import SAMPLE_DATA
from ecac_bench.cli import main
from ecac_bench.llm import ImageError, ImageRule, image_sha256, prepare_image
from ecac_bench.llm.images import _sha256_of, _thumbnail_size
from ecac_bench.protocol import PIXEL_BUDGET


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 1600), st.integers(1, 1600), st.integers(1, 1200))
def test_max_side_sizes_are_pillows_thumbnail_sizes(width, height, side):
    image = Image.new("L", (width, height))
    image.thumbnail((side, side), Image.Resampling.NEAREST)
    expected = None if image.size == (width, height) else image.size
    assert _thumbnail_size(width, height, side) == expected


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20_000), st.integers(1, 20_000))
def test_pixel_budget_sizes(width, height):
    target = ImageRule().target_size(width, height)
    if width * height <= PIXEL_BUDGET.max_pixels:
        assert target is None
        return
    w, h = target
    assert w * h <= PIXEL_BUDGET.max_pixels and w <= width and h <= height
    # as large as the budget allows: one more pixel on the shorter side would not fit, up to rounding of the ratio
    assert (w + 1) * (h + 1) > PIXEL_BUDGET.max_pixels
    assert abs(w / h - width / height) <= max(1 / h, 1 / w) * (width / height + 1)


def photo(path, size=(2400, 1800), orientation=1, quality=90):
    """A JPEG with structure (gradients, a red left half) and the given EXIF orientation."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 255 // (w + h))], -1).astype(np.uint8)
    arr[:, : w // 2, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=quality, exif=exif.tobytes())
    return path


def old_way(path, rule):
    """What the client did before reduce-on-load: full decode, exif_transpose, thumbnail (or resize to the budget)."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if rule.max_side is not None:
            img.thumbnail((rule.max_side, rule.max_side), Image.Resampling.LANCZOS)
        else:
            img = img.resize(rule.target_size(*img.size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        return img.convert("RGB")


@pytest.mark.parametrize("rule", [ImageRule(), ImageRule(max_side=1024), ImageRule(max_side=300)])
@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_reduce_on_load_gives_the_old_size_and_picture(tmp_path, rule, orientation):
    path = photo(tmp_path / "p.jpg", size=(2400, 1800) if rule.max_side else (3000, 2000), orientation=orientation)
    mime, data = prepare_image(path, rule)
    assert mime == "image/jpeg"
    with Image.open(io.BytesIO(data)) as new:
        new = new.convert("RGB")
        old = old_way(path, rule)
        assert new.size == old.size
        diff = np.abs(np.asarray(new, dtype=np.int16) - np.asarray(old, dtype=np.int16))
        assert diff.mean() < 3.0  # the same picture (DCT-domain reduction + LANCZOS vs full decode + LANCZOS)


def test_reduce_on_load_decodes_less(tmp_path, monkeypatch):
    path = photo(tmp_path / "p.jpg")
    drafts = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real(self, mode, size)
        drafts.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    prepare_image(path, ImageRule(max_side=1024))
    ((asked, decoded),) = drafts
    assert asked == (1024, 768) and decoded == (1200, 900)  # decoded at 1/2 scale, not 2400 x 1800


def test_small_images_are_sent_as_they_are(tmp_path):
    png, jpg, gif = tmp_path / "a.png", tmp_path / "a.jpg", tmp_path / "a.gif"
    Image.new("RGB", (50, 40), "red").save(png)
    Image.new("RGB", (50, 40), "red").save(jpg)
    Image.new("P", (50, 40)).save(gif)
    assert prepare_image(png, ImageRule()) == ("image/png", png.read_bytes())
    assert prepare_image(jpg, ImageRule()) == ("image/jpeg", jpg.read_bytes())
    mime, data = prepare_image(gif, ImageRule())  # not a format every server takes: re-encoded at the same size
    assert mime == "image/png" and Image.open(io.BytesIO(data)).size == (50, 40)


def test_files_that_are_not_images(tmp_path, monkeypatch):
    # lmms-eval sets PIL's process-wide LOAD_TRUNCATED_IMAGES when imported (lmms_eval/api/task.py); an earlier test
    # of the suite imports it, and then a truncated JPEG decodes: restore PIL's default for this test.
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    text, truncated, missing = tmp_path / "a.jpg", tmp_path / "t.jpg", tmp_path / "m.jpg"
    text.write_text("not an image")
    data = photo(tmp_path / "p.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match=r"a\.jpg: cannot be read \(not an image\)"):
        prepare_image(text, ImageRule())
    with pytest.raises(ImageError, match=r"t\.jpg: cannot be read \(OSError"):
        prepare_image(truncated, ImageRule(max_side=100))
    with pytest.raises(ImageError, match=r"m\.jpg: No such file"):
        prepare_image(missing, ImageRule())
    with pytest.raises(ImageError, match=r"m\.jpg: No such file"):
        image_sha256(str(missing))


def test_the_content_hash_is_computed_once_per_file_version(tmp_path):
    path = photo(tmp_path / "p.jpg", size=(64, 48))
    _sha256_of.cache_clear()
    first = image_sha256(str(path))
    assert image_sha256(str(path)) == first and _sha256_of.cache_info().misses == 1
    photo(path, size=(64, 48), quality=50)  # the file changes: a new hash
    assert image_sha256(str(path)) != first


def test_judge_counts_an_unreadable_image_as_that_captions_failure(tmp_path, monkeypatch):
    lines = SAMPLE_DATA.read_text().splitlines()[:3]
    (tmp_path / "images").mkdir()
    rows = []
    for i, line in enumerate(lines):
        row = json.loads(line)
        target = tmp_path / row["image"]
        if i == 1:
            target.write_bytes(b"\x89PNG but not really")
        else:
            target.write_bytes((SAMPLE_DATA.parent / row["image"]).read_bytes())
        rows.append(row)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "caption": "@@score=40"}) + "\n" for r in rows))
    with JudgeServer() as server:
        monkeypatch.setenv("ECAC_JUDGE_BASE_URL", server.base_url)
        monkeypatch.setenv("ECAC_JUDGE_MODEL", "m")
        out = tmp_path / "r.json"
        argv = ["judge", "--data", str(data), "--predictions", str(preds), "--no-cache", "--no-progress"]
        assert main([*argv, "--json", str(out)]) == 0
        assert server.state.requests == 2
    report = json.loads(out.read_text())
    assert (report["metrics"]["n"], report["metrics"]["n_failed"]) == (2, 1)
    ((reason, count),) = report["failures"].items()
    assert count == 1 and reason.endswith("cannot be read (not an image)") and rows[1]["image"] in reason
