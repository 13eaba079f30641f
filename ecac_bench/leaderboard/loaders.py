"""Read the leaderboard's inputs: reported baselines (YAML/JSON) and measured results files, each validated against a
declared schema (pydantic) rather than reverse-engineered.

Measured results come in two kinds, told apart by their content, never by file name:

* an ``ecac-bench`` JSON report, schema version 2 (``ecac_bench.report_schema.Report``: docs/report_schema.md);
* an lmms-eval results file (``<output_path>/<model>/<timestamp>_results.json``), whose ECAC tasks carry their
  metrics under keys like ``"tts,none"`` and their provenance in one ``ecac_signature`` entry; each ECAC task of the
  file becomes one schema-2 report (:func:`reports_from_lmms_results`), the pixel budget and decoding taken from the
  file's own config.

Every problem is an :class:`InputError` naming the file and the field, so a bad file can be fixed or skipped
(``--skip-bad``); no input, however odd (huge numbers, deep nesting, lists where objects belong, impossible dates),
ends the build with a traceback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ecac_bench import registry
from ecac_bench.leaderboard.entries import Citation, DatasetId, Entry, ModelFacts, Provenance, ViewerPage, Weights
from ecac_bench.report import TOOL_KINDS, build_report
from ecac_bench.report_schema import (
    MAX_DEPTH,
    Count,
    LmmsSignature,
    NonEmpty,
    Number,
    Report,
    Sha256,
    check_metric_values,
    json_depth_exceeds,
    prompt_text,
    validation_message,
)
from ecac_bench.unicode_text import lone_surrogate_at

LMMS_TASK_PREFIX = "ecac_"
BASELINE_SUFFIXES = (".yaml", ".yml", ".json")
_LMMS_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})_")
_NO_DATASET = "dataset not recorded by lmms-eval"


class InputError(ValueError):
    """A leaderboard input that cannot be used; the message names the file and what is wrong."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{path}: {message}")


VIEWER_SUFFIX = ".viewer.html"  # a results file X.json may have its caption-viewer page beside it: X.viewer.html
VIEWER_DIR = "viewer"  # where the site carries the copies


@dataclass
class LoadResult:
    entries: list[Entry] = field(default_factory=list)
    problems: list[InputError] = field(default_factory=list)


MAX_VALUES = 1_000_000  # values in one input once YAML aliases are expanded; real inputs hold a few thousand
MAX_INT_DIGITS = 400  # a longer integer is no count or metric (Python refuses to read more than 4,300 digits)


class _InputValueError(ValueError):
    """A value the JSON/YAML readers refuse while parsing (the message says which)."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; one that gives a key twice is refused (a reader keeps only one of the two values)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _InputValueError(f"key {key!r} is given twice in one object")
            seen.add(key)
    return out


def _json_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _InputValueError(f"an integer of {len(digits.lstrip('-')):,} digits")
    return int(digits)


def _json_loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)


class _YamlLoader(yaml.SafeLoader):
    """``yaml.safe_load`` with the numbers JSON has: a mapping giving one key twice is an error (YAML keeps the last
    silently), and YAML 1.1's other number forms (``010`` octal is 8, ``1:30`` sexagesimal is 90, ``0x10``, ``0b1``)
    are plain strings, which the schema then refuses as numbers."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_YamlLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def _yaml_mapping(loader: _YamlLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # a merge key's values may be overridden: that is what it is for
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: construct_mapping names it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    yield from loader.construct_yaml_map(node)


_YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _yaml_mapping)


def _yaml_loads(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass: no arbitrary objects


def _text_problem(text: str) -> str | None:
    if (at := lone_surrogate_at(text)) is not None:
        return f"a string holds a lone surrogate {text[at]!r}, which is not Unicode text: {text[:40]!r}"
    return None


def _shape_problem(data: Any) -> str | None:
    """Why a parsed value cannot be walked safely, or None: it holds itself (a YAML alias inside its own anchor), it
    holds more than MAX_VALUES values once YAML aliases are expanded (an "alias bomb": a few lines that expand to
    billions), or a string is not Unicode text (a lone surrogate from a ``\\ud800`` escape: no file can be written
    with it). Each container is visited once (sizes memoised by identity), so the check is linear in the file."""
    if isinstance(data, str):
        return _text_problem(data)
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        item, done = stack.pop()
        if not isinstance(item, (dict, list)) or (not done and id(item) in sizes):
            continue
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        if done:
            ancestors.discard(id(item))
            sizes[id(item)] = 1 + sum(sizes[id(c)] if isinstance(c, (dict, list)) else 1 for c in children)
            if sizes[id(item)] > MAX_VALUES:
                return f"more than {MAX_VALUES:,} values (counting each use of a YAML alias)"
            continue
        if id(item) in ancestors:
            return "a value contains itself (a YAML alias inside its own anchor)"
        for child in children:
            if isinstance(child, str) and (problem := _text_problem(child)):
                return problem
        ancestors.add(id(item))
        stack.append((item, True))
        stack.extend((c, False) for c in children if isinstance(c, (dict, list)))
    return None


def _parsed(path: Path, text: str, parse: Any) -> Any:
    """Parse ``text``; a value too large, self-containing or nested deeper than reports ever are is refused before
    anything else walks it."""
    try:
        data = parse(text)
    except RecursionError:
        raise InputError(path, f"nested more than {MAX_DEPTH} levels deep") from None
    except _InputValueError as exc:
        raise InputError(path, f"invalid value: {exc}") from None
    if problem := _shape_problem(data):
        raise InputError(path, problem)
    if json_depth_exceeds(data):
        raise InputError(path, f"nested more than {MAX_DEPTH} levels deep")
    return data


def _read_json(path: Path) -> Any:
    try:
        return _parsed(path, path.read_text(encoding="utf-8"), _json_loads)
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except OSError as exc:
        raise InputError(path, f"cannot read it: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------- reported


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Citation(_Model):
    key: NonEmpty
    text: NonEmpty
    authors: list[NonEmpty] = []  # as the paper prints them; with the title, they make its BibTeX entry
    title: NonEmpty | None = None


def _https_url(value: str) -> str:
    # RFC 3986 characters only: no quote, space, angle bracket or backslash can reach an attribute or a Markdown cell
    if len(value) > 500 or not re.fullmatch(r"https://[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+", value):
        raise ValueError(f"expected an https:// URL, got {value!r}")
    return value


HttpsUrl = Annotated[str, AfterValidator(_https_url)]


class _ModelFacts(_Model):
    """Facts about one model, with their source (docs/leaderboard.md, "Model facts"); leave out what is not known."""

    name: NonEmpty
    source: NonEmpty
    ids: list[NonEmpty] = []
    params_b: Annotated[Number, Field(ge=0, le=10**6)] | None = None
    weights: Weights | None = None
    url: HttpsUrl | None = None


class _ReportedDataset(_Model):
    name: NonEmpty
    split: NonEmpty | None = None
    size: Count | None = None
    sha256: Sha256 | None = None


class _ReportedEntry(_Model):
    """One entry of a baselines file (baselines/README.md)."""

    source: Literal["reported"]
    citation: _Citation
    model: NonEmpty
    params_b: Annotated[Number, Field(ge=0, le=10**6)] | None  # required; null when the paper gives no size
    table: NonEmpty
    dataset: _ReportedDataset
    metrics: dict[str, Number]
    prompt: NonEmpty | None = None  # the captioning prompt ("unknown" for the paper's rows)
    variant: NonEmpty | None = None
    note: NonEmpty | None = None
    date: dt.date | None = None

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}") from None
        if (value is not None and not isinstance(value, dt.date)) or isinstance(value, dt.datetime):
            raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")
        return value

    @field_validator("metrics")
    @classmethod
    def _leaderboard_metrics(cls, values: dict[str, Any]) -> dict[str, Any]:
        known = [m.key for m in registry.leaderboard_metrics()]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {known}")
        if not values:
            raise ValueError("no values")
        for key, value in values.items():
            if problem := registry.leaderboard_metric(key).check(_as_float(value)):
                raise ValueError(f"{key}: {problem}")
        return values


class _BaselineFile(_Model):
    entries: list[_ReportedEntry] = []
    models: list[_ModelFacts] = []

    @model_validator(mode="after")
    def _not_empty(self) -> _BaselineFile:
        if not self.entries and not self.models:
            raise ValueError("entries: missing (a baselines file holds entries, models or both)")
        return self


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf")


def _number(value: Any) -> float:
    """A validated value as shown: -0.0 is 0.0 (no metric is ever shown as negative)."""
    return float(value) + 0.0


def parse_baseline_file(path: Path) -> list[Entry]:
    """Entries of one baselines file: ``{"entries": [{source: reported, citation, model, params_b, table, ...}]}``."""
    return _parse_baselines(path)[0]


def _parse_baselines(path: Path) -> tuple[list[Entry], list[ModelFacts]]:
    """A baselines file's entries and model facts (``models: [{name, source, ids, params_b, weights, url}]``)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = _parsed(path, text, _json_loads if path.suffix == ".json" else _yaml_loads)
    except InputError:
        raise
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    except (ValueError, OverflowError) as exc:  # YAML's own conversions: an impossible date such as 2025-02-30
        raise InputError(path, f"invalid YAML value: {exc}") from None
    except OSError as exc:
        raise InputError(path, f"cannot read it: {exc.strerror or exc}") from None
    try:
        parsed = _BaselineFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(path, validation_message(exc)) from None
    names = [name.strip().casefold() for item in parsed.models for name in (item.name, *item.ids)]
    if len(names) != len(set(names)):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(path, f"models: {twice} named by more than one model")
    facts = [
        ModelFacts(
            name=item.name.strip(),
            source=item.source.strip(),
            ids=tuple(i.strip() for i in item.ids),
            params_b=None if item.params_b is None else _number(item.params_b),
            weights=item.weights,
            url=item.url,
        )
        for item in parsed.models
    ]
    return [_baseline_entry(item) for item in parsed.entries], facts


def _baseline_entry(item: _ReportedEntry) -> Entry:
    ds = item.dataset
    return Entry(
        model=item.model.strip(),
        source="reported",
        dataset=DatasetId(ds.name.strip(), ds.split, ds.size, ds.sha256),
        metrics={k: _number(v) for k, v in item.metrics.items()},
        provenance=Provenance(
            origin=item.citation.key.strip(),
            kind=item.table.strip(),
            date=item.date.isoformat() if item.date else None,
            note=item.note,
        ),
        # The paper prints neither the captioning prompt nor anything else of the protocol: "unknown" ranks with
        # "unknown" only.
        protocol={"caption_prompt": item.prompt or "unknown"},
        params_b=None if item.params_b is None else _number(item.params_b),
        citation=Citation(
            key=item.citation.key.strip(),
            text=item.citation.text.strip(),
            authors=tuple(a.strip() for a in item.citation.authors),
            title=item.citation.title.strip() if item.citation.title else None,
        ),
        variant=item.variant,
    )


# ---------------------------------------------------------------------------------------------- measured


def parse_results_file(path: Path, origin: str) -> list[Entry]:
    """The entries of one measured results file (either kind); ``origin`` is how the leaderboard names the file."""
    data = _read_json(path)
    if not isinstance(data, Mapping):
        raise InputError(path, f"expected a JSON object, got {type(data).__name__}")
    if "schema_version" not in data and data.get("kind") in TOOL_KINDS:
        raise InputError(
            path, f"kind: {data['kind']!r} is a data tool's record, not a metric report (docs/report_schema.md)"
        )
    if "schema_version" in data or "kind" in data:
        return [entry_from_report(_report(data, path), origin, path)]
    if "results" in data and "configs" in data:
        return _lmms_entries(data, path, origin)
    if "boards" in data and "schema" in data:
        raise InputError(path, "this is a built leaderboard, not a results file; point --results at the runs")
    raise InputError(
        path,
        "unrecognised results file: neither an ecac-bench report (no 'schema_version') "
        "nor an lmms-eval results file (no 'results'/'configs')",
    )


def _report(data: Mapping[str, Any], path: Path) -> Report:
    version = data.get("schema_version")
    if version != 2:
        hint = "a report written before schema 2; regenerate it with this ecac-bench" if version is None else ""
        raise InputError(path, f"schema_version: {version!r} is not 2 {f'({hint})' if hint else ''}".rstrip())
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        raise InputError(path, validation_message(exc)) from None


def protocol_text(report: Report) -> dict[str, str]:
    """The protocol fields of the report's kind (``registry.Kind.protocol``) as text, for the board rule."""
    kind = registry.kind_of_report(report.kind)
    assert kind is not None
    out = {}
    for name in kind.protocol:
        value = getattr(report.protocol, name)
        if name == "caption_prompt":
            out[name] = prompt_text(value)
        elif name == "judge":
            if value is not None:
                params = json.dumps({"params": value.params, "image": value.image}, sort_keys=True)
                out[name] = f"{value.model} {params} {prompt_text(value.prompt)}"
        elif value is not None:
            out[name] = str(value)
    return out


def entry_from_report(report: Report, origin: str, path: Path | str = "") -> Entry:
    """A measured entry from a validated report: its leaderboard metrics, their CIs, and its signature."""
    kind = registry.kind_of_report(report.kind)
    assert kind is not None
    if not kind.leaderboard:
        shown = sorted(k.report_kind for k in registry.kinds() if k.leaderboard)
        raise InputError(
            path or origin, f"kind: {report.kind!r} carries no leaderboard metrics; expected one of {shown}"
        )
    if report.protocol.match not in (None, "exact"):
        raise InputError(path or origin, f"protocol.match: {report.protocol.match!r}; the leaderboard ranks only the "
                         "exact rule")  # fmt: skip
    shown = {m.key for m in registry.metrics(kind.name) if m.table != "none"}
    metrics = {k: _number(v) for k, v in report.metrics.items() if k in shown and v is not None}
    ci = {k: (_number(v[0]), _number(v[1])) for k, v in (report.ci or {}).items() if k in shown and v is not None}
    judge_model = report.protocol.judge.model if report.protocol.judge else None
    if judge_model is None and isinstance(report.judge, Mapping) and isinstance(report.judge.get("model"), str):
        judge_model = report.judge["model"]
    facts = [f"{k} {report.config[k]}" for k in ("match", "extractor") if isinstance(report.config.get(k), str)]
    # A judge run says how many captions it scored and how many judgements failed (never counted as 0).
    facts += [f"{k} {report.metrics[k]}" for k in ("n", "n_failed") if isinstance(report.metrics.get(k), int)]
    facts += [note for note in (report.coverage.get("note"),) if isinstance(note, str)]
    harness = f"{report.harness.name} {report.harness.version}"
    ds = report.dataset
    return Entry(
        model=report.model.strip(),
        source="measured",
        dataset=DatasetId(ds.name, ds.split, ds.size, ds.sha256),
        metrics=metrics,
        ci=ci,
        protocol=protocol_text(report),
        provenance=Provenance(
            origin=origin,
            kind=report.kind,
            harness=harness + (f" via {report.harness.runner}" if report.harness.runner else ""),
            judge_model=judge_model,
            date=report.date,
            note="; ".join(facts) or None,
            signature=report.signature,
        ),
    )


# --- lmms-eval results files ---------------------------------------------------------------------------------------


class _LmmsResults(BaseModel):
    """The parts of an lmms-eval 0.7.3 results file the leaderboard reads (the file has many more)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    results: dict[str, dict[str, Any]]
    configs: dict[str, Any]
    versions: dict[str, Any] = {}
    n_samples: dict[str, Any] = Field(default={}, alias="n-samples")
    config: dict[str, Any] = {}
    model_name: str | None = None
    date: Any = None


def _lmms_model(data: _LmmsResults, path: Path) -> str:
    if data.model_name and data.model_name.strip():
        return data.model_name.strip()
    args = data.config.get("model_args")
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("pretrained", "model", "model_version", "model_name") and value.strip():
                return value.strip()
    return path.parent.name


def _model_args(data: _LmmsResults) -> dict[str, str]:
    args = data.config.get("model_args")
    pairs = (part.partition("=") for part in args.split(",")) if isinstance(args, str) else ()
    return {key.strip(): value.strip() for key, _, value in pairs if key.strip()}


def _pixels(data: _LmmsResults) -> str:
    """The captions' pixel budget when the model arguments state it (the qwen2_5_vl and vllm routes)."""
    args = _model_args(data)
    low, high = args.get("min_pixels"), args.get("max_pixels")
    return f"{low}-{high}" if low and high and low.isdigit() and high.isdigit() else "unknown"


def _decoding(config: Any) -> str:
    """The decoding the task asked for, as the protocol writes it (``ecac_bench.protocol.DECODING``)."""
    kwargs = config.get("generation_kwargs") if isinstance(config, Mapping) else None
    if not isinstance(kwargs, Mapping):
        return "unknown"
    greedy = kwargs.get("do_sample") is False or kwargs.get("temperature") == 0
    parts = ["greedy" if greedy else f"sample(temperature={kwargs.get('temperature')},top_p={kwargs.get('top_p')})"]
    if isinstance(kwargs.get("max_new_tokens"), int):
        parts.append(f"max_new_tokens={kwargs['max_new_tokens']}")
    parts.append(f"repetition_penalty={kwargs.get('repetition_penalty', 'checkpoint')}")
    return ",".join(parts)


def _lmms_date(data: _LmmsResults, path: Path) -> str:
    """The run's date from the file's ``date`` (``20261124_093015``) or, failing that, its name."""
    for candidate in (data.date, path.name):
        match = _LMMS_DATE.match(str(candidate)) if candidate is not None else None
        if match:
            try:
                return dt.date(*map(int, match.groups())).isoformat()
            except ValueError:
                continue
    raise InputError(path, f"date: {data.date!r} is not lmms-eval's YYYYMMDD_HHMMSS, nor does the file name start so")


def _task_kind(task: str, path: Path) -> registry.Kind:
    for kind in registry.kinds():
        if task in kind.lmms_tasks:
            return kind
    tasks = sorted(t for k in registry.kinds() for t in k.lmms_tasks)
    raise InputError(path, f"results.{task}: not an ECAC task this ecac-bench knows ({', '.join(tasks)})")


def _task_values(task: str, values: Mapping[str, Any], kind: registry.Kind, path: Path) -> dict[str, Any]:
    """The task's values by metric name; a metric given twice (two filters) is an error."""
    known = {*registry.keys(kind.name), "ecac_signature"}
    out: dict[str, Any] = {}
    for raw_key, value in sorted(values.items()):
        name = raw_key.partition(",")[0]  # "tts,none" -> "tts"; ECAC tasks use the default filter
        if name not in known:
            continue  # aliases, stderr entries, the failure count
        if name in out:
            raise InputError(path, f"results.{task}.{raw_key}: metric {name!r} is given more than once")
        out[name] = None if value == "N/A" else value
    return out


def reports_from_lmms_results(data: Mapping[str, Any], path: Path) -> list[tuple[str, Report | Entry]]:
    """(task, report) for every ECAC task of an lmms-eval results file that carries an ``ecac_signature``; (task,
    entry) for one that does not (a run of an older ecac-bench: its own board, never ranked with others)."""
    try:
        parsed = _LmmsResults.model_validate(data)
    except ValidationError as exc:
        raise InputError(path, validation_message(exc)) from None
    tasks = sorted(t for t in parsed.results if t.startswith(LMMS_TASK_PREFIX) and t not in _groups(parsed))
    if not tasks:
        raise InputError(path, f"results: no {LMMS_TASK_PREFIX}* task (tasks found: {sorted(parsed.results)})")
    model, date, out = _lmms_model(parsed, path), _lmms_date(parsed, path), []
    for task in tasks:
        kind = _task_kind(task, path)
        values = _task_values(task, parsed.results[task], kind, path)
        metrics = {k: v for k, v in values.items() if k != "ecac_signature"}
        if not isinstance(values.get("ecac_signature"), Mapping):
            out.append((task, _unsigned_entry(parsed, task, kind, metrics, model, date, path)))
            continue
        try:
            signature = LmmsSignature.model_validate(values["ecac_signature"])
            protocol = {
                **signature.protocol.model_dump(),
                "pixels": _pixels(parsed),
                "decoding": _decoding(parsed.configs.get(task)),
            }
            report = Report.model_validate(
                build_report(
                    signature.kind,
                    model=model,
                    dataset=signature.dataset.model_dump(),
                    metrics=metrics,
                    protocol=protocol,
                    ci=signature.ci,
                    ci_config=signature.ci_config.model_dump() if signature.ci_config else None,
                    date=date,
                    harness_info=signature.harness.model_dump(),
                    config={"lmms_eval_task": task},
                    coverage=_limit_note(parsed, task),
                )
            )
        except ValidationError as exc:
            raise InputError(path, f"results.{task}: {validation_message(exc)}") from None
        if report.kind != kind.report_kind:
            raise InputError(path, f"results.{task}.ecac_signature.kind: {report.kind!r}, not {kind.report_kind!r}")
        out.append((task, report))
    return out


def _limit_note(parsed: _LmmsResults, task: str) -> dict[str, str]:
    counts = parsed.n_samples.get(task)
    if isinstance(counts, Mapping):
        effective, original = counts.get("effective"), counts.get("original")
        if isinstance(effective, int) and isinstance(original, int) and effective < original:
            return {"note": f"lmms-eval --limit: {effective} of {original} images"}
    return {}


def _groups(parsed: _LmmsResults) -> set[str]:
    groups = parsed.model_extra.get("group_subtasks") if parsed.model_extra else None
    return {g for g, subtasks in groups.items() if subtasks} if isinstance(groups, Mapping) else set()


def _unsigned_entry(
    parsed: _LmmsResults,
    task: str,
    kind: registry.Kind,
    metrics: dict[str, Any],
    model: str,
    date: str,
    path: Path,
) -> Entry:
    """A task without provenance: its numbers, on a board of their own (its data is not known)."""
    values = {k: v for k, v in metrics.items() if v is not None}
    try:
        check_metric_values(kind.name, values, complete=False)
    except ValueError as exc:
        raise InputError(path, f"results.{task}.{exc}") from None
    # Every task of a run saw the same documents: the count lmms-eval gives for this task, else for another.
    counts = [parsed.n_samples.get(t) for t in (task, *sorted(parsed.n_samples))]
    sizes = [c.get("effective") for c in counts if isinstance(c, Mapping) and type(c.get("effective")) is int]
    size = sizes[0] if sizes else None
    shown = {m.key for m in registry.metrics(kind.name) if m.table != "none"}
    versions = parsed.versions.get(task)
    return Entry(
        model=model,
        source="measured",
        dataset=DatasetId(_NO_DATASET, None, size),
        metrics={k: _number(v) for k, v in values.items() if k in shown},
        provenance=Provenance(
            origin="",
            kind=f"lmms-eval {task}",
            harness="lmms-eval" + (f" ({task} v{versions})" if versions is not None else ""),
            date=date,
            note="the ECAC task reported no ecac_signature (the data it saw is unknown), so this run is not ranked "
            "with others",
        ),
    )


def _lmms_entries(data: Mapping[str, Any], path: Path, origin: str) -> list[Entry]:
    entries = []
    for task, item in reports_from_lmms_results(data, path):
        if isinstance(item, Entry):
            provenance = Provenance(**{**item.provenance.to_dict(), "origin": origin})
            entries.append(Entry(**{**item.__dict__, "provenance": provenance}))
        else:
            entry = entry_from_report(item, origin, path)
            provenance = Provenance(**{**entry.provenance.to_dict(), "kind": f"lmms-eval {task}"})
            entries.append(Entry(**{**entry.__dict__, "provenance": provenance}))
    return entries


# ---------------------------------------------------------------------------------------------- folders


def _visible_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files under ``folder`` with one of ``suffixes``, skipping hidden names (temp files, build folders)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def viewer_path(origin: str) -> str:
    """Where the site carries a results file's viewer page: ``viewer/`` + its origin with ``.html`` for ``.json``."""
    parts = [part for part in origin.split("/") if part not in ("", ".", "..")]
    parts[-1] = parts[-1].removesuffix(".json") + ".html"
    return "/".join([VIEWER_DIR, *parts])


def _viewer_page(path: Path, origin: str) -> ViewerPage | None:
    page = path.with_name(path.name.removesuffix(".json") + VIEWER_SUFFIX)
    if not page.is_file():
        return None
    site_path = viewer_path(origin)
    # The link: each part URL-quoted (file and folder names may hold anything but "/").
    return ViewerPage(site_path, "/".join(quote(part, safe="") for part in site_path.split("/")), page)


def _facts_by_name(
    loaded: Sequence[tuple[Path, list[ModelFacts]]], problems: list[InputError]
) -> dict[str, ModelFacts]:
    """Every model name and id (case-folded) -> its facts; a name given facts in two files is a problem of the
    second (files in sorted order)."""
    out: dict[str, ModelFacts] = {}
    where: dict[str, Path] = {}
    for path, facts in loaded:
        clash = sorted({n for f in facts for n in f.names if n.casefold() in out})
        if clash:
            first = where[clash[0].casefold()]
            problems.append(InputError(path, f"models: {clash} already have facts in {first}"))
            continue
        for item in facts:
            for name in item.names:
                out[name.casefold()], where[name.casefold()] = item, path
    return out


def _with_facts(entry: Entry, facts: dict[str, ModelFacts], path: Path) -> Entry:
    """The entry with its model's facts; a reported size that contradicts them is a problem of the entry's file."""
    item = facts.get(entry.model.casefold())
    if item is None:
        return entry
    if entry.source == "reported" and None not in (entry.params_b, item.params_b) and entry.params_b != item.params_b:
        raise InputError(path, f"{entry.model}: params_b {entry.params_b:g} here, {item.params_b:g} in its model facts")
    params_b = entry.params_b if entry.params_b is not None else item.params_b
    return dataclasses.replace(entry, facts=item, params_b=params_b)


def load_inputs(baseline_dirs: Sequence[Path], results_dirs: Sequence[Path]) -> LoadResult:
    """Read every input; problems are collected (not raised) so the caller can report them all at once."""
    out = LoadResult()
    for folder in [*baseline_dirs, *results_dirs]:
        if not folder.is_dir():
            out.problems.append(InputError(folder, "not a folder"))
    loaded: list[tuple[Path, list[Entry]]] = []
    facts: list[tuple[Path, list[ModelFacts]]] = []
    for folder in baseline_dirs:
        for path in _visible_files(folder, BASELINE_SUFFIXES) if folder.is_dir() else []:
            try:
                entries, models = _parse_baselines(path)
            except InputError as exc:
                out.problems.append(exc)
                continue
            loaded.append((path, entries))
            facts.append((path, models))
    pages: dict[str, Path] = {}
    for folder in results_dirs:
        for path in _visible_files(folder, (".json",)) if folder.is_dir() else []:
            # Named relative to the folder given, so the site does not depend on where it was built.
            origin = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            try:
                entries = parse_results_file(path, origin)
                page = _viewer_page(path, origin)
                if page and pages.setdefault(page.path, page.source) != page.source:
                    raise InputError(page.source, f"its site copy {page.path} is also {pages[page.path]}'s")
            except InputError as exc:
                out.problems.append(exc)
                continue
            loaded.append((path, [dataclasses.replace(e, viewer=page) for e in entries]))
    by_name = _facts_by_name(facts, out.problems)
    for path, entries in loaded:
        try:
            out.entries.extend([_with_facts(entry, by_name, path) for entry in entries])
        except InputError as exc:
            out.problems.append(exc)
    return out
