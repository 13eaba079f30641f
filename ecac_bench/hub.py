"""ECAC data from the Hugging Face Hub: ``--data hf://org/name[:config]`` (docs/data_format.md, "From the Hub").

Only the explicit ``hf://`` prefix reaches here: a local path never changes meaning. The dataset is loaded with
``datasets.load_dataset(repo, config)`` (so the Hub's cache, ``HF_DATASETS_OFFLINE``, tokens and mirrors work as
they do for any dataset), every split of it; its rows must follow the ECAC data format (the columns of a JSONL
record). Then the records go through the same validation as a local file: they are written as one Parquet file
(``<cache>/hub/<org>--<name>[--<config>].parquet``) and loaded by :func:`ecac_bench.data.load_dataset`, so a
Hub dataset, its Parquet export and a JSONL of the same records have one record-level identity.

* ``image``: an ``Image`` column (as the Hub stores images: bytes, or a path for local files) or a string column of
  paths. Bytes are written once to ``<cache>/hub-images/<sha256 of the bytes><suffix>`` (content-addressed: a later
  load finds them there); a path is kept, a relative one taken relative to the current directory.
* ``split``: a record without its own split takes the name of the split it is stored in (as for a saved
  ``DatasetDict``).

Problems are reported as for a local file, located by split and row: ``hf://org/name (split test):row 12: field
'toys[0].level': ...``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecac_bench.atomic_files import write_bytes_atomic

PREFIX = "hf://"
# A Hub repository id (``name`` or ``org/name``) and config name, as the Hub allows them.
_REPO = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_CONFIG = re.compile(r"^[\w.-]+$")
_BATCH = 256


def is_hub_uri(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def data_location(value: str) -> str | Path:
    """A ``--data`` value (or ``$ECAC_DATA``): a Hub id when it starts with ``hf://``, else a local path."""
    return value if is_hub_uri(value) else Path(value)


@dataclass(frozen=True)
class HubId:
    repo: str
    config: str | None = None

    @classmethod
    def parse(cls, uri: str) -> HubId:
        """``hf://org/name`` or ``hf://org/name:config``; ValueError naming the flag's value otherwise."""
        body = uri.removeprefix(PREFIX)
        repo, _, config = body.partition(":")
        if not _REPO.match(repo) or (config and not _CONFIG.match(config)) or body.endswith(":"):
            raise ValueError(f"--data {uri!r}: expected hf://org/name or hf://org/name:config (a Hub dataset id)")
        return cls(repo, config or None)

    @property
    def display(self) -> str:
        """How reports name the dataset: ``org/name`` or ``org/name:config``."""
        return self.repo + (f":{self.config}" if self.config else "")

    @property
    def uri(self) -> str:
        return PREFIX + self.display

    @property
    def slug(self) -> str:
        return self.display.replace("/", "--").replace(":", "--")


def _cache_dir() -> Path:
    from ecac_bench.llm.cache import default_cache_dir  # the project's one cache folder ($ECAC_CACHE_DIR)

    return default_cache_dir()


def _write_once(folder: Path, data: bytes, suffix: str) -> str:
    """``data`` stored under its content hash (written atomically the first time); its path."""
    target = folder / (hashlib.sha256(data).hexdigest()[:40] + suffix)
    if not target.exists():
        write_bytes_atomic(target, data)
    return str(target)


def _image_location(cell: Any, folder: Path) -> Any:
    """An ``Image`` cell (``{"bytes", "path"}``) or a path as the record's ``image`` string; anything else is
    passed on for validation to report."""
    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
        if data:
            suffix = Path(path).suffix.lower() if isinstance(path, str) and Path(path).suffix else ".img"
            return _write_once(folder, data, suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".img")
        cell = path
    if isinstance(cell, str) and cell.strip():
        return os.path.abspath(cell)
    return cell


def _split_table(part: Any, split_name: str | None, images: Path) -> Any:
    """One split as an Arrow table of records: images as path strings, ``split`` filled from the split's name."""
    import datasets
    import pyarrow as pa

    added: dict[str, Any] = {}
    if "image" in part.column_names:
        image_part = part.select_columns(["image"])
        if isinstance(part.features["image"], datasets.Image):
            image_part = image_part.cast_column("image", datasets.Image(decode=False))
        locations: list[Any] = []
        for batch in image_part.with_format("arrow").iter(batch_size=_BATCH):
            locations += [_image_location(cell, images) for cell in batch.column("image").to_pylist()]
        added["image"] = locations
        part = part.remove_columns(["image"])
    if split_name is not None:
        own = part["split"] if "split" in part.column_names else [None] * len(part)
        added["split"] = [value if value else split_name for value in own]
        if "split" in part.column_names:
            part = part.remove_columns(["split"])
    table = part.with_format("arrow")[:] if part.column_names else pa.table({})
    for name, values in added.items():
        column = _column(name, values)
        table = table.append_column(name, column) if table.num_columns else pa.table({name: column})
    return table


def _column(name: str, values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise ValueError(f"the Hub dataset's column {name!r} holds values of several types") from None


def _located(sizes: list[tuple[str | None, int]], uri: str, problems: list[Any]) -> list[Any]:
    """The Parquet file's problems (``ecac_bench.data.Problem``), located by the Hub split and the row within it."""
    out = []
    for problem in problems:
        row, file = problem.line, uri
        if row is not None:
            for name, size in sizes:
                if row <= size:
                    file = uri if name is None else f"{uri} (split {name})"
                    break
                row -= size
        out.append(dataclasses.replace(problem, file=file, line=row))
    return out


# What reads the records once they are a local Parquet file: ``ecac_bench.data.load_dataset``, passed in by it (this
# module does not import the data format's module, which dispatches ``hf://`` here).
LocalLoader = Callable[[Path, "str | None"], Any]


def load_hub_dataset(uri: str, split: str | None, load: LocalLoader) -> Any:
    """The ECAC records of a Hub dataset (``hf://org/name[:config]``) as an ``EcacDataset``, validated like a local
    file by ``load`` (``ecac_bench.data.load_dataset``)."""
    hub = HubId.parse(uri)
    try:
        import datasets
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"--data {uri}: loading from the Hub needs the 'hf' extra: pip install 'ecac-bench[hf]'"
        ) from exc
    try:
        loaded = datasets.load_dataset(hub.repo, hub.config)
    except (OSError, ValueError) as exc:  # not found, offline without a cached copy, refused by the Hub
        raise ValueError(f"--data {uri}: the Hub dataset could not be loaded: {exc}") from None
    parts = list(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    cache = _cache_dir()
    tables = [_split_table(part, name, cache / "hub-images") for name, part in parts]
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    target = cache / "hub" / f"{hub.slug}.parquet"
    parquet = pa.BufferOutputStream()
    pq.write_table(table, parquet)
    write_bytes_atomic(target, parquet.getvalue().to_pybytes())
    try:
        dataset = load(target, split)
    except ValueError as exc:
        problems = getattr(exc, "problems", None)
        if problems is None:  # e.g. no record of the split asked for
            raise ValueError(str(exc).replace(str(target), hub.uri)) from None
        # a DataValidationError: the same error, its problems located in the Hub dataset
        sizes = [(name, len(part)) for name, part in parts]
        raise type(exc)(_located(sizes, hub.uri, problems), exc.truncated) from None  # type: ignore[attr-defined]
    dataset.name = hub.display
    return dataset
