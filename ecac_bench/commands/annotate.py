"""`ecac-bench annotate`: ECAC-format data from your own photos (a model's caption and toys), expert review of the
toys through a CSV, and a seeded train/test split."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ecac_bench.annotate.datafile import load_rows, write_rows
from ecac_bench.annotate.inputs import load_photos
from ecac_bench.annotate.pipeline import LANGS, Prompts, annotate_photos
from ecac_bench.annotate.review import export_review, import_review
from ecac_bench.annotate.split import assign_splits, parse_fractions, split_summary
from ecac_bench.commands._llm import add_llm_args, llm_report_fields, llm_settings
from ecac_bench.commands._output import say, text
from ecac_bench.data import jsonl_rows
from ecac_bench.llm import LLMClient
from ecac_bench.report import file_sha256, tool_record, write_bytes_atomic, write_json_atomic

# Failed photos and review changes printed in full up to this many (all of them go to --json).
SHOWN = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "annotate",
        help="annotate your own photos in the ECAC format (caption and toys by a model), review, split",
        description="Photos are read where they are and sent only to the endpoint you configure (--vlm-base-url, "
        "else the judge endpoint); nothing is copied. See docs/data_format.md, 'Annotate your own photos'.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--images",
        type=Path,
        help="annotate: a folder of photos, or a JSONL of {image, id?, category?, area?, group?} rows",
    )
    action.add_argument("--review-export", type=Path, metavar="CSV", help="write the toys of --data for review")
    action.add_argument(
        "--review-import", type=Path, metavar="CSV", help="apply a reviewed CSV to --data, write the result to --out"
    )
    parser.add_argument("--data", type=Path, help="the data file to review or split (JSONL)")
    parser.add_argument("--out", type=Path, help="the data file to write (JSONL, atomically)")
    parser.add_argument("--lang", choices=LANGS, default="zh", help="prompt language (default zh)")
    parser.add_argument(
        "--group-by-folder", action="store_true", help="with a folder: a photo's group is its first sub-folder"
    )
    parser.add_argument(
        "--split",
        metavar="NAME=F,...",
        help="seeded split by image, or by group when records have one (e.g. train=0.8,test=0.2); with --images "
        "on the output, else on --data",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --split (default 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an output holding human-reviewed records, or a review CSV"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write a JSON report here")
    add_llm_args(parser, vlm=True, parse_retries=2)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.split is not None and (args.review_export or args.review_import):
        raise ValueError("--split: applies to --images or to --data alone, not to a review step")
    if args.images is not None:
        return _annotate(args)
    if args.review_export is not None:
        return _review_export(args)
    if args.review_import is not None:
        return _review_import(args)
    if args.split is not None:
        return _split(args)
    raise ValueError("annotate: give --images, --review-export, --review-import or --split (see --help)")


def _need(args: argparse.Namespace, *flags: str) -> None:
    """The flags are given; the files to write (``--out``, ``--review-export``) are not folders."""
    for flag in flags:
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is None:
            raise ValueError(f"{flag}: required here")
        if flag in ("--out", "--review-export") and value.is_dir():
            raise ValueError(f"{flag} {value}: is a folder; give a file name")


def _reviewed_records(path: Path) -> int:
    """How many records of an existing data file a human reviewed (unreadable lines count as none)."""
    return sum(isinstance(row, dict) and bool(row.get("reviewed")) for _, row in jsonl_rows(path, lambda *a: None))


def _with_split(records: Sequence[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any] | None:
    """Set each record's ``split`` (placed after its caption) by ``--split``; the split's summary, or None."""
    if args.split is None:
        return None
    fractions = parse_fractions(args.split)
    assigned = assign_splits(records, fractions, args.seed)
    for record in records:
        items = [(k, v) for k, v in record.items() if k != "split"]
        at = next((i + 1 for i, (k, _) in enumerate(items) if k == "caption"), len(items))
        items.insert(at, ("split", assigned[record["id"]]))
        record.clear()
        record.update(items)
    summary = split_summary(records, assigned)
    say(
        f"split (seed {args.seed}): ",
        text(", ".join(f"{name} {s['images']} images / {s['groups']} groups" for name, s in summary.items())),
    )
    return {"fractions": {k: float(v) for k, v in fractions.items()}, "seed": args.seed, "splits": summary}


def _llm_fields(client: LLMClient) -> dict[str, Any]:
    """What the report records about the model and its calls (never the key), the model named as the annotator."""
    fields = llm_report_fields(client)
    fields["annotator"] = fields.pop("judge")
    return fields


def _annotate(args: argparse.Namespace) -> int:
    _need(args, "--out")
    if args.split is not None:
        parse_fractions(args.split)  # a bad flag is an error before anything is sent
    if args.out.exists() and not args.overwrite and (n := _reviewed_records(args.out)):
        raise ValueError(
            f"--out {args.out}: holds {n} human-reviewed record(s) that a new annotation would replace; write to "
            "another file, or pass --overwrite"
        )
    settings = llm_settings(args)
    photos = load_photos(args.images, group_by_folder=args.group_by_folder)
    client = LLMClient.from_settings(settings, "vlm")
    say(
        f"annotating {len(photos)} photos with ",
        text(client.config.model),
        " at ",
        text(", ".join(client.config.endpoint.public_urls)),
        " (the photos are sent there, and nowhere else)",
    )
    result = asyncio.run(
        annotate_photos(client, photos, args.out.parent, lang=args.lang, parse_retries=settings.parse_retries)
    )
    split = _with_split(result.records, args)
    if result.records:
        write_rows(args.out, result.records)
        say(f"{len(result.records)} of {len(photos)} photos annotated -> ", text(args.out))
    failed = result.failed_ids
    if failed:
        say((f"{len(failed)} photo(s) left out (a step failed; listed, never guessed):", "yellow"))
        for failure in result.failures[:SHOWN]:
            say("  ", text(f"{failure.id} ({failure.step}): {failure.error}"))
        if len(result.failures) > SHOWN:
            say(f"  ... and {len(result.failures) - SHOWN} more (--json lists them all)")
    stats = client.stats
    say(
        f"requests: {stats.requests} ({stats.cached} cached, {stats.answered} answered, {stats.failed} failed); "
        f"tokens paid in this run: {stats.new_prompt_tokens} prompt + {stats.new_completion_tokens} completion"
    )
    if args.json:
        report = tool_record(
            "ecac-bench/annotate",
            model=client.config.model,
            dataset={
                "name": args.out.stem,
                "path": str(args.out),
                "size": len(result.records),
                "sha256": file_sha256(args.out) if result.records else None,
            },
            metrics={
                "photos": len(photos),
                "annotated": len(result.records),
                "failed": len(failed),
                "toys": sum(len(r["toys"]) for r in result.records),
                "scene_asked": result.asked["scene"],
            },
            config={
                "lang": args.lang,
                "prompts": Prompts.load(args.lang).identities(),
                "parse_retries": settings.parse_retries,
                "input": str(args.images),
                "split": split,
            },
            failures=[f.to_dict() for f in result.failures],
            **_llm_fields(client),
        )
        write_json_atomic(args.json, report)
    if not result.records:
        say(("no photo annotated: nothing written", "red"))
        return 1
    return 1 if failed else 0


def _review_export(args: argparse.Namespace) -> int:
    _need(args, "--data", "--review-export")
    target = args.review_export
    if target.exists() and not args.overwrite:
        raise ValueError(f"--review-export {target}: exists (a review in progress?); pass --overwrite to replace it")
    rows = load_rows(args.data)
    write_bytes_atomic(target, export_review(rows))
    n_toys = sum(len(r["toys"]) for r in rows)
    say(f"{n_toys} toys of {len(rows)} images -> ", text(target), " (UTF-8 with BOM; open it in a spreadsheet)")
    return 0


def _review_import(args: argparse.Namespace) -> int:
    _need(args, "--data", "--out")
    rows = load_rows(args.data)
    result = import_review(rows, args.review_import)
    write_rows(args.out, result.rows)
    counts = result.counts()
    say(
        f"review applied to {result.reviewed_images} images ({result.untouched_images} not in the CSV, unchanged): "
        f"{counts['added']} toys added, {counts['removed']} removed, {counts['edited']} edited -> ",
        text(args.out),
    )
    for change in result.changes[:SHOWN]:
        say("  ", text(change))
    if len(result.changes) > SHOWN:
        say(f"  ... and {len(result.changes) - SHOWN} more (--json lists them all)")
    for note in result.notes:
        say(("note: ", "yellow"), text(note))
    if args.json:
        report = tool_record(
            "ecac-bench/annotate-review",
            model="expert review",
            dataset={"name": args.out.stem, "path": str(args.out), "size": len(rows), "sha256": file_sha256(args.out)},
            metrics={**counts, "reviewed_images": result.reviewed_images, "untouched_images": result.untouched_images},
            config={
                "data": str(args.data),
                "csv": {"path": str(args.review_import), "sha256": file_sha256(args.review_import)},
            },
            changes=[
                {"id": c.id, "kind": c.kind, "name": c.name, "fields": list(c.fields), "detail": c.detail}
                for c in result.changes
            ],
            notes=result.notes,
        )
        write_json_atomic(args.json, report)
    return 0


def _split(args: argparse.Namespace) -> int:
    _need(args, "--data", "--out")
    rows = load_rows(args.data)
    _with_split(rows, args)
    write_rows(args.out, rows)
    say(f"{len(rows)} records -> ", text(args.out))
    return 0
