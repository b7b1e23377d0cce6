"""The Preference Orchestrator model: a frozen encoder and a K-way head, its checkpoint (save, load, config-only
checks), and its weights in a given objective order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from alignment.models.packaged import PACKAGED_MINILM, resolve_model_path
from alignment.orchestrator.errors import OrchestratorError
from reward_models.chat_format import render_conversation, to_messages

# The checkpoint config's key for the orchestrator's settings (pooling, max_length, target, ...).
CONFIG_KEY = "preference_orchestrator"
# Prompt features: masked mean of the last hidden states, or BERT's [CLS] pooler.
POOLINGS = ("mean", "pooler")


def _checkpoint_config(path: str | Path):
    """The transformers config of an orchestrator checkpoint folder, refused unless recipes/orchestrator.py wrote it."""
    # Lazy: transformers takes most of a second to import; the targets, fitting and row parsing do not need it.
    from transformers import AutoConfig

    if not (Path(path) / "config.json").is_file():
        raise OrchestratorError(f"orchestrator {path}: no config.json; give a folder written by "
                                "recipes/orchestrator.py")
    config = AutoConfig.from_pretrained(path)
    if not getattr(config, CONFIG_KEY, None):
        raise OrchestratorError(f"orchestrator {path}: its config has no '{CONFIG_KEY}' settings; it was not written "
                                "by recipes/orchestrator.py")
    return config


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
        # Lazy: transformers takes most of a second to import; the targets, fitting and row parsing do not need it.
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
        """The orchestrator saved in `path` by recipes/orchestrator.py (`save_pretrained`), on `device`."""
        # Lazy: transformers takes most of a second to import; the targets, fitting and row parsing do not need it.
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        settings = getattr(_checkpoint_config(path), CONFIG_KEY)
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
        return cls(model.to(device), AutoTokenizer.from_pretrained(path), pooling=settings["pooling"],
                   max_length=settings["max_length"])

    def render(self, prompt) -> str:
        """The text the encoder reads for a prompt (string, message list or HH dialogue), as the reward model
        renders conversations (`reward_models.chat_format`)."""
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
        """[N, K] weights (softmax of the head's logits) of [N, D] features from `features`, float32 on CPU."""
        classifier = self.model.classifier
        with torch.no_grad():
            logits = classifier(features.to(classifier.weight.device, classifier.weight.dtype))
            return torch.softmax(logits.float(), -1).cpu()

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


def weights_in_order(orchestrator: PreferenceOrchestrator, prompts: Sequence,
                     objective_names: Sequence[str]) -> torch.Tensor:
    """The orchestrator's weights with columns in `objective_names` order (same names, any order), [N, K]."""
    names = list(objective_names)
    if sorted(names) != sorted(orchestrator.objective_names):
        raise OrchestratorError(f"the orchestrator weighs objectives {orchestrator.objective_names}, but the "
                                f"objectives here are {names}; train it on a reward model with these heads")
    return orchestrator.weights(prompts)[:, [orchestrator.objective_names.index(n) for n in names]]


def attach_prompt_weights(rows: Sequence[dict], orchestrator: PreferenceOrchestrator,
                          objective_names: Sequence[str]) -> list[dict]:
    """Rows (with a `prompt`) plus `preference_weights`: the orchestrator's weights for the row's prompt, in
    `objective_names` order; each distinct prompt is weighed once."""
    weights = weights_in_order(orchestrator, [row["prompt"] for row in rows], objective_names) if rows else []
    return [{**row, "preference_weights": w.tolist()} for row, w in zip(rows, weights)]


def check_orchestrator_objectives(path: str | Path, objective_names: Sequence[str]) -> None:
    """Config-only check (no weights read) that an orchestrator checkpoint weighs exactly these objectives."""
    config = _checkpoint_config(path)
    names = [config.id2label[i] for i in range(config.num_labels)]
    if sorted(names) != sorted(objective_names):
        raise OrchestratorError(f"orchestrator {path} weighs objectives {names}, but the objectives here are "
                                f"{list(objective_names)}")
