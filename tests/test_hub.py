"""ECAC data from the Hub (``--data hf://org/name[:config]``), offline: a repository laid out as on the Hub (Parquet
data files and a README declaring the configs and splits) that ``datasets.load_dataset("org/name")`` resolves to a
local folder, exactly the way it resolves a Hub id once downloaded."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")
from PIL import Image  # noqa: E402

from ecac_bench import hub  # noqa: E402
from ecac_bench.cli import main  # noqa: E402
from ecac_bench.data import DataValidationError, load_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOY = {"name": datasets.Value("string"), "level": datasets.Value("string"), "ground": datasets.Value("string")}
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "image": datasets.Image(),
        "category": datasets.Value("string"),
        "area": datasets.Value("string"),
        "caption": datasets.Value("string"),
        "split": datasets.Value("string"),
        "toys": datasets.List({**TOY, "aliases": datasets.List(datasets.Value("string"))}),
    }
)
README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
  - split: test
    path: data/test-*.parquet
- config_name: en
  data_files:
  - split: test
    path: en/test-*.parquet
---
# ecac-mini (a test repository)
"""


def png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, "PNG")
    return buffer.getvalue()


def record(rec_id: str, color: str, split: str | None, toys: list[dict]) -> dict:
    return {
        "id": rec_id,
        "image": {"bytes": png(color), "path": f"{rec_id}.png"},
        "category": "classroom",
        "area": "建构区",
        "caption": f"参考描述 {rec_id}",
        "split": split,
        "toys": [{"aliases": [], **t} for t in toys],
    }


BLOCKS = {"name": "积木", "level": "low", "ground": "foreground", "aliases": ["building blocks"]}
TILES = {"name": "磁力片", "level": "medium", "ground": "background"}
SPLITS = {
    "train": [record("t1", "red", None, [BLOCKS])],
    "test": [
        record("a", "blue", None, [BLOCKS, TILES]),
        record("b", "green", "test", []),
        record("c", "red", None, []),
    ],
}


def write_split(path: Path, rows: list[dict]) -> None:
    columns = {key: [row[key] for row in rows] for key in FEATURES}
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(columns, features=FEATURES).to_parquet(str(path))


@pytest.fixture
def hub_repo(tmp_path, monkeypatch) -> Path:
    """``org/ecac-mini`` under the working directory, the Hub offline, every cache inside tmp_path."""
    root = tmp_path / "org" / "ecac-mini"
    for split, rows in SPLITS.items():
        write_split(root / "data" / f"{split}-00000-of-00001.parquet", rows)
    english = [record("e1", "white", None, [{"name": "blocks", "level": "low", "ground": "foreground"}])]
    write_split(root / "en" / "test-00000-of-00001.parquet", english)
    (root / "README.md").write_text(README, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setenv("ECAC_CACHE_DIR", str(tmp_path / "ecac-cache"))
    return root


def test_hub_id_parsing() -> None:
    assert hub.HubId.parse("hf://org/name") == hub.HubId("org/name", None)
    assert hub.HubId.parse("hf://org/name:zh-test") == hub.HubId("org/name", "zh-test")
    assert hub.HubId.parse("hf://name").display == "name"
    for bad in ("hf://", "hf://org/name/extra", "hf://org/name:", "hf://org name", "hf://org/name:a:b"):
        with pytest.raises(ValueError, match="expected hf://org/name"):
            hub.HubId.parse(bad)
    assert hub.data_location("hf://org/name") == "hf://org/name"
    assert hub.data_location("org/name") == Path("org/name")  # a local path never changes meaning


def test_loads_every_split_with_images_as_files(hub_repo, tmp_path) -> None:
    dataset = load_dataset("hf://org/ecac-mini")
    assert dataset.name == "org/ecac-mini" and [r.id for r in dataset] == ["t1", "a", "b", "c"]
    # a record without its own split takes the name of the split it is stored in
    assert [r.split for r in dataset] == ["train", "test", "test", "test"]
    assert dataset.by_id["a"].toys[0].aliases == ("building blocks",)
    # image bytes are written once, content-addressed, into the cache folder; both red images are one file
    images = {r.id: r.image for r in dataset}
    assert all(p.is_file() and p.parent == tmp_path / "ecac-cache" / "hub-images" for p in images.values())
    assert images["t1"] == images["c"] and images["a"].read_bytes() == png("blue")
    with Image.open(images["a"]) as image:
        assert image.size == (16, 12)
    # the same records from a JSONL file have the same record-level identity
    jsonl = tmp_path / "same.jsonl"
    rows = [{**row, "image": "x.png", "split": split if row["split"] is None else row["split"]} for split, part in
            SPLITS.items() for row in part]  # fmt: skip
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert load_dataset(jsonl).sha256 == dataset.sha256
    assert load_dataset("hf://org/ecac-mini", split="test").sha256 == load_dataset(jsonl, split="test").sha256


def test_config_and_the_cli(hub_repo, tmp_path, capsys) -> None:
    english = load_dataset("hf://org/ecac-mini:en")
    assert english.name == "org/ecac-mini:en" and [r.id for r in english] == ["e1"]
    preds = tmp_path / "p.jsonl"
    rows = [
        {"id": "a", "caption": "孩子们在玩building blocks"},
        {"id": "b", "caption": "x"},
        {"id": "c", "caption": "y"},
    ]
    preds.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = tmp_path / "r.json"
    argv = ["score", "--data", "hf://org/ecac-mini", "--split", "test", "--predictions", str(preds), "--n-boot", "0"]
    assert main([*argv, "--json", str(report)]) == 0
    body = json.loads(report.read_text())
    assert body["dataset"]["name"] == "org/ecac-mini" and body["dataset"]["size"] == 3
    assert body["metrics"]["tts"] == 50.0 and "data:org/ecac-mini|split:test" in body["signature"]
    assert main(["validate", "--data", "hf://org/ecac-mini"]) == 0
    assert "OK hf://org/ecac-mini: 4 records" in capsys.readouterr().out


def test_problems_are_located_by_split_and_row(hub_repo, capsys) -> None:
    bad = [*SPLITS["test"]]
    bad[1] = {**bad[1], "toys": [{"name": "积木", "level": "expert", "ground": "foreground", "aliases": []}]}
    write_split(hub_repo / "data" / "test-00000-of-00001.parquet", bad)
    with pytest.raises(DataValidationError) as err:
        load_dataset("hf://org/ecac-mini")
    assert "hf://org/ecac-mini (split test):row 2: field 'toys[0].level': unknown level 'expert'" in str(err.value)
    assert main(["score", "--data", "hf://org/ecac-mini"]) == 2
    assert "(split test):row 2" in capsys.readouterr().err
    assert main(["score", "--data", "hf://org/no-such-dataset"]) == 2
    assert "the Hub dataset could not be loaded" in capsys.readouterr().err


def test_a_local_path_never_goes_to_the_hub(hub_repo, monkeypatch, capsys) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("a local path reached the Hub loader")

    monkeypatch.setattr(hub, "load_hub_dataset", refuse)
    # "org/ecac-mini" exists here as a folder: without the prefix it is a local path (not a saved dataset: an error)
    assert main(["score", "--data", "org/ecac-mini", "--n-boot", "0"]) == 2
    assert "AssertionError" not in capsys.readouterr().err


def test_lmms_eval_tasks_read_the_hub_id_from_their_data_variable(hub_repo, monkeypatch) -> None:
    from ecac_bench import lmms_adapter

    monkeypatch.setenv("ECAC_DATA", "hf://org/ecac-mini")
    monkeypatch.delenv("ECAC_SPLIT", raising=False)
    lmms_adapter._load.cache_clear()
    try:
        assert [r.id for r in lmms_adapter.ecac_dataset()] == ["a", "b", "c"]  # the test split, as for a file
        spec = importlib.util.spec_from_file_location("ecac_task_utils", REPO / "ecac_bench/lmms_tasks/ecac/utils.py")
        utils = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(utils)
        docs = utils.process_docs(None)
        assert docs["id"] == ["a", "b", "c"]
        (visual,) = utils.doc_to_visual(docs[0])
        assert visual.size == (16, 12) and visual.getpixel((0, 0)) == (0, 0, 255)
    finally:
        lmms_adapter._load.cache_clear()
