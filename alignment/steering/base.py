"""What every steering method shares: weights validated against the objective names, prompt rendering (a chat
template when the tokenizer has one), batched left-padded encoding, and decoding arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from alignment.objectives.weights import parse_preference_weights


class SteeringError(ValueError):
    """A checkpoint, method or argument that cannot be steered as asked; the message says what is wrong."""


class Steerable:
    """Base: a tokenizer, the objective names the weights refer to, prompt rendering and decoding.

    A method is a subclass registered by name in `alignment.steering.METHODS`; its class attributes tell
    `load_steerable` and the scripts what it takes, so that no caller compares method names.
    """

    method: str = ""
    # K checkpoints, one per objective (mod, soup), rather than one checkpoint
    mixes_checkpoints: bool = False
    # The method's own keyword options (load_steerable's **method_kwargs) that a command line may pass on
    method_arguments: tuple[str, ...] = ()
    # The policy was trained reading the weights as an input (prompt header, adapter lambda), so a checkpoint trained
    # at one fixed weight vector must still be given it; mixing heads or models needs no such input
    policy_reads_weights: bool = False

    def __init__(self, tokenizer, objective_names: Sequence[str], device: str | torch.device = "cpu"):
        self.tokenizer = tokenizer
        self.objective_names = list(objective_names)
        self.device = torch.device(device)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_checkpoint(cls, checkpoint, *args, **kwargs) -> Steerable:
        """This method loaded from its checkpoint(s), with the method's own checks.

        One checkpoint: `from_checkpoint(path, record, *, objective_names, reward_sources, device, dtype,
        **method_kwargs)`, `record` its objectives.json (or None); options of other methods are accepted and unused.
        K checkpoints (`mixes_checkpoints`): `from_checkpoint(named_paths, *, objective_names, base_model, device,
        dtype)`, `named_paths` {objective: path}.
        """
        raise NotImplementedError(f"{cls.__name__} cannot be loaded from a checkpoint")

    def parse_weights(self, weights) -> torch.Tensor:
        """The weights (string, list or mapping) as a tensor in objective order, validated against the names."""
        return parse_preference_weights(weights, self.objective_names)

    def as_messages(self, prompt):
        """A string prompt as one user message when the tokenizer has a chat template; anything else as is."""
        if isinstance(prompt, str) and self.tokenizer.chat_template:
            return [{"role": "user", "content": prompt}]
        return prompt

    def render(self, prompt) -> str:
        """The prompt as the text the model reads (chat template applied, generation prompt added)."""
        prompt = self.as_messages(prompt)
        if isinstance(prompt, list):
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return prompt

    def encode(self, prompts: Sequence) -> dict[str, torch.Tensor]:
        """The rendered prompts tokenized as one left-padded batch on the device."""
        self.tokenizer.padding_side = "left"
        texts = [self.render(p) for p in prompts]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def decode(self, token_ids) -> list[str]:
        """Generated token ids back to text, special tokens dropped."""
        return self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)

    def generate(self, prompts: Sequence, weights, *, max_new_tokens: int = 48, do_sample: bool = True,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None,
                 seed: int | None = None) -> list[str]:
        """One reply per prompt under `weights` (validated first, so bad weights fail before any compute)."""
        if isinstance(prompts, (str, Mapping)):
            raise SteeringError("generate: `prompts` must be a list of prompts (strings or chat message lists)")
        weights = self.parse_weights(weights)
        if seed is not None:
            torch.manual_seed(seed)
        decoding = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p,
                        top_k=top_k)
        with torch.no_grad():
            return self._generate(list(prompts), weights, decoding)

    def _generate(self, prompts: list, weights: torch.Tensor, decoding: dict) -> list[str]:
        raise NotImplementedError

    def _hf_generate(self, model, prompts: list, decoding: dict, generate=None) -> list[str]:
        inputs = self.encode(prompts)
        generate = generate or model.generate
        output = generate(**inputs, **decoding, pad_token_id=self.tokenizer.pad_token_id)
        return self.decode(output[:, inputs["input_ids"].shape[1]:])
