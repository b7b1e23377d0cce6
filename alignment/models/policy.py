"""Loading the policy every recipe trains: a hub model or local path, or a packaged name
(`alignment.models.packaged`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig

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


def load_policy(model_args, trust_remote_code: bool = False):
    """(model, tokenizer) from TRL's ModelConfig or a path / hub id; a packaged name ('tiny', or no name) is built
    offline and cached on first use."""
    if isinstance(model_args, (str, os.PathLike)):
        model_args = ModelConfig(model_name_or_path=str(model_args))
    name = resolve_model_path(model_args.model_name_or_path or TINY_POLICY)
    tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.model_revision,
                                              trust_remote_code=trust_remote_code)
    ensure_pad_token(tokenizer, name)
    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    model = AutoModelForCausalLM.from_pretrained(
        name, revision=model_args.model_revision, trust_remote_code=trust_remote_code,
        dtype=dtype, attn_implementation=model_args.attn_implementation, use_safetensors=True,  # never unpickle
    )
    return model, tokenizer
