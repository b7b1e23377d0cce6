"""`mod`: multi-objective decoding (MOD): every next token sampled from softmax(sum_k w_k log pi_k) over K policies
that share a tokenizer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.modeling_outputs import CausalLMOutputWithPast

from alignment.models.policy import eos_token_ids
from alignment.steering.base import Steerable, SteeringError
from alignment.steering.checkpoints import (
    adapter_policy,
    load_causal_lm,
    load_peft_adapters,
    open_checkpoints,
)

# The KV cache's keyword (model input) and field (model output): `cache` in transformers 5.24, `past_key_values`
# in 5.19 (the low end of the tested range, the vLLM environment's)
CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def _warpers(temperature: float, top_p: float, top_k: int | None) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


class LogProbMixture(Steerable):
    """MOD: next token from softmax(sum_k w_k log pi_k(. | context)) over K policies sharing a tokenizer.

    `policies` are callables with a causal LM's forward signature (a model, or one adapter of a peft model made
    active first). Each keeps its own KV cache; a policy with weight 0 is not run at all. transformers' `generate`
    drives one model, so the K-model loop is ours; sampling reuses transformers' logits warpers.
    """

    method = "mod"
    mixes_checkpoints = True

    def __init__(self, policies: Sequence[Callable], tokenizer, objective_names, eos_token_ids: set[int], device="cpu"):
        super().__init__(tokenizer, objective_names, device)
        if len(policies) != len(self.objective_names):
            raise SteeringError(f"MOD: {len(policies)} policies for {len(self.objective_names)} objectives "
                                f"{self.objective_names}")
        self.policies = list(policies)
        self.eos_token_ids = eos_token_ids

    @classmethod
    def from_checkpoint(cls, named_paths: dict[str, Path], *, objective_names=None, base_model: str | None = None,
                        device="cpu", dtype=None) -> LogProbMixture:
        """MOD over K full checkpoints, or over K LoRA adapters of one base loaded into one peft model.

        named_paths: {objective: path}, put in `objective_names`' order when given; every checkpoint must share
        one tokenizer. `base_model`: the adapters' base when their adapter_config.json files do not name one.
        """
        named_paths, adapters, tokenizer = open_checkpoints(named_paths, objective_names)
        names = list(named_paths)
        if adapters:
            peft_model, _ = load_peft_adapters(named_paths, base_model, dtype, device)
            return cls([adapter_policy(peft_model, n) for n in names], tokenizer, names, eos_token_ids(peft_model),
                       device)
        models = [load_causal_lm(p, dtype, device) for p in named_paths.values()]
        return cls(models, tokenizer, names, eos_token_ids(models[0]), device)

    def _mixed_log_probs(self, weights, input_ids, attention_mask, caches, step_ids):
        positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)[:, -step_ids.shape[1]:]
        mixed = None
        for k, policy in enumerate(self.policies):
            if weights[k] == 0:
                continue
            output = policy(input_ids=step_ids, attention_mask=attention_mask, position_ids=positions,
                            use_cache=True, **{CACHE_FIELD: caches[k]})
            caches[k] = getattr(output, CACHE_FIELD)
            term = weights[k].item() * torch.log_softmax(output.logits[:, -1].float(), dim=-1)
            mixed = term if mixed is None else mixed + term
        return mixed

    def next_token_log_probs(self, prompts: Sequence, weights) -> torch.Tensor:
        """[N, V] normalized log-probs of the first generated token under the mixture (for inspection and tests)."""
        weights = self.parse_weights(weights)
        inputs = self.encode(list(prompts))
        with torch.no_grad():
            mixed = self._mixed_log_probs(weights, inputs["input_ids"], inputs["attention_mask"],
                                          [None] * len(self.policies), inputs["input_ids"])
        return torch.log_softmax(mixed, dim=-1)

    def _generate(self, prompts, weights, decoding):
        inputs = self.encode(prompts)
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        warpers = (_warpers(decoding["temperature"], decoding["top_p"], decoding["top_k"]) if decoding["do_sample"]
                   else None)
        caches = [None] * len(self.policies)
        pad_id = self.tokenizer.pad_token_id
        finished = torch.zeros(len(prompts), dtype=torch.bool, device=input_ids.device)
        step_ids, generated = input_ids, []
        for _ in range(decoding["max_new_tokens"]):
            scores = self._mixed_log_probs(weights, input_ids, attention_mask, caches, step_ids)
            if warpers is not None:
                scores = warpers(input_ids, scores)
                next_tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
            else:
                next_tokens = scores.argmax(dim=-1)
            next_tokens = next_tokens.masked_fill(finished, pad_id)
            generated.append(next_tokens)
            finished |= torch.isin(next_tokens, torch.tensor(sorted(self.eos_token_ids), device=next_tokens.device))
            step_ids = next_tokens[:, None]
            input_ids = torch.cat([input_ids, step_ids], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(step_ids)], dim=1)
            if finished.all():
                break
        return self.decode(torch.stack(generated, dim=1))
