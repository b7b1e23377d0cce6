"""The multi-head reward model: a plain `AutoModelForSequenceClassification` with one output per objective.

K heads are the K rows of the classification layer (`num_labels = K`), named by `config.id2label`, so one forward
pass scores every objective. Nothing here needs custom code at load time: the per-head normalization statistics
and training facts live in the config as plain JSON fields,

    reward_head_mean / reward_head_std   mean and std of each head's raw score on training texts
    reward_head_stats_measured           false while mean/std are the placeholders 0/1 of a freshly built model
    reward_head_kinds                    {"helpful": "pairwise", "factuality": "rated", ...}
    reward_max_length                    the truncation length the heads were trained with

and `AutoModelForSequenceClassification.from_pretrained(path)` restores all of it anywhere.

Encoders (BERT, MiniLM) pool the first token; decoders (Qwen2, Llama) score the last non-pad token, which
transformers finds from `config.pad_token_id` (we set it from the tokenizer, adding a pad token if the backbone
has none; if pad and eos are then the same token, trailing eos tokens are skipped like padding, which is harmless
because the token before them has read the whole text). Texts are truncated from the left: a reply sits at the
end of a conversation and must survive.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Offline backbones by name ('packaged:all-MiniLM-L6-v2', 'tiny'), so configs stay portable across machines.
from alignment.packaged_models import resolve_model_path

HEAD_MEAN_KEY, HEAD_STD_KEY, HEAD_STATS_MEASURED_KEY = "reward_head_mean", "reward_head_std", "reward_head_stats_measured"
HEAD_KINDS_KEY, MAX_LENGTH_KEY = "reward_head_kinds", "reward_max_length"



def load_reward_tokenizer(name_or_path: str, *, trust_remote_code: bool = False, revision: str | None = None):
    """The backbone's tokenizer, with a pad token and left truncation (keep the end of the conversation)."""
    from transformers import AutoTokenizer

    from alignment.policy import ensure_pad_token

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), trust_remote_code=trust_remote_code, revision=revision)
    # Decoders often ship without one; the eos token is the usual stand-in and keeps the vocabulary unchanged.
    ensure_pad_token(tokenizer, name_or_path)
    tokenizer.truncation_side = "left"
    return tokenizer


def build_reward_model(
    name_or_path: str,
    head_names: Sequence[str],
    tokenizer,
    *,
    head_kinds: dict[str, str] | None = None,
    max_length: int | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
):
    """A K-head reward model on a backbone (hub name, local path or offline alias); new heads, pretrained backbone."""
    from transformers import AutoModelForSequenceClassification

    head_names = list(head_names)
    if not head_names or len(set(head_names)) != len(head_names):
        raise ValueError(f"reward model heads must be distinct names, got {head_names}")
    if isinstance(dtype, str) and dtype not in ("auto",):
        dtype = getattr(torch, dtype)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(name_or_path),
        num_labels=len(head_names),
        id2label=dict(enumerate(head_names)),
        label2id={name: index for index, name in enumerate(head_names)},
        problem_type="regression",  # one real-valued score per head, never a softmax over heads
        revision=revision,
        trust_remote_code=trust_remote_code,
        dtype=dtype,
        use_safetensors=True,  # never unpickle weights
        **({"attn_implementation": attn_implementation} if attn_implementation else {}),
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.update({
        HEAD_KINDS_KEY: dict(head_kinds or {}),
        MAX_LENGTH_KEY: max_length,
        HEAD_MEAN_KEY: [0.0] * len(head_names),  # placeholders until measure_head_statistics: scores stay raw
        HEAD_STD_KEY: [1.0] * len(head_names),
        HEAD_STATS_MEASURED_KEY: False,
    })
    return model


def head_names_of(config) -> list[str]:
    """The objective name of each output, in output order."""
    return [config.id2label[index] for index in range(config.num_labels)]


def set_head_statistics(config, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Store each head's score mean/std (measured on training texts) in the config, as plain lists."""
    std = torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-6)  # a constant head must not divide by zero
    config.update({HEAD_MEAN_KEY: [float(v) for v in mean], HEAD_STD_KEY: [float(v) for v in std],
                   HEAD_STATS_MEASURED_KEY: True})


def head_statistics(config) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean [K], std [K]) from the config, or None for a model trained elsewhere without them, or whose statistics
    are still the placeholders of `build_reward_model` (never measured)."""
    mean, std = getattr(config, HEAD_MEAN_KEY, None), getattr(config, HEAD_STD_KEY, None)
    if mean is None or std is None or len(mean) != config.num_labels or len(std) != config.num_labels:
        return None
    if getattr(config, HEAD_STATS_MEASURED_KEY, True) is False:
        return None
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


def add_lora(model, model_args):
    """Wrap the backbone in LoRA adapters (peft) for large models; the heads stay fully trainable.

    `model_args` is TRL's `ModelConfig`. The task type is forced to sequence classification so peft keeps the
    score/classifier layer trainable and saved (`modules_to_save`).
    """
    from peft import get_peft_model
    from trl.trainer.utils import get_peft_config

    peft_config = get_peft_config(model_args)
    peft_config.task_type = "SEQ_CLS"
    return get_peft_model(model, peft_config)


def merge_lora(model):
    """The plain transformers model, with any LoRA adapter merged in: what we save, so loading needs no peft."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model
