"""The data tools' ``--json`` records (``report.tool_record``): one shape, ``{kind, harness, date, ...}``, for every
tool that writes one (stats here; annotate in test_annotate.py), and never taken for a metric report."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ecac_bench import __version__, load_dataset, registry
from ecac_bench.cli import main
from ecac_bench.leaderboard import InputError, parse_results_file
from ecac_bench.paper import PAPER_DATASET
from ecac_bench.report import TOOL_KINDS, tool_record
from ecac_bench.stats import dataset_stats

HARNESS = {"name": "ecac-bench", "version": __version__}


def made_today(record: dict) -> bool:
    return abs(dt.date.fromisoformat(record["date"]) - dt.date.today()) <= dt.timedelta(days=1)  # run at midnight


def test_a_record_says_which_tool_which_harness_and_when() -> None:
    record = tool_record("ecac-bench/annotate", model="m", metrics={"photos": 3})
    assert record["kind"] == "ecac-bench/annotate" and record["harness"] == HARNESS and made_today(record)
    assert {k: v for k, v in record.items() if k not in ("kind", "harness", "date")} == {
        "model": "m",
        "metrics": {"photos": 3},
    }


def test_a_tool_kind_is_declared_and_never_a_report_kind() -> None:
    assert set(TOOL_KINDS).isdisjoint(k.report_kind for k in registry.kinds())
    with pytest.raises(ValueError, match="'ecac-bench/score' is not a data tool's kind"):
        tool_record("ecac-bench/score")
    with pytest.raises(ValueError, match=r"sets \['date'\] itself"):
        tool_record("ecac-bench/stats", date="2020-01-01")


@pytest.mark.parametrize("paper", [False, True])
def test_stats_json_is_a_tool_record(tmp_path, paper: bool) -> None:
    out = tmp_path / "stats.json"
    assert main(["stats", "--json", str(out), *(["--paper"] if paper else [])]) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    dataset = load_dataset()
    assert record["kind"] == "ecac-bench/stats" and record["harness"] == HARNESS and made_today(record)
    paper_facts = {"paper": PAPER_DATASET.to_dict()} if paper else {}
    expected = {"dataset": dataset.describe(), **dataset_stats(dataset).to_dict(), **paper_facts}
    fields = {k: v for k, v in record.items() if k not in ("kind", "harness", "date")}
    assert fields == json.loads(json.dumps(expected))  # the fields it wrote before, unchanged


def test_the_leaderboard_refuses_a_tool_record(tmp_path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    assert main(["stats", "--json", str(runs / "stats.json")]) == 0
    for kind in TOOL_KINDS[1:]:
        (runs / f"{kind.rpartition('/')[2]}.json").write_text(json.dumps(tool_record(kind, model="m")))
    for path in sorted(runs.iterdir()):
        with pytest.raises(InputError, match="is a data tool's record, not a metric report") as err:
            parse_results_file(path, f"runs/{path.name}")
        assert str(path) in str(err.value)
