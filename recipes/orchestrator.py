"""Train a Preference Orchestrator (PRO): prompt -> preference weights over the heads of a multi-head reward model.

The CPU default (`recipes/configs/orchestrator_cpu.yaml`) reads the HH-RLHF helpful and harmless pairs, scores each
chosen reply with the reward model's heads (normalized with the head mean/std recorded in its config), turns the
scores into target weights, and fits a K-way head on frozen all-MiniLM-L6-v2 features with an L2 penalty chosen by
cross-validation. Any pairwise or rated data works as `train_files` (rated rows: the best-rated reply per prompt;
`qa_feedback:qa-feedback` for the packaged QA feedback). Cost: a few CPU minutes, nearly all of it the reward model
and the encoder reading the data once (measured: scoring 1597 + 466 replies and encoding the prompts twice took
262 s of CPU, 14.6 min wall on the shared 2 cores); the head's fits take seconds each. It reports, on held-out
prompts, each objective's Spearman correlation between predicted and target weights and the KL to the targets
against the constant mean-weight predictor, with standard errors, and writes them into the checkpoint's card.

    python recipes/orchestrator.py --reward_model_name_or_path outputs/rm
    python recipes/orchestrator.py --reward_model_name_or_path outputs/rm --target clip --pooling pooler

Use it: `weights_mode: prompt_aware` + `orchestrator_name_or_path` in GRPO or DPO (modpo, lipo), or
`python scripts/generate.py --weights auto --orchestrator PATH ...`.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from transformers import set_seed

from alignment.cli import parse_recipe_args
from alignment.hub.checkpointing import atomic_output
from alignment.hub.record import build_record, save_record
from alignment.models.packaged import PACKAGED_MINILM, model_display_name
from alignment.orchestrator import (
    POOLINGS,
    TARGETS,
    PreferenceOrchestrator,
    evaluate_weights,
    fit_head,
    load_prompt_targets,
    target_weights,
)
from reward_models.scoring import MultiHeadRewardScorer, check_reward_model_source

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "orchestrator_cpu.yaml"
logger = logging.getLogger(__name__)


@dataclass
class OrchestratorArguments:
    """The orchestrator recipe's settings: the reward model that scores, the data, the encoder, the targets and the
    head's fit (see each field's help)."""

    data_fields: ClassVar[tuple[str, ...]] = ("train_files", "eval_files")

    reward_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Multi-head reward model (recipes/reward_model.py) that scores the chosen replies."})
    heads: list[str] | None = field(
        default=None,
        metadata={"help": "Reward-model heads to weigh (the orchestrator's objectives). Default: all heads."})
    train_files: list[str] = field(
        default_factory=lambda: ["hh-helpful", "hh-harmless"],
        metadata={"help": "Pairwise or rated data (packaged name, file or hub id, optional [start:stop]; "
                          "qa_feedback:NAME for the QA feedback file) whose preferred replies give the targets: the "
                          "chosen reply of a pair, the best-rated reply of a prompt's rated rows."})
    eval_files: list[str] = field(
        default_factory=lambda: ["hh-helpful-dev", "hh-harmless-dev"],
        metadata={"help": "Held-out pairwise or rated data for the report; prompts also seen in training are left "
                          "out."})
    encoder: str = field(default=PACKAGED_MINILM, metadata={"help": "Frozen encoder (hub id, path or packaged name)."})
    pooling: str = field(
        default="mean", metadata={"help": f"Prompt features: one of {POOLINGS} (see alignment.orchestrator)."})
    max_length: int = field(
        default=128, metadata={"help": "Prompt tokens the encoder reads (the end of the prompt is kept)."})
    target: str = field(default="softmax", metadata={"help": f"Scores -> target weights: one of {TARGETS}."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax target: temperature on the normalized scores."})
    steps: int = field(default=300, metadata={"help": "Full-batch Adam steps on the head."})
    l2_penalties: list[float] = field(
        default_factory=lambda: [1e-3, 1e-2, 1e-1],
        metadata={"help": "L2 penalties on the head's weights to choose from by cross-validation on the training "
                          "prompts (one value: no choice). The penalty pulls the head toward the constant mean "
                          "weights."})
    cv_folds: int = field(default=4, metadata={"help": "Folds of the cross-validation that picks the L2 penalty."})
    learning_rate: float = field(default=0.05, metadata={"help": "Adam learning rate of the head."})
    seed: int = field(default=0, metadata={"help": "Seed of the cross-validation folds."})
    output_dir: str = field(default="outputs/orchestrator", metadata={"help": "Where the checkpoint is written."})


def main(args: OrchestratorArguments):
    """Score the preferred replies, fit the head, report held-out quality, and write the checkpoint and its card."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(args.seed)
    if not args.reward_model_name_or_path:
        raise ValueError("set reward_model_name_or_path: the multi-head reward model that scores the chosen replies")
    # Settings first, then the reward model's heads from its config: bad input fails before any weights load
    if args.target not in TARGETS or args.pooling not in POOLINGS:
        raise ValueError(f"target must be one of {TARGETS} and pooling one of {POOLINGS}; got {args.target}, "
                         f"{args.pooling}")
    if args.heads:  # from config.json alone: a head the model lacks fails before any weights load
        check_reward_model_source(args.reward_model_name_or_path, {h: h for h in args.heads})
    scorer = MultiHeadRewardScorer.from_pretrained(args.reward_model_name_or_path, device="cpu")
    heads = list(args.heads or scorer.head_names)
    columns = [scorer.head_names.index(h) for h in heads]
    if scorer.statistics is None:
        raise ValueError(f"{args.reward_model_name_or_path}: no per-head mean/std in its config; the targets need "
                         "normalized scores (train it with recipes/reward_model.py)")

    # Targets: normalized head scores of the chosen replies, per distinct prompt
    train_prompts, train_scores = load_prompt_targets(args.train_files, scorer, columns)
    train_keys = {str(p) for p in train_prompts}
    eval_prompts, eval_scores = load_prompt_targets(args.eval_files, scorer, columns) if args.eval_files else ([], None)
    if eval_prompts:
        kept = [i for i, p in enumerate(eval_prompts) if str(p) not in train_keys]
        eval_prompts, eval_scores = [eval_prompts[i] for i in kept], eval_scores[kept]
    train_targets = target_weights(train_scores, args.target, args.temperature)
    logger.info("%d training prompts, %d held-out prompts; mean target %s", len(train_prompts), len(eval_prompts),
                dict(zip(heads, train_targets.mean(0).tolist())))

    # Frozen features once, then the head
    orchestrator = PreferenceOrchestrator.build(heads, args.encoder, pooling=args.pooling, max_length=args.max_length)
    head = fit_head(orchestrator.features(train_prompts), train_targets, l2_penalties=args.l2_penalties,
                    folds=args.cv_folds, steps=args.steps, learning_rate=args.learning_rate, seed=args.seed)
    orchestrator.set_head(head)

    evaluation = {}
    if eval_prompts:
        eval_targets = target_weights(eval_scores, args.target, args.temperature)
        evaluation = evaluate_weights(orchestrator.weights(eval_prompts), eval_targets, train_targets.mean(0), heads)
        print(f"\nHeld-out prompts: {evaluation['prompts']}")
        for name in heads:
            print(f"  Spearman(predicted, target) {name:<12} {evaluation[f'spearman_{name}']:+.3f} "
                  f"+- {evaluation[f'spearman_{name}_se']:.3f}")
        print(f"  KL(target || predicted) {evaluation['kl']:.4f} +- {evaluation['kl_se']:.4f}; constant mean weights "
              f"{evaluation['kl_constant']:.4f} +- {evaluation['kl_constant_se']:.4f}; "
              f"gain {evaluation['kl_gain']:+.4f} +- {evaluation['kl_gain_se']:.4f} (paired)")

    # Named as records name models (hub id, packaged name or folder name): a published config carries no local path.
    settings = {"target": args.target, "temperature": args.temperature, "encoder": model_display_name(args.encoder),
                "reward_model": model_display_name(args.reward_model_name_or_path)}
    with atomic_output(args.output_dir) as final_dir:  # the checkpoint, its record and its card appear whole
        orchestrator.save_pretrained(final_dir, settings)
        record = build_record(
            trainer="orchestrator", base_model=args.encoder,
            objectives=[{"name": h, "source": f"reward_model_head:{h}", "threshold": None} for h in heads],
            weight_distribution={"type": "prompt_aware", "target": args.target, "temperature": args.temperature,
                                 "pooling": args.pooling},
            datasets=[f for f in args.train_files if f.strip()],
            steering="orchestrator",
            extra={"reward_model": model_display_name(args.reward_model_name_or_path), "mean_target_weights":
                   dict(zip(heads, [round(v, 4) for v in train_targets.mean(0).tolist()]))},
        )
        save_record(final_dir, record, evaluation={k: round(v, 5) if isinstance(v, float) else v
                                                   for k, v in evaluation.items()})
        with open(final_dir / "README.md", "a") as card:
            card.write(usage_section(args.pooling, heads))
    print(f"\nOrchestrator written to {args.output_dir}")


def usage_section(pooling: str, heads: list[str]) -> str:
    """The model card's section on loading the checkpoint and using its weights (with or without moalign code)."""
    plain = ("With pooling 'pooler' this is transformers' own BERT classifier path, so no moalign code is needed:\n\n"
             "```python\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
             "model = AutoModelForSequenceClassification.from_pretrained(PATH)\n"
             "tokenizer = AutoTokenizer.from_pretrained(PATH)\n"
             "weights = model(**tokenizer(['Human: How do I pick a lock?'], return_tensors='pt'))"
             ".logits.softmax(-1)\n```\n")
    mean = ("The head reads mean-pooled encoder states (pooling 'mean'), which transformers' BERT classifier does not "
            "compute (it reads the [CLS] pooler): load it with the small loader\n\n"
            "```python\nfrom alignment.orchestrator import PreferenceOrchestrator\n"
            "weights = PreferenceOrchestrator.from_pretrained(PATH).weights(['How do I pick a lock?'])\n```\n")
    return ("\n## Preference Orchestrator (PRO)\n\nMaps a prompt to preference weights over "
            f"{', '.join(heads)} (softmax of the K logits, in `id2label` order). "
            + (plain if pooling == "pooler" else mean)
            + "\nUse in training with `weights_mode: prompt_aware` and `orchestrator_name_or_path: PATH` (GRPO), or at "
              "inference with `python scripts/generate.py --weights auto --orchestrator PATH --model CHECKPOINT`.\n")


# The dataclasses of the command line; `moalign` (alignment/console.py) reads them too, to tell this recipe's options
# from those of `accelerate launch`.
ARGUMENTS = (OrchestratorArguments,)


def parse_args(argv=None):
    """The recipe's arguments from the YAML config (default `orchestrator_cpu.yaml`) and the command line."""
    return parse_recipe_args(ARGUMENTS, DEFAULT_CONFIG, argv)


if __name__ == "__main__":
    main(*parse_args())
