"""Loading the policy every recipe trains: a hub model or local path, or a packaged name
(`alignment.models.packaged`)."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig, get_quantization_config

from alignment.models.packaged import TINY_POLICY, resolve_model_path

logger = logging.getLogger(__name__)


def ensure_pad_token(tokenizer, name: str):
    """Give a tokenizer without a pad token its EOS token as pad (said in the log), or stop if it has neither.

    Batched generation and padding need a pad token; many decoders ship without one and EOS is the usual stand-in
    (padding is masked out, so it never reads as an end of text). Without EOS either there is nothing safe to pick.
    """
    if tokenizer.pad_token is not None:
        return tokenizer
    if tokenizer.eos_token is None:
        raise ValueError(f"tokenizer of '{name}' has neither a pad token nor an EOS token; set one, e.g. "
                         "tokenizer.add_special_tokens({'pad_token': '<pad>'}), resize the model's embeddings and "
                         "save it")
    logger.warning(f"tokenizer of '{name}' has no pad token; using its EOS token {tokenizer.eos_token!r} as pad")
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def eos_token_ids(model) -> set[int]:
    """The end-of-sequence ids generation stops at (`generation_config.eos_token_id`: an id, a list, or None)."""
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


def check_safetensors_adapter(path) -> None:
    """Refuse a LoRA adapter folder without `adapter_model.safetensors`: peft would unpickle `adapter_model.bin`
    (torch.load of a pickle can run arbitrary code) and has no switch to forbid it."""
    if not (Path(path) / "adapter_model.safetensors").exists():
        raise OSError(f"{path}: no adapter_model.safetensors; pickled adapter weights (adapter_model.bin) are refused. "
                      "Re-save the adapter with save_pretrained(..., safe_serialization=True)")


def check_quantization(model_args, trainer: str, uses_preference_adapter: bool = False) -> None:
    """`load_in_4bit` / `load_in_8bit` (TRL's ModelConfig): QLoRA, a quantized frozen base under a LoRA adapter, as
    TRL runs it (bitsandbytes on a CUDA GPU). Refused, with the reason, where it cannot run: called before any data or
    model loads."""
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return
    flag = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit"
    if trainer not in ("grpo", "dpo"):
        raise ValueError(f"{flag}: quantized training is supported for the policy trainers (GRPO, DPO), not the "
                         f"{trainer}")
    if uses_preference_adapter:
        raise ValueError(f"{flag} with a preference adapter: the adapter's layers wrap plain nn.Linear weights, not "
                         "bitsandbytes' quantized ones; use use_peft (plain LoRA) for QLoRA, or drop the flag")
    if not model_args.use_peft:
        raise ValueError(f"{flag}: a quantized base cannot be trained itself; set use_peft true (QLoRA)")
    if not torch.cuda.is_available():
        raise ValueError(f"{flag}: QLoRA quantizes the base with bitsandbytes on a CUDA GPU, and this machine has "
                         f"none; drop {flag} on CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f"{flag} needs bitsandbytes: pip install bitsandbytes")


def load_policy(model_args, trust_remote_code: bool = False, model_init_kwargs: dict | None = None):
    """(model, tokenizer) from TRL's ModelConfig or a path / hub id; a packaged name ('tiny', or no name) is built
    offline and cached on first use."""
    if isinstance(model_args, (str, os.PathLike)):
        model_args = ModelConfig(model_name_or_path=str(model_args))
    name = resolve_model_path(model_args.model_name_or_path or TINY_POLICY)
    tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.model_revision,
                                              trust_remote_code=trust_remote_code)
    ensure_pad_token(tokenizer, name)
    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    quantization_config = get_quantization_config(model_args)  # None unless load_in_4bit / load_in_8bit (QLoRA)
    quantization = {} if quantization_config is None else {"quantization_config": quantization_config,
                                                           "device_map": {"": PartialState().local_process_index}}
    # The training config's model_init_kwargs win, as in TRL for a model given by name; weights stay safetensors.
    kwargs = {"revision": model_args.model_revision, "trust_remote_code": trust_remote_code, "dtype": dtype,
              "attn_implementation": model_args.attn_implementation, **quantization, **(model_init_kwargs or {})}
    if isinstance(kwargs.get("dtype"), str) and kwargs["dtype"] != "auto":
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs, use_safetensors=True)  # never unpickle
    return model, tokenizer
