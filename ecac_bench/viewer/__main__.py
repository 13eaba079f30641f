"""``python -m ecac_bench.viewer build FILE [FILE] [--out PAGE] ...``: the same as ``ecac-bench view``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ecac_bench.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "build":
        print("usage: python -m ecac_bench.viewer build FILE [FILE] [options] (see: ecac-bench view --help)")
        return 2
    return cli_main(["view", *args[1:]])


if __name__ == "__main__":
    sys.exit(main())
