"""Train a multi-head reward model: one head per objective, each trained only by the data that labels it.

CPU default, embedded (`recipes/configs/reward_model_cpu.yaml`: all-MiniLM-L6-v2 encoder, helpful + harmless heads
from HH-RLHF pairs, relevance / factuality / completeness heads from the fine-grained QA feedback):

    accelerate launch recipes/reward_model.py

Override anything from the command line, e.g. a two-head model on the HH pairs alone:

    accelerate launch recipes/reward_model.py --config recipes/configs/reward_model_cpu.yaml \
        --heads helpful harmless --rated_train_files "" --rated_eval_files "" --output_dir /tmp/rm-2head

GPU, decoder backbone with LoRA (last-token pooling, Qwen chat template):

    accelerate launch recipes/reward_model.py --config recipes/configs/reward_model_qwen_lora.yaml

The checkpoint is a plain `AutoModelForSequenceClassification` (safetensors, LoRA merged in) with `id2label`
naming the heads and per-head mean/std in its config, plus `objectives.json` and a model card.
"""

import logging
import sys
from pathlib import Path

import transformers
from transformers import set_seed
from trl import ModelConfig

from alignment.cli import parse_recipe_args, use_cpu_cores
from alignment.data import data_display_name
from alignment.hub import checkpointing
from alignment.hub.record import build_record, save_record
from alignment.models.policy import check_quantization
from reward_models.data import RewardDataArguments, build_eval_mixtures, build_mixture, load_examples
from reward_models.modeling import add_lora, build_reward_model, freeze_lower_layers, load_reward_tokenizer, merge_lora
from reward_models.trainer import MultiHeadRewardConfig, MultiHeadRewardTrainer

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "reward_model_cpu.yaml"
logger = logging.getLogger(__name__)


def main(script_args: RewardDataArguments, training_args: MultiHeadRewardConfig, model_args: ModelConfig):
    check_quantization(model_args, "reward model")
    # Seed and logging
    set_seed(training_args.seed)
    use_cpu_cores(training_args)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout)])
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)

    # Data first: every row is validated before a tokenizer or model is loaded or a step is taken
    heads = list(script_args.heads)
    train_examples = load_examples(script_args, "train")
    eval_examples = load_examples(script_args, "eval")
    if not train_examples:
        raise ValueError("no training data: give pairwise_train_files and/or rated_train_files")
    head_kinds = {h: "pairwise" for h in heads if any(e.objective == h for e in train_examples)}
    head_kinds |= {h: "rated" for h in heads if any(h in e.ratings for e in train_examples)}
    untrained = [h for h in heads if h not in head_kinds]
    if untrained:
        raise ValueError(f"head(s) {untrained} have no training data; drop them from `heads` or add a source")

    # Resume from the last checkpoint in output_dir, if any (its heads must be these heads)
    last_checkpoint = checkpointing.checkpoint_to_resume(training_args, objective_names=heads)

    # Tokenizer and the mixture of rendered texts
    tokenizer = load_reward_tokenizer(model_args.model_name_or_path, trust_remote_code=training_args.trust_remote_code,
                                      revision=model_args.model_revision)
    train_dataset = build_mixture(train_examples, heads, tokenizer)
    eval_dataset = build_eval_mixtures(eval_examples, heads, tokenizer) if eval_examples else None
    logger.info("training rows: %d, evaluation sets: %s", len(train_dataset),
                {k: len(v) for k, v in (eval_dataset or {}).items()})

    # Model: a K-head sequence classifier on the backbone, LoRA on the backbone if asked
    model = build_reward_model(
        model_args.model_name_or_path, heads, tokenizer, head_kinds=head_kinds, max_length=training_args.max_length,
        dtype=model_args.dtype, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation, encoder_pooling=training_args.encoder_pooling,
    )
    freeze_lower_layers(model, training_args.freeze_layers)
    if model_args.use_peft:
        model = add_lora(model, model_args)

    # Train
    trainer = MultiHeadRewardTrainer(model=model, args=training_args, train_dataset=train_dataset,
                                     eval_dataset=eval_dataset, processing_class=tokenizer)
    train_result = trainer.train(resume_from_checkpoint=last_checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    # Normalization statistics, then evaluation
    trainer.measure_head_statistics(seed=training_args.seed)
    evaluation = {}
    if eval_dataset is not None:
        evaluation = trainer.evaluate()
        trainer.log_metrics("eval", evaluation)
        trainer.save_metrics("eval", evaluation)

    # Save a plain checkpoint (LoRA merged) with its tokenizer and objectives record, all appearing at once (and
    # pushed with push_to_hub); a failure midway leaves the previous final output as it was
    trainer.model = merge_lora(trainer.model)
    with trainer.final_save(training_args.output_dir) as final_dir:
        trainer.save_model(final_dir)
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(final_dir)
            datasets = sorted({data_display_name(s)
                               for s in script_args.pairwise_train_files + script_args.rated_train_files if s.strip()})
            record = build_record(
                trainer="reward_model", base_model=model_args.model_name_or_path,
                objectives=[{"name": h, "source": f"reward_model_head:{h}", "threshold": None, "kind": head_kinds[h]}
                            for h in heads],
                datasets=datasets, extra={"margin_mode": training_args.margin_mode},
            )
            save_record(final_dir, record, evaluation={
                k: v for k, v in evaluation.items() if k.startswith("eval_") and ("accuracy" in k or "spearman" in k)
            })
    logger.info("saved the reward model to %s", training_args.output_dir)
    return trainer


# The dataclasses of the command line; `moalign` (alignment/console.py) reads them too, to tell this recipe's options
# from those of `accelerate launch`.
ARGUMENTS = (RewardDataArguments, MultiHeadRewardConfig, ModelConfig)


def parse_args(argv=None):
    return parse_recipe_args(ARGUMENTS, DEFAULT_CONFIG, argv)


if __name__ == "__main__":
    main(*parse_args())
