"""Reading and writing the JSONL data files that `annotate` makes and edits, keeping every field of every record."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from ecac_bench.data import jsonl_rows, load_dataset, problem_sink
from ecac_bench.report import write_bytes_atomic


def load_rows(path: Path, flag: str = "--data") -> list[dict[str, Any]]:
    """The records of a valid JSONL data file as they are written (fields the harness does not read included).
    Raises :class:`~ecac_bench.data.DataValidationError` listing every problem of an invalid file."""
    if path.suffix != ".jsonl" or path.is_dir():
        raise ValueError(f"{flag} {path}: annotate reads and writes JSONL data files (.jsonl)")
    load_dataset(path)  # validates: every problem with file, line and field
    return [row for _, row in jsonl_rows(path, problem_sink([], path))]  # valid JSON: it just validated


def rows_bytes(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """JSONL, one record per line, UTF-8 (Chinese as it is, not escaped)."""
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def write_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write the records atomically: a reader sees the old file or the new one, never a half-written one."""
    write_bytes_atomic(path, rows_bytes(rows))
