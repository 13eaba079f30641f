"""An adversarial data set for the exact matching rule: Unicode normalisation and word boundaries at their edges.

Each case is a toy list and the caption(s) of one image, chosen where a fast path could go wrong: full-width forms,
NFKC expansions (ligatures, squared units, Roman numerals, fractions, mathematical letters outside the BMP),
zero-width spaces and joiners, combining marks (composed and decomposed), Hangul jamo, the final sigma, dotted
capital I, every kind of whitespace, mixed CJK and Latin text, Latin names against ASCII letters, digits and other
characters on both sides, aliases, several captions per image, and the separators a batched normaliser might use.
The set is repeated (with ids and areas varied) to ``size`` records, so that it also runs through the paths that
only large inputs take. ``bench/score_throughput.py`` checks that ``score`` reports on it are byte-identical to
those of the code before the fast path; ``tests/test_metrics.py`` that the fast and the detailed paths agree on it.

    write_adversarial_set(folder, size) -> (data.jsonl, predictions.jsonl)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# (toys, captions): a toy is (name, level, ground, aliases); an image with captions None has no prediction row.
Case = tuple[list[tuple[str, str, str, list[str]]], list[str] | None]

CASES: list[Case] = [
    # Word boundaries: ASCII letters and digits block, anything else does not.
    ([("car", "low", "foreground", [])], ["a red car."]),
    ([("car", "low", "foreground", [])], ["a cart and a scar"]),
    ([("car", "medium", "background", [])], ["car2 is here, car_ too"]),
    ([("car", "high", "foreground", [])], ["cart, then car"]),  # a later occurrence on boundaries
    ([("car", "low", "background", [])], ["car"]),
    ([("car", "low", "foreground", [])], ["écar 玩car玩 (car)"]),
    ([("lego", "medium", "foreground", ["ＬＥＧＯ"])], ["ＬＥＧＯ-like bricks"]),
    ([("lego", "low", "background", [])], ["legos and mylego"]),
    ([("unit blocks", "medium", "foreground", [])], ["they stack UNIT\u3000\u3000BLOCKS\t"]),
    ([("unit blocks", "medium", "foreground", [])], ["unitblocks, unit\u00a0blocks"]),
    ([("3d拼图", "high", "foreground", [])], ["a3d拼图 做3D拼图游戏"]),
    # NFKC expansions and full-width forms, on either side.
    ([("fish", "low", "foreground", [])], ["a \ufb01sh tank"]),  # the fi ligature
    ([("kg", "low", "background", [])], ["5\u338f of sand"]),  # SQUARE KG
    ([("iv", "medium", "background", [])], ["block \u2163 and"]),  # ROMAN NUMERAL FOUR
    ([("1/2", "low", "foreground", [])], ["\u00bd cup"]),  # VULGAR FRACTION ONE HALF: 1⁄2, not 1/2
    ([("lego", "high", "background", [])], ["\U0001d40b\U0001d404\U0001d406\U0001d40e bricks"]),  # bold LEGO
    ([("积木", "low", "foreground", []), ("彩泥", "high", "background", ["橡皮泥"])], ["孩子们，在玩积木和橡皮泥！"]),
    ([("积木", "low", "foreground", [])], ["孩子们在玩积\u200b木"]),  # a zero-width space inside the name
    ([("积\u200d木", "medium", "foreground", [])], ["积\u200d木 and 积木"]),  # a joiner in the name itself
    # Combining marks and Hangul, composed and decomposed.
    ([("café", "low", "foreground", [])], ["cafe\u0301 corner"]),
    ([("cafe\u0301", "low", "background", [])], ["café corner"]),
    ([("가방", "medium", "foreground", [])], ["\u1100\u1161\u1107\u1161\u11bc 놀이"]),
    ([("e\u0301", "low", "foreground", [])], ["\u0301e\u0301"]),  # a mark at the start of a caption
    # Case: the final sigma, the dotted capital I, full-width capitals.
    ([("σοφια", "low", "foreground", [])], ["ΣΟΦΙΑ and ΣΟΦΙΑΣ"]),
    ([("οδος", "medium", "background", ["οδοσ"])], ["ΟΔΟΣ"]),
    ([("i\u0307stanbul", "low", "foreground", [])], ["İSTANBUL"]),
    ([("ｂｌｏｃｋｓ", "high", "foreground", [])], ["BLOCKS"]),
    # Whitespace of every kind, and texts that are only whitespace or empty after normalisation.
    ([("play dough", "low", "background", [])], ["\u2003play\u2028dough\u0085"]),
    ([("play dough", "low", "background", [])], ["play\x1cdough"]),
    ([("sand", "low", "foreground", [])], [" \u3000 "]),
    # The characters a batched normaliser may join texts with, inside captions and names.
    ([("a\u2400b", "low", "foreground", [])], ["x a\u2400b y"]),
    ([("sand", "low", "foreground", [])], ["sand\x00box"]),
    # Several captions per image: named when any caption names the toy, never across two captions.
    ([("car", "low", "foreground", []), ("积木", "medium", "background", [])], ["ca", "r 积", "木", "a car"]),
    ([("unit blocks", "low", "foreground", [])], ["unit", "blocks"]),
    # No toys; no prediction at all (scored as an empty caption with --allow-missing).
    ([], ["nothing to see"]),
    ([("car", "low", "foreground", [])], None),
    ([("xylophone", "high", "background", ["木琴"]), ("drum", "low", "foreground", ["手鼓"])], ["奥尔夫木琴, a drum"]),
]

CATEGORIES = ("outdoor", "classroom", "specialty")


def records_and_predictions(size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``size`` data records cycling through CASES, and their prediction rows (one-caption rows where possible)."""
    records, predictions = [], []
    for i in range(size):
        toys, captions = CASES[i % len(CASES)]
        record_id = f"adv-{i:07d}"
        record = {
            "id": record_id,
            "image": f"images/{i}.jpg",
            "category": CATEGORIES[i % 3],
            "area": f"区域-{i % 7}",
            "caption": "reference",
            "split": "test",
            "toys": [
                {"name": n, "level": lv, "ground": g, **({"aliases": aliases} if aliases else {})}
                for n, lv, g, aliases in toys
            ],
        }
        records.append(record)
        if captions is not None:
            one = len(captions) == 1
            predictions.append({"id": record_id, **({"caption": captions[0]} if one else {"captions": captions})})
    return records, predictions


def write_adversarial_set(folder: Path, size: int = len(CASES)) -> tuple[Path, Path]:
    """Write the set (``size`` records) as data.jsonl and predictions.jsonl in ``folder``; return both paths."""
    records, predictions = records_and_predictions(size)
    data, preds = folder / "adversarial.jsonl", folder / "adversarial_predictions.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    preds.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions), encoding="utf-8")
    return data, preds
