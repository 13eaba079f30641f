"""The wheels bench/gpu_check.py needs on the GPU machine beyond what it has, as listed in bench/gpu_wheels.txt.

    python bench/gpu_wheels.py download [--dest .whl] [--python-version 3.12]   # here (PyPI reachable)
    python bench/gpu_wheels.py select .whl                                        # there: the wheels to install

``download`` fetches one wheel per line (``--no-deps``, CPython manylinux x86_64 builds for the machine's Python),
replacing the destination's older wheels so each package has exactly one version, and prints each wheel's size and
the total, which must stay under the 64 MiB a GPU call may carry. ``select`` prints the wheels to install on the
machine: all of them, except those with a range that the machine's own installed version already satisfies.
Standard library and ``packaging`` only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

WANTED = Path(__file__).with_name("gpu_wheels.txt")
LIMIT_BYTES = 64 * 1024 * 1024
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclass(frozen=True)
class Wanted:
    name: str
    version: str
    keep_installed: SpecifierSet | None  # None: always install the carried wheel

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


def read_wanted(path: Path = WANTED) -> list[Wanted]:
    wanted = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *rest = line.split()
        name, sep, pinned = requirement.partition("==")
        if not sep or len(rest) > 1:
            raise ValueError(f"{path}:{number}: expected NAME==VERSION [RANGE], got {raw!r}")
        wanted.append(Wanted(canonicalize_name(name), pinned, SpecifierSet(rest[0]) if rest else None))
    names = [w.name for w in wanted]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a package is listed twice")
    return wanted


def wheels_by_name(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for wheel in sorted(folder.glob("*.whl")):
        name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
        if name in found:
            raise ValueError(f"{folder}: two wheels of {name}: {found[name].name}, {wheel.name} (keep one version)")
        found[name] = wheel
    return found


def download(dest: Path, python_version: str) -> int:
    wanted = read_wanted()
    with tempfile.TemporaryDirectory() as tmp:
        platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "--python-version", python_version, "--implementation", "cp", *platforms,
                   "-d", tmp, *(w.requirement for w in wanted)]  # fmt: skip
        subprocess.run(command, check=True)
        fetched = wheels_by_name(Path(tmp))
        missing = sorted({w.name for w in wanted} - set(fetched))
        if missing:
            print(f"gpu_wheels: no wheel downloaded for {', '.join(missing)}", file=sys.stderr)
            return 2
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("*.whl"):
            if canonicalize_name(parse_wheel_filename(old.name)[0]) in fetched:
                old.unlink()
        for wheel in fetched.values():
            wheel.replace(dest / wheel.name)
    total = 0
    for w in wanted:
        wheel = wheels_by_name(dest)[w.name]
        size = wheel.stat().st_size
        total += size
        note = f"  (only if the machine's is not {w.keep_installed})" if w.keep_installed else ""
        print(f"{size / 2**20:7.2f} MiB  {wheel.name}{note}")
    print(f"{total / 2**20:7.2f} MiB  total ({len(wanted)} wheels, limit {LIMIT_BYTES / 2**20:.0f} MiB)")
    return 0 if total < LIMIT_BYTES else 2


def select(folder: Path) -> int:
    wheels = wheels_by_name(folder)
    for w in read_wanted():
        if w.name not in wheels:
            print(f"gpu_wheels: {folder} has no wheel of {w.name} (run bench/gpu_wheels.sh first)", file=sys.stderr)
            return 2
        if w.keep_installed is not None:
            try:
                if version(w.name) in w.keep_installed:
                    continue  # the machine's own version will do
            except PackageNotFoundError:
                pass
        print(wheels[w.name])
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("download", help="fetch the wheels into a folder")
    get.add_argument("--dest", type=Path, default=Path(".whl"))
    get.add_argument("--python-version", default="3.12", help="the GPU machine's Python")
    pick = commands.add_parser("select", help="print the wheels to install on this machine")
    pick.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        code = download(args.dest, args.python_version) if args.command == "download" else select(args.folder)
    except (ValueError, subprocess.CalledProcessError) as error:
        print(f"gpu_wheels: {error}", file=sys.stderr)
        code = 2
    raise SystemExit(code)


if __name__ == "__main__":
    main()
