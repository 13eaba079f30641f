"""Check what an lmms-eval run wrote, because its exit code says nothing: lmms-eval 0.7.3 exits 0 when a task
crashes, when a dependency is missing, or when no results file is written at all.

    python -m ecac_bench.lmms_results RUN_DIR --tasks ecac_tts,ecac_judge [--newer-than FILE]

passes (exit 0, prints the results file) only when the newest ``*_results.json`` under RUN_DIR (newer than FILE,
when given) holds every requested task (a group stands for its subtasks, as the file's ``group_subtasks`` lists
them) with at least one finite numeric metric; otherwise it names what is missing and exits 2. The baseline
scripts, ``trainers/rsrs.sh`` and the tests all check runs through here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class RunCheckError(RuntimeError):
    """The run did not produce the results it was asked for."""


def newest_results_file(run_dir: Path, newer_than: float | None = None) -> Path | None:
    """The most recently written ``*_results.json`` under ``run_dir`` (modified after ``newer_than``, an epoch)."""
    candidates = [
        p
        for p in run_dir.rglob("*_results.json")
        if p.is_file() and (newer_than is None or p.stat().st_mtime > newer_than)
    ]
    return max(candidates, key=lambda p: (p.stat().st_mtime, p.name), default=None)


def expected_tasks(requested: Sequence[str], group_subtasks: Mapping[str, Any]) -> list[str]:
    """The leaf tasks of ``requested``: a group (as lmms-eval recorded it) is replaced by its subtasks, recursively."""
    out: list[str] = []
    pending = list(reversed(requested))
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        subtasks = group_subtasks.get(name)
        if isinstance(subtasks, list) and subtasks:
            pending.extend(reversed([str(t) for t in subtasks]))
        else:
            out.append(name)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def results_problems(data: Any, requested: Sequence[str]) -> list[str]:
    """Why a parsed results file does not hold the requested tasks (empty when it does)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("results"), Mapping):
        return ["not an lmms-eval results file (no 'results' object)"]
    results = data["results"]
    groups = data.get("group_subtasks") if isinstance(data.get("group_subtasks"), Mapping) else {}
    problems = []
    for task in expected_tasks(requested, groups):
        values = results.get(task)
        if not isinstance(values, Mapping):
            problems.append(f"task {task}: missing from results (tasks present: {sorted(results)})")
            continue
        numeric = [k for k, v in values.items() if not k.endswith("_stderr,none") and k != "alias" and _is_number(v)]
        if not numeric:
            problems.append(f"task {task}: no numeric metric (got {dict(values)})")
    return problems


def check_run(run_dir: Path, tasks: Sequence[str], newer_than: float | None = None) -> Path:
    """The results file of a finished run that holds every task of ``tasks``; raises :class:`RunCheckError`."""
    path = newest_results_file(run_dir, newer_than)
    if path is None:
        raise RunCheckError(f"{run_dir}: lmms-eval wrote no results file; the run failed (see its output above)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunCheckError(f"{path}: unreadable results file: {exc}") from None
    problems = results_problems(data, tasks)
    if problems:
        raise RunCheckError(f"{path}: the run is incomplete:\n" + "\n".join(f"  {p}" for p in problems))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecac_bench.lmms_results", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the --output_path of the lmms-eval run")
    parser.add_argument("--tasks", required=True, help="the --tasks given to lmms-eval (comma-separated)")
    parser.add_argument("--newer-than", type=Path, default=None, help="ignore results files older than this file")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    try:
        since = args.newer_than.stat().st_mtime if args.newer_than is not None else None
        print(check_run(args.run_dir, tasks, since))
    except (RunCheckError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
