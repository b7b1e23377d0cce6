"""The multi-head reward model: a plain `AutoModelForSequenceClassification` with one output per objective.

K heads are the K rows of the classification layer (`num_labels = K`), named by `config.id2label`, so one forward
pass scores every objective. Nothing here needs custom code at load time: the per-head normalization statistics
and training facts live in the config as plain JSON fields,

    reward_head_mean / reward_head_std   mean and std of each head's raw score on training texts
    reward_head_stats_measured           false while mean/std are the placeholders 0/1 of a freshly built model
    reward_head_kinds                    {"helpful": "pairwise", "factuality": "rated", ...}
    reward_max_length                    the truncation length the heads were trained with

and `AutoModelForSequenceClassification.from_pretrained(path)` restores all of it anywhere.

Encoders (BERT, MiniLM) read the first token ([CLS]) through their pooler; sentence-transformer encoders such as
all-MiniLM-L6-v2 were trained for MEAN pooling instead, and their [CLS] state carries no trained signal. For them
`append_mean_pooling_layer` adds one more ordinary BertLayer, initialised so that its [CLS] output is the
LayerNorm of the mean of the encoder's token states (uniform attention, identity values), and the pooler starts as
a near-identity map: a plain BertForSequenceClassification checkpoint whose [CLS] reads the mean-pooled sentence
embedding the backbone was trained for. Decoders (Qwen2, Llama) score the last non-pad token, which
transformers finds from `config.pad_token_id` (we set it from the tokenizer, adding a pad token if the backbone
has none; if pad and eos are then the same token, trailing eos tokens are skipped like padding, which is harmless
because the token before them has read the whole text). Texts are truncated from the left: a reply sits at the
end of a conversation and must survive.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

# Offline backbones by name ('packaged:all-MiniLM-L6-v2', 'tiny'), so configs stay portable across machines.
from alignment.models.packaged import resolve_model_path
from alignment.models.policy import ensure_pad_token

HEAD_MEAN_KEY, HEAD_STD_KEY = "reward_head_mean", "reward_head_std"
HEAD_STATS_MEASURED_KEY = "reward_head_stats_measured"
HEAD_KINDS_KEY, MAX_LENGTH_KEY = "reward_head_kinds", "reward_max_length"



def load_reward_tokenizer(name_or_path: str, *, trust_remote_code: bool = False, revision: str | None = None):
    """The backbone's tokenizer, with a pad token and left truncation (keep the end of the conversation)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), trust_remote_code=trust_remote_code,
                                              revision=revision)
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
    encoder_pooling: str = "mean",
):
    """A K-head reward model on a backbone (hub name, local path or offline alias); new heads, pretrained backbone.

    `encoder_pooling="mean"` gives BERT-style encoders the mean-pooling layer (`append_mean_pooling_layer`); "cls"
    keeps their pretrained [CLS] pooler. Decoders ignore it (they score the last token).
    """
    if encoder_pooling not in ("mean", "cls"):
        raise ValueError(f"encoder_pooling must be 'mean' or 'cls', got {encoder_pooling!r}")
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
    if encoder_pooling == "mean" and supports_mean_pooling_layer(model):
        append_mean_pooling_layer(model)
    return model


MEAN_POOLING_KEY = "reward_mean_pooling_layer"  # config marker: the last encoder layer is the mean-pooling layer


def supports_mean_pooling_layer(model) -> bool:
    """BERT-family sequence classifiers: an encoder of `BertLayer`-shaped layers read at [CLS] through a pooler."""
    base = model.base_model
    return (getattr(base, "pooler", None) is not None and hasattr(getattr(base, "encoder", None), "layer")
            and hasattr(base.encoder.layer[-1], "attention") and hasattr(base.encoder.layer[-1].attention, "self"))


@torch.no_grad()
def append_mean_pooling_layer(model, *, residual_scale: float = 100.0, pooler_scale: float = 0.5) -> None:
    """Append one encoder layer whose [CLS] output is LayerNorm(mean of the token states), and reset the pooler.

    The new layer is an ordinary layer of the backbone's own class (plain checkpoint, `num_hidden_layers + 1`):
    - attention: query = 0, so every score is 0 and softmax attends uniformly to the non-padding tokens (the same
      tokens sentence-transformers' mean pooling averages); value = identity, so each head returns its slice of
      the mean; output dense = residual_scale * identity, so LayerNorm(scale * mean + h_cls) ~ LayerNorm(mean):
      the [CLS] token's own state (the residual) weighs 1/scale.
    - feed-forward: output projection zero, so the layer's output is LayerNorm(LayerNorm(...)) = LayerNorm(mean)
      (LN is idempotent); its input projection is the lower layer's, so the MLP can learn from the first step.
    The pooler's dense starts as pooler_scale * identity (tanh nearly linear there) instead of the pretrained
    next-sentence weights. Every part stays trainable: training may sharpen the uniform attention into a learned one.
    """
    if not supports_mean_pooling_layer(model):
        raise ValueError(f"{type(model).__name__}: mean-pooling layer needs a BERT-style encoder with a [CLS] pooler")
    base, config = model.base_model, model.config
    last = base.encoder.layer[-1]
    if "layer_idx" in type(last).__init__.__code__.co_varnames:
        layer = type(last)(config, layer_idx=len(base.encoder.layer))
    else:
        layer = type(last)(config)
    layer.to(dtype=next(last.parameters()).dtype).train(last.training)  # dropout on only if the model trains
    hidden = config.hidden_size
    eye = torch.eye(hidden)
    attention = layer.attention
    # Zero query alone: scores are 0 whatever the keys, yet the query still gets gradient (through the keys, copied
    # from the layer below), so training can sharpen uniform attention. Zeroing keys too would be a saddle point.
    attention.self.query.weight.zero_(), attention.self.query.bias.zero_()
    attention.self.key.load_state_dict(last.attention.self.key.state_dict())
    attention.self.value.weight.copy_(eye), attention.self.value.bias.zero_()
    attention.output.dense.weight.copy_(residual_scale * eye), attention.output.dense.bias.zero_()
    for norm in (attention.output.LayerNorm, layer.output.LayerNorm):
        norm.weight.fill_(1.0), norm.bias.zero_()
    # Feed-forward: the lower layer's first projection, a zero second one: adds nothing now, learns a residual MLP.
    layer.intermediate.dense.load_state_dict(last.intermediate.dense.state_dict())
    layer.output.dense.weight.zero_(), layer.output.dense.bias.zero_()
    base.encoder.layer.append(layer)
    base.pooler.dense.weight.copy_(pooler_scale * eye), base.pooler.dense.bias.zero_()
    config.num_hidden_layers = len(base.encoder.layer)
    config.update({MEAN_POOLING_KEY: True})


def freeze_lower_layers(model, count: int) -> None:
    """Freeze the embeddings and the first `count` encoder/decoder layers (0 freezes nothing): cheaper steps."""
    if count <= 0:
        return
    base = model.base_model
    layers = base.encoder.layer if hasattr(base, "encoder") else base.layers
    if count > len(layers):
        raise ValueError(f"freeze_layers={count} but the backbone has {len(layers)} layers")
    for module in [base.embeddings if hasattr(base, "embeddings") else base.embed_tokens, *layers[:count]]:
        module.requires_grad_(False)


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
    # Lazy: peft and TRL's trainer utilities take seconds to import, and only LoRA training needs them (scoring with
    # a reward model, in GRPO or the orchestrator recipe, uses this module without them).
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
