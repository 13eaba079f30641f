"""The ECAC leaderboard: reported baselines and measured runs, ranked per dataset, rendered as a static site."""

from ecac_bench.leaderboard.build import SITE_FILES, BuildError, BuildResult, build_site
from ecac_bench.leaderboard.entries import DatasetId, Entry, Provenance, Row
from ecac_bench.leaderboard.loaders import InputError, load_inputs, parse_baseline_file, parse_results_file
from ecac_bench.leaderboard.ranking import Board, build_boards

__all__ = [
    "SITE_FILES",
    "Board",
    "BuildError",
    "BuildResult",
    "DatasetId",
    "Entry",
    "InputError",
    "Provenance",
    "Row",
    "build_boards",
    "build_site",
    "load_inputs",
    "parse_baseline_file",
    "parse_results_file",
]
