"""Score a policy on its objectives: generate on held-out prompts, build the reward vector, average per objective."""

from __future__ import annotations

import torch

from alignment.conditioning import condition_prompt
from alignment.reward_vector import RewardVectorBuilder


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
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) if isinstance(p, list) else p
                     for p in prompts[start:start + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                    temperature=temperature, pad_token_id=tokenizer.pad_token_id)
            completions += tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return completions


def evaluate_objectives(model, tokenizer, prompts: list, builder: RewardVectorBuilder, weights=None,
                        **generation_kwargs) -> dict[str, float]:
    """Mean of each objective over one sampled reply per prompt; with `weights` (one vector, or one row per prompt),
    prompts are conditioned on them."""
    if weights is not None:
        rows = weights if isinstance(weights, torch.Tensor) and weights.dim() == 2 else [weights] * len(prompts)
        prompts = [condition_prompt(p, w, builder.objective_names) for p, w in zip(prompts, rows)]
    completions = generate_completions(model, tokenizer, prompts, **generation_kwargs)
    reward_vector, _ = builder(prompts, completions)
    means = {name: torch.nanmean(reward_vector[:, i]).item() for i, name in enumerate(builder.objective_names)}
    means["completion_tokens"] = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in completions) / len(completions)
    return means


def format_before_after_table(before: dict[str, float], after: dict[str, float]) -> str:
    rows = [f"{'objective':<20}{'before':>10}{'after':>10}{'change':>10}"]
    for name in before:
        rows.append(f"{name:<20}{before[name]:>10.3f}{after[name]:>10.3f}{after[name] - before[name]:>+10.3f}")
    return "\n".join(rows)
