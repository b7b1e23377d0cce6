"""`soup`: rewarded soups: generate with theta = sum_k w_k theta_k, over K full checkpoints or K LoRA adapters
of one base (peft's `add_weighted_adapter(combination_type="cat")` sums the weighted low-rank updates, i.e.
exactly the interpolation of the merged models)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alignment.steering.base import Steerable, SteeringError


class RewardedSoup(Steerable):
    """Rewarded soups over K full checkpoints: generate with theta = sum_k w_k theta_k (float tensors; others from the first)."""

    method = "soup"

    def __init__(self, model, state_dicts: Sequence[dict], tokenizer, objective_names, device="cpu"):
        super().__init__(tokenizer, objective_names, device)
        if len(state_dicts) != len(self.objective_names):
            raise SteeringError(f"soup: {len(state_dicts)} checkpoints for {len(self.objective_names)} objectives {self.objective_names}")
        reference = state_dicts[0]
        for k, state in enumerate(state_dicts[1:], start=1):
            if state.keys() != reference.keys() or any(state[n].shape != reference[n].shape for n in reference):
                raise SteeringError(f"soup: checkpoint {k} ('{self.objective_names[k]}') has a different architecture "
                                    "from checkpoint 0; rewarded soups need K fine-tunes of one base model")
        self.model = model
        self.state_dicts = list(state_dicts)
        self._loaded_weights = None

    def soup_state_dict(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        soup = {}
        for name, first in self.state_dicts[0].items():
            if first.is_floating_point():
                soup[name] = sum(w * state[name] for w, state in zip(weights.tolist(), self.state_dicts) if w > 0)
            else:
                soup[name] = first
        return soup

    def load_soup(self, weights) -> None:
        """Load theta = sum_k w_k theta_k into the model (skipped when these weights are already loaded)."""
        weights = self.parse_weights(weights)
        if self._loaded_weights is None or not torch.equal(weights, self._loaded_weights):
            self.model.load_state_dict(self.soup_state_dict(weights), strict=True)
            self._loaded_weights = weights

    def _generate(self, prompts, weights, decoding):
        self.load_soup(weights)
        return self._hf_generate(self.model, prompts, decoding)


class AdapterSoup(Steerable):
    """Rewarded soups over K LoRA adapters of one base (a peft model holding them, named after the objectives)."""

    method = "soup"
    SOUP = "weighted_soup"

    def __init__(self, peft_model, tokenizer, objective_names, device="cpu"):
        super().__init__(tokenizer, objective_names, device)
        missing = [n for n in self.objective_names if n not in peft_model.peft_config]
        if missing:
            raise SteeringError(f"soup: no adapter named {missing}; the model holds {sorted(peft_model.peft_config)}")
        self.model = peft_model

    def load_soup(self, weights) -> None:
        weights = self.parse_weights(weights)
        if self.SOUP in self.model.peft_config:
            self.model.delete_adapter(self.SOUP)
        kept = [(n, w) for n, w in zip(self.objective_names, weights.tolist()) if w > 0]
        self.model.add_weighted_adapter([n for n, _ in kept], [w for _, w in kept], self.SOUP, combination_type="cat")
        self.model.set_adapter(self.SOUP)

    def _generate(self, prompts, weights, decoding):
        self.load_soup(weights)
        return self._hf_generate(self.model, prompts, decoding)
