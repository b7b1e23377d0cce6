"""Multi-objective preference optimization: MODPO, cardinal margins, multi-head DPO, mDPO / mIPO, LiPO-lambda.

With no arguments it runs the embedded default (`recipes/configs/dpo_modpo_tiny_cpu.yaml`): the tiny offline
policy, HH-RLHF helpful pairs, conciseness as MODPO's margin objective, ~1 minute on 2 CPU cores. It prints the
implicit reward margin on held-out pairs before and after training, and writes a checkpoint with `objectives.json`
and a model card.

    # the default (CPU): MODPO on helpful pairs with a conciseness margin
    accelerate launch recipes/dpo.py
    # one config per loss
    accelerate launch recipes/dpo.py --config recipes/configs/dpo_mah_tiny_cpu.yaml        # multi-head DPO
    accelerate launch recipes/dpo.py --config recipes/configs/dpo_cardinal_tiny_cpu.yaml   # UltraFeedback score gaps
    accelerate launch recipes/dpo.py --config recipes/configs/dpo_lipo_tiny_cpu.yaml       # qa-feedback ranked lists
    accelerate launch recipes/dpo.py --config recipes/configs/dpo_mdpo_tiny_cpu.yaml       # groups (--loss mipo too)
    # a steerable checkpoint: per-objective DPO, Dirichlet weights per pair fed to a preference adapter
    accelerate launch recipes/dpo.py --config recipes/configs/dpo_steerable_tiny_cpu.yaml
    python scripts/generate.py --model outputs/dpo-steerable-tiny --weights conciseness=0.9,sentiment=0.1 --prompt Hi
    # TRL's dataset fields: a hub preference dataset in one of TRL's formats (or HH-RLHF's), its test split held out
    accelerate launch recipes/dpo.py --dataset_name trl-lib/ultrafeedback_binarized
    # override anything from the command line
    accelerate launch recipes/dpo.py --preference_weights helpful=0.6,conciseness=0.4 --max_steps 40
    # a real hub model on a GPU, with LoRA
    accelerate launch --config_file accelerate_configs/ddp.yaml recipes/dpo.py \\
        --config recipes/configs/dpo_modpo_qwen2.5_0.5b_gpu.yaml --use_peft true --lora_r 16

Rerunning the same command after an interruption resumes from the last checkpoint in `output_dir`;
`--resume_from_checkpoint PATH` resumes that checkpoint, `--resume_from_checkpoint false` starts over.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import transformers
from transformers import set_seed
from trl import ModelConfig, get_peft_config

from alignment.cli import parse_recipe_args, use_cpu_cores
from alignment.data.arguments import DatasetArguments
from alignment.data.preferences import load_preference_splits, to_dataset
from alignment.evaluation import paired_standard_errors, score_held_out, train_evaluate_and_save
from alignment.hub import checkpointing
from alignment.models.policy import check_quantization, load_policy
from alignment.objectives.reward_vector import RewardVectorBuilder
from alignment.orchestrator import PreferenceOrchestrator, attach_prompt_weights
from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer
from reward_models.scoring import objective_reward_sources

RECIPE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = RECIPE_DIR / "configs" / "dpo_modpo_tiny_cpu.yaml"
logger = logging.getLogger(__name__)


@dataclass
class ScriptArguments(DatasetArguments):
    """The recipe's own settings: the preference data, the held-out margin and replies; and TRL's dataset fields
    (`alignment.data.arguments`)."""

    data_fields: ClassVar[tuple[str, ...]] = ("dataset", "eval_dataset", "dataset_name")  # anchored (alignment.cli)
    local_data_field: ClassVar[str] = "dataset"
    local_eval_field: ClassVar[str] = "eval_dataset"
    default_dataset: ClassVar[str] = "hh"

    dataset: str | None = field(
        default=None,
        metadata={"help": "Packaged sets: 'hh' (HH-RLHF helpful/harmless pairs; when neither this nor dataset_name "
                          "is set), 'ultrafeedback' (pairs with score gaps), 'qa-feedback' (ranked lists of 4); or a "
                          "JSONL file of pairs/lists/groups (relative to the YAML recipe that names it), or a hub spec "
                          "'owner/name?key=value' (alignment/data/sources.py). Pairs may be in any of TRL's "
                          "preference formats (the prompt explicit or implicit in chosen/rejected, conversational or "
                          "plain text) or HH-RLHF's chosen/rejected transcripts."},
    )
    eval_dataset: str | None = field(
        default=None, metadata={"help": "Held-out data (else dataset_name's test split, else the last rows of the "
                                        "training data)."}
    )
    num_train_rows: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    num_eval_rows: int = field(default=64, metadata={"help": "Held-out rows for the before/after margin; 0 skips it."})
    max_prompt_chars: int | None = field(
        default=None, metadata={"help": "Leave out rows whose prompt is longer (keeps short-context tiny runs useful)."}
    )
    group_size: int = field(default=2, metadata={"help": "mdpo/mipo on lists: k best vs k worst responses per prompt."})
    reward_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Multi-head reward model scoring the 'name=rm:HEAD' objectives (MODPO's margin "
                                        "objectives, eval_objectives)."}
    )
    eval_objectives: list[str] = field(
        default_factory=list,
        metadata={"help": "Objectives (specs: built-in name, 'name=python:mod:fn', 'name=rm:HEAD') scored on "
                          "replies the policy samples for the held-out prompts, before and after training, with the "
                          "reply length and the shares of empty and distinct replies. Named like `objectives`, the "
                          "table adds their weighted sum. Empty: only the implicit reward on the held-out pairs."},
    )
    num_eval_prompts: int = field(
        default=64, metadata={"help": "At most this many distinct held-out prompts get a reply."}
    )
    eval_max_new_tokens: int = field(default=48, metadata={"help": "Reply length cap for the held-out replies."})
    eval_temperature: float = field(default=0.8, metadata={"help": "Sampling temperature of the held-out replies."})


def main(script_args: ScriptArguments, training_args: MultiObjectiveDPOConfig, model_args: ModelConfig):
    check_quantization(model_args, "dpo", training_args.uses_preference_adapter)
    # Seed and logging
    set_seed(training_args.seed)
    use_cpu_cores(training_args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=training_args.get_process_log_level())
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())

    # Resume from the last checkpoint of an interrupted run
    last_checkpoint = checkpointing.checkpoint_to_resume(training_args, training_args.objective_names)

    # Data first: a malformed file fails here, before any model is loaded
    loss = training_args.loss_component  # what the loss trains on (alignment.trainers.dpo_losses)
    source = script_args.data_source()
    train_rows, eval_rows, dataset_names = load_preference_splits(
        source.train, loss.data_format, loss.data_objectives(source.train), script_args.num_train_rows,
        script_args.num_eval_rows, source.test, script_args.max_prompt_chars, script_args.group_size,
        required=loss.row_fields, pair_weight_field=training_args.pair_weight_column,
        weight_objectives=training_args.objective_names,
    )
    dataset_names = [source.name] if source.name else dataset_names  # a hub id, not its copy in the cache
    if training_args.weights_mode == "prompt_aware":  # each row's weights, once per prompt, before labels use them
        orchestrator = PreferenceOrchestrator.from_pretrained(training_args.orchestrator_name_or_path)
        names = training_args.orchestrator_objective_names
        train_rows = attach_prompt_weights(train_rows, orchestrator, names)
        eval_rows = attach_prompt_weights(eval_rows, orchestrator, names)
    # What the loss reads beyond the data (MODPO's frozen margin rewards, per-objective labels, list labels), once
    train_rows, eval_rows = loss.complete_rows(train_rows, eval_rows, script_args.reward_model_name_or_path)

    # Model (multi-head DPO: one head per objective on the shared trunk)
    model, tokenizer = load_policy(model_args, training_args.trust_remote_code, training_args.model_init_kwargs)
    loss.extend_policy(model)

    # Trainer
    row_columns = (training_args.pair_weight_column,)  # each row's weight on its loss, where the data carry one
    trainer = MultiObjectiveDPOTrainer(
        model=model, args=training_args, train_dataset=to_dataset(train_rows, row_columns),
        eval_dataset=to_dataset(eval_rows, row_columns) if eval_rows else None, processing_class=tokenizer,
        peft_config=get_peft_config(model_args), dataset_names=dataset_names,
    )

    # Held-out replies scored on eval_objectives: what the policy now writes, not only how it ranks given pairs
    reply_builder = None
    if script_args.eval_objectives and eval_rows:
        reply_objectives, reply_sources = objective_reward_sources(
            script_args.eval_objectives, script_args.reward_model_name_or_path,
            trust_remote_code=training_args.trust_remote_code)
        reply_builder = RewardVectorBuilder.from_objectives(reply_objectives, reply_sources)
    distinct_prompts = {str(row["prompt"]): row["prompt"] for row in eval_rows}
    eval_prompts = list(distinct_prompts.values())[:script_args.num_eval_prompts]
    same_objectives = reply_builder is not None and reply_builder.objective_names == training_args.objective_names
    generation = dict(max_new_tokens=script_args.eval_max_new_tokens, temperature=script_args.eval_temperature,
                      seed=training_args.seed)

    def implicit_rewards():  # the held-out implicit reward margins (beta * log pi/pi_ref), per objective where logged
        if not training_args.uses_preference_adapter:
            return {k[5:]: v for k, v in trainer.evaluate().items() if k.startswith("eval_rewards/")}
        # a steerable checkpoint: every objective's margin with all weight on each objective in turn
        margins = {}
        for index, name in enumerate(training_args.objective_names):
            all_on_one = torch.nn.functional.one_hot(torch.tensor(index), len(training_args.objective_names))
            trainer.evaluation_weights = all_on_one.float()
            margins.update({f"{k[5:]} at {name}=1": v for k, v in trainer.evaluate().items()
                            if k.startswith("eval_rewards/margins_")})
        trainer.evaluation_weights = None
        return margins

    def evaluate():  # the implicit reward (beta * log pi/pi_ref) on held-out pairs, and the held-out replies' scores
        if not eval_rows:
            return None
        implicit = implicit_rewards()
        policy = trainer.accelerator.unwrap_model(trainer.model)
        replies = None
        if reply_builder:
            replies = score_held_out(policy, tokenizer, eval_prompts, reply_builder, **generation)
        return implicit, replies

    def summarize(before, after):
        (implicit_before, replies_before), (implicit_after, replies_after) = before, after
        if replies_before is None:
            return implicit_before, implicit_after, None
        # the weights the run ended with (the fixed weights, or where a weight schedule arrived)
        reply_weights = trainer.current_weights() if same_objectives else None
        errors = paired_standard_errors(replies_before.per_prompt(reply_weights),
                                        replies_after.per_prompt(reply_weights))
        return ({**replies_before.means(reply_weights), **implicit_before},
                {**replies_after.means(reply_weights), **implicit_after}, errors)

    heading = f"Implicit reward (rewards/*: beta * log pi/pi_ref) on {len(eval_rows)} held-out pairs"
    if reply_builder:
        heading = (f"Mean of each objective over one sampled reply to each of {len(eval_prompts)} held-out prompts"
                   + (" (weighted_objective: the preference weights times the objectives)" if same_objectives else "")
                   + f"; {heading}")
    train_evaluate_and_save(trainer, evaluate, last_checkpoint, training_args.output_dir, heading, summarize)
    return trainer


# The dataclasses of the command line; `moalign` (alignment/console.py) reads them too, to tell this recipe's options
# from those of `accelerate launch`.
ARGUMENTS = (ScriptArguments, MultiObjectiveDPOConfig, ModelConfig)


def parse_args(argv=None):
    return parse_recipe_args(ARGUMENTS, DEFAULT_CONFIG, argv)


if __name__ == "__main__":
    main(*parse_args())
