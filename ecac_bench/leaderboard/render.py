"""Render boards into the site's four files: index.html (jinja2, autoescaped), CSV, JSON and Markdown."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from ecac_bench.data import SAMPLE_NAME
from ecac_bench.leaderboard.charts import bars_per_level, scatter_tts_judge
from ecac_bench.leaderboard.entries import BALANCED_KEYS, LABELS, UTILITY_KEYS, Row
from ecac_bench.leaderboard.ranking import RANK_DECIMALS, Board
from ecac_bench.metrics import SUBSET_KEYS

SCHEMA = "ecac-bench/leaderboard@1"
MAIN_METRICS: tuple[str, ...] = ("tts", "tts_l", "tts_m", "tts_h", "judge_score", "toy_precision")
FINE_METRICS: tuple[str, ...] = (*SUBSET_KEYS[4:], "reward", "avg_toy_count")  # the six level x ground TTS
# Optional columns: a board shows them only when one of its rows has them (they cost judge calls to measure).
SIBLING_METRICS: tuple[str, ...] = (*UTILITY_KEYS, *BALANCED_KEYS)
ALL_METRICS: tuple[str, ...] = (*MAIN_METRICS, *FINE_METRICS, *SIBLING_METRICS)
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


NOT_RANKED_BEST = frozenset({"avg_toy_count"})  # more extracted names is not better


def best(board: Board, key: str) -> float | None:
    """The highest value of ``key`` on the board (shown in bold), at the precision shown."""
    if key in NOT_RANKED_BEST:
        return None
    values = [row.metrics[key] for row in board.rows if key in row.metrics]
    return max(values) if values else None


def sibling_columns(board: Board) -> list[str]:
    """The sibling-method metrics that at least one row of the board has."""
    return [key for key in SIBLING_METRICS if any(key in row.metrics for row in board.rows)]


def board_id(index: int) -> str:
    return f"board-{index + 1}"


def _row_json(row: Row) -> dict[str, Any]:
    return {
        "rank": row.rank,
        "display_name": row.display_name,
        "model": row.model,
        "variant": row.variant,
        "source": row.source,
        "params_b": row.params_b,
        "date": row.date,
        "metrics": {k: row.metrics.get(k) for k in ALL_METRICS},
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
        "ranked_by": f"tts (rounded to {RANK_DECIMALS} decimals; ties share a rank)",
        "skipped_inputs": meta.skipped,
        "boards": [
            {
                "dataset": {**b.dataset.to_dict(), "label": b.dataset.label},
                "rows": [_row_json(r) for r in b.rows],
            }
            for b in boards
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


CSV_FIELDS = (
    "dataset",
    "dataset_split",
    "dataset_size",
    "dataset_sha256",
    "rank",
    "model",
    "source",
    "params_b",
    *ALL_METRICS,
    "date",
    "origin",
    "harness",
    "judge_model",
)


def render_csv(boards: Sequence[Board]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for board in boards:
        ds = board.dataset
        for row in board.rows:
            origins = "; ".join(f"{p.origin} ({p.kind})" for p in row.provenance)
            harness = "; ".join(sorted({p.harness for p in row.provenance if p.harness}))
            judges = "; ".join(sorted({p.judge_model for p in row.provenance if p.judge_model}))
            writer.writerow(
                [ds.name, ds.split or "", ds.size if ds.size is not None else "", ds.sha256 or ""]
                + [row.rank if row.rank is not None else "", row.display_name, row.source]
                + [f"{row.params_b:g}" if row.params_b is not None else ""]
                + [repr(row.metrics[k]) if k in row.metrics else "" for k in ALL_METRICS]
                + [row.date or "", origins, harness, judges]
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
    head = ["#", "Model", "Size", *(LABELS[k] for k in MAIN_METRICS), "Source", "Date"]
    for board in boards:
        lines += ["", f"## {_md_cell(board.dataset.label)}", ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---:", "---", "---:", *["---:"] * len(MAIN_METRICS), "---", "---"]) + "|")
        for row in board.rows:
            cells = [
                str(row.rank) if row.rank is not None else "—",
                _md_cell(row.display_name),
                fmt_params(row.params_b),
            ]
            cells += [fmt(row.metrics.get(k)) for k in MAIN_METRICS]
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
        main_metrics=MAIN_METRICS,
        fine_metrics=FINE_METRICS,
        sibling_columns=sibling_columns,
        labels=LABELS,
        fmt=fmt,
        best=best,
        fmt_params=fmt_params,
        board_id=board_id,
        sample_name=SAMPLE_NAME,
    )
