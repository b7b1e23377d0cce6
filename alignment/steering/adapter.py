"""`adapter`: a preference adapter (`alignment.models.preference_adapter`) whose lambda is set to each request's
weights; for checkpoints trained with the weights in the prompt as well (`both`), the prompt is conditioned too."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from alignment.models.preference_adapter import load_steerable_model, preference_state, preference_weights
from alignment.objectives.conditioning import condition_prompt, record_format_version
from alignment.steering.base import Steerable, SteeringError
from alignment.steering.checkpoints import objective_names_for


class PreferenceAdapterSteerable(Steerable):
    """A preference adapter whose lambda is set to the request's weights (`alignment.models.preference_adapter`)."""

    method = "adapter"
    policy_reads_weights = True

    def __init__(self, model, tokenizer, objective_names=None, device="cpu", prompt_format_version: int | None = None):
        adapter_names = preference_state(model).objective_names
        super().__init__(tokenizer, objective_names or adapter_names, device)
        if self.objective_names != adapter_names:
            raise SteeringError(f"preference adapter: objectives {self.objective_names} do not match the adapter's "
                                f"{adapter_names}")
        self.model = model
        self.prompt_format_version = prompt_format_version  # trained with the weights in the prompt too ('both')

    @classmethod
    def from_checkpoint(cls, path: Path, record: dict | None, *, objective_names=None, device="cpu", dtype=None,
                        **unused) -> PreferenceAdapterSteerable:
        """A preference-adapter checkpoint; the prompt is conditioned too when its record names a prompt format.

        `unused`: other methods' options.
        """
        tokenizer = AutoTokenizer.from_pretrained(path)
        names = objective_names_for(record, objective_names)
        try:
            model = load_steerable_model(path, dtype=dtype, device=device)
        except FileNotFoundError as error:
            raise SteeringError(str(error)) from None
        conditioned_prompt = bool((record or {}).get("prompt_format"))
        return cls(model, tokenizer, names, device,
                   prompt_format_version=record_format_version(record) if conditioned_prompt else None)

    def _generate(self, prompts, weights, decoding):
        if self.prompt_format_version is not None:
            prompts = [condition_prompt(self.as_messages(p), weights, self.objective_names, self.prompt_format_version)
                       for p in prompts]
        with preference_weights(self.model, weights):
            return self._hf_generate(self.model, prompts, decoding)
