"""`ecac-bench agree`: Kendall tau-b and Spearman rho of automatic scores against human caption rankings."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecac_bench.agreement import agreement, load_human_rankings, load_scores
from ecac_bench.commands._common import console, metrics_table
from ecac_bench.report import build_report, file_sha256, write_json_atomic

COLUMNS = (
    "kendall_tau",
    "spearman_rho",
    "pooled_kendall_tau",
    "pooled_spearman_rho",
    "n_images",
    "n_score_ties",
    "n_skipped_human_ties",
    "n_skipped",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("agree", help="agreement (Kendall tau-b, Spearman rho) with human rankings")
    parser.add_argument("--human", type=Path, required=True, help='JSONL {"id", "caption_id", "ranks": [...]}')
    parser.add_argument("--scores", type=Path, required=True, help='JSONL {"id", "caption_id", "scores": {...}}')
    parser.add_argument("--method", action="append", default=[], help="score column(s) to use (default: all)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--skip-ties",
        action="store_true",
        help="leave out images where a method scores every caption alike (default: they count as tau = rho = 0)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the JSON report here (atomically)")
    parser.add_argument("--model", default="agreement", help="name recorded in the report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    human = load_human_rankings(args.human)
    tables = load_scores(args.scores)
    methods = args.method or sorted(tables)
    missing = [m for m in methods if m not in tables]
    if missing:
        console.print(f"[red]error:[/red] {args.scores} has no scores for {missing}; it has {sorted(tables)}")
        return 2
    results = [
        agreement(human, tables[m], m, n_boot=args.n_boot, seed=args.seed, skip_ties=args.skip_ties) for m in methods
    ]
    metrics = {r.method: r.metrics() for r in results}
    report = build_report(
        "ecac-bench/agree",
        model=args.model,
        dataset={
            "name": args.human.name,
            "path": str(args.human),
            "size": len(human),
            "sha256": file_sha256(args.human),
        },
        metrics=metrics,
        config={
            "n_boot": args.n_boot,
            "seed": args.seed,
            "confidence": 0.95,
            "methods": methods,
            "skip_ties": args.skip_ties,
            "score_ties": "skipped" if args.skip_ties else "counted as tau = rho = 0",
        },
        scores={"path": str(args.scores), "sha256": file_sha256(args.scores)},
    )
    ties = "score ties skipped (--skip-ties)" if args.skip_ties else "score ties count as 0"
    console.print(
        metrics_table(f"agreement with human rankings (per-image mean; {ties})", list(metrics.items()), COLUMNS)
    )
    for r in results:
        if r.kendall_tau_ci and r.spearman_rho_ci:
            console.print(
                f"{r.method}: 95% CI tau {r.kendall_tau_ci[0]:.3f}–{r.kendall_tau_ci[1]:.3f}, "
                f"rho {r.spearman_rho_ci[0]:.3f}–{r.spearman_rho_ci[1]:.3f}"
            )
    if args.json:
        write_json_atomic(args.json, report)
        console.print(f"report written to {args.json}")
    return 0
