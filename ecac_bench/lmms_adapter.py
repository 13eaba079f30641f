"""The ECAC lmms-eval tasks' logic: documents, per-document payloads, and ONE generic aggregation over the registry.

The task folder's ``utils.py`` (``ecac_bench/lmms_tasks/ecac``) is a thin shim over this module. lmms-eval loads
that file once per ``!function`` tag, so whatever must be shared between a task's metrics (the loaded dataset, one
judge run per set of captions) lives here, in an imported module.

How a task's numbers are made, per report kind (``ecac_bench.registry``):

1. ``process_results`` returns one payload per document: the image id, the captioning prompt and language, and
   either ``failed`` (a failed generation: never scored) or what the kind needs (TTS: the image's counts, the same
   ``ImageScore`` the CLI computes; the others: the caption, and the image or reference caption).
2. Every metric of the kind is aggregated by :func:`aggregation` (``utils.aggregate_<kind>__<metric>``): the kind's
   measure turns the successful payloads into per-image statistics, once per set of payloads (cached), and
   ``ecac_bench.imagestats.evaluate`` gives the metrics and their bootstrap CIs, exactly as the CLI does.
3. ``ecac_signature`` (one entry, documented as provenance in docs/lmms_eval.md) carries what lmms-eval does not
   record itself: the schema version, the kind, the identity of the records the task saw, the protocol (caption
   prompt, match rule, judge) and the CIs with their seed and resample count. The leaderboard turns a results file
   into schema-2 reports with it (``ecac_bench.leaderboard.loaders``).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ecac_bench import __version__, registry
from ecac_bench.data import EcacDataset, dataset_identity, load_dataset
from ecac_bench.generations import ENV_MAX_FAILED, N_FAILED_KEY, FailureAllowance, generation_failure
from ecac_bench.imagestats import BootstrapConfig, Estimator, ImageStats, MetricResult, evaluate
from ecac_bench.report_schema import SCHEMA_VERSION, LmmsSignature, SignedFields, format_signature, judge_identity

ENV_DATA = "ECAC_DATA"
ENV_SPLIT = "ECAC_SPLIT"
ENV_TOY_EXTRACTOR = "ECAC_TOY_EXTRACTOR"
ENV_QA = "ECAC_QA"
ENV_N_BOOT = "ECAC_N_BOOT"
SIGNATURE_KEY = "ecac_signature"
DEFAULT_PROMPT = "caption"
# Metric slots every ECAC task reports besides its kind's metrics (docs/lmms_eval.md).
EXTRA_KEYS = (N_FAILED_KEY, SIGNATURE_KEY)


# --- documents ---------------------------------------------------------------------------------------------------


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


# --- per-document payloads ---------------------------------------------------------------------------------------

_DOC_FIELDS = {"image": "image_path", "reference": "caption"}  # payload field -> document field
# What each kind's payload carries besides the caption (TTS scores the caption at once instead; another kind gets
# the caption alone).
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "judge": ("image",),
    "toy-precision": (),
    "utility": (),
    "balanced": ("image", "reference"),
}


def _payload(doc: dict[str, Any], results: Sequence[str], prompt: str, lang: str) -> tuple[dict[str, Any], str]:
    """The payload every metric of a task gets (id, prompt, language; ``failed`` with the reason when the generation
    failed) and the caption."""
    caption = results[0] if results else ""
    payload: dict[str, Any] = {"id": doc["id"], "prompt": prompt, "lang": lang}
    if (reason := generation_failure(caption)) is not None:
        payload["failed"] = reason
    return payload, caption


def process_results(kind: str, prompt: str, lang: str) -> Callable[[dict[str, Any], Sequence[str]], dict[str, Any]]:
    """A task's ``process_results``: the document's payload under every metric key of ``kind`` (lmms-eval hands
    each metric's aggregation the values under its key)."""
    keys = (*registry.keys(kind), *EXTRA_KEYS)

    def process(doc: dict[str, Any], results: Sequence[str]) -> dict[str, Any]:
        payload, caption = _payload(doc, results, prompt, lang)
        if "failed" not in payload:
            if kind == "score":
                from ecac_bench.metrics import score_image

                payload.update(score_image(ecac_dataset().by_id[doc["id"]], [caption]).to_dict())
            else:
                payload |= {"caption": caption, **{f: doc[_DOC_FIELDS[f]] for f in _KIND_FIELDS.get(kind, ())}}
        return dict.fromkeys(keys, payload)

    return process


def successful(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


# --- measuring: payloads -> per-image statistics, per kind ---------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    stats: ImageStats
    protocol: dict[str, Any]


Measure = Callable[[list[dict[str, Any]], str], Measured]


def _client() -> Any:
    """The judge client configured like ``ecac-bench judge`` without flags: ``ECAC_JUDGE_*`` / ``OPENAI_*``."""
    from ecac_bench.llm import LLMClient, Settings

    return LLMClient.from_settings(Settings.from_env())


def _judge_identity(client: Any, *tasks: str, lang: str) -> dict[str, Any]:
    from ecac_bench.prompts import load_prompt

    return judge_identity(client, *(load_prompt(task, lang) for task in tasks))


def _measure_score(items: list[dict[str, Any]], lang: str) -> Measured:
    from ecac_bench.metrics import ImageScore, _Arrays, tts_statistics

    stats = tts_statistics(_Arrays.of([ImageScore.from_dict(item) for item in items]))
    return Measured(stats, {"match": "exact"})


def _measure_judge(items: list[dict[str, Any]], lang: str) -> Measured:
    from ecac_bench.judge import JudgeInput, judge_captions, judge_statistics

    client = _client()
    inputs = [JudgeInput(item["id"], item["caption"], Path(item["image"])) for item in items]
    outcomes = asyncio.run(judge_captions(client, inputs, lang=lang))
    stats = judge_statistics([o.id for o in outcomes], [o.score for o in outcomes])
    return Measured(stats, {"judge": _judge_identity(client, "judge_score", "judge_score_repair", lang=lang)})


def _measure_toy_precision(items: list[dict[str, Any]], lang: str) -> Measured:
    from ecac_bench.toy_precision import EXTRACTORS, LexiconExtractor, extract_with_lexicon, extract_with_llm
    from ecac_bench.toy_precision import toy_precision as measure

    extractor = os.environ.get(ENV_TOY_EXTRACTOR) or "llm"
    if extractor not in EXTRACTORS:
        raise ValueError(f"${ENV_TOY_EXTRACTOR}={extractor!r}: expected one of {', '.join(EXTRACTORS)}")
    dataset = ecac_dataset()
    predictions = {item["id"]: [item["caption"]] for item in items}
    protocol: dict[str, Any] = {"match": "exact", "precision_match": "equal", "extractor": extractor}
    if extractor == "lexicon":
        names: dict[str, list[str] | None] = dict(
            extract_with_lexicon(LexiconExtractor.for_dataset(dataset), predictions)
        )
    else:
        client = _client()
        names, _ = asyncio.run(extract_with_llm(client, predictions, lang=lang))
        protocol["judge"] = _judge_identity(client, "toy_extract", "toy_extract_repair", lang=lang)
    return Measured(measure(dataset, names).stats, protocol)


def _measure_utility(items: list[dict[str, Any]], lang: str) -> Measured:
    from ecac_bench.utility import caption_utility, load_questions

    path = os.environ.get(ENV_QA)
    if not path:
        raise ValueError(f"ecac_utility needs ${ENV_QA}: a CapRL questions JSONL (make one with `ecac-bench make-qa`)")
    predictions = {item["id"]: [item["caption"]] for item in items}
    questions = [q for q in load_questions(path, ecac_dataset()) if q.id in predictions]  # a --limit run: its images
    client = _client()
    result = asyncio.run(caption_utility(client, questions, predictions, lang=lang))
    return Measured(result.stats, {"judge": _judge_identity(client, "utility_answer", lang=lang)})


def _measure_balanced(items: list[dict[str, Any]], lang: str) -> Measured:
    from ecac_bench.balanced import BALANCED_PROMPTS, aggregate_balanced, balanced_scores

    client = _client()
    rows = [(i["id"], i["caption"], i["reference"], Path(i["image"])) for i in items]
    scored = asyncio.run(balanced_scores(client, client, rows, lang=lang))
    judge = _judge_identity(client, *BALANCED_PROMPTS, lang=lang)
    judge["params"] = {**judge["params"], "vlm": client.config.model}
    return Measured(aggregate_balanced(scored).stats, {"judge": judge})


# Where each built-in kind's estimator lives (imported when a task of the kind aggregates).
_ESTIMATORS = {
    "score": ("ecac_bench.metrics", "TTS"),
    "judge": ("ecac_bench.judge", "JUDGE"),
    "toy-precision": ("ecac_bench.toy_precision", "TOY_PRECISION"),
    "utility": ("ecac_bench.utility", "UTILITY"),
    "balanced": ("ecac_bench.balanced", "BALANCED"),
}


def estimator_of(kind: str) -> Estimator:
    """The estimator of a report kind (a built-in, or one added with register_task_kind)."""
    if kind in _EXTENSIONS:
        return _EXTENSIONS[kind][0]
    module, name = _ESTIMATORS[kind]
    return getattr(importlib.import_module(module), name)


_MEASURES: dict[str, Measure] = {
    "score": _measure_score,
    "judge": _measure_judge,
    "toy-precision": _measure_toy_precision,
    "utility": _measure_utility,
    "balanced": _measure_balanced,
}
# Kinds added with register_task_kind (docs/contributing.md): kind -> (estimator, measure).
_EXTENSIONS: dict[str, tuple[Estimator, Measure]] = {}


def register_task_kind(kind: str, estimator: Estimator, measure: Measure) -> None:
    """Let the lmms-eval tasks aggregate a registered kind: ``measure(successful payloads, lang)``."""
    registry.kind(kind)  # must be registered
    _EXTENSIONS[kind] = (estimator, measure)
    _MEASURES[kind] = measure


def unregister_task_kind(kind: str) -> None:
    _EXTENSIONS.pop(kind, None)
    _MEASURES.pop(kind, None)


# --- the one aggregation ------------------------------------------------------------------------------------------


def _n_boot() -> int:
    raw = os.environ.get(ENV_N_BOOT) or "1000"
    if not raw.isdigit():
        raise ValueError(f"${ENV_N_BOOT}: expected a count of bootstrap resamples (0: none), got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class TaskResult:
    result: MetricResult
    signature: dict[str, Any]
    n_failed: int
    items: list[dict[str, Any]]  # held, so that no payload of a cached key is freed and its id reused


# lmms-eval calls one aggregation per metric, each with a list of the *same* payload objects (process_results puts
# one payload under every key): a run is measured once, keyed by the identities of its payloads.
_RESULTS: OrderedDict[tuple[Any, ...], TaskResult] = OrderedDict()
_RESULTS_KEPT = 8


def _evaluate_once(kind: str, items: list[dict[str, Any]], n_boot: int) -> TaskResult:
    environment = tuple(os.environ.get(v) for v in (ENV_DATA, ENV_SPLIT, ENV_TOY_EXTRACTOR, ENV_QA))
    key = (kind, tuple(map(id, items)), n_boot, environment)
    if key not in _RESULTS:
        _RESULTS[key] = _evaluate(kind, items, n_boot)
        while len(_RESULTS) > _RESULTS_KEPT:
            _RESULTS.popitem(last=False)
    return _RESULTS[key]


def _evaluate(kind: str, items: list[dict[str, Any]], n_boot: int) -> TaskResult:
    """The kind's statistics of the successful payloads, its metrics and CIs, and the task's signature."""
    ok = successful(items)
    (lang,) = {item["lang"] for item in items} or {"zh"}
    ((prompt, _),) = {(item["prompt"], item["lang"]) for item in items} or {(DEFAULT_PROMPT, lang)}
    measured = _MEASURES[kind](ok, lang)
    config = BootstrapConfig(n_boot) if n_boot else None
    result = evaluate(measured.stats, estimator_of(kind), config)
    signature = _signature(kind, items, prompt, lang, measured.protocol, result)
    return TaskResult(result, signature, len(items) - len(ok), list(items))


def _seen_dataset(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The identity of the records the task evaluated (all of the dataset, or the part a --limit run saw)."""
    dataset = ecac_dataset()
    seen = {item["id"] for item in items}
    described = dataset.describe()
    if len(seen) != len(dataset):
        described["size"] = len(seen)
        described["sha256"] = dataset_identity([r for r in dataset.records if r.id in seen])
    return described


def _lmms_eval_version() -> str:
    try:
        return version("lmms-eval")
    except PackageNotFoundError:  # pragma: no cover - the tasks run inside lmms-eval
        return "unknown"


def _signature(
    kind: str, items: list[dict[str, Any]], prompt: str, lang: str, protocol: dict[str, Any], result: MetricResult
) -> dict[str, Any]:
    """The task's ``ecac_signature`` entry (``report_schema.LmmsSignature``)."""
    from ecac_bench.prompts import load_prompt

    fields = SignedFields.model_validate(
        {
            "harness": {"name": "ecac-bench", "version": __version__, "runner": f"lmms-eval {_lmms_eval_version()}"},
            "kind": registry.kind(kind).report_kind,
            "dataset": _seen_dataset(items),
            "protocol": {"caption_prompt": load_prompt(prompt, lang).identity(), **protocol},
            "ci_config": result.ci_config,
        }
    )
    entry = {"schema_version": SCHEMA_VERSION, "text": format_signature(fields), **fields.model_dump(), "ci": result.ci}
    return LmmsSignature.model_validate(entry).model_dump(mode="json")


def aggregation(kind: str, key: str) -> Callable[[list[dict[str, Any]]], Any]:
    """The aggregation of metric ``key`` of ``kind`` (or of ``n_failed_generations`` / ``ecac_signature``)."""
    if key not in (*registry.keys(kind), *EXTRA_KEYS):
        raise AttributeError(f"{kind!r} reports no metric {key!r} (ecac_bench.registry)")

    def aggregate(items: list[dict[str, Any]]) -> Any:
        successful(items)  # every call: the allowance may change between runs in one process
        done = _evaluate_once(kind, items, _n_boot())
        if key == N_FAILED_KEY:
            return done.n_failed
        if key == SIGNATURE_KEY:
            return done.signature
        return done.result.metrics[key]

    aggregate.__name__ = aggregation_name(kind, key)
    return aggregate


def aggregation_name(kind: str, key: str) -> str:
    """The name a task YAML gives the aggregation: ``aggregate_<kind>__<key>`` (``-`` in a kind becomes ``_``)."""
    return f"aggregate_{kind.replace('-', '_')}__{key}"


def aggregation_by_name(name: str) -> Callable[[list[dict[str, Any]]], Any]:
    """Resolve ``aggregate_<kind>__<key>`` (what ``utils.<name>`` means in a task YAML)."""
    head, sep, key = name.removeprefix("aggregate_").partition("__")
    kind = next((k.name for k in registry.kinds() if k.name.replace("-", "_") == head), None)
    if not name.startswith("aggregate_") or not sep or kind is None:
        raise AttributeError(name)
    return aggregation(kind, key)
