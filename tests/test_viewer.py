"""The caption viewer's page (without a browser): highlights from the spans, escaping, image links, inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ecac_bench import SAMPLE_DATA, SAMPLE_PREDICTIONS, load_dataset
from ecac_bench.cli import main
from ecac_bench.per_image import ToyRow
from ecac_bench.viewer import build_run_page, build_viewer
from ecac_bench.viewer.__main__ import main as viewer_main
from ecac_bench.viewer.build import Segment, caption_segments

REPO = Path(__file__).resolve().parents[1]


def toy(name: str, ground: str, occurrences: list[tuple[int, int, int, str]]) -> ToyRow:
    return ToyRow(name=name, level="low", ground=ground, named=bool(occurrences), matched=None, occurrences=occurrences)


def test_caption_segments_cover_the_caption_and_merge_nested_names() -> None:
    caption = "孩子们在搭单元积木和积木"
    unit = toy("单元积木", "background", [(0, 5, 9, "单元积木")])
    blocks = toy("积木", "foreground", [(0, 7, 9, "积木"), (0, 10, 12, "积木"), (1, 0, 2, "积木")])
    segments = caption_segments(caption, [unit, blocks], 0)
    assert "".join(s.text for s in segments) == caption
    assert segments == [
        Segment("孩子们在搭"),
        Segment("单元", ("单元积木",), "background"),
        Segment("积木", ("单元积木", "积木"), "foreground"),  # inside both: one piece naming both
        Segment("和"),
        Segment("积木", ("积木",), "foreground"),
    ]
    assert caption_segments("", [blocks], 0) == []


@pytest.fixture(scope="module")
def per_image(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("viewer") / "runs"
    files = {}
    for name in ("system-a", "system-b"):
        files[name] = folder / f"{name}.jsonl"
        argv = ["score", "--predictions", str(SAMPLE_PREDICTIONS[name]), "--per-image", str(files[name])]
        assert main([*argv, "--n-boot", "0"]) == 0
    return files


def test_page_links_images_by_relative_path_and_highlights_every_named_toy(per_image, tmp_path) -> None:
    out = tmp_path / "pages" / "a.html"
    page = build_viewer([per_image["system-a"]], out)
    html = out.read_text(encoding="utf-8")
    dataset = load_dataset()
    assert len(page.cards) == len(dataset) and not page.embedded
    assert "data:image" not in html and "<script src" not in html and "http" not in html.split("<script>")[1]
    for card, record in zip(page.cards, dataset):
        # relative to the page: resolving it from the page's folder gives the record's image
        assert not card.image_href.startswith("/") and (out.parent / card.image_href).resolve() == record.image
    rows = [json.loads(line) for line in per_image["system-a"].read_text(encoding="utf-8").splitlines()[1:]]
    highlighted = sum(len(t["occurrences"]) for r in rows for t in r["toys"])
    assert highlighted > 0 and html.count('<mark class="toy ') == highlighted + 2  # + the two in the explanation
    assert html.count('<span class="what missed">') == sum(any(t["named"] is False for t in r["toys"]) for r in rows)
    # the default output name is the first file's, as .html
    assert (
        viewer_main(["build", str(per_image["system-a"])]) == 0 and per_image["system-a"].with_suffix(".html").is_file()
    )


def test_embedded_images_are_downscaled_jpeg_data_uris(per_image, tmp_path) -> None:
    out = tmp_path / "embedded.html"
    assert main(["view", str(per_image["system-a"]), "--out", str(out), "--embed-images", "--limit", "3"]) == 0
    html = out.read_text(encoding="utf-8")
    uris = re.findall(r'src="(data:image/jpeg;base64,[^"]+)"', html)
    assert len(uris) == 3 and 'href="' not in html.split('id="cards"')[1].split("</div>\n  <p>")[0]
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(uris[0].split(",", 1)[1]))) as image:
        assert max(image.size) <= 320 and image.format == "JPEG"
    assert "showing the first 3 of 60 images" in html and "embedded, downscaled" in html


def test_hostile_text_is_escaped_and_isolated(tmp_path) -> None:
    data = tmp_path / "d.jsonl"
    record = {
        "id": "<img src=x onerror=alert(1)>", "image": "i.png", "category": "classroom",
        "area": "\u202e区工美", "caption": "</script><script>alert(2)</script>",
        "toys": [{"name": "<b>car</b>", "level": "low", "ground": "foreground"}],
    }  # fmt: skip
    data.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": record["id"], "caption": '"><b>car</b> & <script>x</script>'}) + "\n")
    per = tmp_path / "per.jsonl"
    assert main(["score", "--data", str(data), "--predictions", str(preds), "--per-image", str(per)]) == 0
    out = tmp_path / "v.html"
    assert main(["view", str(per), "--out", str(out), "--title", "<i>t</i>"]) == 0
    html = out.read_text(encoding="utf-8")
    body = html.split("<script>")[0]  # the page's own script comes last
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>car" not in body and "<i>t" not in html
    assert "&lt;b&gt;car&lt;/b&gt;" in body and "<bdi>\u202e区工美</bdi>" in body
    assert '<option value="\u202e区工美">\\u202e区工美</option>' in body  # no markup in an option: shown escaped
    # the toy is named (its name occurs in the caption): highlighted, escaped, inside the caption's <bdi>
    assert '<mark class="toy foreground" title="&lt;b&gt;car&lt;/b&gt;">&lt;b&gt;car&lt;/b&gt;</mark>' in body


def test_view_refuses_other_kinds_other_data_and_three_files(per_image, tmp_path, capsys) -> None:
    precision = tmp_path / "precision.jsonl"
    assert main(["toy-precision", "--extractor", "lexicon", "--per-image", str(precision), "--n-boot", "0"]) == 0
    assert main(["view", str(precision)]) == 2
    assert "the viewer shows score files" in capsys.readouterr().err
    data = tmp_path / "d.jsonl"
    data.write_text("".join(line + "\n" for line in SAMPLE_DATA.read_text(encoding="utf-8").splitlines()[:5]))
    preds = tmp_path / "p.jsonl"
    preds.write_text(SAMPLE_PREDICTIONS["system-a"].read_text(encoding="utf-8").split("\n", 5)[5])
    small = tmp_path / "small.jsonl"
    argv = ["score", "--data", str(data), "--predictions", str(SAMPLE_PREDICTIONS["system-a"])]
    assert main([*argv, "--per-image", str(small)]) == 2  # ids not in the 5-record data: refused
    lines = SAMPLE_PREDICTIONS["system-a"].read_text(encoding="utf-8").splitlines()[:5]
    preds.write_text("".join(line + "\n" for line in lines))
    argv = ["score", "--data", str(data), "--predictions", str(preds)]
    assert main([*argv, "--per-image", str(small)]) == 0
    capsys.readouterr()
    assert main(["view", str(per_image["system-a"]), str(small), "--out", str(tmp_path / "x.html")]) == 2
    assert "different data" in capsys.readouterr().err
    three = [str(per_image["system-a"])] * 3
    assert main(["view", *three]) == 2 and "one or two" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_run_page_for_the_leaderboard(tmp_path) -> None:
    """The page of a committed run: re-scored from the report's data and predictions, checked by their hashes."""
    out = tmp_path / "site" / "runs" / "system-a.html"
    page = build_run_page(REPO / "leaderboard" / "runs" / "system-a.json", out, root=REPO, embed_images=True)
    html = out.read_text(encoding="utf-8")
    assert len(page.cards) == 60 and html.count("data:image/jpeg;base64,") == 60
    assert page.systems[0].model == "system-a" and page.systems[0].metrics[0] == ("TTS", "66.07")
    report = json.loads((REPO / "leaderboard" / "runs" / "system-a.json").read_text())
    report["predictions"]["sha256"] = "0" * 64
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(report))
    with pytest.raises(ValueError, match="changed since the run"):
        build_run_page(changed, tmp_path / "x.html", root=REPO)
    with pytest.raises(ValueError, match="not a score report"):
        build_run_page(REPO / "leaderboard" / "runs" / "system-a.toy-precision.json", tmp_path / "y.html", root=REPO)


@pytest.mark.parametrize("run", ["system-a", "system-b"])
def test_committed_run_pages_are_up_to_date(run, tmp_path, monkeypatch) -> None:
    """leaderboard/runs/X.viewer.html (which the leaderboard links) is what `view --run` makes from the committed run:
    regenerate with `ecac-bench view --run leaderboard/runs/X.json --embed-images` from the repository root."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "runs" / f"{run}.viewer.html"
    assert main(["view", "--run", f"leaderboard/runs/{run}.json", "--embed-images", "--out", str(out)]) == 0
    committed = REPO / "leaderboard" / "runs" / f"{run}.viewer.html"
    assert out.read_bytes() == committed.read_bytes(), f"{committed} is stale"
