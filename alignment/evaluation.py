"""Score a policy on its objectives: generate on held-out prompts, build the reward vector, average per objective.

Besides each objective's mean, the summary says whether the replies are still replies: their mean length in tokens,
the share of empty ones and the share of distinct ones (a policy that answers every prompt with the same text, or
with nothing, can score well on some objectives; these make that visible).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from alignment.models.preference_adapter import preference_weights
from alignment.objectives.conditioning import FORMAT_VERSION, condition_prompt
from alignment.objectives.reward_vector import RewardVectorBuilder
from alignment.objectives.weights import parse_preference_weights


@torch.no_grad()
def generate_completions(model, tokenizer, prompts: list, max_new_tokens: int = 48, batch_size: int = 32,
                         do_sample: bool = True, temperature: float = 1.0, seed: int = 0) -> list[str]:
    """Sampled replies (left-padded batches) to chat prompts, decoded without special tokens."""
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    completions = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                     if isinstance(p, list) else p
                     for p in prompts[start:start + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                    temperature=temperature, pad_token_id=tokenizer.pad_token_id)
            completions += tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return completions


@dataclass
class HeldOutReplies:
    """One reply per held-out prompt and its scores: `rewards` [N, K] in `objective_names` order, `tokens` [N]."""

    prompts: list
    completions: list[str]
    objective_names: list[str]
    rewards: torch.Tensor
    tokens: torch.Tensor

    def per_prompt(self, weights=None) -> dict[str, torch.Tensor]:
        """Each reported figure per prompt (its mean is the summary); `weights` adds the weighted objective w . r."""
        rows = {name: self.rewards[:, i] for i, name in enumerate(self.objective_names)}
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=self.rewards.dtype)  # [K], or [N, K]: one row per prompt
            rows["weighted_objective"] = (self.rewards * weights).sum(-1)
        rows["completion_tokens"] = self.tokens
        rows["empty_replies"] = torch.tensor([float(not c.strip()) for c in self.completions])
        return rows

    def means(self, weights=None) -> dict[str, float]:
        means = {name: torch.nanmean(values).item() for name, values in self.per_prompt(weights).items()}
        means["distinct_replies"] = len({c.strip() for c in self.completions}) / max(len(self.completions), 1)
        return means


def score_held_out(model, tokenizer, prompts: list, builder: RewardVectorBuilder, weights=None, *,
                   weights_in_prompt: bool = True, weights_in_adapter: bool = False,
                   format_version: int = FORMAT_VERSION, **generation_kwargs) -> HeldOutReplies:
    """One sampled reply per prompt, scored on every objective. With `weights` (one vector, or one row per prompt:
    prompt-aware weights), the model is conditioned on them through the channels it was trained with: written into
    the prompts in `format_version` (`weights_in_prompt`), and/or as lambda of its preference adapter
    (`weights_in_adapter`)."""
    adapter_weights = contextlib.nullcontext()
    if weights is not None:
        per_prompt = isinstance(weights, torch.Tensor) and weights.dim() == 2
        rows = weights if per_prompt else [weights] * len(prompts)
        if weights_in_prompt:
            prompts = [condition_prompt(p, w, builder.objective_names, format_version) for p, w in zip(prompts, rows)]
        if weights_in_adapter:
            if per_prompt:
                raise ValueError("score_held_out: per-prompt weights steer through the prompt; an adapter takes one "
                                 "weight vector here")
            adapter_weights = preference_weights(model, parse_preference_weights(weights, builder.objective_names))
    with adapter_weights:
        completions = generate_completions(model, tokenizer, prompts, **generation_kwargs)
    rewards, _ = builder(prompts, completions)
    tokens = torch.tensor([float(len(tokenizer(c, add_special_tokens=False)["input_ids"])) for c in completions])
    return HeldOutReplies(prompts, completions, list(builder.objective_names), rewards.float(), tokens)


def evaluate_objectives(model, tokenizer, prompts: list, builder: RewardVectorBuilder, weights=None,
                        **generation_kwargs) -> dict[str, float]:
    """Mean of each objective over one sampled reply per prompt, plus the reply-health figures (see the module)."""
    return score_held_out(model, tokenizer, prompts, builder, weights, **generation_kwargs).means()


def paired_standard_errors(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, float]:
    """Standard error of each figure's mean change, paired by prompt (same prompts before and after)."""
    errors = {}
    for name in before:
        change = (after[name] - before[name])[~torch.isnan(after[name] - before[name])]
        errors[name] = (change.std() / len(change) ** 0.5).item() if len(change) > 1 else float("nan")
    return errors


def format_before_after_table(before: dict[str, float], after: dict[str, float],
                              standard_errors: dict[str, float] | None = None) -> str:
    """A plain-text table; with `standard_errors`, the change carries its paired standard error."""
    errors = standard_errors or {}
    width = max([len(name) for name in before] + [9]) + 2
    rows = [f"{'':<{width}}{'before':>10}{'after':>10}{'change':>10}" + ("   s.e.(change)" if errors else "")]
    for name in before:
        row = f"{name:<{width}}{before[name]:>10.3f}{after[name]:>10.3f}{after[name] - before[name]:>+10.3f}"
        rows.append(row + (f"   {errors[name]:.3f}" if name in errors else ""))
    return "\n".join(rows)


def train_evaluate_and_save(trainer, evaluate, resume_from_checkpoint, output_dir: str, heading: str,
                            summarize=None) -> None:
    """The tail every policy recipe shares: evaluate the starting policy, train (resuming from a checkpoint when
    there is one), evaluate again, record both in the checkpoint (`trainer.record_results`), save, print.

    `evaluate()` returns {metric: value}, or None when there is nothing held out. It runs before `train` loads the
    checkpoint, so "before" is the starting policy on a resumed run too. With `summarize`, `evaluate()` may return
    richer results (the GRPO recipe's `HeldOutReplies`): `summarize(before, after)` turns them into
    (before {metric: value}, after {metric: value}, {metric: standard error of the change} or None), and may record
    more on the trainer before it is saved.
    """
    before = evaluate()
    train_result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    if before is not None:
        after = evaluate()
        before, after, errors = summarize(before, after) if summarize else (before, after, None)
        trainer.record_results(evaluation={f"{k}/{when}": v for when, d in (("before", before), ("after", after))
                                           for k, v in d.items()})
        if trainer.accelerator.is_main_process:
            print(f"\n{heading}, before and after training:")
            print(format_before_after_table(before, after, errors))
    trainer.save_model(output_dir)
    if trainer.accelerator.is_main_process:
        print(f"\nCheckpoint, objectives.json and model card written to {output_dir}")
