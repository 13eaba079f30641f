"""Read the leaderboard's inputs: reported baselines (YAML/JSON) and measured results files.

Measured results come in two kinds, told apart by their content, never by file name:

* an ``ecac-bench`` JSON report (``"kind": "ecac-bench/score" | "ecac-bench/judge" | "ecac-bench/toy-precision"``);
* an lmms-eval results file (``<output_path>/<model>/<timestamp>_results.json`` with ``results``, ``configs`` and
  ``config``), whose ``ecac_*`` tasks carry metrics under keys like ``"tts,none"``.

Every problem is an :class:`InputError` naming the file and the field, so a bad file can be fixed or skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecac_bench import METRIC_KEYS
from ecac_bench.leaderboard.entries import (
    BALANCED_KEYS,
    JUDGE_KEYS,
    LEADERBOARD_KEYS,
    PRECISION_KEYS,
    UNBOUNDED_KEYS,
    UTILITY_KEYS,
    DatasetId,
    Entry,
    Provenance,
)

# The metrics each ecac-bench report kind contributes, and the one it must contain.
REPORT_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "ecac-bench/score": (METRIC_KEYS, "tts"),
    "ecac-bench/judge": (JUDGE_KEYS, "judge_score"),
    "ecac-bench/toy-precision": (PRECISION_KEYS, "toy_precision"),
    "ecac-bench/utility": (UTILITY_KEYS, "utility"),
    "ecac-bench/balanced": (BALANCED_KEYS, "b_capscore"),
}
LMMS_TASK_PREFIX = "ecac_"
BASELINE_SUFFIXES = (".yaml", ".yml", ".json")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LMMS_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})_")


class InputError(ValueError):
    """A leaderboard input that cannot be used; the message names the file and what is wrong."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{path}: {message}")


@dataclass
class LoadResult:
    entries: list[Entry] = field(default_factory=list)
    problems: list[InputError] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- field checks


def _require(obj: Mapping[str, Any], key: str, where: str, path: Path) -> Any:
    if key not in obj or obj[key] is None:
        raise InputError(path, f"{where}{key}: missing")
    return obj[key]


def _mapping(value: Any, where: str, path: Path) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(path, f"{where}: expected an object, got {type(value).__name__}")
    return value


def _text(value: Any, where: str, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(path, f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _optional_text(value: Any, where: str, path: Path) -> str | None:
    return None if value is None else _text(value, where, path)


def _number(value: Any, where: str, path: Path, *, bounded: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(path, f"{where}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InputError(path, f"{where}: expected a finite number, got {value!r}")
    if bounded and not 0.0 <= number <= 100.0:
        raise InputError(path, f"{where}: {number} is outside 0-100")
    return number


def _metrics(raw: Mapping[str, Any], keys: Iterable[str], where: str, path: Path) -> dict[str, float]:
    """The known metrics of ``raw`` (nulls dropped: a metric with no covered image has no value)."""
    out: dict[str, float] = {}
    for key in keys:
        if raw.get(key) is not None:
            out[key] = _number(raw[key], f"{where}.{key}", path, bounded=key not in UNBOUNDED_KEYS)
    return out


def _iso_date(value: Any, where: str, path: Path) -> str:
    if isinstance(value, dt.date):  # YAML reads an unquoted 2026-11-24 as a date
        return value.isoformat()
    try:
        return dt.date.fromisoformat(_text(value, where, path)).isoformat()
    except ValueError:
        raise InputError(path, f"{where}: expected a date YYYY-MM-DD, got {value!r}") from None


def _dataset(raw: Any, where: str, path: Path, *, need_hash: bool) -> DatasetId:
    data = _mapping(raw, where, path)
    size = data.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise InputError(path, f"{where}.size: expected a count of images, got {size!r}")
    sha = data.get("sha256")
    if sha is None and need_hash:
        raise InputError(path, f"{where}.sha256: missing")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise InputError(path, f"{where}.sha256: expected 64 lower-case hex digits, got {sha!r}")
    return DatasetId(
        name=_text(_require(data, "name", f"{where}.", path), f"{where}.name", path),
        split=_optional_text(data.get("split"), f"{where}.split", path),
        size=size,
        sha256=sha,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


# ---------------------------------------------------------------------------------------------- reported


def parse_baseline_file(path: Path) -> list[Entry]:
    """Entries of one baselines file: ``{"entries": [{source: reported, citation, model, params_b, table, ...}]}``."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    items = _require(_mapping(data, "top level", path), "entries", "", path)
    if not isinstance(items, list) or not items:
        raise InputError(path, "entries: expected a non-empty list")
    return [_baseline_entry(item, f"entries[{i}]", path) for i, item in enumerate(items)]


def _baseline_entry(raw: Any, where: str, path: Path) -> Entry:
    item = _mapping(raw, where, path)
    if item.get("source") != "reported":
        raise InputError(path, f"{where}.source: must be 'reported', got {item.get('source')!r}")
    citation = _mapping(_require(item, "citation", f"{where}.", path), f"{where}.citation", path)
    key = _text(_require(citation, "key", f"{where}.citation.", path), f"{where}.citation.key", path)
    cite_text = _text(_require(citation, "text", f"{where}.citation.", path), f"{where}.citation.text", path)
    if "params_b" not in item:
        raise InputError(path, f"{where}.params_b: missing (use null when the paper gives no size)")
    params = item["params_b"]
    raw_metrics = _mapping(_require(item, "metrics", f"{where}.", path), f"{where}.metrics", path)
    unknown = sorted(set(raw_metrics) - set(LEADERBOARD_KEYS))
    if unknown:
        raise InputError(path, f"{where}.metrics: unknown metric(s) {unknown}; known: {list(LEADERBOARD_KEYS)}")
    metrics = _metrics(raw_metrics, LEADERBOARD_KEYS, f"{where}.metrics", path)
    if not metrics:
        raise InputError(path, f"{where}.metrics: no values")
    # The captioning prompt the numbers were made with (the paper's rows: "unknown"); checked here, and for now only
    # recorded in the file: how prompts split rankings is the report signature's rule.
    _optional_text(item.get("prompt"), f"{where}.prompt", path)
    return Entry(
        model=_text(_require(item, "model", f"{where}.", path), f"{where}.model", path),
        source="reported",
        dataset=_dataset(_require(item, "dataset", f"{where}.", path), f"{where}.dataset", path, need_hash=False),
        metrics=metrics,
        provenance=Provenance(
            origin=key,
            kind=_text(_require(item, "table", f"{where}.", path), f"{where}.table", path),
            date=_iso_date(item["date"], f"{where}.date", path) if item.get("date") is not None else None,
            note=_optional_text(item.get("note"), f"{where}.note", path),
        ),
        params_b=None if params is None else _number(params, f"{where}.params_b", path, bounded=False),
        citation=cite_text,
        variant=_optional_text(item.get("variant"), f"{where}.variant", path),
    )


# ---------------------------------------------------------------------------------------------- measured


def parse_results_file(path: Path, origin: str) -> Entry:
    """One measured results file (either kind); ``origin`` is how the leaderboard names the file."""
    data = _read_json(path)
    if not isinstance(data, Mapping):
        raise InputError(path, f"expected a JSON object, got {type(data).__name__}")
    if "kind" in data:
        return _ecac_report(data, path, origin)
    if "results" in data and "configs" in data:
        return _lmms_results(data, path, origin)
    if "boards" in data and "schema" in data:
        raise InputError(path, "this is a built leaderboard, not a results file; point --results at the runs")
    raise InputError(
        path,
        "unrecognised results file: neither an ecac-bench report (no 'kind') "
        "nor an lmms-eval results file (no 'results'/'configs')",
    )


def _ecac_report(data: Mapping[str, Any], path: Path, origin: str) -> Entry:
    kind = data["kind"]
    if kind not in REPORT_KINDS:
        raise InputError(path, f"kind: {kind!r} carries no leaderboard metrics; expected one of {sorted(REPORT_KINDS)}")
    keys, headline = REPORT_KINDS[kind]
    harness = _mapping(_require(data, "harness", "", path), "harness", path)
    raw_metrics = _mapping(_require(data, "metrics", "", path), "metrics", path)
    if headline not in raw_metrics:
        raise InputError(path, f"metrics.{headline}: missing (required in a {kind} report)")
    judge = data.get("judge")
    judge_model = None
    if judge is not None:
        judge_model = _optional_text(_mapping(judge, "judge", path).get("model"), "judge.model", path)
    config = data.get("config") if isinstance(data.get("config"), Mapping) else {}
    if config.get("match", "exact") != "exact":  # score and toy-precision both match names to toys
        raise InputError(path, f"config.match: {config.get('match')!r}; the leaderboard ranks only the exact rule")
    facts = [f"{k} {config[k]}" for k in ("match", "extractor") if isinstance(config.get(k), str)]
    # A judge run says how many captions it scored and how many judgements failed (never counted as 0).
    facts += [f"{k} {raw_metrics[k]}" for k in ("n", "n_failed") if isinstance(raw_metrics.get(k), int)]
    note = "; ".join(facts) or None
    harness_name = _text(_require(harness, "name", "harness.", path), "harness.name", path)
    harness_version = _text(_require(harness, "version", "harness.", path), "harness.version", path)
    return Entry(
        model=_text(_require(data, "model", "", path), "model", path),
        source="measured",
        dataset=_dataset(_require(data, "dataset", "", path), "dataset", path, need_hash=True),
        metrics=_metrics(raw_metrics, keys, "metrics", path),
        provenance=Provenance(
            origin=origin,
            kind=kind,
            harness=f"{harness_name} {harness_version}",
            judge_model=judge_model,
            date=_iso_date(_require(data, "date", "", path), "date", path),
            note=note,
        ),
    )


def _lmms_metrics(results: Mapping[str, Any], path: Path) -> tuple[dict[str, float], list[str]]:
    """Known metrics of every ``ecac_*`` task; a metric given twice (two filters or two tasks) is an error."""
    metrics: dict[str, float] = {}
    tasks = sorted(t for t in results if t.startswith(LMMS_TASK_PREFIX))
    if not tasks:
        raise InputError(path, f"results: no {LMMS_TASK_PREFIX}* task (tasks found: {sorted(results)})")
    for task in tasks:
        values = _mapping(results[task], f"results.{task}", path)
        for raw_key, value in sorted(values.items()):
            name = raw_key.partition(",")[0]  # "tts,none" -> "tts"; ECAC tasks use the default filter
            if name not in LEADERBOARD_KEYS or value is None or value == "N/A":
                continue  # aliases, stderr entries, counts the leaderboard does not show, no value
            if name in metrics:
                raise InputError(path, f"results.{task}.{raw_key}: metric {name!r} is given more than once")
            metrics[name] = _number(value, f"results.{task}.{raw_key}", path, bounded=name not in UNBOUNDED_KEYS)
    if not metrics:
        raise InputError(path, f"results: the tasks {tasks} carry no ECAC metric ({', '.join(LEADERBOARD_KEYS)})")
    return metrics, tasks


def _lmms_model(data: Mapping[str, Any], path: Path) -> str:
    if isinstance(data.get("model_name"), str) and data["model_name"].strip():
        return data["model_name"].strip()
    args = (data.get("config") or {}).get("model_args")
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("pretrained", "model", "model_version", "model_name") and value.strip():
                return value.strip()
    return path.parent.name


def _lmms_dataset(data: Mapping[str, Any], tasks: Sequence[str], path: Path) -> tuple[DatasetId, str | None]:
    """The dataset an lmms-eval run saw, and a note on how sure that is.

    The ECAC tasks read their records from ``$ECAC_DATA``, which lmms-eval does not record (the task YAML's
    ``data_files`` is only a placeholder), so the identity must come from the results themselves: a task may report
    ``dataset_name``, ``dataset_split``, ``dataset_size`` and ``dataset_sha256`` as extra "metrics" (the values of
    ``EcacDataset.describe()``). Without them the run gets a board of its own rather than a guessed dataset.
    """
    results = data["results"]
    ordered = sorted(tasks, key=lambda t: (t != "ecac_tts", t))  # ecac_tts first: it sees every image
    n_samples = data.get("n-samples") or {}
    counts = next((n_samples[t] for t in ordered if isinstance(n_samples.get(t), Mapping)), {})
    effective = counts.get("effective") if isinstance(counts.get("effective"), int) else None
    original = counts.get("original") if isinstance(counts.get("original"), int) else None
    for task in ordered:
        values = results[task]
        described = {k: values.get(f"dataset_{k},none") for k in ("name", "split", "size", "sha256")}
        if isinstance(described["size"], float) and described["size"].is_integer():
            described["size"] = int(described["size"])  # an aggregation may hand the count back as a float
        if described["name"] is not None:
            dataset = _dataset(described, f"results.{task}.dataset_*", path, need_hash=False)
            if effective is not None and original is not None and effective < original:
                # --limit: a subset of that file, so never ranked with full runs.
                return DatasetId(dataset.name, dataset.split, effective, dataset.sha256), (
                    f"lmms-eval --limit: {effective} of {original} images"
                )
            return dataset, None
    return DatasetId("dataset not recorded by lmms-eval", None, effective), (
        "the ECAC task did not report dataset_name/dataset_sha256, so this run is not ranked with others"
    )


def _lmms_date(data: Mapping[str, Any], path: Path) -> str | None:
    for candidate in (data.get("date"), path.name):
        match = _LMMS_DATE.match(str(candidate)) if candidate is not None else None
        if match:
            return "-".join(match.groups())
    return None


def _lmms_results(data: Mapping[str, Any], path: Path, origin: str) -> Entry:
    results = _mapping(data["results"], "results", path)
    metrics, tasks = _lmms_metrics(results, path)
    versions = data.get("versions") if isinstance(data.get("versions"), Mapping) else {}
    task_versions = ", ".join(f"{t} v{versions[t]}" for t in tasks if versions.get(t) is not None)
    dataset, note = _lmms_dataset(data, tasks, path)
    return Entry(
        model=_lmms_model(data, path),
        source="measured",
        dataset=dataset,
        metrics=metrics,
        provenance=Provenance(
            origin=origin,
            kind="lmms-eval",
            harness=f"lmms-eval ({task_versions})" if task_versions else "lmms-eval",
            date=_lmms_date(data, path),
            note=note,
        ),
    )


# ---------------------------------------------------------------------------------------------- folders


def _visible_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files under ``folder`` with one of ``suffixes``, skipping hidden names (temp files, build folders)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def load_inputs(baseline_dirs: Sequence[Path], results_dirs: Sequence[Path]) -> LoadResult:
    """Read every input; problems are collected (not raised) so the caller can report them all at once."""
    out = LoadResult()
    for folder in [*baseline_dirs, *results_dirs]:
        if not folder.is_dir():
            out.problems.append(InputError(folder, "not a folder"))
    for folder in baseline_dirs:
        for path in _visible_files(folder, BASELINE_SUFFIXES) if folder.is_dir() else []:
            try:
                out.entries.extend(parse_baseline_file(path))
            except InputError as exc:
                out.problems.append(exc)
    for folder in results_dirs:
        for path in _visible_files(folder, (".json",)) if folder.is_dir() else []:
            # Named relative to the folder given, so the site does not depend on where it was built.
            origin = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            try:
                out.entries.append(parse_results_file(path, origin))
            except InputError as exc:
                out.problems.append(exc)
    return out
