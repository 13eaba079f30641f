"""Failed generations: the one definition every route (predictions files, lmms-eval samples, the lmms-eval tasks)
applies, and how many of them a run may have (docs/data_format.md, "Failed and missing generations").

A generation is *failed* when the backend says so: lmms-eval's failure marker (its API backends turn a request that
failed after its retries into the text ``[LMMS_EVAL_REQUEST_FAILED after N retries] <error>``), an empty or
whitespace-only response, or ``"error"`` / ``"failed": true`` on a row of a predictions file. A failed generation is
never scored: the image is left out of every metric and counted. (An image with *no* row is *missing*, a different
thing: see ``--allow-missing``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ecac_bench.unicode_text import lone_surrogate_at

# What lmms-eval 0.7.3's openai / async_openai / gemini backends put in place of a caption after their last retry.
LMMS_EVAL_FAILURE_MARKER = "[LMMS_EVAL_REQUEST_FAILED"
# How lmms-eval task outputs and reports name the count.
N_FAILED_KEY = "n_failed_generations"
ENV_MAX_FAILED = "ECAC_MAX_FAILED"


# Why a generation failed, as reports count them: the first two are read from the caption itself, the last two from
# the row of a predictions file.
FAILURE_REASONS = ("empty response", "lmms-eval request failed", "not Unicode text", "error", "failed: true")


def generation_failure(text: str) -> str | None:
    """Why a generated caption is a failed generation, or None when it is a caption to score."""
    if not text or text.isspace():
        return "empty response"
    if text.lstrip().startswith(LMMS_EVAL_FAILURE_MARKER):  # lstrip returns the same object when nothing is stripped
        return "lmms-eval request failed"
    if lone_surrogate_at(text) is not None:
        return "not Unicode text"
    return None


@dataclass(frozen=True)
class FailureAllowance:
    """How many failed generations a run may have: a count (an integer >= 0), or a fraction of its generations
    (0 < value < 1; the limit is rounded down). The default everywhere is 0: any failure fails the run."""

    value: float = 0.0

    @classmethod
    def parse(cls, text: str, source: str = "--allow-failed") -> FailureAllowance:
        """From a flag or environment value; ``ValueError`` naming ``source`` when it is neither form."""
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value >= 1 and not value.is_integer()):
            raise ValueError(f"{source}: expected a count (0, 1, 2, ...) or a fraction between 0 and 1, got {text!r}")
        return cls(value)

    def limit(self, total: int) -> int:
        """The most failed generations allowed among ``total``."""
        return math.floor(self.value * total) if 0 < self.value < 1 else int(self.value)

    def exceeded(self, failed: int, total: int) -> bool:
        return failed > self.limit(total)

    def describe(self) -> str:
        return f"{self.value:g} of the generations" if 0 < self.value < 1 else f"{int(self.value)}"
