"""lmms-eval hooks for the ECAC tasks: a thin shim over ``ecac_bench.lmms_adapter``.

Records come from ``ecac_bench.load_dataset($ECAC_DATA)`` (default: the bundled sample; ``$ECAC_SPLIT`` picks
a split, default ``test`` when the data has one, ``all`` for every record), prompts from
``ecac_bench/prompts/<prompt>.<language>.j2`` (``caption`` unless the task's ``lmms_eval_specific_kwargs`` name
another, e.g. ``caption_toys``), and per-image statistics, metrics and CIs from the metric core, so
``lmms-eval --tasks ecac_tts`` reports exactly what ``ecac-bench score`` reports on the same captions.

Every aggregation a YAML names, ``utils.aggregate_<kind>__<metric>``, is the one generic aggregation of
``ecac_bench.lmms_adapter`` for that registry metric (resolved by the module ``__getattr__`` below); besides its
kind's metrics every task reports ``n_failed_generations`` and ``ecac_signature`` (provenance: docs/lmms_eval.md).
Failed generations are never scored; above ``$ECAC_MAX_FAILED`` (a count or a fraction, default 0) the aggregation
raises, so lmms-eval writes no numbers for the run.

lmms-eval executes this file once per ``!function`` tag: nothing here holds state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
from PIL import Image

from ecac_bench.lmms_adapter import DEFAULT_PROMPT, aggregation_by_name, ecac_dataset, process_results
from ecac_bench.prompts import load_prompt


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


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return load_prompt(kwargs.get("prompt", DEFAULT_PROMPT), kwargs.get("language", "zh")).render()


# One process_results per (kind, prompt, language): lmms-eval passes process_results none of them.
tts_process_results = process_results("score", DEFAULT_PROMPT, "zh")
tts_process_results_en = process_results("score", DEFAULT_PROMPT, "en")
tts_toys_process_results = process_results("score", "caption_toys", "zh")
tts_toys_process_results_en = process_results("score", "caption_toys", "en")
judge_process_results = process_results("judge", DEFAULT_PROMPT, "zh")
judge_process_results_en = process_results("judge", DEFAULT_PROMPT, "en")
toy_process_results = process_results("toy-precision", DEFAULT_PROMPT, "zh")
toy_process_results_en = process_results("toy-precision", DEFAULT_PROMPT, "en")
utility_process_results = process_results("utility", DEFAULT_PROMPT, "zh")
utility_process_results_en = process_results("utility", DEFAULT_PROMPT, "en")
balanced_process_results = process_results("balanced", DEFAULT_PROMPT, "zh")
balanced_process_results_en = process_results("balanced", DEFAULT_PROMPT, "en")


def __getattr__(name: str) -> Callable[[list[dict[str, Any]]], Any]:
    """``aggregate_<kind>__<metric>``: the generic aggregation of that registry metric (PEP 562)."""
    return aggregation_by_name(name)
