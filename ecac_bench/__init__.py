"""ecac-bench: the ECAC benchmark for captioning early-childhood-education activity photos."""

__version__ = "0.1.0"

from ecac_bench.data import (
    CATEGORIES,
    GROUNDS,
    LEVELS,
    SAMPLE_DATA,
    SAMPLE_PREDICTIONS,
    DataValidationError,
    EcacDataset,
    EcacRecord,
    Problem,
    ToyAnnotation,
    load_dataset,
    validate_dataset,
)
from ecac_bench.matching import MatchConfig, ToyMatcher, normalize_text
from ecac_bench.metrics import (
    METRIC_KEYS,
    SUBSET_KEYS,
    ImageScore,
    TTSResult,
    aggregate_scores,
    bootstrap_ci,
    metric_coverage,
    score_captions,
    score_image,
    toy_reward,
)
from ecac_bench.predictions import load_predictions

__all__ = [
    "CATEGORIES",
    "GROUNDS",
    "LEVELS",
    "METRIC_KEYS",
    "SAMPLE_DATA",
    "SAMPLE_PREDICTIONS",
    "SUBSET_KEYS",
    "DataValidationError",
    "EcacDataset",
    "EcacRecord",
    "ImageScore",
    "MatchConfig",
    "Problem",
    "TTSResult",
    "ToyAnnotation",
    "ToyMatcher",
    "__version__",
    "aggregate_scores",
    "bootstrap_ci",
    "load_dataset",
    "load_predictions",
    "metric_coverage",
    "normalize_text",
    "score_captions",
    "score_image",
    "toy_reward",
    "validate_dataset",
]
