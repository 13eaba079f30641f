"""Agreement of an automatic caption score with human rankings (Table IV of the paper).

For each image, K candidate captions are ranked by annotators (1 = best); a caption's human rank is the mean of
its annotators' ranks. An automatic score (higher = better) agrees when it orders the captions as the humans do.
Per image we compute Kendall's tau-b and Spearman's rho (scipy) between the score and the *negated* mean rank,
so +1 is perfect agreement, then average over images. An image where the method gives every caption the same score
counts as no agreement (tau = rho = 0): telling the captions apart is exactly what the method is asked to do
(``skip_ties=True`` leaves such images out instead). An image whose human ranks are all tied carries no human
signal and is skipped. Also reported: the pooled coefficients (all (rank, score) pairs of the images the mean uses,
in one computation) and a percentile bootstrap CI of the per-image means (images resampled, as every metric's CI:
``ecac_bench.imagestats``; none when fewer than two images or no spread). docs/judges.md has the exact rules.

File formats (JSONL, one row per caption; see docs/judges.md):

* human rankings: ``{"id": IMAGE, "caption_id": CID, "ranks": [1, 2, 1, 1]}`` (one rank per annotator)
* scores: ``{"id": IMAGE, "caption_id": CID, "scores": {"reward": 3.5, "judge_score": 80}}``
* candidates (input of ``ecac-bench rank``): ``{"id": IMAGE, "caption_id": CID, "caption": "..."}``
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from ecac_bench.data import DataValidationError, Problem, jsonl_rows, problem_sink
from ecac_bench.imagestats import BootstrapConfig, Estimator, ImageStats, Sums, bootstrap_ci, ratio

# image id -> caption id -> value
Table = dict[str, dict[str, float]]


def _read_jsonl(path: Path, problems: list[Problem]) -> list[tuple[int, dict[str, Any]]]:
    """Rows with a usable ``id`` and ``caption_id``; every other line adds a problem, and so does a file with none."""
    rows = []
    path = Path(path)
    n_problems, n_lines = len(problems), 0
    for line_no, row in jsonl_rows(path, problem_sink(problems, path)):
        n_lines += 1
        if not isinstance(row, dict):
            problems.append(Problem(str(path), line_no, "<record>", "each line must be a JSON object"))
            continue
        bad = [k for k in ("id", "caption_id") if type(row.get(k)) not in (str, int)]
        for key in bad:
            problems.append(Problem(str(path), line_no, key, "missing, or not a string/integer"))
        if not bad:
            rows.append((line_no, row))
    if n_lines == 0 and len(problems) == n_problems:
        problems.append(Problem(str(path), None, "<file>", "holds no rows (empty, or only blank lines)"))
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _put(table: Table, path: Path, line: int, row: dict[str, Any], value: float, problems: list[Problem]) -> None:
    image, caption = str(row["id"]), str(row["caption_id"])
    if caption in table.setdefault(image, {}):
        problems.append(Problem(str(path), line, "caption_id", f"duplicate caption {caption!r} of image {image!r}"))
    table[image][caption] = value


def load_human_rankings(path: str | Path) -> Table:
    """Mean rank per caption; rows ``{"id", "caption_id", "ranks": [r1, r2, ...]}``."""
    path = Path(path)
    table: Table = {}
    problems: list[Problem] = []
    for line, row in _read_jsonl(path, problems):
        ranks = row.get("ranks")
        if not isinstance(ranks, list) or not ranks or not all(_is_number(r) for r in ranks):
            problems.append(Problem(str(path), line, "ranks", "must be a non-empty list of numbers"))
            continue
        _put(table, path, line, row, statistics.fmean(ranks), problems)
    if problems:
        raise DataValidationError(problems)
    return table


def load_scores(path: str | Path) -> dict[str, Table]:
    """Per method, a score per caption; rows ``{"id", "caption_id", "scores": {method: number | null}}``.
    A null score (e.g. a failed judge call) leaves the caption out of that method's table."""
    path = Path(path)
    tables: dict[str, Table] = {}
    problems: list[Problem] = []
    for line, row in _read_jsonl(path, problems):
        scores = row.get("scores")
        if not isinstance(scores, dict) or not scores:
            problems.append(Problem(str(path), line, "scores", "must be an object {method: number}"))
            continue
        for method, value in scores.items():
            if value is None:
                continue
            if not _is_number(value):
                problems.append(Problem(str(path), line, f"scores.{method}", f"must be a number, got {value!r}"))
                continue
            _put(tables.setdefault(method, {}), path, line, row, float(value), problems)
    if problems:
        raise DataValidationError(problems)
    return tables


@dataclass(frozen=True)
class Candidate:
    id: str
    caption_id: str
    caption: str


def load_candidates(path: str | Path, known_ids: Collection[str]) -> list[Candidate]:
    """Candidate captions to score; every id must be one of ``known_ids`` (the dataset's)."""
    path = Path(path)
    out: list[Candidate] = []
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for line, row in _read_jsonl(path, problems):
        image, caption_id, caption = str(row["id"]), str(row["caption_id"]), row.get("caption")
        if image not in known_ids:
            problems.append(Problem(str(path), line, "id", f"{image!r} is not in the dataset"))
        elif not isinstance(caption, str):
            problems.append(Problem(str(path), line, "caption", "missing or not a string"))
        elif (image, caption_id) in seen:
            problems.append(Problem(str(path), line, "caption_id", f"duplicate caption {caption_id!r} of {image!r}"))
        else:
            seen.add((image, caption_id))
            out.append(Candidate(image, caption_id, caption))
    if problems:
        raise DataValidationError(problems)
    return out


@dataclass(frozen=True)
class ImageAgreement:
    id: str
    n_captions: int
    kendall_tau: float
    spearman_rho: float
    score_tied: bool = False  # the method gave every caption the same score: counted as tau = rho = 0


@dataclass(frozen=True)
class AgreementResult:
    """Means over images (``kendall_tau``, ``spearman_rho``), pooled coefficients and bootstrap CIs.

    ``n_images`` = images in the means; ``n_score_ties`` = images where the method scored every caption alike (in
    the means as 0, or skipped with ``skip_ties``); ``n_skipped_human_ties`` = images whose human ranks are all
    tied (no human signal: always skipped); ``n_skipped`` = every image left out (also those with fewer than 2
    captions or a caption without a score)."""

    method: str
    kendall_tau: float | None
    spearman_rho: float | None
    pooled_kendall_tau: float | None
    pooled_spearman_rho: float | None
    kendall_tau_ci: tuple[float, float] | None
    spearman_rho_ci: tuple[float, float] | None
    n_images: int
    n_skipped: int
    n_score_ties: int
    n_skipped_human_ties: int
    skip_ties: bool
    images: tuple[ImageAgreement, ...]

    def metrics(self) -> dict[str, Any]:
        out = asdict(self)
        del out["images"], out["method"], out["skip_ties"]  # skip_ties is configuration: the report's config says it
        return out


def _coefficients(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    tau = stats.kendalltau(x, y, variant="b").statistic
    rho = stats.spearmanr(x, y).statistic
    return float(tau), float(rho)


def _aggregate(sums: Sums) -> dict[str, Any]:
    return {"kendall_tau": ratio(sums["tau"], sums["images"]), "spearman_rho": ratio(sums["rho"], sums["images"])}


# The means over images; the pooled coefficients and the counts are not sums of per-image values.
AGREEMENT = Estimator("agree", ("images", "tau", "rho"), _aggregate)


def _intervals(images: Sequence[ImageAgreement], config: BootstrapConfig) -> dict[str, tuple[float, float] | None]:
    """CIs of the two means; none with fewer than two images, or for a coefficient without spread."""
    taus, rhos = [im.kendall_tau for im in images], [im.spearman_rho for im in images]
    if len(images) < 2 or config.n_boot < 1:
        return {"kendall_tau": None, "spearman_rho": None}
    columns = {"images": [1.0] * len(images), "tau": taus, "rho": rhos}
    ci = bootstrap_ci(ImageStats.from_columns("agree", [im.id for im in images], columns), AGREEMENT, config)
    return {
        "kendall_tau": ci["kendall_tau"] if len(set(taus)) > 1 else None,
        "spearman_rho": ci["spearman_rho"] if len(set(rhos)) > 1 else None,
    }


def agreement(
    human: Mapping[str, Mapping[str, float]],
    scores: Mapping[str, Mapping[str, float]],
    method: str = "score",
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    skip_ties: bool = False,
) -> AgreementResult:
    """Pure computation over mean human ranks and scores (both image -> caption -> value).

    ``skip_ties``: leave out images where the method scores every caption alike, instead of counting them as
    tau = rho = 0 (the default)."""
    images: list[ImageAgreement] = []
    pooled_x: list[float] = []
    pooled_y: list[float] = []
    skipped = score_ties = human_ties = 0
    for image_id, ranks in human.items():
        image_scores = scores.get(image_id, {})
        captions = sorted(ranks)
        if len(captions) < 2 or any(c not in image_scores for c in captions):
            skipped += 1
            continue
        x = [-ranks[c] for c in captions]  # negated: rank 1 is best, the highest "human score"
        y = [image_scores[c] for c in captions]
        if len(set(x)) == 1:  # no human preference to agree with
            skipped += 1
            human_ties += 1
            continue
        tied = len(set(y)) == 1
        if tied:
            score_ties += 1
            if skip_ties:
                skipped += 1
                continue
            tau, rho = 0.0, 0.0  # a method that cannot tell the captions apart does not agree with the humans
        else:
            tau, rho = _coefficients(x, y)
        images.append(ImageAgreement(image_id, len(captions), tau, rho, tied))
        pooled_x += x
        pooled_y += y
    taus = [im.kendall_tau for im in images]
    rhos = [im.spearman_rho for im in images]
    # Pooled over the pairs of exactly the images in the means; scores all alike everywhere: no agreement, as per image.
    if not images:
        pooled: tuple[float | None, float | None] = (None, None)
    else:
        pooled = _coefficients(pooled_x, pooled_y) if len(set(pooled_y)) > 1 else (0.0, 0.0)
    ci = _intervals(images, BootstrapConfig(n_boot, seed, confidence))
    return AgreementResult(
        method=method,
        kendall_tau=statistics.fmean(taus) if taus else None,
        spearman_rho=statistics.fmean(rhos) if rhos else None,
        pooled_kendall_tau=pooled[0],
        pooled_spearman_rho=pooled[1],
        kendall_tau_ci=ci["kendall_tau"],
        spearman_rho_ci=ci["spearman_rho"],
        n_images=len(images),
        n_skipped=skipped,
        n_score_ties=score_ties,
        n_skipped_human_ties=human_ties,
        skip_ties=skip_ties,
        images=tuple(images),
    )
