"""The JSON report every ecac-bench metric command writes (schema version 2, ``ecac_bench.report_schema``), the
record a data tool writes instead (:func:`tool_record`), and atomic file writes (:func:`write_bytes_atomic`, from
``ecac_bench.atomic_files``, which modules below this one use directly)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ecac_bench import __version__
from ecac_bench.atomic_files import write_bytes_atomic
from ecac_bench.report_schema import SCHEMA_VERSION, DatasetIdentity, Report, SignedFields, format_signature

# The data tools that write a record (``--json``): their kinds are never a report's (docs/report_schema.md).
TOOL_KINDS = ("ecac-bench/stats", "ecac-bench/annotate", "ecac-bench/annotate-review")


def harness() -> dict[str, str]:
    return {"name": "ecac-bench", "version": __version__}


def tool_record(kind: str, **fields: Any) -> dict[str, Any]:
    """What a data tool's ``--json`` writes: which tool (``kind``, one of :data:`TOOL_KINDS`), which harness, when,
    then the tool's own ``fields``. Not a metric report: no schema version, no signature; the leaderboard refuses it
    (docs/report_schema.md#data-tool-records)."""
    if kind not in TOOL_KINDS:
        raise ValueError(f"{kind!r} is not a data tool's kind ({', '.join(TOOL_KINDS)})")
    if clash := sorted({"harness", "date"} & fields.keys()):
        raise ValueError(f"a tool record sets {clash} itself")
    return {"kind": kind, "harness": harness(), "date": dt.date.today().isoformat(), **fields}


def build_report(
    kind: str,
    *,
    model: str,
    dataset: Mapping[str, Any],
    metrics: Mapping[str, Any],
    protocol: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    coverage: Mapping[str, Any] | None = None,
    ci: Mapping[str, Any] | None = None,
    ci_config: Mapping[str, Any] | None = None,
    date: str | None = None,
    harness_info: Mapping[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A report of ``kind`` (``ecac-bench/<command>``) as a validated schema-2 dict, its signature filled in.

    ``sections`` are the schema's optional fields (``predictions``, ``judge``, ``failures``, ...); an unknown one,
    a metric the registry does not list, or a value out of range is a ``pydantic.ValidationError``."""
    body: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "harness": dict(harness_info or harness()),
        "model": model,
        "date": date or dt.date.today().isoformat(),
        "dataset": {k: v for k, v in dataset.items() if k in DatasetIdentity.model_fields},
        "protocol": dict(protocol or {}),
        "metrics": dict(metrics),
        "ci": None if ci is None else dict(ci),
        "ci_config": None if ci_config is None else dict(ci_config),
        "config": dict(config or {}),
        "coverage": dict(coverage or {}),
        **sections,
    }
    signed = {k: body[k] for k in ("harness", "kind", "dataset", "protocol", "ci_config")}
    body["signature"] = format_signature(SignedFields.model_validate(signed))
    report = Report.model_validate(body)
    return {k: v for k, v in report.model_dump(mode="json").items() if v not in (None, {}) or k in _ALWAYS}


# Fields every report shows even when empty or null, so that a reader sees "no CI" rather than a missing key.
_ALWAYS = frozenset({"ci", "ci_config", "config", "coverage"})


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Pretty, key-sorted UTF-8 JSON written atomically."""
    data = orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    write_bytes_atomic(path, data + b"\n")


def replace_dir(staging: str | Path, target: str | Path) -> None:
    """Put the finished folder ``staging`` at ``target`` by renaming (same file system): readers see the old folder,
    then for an instant none, then the new one, never a half-written one. An old ``target`` is moved aside first
    and deleted after the swap (put back if the swap fails); an empty one (e.g. made by ``mkdtemp``) is simply
    replaced."""
    import shutil

    staging, target = Path(staging), Path(target)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)  # the second rename failed: put the old folder back, as if nothing happened
        raise
    shutil.rmtree(old, ignore_errors=True)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
