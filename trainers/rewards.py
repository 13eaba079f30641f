"""Several rewards at once for RSRS / GRPO: the toy reward R(C) and the sibling methods' judged rewards.

Reward functions (TRL's signature: ``f(completions, **dataset_columns) -> list[float | None]``):

* ``toy``: R(C), ``ecac_bench.toy_reward`` (trainers.rsrs.ecac_reward);
* ``precision``, ``recall``, ``linguistic``: BalCapRL's components in [0, 1] (``ecac_bench.balanced``);
* ``utility``: CapRL's caption utility in [0, 1] (``ecac_bench.utility``; needs a questions file).

They are combined by TRL itself: ``reward_weights`` weighs them and ``multi_objective_aggregation`` chooses how:
``sum_then_normalize`` (GRPO: weighted sum, then group normalisation) or ``normalize_then_sum`` (c-GDPO: each reward
normalised within its group, weighted sum, then batch normalisation).

A judged reward that could not be computed (the judge failed after its retries) is ``None``: TRL treats it as
missing (NaN, skipped by its nan-aware aggregation), never as a zero that would punish the caption.

**Length-conditional masking of the linguistic reward.** With r = len(generated) / len(reference), both lengths
counted in characters of the normalised texts (``ecac_bench.normalize_text``; the two captions are in the same
language), the linguistic reward is kept only when ``tau_low <= r <= tau_high`` and is ``None`` (masked) outside
the band. Why: a language judge rates short, safe captions as perfectly clear and fluent and does not punish padding
with fluent filler, so outside a band of plausible lengths the linguistic reward would pay for length hacking
instead of for language. Masking rather than zeroing keeps the other rewards in charge of such captions: a zero
would add a penalty, which the group normalisation turns into an advantage against otherwise good captions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ecac_bench.balanced import BalancedImage, balanced_scores
from ecac_bench.llm import LLMClient, Settings
from ecac_bench.matching import normalize_text
from ecac_bench.utility import (
    QAItem,
    ShuffledQuestion,
    aggregate_utility,
    answer_rounds,
    load_questions,
    shuffle_rounds,
)
from trainers.rsrs import completion_text, ecac_reward

REWARDS = ("toy", "precision", "recall", "linguistic", "utility")
RewardFunc = Callable[..., list[float | None]]


@dataclass
class RewardArguments:
    """Which rewards to train on; weights and aggregation are GRPOConfig's reward_weights and
    multi_objective_aggregation."""

    rewards: list[str] = field(
        default_factory=lambda: ["toy"], metadata={"help": f"Reward functions, any of {', '.join(REWARDS)}."}
    )
    linguistic_tau_low: float | None = field(
        default=None, metadata={"help": "Mask the linguistic reward when generated/reference length < this."}
    )
    linguistic_tau_high: float | None = field(
        default=None, metadata={"help": "Mask the linguistic reward when generated/reference length > this."}
    )
    utility_questions: str | None = field(default=None, metadata={"help": "CapRL questions JSONL (utility)."})
    utility_rounds: int = field(default=4, metadata={"help": "Shuffled rounds per question (utility)."})
    judge_lang: str = field(default="zh", metadata={"help": "Prompt language of the judged rewards."})
    vlm_model: str | None = field(default=None, metadata={"help": "VLM for precision (default: the judge model)."})

    def __post_init__(self) -> None:
        unknown = set(self.rewards) - set(REWARDS)
        if unknown:
            raise ValueError(f"unknown reward(s) {sorted(unknown)}; choose from {', '.join(REWARDS)}")
        if "utility" in self.rewards and not self.utility_questions:
            raise ValueError("the utility reward needs --utility_questions (a CapRL questions JSONL)")
        low, high = self.linguistic_tau_low, self.linguistic_tau_high
        if low is not None and high is not None and not 0 <= low <= high:
            raise ValueError(f"need 0 <= linguistic_tau_low <= linguistic_tau_high, got {low}, {high}")


def length_ratio(generated: str, reference: str) -> float:
    """len(generated) / len(reference), in characters of the normalised texts."""
    return len(normalize_text(generated)) / max(1, len(normalize_text(reference)))


def mask_outside_length_band(func: RewardFunc, tau_low: float | None, tau_high: float | None) -> RewardFunc:
    """``func`` with its value replaced by None where the length ratio leaves [tau_low, tau_high] (None: no bound)."""

    def masked(completions: list, caption: list[str], **kwargs: Any) -> list[float | None]:
        values = func(completions=completions, caption=caption, **kwargs)
        out = []
        for value, completion, reference in zip(values, completions, caption, strict=True):
            r = length_ratio(completion_text(completion), reference)
            inside = (tau_low is None or r >= tau_low) and (tau_high is None or r <= tau_high)
            out.append(value if inside else None)
        return out

    masked.__name__ = getattr(func, "__name__", "reward")
    return masked


class BalancedRewards:
    """BalCapRL precision / recall / linguistic as three reward functions sharing one set of judge calls per batch.

    TRL calls the reward functions one after the other on the same completions: the first call scores the batch,
    the other two read the memo. Dataset columns used: ``id``, ``caption`` (the reference) and ``image_path``.
    """

    def __init__(self, llm: LLMClient, vlm: LLMClient, lang: str = "zh") -> None:
        self.llm, self.vlm, self.lang = llm, vlm, lang
        self._memo: dict[tuple[str, str], BalancedImage] = {}

    def _score(self, texts: list[str], ids: list[str], references: list[str], images: list[str]) -> list[BalancedImage]:
        keys = list(zip(ids, texts, strict=True))
        todo = [k for k, key in enumerate(keys) if key not in self._memo]
        if todo:
            self._memo = {key: self._memo[key] for key in keys if key in self._memo}  # keep this batch only
            items = [(ids[k], texts[k], references[k], Path(images[k])) for k in todo]
            scored = asyncio.run(balanced_scores(self.llm, self.vlm, items, lang=self.lang))
            self._memo.update({keys[k]: s for k, s in zip(todo, scored, strict=True)})
        return [self._memo[key] for key in keys]

    def reward(self, component: str) -> RewardFunc:
        def func(completions: list, id: list[str], caption: list[str], image_path: list[str], **_: Any):
            texts = [completion_text(c) for c in completions]
            scores = self._score(texts, id, caption, image_path)
            return [getattr(s, component) if s.error is None else None for s in scores]

        func.__name__ = component
        return func


class UtilityReward:
    """CapRL caption utility of each completion, in [0, 1]: its accuracy on its image's questions."""

    __name__ = "utility"

    def __init__(self, llm: LLMClient, questions: Sequence[QAItem], rounds: int = 4, lang: str = "zh") -> None:
        self.llm, self.lang = llm, lang
        # The shuffled rounds of each image's questions, made once: every caption of a group faces the same ones.
        self.rounds: dict[str, list[ShuffledQuestion]] = {}
        for shuffled in shuffle_rounds(questions, rounds, seed=0, lang=lang):
            self.rounds.setdefault(shuffled.item.id, []).append(shuffled)

    def __call__(self, completions: list, id: list[str], **_: Any) -> list[float | None]:
        # Each completion answers its own copy of its image's rounds, keyed by its position in the batch.
        rounds = [
            replace(r, item=replace(r.item, id=str(k)))
            for k, image_id in enumerate(id)
            for r in self.rounds.get(image_id, [])
        ]
        context = {str(k): completion_text(c) for k, c in enumerate(completions)}
        outcomes = asyncio.run(answer_rounds(self.llm, rounds, context=context, lang=self.lang, desc="utility"))
        per_completion = aggregate_utility(outcomes).per_image  # 0-100, completions with >= 1 scored round
        return [per_completion[str(k)] / 100.0 if str(k) in per_completion else None for k in range(len(id))]


def judge_clients(vlm_model: str | None = None) -> tuple[LLMClient, LLMClient]:
    """The LLM and VLM judge clients, configured from ECAC_JUDGE_* / OPENAI_* (see docs/judges.md), one cache."""
    settings = Settings.from_env(vlm_model=vlm_model, no_progress=True)
    return LLMClient.from_settings(settings, "judge"), LLMClient.from_settings(settings, "vlm")


def build_reward_funcs(args: RewardArguments, clients: tuple[LLMClient, LLMClient] | None = None) -> list[RewardFunc]:
    """The reward functions named in ``args.rewards``, in that order (match reward_weights to it)."""
    judged = set(args.rewards) - {"toy"}
    llm, vlm = clients or (judge_clients(args.vlm_model) if judged else (None, None))
    balanced = BalancedRewards(llm, vlm, args.judge_lang) if judged & {"precision", "recall", "linguistic"} else None
    funcs: list[RewardFunc] = []
    for name in args.rewards:
        if name == "toy":
            funcs.append(ecac_reward)
        elif name == "utility":
            questions = load_questions(args.utility_questions)  # type: ignore[arg-type]
            funcs.append(UtilityReward(llm, questions, args.utility_rounds, args.judge_lang))
        else:
            func = balanced.reward(name)  # type: ignore[union-attr]
            if name == "linguistic" and (args.linguistic_tau_low is not None or args.linguistic_tau_high is not None):
                func = mask_outside_length_band(func, args.linguistic_tau_low, args.linguistic_tau_high)
            funcs.append(func)
    return funcs
