"""`MultiHeadRewardTrainer`: transformers' Trainer for a K-head reward model on a mixture of labelled sources.

TRL's RewardTrainer trains one output; here each head is trained only by the rows that label it (see
`reward_models.losses` for the masked Bradley-Terry and regression losses and `reward_models.data` for the
mixture). Evaluation reports, per head, pairwise accuracy and/or Spearman correlation and MSE.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments

from alignment.hub.checkpointing import ResumableCheckpointsMixin
from reward_models.data import RewardMixtureCollator
from reward_models.losses import BALANCE_MODES, MARGIN_MODES, multi_head_reward_loss
from reward_models.metrics import per_head_metrics
from reward_models.modeling import head_names_of, set_head_statistics
from reward_models.scoring import score_texts


def rating_variance(dataset, num_heads: int) -> torch.Tensor:
    """[K] variance of each head's training ratings (1 for heads without ratings): the unit of its regression loss."""
    ratings = torch.tensor(dataset["rating"], dtype=torch.float64).reshape(-1, num_heads)
    mask = torch.tensor(dataset["rating_mask"], dtype=torch.float64).reshape(-1, num_heads) > 0
    variance = torch.ones(num_heads, dtype=torch.float64)
    for k in range(num_heads):
        if mask[:, k].sum() > 1:
            variance[k] = ratings[mask[:, k], k].var().clamp(min=1e-6)
    return variance.float()


@dataclass
class MultiHeadRewardConfig(TrainingArguments):
    """Training arguments of the multi-head reward model.

    Model:   `trust_remote_code` (off by default), `encoder_pooling` (how an encoder reads a text), `freeze_layers`.
    Data:    `max_length` truncates every rendered conversation from the left.
    Loss:    `margin_mode` (how UltraFeedback-style score gaps count), `rating_loss_weight` (regression vs pairs),
             `head_loss_balance` (how the heads' losses are weighed against each other).
    Scoring: `normalization_samples` texts of the training set measure each head's mean/std after training.
    The remaining fields are transformers' `TrainingArguments`; defaults below suit a small CPU run.
    """

    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow the backbone's own modeling code from the hub; off unless you trust that repository."},
    )
    encoder_pooling: str = field(
        default="mean",
        metadata={"help": "Encoders only: 'mean' appends a layer initialised to mean-pool the tokens into [CLS] (what "
                          "sentence-transformer encoders such as all-MiniLM-L6-v2 were trained for; still a plain "
                          "checkpoint), 'cls' reads [CLS] through the pretrained pooler. Decoders score the last "
                          "token."},
    )
    freeze_layers: int = field(
        default=0,
        metadata={"help": "Freeze the embeddings and this many lowest backbone layers (0: train everything); cuts "
                          "the backward pass on CPU."},
    )
    head_loss_balance: str = field(
        default="heads",
        metadata={"help": f"One of {BALANCE_MODES}: 'cells' averages the loss over all labelled cells (a head weighs "
                          "by its data count); 'heads' averages each head's own loss, rated heads' MSE divided by "
                          "their ratings' variance, so every head weighs the same."},
    )
    max_length: int | None = field(
        default=256,
        metadata={"help": "Maximum tokens per conversation; longer ones lose their beginning (the reply is at the "
                          "end)."},
    )
    margin_mode: str = field(
        default="none",
        metadata={"help": f"How a pair's score gap counts, one of {MARGIN_MODES}: 'none' (ordinal), 'weight' (loss "
                          "weighted by the gap) or 'offset' (Llama-2 margin inside the sigmoid). Gap 1 when a source "
                          "has none."},
    )
    rating_loss_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the regression loss on rated heads relative to the Bradley-Terry loss on pairs."},
    )
    normalization_samples: int = field(
        default=512,
        metadata={"help": "Number of training texts scored after training to measure each head's mean/std, stored in "
                          "the model config for normalized scoring."},
    )
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate of AdamW."})
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep the mixture's columns: the collator needs texts, masks and ratings, not model inputs."},
    )

    def __post_init__(self):
        if self.margin_mode not in MARGIN_MODES:
            raise ValueError(f"margin_mode must be one of {MARGIN_MODES}, got {self.margin_mode!r}")
        if self.head_loss_balance not in BALANCE_MODES:
            raise ValueError(f"head_loss_balance must be one of {BALANCE_MODES}, got {self.head_loss_balance!r}")
        if self.encoder_pooling not in ("mean", "cls"):
            raise ValueError(f"encoder_pooling must be 'mean' or 'cls', got {self.encoder_pooling!r}")
        if self.freeze_layers < 0:
            raise ValueError(f"freeze_layers must be >= 0, got {self.freeze_layers}")
        if self.rating_loss_weight < 0:
            raise ValueError(f"rating_loss_weight must be >= 0, got {self.rating_loss_weight}")
        super().__post_init__()


class MultiHeadRewardTrainer(ResumableCheckpointsMixin, Trainer):
    """Trains every head of a K-head reward model in one forward pass per batch of mixed sources."""

    _LOSS_KEYS = ("first_index", "second_index", "pair_mask", "pair_margin", "rating", "rating_mask")

    def __init__(self, model, args: MultiHeadRewardConfig, train_dataset=None, eval_dataset=None,
                 processing_class=None, data_collator=None, compute_metrics=None, **kwargs):
        self.head_names = head_names_of(model.config)
        super().__init__(
            model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=processing_class,
            data_collator=data_collator or RewardMixtureCollator(processing_class, args.max_length),
            compute_metrics=compute_metrics or self._per_head_metrics, **kwargs,
        )
        # Our loss is a mean over labelled cells already; Trainer must not rescale it by token counts.
        self.model_accepts_loss_kwargs = False
        self.rating_variance = (rating_variance(train_dataset, len(self.head_names)) if train_dataset is not None
                                else None)

    def _per_head_metrics(self, evaluation) -> dict[str, float]:
        return per_head_metrics(evaluation.predictions, evaluation.label_ids, self.head_names)

    def _head_scores(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(first-text scores [B, K], second-text scores [B, K]) from ONE forward pass over the batch's texts."""
        model_inputs = {k: v for k, v in inputs.items() if k not in self._LOSS_KEYS}
        scores = model(**model_inputs).logits.float()
        return scores[inputs["first_index"]], scores[inputs["second_index"]]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        first, second = self._head_scores(model, inputs)
        losses = multi_head_reward_loss(
            chosen_scores=first, rejected_scores=second, pair_mask=inputs["pair_mask"],
            rated_scores=first, ratings=inputs["rating"], rating_mask=inputs["rating_mask"],
            margins=inputs["pair_margin"], margin_mode=self.args.margin_mode,
            rating_loss_weight=self.args.rating_loss_weight, balance=self.args.head_loss_balance,
            rating_variance=self.rating_variance,
        )
        if return_outputs:
            return losses["loss"], {"first": first, "second": second}
        return losses["loss"]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Loss, per-row scores [B, 2, K] and per-row labels [B, 3, K] (pair mask, rating, rating mask)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        predictions = torch.stack([outputs["first"], outputs["second"]], dim=1)
        labels = torch.stack([inputs["pair_mask"], inputs["rating"], inputs["rating_mask"]], dim=1)
        return loss.detach(), predictions, labels

    def measure_head_statistics(self, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a sample of training texts and store each head's mean/std in the model config.

        Normalized scoring, (raw - mean) / std, puts heads trained by different losses on one scale: Bradley-Terry
        fixes only score differences, so a pairwise head's raw offset is arbitrary.
        """
        texts = [t for row in self.train_dataset for t in (row["first"], row["second"]) if t]
        random.Random(seed).shuffle(texts)
        texts = texts[: self.args.normalization_samples]
        scores = score_texts(
            self.model, self.processing_class, texts, batch_size=self.args.per_device_eval_batch_size,
            max_length=self.args.max_length,
        )
        mean, std = scores.mean(dim=0), scores.std(dim=0) if len(texts) > 1 else torch.ones(scores.shape[1])
        set_head_statistics(self.model.config, mean, std)
        return mean, std
