"""The metric registry is the one home of every metric's facts, and every surface reads it: the CLI tables, the
reports, the lmms-eval tasks (their YAMLs and their one generic aggregation), the leaderboard's columns. A dummy
metric registered here (in this test only) shows up on every surface."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecac_bench import SAMPLE_PREDICTIONS, load_dataset, registry
from ecac_bench.commands._metric import Measurement, MetricCommand, metric_columns
from ecac_bench.imagestats import Estimator, ImageStats, ratio
from ecac_bench.leaderboard import build_site
from ecac_bench.lmms_adapter import (
    EXTRA_KEYS,
    Measured,
    aggregation_by_name,
    aggregation_name,
    process_results,
    register_task_kind,
    unregister_task_kind,
)
from ecac_bench.lmms_plugin import TASKS_DIR
from ecac_bench.report_schema import Report

REPO = Path(__file__).resolve().parents[1]
HIGHER_IS_BETTER = {"higher": True, "lower": False, "none": None}


class _FunctionLoader(yaml.SafeLoader):
    """lmms-eval's task YAML: ``!function utils.x`` read as the string ``utils.x``."""


_FunctionLoader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def task_config(task: str, file: str | None = None) -> dict[str, Any]:
    """A task's YAML with its ``include`` chain applied (the including file wins), as lmms-eval reads it."""
    path = TASKS_DIR / "ecac" / (file or f"{task}.yaml")
    config = yaml.load(path.read_text(encoding="utf-8"), _FunctionLoader)
    if "include" in config:
        config = {**task_config(task, config["include"]), **config}
    return config


def expected_metric_list(kind: str) -> list[dict[str, Any]]:
    keys = [*registry.keys(kind), *EXTRA_KEYS]
    return [
        {
            "metric": key,
            "aggregation": f"!function utils.{aggregation_name(kind, key)}",
            "higher_is_better": HIGHER_IS_BETTER[registry.metric(kind, key).direction] if key in keys[:-2] else None,
        }
        for key in keys
    ]


def load_task_utils() -> Any:
    spec = importlib.util.spec_from_file_location("ecac_task_utils", TASKS_DIR / "ecac" / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", [k for k in registry.kinds() if k.lmms_tasks], ids=lambda k: k.name)
def test_task_yamls_list_exactly_the_registry_metrics(kind: registry.Kind) -> None:
    utils = load_task_utils()
    for task in kind.lmms_tasks:
        metric_list = task_config(task)["metric_list"]
        assert metric_list == expected_metric_list(kind.name), f"{task}.yaml: regenerate its metric_list"
        for entry in metric_list:  # every aggregation resolves to the generic one
            assert callable(getattr(utils, entry["aggregation"].removeprefix("!function utils.")))
    with pytest.raises(AttributeError):
        utils.aggregate_score__bleu  # noqa: B018 (the attribute access is what raises)


def github_slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_metric_names_a_doc_section_that_exists() -> None:
    for metric in registry.all_metrics():
        path, _, anchor = metric.doc.partition("#")
        lines = (REPO / path).read_text(encoding="utf-8").splitlines()
        slugs = {github_slug(line.lstrip("#")) for line in lines if line.startswith("#")}
        assert anchor in slugs, f"{metric.kind}.{metric.key}: {metric.doc} has no such section"


def _estimators() -> dict[str, Estimator]:
    from ecac_bench.balanced import BALANCED
    from ecac_bench.judge import JUDGE
    from ecac_bench.metrics import TTS
    from ecac_bench.toy_precision import TOY_PRECISION
    from ecac_bench.utility import UTILITY

    return {e.kind: e for e in (TTS, JUDGE, TOY_PRECISION, UTILITY, BALANCED)}


@pytest.mark.parametrize("kind", ["score", "judge", "toy-precision", "utility", "balanced"])
def test_each_estimator_computes_exactly_its_kinds_metrics(kind: str) -> None:
    estimator = _estimators()[kind]
    stats = ImageStats.from_columns(kind, ["a", "b"], {c: [1.0, 2.0] for c in estimator.columns})
    assert list(estimator.aggregate(stats.sums())) == list(registry.keys(kind))
    measured = [m.key for m in registry.metrics(kind) if not m.is_count]
    assert [k for cols in metric_columns(kind) for k in cols] == measured  # the CLI tables show each once


def test_registry_facts_that_used_to_disagree() -> None:
    """avg_toy_count was 'higher is better' in its task YAML and 'not better' on the leaderboard; macro precision
    and the judge's std were validated by the leaderboard but never shown."""
    assert registry.metric("toy-precision", "avg_toy_count").direction == "none"
    assert task_config("ecac_toy_precision")["metric_list"][2] == {
        "metric": "avg_toy_count",
        "aggregation": "!function utils.aggregate_toy_precision__avg_toy_count",
        "higher_is_better": None,
    }
    shown = {m.key for m in registry.leaderboard_metrics()}
    assert {"toy_precision_macro", "judge_score_std"} <= shown
    with pytest.raises(ValueError, match="already registered"):
        registry.register_metric(registry.metric("score", "tts"))
    with pytest.raises(ValueError, match="another leaderboard metric has that key"):
        registry.register_metric(registry.Metric("tts", "judge", "x", "percent", 0, 100, "higher", "main", "d", True))


# --- a dummy metric on every surface ------------------------------------------------------------------------------

WORD = "积木"


def _hits(captions: dict[str, list[str]], ids: list[str]) -> ImageStats:
    """The dummy metric's per-image statistics: 1 when the caption names blocks."""
    return ImageStats.from_columns(
        "dummy", ids, {"hits": [float(WORD in captions[i][0]) for i in ids], "images": [1.0] * len(ids)}
    )


@pytest.fixture
def dummy() -> Any:
    registry.register_kind(registry.Kind("dummy", "dummy metric", "dummy_score", ("caption_prompt",), ("ecac_dummy",)))
    doc = "docs/contributing.md#adding-a-metric"
    registry.register_metric(
        registry.Metric("dummy_score", "dummy", "Dummy score", "percent", 0.0, 100.0, "higher", "siblings", doc, True)
    )
    registry.register_metric(
        registry.Metric("n_dummy", "dummy", "images", "count", 0.0, None, "none", "none", doc, False)
    )
    estimator = Estimator(
        "dummy",
        ("hits", "images"),
        lambda sums: {"dummy_score": ratio(sums["hits"], sums["images"], 100.0), "n_dummy": sums["images"]},
    )

    def measure(items: list[dict[str, Any]], lang: str) -> Measured:
        ids = [item["id"] for item in items]
        return Measured(_hits({i["id"]: [i["caption"]] for i in items}, ids), {})

    register_task_kind("dummy", estimator, measure)
    yield estimator
    unregister_task_kind("dummy")
    registry.unregister("dummy")


def test_a_registered_metric_shows_on_every_surface(dummy: Estimator, tmp_path: Path, capsys) -> None:
    dataset = load_dataset()

    # 1. The CLI: a declarative command, through the generic path (report, table, signature).
    def measure(args: argparse.Namespace, data: Any, predictions: Any) -> Measurement:
        return Measurement(_hits(predictions, [r.id for r in data]), coverage={}, config={})

    command = MetricCommand("dummy", "dummy", "a dummy metric", "", dummy, lambda parser: None, measure)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    report_path = tmp_path / "runs" / "dummy.json"
    args = parser.parse_args(["dummy", "--json", str(report_path), "--n-boot", "50"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "dummy metric" in printed and "dummy_score" in printed and "n_dummy" in printed

    # 2. The report: schema 2, the metric, its CI, the kind in the signature.
    report = Report.model_validate(json.loads(report_path.read_text(encoding="utf-8")))
    captions = {json.loads(line)["id"]: json.loads(line)["caption"] for line in SAMPLE_PREDICTIONS["system-a"].open()}
    expected = 100.0 * sum(WORD in captions[r.id] for r in dataset) / len(dataset)
    assert report.metrics == {"dummy_score": pytest.approx(expected), "n_dummy": len(dataset)}
    assert set(report.ci) == {"dummy_score"} and "|kind:dummy|" in report.signature

    # 3. lmms-eval: the task's process_results and the one generic aggregation, resolved by name like a YAML does.
    process = process_results("dummy", "caption", "zh")
    items = [process({"id": r.id}, [captions[r.id]])["dummy_score"] for r in dataset]
    aggregate = getattr(load_task_utils(), aggregation_name("dummy", "dummy_score"))
    assert aggregate(items) == pytest.approx(expected)
    assert aggregation_by_name("aggregate_dummy__n_dummy")(items) == len(dataset)
    signature = aggregation_by_name("aggregate_dummy__ecac_signature")(items)
    assert signature["kind"] == "ecac-bench/dummy" and set(signature["ci"]) == {"dummy_score"}

    # 4. The leaderboard: a column of its table, with the value and its CI.
    build_site([], [tmp_path / "runs"], tmp_path / "site")
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Dummy score" in page and f"{expected:.2f}" in page
    header = (tmp_path / "site" / "leaderboard.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert {"dummy_score", "dummy_score_ci_low", "dummy_score_ci_high"} <= set(header)
    row = json.loads((tmp_path / "site" / "leaderboard.json").read_text(encoding="utf-8"))["boards"][0]["rows"][0]
    assert row["metrics"]["dummy_score"] == pytest.approx(expected) and row["ci"]["dummy_score"] is not None


def test_the_dummy_is_gone_after_the_test() -> None:
    assert "dummy" not in {k.name for k in registry.kinds()}
