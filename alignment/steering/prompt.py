"""`prompt`: the weights written into the prompt, in the format the checkpoint was trained on
(`alignment.objectives.conditioning`)."""

from __future__ import annotations

from alignment.objectives.conditioning import FORMAT_VERSION, condition_prompt
from alignment.steering.base import Steerable


class PromptConditioned(Steerable):
    """The weights written into the prompt in the format the checkpoint was trained on."""

    method = "prompt"

    def __init__(self, model, tokenizer, objective_names, device="cpu", format_version: int = FORMAT_VERSION):
        super().__init__(tokenizer, objective_names, device)
        self.model = model
        self.format_version = format_version

    def _generate(self, prompts, weights, decoding):
        conditioned = [condition_prompt(self.as_messages(p), weights, self.objective_names, self.format_version)
                       for p in prompts]
        return self._hf_generate(self.model, conditioned, decoding)
