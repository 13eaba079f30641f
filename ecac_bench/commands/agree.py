"""`ecac-bench agree`: Kendall tau-b and Spearman rho of automatic scores against human caption rankings."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecac_bench import registry
from ecac_bench.agreement import agreement, load_human_rankings, load_scores
from ecac_bench.commands._common import add_ci_args, file_identity, print_signature, write_report
from ecac_bench.commands._output import console, error, say, table, text
from ecac_bench.imagestats import BootstrapConfig
from ecac_bench.report import build_report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("agree", help="agreement (Kendall tau-b, Spearman rho) with human rankings")
    parser.add_argument("--human", type=Path, required=True, help='JSONL {"id", "caption_id", "ranks": [...]}')
    parser.add_argument("--scores", type=Path, required=True, help='JSONL {"id", "caption_id", "scores": {...}}')
    parser.add_argument("--method", action="append", default=[], help="score column(s) to use (default: all)")
    add_ci_args(parser)
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
        error(f"{args.scores} has no scores for {missing}; it has {sorted(tables)}")
        return 2
    results = [
        agreement(human, tables[m], m, n_boot=args.n_boot, seed=args.seed, skip_ties=args.skip_ties) for m in methods
    ]
    keys = registry.keys("agree")
    metrics = {r.method: {k: v for k, v in r.metrics().items() if k in keys} for r in results}
    ci = {r.method: {"kendall_tau": r.kendall_tau_ci, "spearman_rho": r.spearman_rho_ci} for r in results}
    identity = file_identity(args.human)
    report = build_report(
        "ecac-bench/agree",
        model=args.model,
        dataset={"name": args.human.name, "path": identity["path"], "size": len(human), "sha256": identity["sha256"]},
        metrics=metrics,
        ci=ci if args.n_boot else None,
        ci_config=BootstrapConfig(args.n_boot, args.seed).to_dict() if args.n_boot else None,
        config={
            "methods": methods,
            "skip_ties": args.skip_ties,
            "score_ties": "skipped" if args.skip_ties else "counted as tau = rho = 0",
        },
        inputs={"scores": file_identity(args.scores)},
    )
    ties = "score ties skipped (--skip-ties)" if args.skip_ties else "score ties count as 0"
    title = f"agreement with human rankings (per-image mean; {ties})"
    console.print(table(title, keys, list(metrics.items())))
    for r in results:
        if r.kendall_tau_ci and r.spearman_rho_ci:
            say(
                text(r.method),
                f": 95% CI tau {r.kendall_tau_ci[0]:.3f}–{r.kendall_tau_ci[1]:.3f}, "
                f"rho {r.spearman_rho_ci[0]:.3f}–{r.spearman_rho_ci[1]:.3f}",
            )
    print_signature(report)
    write_report(args, report)
    return 0
