"""Build the site: load inputs, rank, render, and swap the new files in only when everything succeeded."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ecac_bench import __version__
from ecac_bench.leaderboard.loaders import InputError, load_inputs
from ecac_bench.leaderboard.ranking import Board, build_boards
from ecac_bench.leaderboard.render import SiteMeta, render_csv, render_html, render_json, render_md

SITE_FILES = ("index.html", "leaderboard.csv", "leaderboard.json", "leaderboard.md")


class BuildError(RuntimeError):
    """The build stopped before writing anything; ``problems`` lists every bad input."""

    def __init__(self, problems: Sequence[InputError]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} input problem(s); nothing was written "
            f"(fix them, or pass --skip-bad to build without those files):\n{lines}"
        )


@dataclass
class BuildResult:
    boards: list[Board]
    written: list[Path]
    skipped: list[InputError]


def render_site(boards: Sequence[Board], meta: SiteMeta) -> dict[str, str]:
    """File name -> content of every site file."""
    return {
        "index.html": render_html(boards, meta),
        "leaderboard.csv": render_csv(boards),
        "leaderboard.json": render_json(boards, meta),
        "leaderboard.md": render_md(boards, meta),
    }


def _swap_in(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write every file into a temp folder inside ``out_dir``, then rename each into place.

    ``out_dir`` also holds ``runs/`` (the default measured inputs), so the folder itself cannot be swapped; the
    renames are the only step after all rendering and writing succeeded, so a failed build changes nothing.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
    try:
        for name, text in files.items():
            with (staging / name).open("w", encoding="utf-8", newline="") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        written = []
        for name in files:
            os.replace(staging / name, out_dir / name)
            written.append(out_dir / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_site(
    baseline_dirs: Sequence[Path],
    results_dirs: Sequence[Path],
    out_dir: Path,
    *,
    skip_bad: bool = False,
    stamp: str | None = None,
) -> BuildResult:
    loaded = load_inputs(baseline_dirs, results_dirs)
    if loaded.problems and not skip_bad:
        raise BuildError(loaded.problems)
    if not loaded.entries:
        raise BuildError([*loaded.problems, InputError(", ".join(map(str, results_dirs)) or "-", "no entries found")])
    boards = build_boards(loaded.entries)
    meta = SiteMeta(harness_version=__version__, stamp=stamp, skipped=[str(p) for p in loaded.problems])
    written = _swap_in(render_site(boards, meta), out_dir)
    return BuildResult(boards, written, loaded.problems)
