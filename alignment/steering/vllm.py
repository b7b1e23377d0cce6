"""Steering on vLLM (`scripts/generate.py --engine vllm`): the checkpoint served by a vLLM engine instead of HF
`generate`, for the checkpoints a plain engine can serve.

- `adapter` (record `steering: adapter`): the base is the engine's model; each request's weights become a LoRA of
  the preference adapter at those weights (`alignment.models.vllm_engine.GridLoRAs`), snapped to the grid the checkpoint
  was trained on (record `preference_grid`), else exported exactly on demand. Trained with the weights in the prompt
  as well (`both`): the prompt is conditioned too.
- `prompt` (record `steering: prompt`): a plain model; the weights are written into the prompt.
- baked (`scripts/publish.py --weights`, record `baked_weights`): a plain model, at the weights it was baked at.

Mixtures (mod, soup, heads) and decoding-time search (rmod) combine models or heads token by token, which a vLLM
engine does not do: refused. Continuous lambda without a grid costs one LoRA export per distinct weight vector;
lambda as a per-request number (no export) waits on per-request LoRA scales in vLLM.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from alignment.models.vllm_engine import (
    GridLoRAs,
    adapter_rank,
    keep_torch_threads,
    lora_engine_kwargs,
    require_vllm,
    use_cpu_defaults,
)
from alignment.objectives.conditioning import condition_prompt, record_format_version
from alignment.objectives.weights import format_preference_weights, parse_preference_weights
from alignment.steering.adapter import PreferenceAdapterSteerable
from alignment.steering.base import Steerable, SteeringError
from alignment.steering.checkpoints import read_record_if_any


class VLLMSteerable(Steerable):
    """A checkpoint served by vLLM: one engine, the weights through a LoRA per weight vector, the prompt, or baked."""

    policy_reads_weights = True

    def __init__(self, llm, tokenizer, objective_names, method: str, *, grid_loras: GridLoRAs | None = None,
                 prompt_format_version: int | None = None, baked_weights=None):
        super().__init__(tokenizer, objective_names)
        self.llm = llm
        self.method = method
        self.grid_loras = grid_loras
        self.prompt_format_version = prompt_format_version
        self.baked_weights = baked_weights

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, dtype: str = "float32", seed: int = 0,
                        max_model_len: int | None = None, max_loras: int = 4) -> VLLMSteerable:
        require_vllm()
        path = Path(path)
        if not path.exists():
            raise SteeringError(f"checkpoint {path} does not exist")
        record = read_record_if_any(path) or {}
        steering = record.get("steering", "none")
        engine = dict(model=str(path), dtype=dtype, seed=seed, max_model_len=max_model_len)
        if steering == "adapter":
            steerable = PreferenceAdapterSteerable.from_checkpoint(path, record)
            grid_loras = GridLoRAs(steerable.model, record.get("preference_grid"))
            llm = _start(engine, lora_engine_kwargs(adapter_rank(steerable.model), max_loras))
            return cls(llm, steerable.tokenizer, steerable.objective_names, "adapter", grid_loras=grid_loras,
                       prompt_format_version=steerable.prompt_format_version)
        names = record.get("objective_names")
        if steering == "prompt":
            return cls(_start(engine), AutoTokenizer.from_pretrained(path), names, "prompt",
                       prompt_format_version=record_format_version(record))
        if record.get("baked_weights"):
            baked = parse_preference_weights(record["baked_weights"], names)
            conditioned = bool(record.get("baked_prompt_header") or record.get("prompt_format"))
            return cls(_start(engine), AutoTokenizer.from_pretrained(path), names, "baked", baked_weights=baked,
                       prompt_format_version=record_format_version(record) if conditioned else None)
        raise SteeringError(f"{path}: --engine vllm serves preference-adapter, prompt-conditioned and baked "
                            f"checkpoints; this one's record says steering '{steering}' (mixtures and decoding-time "
                            "search combine models token by token, which a vLLM engine does not do: use --engine hf)")

    def _generate(self, prompts, weights, decoding):
        from vllm import SamplingParams

        if self.baked_weights is not None and not (weights - self.baked_weights).abs().max() < 1e-6:
            baked, asked = (format_preference_weights(w, self.objective_names) for w in (self.baked_weights, weights))
            raise SteeringError(f"this checkpoint is baked at weights {baked}; it cannot be steered to {asked}: serve "
                                "the steerable checkpoint it was baked from")
        if self.prompt_format_version is not None:
            prompts = [condition_prompt(self.as_messages(p), weights, self.objective_names, self.prompt_format_version)
                       for p in prompts]
        token_ids = [self.tokenizer(self.render(p), add_special_tokens=False)["input_ids"] for p in prompts]
        sampling = SamplingParams(max_tokens=decoding["max_new_tokens"],
                                  temperature=decoding["temperature"] if decoding["do_sample"] else 0.0,
                                  top_p=decoding["top_p"], top_k=decoding["top_k"] or 0)
        requests = None
        if self.grid_loras is not None:  # every row carries a LoRA (see GridLoRAs)
            requests = self.grid_loras.requests(self.llm, [weights] * len(prompts))
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in token_ids], sampling,
                                    lora_request=requests, use_tqdm=False)
        return self.decode([list(output.outputs[0].token_ids) for output in outputs])


def _start(engine: dict, lora: dict | None = None):
    """A vLLM engine for `engine` (LLM arguments), with LoRA serving when `lora` is given."""
    from vllm import LLM

    use_cpu_defaults()
    with keep_torch_threads():
        return LLM(**{k: v for k, v in engine.items() if v is not None}, **(lora or {}))
