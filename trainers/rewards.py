"""The RL stage's rewards: the toy reward R(C) and the sibling methods' judged rewards, as TRL reward functions.

Each reward is a callable class (TRL's pattern for rewards that must stay picklable) with TRL's signature,
``reward(completions, **dataset_columns, log_metric=..., ...) -> list[float | None]``:

* ``toy``: R(C), ``ecac_bench.toy_reward`` (the function behind ``ecac-bench score``'s ``reward``);
* ``precision``, ``recall``, ``linguistic``: BalCapRL's components in [0, 1] (``ecac_bench.balanced``);
* ``utility``: CapRL's caption utility in [0, 1] (``ecac_bench.utility``; needs a questions file).

They are combined by TRL itself: ``reward_weights`` weighs them and ``multi_objective_aggregation`` chooses how:
``sum_then_normalize`` (GRPO: weighted sum, then group normalisation) or ``normalize_then_sum`` (c-GDPO: each reward
normalised within its group, weighted sum, then batch normalisation). Metrics a reward computes on the side go
through TRL's ``log_metric`` (averaged over the logging window and over processes by TRL).

A judged reward that could not be computed (the judge failed after its retries) is ``None``: TRL treats it as
missing (NaN, skipped by its nan-aware aggregation), never as a zero that would punish the caption.

**Length-conditional masking of the linguistic reward** (BalCapRL: "a two-sided length penalty via reward
masking"). With r = len(generated) / len(reference), both lengths counted in tokens of the policy's tokenizer
(no special tokens), the linguistic reward is kept when ``tau_low <= r <= tau_high`` and is masked to 0 outside the
band (the default, ``linguistic_outside: zero``): a penalty, because a language judge rates short safe captions as
perfectly clear and does not punish fluent padding, so outside a band of plausible lengths the linguistic reward
would pay for length hacking. ``linguistic_outside: exclude`` keeps the earlier variant, where the masked value is
``None`` (excluded, left to the other rewards) instead of 0.

The judged rewards import the judge client only when they are built, so the toy reward (all RSRS needs) runs with
no LLM client installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecac_bench.metrics import aggregate_scores, score_image, toy_from_mapping, toy_reward

if TYPE_CHECKING:
    from ecac_bench.balanced import BalancedImage
    from ecac_bench.llm import LLMClient, Settings
    from ecac_bench.utility import QAItem, ShuffledQuestion

REWARDS = ("toy", "precision", "recall", "linguistic", "utility")
OUTSIDE_BAND = ("zero", "exclude")
RewardFunc = Callable[..., list[float | None]]


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The caption text of a TRL completion (plain string, or a conversational assistant turn)."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        content = message["content"]
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(block["text"] for block in content if block.get("type") == "text")
    return "".join(parts)


class ToyReward:
    """R(C) of each completion against its image's toys (the dataset column ``toys``), by ecac_bench.toy_reward.

    Logs ``rewards/toy/rollout_tts``: TTS of the rollouts, each caption scored alone as the evaluation scores it
    (one value per caption of an image with toys, so TRL's average is exactly the batch's TTS).
    """

    def __init__(self) -> None:
        self.__name__ = "toy"

    def __call__(
        self, completions: list, toys: list[list[dict[str, Any]]], log_metric: Callable | None = None, **_: Any
    ) -> list[float]:
        rewards = []
        for completion, image_toys in zip(completions, toys, strict=True):
            text = completion_text(completion)
            annotations = [toy_from_mapping(t) for t in image_toys]
            rewards.append(toy_reward(annotations, text))
            if log_metric is not None and annotations:
                tts = aggregate_scores([score_image(annotations, text)])["tts"]
                if tts is not None:
                    log_metric(f"rewards/{self.__name__}/rollout_tts", tts)
        return rewards


def token_count(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Length of each text in tokens of ``tokenizer`` (no special tokens added)."""
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


class LengthBand:
    """``reward`` where len(generated) / len(reference) (policy tokens) lies in [tau_low, tau_high] (None: no
    bound); outside, 0 (``outside="zero"``, a penalty) or None (``"exclude"``). Dataset column used: ``caption``.

    Logs ``rewards/<name>/outside_band`` (the share of captions outside the band).
    """

    def __init__(
        self,
        reward: RewardFunc,
        tokenizer: Any,
        tau_low: float | None,
        tau_high: float | None,
        outside: str = "zero",
    ) -> None:
        if outside not in OUTSIDE_BAND:
            raise ValueError(f"outside must be one of {OUTSIDE_BAND}, got {outside!r}")
        self.reward, self.tokenizer, self.tau_low, self.tau_high, self.outside = (
            reward,
            tokenizer,
            tau_low,
            tau_high,
            outside,
        )
        self.__name__ = getattr(reward, "__name__", type(reward).__name__)

    def ratios(self, completions: list, references: list[str]) -> list[float]:
        generated = token_count(self.tokenizer, [completion_text(c) for c in completions])
        reference = token_count(self.tokenizer, references)
        return [g / max(1, r) for g, r in zip(generated, reference, strict=True)]

    def __call__(
        self, completions: list, caption: list[str], log_metric: Callable | None = None, **kwargs: Any
    ) -> list[float | None]:
        values = self.reward(completions=completions, caption=caption, log_metric=log_metric, **kwargs)
        masked_value = 0.0 if self.outside == "zero" else None
        inside = [
            (self.tau_low is None or r >= self.tau_low) and (self.tau_high is None or r <= self.tau_high)
            for r in self.ratios(completions, caption)
        ]
        if log_metric is not None and inside:
            log_metric(f"rewards/{self.__name__}/outside_band", inside.count(False) / len(inside))
        return [value if keep else masked_value for value, keep in zip(values, inside, strict=True)]


@dataclass
class JudgeConnection:
    """Where the judged rewards send their requests. The clients (with an open SQLite cache) are made on first use in
    each process and are not pickled, so the rewards holding a connection stay picklable.

    ``settings`` None: the judge and VLM endpoints of the environment (``ECAC_JUDGE_*``, ``ECAC_VLM_*``, the cache
    folder of ``ECAC_CACHE_DIR``; docs/judges.md), with ``vlm_model`` as the VLM's model.
    """

    settings: Settings | None = None
    vlm_model: str | None = None
    _clients: tuple[LLMClient, LLMClient] | None = field(default=None, init=False, repr=False)

    def clients(self) -> tuple[LLMClient, LLMClient]:
        """The LLM and VLM judge clients (one cache)."""
        if self._clients is None:
            from ecac_bench.llm import LLMClient, Settings

            settings = self.settings or Settings.from_env(vlm_model=self.vlm_model, no_progress=True)
            self._clients = (LLMClient.from_settings(settings, "judge"), LLMClient.from_settings(settings, "vlm"))
        return self._clients

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_clients": None}


class BalancedScorer:
    """BalCapRL scoring of a batch, shared by the three component rewards: TRL calls them one after the other on the
    same completions, so the first call scores the batch and the other two read the memo. Dataset columns used:
    ``id``, ``caption`` (the reference) and ``image_path``."""

    def __init__(self, connection: JudgeConnection, lang: str = "zh") -> None:
        self.connection, self.lang = connection, lang
        self._memo: dict[tuple[str, str], BalancedImage] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_memo": {}}

    def score(self, texts: list[str], ids: list[str], references: list[str], images: list[str]) -> list[BalancedImage]:
        from ecac_bench.balanced import balanced_scores

        keys = list(zip(ids, texts, strict=True))
        todo = [k for k, key in enumerate(keys) if key not in self._memo]
        if todo:
            self._memo = {key: self._memo[key] for key in keys if key in self._memo}  # keep this batch only
            items = [(ids[k], texts[k], references[k], Path(images[k])) for k in todo]
            llm, vlm = self.connection.clients()
            scored = asyncio.run(balanced_scores(llm, vlm, items, lang=self.lang))
            self._memo.update({keys[k]: s for k, s in zip(todo, scored, strict=True)})
        return [self._memo[key] for key in keys]


class BalancedReward:
    """One BalCapRL component (``precision``, ``recall`` or ``linguistic``) of each completion, in [0, 1]."""

    def __init__(self, scorer: BalancedScorer, component: str) -> None:
        self.scorer, self.component = scorer, component
        self.__name__ = component

    def __call__(
        self, completions: list, id: list[str], caption: list[str], image_path: list[str], **_: Any
    ) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        scores = self.scorer.score(texts, id, caption, image_path)
        return [getattr(s, self.component) if s.error is None else None for s in scores]


class UtilityReward:
    """CapRL caption utility of each completion, in [0, 1]: its accuracy on its image's questions."""

    def __init__(
        self, connection: JudgeConnection, questions: Sequence[QAItem], rounds: int = 4, lang: str = "zh"
    ) -> None:
        from ecac_bench.utility import shuffle_rounds

        self.connection, self.lang = connection, lang
        self.__name__ = "utility"
        # The shuffled rounds of each image's questions, made once: every caption of a group faces the same ones.
        self.rounds: dict[str, list[ShuffledQuestion]] = {}
        for shuffled in shuffle_rounds(questions, rounds, seed=0, lang=lang):
            self.rounds.setdefault(shuffled.item.id, []).append(shuffled)

    def __call__(self, completions: list, id: list[str], **_: Any) -> list[float | None]:
        from ecac_bench.utility import aggregate_utility, answer_rounds

        # Each completion answers its own copy of its image's rounds, keyed by its position in the batch.
        rounds = [
            replace(r, item=replace(r.item, id=str(k)))
            for k, image_id in enumerate(id)
            for r in self.rounds.get(image_id, [])
        ]
        context = {str(k): completion_text(c) for k, c in enumerate(completions)}
        llm, _ = self.connection.clients()
        outcomes = asyncio.run(answer_rounds(llm, rounds, context=context, lang=self.lang, desc="utility"))
        per_completion = aggregate_utility(outcomes).per_image  # 0-100, completions with >= 1 scored round
        return [per_completion[str(k)] / 100.0 if str(k) in per_completion else None for k in range(len(id))]


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
    linguistic_outside: str = field(
        default="zero",
        metadata={"help": "The masked linguistic reward: zero (a penalty, BalCapRL) or exclude (None, not scored)."},
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
        if self.linguistic_outside not in OUTSIDE_BAND:
            raise ValueError(f"--linguistic_outside must be one of {OUTSIDE_BAND}, got {self.linguistic_outside!r}")

    @property
    def length_band(self) -> bool:
        return self.linguistic_tau_low is not None or self.linguistic_tau_high is not None


def build_reward_funcs(
    args: RewardArguments, tokenizer: Any = None, connection: JudgeConnection | None = None
) -> list[RewardFunc]:
    """The reward functions named in ``args.rewards``, in that order (match reward_weights to it).

    ``tokenizer`` (the policy's) measures lengths for the linguistic band; ``connection`` defaults to the judge
    configured in the environment, with ``args.vlm_model``.
    """
    if args.length_band and "linguistic" in args.rewards and tokenizer is None:
        raise ValueError("the linguistic length band measures policy tokens: pass the policy's tokenizer")
    connection = connection or JudgeConnection(vlm_model=args.vlm_model)
    scorer = BalancedScorer(connection, args.judge_lang)
    funcs: list[RewardFunc] = []
    for name in args.rewards:
        if name == "toy":
            funcs.append(ToyReward())
        elif name == "utility":
            from ecac_bench.utility import load_questions

            questions = load_questions(args.utility_questions)  # type: ignore[arg-type]
            funcs.append(UtilityReward(connection, questions, args.utility_rounds, args.judge_lang))
        else:
            func: RewardFunc = BalancedReward(scorer, name)
            if name == "linguistic" and args.length_band:
                func = LengthBand(
                    func, tokenizer, args.linguistic_tau_low, args.linguistic_tau_high, args.linguistic_outside
                )
            funcs.append(func)
    return funcs
