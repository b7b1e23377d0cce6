"""`prompt`: the weights written into the prompt, in the format the checkpoint was trained on
(`alignment.objectives.conditioning`)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from alignment.objectives.conditioning import FORMAT_VERSION, condition_prompt, record_format_version
from alignment.steering.base import Steerable, SteeringError
from alignment.steering.checkpoints import load_causal_lm, objective_names_for


class PromptConditioned(Steerable):
    """The weights written into the prompt in the format the checkpoint was trained on."""

    method = "prompt"
    policy_reads_weights = True

    def __init__(self, model, tokenizer, objective_names, device="cpu", format_version: int = FORMAT_VERSION):
        super().__init__(tokenizer, objective_names, device)
        self.model = model
        self.format_version = format_version

    @classmethod
    def from_checkpoint(cls, path: Path, record: dict | None, *, objective_names=None, device="cpu", dtype=None,
                        **unused) -> PromptConditioned:
        """A preference-conditioned checkpoint, in the prompt format its record names (version 1 if none).

        The objective names come from `objective_names` or the record; `unused`: other methods' options.
        """
        tokenizer = AutoTokenizer.from_pretrained(path)
        names = objective_names_for(record, objective_names)
        model = load_causal_lm(path, dtype, device)
        if not names:
            raise SteeringError(f"{path}: no objective names in a record; pass objective_names")
        return cls(model, tokenizer, names, device, record_format_version(record))

    def _generate(self, prompts, weights, decoding):
        conditioned = [condition_prompt(self.as_messages(p), weights, self.objective_names, self.format_version)
                       for p in prompts]
        return self._hf_generate(self.model, conditioned, decoding)
