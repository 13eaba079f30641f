"""Build the site: load inputs, rank, render, and swap the new site folder in only when everything succeeded."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ecac_bench import __version__
from ecac_bench.leaderboard.loaders import VIEWER_DIR, InputError, load_inputs
from ecac_bench.leaderboard.ranking import Board, build_boards
from ecac_bench.leaderboard.render import SiteMeta, newest_date, render_csv, render_html, render_json, render_md
from ecac_bench.report import replace_dir

SITE_FILES = ("index.html", "leaderboard.csv", "leaderboard.json", "leaderboard.md")


class BuildError(RuntimeError):
    """The build stopped before changing the site; ``problems`` lists every bad input."""

    def __init__(self, problems: Sequence[InputError], message: str | None = None) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            message
            or f"{len(self.problems)} input problem(s); nothing was written "
            f"(fix them, or pass --skip-bad to build without those files):\n{lines}"
        )


@dataclass
class BuildResult:
    boards: list[Board]
    written: list[Path]
    skipped: list[InputError]


def render_site(boards: Sequence[Board], meta: SiteMeta) -> dict[str, bytes]:
    """Site path -> content of every site file: the four renderings and the viewer pages of the measured rows."""
    files = {
        "index.html": render_html(boards, meta),
        "leaderboard.csv": render_csv(boards),
        "leaderboard.json": render_json(boards, meta),
        "leaderboard.md": render_md(boards, meta),
    }
    out = {name: text.encode("utf-8") for name, text in files.items()}
    for board in boards:
        for row in board.rows:
            if row.viewer is not None:
                out[row.viewer.path] = row.viewer.source.read_bytes()
    return out


def check_out_dir(out_dir: Path) -> None:
    """The site folder is replaced as a whole: refuse one that holds anything the builder did not make (``--out
    leaderboard`` would otherwise delete the runs in leaderboard/runs)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BuildError([], f"--out {out_dir}: not a folder")
    foreign = (
        sorted(p.name for p in out_dir.iterdir() if p.name not in (*SITE_FILES, VIEWER_DIR)) if out_dir.exists() else []
    )
    if foreign:
        raise BuildError(
            [],
            f"--out {out_dir}: holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}, which the builder "
            "did not write; the site folder is replaced as a whole, so give a folder of its own (default "
            "leaderboard/site)",
        )


def _write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())


def swap_in(files: dict[str, bytes], out_dir: Path) -> list[Path]:
    """Write the whole site into a hidden folder beside ``out_dir`` and put it in place with one rename
    (``report.replace_dir``): readers see the old site or the new one, never a mix, and a failure before the rename
    changes nothing."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    try:
        _write_files(staging, files)
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; a site is for reading
        replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out_dir / name for name in files]


def build_site(
    baseline_dirs: Sequence[Path],
    results_dirs: Sequence[Path],
    out_dir: Path,
    *,
    skip_bad: bool = False,
    stamp: str | None = None,
) -> BuildResult:
    check_out_dir(out_dir)
    loaded = load_inputs(baseline_dirs, results_dirs)
    if loaded.problems and not skip_bad:
        raise BuildError(loaded.problems)
    if not loaded.entries:
        raise BuildError([*loaded.problems, InputError(", ".join(map(str, results_dirs)) or "-", "no entries found")])
    boards = build_boards(loaded.entries)
    meta = SiteMeta(
        harness_version=__version__,
        stamp=stamp,
        skipped=[str(p) for p in loaded.problems],
        last_updated=newest_date(boards),
    )
    try:
        written = swap_in(render_site(boards, meta), out_dir)
    except OSError as exc:  # a viewer page gone, a full disk, a folder that cannot be written: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        raise BuildError([], f"--out {out_dir}: the site was not written ({where}{exc.strerror or exc})") from exc
    return BuildResult(boards, written, loaded.problems)
