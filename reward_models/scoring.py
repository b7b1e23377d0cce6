"""Scoring with a multi-head reward model: texts or (prompt, completion) pairs -> an [N, K] tensor of head scores.

`load_reward_model_source` is what the GRPO reward-vector builder calls for objective specs such as
`helpful=rm:helpful,harmless=rm:harmless`: it returns a `RewardSource` (alignment/objectives/sources.py) that scores
all the requested heads in ONE forward pass per batch, instead of one reward model per objective.

Scores are raw head outputs, or normalized per head with the mean/std stored in the model config at training time
(`(raw - mean) / std`), which puts pairwise heads (whose offset is arbitrary) and rated heads on one scale.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Sequence

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification
from transformers.integrations import deepspeed as hf_deepspeed

from alignment.objectives.sources import ObjectiveSpecError, parse_objective_specs
from reward_models.chat_format import conversation, render_conversation
from reward_models.modeling import (
    HEAD_MEAN_KEY,
    HEAD_STATS_MEASURED_KEY,
    HEAD_STD_KEY,
    MAX_LENGTH_KEY,
    head_names_of,
    head_statistics,
    load_reward_tokenizer,
)

logger = logging.getLogger(__name__)


@torch.no_grad()
def score_texts(model, tokenizer, texts: Sequence[str], *, batch_size: int = 32,
                max_length: int | None = None) -> torch.Tensor:
    """Raw head scores [N, K] (float32, on CPU) of already-rendered texts, one forward pass per batch."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batches = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start:start + batch_size]), padding=True, truncation=max_length is not None,
            max_length=max_length, return_tensors="pt",
        ).to(device)
        batches.append(model(**batch).logits.float().cpu())
    model.train(was_training)
    if not batches:
        return torch.zeros(0, model.config.num_labels)
    return torch.cat(batches)


class RewardModelHeadsError(ValueError):
    """A reward model's heads (num_labels, id2label) do not match the objectives that read them."""


def check_reward_model_heads(config, heads: dict[str, str], name_or_path: str = "the reward model") -> list[str]:
    """The model's head names, after checking they can serve `heads` (objective -> head label); raises naming both.

    Runs on the config alone, so a mismatch stops before any weights are loaded.
    """
    id2label = getattr(config, "id2label", None) or {}
    labels = [id2label.get(index, id2label.get(str(index))) for index in range(config.num_labels)]
    if None in labels:
        raise RewardModelHeadsError(f"{name_or_path}: num_labels is {config.num_labels} but id2label names only "
                                    f"{sorted(id2label)}; every head needs a name")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise RewardModelHeadsError(f"{name_or_path}: head name(s) {repeated} repeat in id2label {labels}; "
                                    "an objective could not tell which head it reads")
    if not heads:
        raise RewardModelHeadsError(f"reward model heads (none requested) not found; the model's heads are {labels}")
    unknown = {objective: label for objective, label in heads.items() if label not in labels}
    if unknown:
        # transformers' default id2label (LABEL_0, ...) means the heads were never named: not our reward model.
        hint = ("; its id2label is the transformers default, so it is not a multi-head reward model from "
                "recipes/reward_model.py" if all(re.fullmatch(r"LABEL_\d+", label) for label in labels) else "")
        raise RewardModelHeadsError(
            f"reward model heads {sorted(set(unknown.values()))} not found (read by objective(s) {sorted(unknown)}); "
            f"the model's heads are {labels} ({len(labels)} head(s) in {name_or_path}){hint}"
        )
    for key in (HEAD_MEAN_KEY, HEAD_STD_KEY):
        values = getattr(config, key, None)
        if values is not None and len(values) != len(labels):
            raise RewardModelHeadsError(f"{name_or_path}: config '{key}' has {len(values)} values for {len(labels)} "
                                        f"heads {labels}; the checkpoint's normalization does not match its heads")
    return labels


def check_reward_model_source(name_or_path: str, heads: dict[str, str], trust_remote_code: bool = False) -> list[str]:
    """`check_reward_model_heads` on the config at `name_or_path` (config.json only: no weights are read)."""
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    return check_reward_model_heads(config, heads, name_or_path)


@contextlib.contextmanager
def whole_weights_on_every_process():
    """Within the block, `from_pretrained` loads whole weights on every process. A frozen scorer is used outside
    any training engine, but inside a launch transformers would otherwise load it partitioned under DeepSpeed ZeRO-3
    (`zero3_init_flag`: empty local shards) or, under FSDP's `cpu_ram_efficient_loading`, on the meta device on every
    process but the first; neither can score."""
    reference = hf_deepspeed._hf_deepspeed_config_weak_ref  # what is_deepspeed_zero3_enabled() reads
    config = reference() if reference is not None else None
    ram_efficient = os.environ.pop("FSDP_CPU_RAM_EFFICIENT_LOADING", None)
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            hf_deepspeed.set_hf_deepspeed_config(config)
        if ram_efficient is not None:
            os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = ram_efficient


class MultiHeadRewardScorer:
    """A loaded multi-head reward model with its tokenizer: `score(...)` returns [N, K] in `head_names` order."""

    def __init__(self, model, tokenizer, *, batch_size: int = 32, max_length: int | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length or getattr(model.config, MAX_LENGTH_KEY, None) or tokenizer.model_max_length
        self.head_names = head_names_of(model.config)
        self.statistics = head_statistics(model.config)
        self._warned = False

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device=None, batch_size: int = 32, trust_remote_code: bool = False,
                        dtype: str | torch.dtype | None = None):
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        tokenizer = load_reward_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
        with whole_weights_on_every_process():
            model = AutoModelForSequenceClassification.from_pretrained(
                name_or_path, trust_remote_code=trust_remote_code, dtype=dtype, use_safetensors=True
            )
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), tokenizer, batch_size=batch_size)

    def render(self, prompts: Sequence | None, completions: Sequence) -> list[str]:
        """The texts the model reads: whole conversations in the backbone's chat format (see chat_format)."""
        if prompts is None:
            return [c if isinstance(c, str) else render_conversation(self.tokenizer, conversation(None, c))
                    for c in completions]
        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts for {len(completions)} completions")
        return [render_conversation(self.tokenizer, conversation(p, c)) for p, c in zip(prompts, completions)]

    def normalize(self, scores: torch.Tensor) -> torch.Tensor:
        if self.statistics is None:
            if not self._warned:
                measured = getattr(self.model.config, HEAD_STATS_MEASURED_KEY, None)
                why = ("its per-head statistics are the placeholders 0/1 and were never measured "
                       "(run measure_head_statistics, as recipes/reward_model.py does)" if measured is False
                       else "it has no per-head statistics in its config")
                logger.warning(f"reward model: {why}; 'normalized' scores are the RAW head scores")
                self._warned = True
            return scores
        mean, std = self.statistics
        return (scores - mean) / std

    def score(self, prompts: Sequence | None, completions: Sequence, *, normalize: bool = True) -> torch.Tensor:
        """[N, K] scores of completions (strings or message lists) to prompts; prompts=None scores plain texts."""
        scores = score_texts(self.model, self.tokenizer, self.render(prompts, completions),
                             batch_size=self.batch_size, max_length=self.max_length)
        return self.normalize(scores) if normalize else scores


class RewardModelSource:
    """A `RewardSource` for several objectives read from heads of one reward model (one forward pass per batch)."""

    def __init__(self, scorer: MultiHeadRewardScorer, heads: dict[str, str], *, normalize: bool = True):
        check_reward_model_heads(scorer.model.config, heads,
                                 getattr(scorer.model.config, "_name_or_path", None) or "the reward model")
        self.scorer = scorer
        self.normalize = normalize
        self.objective_names = list(heads)
        self._columns = [scorer.head_names.index(label) for label in heads.values()]

    def __call__(self, prompts: list, completions: list, **kwargs) -> torch.Tensor:
        return self.scorer.score(prompts, completions, normalize=self.normalize)[:, self._columns]


def load_reward_model_source(
    name_or_path: str,
    heads: dict[str, str],
    *,
    normalize: bool = True,
    device=None,
    batch_size: int = 32,
    trust_remote_code: bool = False,
) -> RewardModelSource:
    """Load a (multi-head) reward model as a RewardSource; `heads` maps objective name -> head label (id2label)."""
    check_reward_model_source(name_or_path, heads, trust_remote_code)  # before the weights: a mismatch fails fast
    scorer = MultiHeadRewardScorer.from_pretrained(
        name_or_path, device=device, batch_size=batch_size, trust_remote_code=trust_remote_code
    )
    return RewardModelSource(scorer, heads, normalize=normalize)


def objective_reward_sources(specs, reward_model_name_or_path: str | None = None, *, device=None,
                             trust_remote_code: bool = False):
    """Objective specs -> (objectives, reward sources): reward functions, plus ONE source for all `rm:HEAD` specs.

    The one place where specs meet the reward model: the trainers, the DPO margin rewards, the steering scripts and
    the Pareto sweep all build their reward vector through it.
    """
    objectives, sources, heads = parse_objective_specs(specs)
    sources = list(sources)
    if heads:
        if not reward_model_name_or_path:
            raise ObjectiveSpecError(f"objectives {sorted(heads)} read reward-model heads, but "
                                     "reward_model_name_or_path is not set")
        sources.append(load_reward_model_source(reward_model_name_or_path, heads, device=device,
                                                trust_remote_code=trust_remote_code))
    return objectives, sources
