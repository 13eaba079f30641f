"""What `ecac-bench annotate` annotates: the photos of a folder, or the rows of a JSONL of image paths.

Nothing is copied or moved: a photo is read where it lies (to send it to the model) and the output refers to it by
path. Every problem of an input file is reported with file, line and field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ecac_bench.data import CATEGORIES, DataValidationError, Problem, jsonl_rows, problem_sink

# Photo formats the client sends (JPEG/PNG/WEBP as they are; the others re-encoded: ecac_bench.llm.images).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# The keys a row of an input JSONL may have.
INPUT_KEYS = ("id", "image", "category", "area", "group")


@dataclass(frozen=True)
class Photo:
    """One photo to annotate. ``category`` / ``area`` / ``group`` are None when the input does not give them (the
    model then supplies category and area; ``group`` stays absent)."""

    id: str
    image: Path  # absolute
    category: str | None = None
    area: str | None = None
    group: str | None = None


def photos_from_folder(folder: Path, *, group_by_folder: bool = False) -> list[Photo]:
    """Every photo under ``folder`` (recursively, hidden files and folders skipped, symlinked folders not followed),
    in path order. A photo's id is its path relative to ``folder`` without the suffix (``class-a/IMG_0001``); with
    ``group_by_folder`` its group is its first folder under ``folder`` (a photo directly in it has none)."""
    root = folder.resolve()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath, name)
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    if not found:
        raise ValueError(f"{folder}: no photo found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    photos, owner = [], {}
    for path in sorted(found):
        relative = path.relative_to(root)
        photo_id = relative.with_suffix("").as_posix()
        if photo_id in owner:
            raise ValueError(
                f"{folder}: {owner[photo_id]} and {relative.as_posix()} would both get the id {photo_id!r}; "
                "rename one, or list the photos in a JSONL with ids"
            )
        owner[photo_id] = relative.as_posix()
        group = relative.parts[0] if group_by_folder and len(relative.parts) > 1 else None
        photos.append(Photo(photo_id, path, group=group))
    return photos


def photos_from_jsonl(path: Path) -> list[Photo]:
    """The rows ``{"image": PATH, "id"?, "category"?, "area"?, "group"?}`` of a JSONL (relative image paths are
    relative to the file's folder; the id defaults to the ``image`` value). Raises :class:`DataValidationError`
    listing every problem: a missing image file, an unknown category, a duplicate id, an unknown key, ..."""
    problems: list[Problem] = []
    sink = problem_sink(problems, path)
    base = path.resolve().parent
    photos: list[Photo] = []
    first_line: dict[str, int] = {}
    for line, row in jsonl_rows(path, sink):
        if not isinstance(row, dict):
            sink(line, "<record>", f"must be a JSON object, got {type(row).__name__}")
            continue
        n_before = len(problems)
        for key in row:
            if key not in INPUT_KEYS:
                sink(line, key, f"unknown key; an input row has {', '.join(INPUT_KEYS)}")
        values: dict[str, str | None] = {}
        for key in INPUT_KEYS:
            value = row.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                sink(line, key, "must be a non-empty string" + ("" if key == "image" else " (or left out)"))
                value = None
            values[key] = value
        image = values["image"]
        if row.get("image") is None:
            sink(line, "image", "missing")
        elif image is not None and not (base / image).is_file():
            sink(line, "image", f"file not found: {base / image}")
        category = values["category"]
        if category is not None and category not in CATEGORIES:
            sink(line, "category", f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
        photo_id = values["id"] or image
        if photo_id is not None and photo_id in first_line:
            sink(line, "id", f"duplicate id {photo_id!r} (first at line {first_line[photo_id]})")
        if len(problems) == n_before and image is not None and photo_id is not None:
            first_line[photo_id] = line
            photos.append(Photo(photo_id, (base / image).resolve(), category, values["area"], values["group"]))
    if not photos and not problems:
        problems.append(Problem(str(path), None, "<file>", "holds no rows (empty, or only blank lines)"))
    if problems:
        raise DataValidationError(problems)
    return photos


def load_photos(source: Path, *, group_by_folder: bool = False) -> list[Photo]:
    """The photos of a folder or of a ``.jsonl`` file (see :func:`photos_from_folder`, :func:`photos_from_jsonl`)."""
    if source.is_dir():
        return photos_from_folder(source, group_by_folder=group_by_folder)
    if not source.exists():
        raise FileNotFoundError(f"--images {source}: not found")
    if group_by_folder:
        raise ValueError("--group-by-folder: only for a folder of photos (a JSONL gives each row's group)")
    if source.suffix != ".jsonl":
        raise ValueError(f"--images {source}: expected a folder of photos or a .jsonl of image paths")
    return photos_from_jsonl(source)
