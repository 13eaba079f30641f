"""Read the captions of an lmms-eval samples file (``--log_samples``) of an ECAC task.

lmms-eval writes one JSON object per document to ``<output>/<model>/<time>_samples_<task>.jsonl``, e.g.::

    {"doc_id": 0, "target": "...", "resps": "...", "filtered_resps": "...",
     "tts": {"id": "ecac-000001", "named": [...], "total": [...], "reward": 0.0}, ...}

The caption is ``filtered_resps`` (what the task's ``process_results`` scored; a string, or a list of strings
for several responses). lmms-eval does not log the document itself, so the record id is taken from the metric
payloads: every ECAC task's ``process_results`` puts the image id into them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ecac_bench.data import Problem


def is_lmms_eval_sample(row: Any) -> bool:
    """Whether a parsed JSONL row looks like an lmms-eval sample rather than an ``{id, caption}`` row."""
    return isinstance(row, dict) and "doc_id" in row and ("filtered_resps" in row or "resps" in row)


def looks_like_lmms_eval_samples(path: str | Path) -> bool:
    """Whether the first non-empty line of a JSONL file is an lmms-eval sample (for format autodetection)."""
    with Path(path).open("rb") as fh:
        for raw in fh:
            if raw.strip():
                try:
                    return is_lmms_eval_sample(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    return False
    return False


def _id_of(row: dict[str, Any], file: str, line: int, problems: list[Problem]) -> str | None:
    ids = {value["id"] for value in row.values() if isinstance(value, dict) and isinstance(value.get("id"), str)}
    if len(ids) == 1:
        return ids.pop()
    message = (
        f"disagreeing ids {sorted(ids)} in the metric payloads"
        if ids
        else "no metric payload carries an image id (is this the samples file of an ECAC task?)"
    )
    problems.append(Problem(file, line, "id", message))
    return None


def _captions_of(row: dict[str, Any], file: str, line: int, problems: list[Problem]) -> list[str] | None:
    """The sample's responses; ``[]`` when it has none (null or an empty list: the image is then missing)."""
    field = "filtered_resps" if "filtered_resps" in row else "resps"
    value = row[field]
    # lmms-eval 0.7 logs one response as a plain string, several as a (possibly nested) list.
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    problems.append(Problem(file, line, field, f"must be a string or a list of strings, got {type(value).__name__}"))
    return None


def sample_entry(row: Any, file: str, line: int, problems: list[Problem]) -> tuple[str, list[str], None] | None:
    """(image id, captions, None) of one samples-file row, or None with the problems recorded (file, line, field).

    Failed generations (lmms-eval's failure marker, an empty response) are kept as captions here: the loader
    classifies them (:func:`ecac_bench.generations.generation_failure`), the same way for both formats."""
    if not is_lmms_eval_sample(row):
        problems.append(Problem(file, line, "<record>", "not an lmms-eval sample (needs doc_id and resps)"))
        return None
    rec_id = _id_of(row, file, line, problems)
    captions = _captions_of(row, file, line, problems)
    if rec_id is None or captions is None:
        return None
    return rec_id, captions, None
