"""`soup`: rewarded soups: generate with theta = sum_k w_k theta_k, over K full checkpoints or K LoRA adapters
of one base (peft's `add_weighted_adapter(combination_type="cat")` sums the weighted low-rank updates, i.e.
exactly the interpolation of the merged models)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from alignment.steering.base import Steerable, SteeringError
from alignment.steering.checkpoints import (
    load_causal_lm,
    load_peft_adapters,
    open_checkpoints,
)


class Soup(Steerable):
    """Rewarded soups: load theta = sum_k w_k theta_k for the request's weights, then generate with it.

    `from_checkpoint` gives a `RewardedSoup` for K full checkpoints and an `AdapterSoup` for K LoRA adapters.
    """

    method = "soup"
    mixes_checkpoints = True

    @classmethod
    def from_checkpoint(cls, named_paths: dict[str, Path], *, objective_names=None, base_model: str | None = None,
                        device="cpu", dtype=None) -> Soup:
        """The soup of K full checkpoints or of K LoRA adapters of one base.

        named_paths: {objective: path}, put in `objective_names`' order when given; every checkpoint must share
        one tokenizer. `base_model`: the adapters' base when their adapter_config.json files do not name one.
        """
        named_paths, adapters, tokenizer = open_checkpoints(named_paths, objective_names)
        names = list(named_paths)
        if adapters:
            peft_model, _ = load_peft_adapters(named_paths, base_model, dtype, device)
            return AdapterSoup(peft_model, tokenizer, names, device)
        models = [load_causal_lm(p, dtype, device) for p in named_paths.values()]
        states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]
        return RewardedSoup(models[0], states, tokenizer, names, device)

    def load_soup(self, weights) -> None:
        """Load theta = sum_k w_k theta_k for these weights into the model."""
        raise NotImplementedError

    def _generate(self, prompts, weights, decoding):
        self.load_soup(weights)
        return self._hf_generate(self.model, prompts, decoding)


class RewardedSoup(Soup):
    """Rewarded soups over K full checkpoints: generate with theta = sum_k w_k theta_k (float tensors; the others,
    e.g. integer buffers, from the first checkpoint)."""

    def __init__(self, model, state_dicts: Sequence[dict], tokenizer, objective_names, device="cpu"):
        super().__init__(tokenizer, objective_names, device)
        if len(state_dicts) != len(self.objective_names):
            raise SteeringError(f"soup: {len(state_dicts)} checkpoints for {len(self.objective_names)} objectives "
                                f"{self.objective_names}")
        reference = state_dicts[0]
        for k, state in enumerate(state_dicts[1:], start=1):
            if state.keys() != reference.keys() or any(state[n].shape != reference[n].shape for n in reference):
                raise SteeringError(f"soup: checkpoint {k} ('{self.objective_names[k]}') has a different architecture "
                                    "from checkpoint 0; rewarded soups need K fine-tunes of one base model")
        self.model = model
        self.state_dicts = list(state_dicts)
        self._loaded_weights = None

    def soup_state_dict(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """sum_k w_k theta_k over the float tensors (checkpoints at weight 0 skipped); other tensors from the first."""
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


class AdapterSoup(Soup):
    """Rewarded soups over K LoRA adapters of one base (a peft model holding them, named after the objectives)."""

    SOUP = "weighted_soup"

    def __init__(self, peft_model, tokenizer, objective_names, device="cpu"):
        super().__init__(tokenizer, objective_names, device)
        missing = [n for n in self.objective_names if n not in peft_model.peft_config]
        if missing:
            raise SteeringError(f"soup: no adapter named {missing}; the model holds {sorted(peft_model.peft_config)}")
        self.model = peft_model

    def load_soup(self, weights) -> None:
        """Make the weighted sum of the adapters (weight-0 adapters left out) the active adapter."""
        weights = self.parse_weights(weights)
        if self.SOUP in self.model.peft_config:
            self.model.delete_adapter(self.SOUP)
        kept = [(n, w) for n, w in zip(self.objective_names, weights.tolist()) if w > 0]
        self.model.add_weighted_adapter([n for n, _ in kept], [w for _, w in kept], self.SOUP, combination_type="cat")
        self.model.set_adapter(self.SOUP)
