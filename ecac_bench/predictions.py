"""Loading model captions (predictions) for a dataset.

JSONL, one row per image: ``{"id": ..., "caption": "..."}`` or ``{"id": ..., "captions": ["...", "..."]}``.
Every id must be in the dataset; every dataset id must be predicted unless ``allow_missing``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ecac_bench.data import MAX_PROBLEMS, DataValidationError, EcacDataset, Problem, no_gc

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


def _read_rows(path: Path, problems: list[Problem]) -> list[tuple[int, Any]]:
    rows = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rows.append((lineno, orjson.loads(raw)))
            except orjson.JSONDecodeError as exc:
                problems.append(Problem(str(path), lineno, "<json>", f"invalid JSON: {exc}"))
    return rows


def load_predictions(path: str | Path, dataset: EcacDataset, allow_missing: bool = False) -> dict[str, list[str]]:
    """Read a predictions file into ``{id: [caption, ...]}``, checked against ``dataset``.

    Raises :class:`DataValidationError` naming file, line and field for malformed rows, unknown or duplicate ids,
    and (unless ``allow_missing``) dataset ids without a prediction.
    """
    with no_gc():
        return _load_predictions(Path(path), dataset, allow_missing)


def _load_predictions(path: Path, dataset: EcacDataset, allow_missing: bool) -> dict[str, list[str]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: predictions file not found")
    file = str(path)
    problems: list[Problem] = []
    known = dataset.by_id
    predictions: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    unknown: list[tuple[int, str]] = []
    for lineno, row in _read_rows(path, problems):
        if len(problems) >= MAX_PROBLEMS:
            break
        if not isinstance(row, dict):
            problems.append(Problem(file, lineno, "<record>", f"must be a JSON object, got {type(row).__name__}"))
            continue
        rec_id = row.get("id")
        if not isinstance(rec_id, str) or not rec_id:
            problems.append(Problem(file, lineno, "id", "missing, empty or not a string"))
            continue
        captions = _captions_of(row, file, lineno, problems)
        if captions is None:
            continue
        if rec_id in first_line:
            problems.append(
                Problem(file, lineno, "id", f"duplicate id {rec_id!r} (first at line {first_line[rec_id]})")
            )
            continue
        if rec_id not in known:
            unknown.append((lineno, rec_id))
            continue
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
                f"{len(missing)} of {len(dataset)} dataset id(s) have no prediction (first: {shown}); "
                "pass --allow-missing to score them as empty captions",
            )
        )
    if problems:
        raise DataValidationError(problems[:MAX_PROBLEMS], len(problems) > MAX_PROBLEMS)
    return predictions
