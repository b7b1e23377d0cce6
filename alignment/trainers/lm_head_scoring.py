"""Score only the completion tokens through TRL's fused LM head on CPU as well.

TRL 1.16 computes per-token log-probabilities with a fused, chunked LM head (`trl.trainer.utils.add_fused_lm_head`).
On CUDA and XPU it projects only the positions that carry a label (the completion tokens: "compact" scoring); on
every other device it projects every position, prompt and padding included, so that compiled backends (Neuron) see
one tile shape per batch. On CPU, an eager backend, that is only wasted work: in the default recipe about 50 prompt
tokens precede 40 completion tokens, so the head (49k x 576 for SmolLM2) and its backward run on more than twice the
positions needed, in the reference pass and in the loss. The results are the same (the masked positions are
zeros either way); measured on SmolLM2, 16 sequences of 90 tokens with 40 scored, one CPU thread: the no-grad pass
5.8 s -> 4.7 s, forward + backward 22.5 s -> 15.7 s (`benchmarks/grpo_step_profile.py` gives the step's split).

TRL decides with the private predicate `_use_triton` (it names the devices where compact scoring pays);
`compact_lm_head_scoring` makes it answer yes for CPU while our trainer scores, and restores it afterwards, so TRL's
own trainers in the same process are untouched. With another TRL that lacks the predicate it changes nothing.
"""

from __future__ import annotations

import contextlib

import torch
from trl.trainer import utils as trl_utils


@contextlib.contextmanager
def compact_lm_head_scoring(device: torch.device):
    """While active, TRL's fused LM head projects only the labelled positions on a CPU `device` too."""
    original = getattr(trl_utils, "_use_triton", None)
    if torch.device(device).type != "cpu" or original is None:
        yield
        return
    trl_utils._use_triton = lambda where: where.type == "cpu" or original(where)
    try:
        yield
    finally:
        trl_utils._use_triton = original
