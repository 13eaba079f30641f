"""Render boards into the site's four files: index.html (jinja2, autoescaped), CSV, JSON and Markdown.

Text from the inputs goes through ``text.py`` (page, Markdown) and ``csv_safety`` (CSV); the JSON keeps it as it is.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from ecac_bench import registry
from ecac_bench.csv_safety import neutralise
from ecac_bench.data import SAMPLE_DATA, load_dataset
from ecac_bench.leaderboard.charts import bars_per_level, scatter_tts_judge
from ecac_bench.leaderboard.entries import Citation, Row
from ecac_bench.leaderboard.filters import SIZE_BUCKETS, filter_attrs
from ecac_bench.leaderboard.ranking import RANK_DECIMALS, RANK_METRIC, Board
from ecac_bench.leaderboard.text import bdi, md_text, shown, words

SCHEMA = "ecac-bench/leaderboard@2"
WEIGHTS_LABELS = {"open": "open", "api": "API", "not released": "not released"}
HARNESS_TITLE = "ecac-bench: the ECAC benchmark, evaluation harness and reference trainer"


def table_metrics(table: registry.Table) -> tuple[str, ...]:
    """The columns of one leaderboard table, in registry order."""
    return tuple(m.key for m in registry.leaderboard_metrics(table))


def all_metrics() -> tuple[str, ...]:
    return tuple(key for table in registry.LEADERBOARD_TABLES for key in table_metrics(table))


def ci_metrics() -> tuple[str, ...]:
    return tuple(key for key in all_metrics() if registry.leaderboard_metric(key).ci)


def labels() -> dict[str, str]:
    return {m.key: m.label for m in registry.leaderboard_metrics()}


@dataclass
class SiteMeta:
    """What the page says about the build itself (nothing time-dependent unless ``stamp`` is given)."""

    harness_version: str
    stamp: str | None = None
    skipped: list[str] = field(default_factory=list)  # "path: problem" of inputs left out by --skip-bad
    last_updated: str | None = None  # the newest date of the inputs (newest_date): deterministic


def newest_date(boards: Iterable[Board]) -> str | None:
    """ "Last updated": the newest date any input states (ISO dates sort as text), never the build clock."""
    dates = [row.date for board in boards for row in board.rows if row.date]
    return max(dates) if dates else None


# ---------------------------------------------------------------------------------------------- formatting


def fmt(value: float | None, decimals: int = RANK_DECIMALS) -> str:
    return "—" if value is None else f"{value:.{decimals}f}"


def fmt_params(params_b: float | None) -> str:
    return "—" if params_b is None else f"{params_b:g}B"


def fmt_weights(row: Row) -> str:
    weights = row.facts.weights if row.facts else None
    return "—" if weights is None else WEIGHTS_LABELS[weights]


def half_width(row: Row, key: str) -> float | None:
    """Half the width of a cell's 95% CI (shown as ``±``; the interval itself is on hover and in CSV/JSON)."""
    interval = row.ci.get(key)
    return None if interval is None else (interval[1] - interval[0]) / 2


def fmt_pm(row: Row, key: str) -> str:
    half = half_width(row, key)
    return "" if half is None else f"±{half:.{RANK_DECIMALS}f}"


def fmt_ci(row: Row, key: str) -> str:
    """The 95% CI of a cell as the page's hover text shows it ("" without one)."""
    interval = row.ci.get(key)
    if interval is None:
        return ""
    low, high = interval
    return f"95% CI {low:.{RANK_DECIMALS}f}–{high:.{RANK_DECIMALS}f}"


def cell_title(row: Row, key: str) -> str:
    """A cell's hover text: where its number comes from, and its CI (or that a reported number has none)."""
    if key not in row.metric_origin:
        return ""
    where = f"from {shown(row.metric_origin[key])}"
    if row.source == "reported":
        return f"{where}; reported: no CI (the paper gives none)"
    return f"{where}; {fmt_ci(row, key)}" if key in row.ci else f"{where}; no CI in the report"


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


# ---------------------------------------------------------------------------------------------- boards


@dataclass
class BoardView:
    """What one board shows: only the columns that at least one of its rows fills."""

    board: Board
    main: list[str]
    fine: list[str]
    siblings: list[str]
    size: bool
    weights: bool
    date: bool

    def rows_with(self, keys: Sequence[str]) -> list[tuple[Sequence[Row], Row]]:
        """(its ranking's rows, row) for each row with a value in one of ``keys``: a secondary table lists only
        those (the main table lists every row, ranked)."""
        return [(r.rows, row) for r in self.board.rankings for row in r.rows if any(k in row.metrics for k in keys)]


def board_view(board: Board) -> BoardView:
    def filled(keys: Iterable[str]) -> list[str]:
        return [key for key in keys if any(key in row.metrics for row in board.rows)]

    return BoardView(
        board,
        filled(table_metrics("main")),
        filled(table_metrics("fine")),
        filled(table_metrics("siblings")),
        any(row.params_b is not None for row in board.rows),
        any(row.facts and row.facts.weights for row in board.rows),
        any(row.date for row in board.rows),
    )


def sample_identities() -> frozenset[str]:
    """The record-level identities of the bundled sample and of each of its splits: a board on any of them gets the
    synthetic-sample note, whatever its files were called."""
    sample = load_dataset(SAMPLE_DATA)
    splits = {r.split for r in sample.records}
    return frozenset({sample.sha256, *(load_dataset(SAMPLE_DATA, split=s).sha256 for s in splits if s)})


def board_id(index: int) -> str:
    return f"board-{index + 1}"


# ---------------------------------------------------------------------------------------------- citations


def _bibtex_value(text: str) -> str:
    """A BibTeX field value: braces and TeX's special characters escaped, one line."""
    special = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
               "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip
    return "".join(special.get(ch, ch) for ch in " ".join(shown(text).split()))


def _bibtex(kind: str, key: str, fields: Sequence[tuple[str, str]]) -> str:
    safe_key = re.sub(r"[^A-Za-z0-9_:.-]", "-", key) or "ref"
    body = ",\n".join(f"  {name} = {{{_bibtex_value(value)}}}" for name, value in fields)
    return f"@{kind}{{{safe_key},\n{body}\n}}"


def citations(boards: Iterable[Board]) -> list[Citation]:
    """The papers cited by reported rows that name their authors and title (one each, in order of appearance)."""
    out: dict[str, Citation] = {}
    for board in boards:
        for row in board.rows:
            if row.citation and row.citation.authors and row.citation.title:
                out.setdefault(row.citation.key, row.citation)
    return list(out.values())


def paper_bibtex(citation: Citation) -> str:
    """The paper's BibTeX entry: only its authors and title, the facts the baselines file states (no venue or
    year is guessed)."""
    return _bibtex("misc", citation.key, [("author", " and ".join(citation.authors)), ("title", citation.title or "")])


def harness_bibtex(version: str) -> str:
    return _bibtex("misc", "ecac-bench", [("title", HARNESS_TITLE), ("note", f"Version {version}")])


# ---------------------------------------------------------------------------------------------- JSON


def _row_json(row: Row, ranking: str) -> dict[str, Any]:
    return {
        "rank": row.rank,
        "ranking": ranking or "main",
        "display_name": row.display_name,
        "model": row.model,
        "variant": row.variant,
        "source": row.source,
        "params_b": row.params_b,
        "model_facts": row.facts.to_dict() if row.facts else None,
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
        "citation": row.citation.text if row.citation else None,
        "viewer": row.viewer.href if row.viewer else None,
        "provenance": [p.to_dict() for p in row.provenance],
    }


def render_json(boards: Sequence[Board], meta: SiteMeta) -> str:
    doc = {
        "schema": SCHEMA,
        "builder": f"ecac-bench {meta.harness_version}",
        "built_at": meta.stamp,
        "last_updated": meta.last_updated,
        "ranked_by": f"{RANK_METRIC} (rounded to {RANK_DECIMALS} decimals; ties share a rank), within rankings of "
        "one protocol; rows whose 95% CIs overlap are listed in not_separable_from",
        "skipped_inputs": meta.skipped,
        "cite": {
            **{c.key: paper_bibtex(c) for c in citations(boards)},
            "ecac-bench": harness_bibtex(meta.harness_version),
        },
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


# ---------------------------------------------------------------------------------------------- CSV


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
        "weights",
        "model_url",
        *all_metrics(),
        *cis,
        "not_separable_from",
        "date",
        "origin",
        "harness",
        "judge_model",
        "signature",
        "viewer",
    )


def render_csv(boards: Sequence[Board]) -> str:
    """One line per row. Numbers are written as numbers; every text cell is neutralised against formula injection
    (a model called ``=HYPERLINK(...)`` is written ``'=HYPERLINK(...)``); the JSON has the names as they are."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_fields())
    for board in boards:
        ds = board.dataset
        for ranking in board.rankings:
            for row in ranking.rows:
                facts = row.facts
                cells: list[str | float | int | None] = [ds.name, ds.split, ds.size, ds.sha256, ranking.label or "main"]
                cells += [row.rank, row.display_name, row.source, None if row.params_b is None else f"{row.params_b:g}"]
                cells += [facts.weights if facts else None, facts.url if facts else None]
                cells += [row.metrics.get(k) for k in all_metrics()]
                cells += [row.ci[k][i] if k in row.ci else None for k in ci_metrics() for i in (0, 1)]
                cells += ["; ".join(row.not_separable_from), row.date]
                cells += ["; ".join(f"{p.origin} ({p.kind})" for p in row.provenance)]
                cells += ["; ".join(sorted({p.harness for p in row.provenance if p.harness}))]
                cells += ["; ".join(sorted({p.judge_model for p in row.provenance if p.judge_model}))]
                cells += [" ; ".join(row.signatures), row.viewer.href if row.viewer else None]
                writer.writerow([_csv_cell(c) for c in cells])
    return buf.getvalue()


def _csv_cell(value: str | float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, int)):
        return repr(value)  # numbers we format: never neutralised (a "-" is no formula there)
    return neutralise(value)


# ---------------------------------------------------------------------------------------------- Markdown


def md_number(row: Row, key: str) -> str:
    value = row.metrics.get(key)
    pm = fmt_pm(row, key)
    return fmt(value) + (f" {pm}" if pm and value is not None else "")


def render_md(boards: Sequence[Board], meta: SiteMeta) -> str:
    lines = ["# ECAC leaderboard", ""]
    lines.append(
        "Generated by `python -m ecac_bench.leaderboard build` "
        f"(ecac-bench {meta.harness_version}); ranked by TTS. "
        "*reported* = published in a paper (no CI: the paper gives none), *measured* = a results file in this "
        "repository (± half the width of its 95% bootstrap CI)."
    )
    if meta.last_updated:
        lines += ["", f"Last updated {meta.last_updated} (the newest date of the inputs)."]
    if meta.stamp:
        lines += ["", f"Built {meta.stamp}."]
    all_labels = labels()
    for board in boards:
        view = board_view(board)
        head = ["#", "Model", *(all_labels[k] for k in view.main), *(["Size"] if view.size else []), "Source", "Date"]
        align = ["---:", "---", *["---:"] * len(view.main), *(["---:"] if view.size else []), "---", "---"]
        lines += ["", f"## {md_text(board.dataset.label)}"]
        for ranking in board.rankings:
            lines.append("")
            if ranking.label:
                lines += [f"Ranked separately ({md_text(ranking.label)}):", ""]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join(align) + "|")
            for row in ranking.rows:
                cells = [str(row.rank) if row.rank is not None else "—", md_text(row.display_name)]
                cells += [md_number(row, k) for k in view.main]
                cells += [fmt_params(row.params_b)] if view.size else []
                cells += [row.source, md_text(row.date or "—")]
                lines.append("| " + " | ".join(cells) + " |")
    if meta.skipped:
        lines += ["", "Inputs left out (`--skip-bad`):", ""]
        lines += [f"- {md_text(s)}" for s in meta.skipped]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- HTML

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("ecac_bench.leaderboard", "templates"),
    autoescape=True,  # every template: a model name like "<script>" must render as text
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters.update(bdi=bdi, words=words, shown=shown)


def render_html(boards: Sequence[Board], meta: SiteMeta) -> str:
    template = TEMPLATES.get_template("index.html.j2")
    charts = [
        (scatter_tts_judge(b.rows, f"{board_id(i)}-scatter"), bars_per_level(b.rows, f"{board_id(i)}-levels"))
        for i, b in enumerate(boards)
    ]
    cited = citations(boards)
    return template.render(
        views=[board_view(b) for b in boards],
        charts=charts,
        meta=meta,
        labels=labels(),
        fmt=fmt,
        fmt_pm=fmt_pm,
        cell_title=cell_title,
        best=best,
        fmt_params=fmt_params,
        fmt_weights=fmt_weights,
        filter_attrs=filter_attrs,
        size_buckets=SIZE_BUCKETS,
        board_id=board_id,
        sample_identities=sample_identities(),
        bibtex=[(c.key, c.title, paper_bibtex(c)) for c in cited]
        + [("ecac-bench", HARNESS_TITLE, harness_bibtex(meta.harness_version))],
    )
