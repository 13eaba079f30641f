"""The page's filters (plain JavaScript in templates/site.js): what a row is matched on, the same for its table rows
and its chart marks. Search matches the shown name, variant and the model's other names; the size filter groups rows
by parameters as the Open VLM leaderboard does."""

from __future__ import annotations

from markupsafe import Markup

from ecac_bench.leaderboard.entries import Row
from ecac_bench.leaderboard.text import shown

# (value, label, low, high): billions of parameters, the lower bound included.
SIZE_BUCKETS = (
    ("lt4", "< 4B", 0.0, 4.0),
    ("4-10", "4–10B", 4.0, 10.0),
    ("10-20", "10–20B", 10.0, 20.0),
    ("20-40", "20–40B", 20.0, 40.0),
    ("ge40", "≥ 40B", 40.0, float("inf")),
)
SIZE_UNKNOWN = "unknown"


def size_bucket(params_b: float | None) -> str:
    if params_b is None:
        return SIZE_UNKNOWN
    return next(key for key, _, low, high in SIZE_BUCKETS if low <= params_b < high)


def search_text(row: Row) -> str:
    """What the search box matches (lower case; the script lower-cases the query)."""
    names = (row.display_name, row.variant or "", *(row.facts.ids if row.facts else ()))
    return " ".join(shown(name) for name in names if name).lower()


def filter_attrs(row: Row) -> Markup:
    """The attributes the filter script reads, for a table row or a chart mark."""
    return Markup(' data-name="%s" data-size="%s"') % (search_text(row), size_bucket(row.params_b))
