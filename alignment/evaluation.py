"""Score a policy on its objectives: generate on held-out prompts, build the reward vector, average per objective."""

from __future__ import annotations

import contextlib

import torch

from alignment.conditioning import FORMAT_VERSION, condition_prompt
from alignment.reward_vector import RewardVectorBuilder
from alignment.weights import parse_preference_weights


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
                        steering: str = "prompt", format_version: int = FORMAT_VERSION,
                        **generation_kwargs) -> dict[str, float]:
    """Mean of each objective over one sampled reply per prompt. With `weights`, the model is conditioned on them the
    way `steering` says: 'prompt' (written into the prompts in `format_version`), 'adapter' (lambda of its
    preference adapter), 'both'."""
    if steering not in ("prompt", "adapter", "both"):
        raise ValueError(f"evaluate_objectives: steering must be 'prompt', 'adapter' or 'both', got '{steering}'")
    adapter_weights = contextlib.nullcontext()
    if weights is not None:
        if steering in ("prompt", "both"):
            prompts = [condition_prompt(p, weights, builder.objective_names, format_version) for p in prompts]
        if steering in ("adapter", "both"):
            from alignment.preference_adapter import preference_weights

            adapter_weights = preference_weights(model, parse_preference_weights(weights, builder.objective_names))
    with adapter_weights:
        completions = generate_completions(model, tokenizer, prompts, **generation_kwargs)
    reward_vector, _ = builder(prompts, completions)
    means = {name: torch.nanmean(reward_vector[:, i]).item() for i, name in enumerate(builder.objective_names)}
    means["completion_tokens"] = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in completions) / len(completions)
    return means


def format_before_after_table(before: dict[str, float], after: dict[str, float]) -> str:
    width = max([len(name) for name in before] + [9]) + 2
    rows = [f"{'':<{width}}{'before':>10}{'after':>10}{'change':>10}"]
    for name in before:
        rows.append(f"{name:<{width}}{before[name]:>10.3f}{after[name]:>10.3f}{after[name] - before[name]:>+10.3f}")
    return "\n".join(rows)


def train_evaluate_and_save(trainer, evaluate, resume_from_checkpoint, output_dir: str, heading: str) -> None:
    """The tail every policy recipe shares: evaluate the starting policy, train (resuming from a checkpoint when
    there is one), evaluate again, record both in the checkpoint (`trainer.final_evaluation`), save, print.

    `evaluate()` returns {metric: value}, or None when there is nothing held out. It runs before `train` loads the
    checkpoint, so "before" is the starting policy on a resumed run too.
    """
    before = evaluate()
    train_result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    if before is not None:
        after = evaluate()
        trainer.final_evaluation = {f"{k}/{when}": v for when, d in (("before", before), ("after", after)) for k, v in d.items()}
        if trainer.accelerator.is_main_process:
            print(f"\n{heading}, before and after training:")
            print(format_before_after_table(before, after))
    trainer.save_model(output_dir)
    if trainer.accelerator.is_main_process:
        print(f"\nCheckpoint, objectives.json and model card written to {output_dir}")
