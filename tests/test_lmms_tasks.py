"""The ECAC lmms-eval tasks: discovery after install, the real ``lmms-eval`` CLI end to end (a tiny local
Qwen2.5-VL through ``--model qwen2_5_vl``, and the ``openai`` route against the project's OpenAI-compatible test
server), and that lmms-eval reports exactly the numbers ``ecac-bench`` computes on the same captions.

lmms-eval exits 0 even when a run fails, so every CLI test asserts on the results JSON it must have written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import orjson
import pytest
from judge_server import JudgeServer

from ecac_bench import (
    METRIC_KEYS,
    SAMPLE_DATA,
    SAMPLE_PREDICTIONS,
    DataValidationError,
    load_dataset,
    load_predictions,
    score_captions,
)
from ecac_bench.leaderboard import parse_results_file
from ecac_bench.lmms_plugin import TASKS_DIR, TESTED_LMMS_EVAL, LmmsEvalIncompatible, install_task_path
from ecac_bench.predictions import load_lmms_eval_samples

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
ECAC_TASKS = (
    "ecac_tts",
    "ecac_judge",
    "ecac_toy_precision",
    "ecac_tts_en",
    "ecac_judge_en",
    "ecac_toy_precision_en",
    "ecac_tts_toys",
    "ecac_tts_toys_en",
)
ECAC_GROUPS = ("ecac", "ecac_en")
JUDGE_KEYS = ("judge_score", "judge_score_std", "n", "n_failed")
TOY_KEYS = ("toy_precision", "toy_precision_macro", "avg_toy_count", "n_images", "n_extracted", "n_failed")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECAC_", "OPENAI_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="disabled",
        HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"),
        ECAC_CACHE_DIR=str(tmp_path / "llm_cache"),
        TOKENIZERS_PARALLELISM="false",
    )
    env.update(extra)
    return env


def run_lmms_eval(args: list[str], tmp_path: Path, **env: str) -> tuple[dict[str, Any], Path]:
    """Run the installed ``lmms-eval`` console script; return its results JSON and its output folder."""
    out = tmp_path / "lmms_out"
    proc = subprocess.run(
        [str(BIN / "lmms-eval"), *args, "--log_samples", "--output_path", str(out)],
        env=_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = sorted(out.glob("*/*_results.json"))
    assert len(results) == 1, f"lmms-eval wrote no results JSON:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(results[0].read_text()), results[0].parent


def samples_file(folder: Path, task: str) -> Path:
    (path,) = folder.glob(f"*_samples_{task}.jsonl")
    return path


def write_subset(records: list[dict[str, Any]], path: Path) -> Path:
    """A JSONL dataset of raw ECAC rows with absolute image paths (so it can live anywhere)."""
    base = SAMPLE_DATA.parent
    rows = [{**r, "image": str((base / r["image"]).resolve())} for r in records]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def sample_rows() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in SAMPLE_DATA.read_bytes().splitlines() if line.strip()]


def ecac_bench_json(args: list[str], tmp_path: Path, name: str, **env: str) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [str(BIN / "ecac-bench"), *args, "--json", str(out)], env=_env(tmp_path, **env), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def lmms_metrics(results: dict[str, Any], task: str, keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: results["results"][task][f"{key},none"] for key in keys}


# --- discovery ------------------------------------------------------------------------------------------------


def test_lmms_eval_version_is_one_discovery_was_tested_with() -> None:
    # Discovery patches lmms-eval's TaskManager; a new lmms-eval must be re-checked by these tests and then added.
    assert version("lmms-eval") in TESTED_LMMS_EVAL, (
        f"lmms-eval {version('lmms-eval')} is not in ecac_bench.lmms_plugin.TESTED_LMMS_EVAL {TESTED_LMMS_EVAL}: "
        "run tests/test_lmms_tasks.py against it and add the version if they pass"
    )


def test_plugin_is_registered_as_lmms_eval_models_entry_point() -> None:
    targets = {ep.value for ep in entry_points(group="lmms_eval.models")}
    assert "ecac_bench.lmms_plugin:register" in targets, (
        f"entry point missing from the installed ecac-bench (found {targets}); "
        'pyproject needs [project.entry-points."lmms_eval.models"] ecac = "ecac_bench.lmms_plugin:register"'
    )


def test_plain_lmms_eval_lists_the_ecac_tasks(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "lmms-eval"), "--tasks", "list"], env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    listed = {line.strip().removeprefix("- ") for line in (proc.stdout + proc.stderr).splitlines()}
    assert set(ECAC_TASKS + ECAC_GROUPS) <= listed, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def task_manager() -> Any:
    from lmms_eval.tasks import TaskManager

    install_task_path()
    install_task_path()  # idempotent
    return TaskManager("WARNING")


def test_tasks_subcommand_lists_them_with_the_documented_include_path(tmp_path: Path) -> None:
    # `lmms-eval tasks ...` never imports lmms_eval.models, so the plugin cannot run there (docs/lmms_eval.md)
    printed = subprocess.run(
        [sys.executable, "-m", "ecac_bench.lmms_plugin"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(printed) == TASKS_DIR
    proc = subprocess.run(
        [str(BIN / "lmms-eval"), "tasks", "list", "--include-path", printed],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert set(ECAC_TASKS + ECAC_GROUPS) <= {line.strip() for line in proc.stdout.splitlines()}, proc.stderr[-3000:]


def test_task_manager_indexes_the_tasks_once(task_manager: Any) -> None:
    from lmms_eval.tasks import TaskManager

    for name in ECAC_TASKS + ECAC_GROUPS:
        assert Path(task_manager.task_index[name]["yaml_path"]).parent == TASKS_DIR / "ecac"
    # the documented fallback, --include_path tasks (the repo's symlink to the same folder), does not clash
    with_fallback = TaskManager("WARNING", include_path=str(REPO / "tasks"))
    for name in ECAC_TASKS + ECAC_GROUPS:
        assert Path(with_fallback.task_index[name]["yaml_path"]).resolve().parent == TASKS_DIR / "ecac"


def test_discovery_fails_loudly_when_lmms_eval_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmms_eval.tasks

    class ChangedTaskManager:
        def initialize_tasks(self, paths=None):  # the include_path parameter is gone
            return {}

    monkeypatch.setattr(lmms_eval.tasks, "TaskManager", ChangedTaskManager)
    with pytest.raises(LmmsEvalIncompatible, match="--include_path"):
        install_task_path()


def load_task_utils() -> Any:
    """The task folder's utils.py, loaded from its file as lmms-eval loads it."""
    spec = importlib.util.spec_from_file_location("ecac_task_utils", TASKS_DIR / "ecac" / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_and_split_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    utils = load_task_utils()
    everything = load_dataset()
    monkeypatch.delenv("ECAC_DATA", raising=False)
    monkeypatch.delenv("ECAC_SPLIT", raising=False)
    assert [r.id for r in utils.ecac_dataset()] == [r.id for r in everything if r.split == "test"]
    monkeypatch.setenv("ECAC_SPLIT", "all")
    assert len(utils.ecac_dataset()) == len(everything)
    monkeypatch.setenv("ECAC_SPLIT", "train")
    assert {r.split for r in utils.ecac_dataset()} == {"train"}
    monkeypatch.delenv("ECAC_SPLIT")
    no_split = write_subset(
        [{k: v for k, v in r.items() if k != "split"} for r in sample_rows()[:3]], tmp_path / "n.jsonl"
    )
    monkeypatch.setenv("ECAC_DATA", str(no_split))
    assert len(utils.ecac_dataset()) == 3  # no test split: every record
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x", "image": "x.png"}\n')
    monkeypatch.setenv("ECAC_DATA", str(broken))
    with pytest.raises(DataValidationError, match=rf"{broken}:line 1: field 'category'"):
        utils.process_docs(None)


# --- task wiring, in process: non-trivial captions through lmms-eval's own task objects ----------------------


@pytest.mark.parametrize("system", sorted(SAMPLE_PREDICTIONS))
def test_ecac_tts_aggregation_equals_core_score(system: str, task_manager: Any) -> None:
    from lmms_eval.tasks import get_task_dict

    task = get_task_dict(["ecac_tts"], task_manager)["ecac_tts"]
    test = load_dataset(split="test")
    predictions = load_predictions(SAMPLE_PREDICTIONS[system], load_dataset())
    docs = list(task.test_docs())
    assert [d["id"] for d in docs] == [r.id for r in test]
    per_doc = [task.process_results(doc, [predictions[doc["id"]][0]]) for doc in docs]
    reported = {key: task.aggregation()[key]([r[key] for r in per_doc]) for key in METRIC_KEYS}
    expected = score_captions(test, {i: c[:1] for i, c in predictions.items()}).metrics
    assert reported == expected
    assert expected["tts"] and expected["tts"] > 0  # the comparison is not between zeros


PROMPT_OF_TASK = {
    "ecac_tts": ("caption", "zh"),
    "ecac_tts_en": ("caption", "en"),
    "ecac_judge": ("caption", "zh"),
    "ecac_judge_en": ("caption", "en"),
    "ecac_toy_precision": ("caption", "zh"),
    "ecac_toy_precision_en": ("caption", "en"),
    "ecac_balanced": ("caption", "zh"),
    "ecac_balanced_en": ("caption", "en"),
    "ecac_utility": ("caption", "zh"),
    "ecac_utility_en": ("caption", "en"),
    "ecac_tts_toys": ("caption_toys", "zh"),
    "ecac_tts_toys_en": ("caption_toys", "en"),
}


def test_each_task_asks_its_prompt_and_reports_that_prompt(task_manager: Any) -> None:
    """The prompt a task generates with (lmms_eval_specific_kwargs) is the one its results name (the signature's
    caption prompt: id and content hash), for every task; only the toy-listing variant uses caption_toys, and no
    group contains it."""
    from lmms_eval.tasks import get_task_dict

    from ecac_bench.prompts import load_prompt

    tasks = get_task_dict(list(PROMPT_OF_TASK), task_manager)
    for name, (prompt, lang) in PROMPT_OF_TASK.items():
        task = tasks[name]
        doc = next(iter(task.test_docs()))
        template = load_prompt(prompt, lang)
        assert task.doc_to_text(doc) == template.render(), name
        per_doc = task.process_results(doc, ["孩子们在玩积木"])
        # the payload names the prompt; the signature states it (measured here for TTS: the others call a judge)
        assert (per_doc["ecac_signature"]["prompt"], per_doc["ecac_signature"]["lang"]) == (prompt, lang), name
        if name.startswith("ecac_tts"):
            signature = task.aggregation()["ecac_signature"]([per_doc["ecac_signature"]])
            assert signature["protocol"]["caption_prompt"] == {"id": template.tag, "sha256": template.sha256}, name
            assert f"prompt:{template.tag}#{template.sha256[:8]}" in signature["text"], name
    groups = {name: yaml_tasks(name) for name in ("ecac", "ecac_en", "ecac_all", "ecac_all_en")}
    assert not any(t.startswith("ecac_tts_toys") for members in groups.values() for t in members)
    assert tasks["ecac_tts"].doc_to_visual(next(iter(tasks["ecac_tts"].test_docs())))[0].mode == "RGB"


def yaml_tasks(group: str) -> list[str]:
    import yaml

    return yaml.safe_load((TASKS_DIR / "ecac" / f"{group}.yaml").read_text())["task"]


def test_default_caption_prompt_is_the_paper_s_annotation_prompt() -> None:
    """The default prompt reconstructs the paper's annotation prompt (its surviving sentences and exemplars) and
    no longer asks for every toy; the toy-listing prompt survives as the caption_toys variant."""
    from ecac_bench.prompts import load_prompt

    en = " ".join(load_prompt("caption", "en").render().split())
    for sentence in (
        "concise but include key details, such as the exact setting, the main characters' actions and expressions",
        "Do not describe background elements unrelated to the main characters, or objects irrelevant to the main "
        "activity",
        "In the classroom art corner, two little girls are intently engaged in handicraft work at the table.",
        "They seem to be thoroughly enjoying this creative handicraft-making process.",
        "In the classroom art corner, a little boy is sitting at a table covered with a floral-patterned tablecloth",
        "Around him, other children are also engaged in similar activities.",
    ):
        assert sentence in en, sentence
    zh = load_prompt("caption", "zh").render()
    for sentence in (
        "句子要简洁，但要包含关键细节，例如具体的场景、主要人物的动作和表情",
        "不要描述与主要人物无关的背景元素，也不要描述与主要活动无关的物品",
        "在教室的美工区，两个小女孩正专心地在桌前做手工",
        "在他周围，其他孩子也在进行类似的活动",
    ):
        assert sentence in zh, sentence
    for text in (en, zh):
        assert "toy" not in text and "玩具" not in text and "background" not in text.split("Do not")[0]
    assert "RECONSTRUCTION" in load_prompt("caption", "en").source
    toys_en = " ".join(load_prompt("caption_toys", "en").render().split())
    assert "name every toy and teaching aid in the picture, in the foreground and in the background" in toys_en
    assert "写出画面中出现的所有玩具和教具" in load_prompt("caption_toys", "zh").render()


MARKER = "[LMMS_EVAL_REQUEST_FAILED after 5 retries] Error code: 400 - prompt too long"


def test_failed_generations_are_excluded_counted_and_fail_the_run(
    task_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmms_eval.tasks import get_task_dict

    task = get_task_dict(["ecac_tts"], task_manager)["ecac_tts"]
    test = load_dataset(split="test")
    predictions = load_predictions(SAMPLE_PREDICTIONS["system-a"], load_dataset())
    docs = list(task.test_docs())
    failing = {docs[0]["id"], docs[1]["id"], docs[2]["id"]}
    # lmms-eval strips responses and turns a missing one into "": both failure forms reach process_results; and a
    # server's "\ud800" escape, read by the standard library, reaches it as a lone surrogate
    responses = {docs[0]["id"]: MARKER, docs[1]["id"]: "", docs[2]["id"]: "幼儿在玩积木 \ud800"}
    per_doc = [task.process_results(d, [responses.get(d["id"], predictions[d["id"]][0])]) for d in docs]
    keys = (*METRIC_KEYS, "n_failed_generations")

    def aggregate() -> dict[str, Any]:
        return {key: task.aggregation()[key]([r[key] for r in per_doc]) for key in keys}

    monkeypatch.delenv("ECAC_MAX_FAILED", raising=False)
    with pytest.raises(RuntimeError, match=r"3 of \d+ generations failed.*ECAC_MAX_FAILED"):
        aggregate()  # default 0: the run fails loudly, lmms-eval writes no numbers
    monkeypatch.setenv("ECAC_MAX_FAILED", "3")
    reported = aggregate()
    good = [r for r in test.records if r.id not in failing]
    expected = score_captions(good, {r.id: predictions[r.id][:1] for r in good}).metrics
    assert {k: reported[k] for k in METRIC_KEYS} == expected and reported["n_failed_generations"] == 3
    monkeypatch.setenv("ECAC_MAX_FAILED", "0.01")  # a fraction of the task's 40 generations: floor(0.4) = 0
    with pytest.raises(RuntimeError, match="generations failed"):
        aggregate()
    monkeypatch.setenv("ECAC_MAX_FAILED", "lots")
    with pytest.raises(ValueError, match=r"\$ECAC_MAX_FAILED: expected a count"):
        aggregate()


def test_toy_precision_task_extracts_through_the_judge_client(
    task_manager: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmms_eval.tasks import get_task_dict

    from ecac_bench.toy_precision import toy_precision

    task = get_task_dict(["ecac_toy_precision"], task_manager)["ecac_toy_precision"]
    test = load_dataset(split="test")
    docs = list(task.test_docs())[:5]
    # The test server answers a caption's directive verbatim: each "caption" dictates the extractor's answer. An
    # annotated name + "区" only contains a toy's name: wrong under Eq. 7 (right under the lenient rule).
    names = {d["id"]: [n for t in test.by_id[d["id"]].toys[:1] for n in (t.name, t.name + "区")] for d in docs}
    names = {i: [*n, "不存在的玩具"] for i, n in names.items()}
    with_toys = sum(bool(test.by_id[d["id"]].toys) for d in docs)
    captions = {i: "@@reply=" + json.dumps(n, ensure_ascii=False) + "@@" for i, n in names.items()}
    with JudgeServer() as server:
        monkeypatch.setenv("ECAC_JUDGE_BASE_URL", server.base_url)
        monkeypatch.setenv("ECAC_JUDGE_MODEL", "test-judge")
        monkeypatch.setenv("ECAC_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.delenv("ECAC_TOY_EXTRACTOR", raising=False)
        per_doc = [task.process_results(d, [captions[d["id"]]]) for d in docs]
        per_doc.append(task.process_results(next(iter(task.test_docs())), [" "]))  # a failed generation
        monkeypatch.setenv("ECAC_MAX_FAILED", "1")
        reported = {key: task.aggregation()[key]([r[key] for r in per_doc]) for key in TOY_KEYS}
        assert server.state.requests == len(docs)  # one extraction per caption, shared by all six metrics
    expected = toy_precision(test, names).metrics()
    assert reported == {key: expected[key] for key in TOY_KEYS}
    assert reported["toy_precision"] == pytest.approx(100 * with_toys / (2 * with_toys + len(docs)))
    assert with_toys and reported["n_failed"] == 0


# --- the real CLI -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_tiny_qwen2_5_vl_end_to_end_matches_ecac_bench_score(tiny_qwen: Path, tmp_path: Path) -> None:
    limit = 4
    results, folder = run_lmms_eval(
        [
            "--model", "qwen2_5_vl",
            "--model_args", f"pretrained={tiny_qwen},device_map=cpu,min_pixels=3136,max_pixels=12544",
            "--device", "cpu",
            "--tasks", "ecac_tts",
            "--limit", str(limit),
            "--gen_kwargs", "max_new_tokens=24",
        ],
        tmp_path,
    )  # fmt: skip
    assert results["n-samples"]["ecac_tts"] == {"original": len(load_dataset(split="test")), "effective": limit}
    assert results["config"]["model"] == "qwen2_5_vl"
    samples = samples_file(folder, "ecac_tts")
    first = [r for r in sample_rows() if r["split"] == "test"][:limit]
    subset = write_subset(first, tmp_path / "subset.jsonl")
    captions = load_lmms_eval_samples(samples, load_dataset(subset))
    assert list(captions) == [r["id"] for r in first] and all(len(c) == 1 for c in captions.values())

    # the installed `ecac-bench score` on the captions of the samples file gives the same numbers
    predictions = tmp_path / "captions.jsonl"
    predictions.write_bytes(b"".join(orjson.dumps({"id": i, "caption": c[0]}) + b"\n" for i, c in captions.items()))
    report = ecac_bench_json(["score", "--data", str(subset), "--predictions", str(predictions)], tmp_path, "score")
    assert lmms_metrics(results, "ecac_tts", METRIC_KEYS) == report["metrics"]

    # the run states the records it saw (the 4 of --limit): the same records as the subset file, under another name
    signature = results["results"]["ecac_tts"]["ecac_signature,none"]
    assert signature["dataset"]["size"] == limit and signature["dataset"]["name"] == "ecac-sample"
    assert signature["dataset"]["sha256"] == load_dataset(subset).sha256 == report["dataset"]["sha256"]
    # the leaderboard reads the results file as a report of those records, with the CLI's CIs
    (results_file,) = folder.glob("*_results.json")
    (entry,) = parse_results_file(results_file, "tiny")
    assert entry.metrics == {k: v for k, v in report["metrics"].items() if v is not None}
    assert entry.dataset.sha256 == report["dataset"]["sha256"] and entry.ci == {
        k: tuple(v) for k, v in report["ci"].items() if v is not None
    }


def _toy(name: str, level: str, ground: str) -> dict[str, str]:
    return {"name": name, "level": level, "ground": ground}


@pytest.mark.slow
def test_cli_openai_route_runs_the_ecac_group_against_a_server(tmp_path: Path) -> None:
    """``--model openai`` against an OpenAI-compatible server, ECAC_DATA pointing at a custom dataset.

    The test server answers every captioning prompt with ``{"score": N}``; the dataset's toys include one named
    "score" so the TTS numbers are not all zero. The same server is the judge.
    """
    base = sample_rows()[:3]
    toys = [
        [_toy("score", "low", "foreground"), _toy("积木", "high", "background")],
        [_toy("score", "medium", "background")],
        [_toy("剪刀", "low", "foreground")],
    ]
    data = write_subset([{**r, "toys": t, "split": "test"} for r, t in zip(base, toys)], tmp_path / "data.jsonl")
    with JudgeServer(api_key="sk-test") as server:
        server_env = {"ECAC_DATA": str(data), "OPENAI_API_KEY": "sk-test"}
        judge_env = {"ECAC_JUDGE_BASE_URL": server.base_url, "ECAC_JUDGE_MODEL": "test-judge"}
        results, folder = run_lmms_eval(
            ["--model", "openai", "--model_args", f"model=test-model,base_url={server.base_url}", "--tasks", "ecac"],
            tmp_path,
            **server_env,
            **judge_env,
            ECAC_JUDGE_API_KEY="sk-test",
            ECAC_TOY_EXTRACTOR="lexicon",
        )
        assert set(results["results"]) >= {"ecac", "ecac_tts", "ecac_judge", "ecac_toy_precision"}
        assert server.state.requests == 3 * len(base) + len(base)  # captions for each task + the judge

        dataset = load_dataset(data)
        captions = load_lmms_eval_samples(samples_file(folder, "ecac_tts"), dataset)
        assert all(c[0].startswith('{"score"') for c in captions.values())
        tts = lmms_metrics(results, "ecac_tts", METRIC_KEYS)
        assert tts == score_captions(dataset, captions).metrics
        assert tts["tts"] == pytest.approx(100 * (1 / 2 + 1 / 1 + 0 / 1) / 3)

        judged = load_lmms_eval_samples(samples_file(folder, "ecac_judge"), dataset)
        predictions = tmp_path / "judged.jsonl"
        predictions.write_bytes(b"".join(orjson.dumps({"id": i, "caption": c[0]}) + b"\n" for i, c in judged.items()))
        report = ecac_bench_json(
            ["judge", "--data", str(data), "--predictions", str(predictions), "--no-progress"],
            tmp_path,
            "judge",
            **judge_env,
            ECAC_JUDGE_API_KEY="sk-test",
            ECAC_CACHE_DIR=str(tmp_path / "other_cache"),  # really ask the server again
        )
        assert lmms_metrics(results, "ecac_judge", JUDGE_KEYS) == {k: report["metrics"][k] for k in JUDGE_KEYS}
        assert report["metrics"]["n"] == len(base) and report["metrics"]["judge_score"] is not None

    # toy precision used the lexicon extractor (ECAC_TOY_EXTRACTOR): it finds "score" in every caption
    extracted = load_lmms_eval_samples(samples_file(folder, "ecac_toy_precision"), dataset)
    predictions = tmp_path / "extracted.jsonl"
    predictions.write_bytes(b"".join(orjson.dumps({"id": i, "caption": c[0]}) + b"\n" for i, c in extracted.items()))
    report = ecac_bench_json(
        ["toy-precision", "--extractor", "lexicon", "--data", str(data), "--predictions", str(predictions)],
        tmp_path,
        "toy_precision",
    )
    assert lmms_metrics(results, "ecac_toy_precision", TOY_KEYS) == {k: report["metrics"][k] for k in TOY_KEYS}
    assert report["metrics"]["toy_precision"] == pytest.approx(100 * 2 / 3)


def _refuse_image_of_size(size: tuple[int, int]) -> Any:
    """A test-server hook answering HTTP 400 (as vLLM does for a prompt too long) to requests with an image of
    ``size``: lmms-eval's openai backend then turns that request into its failure marker."""
    import base64
    import io

    from PIL import Image

    def fail_with(messages: list[dict[str, Any]]) -> int | None:
        for message in messages:
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part.get("type") == "image_url":
                    data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                    if Image.open(io.BytesIO(data)).size == size:
                        return 400
        return None

    return fail_with


@pytest.mark.slow
def test_cli_failed_generations_are_never_scored(tmp_path: Path) -> None:
    """lmms-eval's real ``openai`` backend against the test server refusing one chosen image: the ECAC tasks leave
    the failed generation out of every metric and count it; above ECAC_MAX_FAILED the run writes no results; the
    samples file and the results file are rejected by ``ecac-bench score`` and ``ecac_bench.lmms_results``."""
    from PIL import Image

    refused = tmp_path / "refused.png"
    Image.new("RGB", (77, 77), (200, 30, 30)).save(refused)
    base = sample_rows()[:3]
    toys = [
        [_toy("score", "low", "foreground")],
        [_toy("积木", "high", "background")],
        [_toy("剪刀", "low", "foreground")],
    ]
    rows = [{**r, "toys": t, "split": "test"} for r, t in zip(base, toys)]
    rows[1]["image"] = str(refused)  # write_subset keeps an absolute path as it is
    data = write_subset(rows, tmp_path / "data.jsonl")
    dataset = load_dataset(data)
    args = ["--model", "openai", "--model_args", "", "--tasks", "ecac_tts,ecac_judge"]
    with JudgeServer() as server:
        server.state.fail_with = _refuse_image_of_size((77, 77))
        args[3] = f"model=test-model,base_url={server.base_url},max_retries=1,retry_backoff_s=0"
        env = {"ECAC_DATA": str(data), "OPENAI_API_KEY": "EMPTY", "ECAC_JUDGE_BASE_URL": server.base_url}
        env |= {"ECAC_JUDGE_MODEL": "test-judge", "ECAC_JUDGE_API_KEY": "EMPTY"}
        results, folder = run_lmms_eval(args, tmp_path, **env, ECAC_MAX_FAILED="1")
        assert server.state.requests == 2 * 3 + 2  # 3 captions per task, the judge asked about the 2 good ones only

        # 1. The run that allows one failure: every task leaves it out and counts it.
        for task in ("ecac_tts", "ecac_judge"):
            assert results["results"][task]["n_failed_generations,none"] == 1
        samples = samples_file(folder, "ecac_tts")
        captions = load_lmms_eval_samples(samples, dataset)
        assert list(captions.failed) == [rows[1]["id"]] and captions.failed[rows[1]["id"]] == "lmms-eval request failed"
        kept = [r for r in dataset.records if r.id != rows[1]["id"]]
        tts = lmms_metrics(results, "ecac_tts", METRIC_KEYS)
        assert tts == score_captions(kept, dict(captions)).metrics == score_captions(dataset, captions).metrics
        assert tts["tts"] == pytest.approx(100 * (1 + 0) / 2)  # not (1 + 0 + 0) / 3: the failure is not a zero
        assert results["results"]["ecac_judge"]["n,none"] == 2

        # 2. `ecac-bench score` on the samples file: exit 2 after writing the report, unless the failure is allowed.
        out = tmp_path / "score.json"
        score = [str(BIN / "ecac-bench"), "score", "--data", str(data), "--predictions", str(samples)]
        done = subprocess.run([*score, "--json", str(out)], env=_env(tmp_path), capture_output=True, text=True)
        assert done.returncode == 2 and "1 of 3 generations failed" in done.stderr, done.stderr
        assert json.loads(out.read_text())["coverage"]["n_failed_generations"] == 1
        assert ecac_bench_json([*score[1:], "--allow-failed", "1"], tmp_path, "allowed")["metrics"] == tts

        # 3. The run checker refuses to pass a run with failures unless told how many are allowed.
        check = [sys.executable, "-m", "ecac_bench.lmms_results", str(tmp_path / "lmms_out"), "--tasks"]
        done = subprocess.run([*check, "ecac_tts,ecac_judge"], env=_env(tmp_path), capture_output=True, text=True)
        assert done.returncode == 2 and "1 failed generation(s)" in done.stderr, done.stderr
        done = subprocess.run([*check, "ecac_tts", "--max-failed", "1"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

        # 4. The default, ECAC_MAX_FAILED unset (0): the aggregation raises and lmms-eval writes no numbers at all.
        again = tmp_path / "again"
        again.mkdir()
        proc = subprocess.run(
            [str(BIN / "lmms-eval"), *args[:4], "--tasks", "ecac_tts", "--output_path", str(again / "out")],
            env=_env(again, **env),
            cwd=again,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert "ECAC: 1 of 3 generations failed" in proc.stdout + proc.stderr
    assert not list((again / "out").glob("*/*_results.json"))
    done = subprocess.run([*check[:3], str(again / "out"), "--tasks", "ecac_tts"], capture_output=True, text=True)
    assert done.returncode == 2 and "wrote no results file" in done.stderr
