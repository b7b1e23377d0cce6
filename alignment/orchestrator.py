"""PRO's Preference Orchestrator: a small model that maps a prompt to preference weights on the simplex.

What a preferred answer to a prompt scored on each objective reveals the balance that the prompt calls for: a
request for dangerous instructions is answered well by a harmless reply, a request for a recipe by a helpful one.
The orchestrator learns that mapping from pairwise data the multi-head reward model can score:

    target(prompt) = distribution over the K heads of the RM's normalized scores of the CHOSEN reply
                     ('softmax': softmax(z / T); 'clip': max(z, 0) normalized, uniform when every z <= 0)
    weights(prompt) = softmax(head(encoder(prompt)))          trained by KL(target || weights)

The encoder is frozen (default: the packaged all-MiniLM-L6-v2), so its features are computed once and only the
K-way linear head is trained: seconds on a CPU.

Checkpoint format: a plain `AutoModelForSequenceClassification` (encoder + `classifier` = our head), `num_labels = K`,
`id2label` = objective names, plus `config.preference_orchestrator = {"pooling", "max_length", ...}`.
- pooling 'pooler' (BERT's own sequence-classification path: [CLS] -> pooler dense + tanh -> classifier): no custom
  code at all, `softmax(AutoModelForSequenceClassification.from_pretrained(path)(**tokens).logits)` ARE the weights;
- pooling 'mean' (masked mean of the last hidden states, what sentence-transformers trained MiniLM for): the same
  checkpoint, but the logits must be taken through `PreferenceOrchestrator.from_pretrained(path).weights(prompts)`,
  because transformers' BERT classifier reads the [CLS] pooler, not a mean.
Prompts (strings, chat message lists, or HH dialogues) are rendered as `reward_models.chat_format` renders them for
the reward model: the plain `Human: ...` format for an encoder without a chat template.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from alignment.models.packaged import PACKAGED_MINILM, resolve_model_path
from reward_models.chat_format import render_conversation, to_messages

logger = logging.getLogger(__name__)
CONFIG_KEY = "preference_orchestrator"
TARGETS = ("softmax", "clip")
POOLINGS = ("mean", "pooler")


class OrchestratorError(ValueError):
    """An orchestrator checkpoint, setting or data row that cannot be used; the message says which and why."""


# ------------------------------------------------------------------------------------------------ targets

def target_weights(scores: torch.Tensor, target: str = "softmax", temperature: float = 1.0) -> torch.Tensor:
    """[N, K] normalized head scores of chosen replies -> [N, K] target weights on the simplex."""
    if target not in TARGETS:
        raise OrchestratorError(f"target must be one of {TARGETS}, got '{target}'")
    scores = scores.float()
    if target == "softmax":
        if not temperature > 0:
            raise OrchestratorError(f"softmax target: temperature must be > 0, got {temperature}")
        return torch.softmax(scores / temperature, dim=-1)
    clipped = scores.clamp(min=0.0)
    total = clipped.sum(dim=-1, keepdim=True)
    # A reply below the mean on every head says nothing about the balance: no preference, equal weights.
    uniform = torch.full_like(clipped, 1.0 / scores.shape[-1])
    return torch.where(total > 0, clipped / total.clamp(min=1e-12), uniform)


def kl_to_target(target: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Per-row KL(target || predicted), [N]; 0 log 0 = 0 (clip targets have exact zeros)."""
    predicted = predicted.clamp(min=1e-12)
    return torch.where(target > 0, target * (target.clamp(min=1e-12).log() - predicted.log()), torch.zeros_like(target)).sum(-1)


def fit_head(features: torch.Tensor, targets: torch.Tensor, *, steps: int = 300, learning_rate: float = 0.05,
             weight_decay: float = 1e-3, validation_fraction: float = 0.2, seed: int = 0) -> torch.nn.Linear:
    """The K-way linear head on frozen features: full-batch Adam on KL(target || softmax(head(x))).

    The head starts at the constant mean-target predictor. With `validation_fraction` > 0 the number of steps is
    chosen by early stopping on a held-out slice of the training prompts, then the head is refit on all of them
    for that many steps: 384 features on a few hundred noisy targets overfit long before `steps` (measured: the
    full 300 steps gave a held-out KL above the constant predictor's).
    """
    if features.shape[0] != targets.shape[0] or features.shape[0] == 0:
        raise OrchestratorError(f"fit_head: {features.shape[0]} feature rows for {targets.shape[0]} targets")
    generator = torch.Generator().manual_seed(seed)
    if validation_fraction > 0 and len(features) >= 10:
        order = torch.randperm(len(features), generator=generator)
        cut = max(1, int(len(features) * validation_fraction))
        validation, train = order[:cut], order[cut:]
        _, steps = _train_head(features[train], targets[train], steps, learning_rate, weight_decay, generator,
                               validation=(features[validation], targets[validation]))
    head, _ = _train_head(features, targets, steps, learning_rate, weight_decay, generator)
    return head


def _train_head(features, targets, steps, learning_rate, weight_decay, generator, validation=None):
    """(head after `steps` steps, or after the best step on `validation`; that step count)."""
    head = torch.nn.Linear(features.shape[1], targets.shape[1])
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
        head.bias.copy_(targets.mean(0).clamp(min=1e-6).log())  # the constant predictor: where learning nothing ends
    optimizer = torch.optim.Adam(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    best_loss, best_step = math.inf, 0
    for step in range(steps + 1):
        if validation is not None:
            with torch.no_grad():
                loss = F.kl_div(F.log_softmax(head(validation[0]), -1), validation[1], reduction="batchmean").item()
            if loss < best_loss:
                best_loss, best_step = loss, step
        if step == steps:
            break
        optimizer.zero_grad()
        F.kl_div(F.log_softmax(head(features), dim=-1), targets, reduction="batchmean").backward()
        optimizer.step()
    return head, (best_step if validation is not None else steps)


# ------------------------------------------------------------------------------------------------ data

def prompt_and_chosen(row: dict, where: str) -> tuple[list[dict], str] | None:
    """(prompt messages, chosen reply) of a pairwise row (HH dialogue strings, message lists, or prompt + chosen);
    None when the chosen reply is empty."""
    if "chosen" not in row:
        raise OrchestratorError(f"{where}: missing field 'chosen' (present: {sorted(row)}); the orchestrator learns "
                                "from the chosen replies of pairwise data")
    try:
        messages = to_messages(row["prompt"], "user") if row.get("prompt") else []
        chosen = to_messages(row["chosen"], "assistant")
    except TypeError as error:
        raise OrchestratorError(f"{where}: {error}") from None
    if messages and chosen[:len(messages)] == messages:
        chosen = chosen[len(messages):]
    conversation = messages + chosen
    if len(conversation) < 2 or conversation[-1]["role"] != "assistant":
        raise OrchestratorError(f"{where}: 'chosen' must end with an assistant reply after a prompt")
    if not conversation[-1]["content"].strip():
        return None  # an empty preferred reply (a few real HH rows) says nothing about the balance
    return conversation[:-1], conversation[-1]["content"]


def load_prompt_targets(specs: Sequence[str], scorer, objective_columns: Sequence[int]) -> tuple[list, torch.Tensor]:
    """Distinct prompts of pairwise sources and the RM's normalized scores of their chosen replies, [P, K].

    `specs` are data names with optional row slices (`hh-harmless[:600]`); a prompt that occurs more than once
    gets the mean score of its chosen replies.
    """
    from reward_models.data import read_jsonl, split_slice

    prompts, replies, empty = [], [], 0
    for spec in specs:
        name, rows = split_slice(spec)
        for number, row in read_jsonl(name, rows):
            pair = prompt_and_chosen(row, f"{name}, row {number}")
            if pair is None:
                empty += 1
                continue
            prompts.append(pair[0])
            replies.append(pair[1])
    if empty:
        logger.info("left out %d rows of %s whose chosen reply is empty", empty, list(specs))
    if not prompts:
        raise OrchestratorError(f"no pairwise rows in {list(specs)}")
    scores = scorer.score(prompts, replies, normalize=True)[:, list(objective_columns)]
    keys = [json.dumps(p, sort_keys=True) for p in prompts]
    distinct = list(dict.fromkeys(keys))
    index = {key: i for i, key in enumerate(distinct)}
    sums = torch.zeros(len(distinct), scores.shape[1]).index_add_(0, torch.tensor([index[k] for k in keys]), scores)
    counts = torch.bincount(torch.tensor([index[k] for k in keys]), minlength=len(distinct)).unsqueeze(1)
    first = {key: prompt for key, prompt in zip(reversed(keys), reversed(prompts))}
    return [first[key] for key in distinct], sums / counts


# ------------------------------------------------------------------------------------------------ the model

class PreferenceOrchestrator:
    """A frozen encoder + K-way head: `weights(prompts)` -> [N, K] on the simplex, in `objective_names` order.

    Weights are cached per prompt (a prompt is weighed once, however many times GRPO samples it).
    """

    def __init__(self, model, tokenizer, *, pooling: str = "mean", max_length: int = 128, batch_size: int = 32):
        if pooling not in POOLINGS:
            raise OrchestratorError(f"pooling must be one of {POOLINGS}, got '{pooling}'")
        if not isinstance(getattr(model, "classifier", None), torch.nn.Linear):
            raise OrchestratorError(f"{type(model).__name__} has no linear `classifier`; the orchestrator needs a "
                                    "BERT-family encoder (AutoModelForSequenceClassification with a classifier layer)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"  # the last user message decides; keep the end of a long dialogue
        self.pooling, self.max_length, self.batch_size = pooling, max_length, batch_size
        self.objective_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self._cache: dict[str, torch.Tensor] = {}

    @classmethod
    def build(cls, objective_names: Sequence[str], encoder: str = PACKAGED_MINILM, *, pooling: str = "mean",
              max_length: int = 128, device="cpu") -> "PreferenceOrchestrator":
        """A new orchestrator on a pretrained encoder (hub id, path or packaged name), its head not yet trained."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        names = list(objective_names)
        if len(names) < 2 or len(set(names)) != len(names):
            raise OrchestratorError(f"the orchestrator needs >= 2 distinct objective names, got {names}")
        path = resolve_model_path(encoder)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
            problem_type="single_label_classification", use_safetensors=True,
        )
        model.config.update({CONFIG_KEY: {"pooling": pooling, "max_length": max_length}})
        return cls(model.to(device), AutoTokenizer.from_pretrained(path), pooling=pooling, max_length=max_length)

    @classmethod
    def from_pretrained(cls, path: str | Path, device="cpu") -> "PreferenceOrchestrator":
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise OrchestratorError(f"orchestrator {path}: no config.json; give a folder written by recipes/orchestrator.py")
        settings = getattr(AutoConfig.from_pretrained(path), CONFIG_KEY, None)
        if not settings:
            raise OrchestratorError(f"orchestrator {path}: its config has no '{CONFIG_KEY}' settings; it was not "
                                    "written by recipes/orchestrator.py")
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
        return cls(model.to(device), AutoTokenizer.from_pretrained(path), pooling=settings["pooling"],
                   max_length=settings["max_length"])

    def render(self, prompt) -> str:
        return render_conversation(self.tokenizer, to_messages(prompt, "user"))

    @torch.no_grad()
    def features(self, prompts: Sequence) -> torch.Tensor:
        """[N, D] frozen encoder features (what the head reads), float32 on CPU."""
        device = next(self.model.parameters()).device
        rows = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer([self.render(p) for p in prompts[start:start + self.batch_size]], padding=True,
                                   truncation=True, max_length=self.max_length, return_tensors="pt").to(device)
            output = self.model.base_model(**batch)
            if self.pooling == "pooler":
                if output.pooler_output is None:
                    raise OrchestratorError("pooling 'pooler': this encoder has no pooler layer; use pooling 'mean'")
                rows.append(output.pooler_output.float().cpu())
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(output.last_hidden_state.dtype)
                rows.append(((output.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu())
        return torch.cat(rows) if rows else torch.zeros(0, self.model.config.hidden_size)

    def weights_from_features(self, features: torch.Tensor) -> torch.Tensor:
        classifier = self.model.classifier
        with torch.no_grad():
            return torch.softmax(classifier(features.to(classifier.weight.device, classifier.weight.dtype)).float(), -1).cpu()

    def weights(self, prompts: Sequence) -> torch.Tensor:
        """[N, K] weights per prompt (objective_names order); each distinct prompt is encoded once, then cached."""
        keys = [json.dumps(p, sort_keys=True) for p in prompts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            for key, row in zip(missing, self.weights_from_features(self.features([json.loads(k) for k in missing]))):
                self._cache[key] = row
        return torch.stack([self._cache[k] for k in keys]) if keys else torch.zeros(0, len(self.objective_names))

    def set_head(self, head: torch.nn.Linear) -> None:
        """Install a trained head as the checkpoint's classifier (and drop cached weights)."""
        with torch.no_grad():
            self.model.classifier.weight.copy_(head.weight)
            self.model.classifier.bias.copy_(head.bias)
        self._cache.clear()

    def save_pretrained(self, output_dir: str | Path, settings: dict | None = None) -> None:
        """Weights (safetensors), tokenizer and config; `settings` (target, temperature, data...) go into the config."""
        self.model.config.update({CONFIG_KEY: {**getattr(self.model.config, CONFIG_KEY, {}), **(settings or {}),
                                               "pooling": self.pooling, "max_length": self.max_length}})
        self.model.save_pretrained(output_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(output_dir)


def weights_in_order(orchestrator: PreferenceOrchestrator, prompts: Sequence, objective_names: Sequence[str]) -> torch.Tensor:
    """The orchestrator's weights with columns in `objective_names` order (same names, any order), [N, K]."""
    names = list(objective_names)
    if sorted(names) != sorted(orchestrator.objective_names):
        raise OrchestratorError(f"the orchestrator weighs objectives {orchestrator.objective_names}, but the "
                                f"objectives here are {names}; train it on a reward model with these heads")
    return orchestrator.weights(prompts)[:, [orchestrator.objective_names.index(n) for n in names]]


def check_orchestrator_objectives(path: str | Path, objective_names: Sequence[str]) -> None:
    """Config-only check (no weights read) that an orchestrator checkpoint weighs exactly these objectives."""
    from transformers import AutoConfig

    if not (Path(path) / "config.json").is_file():
        raise OrchestratorError(f"orchestrator {path}: no config.json; give a folder written by recipes/orchestrator.py")
    config = AutoConfig.from_pretrained(path)
    if not getattr(config, CONFIG_KEY, None):
        raise OrchestratorError(f"orchestrator {path}: its config has no '{CONFIG_KEY}' settings; it was not written "
                                "by recipes/orchestrator.py")
    names = [config.id2label[i] for i in range(config.num_labels)]
    if sorted(names) != sorted(objective_names):
        raise OrchestratorError(f"orchestrator {path} weighs objectives {names}, but the objectives here are "
                                f"{list(objective_names)}")


# ------------------------------------------------------------------------------------------------ evaluation

def evaluate_weights(predicted: torch.Tensor, targets: torch.Tensor, constant: torch.Tensor,
                     objective_names: Sequence[str], *, bootstrap: int = 500, seed: int = 0) -> dict[str, float]:
    """Held-out quality of predicted weights against targets, with standard errors.

    - `spearman_<objective>` (+ `_se`, bootstrap over prompts): rank correlation of predicted and target weight;
    - `kl` (+ `_se`): mean KL(target || predicted); `kl_constant`: the same for the constant `constant` weights
      (the mean training target); `kl_gain` (+ `_se`, paired over prompts) = kl_constant - kl, > 0 when better.
    """
    import numpy as np

    from reward_models.metrics import spearman_correlation

    predicted, targets = predicted.double().numpy(), targets.double().numpy()
    n = len(targets)
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, n, n) for _ in range(bootstrap)]
    metrics = {"prompts": n}
    for k, name in enumerate(objective_names):
        metrics[f"spearman_{name}"] = spearman_correlation(predicted[:, k], targets[:, k])
        draws = [spearman_correlation(predicted[i, k], targets[i, k]) for i in resamples]
        metrics[f"spearman_{name}_se"] = float(np.nanstd(draws))
    kl = kl_to_target(torch.from_numpy(targets), torch.from_numpy(predicted)).numpy()
    kl_constant = kl_to_target(torch.from_numpy(targets), constant.double().expand(n, -1)).numpy()
    gain = kl_constant - kl
    metrics.update(kl=float(kl.mean()), kl_se=float(kl.std(ddof=1) / np.sqrt(n)), kl_constant=float(kl_constant.mean()),
                   kl_constant_se=float(kl_constant.std(ddof=1) / np.sqrt(n)), kl_gain=float(gain.mean()),
                   kl_gain_se=float(gain.std(ddof=1) / np.sqrt(n)))
    return metrics
