"""lmms-eval hooks for the ECAC tasks: a thin adapter over ``ecac_bench``.

Records come from ``ecac_bench.load_dataset($ECAC_DATA)`` (default: the bundled sample; ``$ECAC_SPLIT`` picks
a split, default ``test`` when the data has one, ``all`` for every record), prompts from
``ecac_bench/prompts/<prompt>.<language>.j2`` (``caption`` unless the task's ``lmms_eval_specific_kwargs`` name
another, e.g. ``caption_toys``), and per-image scores and their aggregation from the metric core, so
``lmms-eval --tasks ecac_tts`` reports exactly what ``ecac-bench score`` reports on the same captions.

Failed generations (``ecac_bench.generations``: lmms-eval's failure marker, an empty response) are never scored:
each task leaves them out of its metrics and reports ``n_failed_generations``; above ``$ECAC_MAX_FAILED`` (a count
or a fraction, default 0) the aggregation raises, so lmms-eval writes no numbers for the run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets
from PIL import Image

from ecac_bench import METRIC_KEYS, EcacDataset, ImageScore, aggregate_scores, load_dataset, score_image
from ecac_bench.balanced import BalancedResult, aggregate_balanced, balanced_scores
from ecac_bench.generations import ENV_MAX_FAILED, N_FAILED_KEY, FailureAllowance, generation_failure
from ecac_bench.judge import JudgeInput, JudgeSummary, aggregate_judge_scores, judge_captions
from ecac_bench.llm import LLMClient, Settings
from ecac_bench.prompts import load_prompt
from ecac_bench.toy_precision import (
    EXTRACTORS,
    LexiconExtractor,
    ToyPrecisionResult,
    extract_with_lexicon,
    extract_with_llm,
    toy_precision,
)
from ecac_bench.utility import UtilityResult, caption_utility, load_questions

ENV_DATA = "ECAC_DATA"
ENV_SPLIT = "ECAC_SPLIT"
ENV_TOY_EXTRACTOR = "ECAC_TOY_EXTRACTOR"


@lru_cache(maxsize=4)
def _load(path: str | None, split: str | None) -> EcacDataset:
    if split is not None:
        return load_dataset(path, split=None if split == "all" else split)
    dataset = load_dataset(path)
    if any(record.split == "test" for record in dataset):
        return load_dataset(path, split="test")
    return dataset


def ecac_dataset() -> EcacDataset:
    """The dataset the tasks evaluate, as chosen by ``$ECAC_DATA`` and ``$ECAC_SPLIT``."""
    return _load(os.environ.get(ENV_DATA) or None, os.environ.get(ENV_SPLIT) or None)


def process_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """Replace the YAML's placeholder rows with the ECAC records (ids, image paths, reference captions)."""
    records = ecac_dataset().records
    return datasets.Dataset.from_dict(
        {
            "id": [r.id for r in records],
            "image_path": [r.image_file for r in records],
            "caption": [r.caption for r in records],
        }
    )


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    with Image.open(doc["image_path"]) as image:
        return [image.convert("RGB")]


DEFAULT_PROMPT = "caption"


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return load_prompt(kwargs.get("prompt", DEFAULT_PROMPT), kwargs.get("language", "zh")).render()


# --- provenance: how a task's numbers were made, reported with them ---------------------------------------------
# lmms-eval records only the YAML's placeholder data file and not the rendered prompt, so every task reports them
# itself, as extra "metrics"; the leaderboard reads the dataset identity to rank runs per dataset.

PROVENANCE_METRICS = ("dataset_name", "dataset_split", "dataset_size", "dataset_sha256", "prompt_id", "prompt_sha256")


def provenance(prompt: str, lang: str) -> dict[str, str | int | None]:
    """The dataset the task saw (``EcacDataset.describe()``) and the captioning prompt's id and content hash."""
    dataset = ecac_dataset().describe()
    identity = load_prompt(prompt, lang).identity()
    return {
        **{f"dataset_{k}": dataset[k] for k in ("name", "split", "size", "sha256")},
        "prompt_id": identity["id"],
        "prompt_sha256": identity["sha256"],
    }


# --- failed generations ------------------------------------------------------------------------------------------


def _payload(doc: dict[str, Any], results: Sequence[str], prompt: str, lang: str) -> tuple[dict[str, Any], str]:
    """The per-document payload every metric of a task gets (id, prompt, language; ``failed`` with the reason when
    the generation failed) and the caption."""
    caption = results[0] if results else ""
    payload: dict[str, Any] = {"id": doc["id"], "prompt": prompt, "lang": lang}
    if (reason := generation_failure(caption)) is not None:
        payload["failed"] = reason
    return payload, caption


def _successful(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items whose generation succeeded; raises when more failed than ``$ECAC_MAX_FAILED`` allows (lmms-eval
    then writes no results file: the run fails loudly instead of publishing numbers over a subset)."""
    ok = [item for item in items if "failed" not in item]
    n_failed = len(items) - len(ok)
    allowance = FailureAllowance.parse(os.environ.get(ENV_MAX_FAILED) or "0", f"${ENV_MAX_FAILED}")
    if allowance.exceeded(n_failed, len(items)):
        raise RuntimeError(
            f"ECAC: {n_failed} of {len(items)} generations failed (the backend's failure marker or an empty "
            f"response), more than ${ENV_MAX_FAILED} allows ({allowance.describe()}); no numbers are reported for "
            "this run. Fix the model server and run again, or raise the limit."
        )
    return ok


def _provenance_aggregation(key: str) -> Callable[[list[dict[str, Any]]], str | int | None]:
    def aggregate(items: list[dict[str, Any]]) -> str | int | None:
        _successful(items)
        ((prompt, lang),) = {(item["prompt"], item["lang"]) for item in items}
        return provenance(prompt, lang)[key]

    aggregate.__name__ = f"aggregate_{key}"
    return aggregate


aggregate_dataset_name = _provenance_aggregation("dataset_name")
aggregate_dataset_split = _provenance_aggregation("dataset_split")
aggregate_dataset_size = _provenance_aggregation("dataset_size")
aggregate_dataset_sha256 = _provenance_aggregation("dataset_sha256")
aggregate_prompt_id = _provenance_aggregation("prompt_id")
aggregate_prompt_sha256 = _provenance_aggregation("prompt_sha256")


def aggregate_n_failed_generations(items: list[dict[str, Any]]) -> int:
    """How many of the task's generations failed (every task reports it)."""
    return len(items) - len(_successful(items))


def _per_metric(metrics: Sequence[str], payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` once per metric key, as lmms-eval expects, provenance and the failure count included."""
    return dict.fromkeys((*metrics, N_FAILED_KEY, *PROVENANCE_METRICS), payload)


# --- ecac_tts: TTS and the reward, per image from the metric core, aggregated by the core -------------------


def _tts_process_results(prompt: str, lang: str) -> Callable[[dict[str, Any], Sequence[str]], dict[str, Any]]:
    def process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
        """The image's TTS data (``ImageScore.to_dict()``) for every TTS metric, unless the generation failed."""
        payload, caption = _payload(doc, results, prompt, lang)
        if "failed" not in payload:
            payload.update(score_image(ecac_dataset().by_id[doc["id"]], [caption]).to_dict())
        return _per_metric(METRIC_KEYS, payload)

    return process_results


# One process_results per (prompt, language): lmms-eval passes process_results neither, and the provenance needs both.
tts_process_results = _tts_process_results(DEFAULT_PROMPT, "zh")
tts_process_results_en = _tts_process_results(DEFAULT_PROMPT, "en")
tts_toys_process_results = _tts_process_results("caption_toys", "zh")
tts_toys_process_results_en = _tts_process_results("caption_toys", "en")


def _aggregation(key: str) -> Callable[[list[dict[str, Any]]], float | None]:
    def aggregate(items: list[dict[str, Any]]) -> float | None:
        return aggregate_scores([ImageScore.from_dict(item) for item in _successful(items)])[key]

    aggregate.__name__ = f"aggregate_{key}"
    return aggregate


# lmms-eval names one aggregation function per metric in the YAML.
aggregate_tts = _aggregation("tts")
aggregate_tts_l = _aggregation("tts_l")
aggregate_tts_m = _aggregation("tts_m")
aggregate_tts_h = _aggregation("tts_h")
aggregate_tts_fl = _aggregation("tts_fl")
aggregate_tts_fm = _aggregation("tts_fm")
aggregate_tts_fh = _aggregation("tts_fh")
aggregate_tts_bl = _aggregation("tts_bl")
aggregate_tts_bm = _aggregation("tts_bm")
aggregate_tts_bh = _aggregation("tts_bh")
aggregate_reward = _aggregation("reward")


_DOC_FIELDS = {"image": "image_path", "reference": "caption"}  # payload field -> document field


def _collecting(metrics: Sequence[str], lang: str, *fields: str) -> Callable[[dict[str, Any], Sequence[str]], Any]:
    """process_results that only collects the caption (and ``fields`` of the document) for the aggregation."""

    def process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
        payload, caption = _payload(doc, results, DEFAULT_PROMPT, lang)
        if "failed" not in payload:
            payload |= {"caption": caption, **{field: doc[_DOC_FIELDS[field]] for field in fields}}
        return _per_metric(metrics, payload)

    return process_results


# --- ecac_judge: the MLLM-judge score through ecac_bench's client (concurrent, retried, cached) --------------
# process_results only collects (id, caption, image); the aggregation judges all captions at once, instead of
# one blocking call per document inside process_results.

JUDGE_METRICS = ("judge_score", "judge_score_std", "n", "n_failed")


judge_process_results = _collecting(JUDGE_METRICS, "zh", "image")
judge_process_results_en = _collecting(JUDGE_METRICS, "en", "image")


def _client() -> LLMClient:
    """The judge client configured like ``ecac-bench judge`` without flags: ``ECAC_JUDGE_*`` / ``OPENAI_*``."""
    return LLMClient.from_settings(Settings.from_env())


@lru_cache(maxsize=8)
def _judge(inputs: tuple[JudgeInput, ...], lang: str) -> JudgeSummary:
    """Judge once per set of captions: lmms-eval calls one aggregation per metric with the same items."""
    client = _client()
    outcomes = asyncio.run(judge_captions(client, inputs, lang=lang))
    return aggregate_judge_scores([outcome.score for outcome in outcomes])


def _judge_aggregation(key: str) -> Callable[[list[dict[str, Any]]], float | int | None]:
    def aggregate(items: list[dict[str, Any]]) -> float | int | None:
        (lang,) = {item["lang"] for item in items}
        inputs = tuple(JudgeInput(item["id"], item["caption"], Path(item["image"])) for item in _successful(items))
        return getattr(_judge(inputs, lang), key)

    aggregate.__name__ = f"aggregate_{key}"
    return aggregate


aggregate_judge_score = _judge_aggregation("judge_score")
aggregate_judge_score_std = _judge_aggregation("judge_score_std")
aggregate_judge_n = _judge_aggregation("n")
aggregate_judge_n_failed = _judge_aggregation("n_failed")


# --- ecac_toy_precision: toy names extracted from each caption (LLM through the judge client, or the lexicon) ---

TOY_METRICS = ("toy_precision", "toy_precision_macro", "avg_toy_count", "n_images", "n_extracted", "n_failed")


toy_process_results = _collecting(TOY_METRICS, "zh")
toy_process_results_en = _collecting(TOY_METRICS, "en")


@lru_cache(maxsize=8)
def _toy_precision(captions: tuple[tuple[str, str], ...], lang: str, extractor: str) -> ToyPrecisionResult:
    """Extract once per set of captions (one aggregation call per metric), as ``ecac-bench toy-precision``."""
    dataset = ecac_dataset()
    predictions = {image_id: [caption] for image_id, caption in captions}
    if extractor == "lexicon":
        names: dict[str, list[str] | None] = dict(
            extract_with_lexicon(LexiconExtractor.for_dataset(dataset), predictions)
        )
    else:
        names, _ = asyncio.run(extract_with_llm(_client(), predictions, lang=lang))
    return toy_precision(dataset, names)


def _toy_aggregation(key: str) -> Callable[[list[dict[str, Any]]], float | int | None]:
    def aggregate(items: list[dict[str, Any]]) -> float | int | None:
        extractor = os.environ.get(ENV_TOY_EXTRACTOR) or "llm"
        if extractor not in EXTRACTORS:
            raise ValueError(f"${ENV_TOY_EXTRACTOR}={extractor!r}: expected one of {', '.join(EXTRACTORS)}")
        (lang,) = {item["lang"] for item in items}
        captions = tuple((item["id"], item["caption"]) for item in _successful(items))
        return _toy_precision(captions, lang, extractor).metrics()[key]

    aggregate.__name__ = f"aggregate_{key}"
    return aggregate


aggregate_toy_precision = _toy_aggregation("toy_precision")
aggregate_toy_precision_macro = _toy_aggregation("toy_precision_macro")
aggregate_avg_toy_count = _toy_aggregation("avg_toy_count")
aggregate_toy_n_images = _toy_aggregation("n_images")
aggregate_toy_n_extracted = _toy_aggregation("n_extracted")
aggregate_toy_n_failed = _toy_aggregation("n_failed")


# --- ecac_balanced / ecac_utility: the sibling methods (BalCapRL, CapRL) through the judge client --------------
# Not in the `ecac` group (they cost several judge calls per image); the `ecac_all` group adds them.

ENV_QA = "ECAC_QA"
BALANCED_METRICS = ("balanced_precision", "balanced_recall", "linguistic", "b_capscore", "n", "n_failed")
UTILITY_METRICS = ("utility", "utility_micro", "n_images", "n_questions", "n_failed", "n_unparsed")


balanced_process_results = _collecting(BALANCED_METRICS, "zh", "image", "reference")
balanced_process_results_en = _collecting(BALANCED_METRICS, "en", "image", "reference")
utility_process_results = _collecting(UTILITY_METRICS, "zh")
utility_process_results_en = _collecting(UTILITY_METRICS, "en")


@lru_cache(maxsize=8)
def _balanced(items: tuple[tuple[str, str, str, str], ...], lang: str) -> BalancedResult:
    client = _client()
    scored = asyncio.run(balanced_scores(client, client, [(i, c, r, Path(p)) for i, c, r, p in items], lang=lang))
    return aggregate_balanced(scored)


@lru_cache(maxsize=8)
def _utility(captions: tuple[tuple[str, str], ...], lang: str) -> UtilityResult:
    path = os.environ.get(ENV_QA)
    if not path:
        raise ValueError(f"ecac_utility needs ${ENV_QA}: a CapRL questions JSONL (make one with `ecac-bench make-qa`)")
    questions = load_questions(path, ecac_dataset())
    predictions = {image_id: [caption] for image_id, caption in captions}
    scored_ids = set(predictions)
    items = [q for q in questions if q.id in scored_ids]  # a --limit run answers the questions of its images only
    return asyncio.run(caption_utility(_client(), items, predictions, lang=lang))


def _sibling_aggregation(key: str, kind: str) -> Callable[[list[dict[str, Any]]], float | int | None]:
    def aggregate(items: list[dict[str, Any]]) -> float | int | None:
        (lang,) = {item["lang"] for item in items}
        ok = _successful(items)
        if kind == "balanced":
            rows = tuple((i["id"], i["caption"], i["reference"], i["image"]) for i in ok)
            return _balanced(rows, lang).metrics()[key]
        return _utility(tuple((i["id"], i["caption"]) for i in ok), lang).metrics()[key]

    aggregate.__name__ = f"aggregate_{kind}_{key}"
    return aggregate


aggregate_balanced_precision = _sibling_aggregation("balanced_precision", "balanced")
aggregate_balanced_recall = _sibling_aggregation("balanced_recall", "balanced")
aggregate_balanced_linguistic = _sibling_aggregation("linguistic", "balanced")
aggregate_balanced_b_capscore = _sibling_aggregation("b_capscore", "balanced")
aggregate_balanced_n = _sibling_aggregation("n", "balanced")
aggregate_balanced_n_failed = _sibling_aggregation("n_failed", "balanced")
aggregate_utility = _sibling_aggregation("utility", "utility")
aggregate_utility_micro = _sibling_aggregation("utility_micro", "utility")
aggregate_utility_n_images = _sibling_aggregation("n_images", "utility")
aggregate_utility_n_questions = _sibling_aggregation("n_questions", "utility")
aggregate_utility_n_failed = _sibling_aggregation("n_failed", "utility")
aggregate_utility_n_unparsed = _sibling_aggregation("n_unparsed", "utility")
