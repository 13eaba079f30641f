"""SVG charts drawn at build time (no JavaScript, no CDN): TTS vs judge score, and TTS per precision level.

Each chart is drawn at its natural size in pixels (``width``/``height``) and never scaled down: on a narrow screen it
scrolls inside its own box, so no text is ever rendered below its font size (11 px at the least). The bars are drawn
340 px wide, which fits a phone; the scatter needs 640. Every text that comes from an input (model names) is shown
by ``text.shown`` and escaped; numbers are formatted with fixed precision so the same inputs give byte-identical SVG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from ecac_bench import registry
from ecac_bench.leaderboard.entries import Row
from ecac_bench.leaderboard.filters import filter_attrs
from ecac_bench.leaderboard.text import shown

COLORS = {"reported": "#3b5bdb", "measured": "#e8590c"}
LEVEL_COLORS = {"low": "#2f9e44", "medium": "#f08c00", "high": "#c92a2a"}
FINE = (("low", "tts_fl", "tts_bl"), ("medium", "tts_fm", "tts_bm"), ("high", "tts_fh", "tts_bh"))
FONT = "font-family='system-ui, sans-serif'"
# The scatter's axes; their labels and ranges come from the registry.
X_KEY, Y_KEY = "tts", "judge_score"


def _axis_label(key: str) -> str:
    metric = registry.leaderboard_metric(key)
    return f"{metric.label} ({metric.range})"


def _f(x: float) -> str:
    return f"{x:.1f}"


def _axis(values: Sequence[float]) -> tuple[float, float, float]:
    """(low, high, step) for an axis covering ``values``: rounded out to tens, ticks every 10 or 20."""
    lo, hi = math.floor(min(values) / 10) * 10, math.ceil(max(values) / 10) * 10
    hi = max(hi, lo + 10)
    step = 10 if hi - lo <= 60 else 20
    lo = math.floor(lo / step) * step
    hi = math.ceil(hi / step) * step
    return float(max(lo, 0)), float(hi), float(step)


def _svg_open(chart_id: str, width: int, height: int, title: str) -> list[str]:
    return [
        f"<svg id='{chart_id}' class='chart' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        f"role='img' aria-labelledby='{chart_id}-t' xmlns='http://www.w3.org/2000/svg' {FONT} font-size='12'>",
        f"<title id='{chart_id}-t'>{title}</title>",
    ]


def _text_width(text: str, size: float = 11.0) -> float:
    """Rough rendered width: CJK and other wide characters about one em, the rest about 0.58 em."""
    return sum(size if ord(ch) >= 0x3000 else size * 0.58 for ch in text)


Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_labels(points: Sequence[tuple[float, float, str]], bounds: Box) -> list[tuple[float, float, str]]:
    """Greedy label placement: right of the point, else nudged up/down, else on the left; (x, y, anchor) each."""
    taken: list[Box] = [(x - 6, y - 6, x + 6, y + 6) for x, y, _ in points]
    placed = []
    for x, y, text in points:
        width, choice = _text_width(text), None
        for side in ("start", "end"):
            for dy in (0, -13, 13, -26, 26, -39, 39):
                lx = x + 9 if side == "start" else x - 9
                x0 = lx if side == "start" else lx - width
                box = (x0 - 3, y + dy - 9, x0 + width + 3, y + dy + 3)  # 3 px of air on either side
                inside = box[0] >= bounds[0] and box[2] <= bounds[2] and box[1] >= bounds[1] and box[3] <= bounds[3]
                if inside and not any(_overlaps(box, t) for t in taken):
                    choice = (lx, y + dy + 1, side, box)  # text baseline
                    break
            if choice:
                break
        if choice is None:  # crowded: accept an overlap rather than drop the name
            choice = (x + 9, y + 1, "start", (x + 9, y - 8, x + 9 + width, y + 4))
        taken.append(choice[3])
        placed.append(choice[:3])
    return placed


def scatter_tts_judge(rows: Sequence[Row], chart_id: str) -> Markup | None:
    """TTS (x) against judge score (y) for rows that have both; None when no row has both."""
    points = sorted(
        (r for r in rows if "tts" in r.metrics and "judge_score" in r.metrics),
        key=lambda r: (-r.metrics["judge_score"], r.metrics["tts"], r.display_name),
    )
    if not points:
        return None
    width, height, left, right, top, bottom = 640, 400, 56, 24, 40, 48
    x0, x1, xstep = _axis([r.metrics["tts"] for r in points])
    y0, y1, ystep = _axis([r.metrics["judge_score"] for r in points])
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return top + ph - (v - y0) / (y1 - y0) * ph

    out = _svg_open(chart_id, width, height, "TTS against judge score")
    for i in range(round((x1 - x0) / xstep) + 1):
        xv = x0 + i * xstep
        out.append(
            f"<line x1='{_f(sx(xv))}' y1='{top}' x2='{_f(sx(xv))}' y2='{top + ph}' class='grid'/>"
            f"<text x='{_f(sx(xv))}' y='{top + ph + 16}' text-anchor='middle' class='tick'>{xv:g}</text>"
        )
    for i in range(round((y1 - y0) / ystep) + 1):
        yv = y0 + i * ystep
        out.append(
            f"<line x1='{left}' y1='{_f(sy(yv))}' x2='{left + pw}' y2='{_f(sy(yv))}' class='grid'/>"
            f"<text x='{left - 8}' y='{_f(sy(yv) + 4)}' text-anchor='end' class='tick'>{yv:g}</text>"
        )
    out.append(
        f"<text x='{left + pw / 2}' y='{height - 10}' text-anchor='middle' class='axis-label'>"
        f"{_axis_label(X_KEY)}</text>"
        f"<text x='14' y='{top + ph / 2}' text-anchor='middle' class='axis-label' "
        f"transform='rotate(-90 14 {top + ph / 2})'>{_axis_label(Y_KEY)}</text>"
    )
    for i, (source, color) in enumerate(COLORS.items()):
        lx = left + i * 100
        out.append(
            f"<circle cx='{lx + 5}' cy='14' r='5' fill='{color}'/>"
            f"<text x='{lx + 14}' y='18' class='tick'>{source}</text>"
        )
    xy = [(sx(r.metrics["tts"]), sy(r.metrics["judge_score"]), shown(r.display_name)) for r in points]
    labels = _place_labels(xy, (left + 2, top - 10, width - 2, top + ph + 4))
    for row, (x, y, _), (lx, ly, anchor) in zip(points, xy, labels, strict=True):
        name = escape(shown(row.display_name))
        leader = ""
        if abs(ly - (y + 1)) > 1:  # label nudged away from its point: draw a thin line to it
            end_x = lx - 2 if anchor == "start" else lx + 2
            leader = f"<line x1='{_f(x)}' y1='{_f(y)}' x2='{_f(end_x)}' y2='{_f(ly - 4)}' class='leader'/>"
        out.append(
            f"<g class='point {row.source}'{filter_attrs(row)}>{leader}"
            f"<circle cx='{_f(x)}' cy='{_f(y)}' r='5.5' fill='{COLORS[row.source]}'>"
            f"<title>{name}: TTS {row.metrics['tts']:.2f}, judge {row.metrics['judge_score']:.2f} "
            f"({row.source})</title></circle>"
            f"<text x='{_f(lx)}' y='{_f(ly)}' text-anchor='{anchor}' class='point-label'>{name}</text></g>"
        )
    out.append("</svg>")
    return Markup("".join(out))


def bars_per_level(rows: Sequence[Row], chart_id: str) -> Markup | None:
    """Per model, its name and below it TTS for each precision level, foreground (solid) and background (light) bars
    one under the other, each with its value; drawn 340 px wide, so that it fits a phone unscaled."""
    shown_rows = [r for r in rows if any(k in r.metrics for _, fg, bg in FINE for k in (fg, bg))]
    if not shown_rows:
        return None
    width, top, name_h, bar, gap, block_gap, axis_h = 340, 44, 18, 11, 2, 14, 22
    pw = width - 42  # room for the value after a full bar ("100.00" at 11 px is about 37 px)
    block = name_h + 6 * bar + 5 * gap
    height = top + len(shown_rows) * (block + block_gap) + axis_h

    def sx(v: float) -> float:
        return v / 100 * pw

    title = "TTS per toy precision level, foreground and background"
    out = _svg_open(chart_id, width, height, title)
    for i, (level, color) in enumerate(LEVEL_COLORS.items()):
        lx = i * 80
        out.append(
            f"<rect x='{lx}' y='4' width='12' height='12' fill='{color}'/>"
            f"<text x='{lx + 16}' y='14' class='tick'>{level}</text>"
        )
    out.append("<text x='0' y='32' class='tick'>solid = foreground, light = background</text>")
    for tick in range(0, 101, 20):
        anchor = "start" if tick == 0 else "end" if tick == 100 else "middle"
        out.append(
            f"<line x1='{_f(sx(tick))}' y1='{top - 4}' x2='{_f(sx(tick))}' y2='{height - axis_h + 4}' class='grid'/>"
            f"<text x='{_f(sx(tick))}' y='{height - 6}' text-anchor='{anchor}' class='tick'>{tick}</text>"
        )
    for i, row in enumerate(shown_rows):
        y = top + i * (block + block_gap)
        name = escape(shown(row.display_name))
        out.append(f"<g class='series {row.source}'{filter_attrs(row)}>")
        out.append(f"<text x='0' y='{_f(y + 13)}' class='bar-label'>{name}</text>")
        for j, (level, fg, bg) in enumerate(FINE):
            for k, (key, ground, opacity) in enumerate(((fg, "foreground", 1.0), (bg, "background", 0.45))):
                by = y + name_h + (2 * j + k) * (bar + gap)
                value = row.metrics.get(key)
                text = "n/a" if value is None else f"{value:.2f}"
                out.append(
                    f"<rect x='0' y='{_f(by)}' width='{_f(sx(value or 0))}' height='{bar}' "
                    f"fill='{LEVEL_COLORS[level]}' fill-opacity='{opacity}'>"
                    f"<title>{name}: {level}, {ground}: {text}</title></rect>"
                    f"<text x='{_f(sx(value or 0) + 4)}' y='{_f(by + bar - 1.5)}' class='bar-value'>{text}</text>"
                )
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))
