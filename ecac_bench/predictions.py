"""Loading model captions (predictions) for a dataset.

Two JSONL formats, detected from the first row:

* ``captions``: one row per image, ``{"id": ..., "caption": "..."}`` or ``{"id": ..., "captions": ["...", "..."]}``;
  a row may say that its generation failed (``"error": "..."`` or ``"failed": true``);
* ``lmms-eval``: the samples file that ``lmms-eval --log_samples`` writes for an ECAC task
  (``ecac_bench.lmms_samples``).

Every id must be in the dataset; every dataset id must be predicted unless ``allow_missing``. An image whose
generation failed (:mod:`ecac_bench.generations`) is not a prediction: it is recorded in ``Predictions.failed`` and
left out of every metric. A row with no caption at all (``"captions": []``, a sample with no response) is missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter, methodcaller
from pathlib import Path
from typing import Any, Literal

import msgspec

from ecac_bench.data import (
    MAX_PROBLEMS,
    DataValidationError,
    EcacDataset,
    NonEmptyStr,
    Problem,
    jsonl_rows,
    problem_sink,
    typed_jsonl_rows,
)
from ecac_bench.gc_pause import no_gc
from ecac_bench.generations import LMMS_EVAL_FAILURE_MARKER, N_FAILED_KEY, generation_failure
from ecac_bench.lmms_samples import looks_like_lmms_eval_samples, sample_entry

PredictionsFormat = Literal["auto", "captions", "lmms-eval"]
# One row read: (image id, captions, why the row itself failed or None), or None after recording its problems.
Entry = tuple[str, list[str], str | None]
RowReader = Callable[[Any, str, int, list[Problem]], "Entry | None"]

_SHOW_IDS = 5


class Predictions(dict[str, list[str]]):
    """``{id: [caption, ...]}`` of the images whose generations all succeeded (a plain dict to every caller), and
    the images whose generation failed: ``failed`` maps each to why (one of FAILURE_REASONS). Failed images are
    in neither the dict nor the missing images; every metric leaves them out.

    ``n_failed_generations`` counts failed captions (a row-level failure counts its captions, at least one) and
    ``n_generations`` every caption read (the same way), the base of a fractional ``--allow-failed``."""

    def __init__(
        self,
        captions: Mapping[str, list[str]] | Iterable[tuple[str, list[str]]] = (),
        failed: Mapping[str, str] | None = None,
        n_failed_generations: int | None = None,
        n_generations: int | None = None,
    ) -> None:
        super().__init__(captions)
        self.failed: dict[str, str] = dict(failed or {})
        self.n_failed_generations = len(self.failed) if n_failed_generations is None else n_failed_generations
        self.n_generations = (
            self.n_failed_generations + sum(map(len, self.values())) if n_generations is None else n_generations
        )

    def failure_summary(self) -> dict[str, Any]:
        """What every report says about failed generations (docs/data_format.md)."""
        return {
            "failed_images": len(self.failed),
            N_FAILED_KEY: self.n_failed_generations,
            "failed_by_reason": dict(sorted(Counter(self.failed.values()).items())),
        }


def failed_of(predictions: Mapping[str, Any]) -> Mapping[str, str]:
    """The failed images of ``predictions`` (none for a plain mapping)."""
    return predictions.failed if isinstance(predictions, Predictions) else {}


def _row_failure(row: dict[str, Any], file: str, line: int, problems: list[Problem]) -> str | None:
    """Why a ``captions`` row says its generation failed: a non-empty ``error`` (any value but null and ""), or
    ``"failed": true``. The error's text is not kept: it is in the file, and reports hold only counts by reason."""
    failed = row.get("failed")
    if failed is not None and not isinstance(failed, bool):
        problems.append(Problem(file, line, "failed", f"must be true or false, got {failed!r}"))
        return None
    error = row.get("error")
    if error is not None and error != "":
        return "error"
    return "failed: true" if failed else None


def _captions_of(
    row: dict[str, Any], file: str, line: int, problems: list[Problem], *, required: bool
) -> list[str] | None:
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
    if not required:
        return []
    problems.append(Problem(file, line, "caption", "missing ('caption' or 'captions')"))
    return None


def caption_entry(row: Any, file: str, line: int, problems: list[Problem]) -> Entry | None:
    """(image id, captions, row failure) of one ``{id, caption(s)}`` row."""
    try:  # the common, well-formed one-caption row, with few calls; anything else gets the detailed checks
        rec_id, caption = row["id"], row["caption"]
        if (
            type(rec_id) is str
            and rec_id
            and type(caption) is str
            and "captions" not in row
            and "error" not in row
            and "failed" not in row
        ):
            return rec_id, [caption], None
    except (KeyError, TypeError):
        pass
    if not isinstance(row, dict):
        problems.append(Problem(file, line, "<record>", f"must be a JSON object, got {type(row).__name__}"))
        return None
    rec_id = row.get("id")
    if not isinstance(rec_id, str) or not rec_id:
        problems.append(Problem(file, line, "id", "missing, empty or not a string"))
        return None
    n_before = len(problems)
    failure = _row_failure(row, file, line, problems)
    captions = _captions_of(row, file, line, problems, required=failure is None)
    if captions is None or len(problems) != n_before:
        return None
    return rec_id, captions, failure


class _CaptionRow(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A one-caption row as the typed path decodes it (ecac_bench.data.typed_jsonl_rows): any other row (several
    captions, a failure, another field) sends its file to the detailed path."""

    id: NonEmptyStr
    caption: NonEmptyStr  # an empty caption is a failed generation: the detailed path


_CAPTION_DECODER = msgspec.json.Decoder(_CaptionRow)
_ID, _CAPTION = attrgetter("id"), attrgetter("caption")
_MARKED_FAILED = methodcaller("startswith", LMMS_EVAL_FAILURE_MARKER)


def _typed_load(data: bytes, dataset: EcacDataset, allow_missing: bool) -> Predictions | None:
    """The predictions of a file of one-caption rows, checked column by column: what _load gives when the file has
    no problem, no failed generation and only such rows; None otherwise (then _load reads it and reports)."""
    decoded = typed_jsonl_rows(data, _CAPTION_DECODER)
    if decoded is None or not decoded[0]:
        return None
    rows = decoded[0]
    ids, captions = list(map(_ID, rows)), list(map(_CAPTION, rows))
    # A failed generation (generation_failure): an empty (see _CaptionRow) or blank caption, or lmms-eval's marker.
    if any(map(str.isspace, captions)) or any(map(_MARKED_FAILED, map(str.lstrip, captions))):
        return None
    dataset_ids = dataset.ids
    same_order = ids == dataset_ids  # every dataset id once, no other: nothing to look up
    if not same_order:
        known = set(dataset_ids)
        if not all(map(known.__contains__, ids)) or (len(ids) < len(known) and not allow_missing):
            return None
    predictions = Predictions(zip(ids, [[caption] for caption in captions]), n_generations=len(ids))
    return predictions if same_order or len(predictions) == len(ids) else None  # else a duplicate id


def load_predictions(
    path: str | Path, dataset: EcacDataset, allow_missing: bool = False, format: PredictionsFormat = "auto"
) -> Predictions:
    """Read a predictions file into ``{id: [caption, ...]}`` (a :class:`Predictions`), checked against ``dataset``.

    Raises :class:`DataValidationError` naming file, line and field for malformed rows, unknown or duplicate ids,
    a file with no row, and (unless ``allow_missing``) dataset ids without a prediction.
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
        typed = _typed_load(path.read_bytes(), dataset, allow_missing) if reader is caption_entry else None
        return typed if typed is not None else _load(path, dataset, allow_missing, reader, hint)


def _load(path: Path, dataset: EcacDataset, allow_missing: bool, reader: RowReader, missing_hint: str) -> Predictions:
    file = str(path)
    problems: list[Problem] = []
    known = set(dataset.ids)
    predictions: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    n_failed_generations = n_generations = 0
    first_line: dict[str, int] = {}
    unknown: list[tuple[int, str]] = []
    for lineno, row in jsonl_rows(path, problem_sink(problems, path)):
        if problems and len(problems) >= MAX_PROBLEMS:
            break
        entry = reader(row, file, lineno, problems)
        if entry is None:
            continue
        rec_id, captions, failure = entry
        if rec_id in first_line:
            problems.append(
                Problem(file, lineno, "id", f"duplicate id {rec_id!r} (first at line {first_line[rec_id]})")
            )
            continue
        if rec_id not in known:
            unknown.append((lineno, rec_id))
            continue
        first_line[rec_id] = lineno
        if failure is not None:
            failed[rec_id] = failure
            n_failed_generations += max(1, len(captions))
            n_generations += max(1, len(captions))
            continue
        n_generations += len(captions)
        if len(captions) == 1:  # the common case, without building a list
            reason = generation_failure(captions[0])
            if reason is None:
                predictions[rec_id] = captions
            else:
                failed[rec_id] = reason
                n_failed_generations += 1
            continue
        reasons = [reason for caption in captions if (reason := generation_failure(caption)) is not None]
        if reasons:
            # Every caption of a scored image is scored: an image with one failed sample of several is left out
            # whole, so TTS over N candidates never silently becomes TTS over N-1.
            failed[rec_id] = reasons[0]
            n_failed_generations += len(reasons)
        elif captions:
            predictions[rec_id] = captions
        # no caption at all ("captions": [], a sample with no response): missing, like an image with no row
    if not first_line and not unknown and not problems:  # every row read is one of these or a problem
        problems.append(Problem(file, None, "<file>", "holds no prediction rows (empty, or only blank lines)"))
    if unknown:
        shown = ", ".join(f"{i!r} (line {n})" for n, i in unknown[:_SHOW_IDS])
        problems.append(Problem(file, None, "id", f"{len(unknown)} id(s) not in dataset {dataset.path}: {shown}"))
    missing = [i for i in dataset.ids if i not in predictions and i not in failed]
    if missing and not allow_missing:
        shown = ", ".join(repr(i) for i in missing[:_SHOW_IDS])
        problems.append(
            Problem(
                file,
                None,
                "id",
                f"{len(missing)} of {len(dataset)} dataset id(s) have no prediction (first: {shown}; a row with no "
                f"caption counts as none); {missing_hint}",
            )
        )
    if problems:
        raise DataValidationError(problems[:MAX_PROBLEMS], len(problems) > MAX_PROBLEMS)
    return Predictions(predictions, failed, n_failed_generations, n_generations)


def load_lmms_eval_samples(path: str | Path, dataset: EcacDataset, allow_missing: bool = False) -> Predictions:
    """``{id: [caption, ...]}`` from an lmms-eval samples JSONL (``ecac_bench.lmms_samples``), checked against
    ``dataset`` like any predictions file; failed generations are recorded, not scored."""
    return load_predictions(path, dataset, allow_missing=allow_missing, format="lmms-eval")
