"""Inference-time steering: one API to generate under user preference weights, whatever kind of checkpoint it is.

    steerable = load_steerable("outputs/grpo-steerable")                 # method read from objectives.json
    steerable.generate(["How do I bake bread?"], "conciseness=0.8,sentiment=0.2", max_new_tokens=48)

Methods (`method=`):
- `prompt`  preference-conditioned checkpoint (record `steering: prompt`): the weights are written into the prompt in
            the trained format (`alignment.conditioning`).
- `heads`   multi-head checkpoint (record `steering: heads`): the LM heads mixed with the weights (`alignment.multi_head`).
- `mod`     K policies (or K LoRA adapters of one base) sharing a tokenizer, one per objective: every next token is
            sampled from softmax(sum_k w_k log pi_k) (MOD).
- `soup`    K full checkpoints or K LoRA adapters, one per objective: generate with theta = sum_k w_k theta_k
            (rewarded soups; adapters combined with peft's `add_weighted_adapter(combination_type="cat")`, which sums
            the weighted low-rank updates, i.e. exactly the interpolation of the merged models).
- `rmod`    one policy plus a reward source: blockwise robust decoding (`alignment.rmod`); `best_of_k` is its
            baseline with the same loop.
`auto` picks `prompt` / `heads` from a single checkpoint's record and `mod` for several checkpoints.

Every method takes the same weights (`helpful=0.7,harmless=0.3`, a list, a mapping), validated by
`alignment.weights.parse_preference_weights` against the objective names, and the same decoding arguments.
String prompts become a user message when the tokenizer has a chat template; chat message lists are used as is.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from alignment.checkpoint_record import RECORD_FILE, load_record
from alignment.conditioning import condition_prompt
from alignment.multi_head import HEADS_RECORD, generate_with_weights, head_names, load_multi_head_model
from alignment.objectives import RewardSource
from alignment.policy import check_safetensors_adapter, eos_token_ids
from alignment.packaged_models import resolve_model_path
from alignment.rmod import best_of_k_selector, blockwise_decode, reward_builder, rmod_selector
from alignment.weights import parse_preference_weights

METHODS = ("auto", "prompt", "heads", "mod", "soup", "rmod", "best_of_k")
ADAPTER_CONFIG = "adapter_config.json"


class SteeringError(ValueError):
    """A checkpoint, method or argument that cannot be steered as asked; the message says what is wrong."""


# ------------------------------------------------------------------------------------------------ shared pieces

class Steerable:
    """Base: a tokenizer, the objective names the weights refer to, prompt rendering and decoding."""

    method: str = ""

    def __init__(self, tokenizer, objective_names: Sequence[str], device: str | torch.device = "cpu"):
        self.tokenizer = tokenizer
        self.objective_names = list(objective_names)
        self.device = torch.device(device)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    def parse_weights(self, weights) -> torch.Tensor:
        return parse_preference_weights(weights, self.objective_names)

    def as_messages(self, prompt):
        if isinstance(prompt, str) and self.tokenizer.chat_template:
            return [{"role": "user", "content": prompt}]
        return prompt

    def render(self, prompt) -> str:
        prompt = self.as_messages(prompt)
        if isinstance(prompt, list):
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return prompt

    def encode(self, prompts: Sequence) -> dict[str, torch.Tensor]:
        self.tokenizer.padding_side = "left"
        texts = [self.render(p) for p in prompts]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def decode(self, token_ids) -> list[str]:
        return self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)

    def generate(self, prompts: Sequence, weights, *, max_new_tokens: int = 48, do_sample: bool = True,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None, seed: int | None = None) -> list[str]:
        """One reply per prompt under `weights` (validated first, so bad weights fail before any compute)."""
        if isinstance(prompts, (str, Mapping)):
            raise SteeringError("generate: `prompts` must be a list of prompts (strings or chat message lists)")
        weights = self.parse_weights(weights)
        if seed is not None:
            torch.manual_seed(seed)
        decoding = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k)
        with torch.no_grad():
            return self._generate(list(prompts), weights, decoding)

    def _generate(self, prompts: list, weights: torch.Tensor, decoding: dict) -> list[str]:
        raise NotImplementedError

    def _hf_generate(self, model, prompts: list, decoding: dict, generate=None) -> list[str]:
        inputs = self.encode(prompts)
        generate = generate or model.generate
        output = generate(**inputs, **decoding, pad_token_id=self.tokenizer.pad_token_id)
        return self.decode(output[:, inputs["input_ids"].shape[1]:])


# ------------------------------------------------------------------------------------------------ the methods

class PromptConditioned(Steerable):
    """The weights written into the prompt in the format the checkpoint was trained on."""

    method = "prompt"

    def __init__(self, model, tokenizer, objective_names, device="cpu"):
        super().__init__(tokenizer, objective_names, device)
        self.model = model

    def _generate(self, prompts, weights, decoding):
        conditioned = [condition_prompt(self.as_messages(p), weights, self.objective_names) for p in prompts]
        return self._hf_generate(self.model, conditioned, decoding)


class HeadMixing(Steerable):
    """A multi-head checkpoint whose heads are mixed with the weights (alignment.multi_head)."""

    method = "heads"

    def __init__(self, model, tokenizer, objective_names=None, device="cpu"):
        super().__init__(tokenizer, objective_names or head_names(model), device)
        if self.objective_names != head_names(model):
            raise SteeringError(f"head mixing: objectives {self.objective_names} do not match the heads {head_names(model)}")
        self.model = model

    def _generate(self, prompts, weights, decoding):
        return self._hf_generate(self.model, prompts, decoding,
                                 generate=lambda **kwargs: generate_with_weights(self.model, weights, **kwargs))


def _warpers(temperature: float, top_p: float, top_k: int | None) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


class LogProbMixture(Steerable):
    """MOD: next token from softmax(sum_k w_k log pi_k(. | context)) over K policies sharing a tokenizer.

    `policies` are callables with a causal LM's forward signature (a model, or one adapter of a peft model made
    active first). Each keeps its own KV cache; a policy with weight 0 is not run at all. transformers' `generate`
    drives one model, so the K-model loop is ours; sampling reuses transformers' logits warpers.
    """

    method = "mod"

    def __init__(self, policies: Sequence[Callable], tokenizer, objective_names, eos_token_ids: set[int], device="cpu"):
        super().__init__(tokenizer, objective_names, device)
        if len(policies) != len(self.objective_names):
            raise SteeringError(f"MOD: {len(policies)} policies for {len(self.objective_names)} objectives {self.objective_names}")
        self.policies = list(policies)
        self.eos_token_ids = eos_token_ids

    def _mixed_log_probs(self, weights, input_ids, attention_mask, caches, step_ids):
        positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)[:, -step_ids.shape[1]:]
        mixed = None
        for k, policy in enumerate(self.policies):
            if weights[k] == 0:
                continue
            output = policy(input_ids=step_ids, attention_mask=attention_mask, position_ids=positions,
                            cache=caches[k], use_cache=True)
            caches[k] = output.cache
            term = weights[k].item() * torch.log_softmax(output.logits[:, -1].float(), dim=-1)
            mixed = term if mixed is None else mixed + term
        return mixed

    def next_token_log_probs(self, prompts: Sequence, weights) -> torch.Tensor:
        """[N, V] normalized log-probs of the first generated token under the mixture (for inspection and tests)."""
        weights = self.parse_weights(weights)
        inputs = self.encode(list(prompts))
        with torch.no_grad():
            mixed = self._mixed_log_probs(weights, inputs["input_ids"], inputs["attention_mask"],
                                          [None] * len(self.policies), inputs["input_ids"])
        return torch.log_softmax(mixed, dim=-1)

    def _generate(self, prompts, weights, decoding):
        inputs = self.encode(prompts)
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        warpers = _warpers(decoding["temperature"], decoding["top_p"], decoding["top_k"]) if decoding["do_sample"] else None
        caches = [None] * len(self.policies)
        pad_id = self.tokenizer.pad_token_id
        finished = torch.zeros(len(prompts), dtype=torch.bool, device=input_ids.device)
        step_ids, generated = input_ids, []
        for _ in range(decoding["max_new_tokens"]):
            scores = self._mixed_log_probs(weights, input_ids, attention_mask, caches, step_ids)
            if warpers is not None:
                scores = warpers(input_ids, scores)
                next_tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
            else:
                next_tokens = scores.argmax(dim=-1)
            next_tokens = next_tokens.masked_fill(finished, pad_id)
            generated.append(next_tokens)
            finished |= torch.isin(next_tokens, torch.tensor(sorted(self.eos_token_ids), device=next_tokens.device))
            step_ids = next_tokens[:, None]
            input_ids = torch.cat([input_ids, step_ids], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(step_ids)], dim=1)
            if finished.all():
                break
        return self.decode(torch.stack(generated, dim=1))


class RewardedSoup(Steerable):
    """Rewarded soups over K full checkpoints: generate with theta = sum_k w_k theta_k (float tensors; others from the first)."""

    method = "soup"

    def __init__(self, model, state_dicts: Sequence[dict], tokenizer, objective_names, device="cpu"):
        super().__init__(tokenizer, objective_names, device)
        if len(state_dicts) != len(self.objective_names):
            raise SteeringError(f"soup: {len(state_dicts)} checkpoints for {len(self.objective_names)} objectives {self.objective_names}")
        reference = state_dicts[0]
        for k, state in enumerate(state_dicts[1:], start=1):
            if state.keys() != reference.keys() or any(state[n].shape != reference[n].shape for n in reference):
                raise SteeringError(f"soup: checkpoint {k} ('{self.objective_names[k]}') has a different architecture "
                                    "from checkpoint 0; rewarded soups need K fine-tunes of one base model")
        self.model = model
        self.state_dicts = list(state_dicts)
        self._loaded_weights = None

    def soup_state_dict(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        soup = {}
        for name, first in self.state_dicts[0].items():
            if first.is_floating_point():
                soup[name] = sum(w * state[name] for w, state in zip(weights.tolist(), self.state_dicts) if w > 0)
            else:
                soup[name] = first
        return soup

    def load_soup(self, weights) -> None:
        """Load theta = sum_k w_k theta_k into the model (skipped when these weights are already loaded)."""
        weights = self.parse_weights(weights)
        if self._loaded_weights is None or not torch.equal(weights, self._loaded_weights):
            self.model.load_state_dict(self.soup_state_dict(weights), strict=True)
            self._loaded_weights = weights

    def _generate(self, prompts, weights, decoding):
        self.load_soup(weights)
        return self._hf_generate(self.model, prompts, decoding)


class AdapterSoup(Steerable):
    """Rewarded soups over K LoRA adapters of one base (a peft model holding them, named after the objectives)."""

    method = "soup"
    SOUP = "weighted_soup"

    def __init__(self, peft_model, tokenizer, objective_names, device="cpu"):
        super().__init__(tokenizer, objective_names, device)
        missing = [n for n in self.objective_names if n not in peft_model.peft_config]
        if missing:
            raise SteeringError(f"soup: no adapter named {missing}; the model holds {sorted(peft_model.peft_config)}")
        self.model = peft_model

    def load_soup(self, weights) -> None:
        weights = self.parse_weights(weights)
        if self.SOUP in self.model.peft_config:
            self.model.delete_adapter(self.SOUP)
        kept = [(n, w) for n, w in zip(self.objective_names, weights.tolist()) if w > 0]
        self.model.add_weighted_adapter([n for n, _ in kept], [w for _, w in kept], self.SOUP, combination_type="cat")
        self.model.set_adapter(self.SOUP)

    def _generate(self, prompts, weights, decoding):
        self.load_soup(weights)
        return self._hf_generate(self.model, prompts, decoding)


class RobustDecoding(Steerable):
    """RMOD (or its best-of-K baseline) around one policy, with a reward source as value function (alignment.rmod)."""

    def __init__(self, model, tokenizer, reward_sources: RewardSource | Sequence[RewardSource], objective_names=None,
                 device="cpu", robust: bool = True, num_candidates: int = 4, block_size: int = 8,
                 lam: float = 1.0, tau: float = 0.0):
        sources = [reward_sources] if isinstance(reward_sources, RewardSource) else list(reward_sources)
        names = objective_names or [n for s in sources for n in s.objective_names]
        super().__init__(tokenizer, names, device)
        self.model = model
        self.reward = reward_builder(self.objective_names, sources)
        self.method = "rmod" if robust else "best_of_k"
        self.select = rmod_selector(lam=lam, tau=tau) if robust else best_of_k_selector
        self.tau = tau
        self.num_candidates, self.block_size = num_candidates, block_size

    def _generate(self, prompts, weights, decoding):
        if not decoding["do_sample"]:
            raise SteeringError(f"{self.method}: candidates are sampled; do_sample=False would give K identical blocks")
        support = weights[weights > 0]
        if self.method == "rmod" and self.tau == 0 and not torch.allclose(support, support.mean().expand_as(support)):
            warnings.warn("rmod at tau=0 uses only which objectives have weight > 0, not their values (the paper's "
                          "robust objective); set tau > 0 to pull the worst-case weights toward yours",
                          UserWarning, stacklevel=3)
        prompt_ids = [self.tokenizer(self.render(p), add_special_tokens=False)["input_ids"] for p in prompts]
        generated = blockwise_decode(
            self.model, self.tokenizer, prompt_ids, [self.as_messages(p) for p in prompts], self.reward, weights,
            self.select, num_candidates=self.num_candidates, block_size=self.block_size,
            max_new_tokens=decoding["max_new_tokens"], temperature=decoding["temperature"], top_p=decoding["top_p"],
            top_k=decoding["top_k"],
        )
        return self.decode(generated)


# ------------------------------------------------------------------------------------------------ loading

def _record_or_none(path: Path) -> dict | None:
    return load_record(path) if (path / RECORD_FILE).exists() else None


def _objective_of(path: Path) -> str:
    """The objective a single-objective checkpoint was trained for: its only objective, or its one-hot weight."""
    record = _record_or_none(path)
    if record is None:
        raise SteeringError(f"{path}: no {RECORD_FILE}; name the objective on the command line as NAME=PATH")
    names = record.get("objective_names") or []
    weights = record.get("weights") or {}
    if len(names) == 1:
        return names[0]
    positive = [n for n, w in weights.items() if w > 0]
    if len(positive) == 1:
        return positive[0]
    raise SteeringError(f"{path}: trained on {names} with weights {weights or 'none'}, not one objective; "
                        "name the objective it stands for as NAME=PATH")


def _named_paths(paths) -> dict[str, Path]:
    """{objective: path} from a mapping, or from 'NAME=PATH' / plain paths (name read from each record)."""
    if isinstance(paths, Mapping):
        return {str(n): Path(p) for n, p in paths.items()}
    named = {}
    for item in paths:
        item = str(item)
        name, sep, path = item.partition("=")
        name, path = (name, Path(path)) if sep and name.isidentifier() else (None, Path(item))
        if not path.exists():
            raise SteeringError(f"checkpoint {path} does not exist")
        name = name or _objective_of(path)
        if name in named:
            raise SteeringError(f"two checkpoints stand for objective '{name}' ({named[name]} and {path})")
        named[name] = path
    return named


def _check_shared_tokenizer(named: dict[str, Path]) -> None:
    vocabularies = {n: AutoTokenizer.from_pretrained(p).get_vocab() for n, p in named.items()}
    first_name, first = next(iter(vocabularies.items()))
    for name, vocabulary in vocabularies.items():
        if vocabulary != first:
            raise SteeringError(f"checkpoints '{first_name}' and '{name}' have different tokenizers; "
                                "MOD and soups need K models sharing one tokenizer")


def _load_peft_adapters(named: dict[str, Path], base_model: str | None, dtype, device):
    from peft import PeftModel

    configs = {n: json.loads((p / ADAPTER_CONFIG).read_text()) for n, p in named.items()}
    bases = {c.get("base_model_name_or_path") for c in configs.values()}
    base = base_model or (bases.pop() if len(bases) == 1 else None)
    if base is None:
        raise SteeringError(f"the LoRA adapters name different base models {sorted(map(str, bases))}; pass base_model")
    for path in named.values():
        check_safetensors_adapter(path)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(base), dtype=dtype, use_safetensors=True).to(device)
    names = list(named)
    model = PeftModel.from_pretrained(model, str(named[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(named[name]), adapter_name=name)
    return model.eval(), base


def _adapter_policy(peft_model, name: str) -> Callable:
    def forward(**kwargs):
        peft_model.set_adapter(name)
        return peft_model(**kwargs)
    return forward


def load_steerable(paths, method: str = "auto", *, reward_sources: RewardSource | Sequence[RewardSource] | None = None,
                   objective_names: Sequence[str] | None = None, base_model: str | None = None,
                   device: str = "cpu", dtype: torch.dtype | None = None, **method_kwargs) -> Steerable:
    """A steerable model from one checkpoint or K checkpoints (paths, 'NAME=PATH' items, or a mapping name -> path).

    `reward_sources` is needed for `rmod` / `best_of_k` (e.g. `reward_models.scoring.load_reward_model_source(...)`
    or `alignment.objectives.FunctionSource`s); `method_kwargs` go to the method (num_candidates, block_size, lam, tau).
    """
    if method not in METHODS:
        raise SteeringError(f"unknown steering method '{method}'; choose one of {list(METHODS)}")
    items = [paths] if isinstance(paths, (str, Path)) else paths
    if not items:
        raise SteeringError("load_steerable: no checkpoint given")
    single = not isinstance(items, Mapping) and len(items) == 1 and "=" not in str(items[0])
    if single:
        path = Path(items[0])
        if not path.exists():
            raise SteeringError(f"checkpoint {path} does not exist")
        record = _record_or_none(path)
        if method == "auto":
            steering = (record or {}).get("steering", "none")
            if steering not in ("prompt", "heads"):
                raise SteeringError(f"{path}: its record says steering '{steering}', so the method cannot be read from it; "
                                    "pass several checkpoints (mod / soup), or a reward source with method rmod")
            method = steering
        if method in ("mod", "soup"):
            raise SteeringError(f"{method} mixes K checkpoints, one per objective; got one ({path})")
        tokenizer = AutoTokenizer.from_pretrained(path)
        names = objective_names or (record or {}).get("objective_names")
        if method == "heads":
            if not (path / HEADS_RECORD).exists():
                raise SteeringError(f"{path}: no {HEADS_RECORD}; head mixing needs a multi-head checkpoint")
            model = load_multi_head_model(path, dtype=dtype).to(device).eval()
            return HeadMixing(model, tokenizer, names, device)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True).to(device).eval()
        if method == "prompt":
            if not names:
                raise SteeringError(f"{path}: no objective names in a record; pass objective_names")
            return PromptConditioned(model, tokenizer, names, device)
        if reward_sources is None:
            raise SteeringError(f"{method} needs reward_sources: the value function that scores candidate blocks")
        return RobustDecoding(model, tokenizer, reward_sources, objective_names, device,
                              robust=method == "rmod", **method_kwargs)

    named = _named_paths(items)
    method = "mod" if method == "auto" else method
    if method not in ("mod", "soup"):
        raise SteeringError(f"method '{method}' takes one checkpoint; got {len(named)}")
    if objective_names is not None:
        if sorted(objective_names) != sorted(named):
            raise SteeringError(f"objective_names {list(objective_names)} do not match the checkpoints' objectives {list(named)}")
        named = {n: named[n] for n in objective_names}
    names = list(named)
    adapters = [(p / ADAPTER_CONFIG).exists() for p in named.values()]
    if any(adapters) and not all(adapters):
        raise SteeringError("mix of LoRA adapters and full checkpoints; give K adapters of one base or K full checkpoints")
    _check_shared_tokenizer(named)
    tokenizer = AutoTokenizer.from_pretrained(next(iter(named.values())))
    if all(adapters):
        peft_model, _ = _load_peft_adapters(named, base_model, dtype, device)
        if method == "soup":
            return AdapterSoup(peft_model, tokenizer, names, device)
        eos = eos_token_ids(peft_model)
        return LogProbMixture([_adapter_policy(peft_model, n) for n in names], tokenizer, names, eos, device)
    models = [AutoModelForCausalLM.from_pretrained(p, dtype=dtype, use_safetensors=True).to(device).eval()
              for p in named.values()]
    if method == "soup":
        states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]
        return RewardedSoup(models[0], states, tokenizer, names, device)
    return LogProbMixture(models, tokenizer, names, eos_token_ids(models[0]), device)
