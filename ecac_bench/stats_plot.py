"""A one-figure picture of a dataset's make-up (the paper's Fig. 2): images per area, toys per level and ground."""

from __future__ import annotations

import warnings
from pathlib import Path

from ecac_bench.data import GROUNDS, LEVELS
from ecac_bench.stats import DatasetStats

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Zen Hei", "Source Han Sans SC", "SimHei")
CATEGORY_COLORS = {"outdoor": "#2f9e44", "classroom": "#1c7ed6", "specialty": "#e8590c"}


def plot_stats(stats: DatasetStats, title: str, out: str | Path) -> Path:
    """Write the figure (format from the suffix: .svg, .png, .pdf). Needs matplotlib (the ``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'ecac-bench[plot]'") from exc
    from matplotlib import font_manager

    # Area names are mostly Chinese: use a CJK font when one is installed, and keep SVG text as text.
    installed = {f.name for f in font_manager.fontManager.ttflist}
    cjk = [f for f in CJK_FONTS if f in installed]
    plt.rcParams["font.sans-serif"] = [*cjk, "DejaVu Sans"]
    plt.rcParams["svg.fonttype"] = "none"
    areas = list(stats.images_per_area.items())
    if not cjk and any(not a.isascii() for a, _ in areas):
        warnings.warn(
            "no CJK font found: Chinese area names will not render in PNG/PDF (install e.g. fonts-noto-cjk); "
            "SVG output keeps them as text",
            stacklevel=2,
        )
    fig, (ax_area, ax_toys) = plt.subplots(
        1, 2, figsize=(12, max(3.5, 0.28 * len(areas) + 1.5)), gridspec_kw={"width_ratios": [3, 2]}
    )
    names = [a for a, _ in areas][::-1]
    counts = [info["images"] for _, info in areas][::-1]
    colors = [CATEGORY_COLORS.get(info["category"], "#868e96") for _, info in areas][::-1]
    ax_area.barh(names, counts, color=colors)
    ax_area.set_xlabel("images")
    ax_area.set_title(f"images per activity area ({len(areas)} areas)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in CATEGORY_COLORS.values()]
    labels = [f"{c} ({stats.images_per_category.get(c, 0)})" for c in CATEGORY_COLORS]
    ax_area.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    width = 0.38
    for i, ground in enumerate(GROUNDS):
        values = [stats.toys_per_level_ground[level][ground] for level in LEVELS]
        ax_toys.bar([x + (i - 0.5) * width for x in range(len(LEVELS))], values, width, label=ground)
    ax_toys.set_xticks(range(len(LEVELS)), LEVELS)
    ax_toys.set_title(f"toys per precision level ({stats.toys} toys)")
    ax_toys.legend(frameon=False)
    fig.suptitle(title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # one warning above is enough, not one per missing glyph
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.tight_layout()
        fig.savefig(out, metadata={"Date": None} if out.suffix == ".svg" else None)
    plt.close(fig)
    return out
