"""The report every ecac-bench command writes (schema version 2), declared with pydantic, and its signature.

One shape for every route: the CLI's ``--json`` reports, the reports the leaderboard builds from lmms-eval results
files, and the leaderboard's inputs; docs/report_schema.md describes it field by field. The **signature** is a
sacrebleu-style string stating exactly how the numbers were made::

    ecac-bench:0.1.0|kind:score|data:ecac-sample|split:all|size:60|sha256:1f0c8e6a2b4d|prompt:unknown|match:exact|
    pixels:unknown|decoding:unknown|nboot:1000|seed:0

(one line). It is derived from the report's structured fields (``harness``, ``kind``, ``dataset``, ``protocol``,
``ci_config``) by :func:`format_signature`, and validation checks that the two agree. Two numbers are comparable
only when their signatures' protocol fields are (docs/leaderboard.md: the board rule).

Validation rejects what a downstream reader would otherwise have to guess about: an unknown kind, a metric the
registry does not list for the kind (or a missing one), a value outside the metric's range, a count that is not an
integer, a malformed sha256 or date, and unknown top-level fields.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from ecac_bench import registry

SCHEMA_VERSION = 2
UNKNOWN = "unknown"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# How deep a JSON value may nest before a reader refuses it (reports are a few levels deep).
MAX_DEPTH = 24


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


NonEmpty = Annotated[str, AfterValidator(_non_empty)]
Number = StrictInt | StrictFloat
Count = Annotated[StrictInt, Field(ge=0, le=10**12)]
Json = str | int | float | bool | None | list[Any] | dict[str, Any]
Interval = tuple[Number, Number]


def _sha256(value: str) -> str:
    if not _SHA256.match(value):
        raise ValueError(f"expected 64 lower-case hex digits, got {value!r}")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Harness(_Model):
    name: NonEmpty
    version: NonEmpty
    runner: str | None = None  # the harness that ran the tasks, when it is not ecac-bench (e.g. "lmms-eval 0.7.3")


class DatasetIdentity(_Model):
    """What the numbers were measured on. ``sha256`` is the *record-level* identity (``ecac_bench.data``): the same
    records as JSONL, Parquet or a saved dataset have the same hash, whatever the file is called."""

    name: NonEmpty
    path: str | None = None
    split: str | None = None
    size: Count
    sha256: Sha256


class PromptIdentity(_Model):
    """A prompt: its id (``caption.zh@2``, or whatever the captions' author called it) and content hash (null when
    the prompt is not one of this harness's templates)."""

    id: NonEmpty
    sha256: Sha256 | None = None


class JudgeIdentity(_Model):
    """The model that judged (or extracted, or answered): what changes its answers, never its endpoint or key."""

    model: NonEmpty
    params: dict[str, Json] = {}
    image: dict[str, Json] = {}
    prompt: PromptIdentity


class Protocol(_Model):
    """The fields that change what a number means: the leaderboard ranks two runs of one dataset together only when
    the fields their kind names (``registry.Kind.protocol``) agree."""

    caption_prompt: PromptIdentity = PromptIdentity(id=UNKNOWN)
    match: str | None = None  # "exact", "fuzzy@90"
    precision_match: Literal["equal", "contains"] | None = None
    extractor: str | None = None
    judge: JudgeIdentity | None = None
    pixels: NonEmpty = UNKNOWN  # the captions' pixel budget, "200704-1605632", when our route made them
    decoding: NonEmpty = UNKNOWN  # their decoding, "greedy,max_new_tokens=512,repetition_penalty=checkpoint"


class CIConfig(_Model):
    method: NonEmpty
    n_boot: Annotated[StrictInt, Field(ge=1, le=10**9)]
    seed: Annotated[StrictInt, Field(ge=-(2**63), le=2**64)]
    level: Annotated[StrictFloat, Field(gt=0, lt=1)]


class FileIdentity(_Model):
    path: str
    sha256: Sha256


class SignedFields(_Model):
    """What a signature states: a report's ``harness``, ``kind``, ``dataset``, ``protocol`` and ``ci_config``."""

    harness: Harness
    kind: NonEmpty
    dataset: DatasetIdentity
    protocol: Protocol
    ci_config: CIConfig | None = None


class LmmsSignature(SignedFields):
    """The ``ecac_signature`` entry of an ECAC lmms-eval task (docs/lmms_eval.md): provenance that lmms-eval does not
    record, carried in one metric slot. ``text`` is the signature as the task knew it (the leaderboard adds the
    pixel budget and decoding from the results file's own config)."""

    schema_version: Literal[2]
    text: NonEmpty
    ci: dict[str, Interval | None] | None = None


class BreakdownGroup(_Model):
    images: Count
    metrics: dict[str, Number | None]
    metric_images: dict[str, Count]


class Report(_Model):
    """Schema version 2 of an ecac-bench report (docs/report_schema.md)."""

    schema_version: Literal[2]
    kind: NonEmpty
    signature: NonEmpty
    harness: Harness
    model: NonEmpty
    date: NonEmpty
    dataset: DatasetIdentity
    protocol: Protocol
    # Metric key -> value (null: undefined on these images); for ``agree``, scoring method -> metric key -> value.
    metrics: dict[str, Number | None] | dict[str, dict[str, Number | None]]
    ci: dict[str, Interval | None] | dict[str, dict[str, Interval | None]] | None = None
    ci_config: CIConfig | None = None
    coverage: dict[str, Json] = {}
    config: dict[str, Json] = {}
    predictions: FileIdentity | None = None
    inputs: dict[str, FileIdentity] = {}  # other input files: questions, candidates, scores, human rankings
    outputs: dict[str, str] = {}  # files the command wrote besides the report (per-caption scores)
    failures: dict[str, Count] = {}
    judge: dict[str, Json] | None = None  # the judge client as described by ecac_bench.llm (no key)
    vlm: dict[str, Json] | None = None
    usage: dict[str, Json] | None = None
    cache: str | None = None
    breakdown: dict[str, dict[str, BreakdownGroup]] = {}
    per_image: dict[str, Number] = {}
    methods: dict[str, dict[str, Number | None]] = {}  # rank: per scoring method, its mean and count

    @field_validator("date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}") from None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if registry.kind_of_report(value) is None:
            known = ", ".join(k.report_kind for k in registry.kinds())
            raise ValueError(f"unknown report kind {value!r}; expected one of {known}")
        return value

    @model_validator(mode="after")
    def _metrics_follow_the_registry(self) -> Report:
        kind = registry.kind_of_report(self.kind)
        assert kind is not None
        per_method = kind.name == "agree"  # its metrics and CIs are keyed by scoring method first
        tables = list(self.metrics.values()) if per_method else [self.metrics]
        intervals = list((self.ci or {}).values()) if per_method else [self.ci or {}]
        for table in tables:
            if not isinstance(table, Mapping) or any(isinstance(v, Mapping) for v in table.values()):
                raise ValueError(f"metrics: a {self.kind} report holds {'per-method ' * per_method}metric values")
            check_metric_values(kind.name, table)
        for table in intervals:
            if not isinstance(table, Mapping) or any(isinstance(v, Mapping) for v in table.values()):
                raise ValueError(f"ci: a {self.kind} report holds {'per-method ' * per_method}intervals")
            check_intervals(kind.name, table)
        if (self.ci is None) != (self.ci_config is None):
            raise ValueError("ci and ci_config: give both (a bootstrap was run) or neither")
        signature = format_signature(self)
        if self.signature != signature:
            raise ValueError(f"signature {self.signature!r} does not state the report's fields ({signature!r})")
        return self


def check_metric_values(kind: str, values: Mapping[str, Any], *, complete: bool = True) -> None:
    """Raise ValueError naming the first metric of ``values`` that the registry does not allow for ``kind``."""
    known = registry.keys(kind)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"metrics: unknown metric(s) {unknown} for {kind}; known: {list(known)}")
    if complete:
        missing = [k for k in known if k not in values]
        if missing:
            raise ValueError(f"metrics.{missing[0]}: missing (a {kind} report lists every metric of its kind)")
    for key, value in values.items():
        if value is None:
            continue
        problem = registry.metric(kind, key).check(_finite(value))
        if problem:
            raise ValueError(f"metrics.{key}: {problem}")


def check_intervals(kind: str, intervals: Mapping[str, Any]) -> None:
    """Raise ValueError for an interval of a metric without a CI, or one that is not an ordered pair in range."""
    for key, interval in intervals.items():
        try:
            metric = registry.metric(kind, key)
        except KeyError:
            raise ValueError(f"ci.{key}: not a metric of {kind}") from None
        if not metric.ci:
            raise ValueError(f"ci.{key}: {key} has no confidence interval")
        if interval is None:
            continue
        low, high = (_finite(v) for v in interval)
        problem = metric.check(low) or metric.check(high) or ("low end above high end" if low > high else None)
        if problem:
            raise ValueError(f"ci.{key}: {problem}")


def _finite(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


# ----------------------------------------------------------------------------------------------- the signature


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", "\\n")


def _params(params: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={params[k]}" for k in sorted(params)) or "default"


def prompt_text(prompt: PromptIdentity) -> str:
    return prompt.id if prompt.sha256 is None else f"{prompt.id}#{prompt.sha256[:8]}"


def signature_fields(
    harness: Harness,
    kind: str,
    dataset: DatasetIdentity,
    protocol: Protocol,
    ci_config: CIConfig | None,
) -> list[tuple[str, object]]:
    """The signature as (field, value) pairs, in order: who computed it, what, on which data, how."""
    version = f"{harness.name}:{harness.version}" + (f"+{harness.runner.replace(' ', ':')}" if harness.runner else "")
    fields: list[tuple[str, object]] = [
        ("harness", version),
        ("kind", registry.kind_of_report(kind).name if registry.kind_of_report(kind) else kind),
        ("data", dataset.name),
        ("split", dataset.split or "all"),
        ("size", dataset.size),
        ("sha256", dataset.sha256[:12]),
        ("prompt", prompt_text(protocol.caption_prompt)),
    ]
    for name in ("match", "precision_match", "extractor"):
        if getattr(protocol, name) is not None:
            fields.append((name, getattr(protocol, name)))
    if protocol.judge is not None:
        judge = protocol.judge
        fields += [
            ("judge", judge.model),
            ("judge_params", _params(judge.params)),
            ("judge_image", _params(judge.image)),
            ("judge_prompt", prompt_text(judge.prompt)),
        ]
    fields += [("pixels", protocol.pixels), ("decoding", protocol.decoding)]
    if ci_config is not None:
        fields += [("nboot", ci_config.n_boot), ("seed", ci_config.seed)]
    else:
        fields.append(("nboot", 0))
    return fields


def format_signature(report: Report | SignedFields) -> str:
    """``field:value|field:value|...``; the first field is the bare ``harness:version``."""
    fields = signature_fields(report.harness, report.kind, report.dataset, report.protocol, report.ci_config)
    head, *rest = fields
    return "|".join([_escape(head[1]), *(f"{name}:{_escape(value)}" for name, value in rest)])


# ----------------------------------------------------------------------------------------------- reading


def json_depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a parsed JSON value nests deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def field_path(loc: Sequence[Any]) -> str:
    """``entries[0].citation.key`` from pydantic's ``("entries", 0, "citation", "key")``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_message(error: Any, limit: int = 3) -> str:
    """The first problems of a pydantic ValidationError, ``field.path: message`` each (what a person fixes)."""
    lines = []
    for problem in error.errors(include_url=False)[:limit]:
        where = field_path([p for p in problem["loc"] if not str(p).startswith(("function-", "union["))])
        message = "missing" if problem["type"] == "missing" else problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{where or '<top level>'}: {message}")
    more = error.error_count() - limit
    return "; ".join(lines) + (f" (and {more} more)" if more > 0 else "")


# ----------------------------------------------------------------------------------------------- identities


def prompts_identity(*templates: Any) -> dict[str, str]:
    """One identity for the prompt templates (``ecac_bench.prompts.PromptTemplate``) a metric asks with: their
    tags joined by ``+``; the content hash of the one template, or the sha256 of their hashes in order."""
    if len(templates) == 1:
        return templates[0].identity()
    combined = hashlib.sha256("\n".join(t.sha256 for t in templates).encode()).hexdigest()
    return {"id": "+".join(t.tag for t in templates), "sha256": combined}


def judge_identity(client: Any, *templates: Any) -> dict[str, Any]:
    """A protocol's ``judge`` for an ``ecac_bench.llm.LLMClient``: what changes the model's answers (model,
    sampling parameters, image rule, prompts), never its endpoint or key."""
    return {
        "model": client.config.model,
        "params": dict(client.config.params),
        "image": client.config.image.describe(),
        "prompt": prompts_identity(*templates),
    }
