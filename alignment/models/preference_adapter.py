"""Preference adapters: the preference weights enter the model as numbers, not as text (Panacea, arXiv 2402.02030).

Every targeted linear layer becomes

    W = W0 + scaling * U . diag(sigma_1..sigma_r, lambda_scale * s * lambda_1..lambda_K) . V^T

- `U` (lora_B, [out, r + K]) and `V^T` (lora_A, [r + K, in]): a LoRA pair of rank r + K, LoRA init (U = 0);
- `sigma`: r learnable singular values (lora_sigma); `s`: one learnable scale per layer (lora_preference_scale);
- `lambda`: the preference weights, not learned, set by the caller per row of the batch (`preference_weights`), so
  the G completions of a prompt share their prompt's weights while prompts of one batch can differ.

Built on peft's LoRA: a custom LoRA layer (`LoraConfig._register_custom_module`) whose variant (`LoraVariant`)
inserts the diagonal in forward and in merge, so peft's save/load, `merge_and_unload` and trainable-parameter
handling apply unchanged. Cost: without autograd (generation, old log-probs) each layer keeps its diagonal while
lambda and its parameters stay the same, so a decoding step costs a plain LoRA step plus one multiply; with
autograd it is rebuilt per call (3 small ops). The diagonal needs K, so a saved adapter carries
`preference_adapter.json` (objective names, K, lambda_scale) beside peft's `adapter_config.json`;
`load_preference_adapter` reads both.

    model = add_preference_adapter(base, ["conciseness", "sentiment"], rank=4)
    with preference_weights(model, torch.tensor([[0.8, 0.2], [0.1, 0.9]])):   # one row per batch row
        model(**batch)
    plain = merge_preference(model, "conciseness=0.7,sentiment=0.3")          # a plain transformers model
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import LoraVariant
from safetensors.torch import load_file
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForCausalLM
from transformers.modeling_utils import load_state_dict

from alignment.models.packaged import name_adapter_base_portably
from alignment.objectives.weights import parse_preference_weights

ADAPTER_FILE = "preference_adapter.json"
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class PreferenceState:
    """The lambda that every preference layer of one model reads: None, [K] (every row) or [B, K] (one per row)."""

    def __init__(self, objective_names: Sequence[str], lambda_scale: float):
        self.objective_names = list(objective_names)
        self.num_objectives = len(self.objective_names)
        self.lambda_scale = float(lambda_scale)
        self.weights = None

    @property
    def weights(self) -> torch.Tensor | None:
        return self._weights

    @weights.setter
    def weights(self, value: torch.Tensor | None) -> None:
        self._weights = value
        # lambda_scale * lambda as [rows, K], per (device, dtype): made once per setting, not once per layer call
        self._scaled: dict = {}
        self.setting = object()  # identifies this setting in the layers' no-grad diagonal caches

    def set(self, weights) -> None:
        if weights is None:
            self.weights = None
            return
        if isinstance(weights, torch.Tensor) and weights.dim() == 2:
            if weights.shape[1] != self.num_objectives:
                raise ValueError(f"preference weights: {weights.shape[1]} columns for {self.num_objectives} "
                                 f"objectives {self.objective_names}")
            if (weights < 0).any() or not torch.isfinite(weights).all():
                raise ValueError("preference weights: every weight must be finite and >= 0")
            self.weights = weights.detach().float()
        else:  # one vector for every row, validated and normalized like every other weights argument
            self.weights = parse_preference_weights(weights, self.objective_names)

    def _scaled_weights(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        scaled = self._scaled.get(key)
        if scaled is None:
            if self._weights is None:
                raise RuntimeError("a preference adapter ran without preference weights; wrap the call in "
                                   "`with preference_weights(model, weights):` (one [K] vector or one row per "
                                   "batch row). Under activation checkpointing, the backward pass recomputes "
                                   "outside that block: `keep_preference_under_checkpointing(model)` replays "
                                   "each forward's weights there (the trainers do it)")
            scaled = self._scaled[key] = (self.lambda_scale * self._weights.reshape(-1, self.num_objectives)).to(
                device=like.device, dtype=like.dtype)
        return scaled

    def diagonal(self, sigma: torch.Tensor, scale: torch.Tensor, rows: int) -> torch.Tensor:
        """[rows or 1, r + K]: (sigma, lambda_scale * s * lambda) per row."""
        scaled = self._scaled_weights(sigma)
        if scaled.shape[0] != rows and self._weights.dim() == 2:
            raise RuntimeError(f"preference weights have {scaled.shape[0]} rows but the batch has {rows}")
        return torch.cat((sigma.expand(scaled.shape[0], -1), scale * scaled), dim=1)


class PreferenceVariant(LoraVariant):
    """peft LoRA variant: the SVD diagonal between lora_A and lora_B (forward and merge)."""

    def supports_lora_conversion(self) -> bool:
        return False  # the update depends on lambda; it is a LoRA only once lambda is fixed (merge_preference)

    @staticmethod
    def init(module: PreferenceLoraLinear, adapter_name: str, **kwargs) -> None:
        num_sigma = module.r[adapter_name] - module.preference.num_objectives
        device = module.lora_A[adapter_name].weight.device
        if "lora_sigma" not in module._modules:  # first adapter of this layer (peft's Linear re-runs Module.__init__)
            module.lora_sigma = nn.ParameterDict()
            module.lora_preference_scale = nn.ParameterDict()
        # sigma = 1 and s = 1 with U = 0 (LoRA init): the update starts at 0 and every factor gets a gradient.
        module.lora_sigma[adapter_name] = nn.Parameter(torch.ones(num_sigma, device=device))
        module.lora_preference_scale[adapter_name] = nn.Parameter(torch.ones(1, device=device))

    @staticmethod
    def delta_weight(module: PreferenceLoraLinear, adapter: str) -> torch.Tensor:
        state = module.preference
        if state.weights is not None and state.weights.dim() == 2 and not torch.equal(
                state.weights, state.weights[:1].expand_as(state.weights)):
            raise RuntimeError("merging a preference adapter needs one weight vector, not one per row")
        weights_a = module.lora_A[adapter].weight
        diagonal = state.diagonal(module.lora_sigma[adapter], module.lora_preference_scale[adapter], rows=1)[0]
        delta = (module.lora_B[adapter].weight * diagonal.to(weights_a.dtype)) @ weights_a
        return delta * module.scaling[adapter]

    @staticmethod
    def merge_safe(module, active_adapter, orig_weight):
        return orig_weight + PreferenceVariant.delta_weight(module, active_adapter).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module, active_adapter, orig_weight):
        orig_weight.data += PreferenceVariant.delta_weight(module, active_adapter).to(orig_weight.dtype)

    @staticmethod
    def unmerge(module, active_adapter, orig_weight):
        return orig_weight - PreferenceVariant.delta_weight(module, active_adapter).to(orig_weight.dtype)

    @staticmethod
    def _diagonal(module, adapter: str, rows: int, dims: int) -> torch.Tensor:
        """The layer's diagonal as [rows or 1, 1, ..., r + K] (`dims` dimensions, one row per batch row, shared by its
        tokens). Without autograd (generation, old log-probs) it is made once per lambda setting and parameter
        version, not at every call: a decoding step then costs what a plain LoRA step does, plus one multiply."""
        sigma, scale = module.lora_sigma[adapter], module.lora_preference_scale[adapter]
        if torch.is_grad_enabled():
            diagonal = module.preference.diagonal(sigma, scale, rows)
            return diagonal.view(diagonal.shape[0], *([1] * (dims - 2)), diagonal.shape[-1])
        key = (adapter, module.preference.setting, sigma._version, scale._version, sigma.data_ptr(), rows, dims)
        cached = module._diagonal_cache
        if cached is None or cached[0] != key:
            diagonal = module.preference.diagonal(sigma, scale, rows)
            cached = module._diagonal_cache = (key, diagonal.view(diagonal.shape[0], *([1] * (dims - 2)), -1))
        return cached[1]

    @staticmethod
    def forward(module, active_adapter, x, result, **kwargs):
        hidden = module.lora_A[active_adapter](module.lora_dropout[active_adapter](x))  # [B, ..., r + K]
        diagonal = PreferenceVariant._diagonal(module, active_adapter, x.shape[0], hidden.dim())
        return result + module.lora_B[active_adapter](hidden * diagonal) * module.scaling[active_adapter]


class PreferenceLoraLinear(LoraLinear):
    """peft's LoRA Linear whose variant is always `PreferenceVariant`; reads lambda from the shared `preference`."""

    adapter_layer_names = LoraLinear.adapter_layer_names + ("lora_sigma", "lora_preference_scale")

    def __init__(self, base_layer, adapter_name, config, preference: PreferenceState, **kwargs):
        object.__setattr__(self, "preference", preference)  # shared plain object, not a submodule
        object.__setattr__(self, "_diagonal_cache", None)
        super().__init__(base_layer, adapter_name, config=config, **kwargs)

    def resolve_lora_variant(self, *, config, **kwargs):
        return PreferenceVariant()

    def get_delta_weight(self, adapter) -> torch.Tensor:
        return PreferenceVariant.delta_weight(self, adapter)


def _lora_config(rank_total: int, lora_alpha: float, target_modules, dropout: float, preference: PreferenceState,
                 inference_mode: bool = False) -> LoraConfig:
    config = LoraConfig(r=rank_total, lora_alpha=lora_alpha, target_modules=list(target_modules), lora_dropout=dropout,
                        bias="none", task_type="CAUSAL_LM", inference_mode=inference_mode)
    return _register(config, preference)


def _register(config: LoraConfig, preference: PreferenceState) -> LoraConfig:
    def make_layer(target, adapter_name, config, **kwargs):
        return PreferenceLoraLinear(target, adapter_name, config=config, preference=preference, **kwargs)

    config._register_custom_module({nn.Linear: make_layer})
    return config


def preference_adapter_config(objective_names: Sequence[str], *, rank: int = 4, lora_alpha: float | None = None,
                              target_modules: Sequence[str] = DEFAULT_TARGET_MODULES, lambda_scale: float = 16.0,
                              dropout: float = 0.0) -> tuple[LoraConfig, dict]:
    """(peft LoraConfig that builds preference layers, the spec `save_preference_adapter` writes): for whoever calls
    `get_peft_model` (TRL's trainers do, given `peft_config`); set `peft_model.preference_spec = spec` afterwards.

    `lora_alpha` defaults to r + K (scaling 1)."""
    objective_names = list(objective_names)
    if len(objective_names) < 2:
        raise ValueError(f"a preference adapter needs at least 2 objectives, got {objective_names}")
    if rank < 1:
        raise ValueError(f"preference adapter rank must be >= 1, got {rank}")
    preference = PreferenceState(objective_names, lambda_scale)
    rank_total = rank + len(objective_names)
    config = _lora_config(rank_total, lora_alpha or rank_total, target_modules, dropout, preference)
    spec = {"objective_names": objective_names, "rank": rank, "lambda_scale": lambda_scale,
            "target_modules": list(target_modules)}
    return config, spec


def add_preference_adapter(model, objective_names: Sequence[str], *, rank: int = 4, lora_alpha: float | None = None,
                           target_modules: Sequence[str] = DEFAULT_TARGET_MODULES, lambda_scale: float = 16.0,
                           dropout: float = 0.0, train_base: bool = False) -> PeftModel:
    """Wrap `model` in a peft model with a preference adapter on `target_modules` (rank r plus one column per
    objective).

    `lora_alpha` defaults to r + K (scaling 1). `train_base` leaves the base model's own weights trainable as well
    (give them their own learning rate: `parameter_groups`).
    """
    config, spec = preference_adapter_config(objective_names, rank=rank, lora_alpha=lora_alpha,
                                             target_modules=target_modules, lambda_scale=lambda_scale, dropout=dropout)
    peft_model = get_peft_model(model, config)  # peft names target modules that match nothing
    peft_model.preference_spec = spec
    keep_preference_under_checkpointing(peft_model)
    if train_base:
        for name, parameter in peft_model.named_parameters():
            if parameter.is_floating_point():
                parameter.requires_grad_(True)
    return peft_model


def preference_state(model) -> PreferenceState:
    """The lambda holder of a model with a preference adapter (looks through DDP / accelerate wrappers)."""
    for module in model.modules():
        if isinstance(module, PreferenceLoraLinear):
            return module.preference
    raise ValueError(f"{type(model).__name__} has no preference adapter "
                     "(add_preference_adapter / load_preference_adapter)")


def has_preference_adapter(model) -> bool:
    return any(isinstance(m, PreferenceLoraLinear) for m in model.modules())


@contextlib.contextmanager
def preference_weights(model, weights):
    """Set lambda for the calls inside: one vector (str, list, mapping, [K] tensor) or a [B, K] tensor, one row per
    batch row (rows are used as given: the caller normalizes). The previous lambda comes back afterwards."""
    state = preference_state(model) if not isinstance(model, PreferenceState) else model
    previous = state.weights
    state.set(weights)
    try:
        yield state
    finally:
        state.weights = previous


# ----------------------------------------------------------------------------------------- activation checkpointing
# Activation checkpointing recomputes each checkpointed layer's forward during backward, after `preference_weights`
# has restored the previous lambda (usually None). The layers read lambda from the shared state, so the recompute
# must see the lambda its forward saw: torch's non-reentrant checkpoint takes a `context_fn` whose second context
# wraps the recompute, and ours sets lambda back to the value captured when the forward ran. It is attached where
# transformers hands every layer its checkpoint function (`_set_gradient_checkpointing`), so checkpointing turned on
# by the Trainer, by TRL or by the user, before or after this call, all get it.

def _replaying_weights(state: PreferenceState, weights):
    """A context that sets lambda to `weights` (captured at the forward) and puts back what was there."""
    @contextlib.contextmanager
    def replay():
        previous = state.weights
        state.weights = weights
        try:
            yield
        finally:
            state.weights = previous
    return replay()


def _checkpoint_replaying_preference(checkpoint_function, state: PreferenceState):
    """`checkpoint_function` (torch's checkpoint, or transformers' partial of it) with a context_fn that replays the
    forward's lambda in the recompute (composed with any context_fn already given, e.g. TRL's selective
    checkpointing)."""
    if getattr(checkpoint_function, "_replays_preference", False):
        return checkpoint_function
    given = dict(getattr(checkpoint_function, "keywords", None) or {})
    if given.get("use_reentrant", False):
        raise ValueError("activation checkpointing with use_reentrant=True cannot replay a preference adapter's "
                         "weights in the backward recompute; set gradient_checkpointing_kwargs "
                         "{'use_reentrant': false} (transformers' default)")
    inner_context_fn = given.get("context_fn")

    def context_fn():
        weights = state.weights  # the lambda of this forward
        if inner_context_fn is None:
            return contextlib.nullcontext(), _replaying_weights(state, weights)
        forward_context, recompute_context = inner_context_fn()
        stack = contextlib.ExitStack()
        stack.enter_context(_replaying_weights(state, weights))
        stack.enter_context(recompute_context)
        return forward_context, stack

    @functools.wraps(checkpoint_function)
    def checkpoint_with_preference(function, *args, **kwargs):
        kwargs.setdefault("use_reentrant", False)
        return checkpoint_function(function, *args, **{**kwargs, "context_fn": context_fn})

    checkpoint_with_preference._replays_preference = True
    return checkpoint_with_preference


def keep_preference_under_checkpointing(model) -> None:
    """Make activation checkpointing of `model` (a peft model with a preference adapter) recompute each layer with
    the lambda of its forward pass. Idempotent; turning checkpointing on or off later keeps it."""
    state = preference_state(model)
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    set_checkpointing = getattr(base, "_set_gradient_checkpointing", None)
    if set_checkpointing is None or getattr(set_checkpointing, "_replays_preference", False):
        return

    def _set_gradient_checkpointing(enable: bool = True, gradient_checkpointing_func=checkpoint,
                                    every_n_layers: int = 1):
        return set_checkpointing(enable=enable, every_n_layers=every_n_layers,
                                 gradient_checkpointing_func=_checkpoint_replaying_preference(
                                     gradient_checkpointing_func, state))

    _set_gradient_checkpointing._replays_preference = True
    base._set_gradient_checkpointing = _set_gradient_checkpointing
    for module in base.modules():  # checkpointing already on: wrap the function each layer holds
        function = module.__dict__.get("_gradient_checkpointing_func")
        if function is not None:
            module._gradient_checkpointing_func = _checkpoint_replaying_preference(function, state)


def is_adapter_parameter(name: str) -> bool:
    return "lora_" in name


def parameter_groups(model, adapter_learning_rate: float, base_learning_rate: float | None, weight_decay: float = 0.0):
    """Optimizer groups: adapter parameters at `adapter_learning_rate`, the base's trainable ones at
    `base_learning_rate`."""
    adapter, base = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (adapter if is_adapter_parameter(name) else base).append(parameter)
    groups = [{"params": adapter, "lr": adapter_learning_rate, "weight_decay": weight_decay}]
    if base:
        if base_learning_rate is None:
            raise ValueError("the base model's weights are trainable but no base learning rate is set")
        groups.append({"params": base, "lr": base_learning_rate, "weight_decay": weight_decay})
    return groups


def base_state_dict(peft_model) -> dict[str, torch.Tensor]:
    """The base model's own weights (with any training they had), under the plain transformers names."""
    state = peft_model.get_base_model().state_dict()
    return {k.replace(".base_layer.", "."): v for k, v in state.items() if "lora_" not in k}


def save_preference_adapter(peft_model, output_dir: str | Path) -> Path:
    """peft's save_pretrained (adapter_config.json, adapter_model.safetensors) plus preference_adapter.json."""
    output_dir = Path(output_dir)
    peft_model.save_pretrained(output_dir, safe_serialization=True)
    name_adapter_base_portably(output_dir)  # no cache path of this machine in adapter_config.json
    spec = getattr(peft_model, "preference_spec", None)
    if spec is None:
        state = preference_state(peft_model)
        spec = {"objective_names": state.objective_names, "lambda_scale": state.lambda_scale}
    (output_dir / ADAPTER_FILE).write_text(json.dumps({"format_version": 1, **spec}, indent=2) + "\n")
    return output_dir


def load_preference_adapter(base_model, adapter_dir: str | Path, is_trainable: bool = False) -> PeftModel:
    """A preference adapter saved by `save_preference_adapter`, on `base_model`."""
    adapter_dir = Path(adapter_dir)
    spec_path = adapter_dir / ADAPTER_FILE
    if not spec_path.exists():
        raise FileNotFoundError(f"{adapter_dir}: no {ADAPTER_FILE}; not a preference adapter")
    spec = json.loads(spec_path.read_text())
    preference = PreferenceState(spec["objective_names"], spec["lambda_scale"])
    config = _register(LoraConfig.from_pretrained(str(adapter_dir)), preference)
    config.inference_mode = not is_trainable
    model = PeftModel.from_pretrained(base_model, str(adapter_dir), config=config, is_trainable=is_trainable)
    model.preference_spec = {k: v for k, v in spec.items() if k != "format_version"}
    keep_preference_under_checkpointing(model)
    return model


def merge_preference(peft_model, weights):
    """A plain transformers model with lambda = `weights` baked in (peft's merge_and_unload through our variant)."""
    state = preference_state(peft_model)
    state.set(weights)
    if state.weights.dim() != 1:
        raise ValueError("merge_preference bakes one weight vector; got one per row")
    return peft_model.merge_and_unload()


# ------------------------------------------------------------------------------------------------ steerable checkpoints
# A steerable checkpoint folder is a plain transformers checkpoint of the base (with whatever training it had, so it
# loads anywhere) and the preference adapter in a subfolder, so that transformers never mistakes the folder for a
# plain LoRA adapter (it would load it without the diagonal).
ADAPTER_SUBFOLDER = "preference_adapter"


def save_steerable_checkpoint(peft_model, output_dir: str | Path, tokenizer=None) -> Path:
    output_dir = Path(output_dir)
    peft_model.get_base_model().save_pretrained(output_dir, state_dict=base_state_dict(peft_model),
                                                safe_serialization=True)
    save_preference_adapter(peft_model, output_dir / ADAPTER_SUBFOLDER)
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    return output_dir


def load_steerable_model(path: str | Path, dtype=None, device="cpu") -> PeftModel:
    """The base saved at `path` with the preference adapter of `path/preference_adapter`, ready for inference."""
    path = Path(path)
    if not (path / ADAPTER_SUBFOLDER / ADAPTER_FILE).exists():
        raise FileNotFoundError(f"{path}: no {ADAPTER_SUBFOLDER}/{ADAPTER_FILE}; not a preference-adapter checkpoint")
    base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True).to(device)
    return load_preference_adapter(base, path / ADAPTER_SUBFOLDER).eval()


def load_checkpoint_weights(peft_model, path: str | Path) -> None:
    """Resume: the base's weights and the adapter's from a folder written by `save_steerable_checkpoint`."""
    path = Path(path)
    saved = {}
    for file in sorted(path.glob("model*.safetensors")):
        saved.update(load_state_dict(str(file)))
    names = {k.replace(".base_layer.", "."): k for k in peft_model.get_base_model().state_dict() if "lora_" not in k}
    unknown = sorted(set(saved) - set(names))
    if not saved or unknown:
        raise ValueError(f"{path}: base weights missing or not of this model (unknown: {unknown[:3]})")
    peft_model.get_base_model().load_state_dict({names[k]: v for k, v in saved.items()}, strict=False)
    adapter = load_file(str(path / ADAPTER_SUBFOLDER / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(peft_model, adapter)
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"{path}: adapter weights that this model does not have: {result.unexpected_keys[:3]}")
