"""The ECAC data format: records, toy annotations, loading and validation.

One record per image, in JSONL, Parquet or a Hugging Face dataset saved to disk (see docs/data_format.md)::

    {"id": "ecac-000001", "image": "images/000001.jpg", "category": "classroom", "area": "美工区",
     "caption": "...", "split": "test",
     "toys": [{"name": "彩泥", "level": "medium", "ground": "foreground", "aliases": ["橡皮泥"]}]}

Validation reports every problem it finds (up to a cap) with file, line (or row) and field; nothing is dropped or
coerced.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, count, islice, repeat
from operator import attrgetter, is_, methodcaller
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import orjson

from ecac_bench.forking import Forked, fork_call
from ecac_bench.gc_pause import no_gc
from ecac_bench.matching import match_plan, normalize_text

LEVELS: tuple[str, ...] = ("low", "medium", "high")
GROUNDS: tuple[str, ...] = ("foreground", "background")
CATEGORIES: tuple[str, ...] = ("outdoor", "classroom", "specialty")
# The fields a human may have reviewed (a record's optional ``reviewed`` list, written by `annotate --review-import`).
REVIEWABLE: tuple[str, ...] = ("caption", "category", "area", "toys")

# Stop collecting after this many problems: a broken 250k-line file should not print 250k lines.
MAX_PROBLEMS = 100
# Characters in visible categories (letter, number, punctuation, symbol) that nevertheless draw nothing.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u2800\u3164\uffa0")
# The fast path tells two toys of a record apart by bit masks over their normalised names: name number i sets bit
# i mod _NAME_BITS. Masks of at most this many bits stay cheap to AND; beyond that many distinct names two names may
# share a bit, which only sends a record to the detailed checks (which compare the names themselves).
_NAME_BITS = 1024

SAMPLE_DIR = Path(__file__).parent / "sample"
SAMPLE_DATA = SAMPLE_DIR / "ecac_sample.jsonl"
SAMPLE_PREDICTIONS: dict[str, Path] = {
    "system-a": SAMPLE_DIR / "predictions" / "system-a.jsonl",
    "system-b": SAMPLE_DIR / "predictions" / "system-b.jsonl",
}
SAMPLE_NAME = "ecac-sample"
# The six (ground, level) classes of toys, in the order of the metrics tts_fl, tts_fm, tts_fh, tts_bl, tts_bm, tts_bh.
TOY_CLASSES: tuple[tuple[str, str], ...] = tuple((ground, level) for ground in GROUNDS for level in LEVELS)
_CLASS_INDEX = {c: i for i, c in enumerate(TOY_CLASSES)}
_POSIX = os.name == "posix"


@dataclass(frozen=True, slots=True)
class ToyAnnotation:
    """One annotated teaching toy of an image. ``toy_class`` is its index in TOY_CLASSES (-1: invalid level/ground)."""

    name: str
    level: str
    ground: str
    aliases: tuple[str, ...] = ()
    # Derived once per toy because scoring reads them for every toy of every image: the class index, and the
    # accepted names as the matching rule sees them (ecac_bench.matching.match_plan).
    toy_class: int = field(init=False, repr=False, compare=False)
    match_names: tuple[tuple[str, bool], ...] = field(init=False, repr=False, compare=False)
    # The distinct normalised accepted names: two toys of one image may not share one (_Validator._check_toy_set).
    name_set: frozenset[str] = field(init=False, repr=False, compare=False)
    # The toy as the dataset identity hashes it (dataset_identity): name, level, ground, sorted aliases.
    canonical: tuple[str, str, str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "toy_class", _CLASS_INDEX.get((self.ground, self.level), -1))
        object.__setattr__(self, "match_names", match_plan((self.name, *self.aliases)))
        object.__setattr__(self, "name_set", frozenset(norm for norm, _ in self.match_names))
        object.__setattr__(self, "canonical", (self.name, self.level, self.ground, tuple(sorted(self.aliases))))

    @property
    def accepted_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "level": self.level, "ground": self.ground}
        if self.aliases:
            out["aliases"] = list(self.aliases)
        return out


@dataclass(slots=True)
class EcacRecord:
    """One image of the dataset with its reference caption and toys. Treat as read-only.

    Not a frozen dataclass on purpose: building a frozen one costs five times as much, 0.2 s of a 250k-image load.
    """

    id: str
    image_file: str  # absolute path as a string: building 250k Path objects costs seconds at load time
    category: str
    area: str
    caption: str
    split: str | None
    toys: tuple[ToyAnnotation, ...]

    @property
    def image(self) -> Path:
        return Path(self.image_file)


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem, located by file, line (JSONL) or row (Parquet/saved dataset), and field."""

    file: str
    line: int | None
    field: str
    message: str
    unit: str = "line"

    def __str__(self) -> str:
        where = f"{self.file}:{self.unit} {self.line}" if self.line is not None else self.file
        return f"{where}: field '{self.field}': {self.message}"


class DataValidationError(ValueError):
    """Raised when an ECAC data or predictions file has problems; ``problems`` lists them all (capped)."""

    def __init__(self, problems: list[Problem], truncated: bool = False) -> None:
        self.problems = problems
        self.truncated = truncated
        head = f"{len(problems)}{'+' if truncated else ''} problem(s) found"
        body = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{head}:\n{body}{more}")


# Names the canonical form (dataset_identity): a new form gets a new tag, so no two forms ever share a hash.
IDENTITY_FORM = "ecac-records/1"


def dataset_identity(records: Sequence[EcacRecord]) -> str:
    """The record-level identity of a set of records: sha256 of their canonical form (docs/report_schema.md).

    The canonical form is the compact UTF-8 JSON (``orjson.dumps``) of the array
    ``[IDENTITY_FORM, ids, categories, areas, captions, splits, toys]``: one entry per record in each, records
    ordered by id (code point order); a record's toys are the list of ``[name, level, ground, [aliases, sorted]]``
    in their annotated order. So the same records give the same hash in any record order and any format (JSONL,
    Parquet, a saved dataset, a DatasetDict's splits). The image field is left out: it is a location (relative,
    absolute, or inside a dataset), not content, and hashing the photos would mean reading every one of them.
    Computed column by column, so that the per-record work is a few C-level passes: at ECAC scale it costs about
    what hashing the file's bytes did (bench/score_throughput.py).
    """
    ids = list(map(_ID, records))
    if any(map(str.__ge__, ids, ids[1:])):  # ids are unique: strictly increasing means already in order
        records = sorted(records, key=_ID)
        ids = list(map(_ID, records))
    toys = list(map(tuple, map(map, repeat(_CANONICAL), map(_TOYS, records))))
    return _identity_hash(ids, *(list(map(getter, records)) for getter in _COLUMNS), toys)


def _identity_hash(ids: list[str], *columns: Sequence[Any]) -> str:
    """sha256 of the canonical form (dataset_identity) of records given column by column, ordered by id."""
    return hashlib.sha256(orjson.dumps([IDENTITY_FORM, ids, *columns])).hexdigest()


_ID = attrgetter("id")
_TOYS = attrgetter("toys")
_CANONICAL = attrgetter("canonical")
_COLUMNS = (attrgetter("category"), attrgetter("area"), attrgetter("caption"), attrgetter("split"))


@dataclass(frozen=True)
class ToyColumn:
    """The toys of a sequence of records, flat: ``table`` holds each distinct toy once; ``index[k]`` is the table
    position of toy k, the records' toys one record after another, and ``counts[i]`` how many toys record i has."""

    table: list[ToyAnnotation]
    index: np.ndarray
    counts: np.ndarray

    def per_record(self) -> list[tuple[ToyAnnotation, ...]]:
        """Each record's toys, as a tuple."""
        flat = iter(list(map(self.table.__getitem__, self.index.tolist())))
        return list(map(tuple, map(islice, repeat(flat), self.counts.tolist())))

    def canonical_json(self) -> bytes:
        """The JSON (as orjson writes it) of the list of each record's toys in canonical form (dataset_identity):
        each distinct toy serialised once, and every record's piece picked by numpy from four variants of it."""
        # Piece 4t + v of toy t: v = 1 if it opens its record's list, + 2 if it closes it; then an empty record.
        pieces = [
            piece
            for fragment in map(orjson.dumps, map(_CANONICAL, self.table))
            for piece in (b"," + fragment, b",[" + fragment, b"," + fragment + b"]", b",[" + fragment + b"]")
        ]
        pieces.append(b",[]")
        units = np.maximum(self.counts, 1)  # an empty record is one piece
        record = np.repeat(np.arange(len(units)), units)
        at = np.arange(len(record)) - np.repeat(np.cumsum(units) - units, units)
        has_toys = self.counts[record] > 0
        choice = np.full(len(record), len(pieces) - 1, dtype=np.int64)
        choice[has_toys] = 4 * self.index + (at == 0)[has_toys] + 2 * (at == units[record] - 1)[has_toys]
        return b"[" + b"".join(map(pieces.__getitem__, choice.tolist()))[1:] + b"]"

    def reorder(self, order: Sequence[int]) -> ToyColumn:
        """The toys of the records taken in ``order``."""
        order_array = np.asarray(order, dtype=np.int64)
        starts = (np.cumsum(self.counts) - self.counts)[order_array]
        counts = self.counts[order_array]
        new_starts = np.cumsum(counts) - counts
        at = np.arange(int(counts.sum())) + np.repeat(starts - new_starts, counts)
        return ToyColumn(self.table, self.index[at], counts)

    def take(self, keep: np.ndarray) -> ToyColumn:
        """The toys of the records where the boolean ``keep`` is true."""
        return ToyColumn(self.table, self.index[np.repeat(keep, self.counts)], self.counts[keep])


@dataclass(frozen=True)
class RecordColumns:
    """A dataset's records column by column, as the typed path reads a JSONL file (_Validator.typed_columns).

    Scoring, the predictions check and the dataset identity read these directly: at ECAC scale, building a record
    object per image costs more than parsing the file. ``records()`` builds the records when something asks for
    them (EcacDataset.records)."""

    ids: list[str]
    images: list[str]  # as in the file: relative to ``base_prefix``'s folder, or absolute
    base_prefix: str
    categories: list[str]
    areas: list[str]
    captions: list[str]
    splits: list[str | None]
    toys: ToyColumn
    in_id_order: bool | None = None  # whether the ids increase strictly (None: not known yet)

    def __len__(self) -> int:
        return len(self.ids)

    def image_files(self) -> list[str]:
        """Each record's image as an absolute path (_Validator.image_file)."""
        if _POSIX and not any(map(_STARTS_WITH_SLASH, self.images)):
            return list(map(self.base_prefix.__add__, self.images))
        prefix = self.base_prefix
        return [image if os.path.isabs(image) else prefix + image for image in self.images]

    def records(self) -> list[EcacRecord]:
        columns = (self.ids, self.image_files(), self.categories, self.areas, self.captions, self.splits)
        return list(map(EcacRecord, *columns, self.toys.per_record()))

    def take(self, keep: np.ndarray) -> RecordColumns:
        """The records where the boolean ``keep`` is true."""
        mask = keep.tolist()
        ids, images, categories, areas, captions, splits = (
            list(compress(column, mask))
            for column in (self.ids, self.images, self.categories, self.areas, self.captions, self.splits)
        )
        toys = self.toys.take(keep)
        return RecordColumns(ids, images, self.base_prefix, categories, areas, captions, splits, toys, self.in_id_order)

    def identity(self) -> str:
        """dataset_identity of these records, without building them (ToyColumn.canonical_json)."""
        ids, categories, areas, captions, splits = self.ids, self.categories, self.areas, self.captions, self.splits
        toys = self.toys
        in_order = self.in_id_order
        if in_order is None:
            in_order = not any(map(str.__ge__, ids, islice(ids, 1, None)))  # ids are unique
        if not in_order:
            order = sorted(range(len(ids)), key=ids.__getitem__)
            ids, categories, areas, captions, splits = (
                list(map(column.__getitem__, order)) for column in (ids, categories, areas, captions, splits)
            )
            toys = toys.reorder(order)
        return _identity_hash(ids, categories, areas, captions, splits, orjson.Fragment(toys.canonical_json()))


class EcacDataset:
    """A loaded, validated ECAC dataset. ``sha256`` is its record-level identity (:func:`dataset_identity`),
    computed on first use.

    A dataset read by the typed path holds its records column by column (``columns``) and builds the record
    objects on first use of ``records``; from then on the records are the dataset (they may be changed), and
    ``columns`` is None."""

    def __init__(
        self,
        records: list[EcacRecord] | None,
        path: Path,
        name: str,
        split: str | None = None,
        _by_id: dict[str, EcacRecord] | None = None,
        _sha256: str | None = None,
        *,
        columns: RecordColumns | None = None,
    ) -> None:
        if (records is None) == (columns is None):
            raise ValueError("an EcacDataset holds either records or columns")
        self._records = records
        self._columns = columns
        self.path = path
        self.name = name
        self.split = split
        self._by_id = _by_id
        self._sha256 = _sha256
        # A large dataset read column by column starts computing its identity (which every report needs) in a child
        # process as it is loaded (ecac_bench.forking); None when it is computed here, on first use.
        self._identity_child: Forked[str] | None = None
        if columns is not None and _sha256 is None:
            self._identity_child = fork_call(columns.identity, len(columns))

    @property
    def records(self) -> list[EcacRecord]:
        if self._records is None:
            assert self._columns is not None
            self._records, self._columns = self._columns.records(), None
        return self._records

    @records.setter
    def records(self, records: list[EcacRecord]) -> None:
        self._records, self._columns, self._by_id, self._sha256 = records, None, None, None
        self._identity_child = None

    @property
    def columns(self) -> RecordColumns | None:
        """The records column by column, while no record object was built (see the class docstring)."""
        return self._columns

    @property
    def ids(self) -> list[str]:
        """Every record's id, in order."""
        return self._columns.ids if self._columns is not None else list(map(_ID, self.records))

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            child, self._identity_child = self._identity_child, None
            if self._columns is not None:  # the child's columns are still the dataset's
                found = child.result() if child is not None else None
                self._sha256 = found if found is not None else self._columns.identity()
            else:
                self._sha256 = dataset_identity(self.records)
        return self._sha256

    def __len__(self) -> int:
        return len(self._columns) if self._columns is not None else len(self.records)

    def __iter__(self) -> Iterator[EcacRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"EcacDataset(name={self.name!r}, path={str(self.path)!r}, split={self.split!r}, size={len(self)})"

    @property
    def by_id(self) -> dict[str, EcacRecord]:
        if self._by_id is None:
            self._by_id = {r.id: r for r in self.records}
        return self._by_id

    def toy_vocabulary(self) -> list[str]:
        """All distinct toy names and aliases, sorted."""
        return sorted({n for r in self.records for t in r.toys for n in t.accepted_names})

    def describe(self) -> dict[str, Any]:
        """Identity of the dataset for reports: name, path, split, size and record-level hash."""
        return {
            "name": self.name,
            "path": str(self.path),
            "split": self.split,
            "size": len(self),
            "sha256": self.sha256,
        }


def has_visible_character(name: str) -> bool:
    """Whether a name, once normalised (docs/metrics.md), has a character that draws something: a letter, number,
    punctuation mark or symbol. Only format/control characters (zero-width spaces, joiners, BOM, ...), whitespace,
    unassigned or private-use code points and a few blank glyphs (Hangul fillers, the blank Braille pattern) draw
    nothing; a caption can never be expected to name such a toy."""
    return any(unicodedata.category(ch)[0] in "LNPS" and ch not in _BLANK_GLYPHS for ch in normalize_text(name))


class _Validator:
    """Builds records from raw rows, collecting problems instead of stopping at the first."""

    def __init__(self, file: str, base_dir: Path, unit: str) -> None:
        self.file = file
        # "<folder>/": relative image paths are appended to it (os.path.join per record is measurably slower)
        self.base_prefix = os.path.join(str(base_dir.resolve()), "")
        self.unit = unit
        self.problems: list[Problem] = []
        self.truncated = False
        self.first_seen: dict[str, int] = {}
        self._shared: dict[str | None, str | None] = {}
        # Identical toy annotations repeat across a dataset: validate and build each one once.
        # Each with its name mask (see _NAME_BITS): the fast path checks that a record's toys are a set with two int
        # operations per toy.
        self._toy_cache: dict[tuple[Any, ...], tuple[ToyAnnotation, int]] = {}
        self._name_bit: dict[str, int] = {}
        self._name_bit64: dict[str, int] = {}
        # Set by the typed path (typed_columns): the line of each record (None: record i is on line i + 1).
        self.record_lines: list[int] | None = None

    def problem(self, line: int | None, field_name: str, message: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.truncated = True
            return
        self.problems.append(Problem(self.file, line, field_name, message, self.unit))

    def _string(self, row: dict[str, Any], key: str, line: int, *, optional: bool = False) -> str | None:
        value = row.get(key)
        if value is None:
            if not optional:
                self.problem(line, key, "missing")
            return None
        if not isinstance(value, str):
            self.problem(line, key, f"must be a string, got {type(value).__name__}")
            return None
        if not optional and not value.strip():
            self.problem(line, key, "is empty")
            return None
        return value

    def _toy(self, raw: Any, line: int | None, where: str) -> ToyAnnotation | None:
        if not isinstance(raw, dict):
            self.problem(line, where, f"must be an object, got {type(raw).__name__}")
            return None
        aliases_raw = raw.get("aliases")
        # The cache key, as the fast path builds it: (name, level, ground[, aliases as a tuple]).
        key: tuple[Any, ...] = (raw.get("name"), raw.get("level"), raw.get("ground"))
        if aliases_raw is not None:
            key += (tuple(aliases_raw) if isinstance(aliases_raw, list) else aliases_raw,)
        try:
            cached = self._toy_cache.get(key)
        except TypeError:  # unhashable junk inside aliases: fall through to the detailed checks
            cached = None
        if cached is not None:
            return cached[0]
        ok = True
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            self.problem(line, f"{where}.name", "missing or empty toy name")
            ok = False
        elif not has_visible_character(name):
            self.problem(line, f"{where}.name", f"toy name {name!r} has no visible character: no caption can name it")
            ok = False
        level = raw.get("level")
        if level not in LEVELS:
            self.problem(line, f"{where}.level", f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
            ok = False
        ground = raw.get("ground")
        if ground not in GROUNDS:
            self.problem(line, f"{where}.ground", f"unknown ground {ground!r}; expected one of {', '.join(GROUNDS)}")
            ok = False
        aliases: tuple[str, ...] = ()
        if aliases_raw is not None:
            if not isinstance(aliases_raw, list):
                self.problem(line, f"{where}.aliases", f"must be a list, got {type(aliases_raw).__name__}")
                ok = False
            else:
                for j, alias in enumerate(aliases_raw):
                    if not isinstance(alias, str) or not alias.strip():
                        self.problem(line, f"{where}.aliases[{j}]", "alias must be a non-empty string")
                        ok = False
                    elif not has_visible_character(alias):
                        self.problem(
                            line,
                            f"{where}.aliases[{j}]",
                            f"alias {alias!r} has no visible character: no caption can name it",
                        )
                        ok = False
                aliases = tuple(aliases_raw)
        if not ok:
            return None
        toy = ToyAnnotation(name, level, ground, aliases)  # type: ignore[arg-type]
        mask = 0
        for norm in toy.name_set:
            mask |= 1 << self._name_bit.setdefault(norm, len(self._name_bit) % _NAME_BITS)
        self._toy_cache[key] = (toy, mask)
        return toy

    def _check_toy_set(self, toys_raw: list[dict[str, Any]], line: int | None) -> None:
        """An image's toys are a set (the paper: Ω = F ∪ B, F ∩ B = ∅): no normalised name or alias is shared by
        two of them. Each clash is reported once, naming both entries."""
        owner: dict[str, tuple[int, str, str]] = {}  # normalised name -> (toy index, field, raw name)
        for j, raw in enumerate(toys_raw):
            entries = [(f"toys[{j}].name", raw["name"])]
            entries += [(f"toys[{j}].aliases[{k}]", a) for k, a in enumerate(raw.get("aliases") or ())]
            mine: set[str] = set()
            for where, name in entries:
                norm = normalize_text(name)
                if norm in mine:
                    continue  # a toy may list its own name twice: still one toy
                mine.add(norm)
                first = owner.setdefault(norm, (j, where, name))
                if first[0] != j:
                    self.problem(
                        line,
                        where,
                        f"{name!r} and {first[1]} {first[2]!r} both normalise to {norm!r}: two toys of one image "
                        "cannot share a name or alias (an image's toys are a set)",
                    )

    def image_file(self, image: str) -> str:
        """The absolute path of a record's image (an absolute ``image`` is kept as it is)."""
        # On POSIX, isabs is startswith("/"): tested inline because this runs once per record.
        if image[:1] == "/" or (not _POSIX and os.path.isabs(image)):
            return image
        return self.base_prefix + image

    def record_fast(self, row: Any, line: int) -> EcacRecord | None:
        """The common case of a well-formed record, checked with few calls; None sends it to the detailed checks."""
        try:
            rec_id, image, category = row["id"], row["image"], row["category"]
            area, caption, toys_raw = row["area"], row["caption"], row["toys"]
            split = row.get("split")
            reviewed, group = row.get("reviewed"), row.get("group")
            if not (
                type(rec_id) is str
                and rec_id
                and not rec_id.isspace()
                and rec_id not in self.first_seen
                and type(image) is str
                and image
                and not image.isspace()
                and category in CATEGORIES
                and type(area) is str
                and area
                and not area.isspace()
                and type(caption) is str
                and caption
                and not caption.isspace()
                and (split is None or type(split) is str)
                and type(toys_raw) is list
                and (group is None or (type(group) is str and group and not group.isspace()))
                and (reviewed is None or (type(reviewed) is list and _reviewed_ok(reviewed)))
            ):
                return None
            cache = self._toy_cache
            toys = []
            names = 0  # the name masks of the toys so far: a toy sharing a bit goes to the detailed checks
            for raw in toys_raw:
                aliases = raw.get("aliases")
                if aliases is None:
                    cached = cache.get((raw["name"], raw["level"], raw["ground"]))
                else:
                    # a non-list stays as it is in the key: it matches nothing cached and gets the detailed checks
                    key = tuple(aliases) if type(aliases) is list else aliases
                    cached = cache.get((raw["name"], raw["level"], raw["ground"], key))
                if cached is None or names & cached[1]:
                    return None
                names |= cached[1]
                toys.append(cached[0])
        except (TypeError, KeyError, AttributeError):
            return None
        self.first_seen[rec_id] = line
        # One string object per distinct category, area and split instead of one per record: less memory to fault in.
        shared = self._shared
        category, area, split = (
            shared.setdefault(category, category),
            shared.setdefault(area, area),
            shared.setdefault(split, split),
        )
        return EcacRecord(rec_id, self.image_file(image), category, area, caption, split, tuple(toys))

    def typed_columns(self, rows: list[_RecordRow], lines: list[int] | None) -> RecordColumns | None:
        """The records of a file whose every line decoded as a typed row (typed_jsonl_rows), checked column by
        column with C-level passes; None as soon as any check fails (or the file holds no row): the caller then
        reads the file with the detailed checks, which report each problem exactly as they always have.

        What the row types do not check is checked here, as record_fast does: no empty or blank id, image, area
        or caption, unique ids, a non-empty group, a valid reviewed list, valid toys (each distinct toy once, by
        the detailed checks of _toy) and an image's toys a set."""
        n = len(rows)
        if not n:
            return None
        ids, images, areas, captions = (list(map(getter, rows)) for getter in _TYPED_TEXT_FIELDS)
        if any(any(map(str.isspace, column)) for column in (ids, images, areas, captions)):  # empty: see NonEmptyStr
            return None
        # Unique ids: strictly increasing ids (the usual order of a dataset file) need no hashing.
        in_order = not any(map(str.__ge__, ids, islice(ids, 1, None)))
        if not in_order and len(set(ids)) != n:
            return None
        # group and reviewed: a C-level pass when no record has them, the detailed rule where some do
        groups_ok = all(map(is_, map(_GROUP, rows), repeat(None))) or all(
            g is None or (g and not g.isspace()) for g in map(_GROUP, rows)
        )
        reviewed_ok = all(map(is_, map(_REVIEWED, rows), repeat(None))) or all(
            r is None or _reviewed_ok(r) for r in map(_REVIEWED, rows)
        )
        if not (groups_ok and reviewed_ok):
            return None
        toy_keys = _toy_keys(list(map(_TOYS, rows)))
        toys = self._toy_column(*toy_keys) if toy_keys is not None else None
        if toys is None:
            return None
        self.record_lines = lines
        categories, splits = list(map(_CATEGORY, rows)), list(map(_SPLIT, rows))
        return RecordColumns(ids, images, self.base_prefix, categories, areas, captions, splits, toys, in_order)

    def _toy_column(self, keys: list[tuple[Any, ...]], index: np.ndarray, counts: np.ndarray) -> ToyColumn | None:
        """The toys of every record (typed_columns) from their distinct keys (_toy_keys): each validated and built
        once by _toy, then every record's toys checked to be a set; None when a toy or a record's toys are not."""
        table: list[ToyAnnotation] = []
        masks = np.zeros(len(keys), dtype=np.uint64)
        for name, level, ground, aliases in keys:
            raw: dict[str, Any] = {"name": name, "level": level, "ground": ground}
            if aliases is not None:
                raw["aliases"] = list(aliases)
            toy = self._toy(raw, None, "toys")
            if toy is None:
                return None
            masks[len(table)] = self._mask64(toy)
            table.append(toy)
        column = ToyColumn(table, index, counts)
        if (counts > 1).any() and not self._typed_toy_sets_ok(column, masks):
            return None
        return column

    def _mask64(self, toy: ToyAnnotation) -> int:
        """The toy's normalised names as bits of a 64-bit mask (name number i sets bit i mod 64)."""
        bits = self._name_bit64
        mask = 0
        for norm in toy.name_set:
            mask |= 1 << bits.setdefault(norm, len(bits) % 64)
        return mask

    @staticmethod
    def _typed_toy_sets_ok(toys: ToyColumn, table_masks: np.ndarray) -> bool:
        """Whether every record's toys are a set (_check_toy_set): when the OR of a record's toy masks has fewer bits
        than their sum, two toys share a bit, and their names are compared; the rest pass with a few numpy passes."""
        sizes = toys.counts
        starts = np.cumsum(sizes) - sizes
        nonempty = np.flatnonzero(sizes)
        masks = table_masks[toys.index]
        union = np.bitwise_or.reduceat(masks, starts[nonempty])
        total = np.add.reduceat(_popcount64(masks), starts[nonempty])
        for record in nonempty[_popcount64(union) != total].tolist():
            at = toys.index[starts[record] : starts[record] + sizes[record]].tolist()
            names = [toys.table[i].name_set for i in at]
            if len(frozenset().union(*names)) != sum(map(len, names)):
                return False
        return True

    def record_checked(self, row: Any, line: int) -> EcacRecord | None:
        if not isinstance(row, dict):
            self.problem(line, "<record>", f"must be a JSON object, got {type(row).__name__}")
            return None
        n_before = len(self.problems)
        rec_id = self._string(row, "id", line)
        if rec_id is not None:
            if rec_id in self.first_seen:
                self.problem(line, "id", f"duplicate id {rec_id!r} (first at {self.unit} {self.first_seen[rec_id]})")
            else:
                self.first_seen[rec_id] = line
        image = self._string(row, "image", line)
        category = row.get("category")
        if category not in CATEGORIES:
            self.problem(line, "category", f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
        area = self._string(row, "area", line)
        caption = self._string(row, "caption", line)
        split = self._string(row, "split", line, optional=True)
        group = self._string(row, "group", line, optional=True)
        if group is not None and not group.strip():
            self.problem(line, "group", "is empty (leave it out for an image without a group)")
        self._reviewed(row.get("reviewed"), line)
        toys_raw = row.get("toys")
        toys: list[ToyAnnotation] | None = None
        if toys_raw is None:
            self.problem(line, "toys", "missing (use [] for an image without toys)")
        else:
            toys = self.toy_list(toys_raw, line)
        if len(self.problems) != n_before or self.truncated or toys is None:
            return None
        return EcacRecord(rec_id, self.image_file(image), category, area, caption, split, tuple(toys))  # type: ignore[arg-type]

    def _reviewed(self, reviewed: Any, line: int) -> None:
        if reviewed is None:
            return
        if not isinstance(reviewed, list):
            self.problem(line, "reviewed", f"must be a list, got {type(reviewed).__name__}")
            return
        for j, name in enumerate(reviewed):
            if name not in REVIEWABLE:
                self.problem(line, f"reviewed[{j}]", f"unknown field {name!r}; expected one of {', '.join(REVIEWABLE)}")
            elif reviewed.index(name) != j:
                self.problem(line, f"reviewed[{j}]", f"{name!r} is listed twice")

    def toy_list(self, toys_raw: Any, line: int | None) -> list[ToyAnnotation] | None:
        """The toys of one record, or None after reporting their problems (see :func:`toy_list_problems`)."""
        if not isinstance(toys_raw, list):
            self.problem(line, "toys", f"must be a list, got {type(toys_raw).__name__}")
            return None
        toys = [self._toy(raw, line, f"toys[{j}]") for j, raw in enumerate(toys_raw)]
        if any(toy is None for toy in toys):
            return None
        n_before = len(self.problems)
        self._check_toy_set(toys_raw, line)
        return toys if len(self.problems) == n_before else None  # type: ignore[return-value]


def _reviewed_ok(reviewed: list[Any]) -> bool:
    """The fast path's check of ``reviewed``: known field names, each once (unhashable junk raises TypeError)."""
    return len(set(reviewed)) == len(reviewed) and all(name in REVIEWABLE for name in reviewed)


def toy_list_problems(toys: Any, file: str = "<toys>", line: int | None = None) -> list[Problem]:
    """The problems of one record's ``toys`` value exactly as validation reports them (fields ``toys[j].name``,
    ``toys[j].aliases[k]``, ...; two toys sharing a normalised name included); empty when it is valid."""
    validator = _Validator(file, Path("."), "line")
    validator.toy_list(toys, line)
    return validator.problems


def problem_sink(problems: list[Problem], path: Path) -> Callable[[int, str, str], None]:
    """A ``problem(line, field, message)`` callback appending to ``problems`` for ``path`` (see jsonl_rows)."""
    return lambda line, field, message: problems.append(Problem(str(path), line, field, message))


def jsonl_rows(path: Path, problem: Callable[[int, str, str], None]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-blank line of a JSONL file; a line that is not JSON is reported as
    ``problem(line, "<json>", message)`` and skipped. Every JSONL input of the project is read through here."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                yield lineno, orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if raw.strip():  # blank lines are allowed (checked only here: this loop runs once per record)
                    problem(lineno, "<json>", f"invalid JSON: {exc}")


# A string the typed path refuses when empty: checked by msgspec as it decodes (predictions.py uses it too).
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]


class _ToyRow(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A toy as the typed path decodes it (see _RecordRow)."""

    name: str
    level: Literal[LEVELS]  # type: ignore[valid-type]
    ground: Literal[GROUNDS]  # type: ignore[valid-type]
    aliases: tuple[str, ...] | None = None


class _RecordRow(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A record as the typed path decodes it: msgspec checks the types in C while it parses. Only the documented
    fields, and no other: a line with any other field (allowed, and ignored) or a value of another type is not
    decoded, and its file takes the detailed path. So every value of a decoded line was read and checked, as orjson
    reads it (msgspec skips an unknown field without checking all of it, e.g. its UTF-8)."""

    id: NonEmptyStr
    image: NonEmptyStr
    category: Literal[CATEGORIES]  # type: ignore[valid-type]
    area: NonEmptyStr
    caption: NonEmptyStr
    toys: list[msgspec.Raw]  # each toy's bytes: a file has few distinct toys, each decoded once (_toy_keys)
    split: str | None = None
    group: str | None = None
    reviewed: list[str] | None = None


_TOY_DECODER = msgspec.json.Decoder(_ToyRow)
_RECORD_DECODER = msgspec.json.Decoder(_RecordRow)
# The toys of a file: each distinct (name, level, ground, aliases) once, in order of first use; each toy's position
# in that list, the records' toys one record after another; how many toys each record has.
ToyKeys = tuple[list[tuple[Any, ...]], np.ndarray, np.ndarray]


def _toy_keys(toy_lists: list[list[msgspec.Raw]]) -> ToyKeys | None:
    """The ToyKeys of the records' toys, each given as its JSON bytes: one dict pass over all toys, then each distinct
    toy text decoded once as a _ToyRow (two texts of one toy, e.g. spaced differently, give one key); None when one
    does not decode."""
    counts = np.fromiter(map(len, toy_lists), dtype=np.int64, count=len(toy_lists))
    texts = list(map(bytes, chain.from_iterable(toy_lists)))
    first: dict[bytes, int] = {}  # toy text -> its position among the distinct texts
    positions = np.fromiter(map(first.setdefault, texts, count()), dtype=np.int64, count=len(texts))
    distinct = np.zeros(len(texts), dtype=np.int64)  # first occurrence of a text -> its number among the texts
    distinct[list(first.values())] = np.arange(len(first))
    key_numbers: dict[tuple[Any, ...], int] = {}
    try:
        text_key = [key_numbers.setdefault(_TOY_KEY(_TOY_DECODER.decode(text)), len(key_numbers)) for text in first]
    except msgspec.DecodeError:
        return None
    return list(key_numbers), np.asarray(text_key, dtype=np.int64)[distinct[positions]], counts


_TYPED_TEXT_FIELDS = (attrgetter("id"), attrgetter("image"), attrgetter("area"), attrgetter("caption"))
_GROUP, _REVIEWED = attrgetter("group"), attrgetter("reviewed")
_CATEGORY, _SPLIT = attrgetter("category"), attrgetter("split")
_TOY_KEY = attrgetter("name", "level", "ground", "aliases")
_STARTS_WITH_SLASH = methodcaller("startswith", "/")


def _popcount64(values: np.ndarray) -> np.ndarray:
    """The number of set bits of each uint64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(values).astype(np.int64)
    return np.unpackbits(values.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1, dtype=np.int64)


def _lines_of_objects(data: bytes) -> int:
    """The number of lines of ``data`` when each starts with "{" and ends with "}" exactly (no blank line, no other
    whitespace around them), else 0. Then no JSON value spans two lines: at a line break "}" would be followed by
    "{" with only whitespace between, which is valid JSON nowhere inside a value (a comma must come between), and a
    string cannot hold a raw line break. msgspec's decode_lines then reads the file in one call, with no line split
    out of it: a third of the cost of reading a large file line by line."""
    if not data.startswith(b"{"):
        return 0
    n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
    closed = data.endswith(b"}\n") or data.endswith(b"}")
    return n_lines if closed and data.count(b"}\n{") == n_lines - 1 else 0


def typed_jsonl_rows(data: bytes, decoder: msgspec.json.Decoder[Any]) -> tuple[list[Any], list[int] | None] | None:
    """Every non-blank line of a JSONL file's bytes decoded by a typed msgspec decoder, and the line number of each
    row (None: row i is line i + 1); None when any such line does not decode. The fast path of a loader that has a
    detailed path (jsonl_rows) to report the problems of a file this declines.

    Lines are the file's lines as jsonl_rows reads them (split at b"\\n" only), each decoded on its own: a value
    spanning lines, or two values on one line, does not decode, as with orjson."""
    lines_of_objects = _lines_of_objects(data)
    if lines_of_objects:
        try:
            rows = decoder.decode_lines(data)
        except msgspec.DecodeError:
            rows = None
        # No value spans lines (see _lines_of_objects), so as many values as lines is one value on each line.
        if rows is not None and len(rows) == lines_of_objects:
            return rows, None
    lines = data.split(b"\n")
    if lines and not lines[-1]:  # the newline that ends the last line
        lines.pop()
    try:
        return list(map(decoder.decode, lines)), None
    except msgspec.DecodeError:  # a blank line, or a line that does not decode (ValidationError is a DecodeError)
        pass
    numbered = list(compress(enumerate(lines, start=1), map(bytes.strip, lines)))
    try:
        return [decoder.decode(line) for _, line in numbered], [number for number, _ in numbered]
    except msgspec.DecodeError:
        return None


def _raw_rows(path: Path, validator: _Validator) -> Iterator[tuple[int, Any]]:
    if path.is_dir():
        try:
            import datasets
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"{path} is a directory (a saved Hugging Face dataset); install the 'hf' extra: "
                "pip install 'ecac-bench[hf]'"
            ) from exc
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            rows: list[dict[str, Any]] = []
            for split_name, part in loaded.items():
                # A record without its own split takes the name of the DatasetDict split it sits in.
                rows.extend({**r, "split": r.get("split") or split_name} for r in part.to_list())
        else:
            rows = loaded.to_list()
        return enumerate(rows, start=1)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return enumerate(pq.read_table(path).to_pylist(), start=1)
    if path.suffix in (".jsonl", ".json"):
        return jsonl_rows(path, validator.problem)
    raise ValueError(f"{path}: unknown data format; expected .jsonl, .parquet or a saved Hugging Face dataset dir")


def _parse(path: Path) -> tuple[list[EcacRecord] | RecordColumns, _Validator]:
    """The records of a data file (column by column when the typed path read it), and the validator that read it
    (its problems, and where each record is)."""
    unit = "line" if path.suffix in (".jsonl", ".json") and not path.is_dir() else "row"
    base_dir = path.parent if not path.is_dir() else path
    validator = _Validator(str(path), base_dir, unit)
    if unit == "line":
        decoded = typed_jsonl_rows(path.read_bytes(), _RECORD_DECODER)
        columns = validator.typed_columns(*decoded) if decoded is not None else None
        if columns is not None:
            return columns, validator
        validator = _Validator(str(path), base_dir, unit)  # the detailed checks start afresh
    records: list[EcacRecord] = []
    fast, checked = validator.record_fast, validator.record_checked
    for line, row in _raw_rows(path, validator):
        record = fast(row, line) or checked(row, line)
        if record is not None:
            records.append(record)
        if validator.truncated:
            break
    if not records and not validator.problems:
        validator.problem(None, "<file>", "holds no records (empty, or only blank lines)")
    return records, validator


def validate_dataset(path: str | Path, check_images: bool = False) -> list[Problem]:
    """All problems of a data file (empty when it is valid). ``check_images`` also checks that images exist."""
    path = Path(path)
    if not path.exists():
        return [Problem(str(path), None, "<file>", "does not exist")]
    parsed, validator = _parse(path)
    problems = list(validator.problems)
    if check_images:
        if isinstance(parsed, RecordColumns):
            image_files: Sequence[str] = parsed.image_files()
            lines: Sequence[int] = validator.record_lines or range(1, len(parsed) + 1)
        else:
            image_files = [record.image_file for record in parsed]
            lines = [validator.first_seen[record.id] for record in parsed]
        for image, line in zip(map(Path, image_files), lines):
            if len(problems) >= MAX_PROBLEMS:
                break
            if not image.is_file():
                problems.append(Problem(str(path), line, "image", f"file not found: {image}", validator.unit))
    return problems


def load_dataset(path: str | Path | None = None, split: str | None = None) -> EcacDataset:
    """Load and validate an ECAC dataset (``None`` loads the bundled sample), optionally keeping one split.
    ``hf://org/name[:config]`` (a string with that explicit prefix) loads a Hugging Face Hub dataset
    (``ecac_bench.hub``)."""
    if isinstance(path, str) and path.startswith("hf://"):
        from ecac_bench.hub import load_hub_dataset

        return load_hub_dataset(path, split, load_dataset)
    resolved = Path(path) if path is not None else SAMPLE_DATA
    if not resolved.exists():
        raise FileNotFoundError(f"{resolved}: data file not found")
    with no_gc():
        parsed, validator = _parse(resolved)
    if validator.problems:
        raise DataValidationError(validator.problems, validator.truncated)
    splits = parsed.splits if isinstance(parsed, RecordColumns) else [r.split for r in parsed]
    if split is not None:
        keep = [s == split for s in splits]
        if not any(keep):
            found = sorted(Counter(splits).keys(), key=str)
            raise ValueError(f"{resolved}: no record has split {split!r} (splits present: {found})")
        parsed = parsed.take(np.asarray(keep)) if isinstance(parsed, RecordColumns) else list(compress(parsed, keep))
    is_sample = resolved.resolve() == SAMPLE_DATA.resolve()
    name = SAMPLE_NAME if is_sample else (resolved.stem if not resolved.is_dir() else resolved.name)
    if isinstance(parsed, RecordColumns):
        return EcacDataset(None, resolved, name, split, columns=parsed)
    return EcacDataset(parsed, resolved, name, split)
