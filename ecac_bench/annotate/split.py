"""A seeded train/test split of a dataset, by image or by group (a classroom never sits on both sides).

The rule: the *units* are the groups (records with the same ``group``) and the records without a group (one unit
each). Units are sorted by key, shuffled with ``random.Random(seed)``, and laid end to end on a line of length N
(the number of records), each unit as long as its number of records. The fractions cut the line into consecutive
segments, one per split in the order given; a unit goes to the split whose segment holds its midpoint (a midpoint
exactly on a cut goes to the later split; the arithmetic is exact, in fractions). So a split gets its share of the
records to within half a unit, the result depends only on the records' ids and groups, the fractions and the seed
(not on the file's order), and a group is never divided.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any


def parse_fractions(text: str) -> dict[str, Fraction]:
    """``train=0.8,test=0.2`` -> ``{"train": 4/5, "test": 1/5}`` (exact decimals): at least two splits, names unique
    and non-empty, fractions > 0 that sum to exactly 1. The error names the flag."""
    out: dict[str, Fraction] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise ValueError(f"--split: expected NAME=FRACTION[,NAME=FRACTION...], got {text!r}")
        if name in out:
            raise ValueError(f"--split: split {name!r} is given twice")
        try:
            fraction = Fraction(value)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"--split: {name}: not a number: {value!r}") from None
        if fraction <= 0:
            raise ValueError(f"--split: {name}: the fraction must be > 0, got {value}")
        out[name] = fraction
    if len(out) < 2:
        raise ValueError(f"--split: give at least two splits, e.g. train=0.8,test=0.2 (got {text!r})")
    if sum(out.values()) != 1:
        raise ValueError(f"--split: the fractions must sum to 1, they sum to {float(sum(out.values())):g}")
    return out


def assign_splits(records: Sequence[Mapping[str, Any]], fractions: Mapping[str, Fraction], seed: int) -> dict[str, str]:
    """Record id -> split name, by the rule in the module docstring (records with ``id`` and optional ``group``)."""
    units: dict[tuple[str, str], list[str]] = {}
    for record in records:
        group = record.get("group")
        key = ("group", group) if group is not None else ("image", record["id"])
        units.setdefault(key, []).append(record["id"])
    order = sorted(units)
    random.Random(seed).shuffle(order)
    names = list(fractions)
    total = len(records)
    bounds, acc = [], Fraction(0)
    for name in names:
        acc += fractions[name]
        bounds.append(acc * total)
    out: dict[str, str] = {}
    start = 0
    for key in order:
        ids = units[key]
        middle = Fraction(2 * start + len(ids), 2)
        split = next((n for n, b in zip(names, bounds, strict=True) if middle < b), names[-1])
        out.update(dict.fromkeys(ids, split))
        start += len(ids)
    return out


def split_summary(records: Sequence[Mapping[str, Any]], assigned: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Per split: records and groups."""
    summary: dict[str, dict[str, Any]] = {}
    for record in records:
        entry = summary.setdefault(assigned[record["id"]], {"images": 0, "groups": set()})
        entry["images"] += 1
        if record.get("group") is not None:
            entry["groups"].add(record["group"])
    return {name: {"images": e["images"], "groups": len(e["groups"])} for name, e in summary.items()}
