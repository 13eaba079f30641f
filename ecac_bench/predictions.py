"""Loading model captions (predictions) for a dataset.

Two JSONL formats, detected from the first row:

* ``captions``: one row per image, ``{"id": ..., "caption": "..."}`` or ``{"id": ..., "captions": ["...", "..."]}``;
* ``lmms-eval``: the samples file that ``lmms-eval --log_samples`` writes for an ECAC task
  (``ecac_bench.lmms_samples``).

Every id must be in the dataset; every dataset id must be predicted unless ``allow_missing``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ecac_bench.data import MAX_PROBLEMS, DataValidationError, EcacDataset, Problem, jsonl_rows, no_gc, problem_sink
from ecac_bench.lmms_samples import looks_like_lmms_eval_samples, sample_entry

PredictionsFormat = Literal["auto", "captions", "lmms-eval"]
# (row, file, line, problems) -> (image id, captions), or None after recording the row's problems
RowReader = Callable[[Any, str, int, list[Problem]], "tuple[str, list[str]] | None"]

_SHOW_IDS = 5


def _captions_of(row: dict[str, Any], file: str, line: int, problems: list[Problem]) -> list[str] | None:
    if "caption" in row and "captions" in row:
        problems.append(Problem(file, line, "caption", "give either 'caption' or 'captions', not both"))
        return None
    if "caption" in row:
        caption = row["caption"]
        if not isinstance(caption, str):
            problems.append(Problem(file, line, "caption", f"must be a string, got {type(caption).__name__}"))
            return None
        return [caption]
    if "captions" in row:
        captions = row["captions"]
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            problems.append(Problem(file, line, "captions", "must be a list of strings"))
            return None
        return captions
    problems.append(Problem(file, line, "caption", "missing ('caption' or 'captions')"))
    return None


def caption_entry(row: Any, file: str, line: int, problems: list[Problem]) -> tuple[str, list[str]] | None:
    """(image id, captions) of one ``{id, caption(s)}`` row."""
    try:  # the common, well-formed one-caption row, with few calls; anything else gets the detailed checks
        rec_id, caption = row["id"], row["caption"]
        if type(rec_id) is str and rec_id and type(caption) is str and "captions" not in row:
            return rec_id, [caption]
    except (KeyError, TypeError):
        pass
    if not isinstance(row, dict):
        problems.append(Problem(file, line, "<record>", f"must be a JSON object, got {type(row).__name__}"))
        return None
    rec_id = row.get("id")
    if not isinstance(rec_id, str) or not rec_id:
        problems.append(Problem(file, line, "id", "missing, empty or not a string"))
        return None
    captions = _captions_of(row, file, line, problems)
    return None if captions is None else (rec_id, captions)


def load_predictions(
    path: str | Path, dataset: EcacDataset, allow_missing: bool = False, format: PredictionsFormat = "auto"
) -> dict[str, list[str]]:
    """Read a predictions file into ``{id: [caption, ...]}``, checked against ``dataset``.

    Raises :class:`DataValidationError` naming file, line and field for malformed rows, unknown or duplicate ids,
    and (unless ``allow_missing``) dataset ids without a prediction.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: predictions file not found")
    if format == "auto":
        format = "lmms-eval" if looks_like_lmms_eval_samples(path) else "captions"
    if format == "lmms-eval":
        # A run with --limit covers only part of the data: say so where the ids are missing.
        hint = "an lmms-eval run with --limit covers part of the data: pass --allow-missing, or score the same records"
        reader: RowReader = sample_entry
    else:
        hint = "pass --allow-missing to score them as empty captions"
        reader = caption_entry
    with no_gc():
        return _load(path, dataset, allow_missing, reader, hint)


def _load(
    path: Path, dataset: EcacDataset, allow_missing: bool, reader: RowReader, missing_hint: str
) -> dict[str, list[str]]:
    file = str(path)
    problems: list[Problem] = []
    known = dataset.by_id
    predictions: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    unknown: list[tuple[int, str]] = []
    for lineno, row in jsonl_rows(path, problem_sink(problems, path)):
        if problems and len(problems) >= MAX_PROBLEMS:
            break
        entry = reader(row, file, lineno, problems)
        if entry is None:
            continue
        rec_id, captions = entry
        if rec_id in first_line:
            problems.append(
                Problem(file, lineno, "id", f"duplicate id {rec_id!r} (first at line {first_line[rec_id]})")
            )
        elif rec_id not in known:
            unknown.append((lineno, rec_id))
        else:
            first_line[rec_id] = lineno
            predictions[rec_id] = captions
    if unknown:
        shown = ", ".join(f"{i!r} (line {n})" for n, i in unknown[:_SHOW_IDS])
        problems.append(Problem(file, None, "id", f"{len(unknown)} id(s) not in dataset {dataset.path}: {shown}"))
    missing = [r.id for r in dataset.records if r.id not in predictions]
    if missing and not allow_missing:
        shown = ", ".join(repr(i) for i in missing[:_SHOW_IDS])
        problems.append(
            Problem(
                file,
                None,
                "id",
                f"{len(missing)} of {len(dataset)} dataset id(s) have no prediction (first: {shown}); {missing_hint}",
            )
        )
    if problems:
        raise DataValidationError(problems[:MAX_PROBLEMS], len(problems) > MAX_PROBLEMS)
    return predictions
