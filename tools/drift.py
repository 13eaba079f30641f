"""Catch the next breaking release before users do: ``make drift``.

Resolves the newest versions that pyproject.toml's ranges allow (torch and torchvision stay on the CPU pins), builds a
throwaway virtualenv with them in ``.drift/``, runs the fast tests (``-m "not slow"``) there, and prints which
packages moved away from the lock and which tests broke, naming for each failure the moved packages that appear in
its traceback. Not part of CI (CI installs the lock); run it before bumping the lock (README, "The environment").

    python -m tools.drift [--workdir .drift] [--pytest-args "-m 'not slow'"]

Exit 0: nothing moved, or everything still passes; 1: something broke; 2: the check itself could not run.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.check_lock import read_pins

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements" / "lock.txt"
TORCH_PINS = REPO / "requirements" / "torch-cpu.txt"
# Distributions whose import name differs from the project name, for matching tracebacks to packages.
IMPORT_NAMES = {"pyyaml": "yaml", "pillow": "PIL", "scikit-learn": "sklearn", "opencv-python": "cv2"}


@dataclass(frozen=True)
class Move:
    name: str
    locked: str | None  # None: new in the newest resolution
    newest: str | None  # None: no longer needed

    def __str__(self) -> str:
        return f"{self.name} {self.locked or '(not in lock)'} -> {self.newest or '(dropped)'}"


@dataclass(frozen=True)
class Failure:
    test: str
    message: str
    details: str  # traceback text


def moves(locked: Mapping[str, str], newest: Mapping[str, str]) -> list[Move]:
    """Every package whose version differs between the two resolutions, sorted by name."""
    names = sorted(set(locked) | set(newest))
    return [Move(n, locked.get(n), newest.get(n)) for n in names if locked.get(n) != newest.get(n)]


def suspects(failure: Failure, moved: Sequence[Move]) -> list[str]:
    """The moved packages that the failure's message or traceback mentions (by project or import name)."""
    text = f"{failure.message}\n{failure.details}"
    out = []
    for move in moved:
        import_name = IMPORT_NAMES.get(move.name, move.name.replace("-", "_"))
        pattern = rf"(?<![\w.]){re.escape(import_name)}(?=[\s./:'\"]|$)|site-packages/{re.escape(import_name)}\b"
        if re.search(pattern, text):
            out.append(move.name)
    return out


def report(moved: Sequence[Move], failures: Sequence[Failure], n_tests: int | None = None) -> str:
    """The text `make drift` prints."""
    if not moved:
        return "drift: nothing moved; the lock is the newest resolution of pyproject.toml's ranges"
    lines = [f"drift: {len(moved)} package(s) moved from requirements/lock.txt:"]
    lines += [f"  {m}" for m in moved]
    if not failures:
        ran = f"{n_tests} " if n_tests is not None else ""
        lines.append(f"drift: the {ran}fast tests pass with the newest versions: the lock can be bumped (make lock)")
        return "\n".join(lines)
    lines.append(f"drift: {len(failures)} test(s) broke with the newest versions:")
    blamed: dict[str, int] = {}
    for failure in failures:
        names = suspects(failure, moved)
        for name in names:
            blamed[name] = blamed.get(name, 0) + 1
        lines.append(f"  {failure.test}: {failure.message.splitlines()[0] if failure.message else 'failed'}")
        lines.append(f"    suspects: {', '.join(names) if names else 'none named in the traceback'}")
    if blamed:
        ranked = ", ".join(f"{m} ({blamed[m.name]} failure(s))" for m in moved if m.name in blamed)
        lines.append(f"drift: likely culprits: {ranked}; add an upper bound in pyproject.toml and say why")
    return "\n".join(lines)


def junit_failures(path: Path) -> tuple[list[Failure], int]:
    """Failures and errors of a pytest JUnit XML file, and how many tests ran."""
    root = ET.parse(path).getroot()
    failures, total = [], 0
    for case in root.iter("testcase"):
        total += 1
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                test = f"{case.get('classname', '')}::{case.get('name', '')}"
                failures.append(Failure(test, node.get("message", ""), node.text or ""))
    return failures, total


def _run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    print("+ " + shlex.join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=False, **kwargs)


def _torch_source() -> list[str]:
    if any(Path("/opt/wheels").glob("torch-2.13.0+cpu-*.whl")):
        return ["--find-links", "/opt/wheels"]
    return ["--extra-index-url", "https://download.pytorch.org/whl/cpu", "--index-strategy", "unsafe-best-match"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".drift", help="throwaway folder (default .drift/)")
    parser.add_argument("--pytest-args", default="-m 'not slow'", help="which tests to run (default the fast ones)")
    args = parser.parse_args(argv)
    uv = str(Path(sys.executable).with_name("uv"))
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    newest_file, venv, junit = work / "newest.txt", work / "venv", work / "junit.xml"
    compile_cmd = [
        uv,
        "pip",
        "compile",
        str(REPO / "pyproject.toml"),
        "--extra",
        "all",
        "--extra",
        "dev",
        "--upgrade",
        "--quiet",
        "--python-version",
        "3.11",
        "--python-platform",
        "x86_64-manylinux_2_28",
        *_torch_source(),
        "-c",
        str(TORCH_PINS),
        "-o",
        str(newest_file),
    ]
    if _run(compile_cmd).returncode != 0:
        print("drift: could not resolve the newest versions (see above)", file=sys.stderr)
        return 2
    moved = moves(read_pins(LOCK.read_text(encoding="utf-8")), read_pins(newest_file.read_text(encoding="utf-8")))
    if not moved:
        print(report(moved, []))
        return 0
    # ECAC_DRIFT: the one test that checks the environment IS the lock knows this one is not, on purpose.
    # --python names the target: make exports UV_PYTHON (the project's .venv), which would win over VIRTUAL_ENV.
    env = {**{k: v for k, v in os.environ.items() if k != "UV_PYTHON"}, "VIRTUAL_ENV": str(venv), "ECAC_DRIFT": "1"}
    python = str(venv / "bin" / "python")
    steps = [
        [uv, "venv", "-q", "--clear", "--python", sys.executable, str(venv)],
        [uv, "pip", "sync", "-q", "--python", python, *_torch_source(), str(newest_file)],
        [uv, "pip", "install", "-q", "--python", python, "--no-deps", "-e", str(REPO)],
        [python, str(REPO / "tools" / "fix_torchvision.py")],
    ]
    for step in steps:
        if _run(step, env=env).returncode != 0:
            print("drift: could not build the throwaway environment (see above)", file=sys.stderr)
            return 2
    junit.unlink(missing_ok=True)
    _run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *shlex.split(args.pytest_args)],
        cwd=REPO,
        env=env,
    )
    if not junit.exists():
        print("drift: pytest wrote no report (it could not start: see above)", file=sys.stderr)
        return 1
    failures, total = junit_failures(junit)
    print(report(moved, failures, total))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
