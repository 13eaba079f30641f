"""Check a lock file for what must never be in the CPU test environment, and for what must be.

    python tools/check_lock.py requirements/lock.txt

Exit 2 with one line per problem. Also imported by tests/test_environment.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# The CPU build of torch and the torchvision made for it; anything CUDA means the resolver took PyPI's torch.
REQUIRED_PINS = {"torch": "2.13.0+cpu", "torchvision": "0.28.0"}
FORBIDDEN = re.compile(r"^(nvidia-.*|triton|cuda-.*)$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> dict[str, str]:
    """``{name: version}`` of every ``name==version`` line; any other requirement line is an error."""
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"line {lineno}: not an exact pin: {raw.strip()!r}")
        pins[canonical(match.group(1))] = match.group(3)
    return pins


def lock_problems(pins: dict[str, str]) -> list[str]:
    problems = [
        f"{name}=={version}: a CUDA package in the CPU lock" for name, version in pins.items() if FORBIDDEN.match(name)
    ]
    for name, version in REQUIRED_PINS.items():
        if pins.get(name) != version:
            problems.append(f"{name}: expected =={version}, lock has {pins.get(name, 'nothing')}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        problems = lock_problems(read_pins(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        problems = [str(exc)]
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
