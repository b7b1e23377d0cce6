"""Loading the policy every recipe trains: a hub model or local path, or 'tiny' for the offline tiny policy."""

from __future__ import annotations

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.tiny_policy import build_tiny_policy


def load_policy(model_args, trust_remote_code: bool = False):
    """(model, tokenizer) from TRL's ModelConfig; 'tiny' (or no name) is built offline and cached on first use."""
    name = model_args.model_name_or_path
    if name in (None, "tiny"):
        with PartialState().main_process_first():  # one process builds it, the others then read the cache
            name = str(build_tiny_policy())
    tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.model_revision,
                                              trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:  # generation and batching need one; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    model = AutoModelForCausalLM.from_pretrained(
        name, revision=model_args.model_revision, trust_remote_code=trust_remote_code,
        dtype=dtype, attn_implementation=model_args.attn_implementation,
    )
    return model, tokenizer
