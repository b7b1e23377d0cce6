"""`heads`: a multi-head checkpoint whose language-model heads are mixed with the weights
(`alignment.models.multi_head`)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from alignment.models.multi_head import HEADS_RECORD, generate_with_weights, head_names, load_multi_head_model
from alignment.steering.base import Steerable, SteeringError
from alignment.steering.checkpoints import objective_names_for


class HeadMixing(Steerable):
    """A multi-head checkpoint whose heads are mixed with the weights (alignment.models.multi_head)."""

    method = "heads"

    def __init__(self, model, tokenizer, objective_names=None, device="cpu"):
        super().__init__(tokenizer, objective_names or head_names(model), device)
        if self.objective_names != head_names(model):
            raise SteeringError(f"head mixing: objectives {self.objective_names} do not match the heads "
                                f"{head_names(model)}")
        self.model = model

    @classmethod
    def from_checkpoint(cls, path: Path, record: dict | None, *, objective_names=None, device="cpu", dtype=None,
                        **unused) -> HeadMixing:
        """A multi-head checkpoint (it must hold multi_head.json); `unused`: other methods' options."""
        tokenizer = AutoTokenizer.from_pretrained(path)
        names = objective_names_for(record, objective_names)
        if not (path / HEADS_RECORD).exists():
            raise SteeringError(f"{path}: no {HEADS_RECORD}; head mixing needs a multi-head checkpoint")
        model = load_multi_head_model(path, dtype=dtype).to(device).eval()
        return cls(model, tokenizer, names, device)

    def _generate(self, prompts, weights, decoding):
        return self._hf_generate(self.model, prompts, decoding,
                                 generate=lambda **kwargs: generate_with_weights(self.model, weights, **kwargs))
