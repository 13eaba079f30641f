"""Render boards into the site's four files: index.html (jinja2, autoescaped), CSV, JSON and Markdown."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from ecac_bench import registry
from ecac_bench.data import SAMPLE_DATA, load_dataset
from ecac_bench.leaderboard.charts import bars_per_level, scatter_tts_judge
from ecac_bench.leaderboard.entries import Row
from ecac_bench.leaderboard.ranking import RANK_DECIMALS, RANK_METRIC, Board

SCHEMA = "ecac-bench/leaderboard@2"


def table_metrics(table: registry.Table) -> tuple[str, ...]:
    """The columns of one leaderboard table, in registry order."""
    return tuple(m.key for m in registry.leaderboard_metrics(table))


def all_metrics() -> tuple[str, ...]:
    return tuple(key for table in registry.LEADERBOARD_TABLES for key in table_metrics(table))


def ci_metrics() -> tuple[str, ...]:
    return tuple(key for key in all_metrics() if registry.leaderboard_metric(key).ci)


def labels() -> dict[str, str]:
    return {m.key: m.label for m in registry.leaderboard_metrics()}


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("ecac_bench.leaderboard", "templates"),
    autoescape=True,  # every template: a model name like "<script>" must render as text
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class SiteMeta:
    """What the page says about the build itself (nothing time-dependent unless ``stamp`` is given)."""

    harness_version: str
    stamp: str | None = None
    skipped: list[str] = field(default_factory=list)  # "path: problem" of inputs left out by --skip-bad


def fmt(value: float | None, decimals: int = RANK_DECIMALS) -> str:
    return "—" if value is None else f"{value:.{decimals}f}"


def fmt_params(params_b: float | None) -> str:
    return "—" if params_b is None else f"{params_b:g}B"


def best(rows: Sequence[Row], key: str) -> float | None:
    """The best value of ``key`` among ``rows`` (one ranking; shown in bold): the highest or the lowest as the
    registry's direction says; None for a metric without a ranking direction (counts, spreads, averages), and for a
    judged metric whose rows name different judges (their numbers are not comparable)."""
    metric = registry.leaderboard_metric(key)
    having = [row for row in rows if key in row.metrics]
    if metric.direction == "none" or not having:
        return None
    if "judge" in registry.kind(metric.kind).protocol and len({r.protocol.get("judge") for r in having}) > 1:
        return None
    values = [row.metrics[key] for row in having]
    return max(values) if metric.direction == "higher" else min(values)


def sibling_columns(board: Board) -> list[str]:
    """The sibling-method metrics that at least one row of the board has (they cost judge calls to measure)."""
    return [key for key in table_metrics("siblings") if any(key in row.metrics for row in board.rows)]


def sample_identities() -> frozenset[str]:
    """The record-level identities of the bundled sample and of each of its splits: a board on any of them gets the
    synthetic-sample note, whatever its files were called."""
    sample = load_dataset(SAMPLE_DATA)
    splits = {r.split for r in sample.records}
    return frozenset({sample.sha256, *(load_dataset(SAMPLE_DATA, split=s).sha256 for s in splits if s)})


def fmt_ci(row: Row, key: str) -> str:
    """The 95% CI of a cell as the page's hover text shows it ("" without one)."""
    interval = row.ci.get(key)
    if interval is None:
        return ""
    low, high = interval
    return f"95% CI {low:.{RANK_DECIMALS}f}–{high:.{RANK_DECIMALS}f}"


def board_id(index: int) -> str:
    return f"board-{index + 1}"


def _row_json(row: Row, ranking: str) -> dict[str, Any]:
    return {
        "rank": row.rank,
        "ranking": ranking or "main",
        "display_name": row.display_name,
        "model": row.model,
        "variant": row.variant,
        "source": row.source,
        "params_b": row.params_b,
        "date": row.date,
        "metrics": {k: row.metrics.get(k) for k in all_metrics()},
        # Reported numbers come with no interval: null, never an invented one.
        "ci": None if row.source == "reported" else {k: list(row.ci[k]) if k in row.ci else None for k in ci_metrics()},
        "not_separable_from": row.not_separable_from,
        "protocol": dict(sorted(row.protocol.items())),
        "signatures": row.signatures,
        "metric_origin": dict(sorted(row.metric_origin.items())),
        "conflicts": [
            {"metric": c.metric, "values": [{"value": v, "from": t} for v, t in c.values]} for c in row.conflicts
        ],
        "citation": row.citation,
        "provenance": [p.to_dict() for p in row.provenance],
    }


def render_json(boards: Sequence[Board], meta: SiteMeta) -> str:
    doc = {
        "schema": SCHEMA,
        "builder": f"ecac-bench {meta.harness_version}",
        "built_at": meta.stamp,
        "ranked_by": f"{RANK_METRIC} (rounded to {RANK_DECIMALS} decimals; ties share a rank), within rankings of "
        "one protocol; rows whose 95% CIs overlap are listed in not_separable_from",
        "skipped_inputs": meta.skipped,
        "boards": [
            {
                "dataset": {**b.dataset.to_dict(), "label": b.dataset.label, "names": b.names},
                "rankings": [{"label": r.label or "main", "protocol": r.protocol} for r in b.rankings],
                "rows": [_row_json(row, r.label) for r in b.rankings for row in r.rows],
            }
            for b in boards
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def csv_fields() -> tuple[str, ...]:
    cis = tuple(f"{k}_ci_{end}" for k in ci_metrics() for end in ("low", "high"))
    return (
        "dataset",
        "dataset_split",
        "dataset_size",
        "dataset_sha256",
        "ranking",
        "rank",
        "model",
        "source",
        "params_b",
        *all_metrics(),
        *cis,
        "not_separable_from",
        "date",
        "origin",
        "harness",
        "judge_model",
        "signature",
    )


def render_csv(boards: Sequence[Board]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_fields())
    for board in boards:
        ds = board.dataset
        for ranking in board.rankings:
            for row in ranking.rows:
                origins = "; ".join(f"{p.origin} ({p.kind})" for p in row.provenance)
                harness = "; ".join(sorted({p.harness for p in row.provenance if p.harness}))
                judges = "; ".join(sorted({p.judge_model for p in row.provenance if p.judge_model}))
                cis = [repr(row.ci[k][i]) if k in row.ci else "" for k in ci_metrics() for i in (0, 1)]
                writer.writerow(
                    [ds.name, ds.split or "", ds.size if ds.size is not None else "", ds.sha256 or ""]
                    + [ranking.label or "main", row.rank if row.rank is not None else "", row.display_name, row.source]
                    + [f"{row.params_b:g}" if row.params_b is not None else ""]
                    + [repr(row.metrics[k]) if k in row.metrics else "" for k in all_metrics()]
                    + cis
                    + ["; ".join(row.not_separable_from), row.date or "", origins, harness, judges]
                    + [" ; ".join(row.signatures)]
                )
    return buf.getvalue()


def _md_cell(text: str) -> str:
    """Markdown table cell: no pipes, no raw HTML, no line breaks."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def render_md(boards: Sequence[Board], meta: SiteMeta) -> str:
    lines = ["# ECAC leaderboard", ""]
    lines.append(
        "Generated by `python -m ecac_bench.leaderboard build` "
        f"(ecac-bench {meta.harness_version}); ranked by TTS. "
        "*reported* = published in a paper, *measured* = a results file in this repository."
    )
    if meta.stamp:
        lines.append(f"Built {meta.stamp}.")
    main = table_metrics("main")
    head = ["#", "Model", "Size", *(labels()[k] for k in main), "Source", "Date"]
    for board in boards:
        lines += ["", f"## {_md_cell(board.dataset.label)}"]
        for ranking in board.rankings:
            lines.append("")
            if ranking.label:
                lines += [f"Ranked separately ({_md_cell(ranking.label)}):", ""]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join(["---:", "---", "---:", *["---:"] * len(main), "---", "---"]) + "|")
            for row in ranking.rows:
                cells = [
                    str(row.rank) if row.rank is not None else "—",
                    _md_cell(row.display_name),
                    fmt_params(row.params_b),
                ]
                cells += [fmt(row.metrics.get(k)) for k in main]
                cells += [row.source, row.date or "—"]
                lines.append("| " + " | ".join(cells) + " |")
    if meta.skipped:
        lines += ["", "Inputs left out (`--skip-bad`):", ""]
        lines += [f"- {_md_cell(s)}" for s in meta.skipped]
    return "\n".join(lines) + "\n"


def render_html(boards: Sequence[Board], meta: SiteMeta) -> str:
    template = TEMPLATES.get_template("index.html.j2")
    charts = [
        (scatter_tts_judge(b.rows, f"{board_id(i)}-scatter"), bars_per_level(b.rows, f"{board_id(i)}-levels"))
        for i, b in enumerate(boards)
    ]
    return template.render(
        boards=boards,
        charts=charts,
        meta=meta,
        main_metrics=table_metrics("main"),
        fine_metrics=table_metrics("fine"),
        sibling_columns=sibling_columns,
        labels=labels(),
        fmt=fmt,
        fmt_ci=fmt_ci,
        best=best,
        fmt_params=fmt_params,
        board_id=board_id,
        sample_identities=sample_identities(),
    )
