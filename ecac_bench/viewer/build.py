"""Build the caption viewer: one static HTML page from one or two ``score`` per-image files (docs/viewer.md).

Each image is a card: the image (a thumbnail linked by relative path, or embedded downscaled with
``embed_images``), the reference caption, each system's caption(s) with every matched toy name highlighted (from the
per-image file's spans), and the toys named and missed with their level and ground. Filters, sorting and search run
in the page's own script; the page loads nothing from anywhere (no CDN), so it works from ``file://``.

Everything shown comes from files or models and is treated as hostile: the template escapes it (Jinja2 autoescape)
and puts it in ``<bdi>`` so that a right-to-left or bidi-override string cannot reorder the page around it.
"""

from __future__ import annotations

import base64
import io
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from ecac_bench import registry
from ecac_bench.commands._output import plain
from ecac_bench.data import LEVELS
from ecac_bench.per_image import Header, ImageRow, PerImageFile, ToyRow, read_per_image
from ecac_bench.report import write_bytes_atomic

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("ecac_bench.viewer", "templates"),
    autoescape=True,  # a caption like "<script>" must render as text
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
# The metrics shown per system at the top of the page.
SUMMARY_METRICS = ("tts", "tts_l", "tts_m", "tts_h", "reward")
# Embedded thumbnails: longest side in pixels (twice the displayed size, for sharp high-density screens), JPEG quality.
THUMBNAIL_SIDE = 320
THUMBNAIL_QUALITY = 80
LABELS = ("A", "B")


class ViewerError(ValueError):
    """The inputs cannot be shown together (not score files, other data or other images)."""


@dataclass(frozen=True)
class Segment:
    """A piece of a caption: plain text, or a highlighted toy name (``toys``: the names of the toys it names)."""

    text: str
    toys: tuple[str, ...] = ()
    ground: str = ""  # "foreground" when any toy it names is in the foreground, else "background"


@dataclass
class SystemCard:
    """One system's view of one image."""

    status: str
    failure: str | None
    captions: list[list[Segment]]
    rate: float | None
    reward: float | None
    named: list[ToyRow]
    missed: list[ToyRow]


@dataclass
class Card:
    id: str
    category: str
    area: str
    reference: str
    image_href: str | None  # the image, by relative path (never when embedded: the page then holds a copy)
    image_src: str | None  # what the <img> shows: the same relative path, or a data: URI
    toys: list[ToyRow]
    systems: list[SystemCard]
    search: str  # the lower-cased NFKC text that search looks in
    toy_tokens: str  # "level:states" per toy, states one letter per system: n named, m missed, f failed
    levels: str


@dataclass
class SystemInfo:
    label: str
    model: str
    source: str
    signature: str
    metrics: list[tuple[str, str]]  # (label, value) of SUMMARY_METRICS


@dataclass
class Page:
    title: str
    dataset: dict[str, Any]
    systems: list[SystemInfo]
    cards: list[Card]
    categories: list[str]
    areas: list[str]
    embedded: bool
    missing_images: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class ViewerInput:
    """One system's per-image rows, with where its image paths are relative to."""

    header: Header
    rows: list[ImageRow]
    source: str
    image_base: Path

    @classmethod
    def from_file(cls, loaded: PerImageFile) -> ViewerInput:
        return cls(loaded.header, loaded.rows, loaded.path.name, loaded.path.resolve().parent)


# ----------------------------------------------------------------------------------------------- captions


def caption_segments(caption: str, toys: Sequence[ToyRow], index: int) -> list[Segment]:
    """Caption number ``index`` cut into plain and highlighted pieces: a piece is highlighted when one or more
    toys' occurrences cover it (nested names, such as 积木 inside 单元积木, give one piece naming both)."""
    covering: list[list[int]] = [[] for _ in caption]
    for j, toy in enumerate(toys):
        for k, start, end, _ in toy.occurrences:
            if k == index:
                for position in range(start, min(end, len(caption))):
                    covering[position].append(j)
    segments: list[Segment] = []
    start = 0
    for position in range(1, len(caption) + 1):
        if position == len(caption) or covering[position] != covering[start]:
            owners = covering[start]
            names = tuple(dict.fromkeys(toys[j].name for j in owners))
            ground = ""
            if owners:
                foreground = any(toys[j].ground == "foreground" for j in owners)
                ground = "foreground" if foreground else "background"
            segments.append(Segment(caption[start:position], names, ground))
            start = position
    return segments


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _state(toy: ToyRow) -> str:
    return "f" if toy.named is None else ("n" if toy.named else "m")


# ----------------------------------------------------------------------------------------------- images


def _relative_url(target: Path, page_dir: Path) -> str:
    try:
        relative = os.path.relpath(target, page_dir)
    except ValueError:  # another drive (Windows): the absolute path is the only link there is
        return target.resolve().as_uri()
    return quote(Path(relative).as_posix())


def thumbnail_data_uri(path: Path) -> str | None:
    """The image downscaled to THUMBNAIL_SIDE as a JPEG ``data:`` URI, or None when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------------------------- the page


def _check_together(inputs: Sequence[ViewerInput]) -> None:
    for side in inputs:
        if side.header.kind != registry.kind("score").report_kind:
            raise ViewerError(
                f"{side.source}: a {side.header.kind} per-image file; the viewer shows score files "
                "(ecac-bench score --per-image FILE)"
            )
    if len(inputs) == 2:
        a, b = inputs
        if a.header.dataset["sha256"] != b.header.dataset["sha256"]:
            raise ViewerError(
                f"{a.source} and {b.source} were measured on different data (sha256 "
                f"{str(a.header.dataset['sha256'])[:12]} vs {str(b.header.dataset['sha256'])[:12]}): "
                "side by side needs the same records"
            )
        if [r.id for r in a.rows] != [r.id for r in b.rows]:
            raise ViewerError(f"{a.source} and {b.source} do not list the same images in the same order")


def _system_info(label: str, side: ViewerInput) -> SystemInfo:
    metrics = []
    for key in SUMMARY_METRICS:
        value = side.header.metrics.get(key)
        shown = "—" if not isinstance(value, int | float) else f"{value:.2f}"
        metrics.append((registry.metric("score", key).label, shown))
    return SystemInfo(label, side.header.model, side.source, side.header.signature, metrics)


def build_page(
    inputs: Sequence[ViewerInput],
    page_dir: Path,
    *,
    embed_images: bool = False,
    limit: int | None = None,
    title: str | None = None,
) -> Page:
    """The page's content from one or two systems' rows (image links relative to ``page_dir``)."""
    if not 1 <= len(inputs) <= 2:
        raise ViewerError(f"the viewer shows one or two per-image files, got {len(inputs)}")
    _check_together(inputs)
    first = inputs[0]
    rows_by_system = [side.rows if limit is None else side.rows[:limit] for side in inputs]
    cards: list[Card] = []
    missing_images = 0
    for per_system in zip(*rows_by_system):
        row = per_system[0]
        image_path = None
        if row.image is not None:
            location = Path(row.image)
            # lexically: the page's folder may not exist yet, and ".." must not depend on what a link points at
            image_path = Path(os.path.normpath(first.image_base / location))
        href = src = None
        if image_path is not None:
            if embed_images:
                src = thumbnail_data_uri(image_path)
                missing_images += src is None
            else:
                href = src = _relative_url(image_path, page_dir)
        toys = list(row.toys or ())
        systems = []
        for system_row in per_system:
            system_toys = list(system_row.toys or ())
            systems.append(
                SystemCard(
                    system_row.status,
                    system_row.failure,
                    [caption_segments(c, system_toys, k) for k, c in enumerate(system_row.captions)],
                    system_row.rate,
                    system_row.reward,
                    [t for t in system_toys if t.named],
                    [t for t in system_toys if t.named is False],
                )
            )
        states = ["".join(_state(list(r.toys or ())[j]) for r in per_system) for j in range(len(toys))]
        search_parts = [row.id, row.category, row.area, row.reference]
        search_parts += [c for r in per_system for c in r.captions]
        search_parts += [name for toy in toys for name in (toy.name, *toy.aliases)]
        cards.append(
            Card(
                row.id,
                row.category,
                row.area,
                row.reference,
                href,
                src,
                toys,
                systems,
                _fold("\n".join(search_parts)),
                " ".join(f"{toy.level}:{state}" for toy, state in zip(toys, states)),
                " ".join(level for level in LEVELS if any(t.level == level for t in toys)),
            )
        )
    notes = []
    if limit is not None and limit < len(first.rows):
        notes.append(f"showing the first {limit} of {len(first.rows)} images (--limit)")
    return Page(
        title or "ECAC caption viewer: " + " vs ".join(side.header.model for side in inputs),
        dict(first.header.dataset),
        [_system_info(label, side) for label, side in zip(LABELS, inputs)],
        cards,
        sorted({c.category for c in cards}),
        sorted({c.area for c in cards}),
        embed_images,
        missing_images,
        notes,
    )


def render(page: Page) -> str:
    # plain: where markup (and so <bdi>) cannot go, in <title> and <option>, control and bidi characters show as escapes
    return TEMPLATES.get_template("viewer.html.j2").render(page=page, levels=LEVELS, fmt_rate=_fmt_rate, plain=plain)


def _fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def build_viewer(
    files: Sequence[str | Path],
    out: str | Path,
    *,
    embed_images: bool = False,
    limit: int | None = None,
    title: str | None = None,
) -> Page:
    """Read one or two ``score`` per-image files and write the viewer page to ``out`` (atomically)."""
    out = Path(out)
    inputs = [ViewerInput.from_file(read_per_image(path)) for path in files]
    page = build_page(inputs, out.resolve().parent, embed_images=embed_images, limit=limit, title=title)
    write_bytes_atomic(out, render(page).encode("utf-8"))
    return page


def build_run_page(
    report: str | Path,
    out: str | Path,
    *,
    root: str | Path = ".",
    data: str | Path | None = None,
    embed_images: bool = False,
) -> Page:
    """The viewer page of a committed ``score`` run (a report in leaderboard/runs/), for the leaderboard to link:
    its dataset (``data``, else the report's ``dataset.path``) and predictions file (the report's
    ``predictions.path``), both relative to ``root`` and both checked against the report's hashes, scored again with
    the report's matching rule. ``embed_images`` only for data that may be published (the synthetic sample)."""
    import orjson

    from ecac_bench.data import load_dataset
    from ecac_bench.matching import MatchConfig
    from ecac_bench.metrics import score_captions
    from ecac_bench.per_image import image_rows, per_image_header, score_details
    from ecac_bench.predictions import load_predictions
    from ecac_bench.report import file_sha256

    report_path, out, root = Path(report), Path(out), Path(root)
    body = orjson.loads(report_path.read_bytes())
    if body.get("kind") != registry.kind("score").report_kind:
        raise ViewerError(f"{report_path}: not a score report (kind {body.get('kind')!r})")
    dataset = load_dataset(data if data is not None else root / body["dataset"]["path"])
    if body["dataset"]["split"]:
        dataset = load_dataset(dataset.path, split=body["dataset"]["split"])
    if dataset.sha256 != body["dataset"]["sha256"]:
        raise ViewerError(f"{report_path}: its dataset is not {dataset.path} (record-level sha256 differs)")
    predictions_path = root / body["predictions"]["path"]
    if file_sha256(predictions_path) != body["predictions"]["sha256"]:
        raise ViewerError(f"{report_path}: {predictions_path} changed since the run (sha256 differs)")
    rule = body["protocol"]["match"] or "exact"
    match = MatchConfig("exact") if rule == "exact" else MatchConfig("fuzzy", float(rule.partition("@")[2]))
    predictions = load_predictions(predictions_path, dataset, allow_missing=bool(body["config"].get("allow_missing")))
    stats = score_captions(dataset, predictions, match=match).stats
    page_dir = out.resolve().parent
    rows = image_rows(dataset, predictions, stats, score_details(dataset, predictions, match, stats), page_dir)
    header = Header.model_validate(per_image_header(body, stats.columns))
    side = ViewerInput(header, [ImageRow.model_validate(r) for r in rows], report_path.name, page_dir)
    page = build_page([side], page_dir, embed_images=embed_images)
    write_bytes_atomic(out, render(page).encode("utf-8"))
    return page
