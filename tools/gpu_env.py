"""The GPU machines' environments: pinned requirement files that resolve for Linux x86-64 / Python 3.12.

    python -m tools.gpu_env --check   # every pinned file resolves to exactly itself (metadata only, seconds)
    python -m tools.gpu_env --write   # re-pin each from its .in file and the project's extra

``requirements/gpu-eval.txt`` (pyproject extra ``lmms`` + gpu-eval.in) and ``requirements/gpu-train.txt`` (extra
``train`` + gpu-train.in) are resolved by ``uv pip compile --python-platform x86_64-manylinux_2_28
--python-version 3.12``, which reads package metadata only: no 336 MB vLLM wheel is downloaded. Install one with
``pip install -r requirements/gpu-eval.txt && pip install --no-deps -e .``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.check_lock import read_pins

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements"
TARGET = ["--python-version", "3.12", "--python-platform", "x86_64-manylinux_2_28"]


@dataclass(frozen=True)
class GpuEnv:
    name: str
    extra: str

    @property
    def source(self) -> Path:
        return REQUIREMENTS / f"{self.name}.in"

    @property
    def pinned(self) -> Path:
        return REQUIREMENTS / f"{self.name}.txt"


ENVS = (GpuEnv("gpu-eval", "lmms"), GpuEnv("gpu-train", "train"))


def _uv() -> str:
    return str(Path(sys.executable).with_name("uv"))


def compile_env(env: GpuEnv, output: Path) -> subprocess.CompletedProcess:
    cmd = [
        _uv(),
        "pip",
        "compile",
        str(REPO / "pyproject.toml"),
        "--extra",
        env.extra,
        str(env.source),
        *TARGET,
        "--quiet",
        "--annotation-style",
        "line",
        "--custom-compile-command",
        "make check-gpu-env GPU_LOCK=1",
        "-o",
        str(output),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def check(env: GpuEnv) -> list[str]:
    """Problems of one pinned file: it must exist, and re-resolving its inputs must give the same pins."""
    if not env.pinned.exists():
        return [f"{env.pinned}: missing (make check-gpu-env GPU_LOCK=1)"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "resolved.txt"
        # Resolve the pinned file itself: it must be complete (no pin missing) and consistent (no conflict).
        cmd = [_uv(), "pip", "compile", str(env.pinned), *TARGET, "--quiet", "--no-header", "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return [f"{env.pinned}: does not resolve for Linux x86-64 / Python 3.12:\n{proc.stderr.strip()}"]
        pinned, resolved = read_pins(env.pinned.read_text()), read_pins(out.read_text())
    extra = sorted(set(resolved) - set(pinned))
    return [f"{env.pinned}: incomplete, resolving it adds {', '.join(extra)}"] if extra else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_env", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="check the pinned files resolve (CI-safe, metadata only)")
    mode.add_argument("--write", action="store_true", help="re-pin the files from their .in files")
    args = parser.parse_args(argv)
    problems: list[str] = []
    for env in ENVS:
        if args.write:
            proc = compile_env(env, env.pinned)
            if proc.returncode != 0:
                problems.append(f"{env.source}: does not resolve:\n{proc.stderr.strip()}")
            else:
                print(f"wrote {env.pinned} ({len(read_pins(env.pinned.read_text()))} pins)")
        else:
            found = check(env)
            problems += found
            if not found:
                print(f"{env.pinned}: resolves for Linux x86-64 / Python 3.12")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
