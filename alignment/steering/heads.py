"""`heads`: a multi-head checkpoint whose language-model heads are mixed with the weights
(`alignment.models.multi_head`)."""

from __future__ import annotations

from alignment.models.multi_head import generate_with_weights, head_names
from alignment.steering.base import Steerable, SteeringError


class HeadMixing(Steerable):
    """A multi-head checkpoint whose heads are mixed with the weights (alignment.models.multi_head)."""

    method = "heads"

    def __init__(self, model, tokenizer, objective_names=None, device="cpu"):
        super().__init__(tokenizer, objective_names or head_names(model), device)
        if self.objective_names != head_names(model):
            raise SteeringError(f"head mixing: objectives {self.objective_names} do not match the heads {head_names(model)}")
        self.model = model

    def _generate(self, prompts, weights, decoding):
        return self._hf_generate(self.model, prompts, decoding,
                                 generate=lambda **kwargs: generate_with_weights(self.model, weights, **kwargs))
