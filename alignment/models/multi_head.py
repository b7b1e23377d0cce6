"""Multi-head policies (MAH-DPO): one shared trunk, H language-model heads, mixed with user weights at generation.

Layout in memory: head 0 is the model's own output embedding (`model.lm_head`), heads 1.. live in
`model.extra_lm_heads`; every head starts as a copy of the base head. Heads are full vocabulary projections, and a
tied model shares its head with the input embedding, so `add_lm_heads` unties first: otherwise training head 0
would also move the input embedding that every head reads through the trunk.

Layout on disk (`save_multi_head_model`): a plain transformers checkpoint whose `lm_head` is ONE chosen head (so
`AutoModelForCausalLM.from_pretrained` loads it, without our code and without `trust_remote_code`), plus
`lm_heads.safetensors` with every head and `multi_head.json` naming them. `load_multi_head_model` restores all heads.

Mixing: logits = sum_i w_i z_i = h (sum_i w_i W_i)^T, so with the weights fixed for a `generate` call the mix is
one projection with the mixed matrix. It is done at the head (a `MixedHeads` module swapped in), not on the scores
handed to logits processors: `generate` runs its own processors (repetition penalty, temperature, top-k/top-p)
before user ones, and they must see the mixed logits.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, LogitsProcessor
from transformers.utils import ModelOutput

from alignment.objectives.weights import parse_preference_weights

HEADS_FILE = "lm_heads.safetensors"
HEADS_RECORD = "multi_head.json"


def _full_copy(parameter: torch.Tensor) -> torch.Tensor:
    """A plain copy of a parameter's whole value. A model loaded under DeepSpeed ZeRO-3 (`zero3_init_flag`) holds
    partitioned parameters (empty locally): gather first. DeepSpeed partitions the new plain parameters when it
    wraps the model."""
    if hasattr(parameter, "ds_id"):
        import deepspeed  # lazy: a heavy optional engine, only ever needed under a ZeRO-3 launch (which loaded it)

        with deepspeed.zero.GatheredParameters([parameter]):
            return parameter.detach().clone()
    return parameter.detach().clone()


def _copy_head(head: nn.Module) -> nn.Linear:
    weight = _full_copy(head.weight)
    copy_ = nn.Linear(weight.shape[1], weight.shape[0], bias=head.bias is not None, device=weight.device,
                      dtype=weight.dtype)
    with torch.no_grad():
        copy_.weight.copy_(weight)
        if head.bias is not None:
            copy_.bias.copy_(_full_copy(head.bias))
    return copy_


def _untie_output_embeddings(model) -> None:
    head = model.get_output_embeddings()
    if head.weight is model.get_input_embeddings().weight:
        head.weight = nn.Parameter(_full_copy(head.weight))
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False
    # transformers re-ties from this mapping on save/load; with tie_word_embeddings=False it is empty
    model.all_tied_weights_keys = model.get_expanded_tied_weights_keys(all_submodels=True)


def add_lm_heads(model, head_names: list[str]):
    """Give a causal LM one head per name (head i initialised from the base head); returns the same model."""
    if hasattr(model, "extra_lm_heads"):
        raise ValueError("add_lm_heads: the model already has several heads")
    if len(head_names) < 1 or len(set(head_names)) != len(head_names):
        raise ValueError(f"add_lm_heads: need distinct head names, got {head_names}")
    if model.get_output_embeddings() is None:
        raise ValueError(f"add_lm_heads: {type(model).__name__} has no language-model head to copy")
    _untie_output_embeddings(model)
    base_head = model.get_output_embeddings()
    model.extra_lm_heads = nn.ModuleList([_copy_head(base_head) for _ in head_names[1:]])
    model.config.multi_head = {"head_names": list(head_names), "plain_head": head_names[0]}
    model.__class__ = _multi_head_class(type(model))
    return model


def head_names(model) -> list[str]:
    info = getattr(model.config, "multi_head", None)
    if not info:
        raise ValueError(f"{type(model).__name__} has a single head; build heads with add_lm_heads first")
    return list(info["head_names"])


def head_modules(model) -> list[nn.Module]:
    """The H heads in name order: the model's own output embedding first, then the extra heads."""
    head_names(model)
    return [model.get_output_embeddings(), *model.extra_lm_heads]


def head_logits(model, hidden_states: torch.Tensor) -> torch.Tensor:
    """[H, ..., V] logits of every head on the trunk's last hidden states (for inspection and tests)."""
    return torch.stack([head(hidden_states) for head in head_modules(model)])


_MULTI_HEAD_CLASSES: dict[type, type] = {}


def _multi_head_class(model_class: type) -> type:
    """`model_class` with a forward that also takes `head_ids`: `model(..., labels=labels, head_ids=ids)` returns
    per-token log-probs of `labels`, row n scored by head ids[n]; without `head_ids` it is the class's own forward.

    A subclass, not a patched instance attribute: the forward reads the heads of the instance it is called on, so a
    `copy.deepcopy` (a reference model) runs its own heads. It keeps the class's name, so `config.architectures` and
    plain `from_pretrained` are unchanged. The per-head pass happens inside forward (not by calling the trunk from
    outside) so a distributed wrapper (DDP) sees the call and synchronises the gradients of the trunk and every head.
    """
    if model_class in _MULTI_HEAD_CLASSES.values():
        return model_class
    if model_class not in _MULTI_HEAD_CLASSES:
        @functools.wraps(model_class.forward)
        def forward(self, *args, head_ids=None, labels=None, **kwargs):
            if head_ids is None:
                if labels is not None:
                    kwargs["labels"] = labels
                return model_class.forward(self, *args, **kwargs)
            from trl.trainer.utils import selective_log_softmax  # training only: inference and mixing need no trl

            kwargs["use_cache"] = False
            hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
            targets = labels[:, 1:]
            heads = head_modules(self)
            log_probs = hidden.new_zeros(targets.shape, dtype=torch.float32)
            used = set(torch.unique(head_ids).tolist())
            data_parallel = torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
            for head_id, head in enumerate(heads):
                rows = head_ids == head_id
                if head_id not in used:
                    if data_parallel:
                        # A head without rows here still takes part, on zero rows (a zero gradient for no compute):
                        # every process must produce the same set of gradients, or the reductions of DDP and ZeRO
                        # mismatch across processes whose batches hold different objectives (the average gradient
                        # of a head another process did use is then right, too). A module call: ZeRO-3 gathers it.
                        log_probs = log_probs + head(hidden[:0]).sum()
                    continue
                logits = head(hidden[rows]).float()
                log_probs[rows] = selective_log_softmax(logits, targets[rows].clamp(min=0))
            return ModelOutput(log_probs=log_probs.masked_fill(targets == -100, 0.0))

        _MULTI_HEAD_CLASSES[model_class] = type(model_class.__name__, (model_class,), {
            "forward": forward, "__module__": model_class.__module__, "__qualname__": model_class.__qualname__,
        })
    return _MULTI_HEAD_CLASSES[model_class]


# ---------------------------------------------------------------------------------------------- mixing

class MixedHeads(nn.Module):
    """An output head computing sum_i w_i z_i. Weights [H] (one mix, precomputed matrix) or [B, H] (one per row)."""

    def __init__(self, heads: list[nn.Module], weights: torch.Tensor):
        super().__init__()
        self.heads = heads  # plain list: borrowed modules, not registered as children
        self.weights = weights
        if weights.dim() == 1:
            with torch.no_grad():
                reference = heads[0].weight
                self.weight = torch.einsum("h,hvd->vd", weights.to(reference), torch.stack([h.weight for h in heads]))
                biases = [h.bias for h in heads]
                self.bias = (None if biases[0] is None
                             else torch.einsum("h,hv->v", weights.to(reference), torch.stack(biases)))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.weights.dim() == 1:
            return F.linear(hidden_states, self.weight, self.bias)
        # per-row weights: every head's logits, then the row's own mix
        logits = torch.stack([head(hidden_states) for head in self.heads], dim=-1)  # [B, T, V, H]
        weights = self.weights.to(logits)[:, None, None, :]
        return (logits * weights).sum(dim=-1)


def resolve_mixing_weights(model, weights) -> torch.Tensor:
    """Weights for the heads: a spec (`helpful=0.7,harmless=0.3`, list, mapping) -> [H], or a tensor [B, H]."""
    names = head_names(model)
    if isinstance(weights, torch.Tensor) and weights.dim() == 2:
        return torch.stack([parse_preference_weights(row, names) for row in weights])
    return parse_preference_weights(weights, names)


@contextlib.contextmanager
def mixed_heads(model, weights):
    """Within the block, the model's output head is the weighted mix of its heads (generate, forward, anything)."""
    mixed = MixedHeads(head_modules(model), resolve_mixing_weights(model, weights))
    original = model.get_output_embeddings()
    model.set_output_embeddings(mixed)
    try:
        yield mixed
    finally:
        model.set_output_embeddings(original)


class HeadMixingLogitsProcessor(LogitsProcessor):
    """The logits processor that steers a multi-head model with user weights in `generate`.

        with HeadMixingLogitsProcessor(model, "helpful=0.7,harmless=0.3") as mixer:
            model.generate(**inputs, logits_processor=[mixer])

    Entering swaps the mixed head in (see the module docstring for why the mix happens at the head: generate's own
    temperature / top-p / repetition penalty then act on the mixed logits); the processor itself checks that every
    step's scores came from the mixed head, so forgetting the `with` fails loudly instead of sampling from head 0.
    """

    def __init__(self, model, weights):
        self.model = model
        self.weights = resolve_mixing_weights(model, weights)
        self._context = None

    def __enter__(self):
        self._context = mixed_heads(self.model, self.weights)
        self._context.__enter__()
        return self

    def __exit__(self, *exc):
        context, self._context = self._context, None
        return context.__exit__(*exc)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._context is None or not isinstance(self.model.get_output_embeddings(), MixedHeads):
            raise RuntimeError("HeadMixingLogitsProcessor is not active: call generate inside `with processor:`")
        return scores


def generate_with_weights(model, weights, **generate_kwargs):
    """`model.generate(**generate_kwargs)` with the heads mixed under `weights`."""
    with HeadMixingLogitsProcessor(model, weights) as mixer:
        processors = list(generate_kwargs.pop("logits_processor", None) or [])
        return model.generate(**generate_kwargs, logits_processor=[mixer, *processors])


# ---------------------------------------------------------------------------------------------- save / load

def _output_embedding_key(model) -> str:
    head = model.get_output_embeddings()
    for name, module in model.named_modules():
        if module is head:
            return name
    raise ValueError("cannot find the output embedding module")


def save_multi_head_model(model, output_dir: str | Path, plain_head: str | None = None,
                          state_dict: dict | None = None, **save_kwargs) -> Path:
    """A plain checkpoint whose `lm_head` is `plain_head` (default: the first head), plus every head beside it."""
    names = head_names(model)
    plain_head = plain_head or model.config.multi_head.get("plain_head", names[0])
    if plain_head not in names:
        raise ValueError(f"save_multi_head_model: no head '{plain_head}'; heads are {names}")
    # Heads are read from the state dict, not the modules: under ZeRO-3 or FSDP the modules hold shards, and the
    # Trainer hands in the gathered full state dict.
    key = _output_embedding_key(model)
    full_state = state_dict if state_dict is not None else model.state_dict()
    head_keys = [key] + [f"extra_lm_heads.{index}" for index in range(len(names) - 1)]
    weights = [full_state[f"{k}.weight"].detach() for k in head_keys]
    biases = [full_state.get(f"{k}.bias") for k in head_keys]
    chosen = names.index(plain_head)
    state = {k: v for k, v in full_state.items() if not k.startswith("extra_lm_heads.")}
    state[f"{key}.weight"] = weights[chosen]
    if biases[chosen] is not None:
        state[f"{key}.bias"] = biases[chosen].detach()
    output_dir = Path(output_dir)
    model.config.multi_head = {"head_names": names, "plain_head": plain_head}
    model.save_pretrained(output_dir, state_dict=state, safe_serialization=True, **save_kwargs)
    tensors = {"weight": torch.stack(weights).contiguous().cpu()}
    if biases[0] is not None:
        tensors["bias"] = torch.stack([b.detach() for b in biases]).contiguous().cpu()
    save_file(tensors, str(output_dir / HEADS_FILE))
    (output_dir / HEADS_RECORD).write_text(json.dumps({"head_names": names, "plain_head": plain_head}, indent=2) + "\n")
    return output_dir


def load_lm_heads(model, path: str | Path) -> None:
    """Copy every head saved in `path` into a model that already has heads (same names and shapes)."""
    path = Path(path)
    record = json.loads((path / HEADS_RECORD).read_text())
    if record["head_names"] != head_names(model):
        raise ValueError(f"{path}: heads {record['head_names']} do not match the model's {head_names(model)}")
    tensors = load_file(str(path / HEADS_FILE))
    with torch.no_grad():
        for index, head in enumerate(head_modules(model)):
            head.weight.copy_(tensors["weight"][index])
            if head.bias is not None:
                head.bias.copy_(tensors["bias"][index])


def load_multi_head_model(path: str | Path, **from_pretrained_kwargs):
    """The inverse of `save_multi_head_model`: the trunk, then every head, in saved order."""
    path = Path(path)
    if not (path / HEADS_RECORD).exists():
        raise FileNotFoundError(f"{path}: no {HEADS_RECORD}; this is not a multi-head checkpoint")
    record = json.loads((path / HEADS_RECORD).read_text())
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, **from_pretrained_kwargs)
    add_lm_heads(model, record["head_names"])
    load_lm_heads(model, path)
    model.config.multi_head["plain_head"] = record["plain_head"]
    return model
