"""CSV cells a spreadsheet cannot run: the one neutraliser for every CSV the project writes (the annotation review
export, the leaderboard).

A cell starting with ``= + - @``, a tab or a carriage return (or a fullwidth ``= + - @``, which some IMEs type) may be
evaluated as a formula when the file is opened in a spreadsheet (``=HYPERLINK(...)``, ``+cmd|' /C calc'!A0``,
``@SUM(...)``). OWASP's recommendation ("CSV Injection") is to prefix such a cell with a single quote, which the
spreadsheet shows as text; :func:`restore` removes exactly that prefix on import.
"""

from __future__ import annotations

# Cells a spreadsheet may evaluate (OWASP, "CSV Injection"), and their fullwidth forms, which some IMEs type.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def neutralise(cell: str) -> str:
    """``cell`` made inert for spreadsheets: ``'`` before a leading formula character."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def restore(cell: str) -> str:
    """The inverse of :func:`neutralise`."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell
