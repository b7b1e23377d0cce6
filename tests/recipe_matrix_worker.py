"""One backend's column of the launch matrix (tests/test_launch_matrix.py), run under `accelerate launch`.

Every recipe runs in this one launched process pair, one after the other (one process start per backend instead of one
per cell): the multi-head reward model, GRPO (and GRPO with MGDA), DPO (MODPO, its margin objective scored by that
reward model) and multi-head DPO, 2 steps each with a checkpoint per step. After each run every rank takes part in one
forward pass of the in-memory model, as the backend holds it (DDP replica, ZeRO-2/ZeRO-3 engine, FSDP2 shards), on fixed
inputs; the main process writes the outputs beside the checkpoint (`in_memory_outputs.safetensors`) for the test to
compare with the saved checkpoint loaded in plain transformers. With `--resume`, each run is then rolled back to
checkpoint-1 (what a kill right after it leaves) and rerun: it must resume from checkpoint-1, not rewrite it, and
finish.

    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 2 --mixed_precision no \\
        tests/recipe_matrix_worker.py OUTPUT_ROOT [--only rm,grpo] [--resume grpo] [--fsdp_on_cpu]
"""

import argparse
import contextlib
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import PartialState
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ("rm", "grpo", "grpo_mgda", "dpo_modpo", "dpo_mah")  # rm first: MODPO scores with it
MGDA_BATCHES = "mgda_batches"  # grpo_mgda: each step's batch on each process (recording_mgda_batches)
PROBE_TEXTS = ["<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\nMix flour and water",
               "<|im_start|>user\nSay something kind.<|im_end|>\n"]


# The MGDA cell's objectives: rewards that vary between any two different replies, even 8 tokens of the tiny policy,
# so that every objective has a gradient and the min-norm weights are not decided by a zero gradient (the default's
# sentiment and profanity_free are constant on such replies: MGDA then puts all its weight on them, and steps nowhere).
MGDA_OBJECTIVES = ["conciseness", "vowels=python:tests.recipe_matrix_worker:vowel_share",
                   "words=python:tests.recipe_matrix_worker:word_count"]


def vowel_share(prompts, completions, **kwargs) -> list[float]:
    """The share of vowels among a reply's characters."""
    from reward_models.verifiable import completion_text

    texts = [completion_text(c) for c in completions]
    return [sum(ch in "aeiouAEIOU" for ch in text) / max(len(text), 1) for text in texts]


def word_count(prompts, completions, **kwargs) -> list[float]:
    """The number of words of a reply / 4."""
    from reward_models.verifiable import completion_text

    return [len(completion_text(c).split()) / 4.0 for c in completions]


def load_recipe(name):
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def common(output_dir):
    return ["--output_dir", str(output_dir), "--max_steps", "2", "--save_steps", "1", "--save_total_limit", "3",
            "--disable_tqdm", "true", "--logging_steps", "1", "--seed", "0"]


def recipe_argv(name: str, output_dir: Path) -> tuple[str, list[str]]:
    """(recipe, its command line) of one cell, on tiny settings."""
    if name in ("grpo", "grpo_mgda"):
        extra = ["--pareto_method", "mgda", "--objectives", *MGDA_OBJECTIVES,
                 "--preference_weights", ""] if name == "grpo_mgda" else []
        return "grpo", [
            "--config", str(ROOT / "recipes/configs/grpo_tiny_cpu.yaml"), *common(output_dir), *extra,
            "--num_generations", "4", "--per_device_train_batch_size", "4", "--max_completion_length", "8",
            "--num_train_prompts", "16", "--num_eval_prompts", "4", "--eval_max_new_tokens", "8",
        ]
    if name in ("dpo_modpo", "dpo_mah"):
        # MODPO's margin objective is a head of the matrix's reward model (run before it): a frozen scorer loaded
        # inside the launch, which ZeRO-3 and FSDP must not partition
        config = (["--config", str(ROOT / "recipes/configs/dpo_mah_tiny_cpu.yaml")] if name == "dpo_mah" else
                  ["--objectives", "helpful", "harmless=rm:harmless",
                   "--preference_weights", "helpful=0.8,harmless=0.2",
                   "--reward_model_name_or_path", str(output_dir.parent / "rm")])
        return "dpo", [
            *config, *common(output_dir), "--num_train_rows", "16", "--num_eval_rows", "4",
            "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2",
        ]
    return "reward_model", [
        *common(output_dir), "--model_name_or_path", "tiny", "--heads", "helpful", "harmless",
        "--pairwise_train_files", "helpful=hh-helpful[:16]", "harmless=hh-harmless[:16]",
        "--pairwise_eval_files", "helpful=hh-helpful-dev[:4]", "--rated_train_files", "", "--rated_eval_files", "",
        "--max_length", "48", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4",
        "--normalization_samples", "8", "--save_strategy", "steps",
        "--freeze_layers", "0",  # the tiny policy has 2 layers
    ]


def run(name: str, output_dir: Path):
    """Run one recipe's `main` on tiny settings; returns its trainer."""
    recipe_name, argv = recipe_argv(name, output_dir)
    recipe = load_recipe(recipe_name)
    if name != "grpo_mgda":
        return recipe.main(*recipe.parse_args(argv))
    with recording_mgda_batches(output_dir / MGDA_BATCHES):
        return recipe.main(*recipe.parse_args(argv))


@contextlib.contextmanager
def recording_mgda_batches(folder: Path):
    """Test-only: every process writes the batch each MGDA training step took its per-objective gradients on
    (`step<N>_rank<R>.safetensors`: the tensors TRL's loss reads, with `objective_advantages`), so that the test
    can recompute the step's min-norm weights in one process on the same global batch."""
    from alignment.trainers.mgda_grpo import MGDAGRPOTrainer

    original = MGDAGRPOTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training and torch.is_grad_enabled():
            folder.mkdir(parents=True, exist_ok=True)
            tensors = {k: v.detach().cpu().contiguous() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
            unset = sorted(k for k, v in inputs.items() if v is None)
            others = sorted(set(inputs) - set(tensors) - set(unset))
            assert not others, f"MGDA batch entries that are neither tensors nor None: {others}"
            path = folder / f"step{self.state.global_step + 1}_rank{self.accelerator.process_index}.safetensors"
            assert not path.exists(), f"{path.name}: a second micro-batch in one step; the test replays one per step"
            save_file(tensors, str(path), metadata={"unset": json.dumps(unset)})
        return original(self, model, inputs, *args, **kwargs)

    MGDAGRPOTrainer.compute_loss = compute_loss
    try:
        yield
    finally:
        MGDAGRPOTrainer.compute_loss = original


@torch.no_grad()
def in_memory_outputs(name: str, trainer) -> dict[str, torch.Tensor]:
    """Outputs of the trained model as the backend holds it; every rank calls this (ZeRO-3 and FSDP forwards are
    collective)."""
    tokenizer = trainer.processing_class
    batch = tokenizer(PROBE_TEXTS, return_tensors="pt", padding=True).to(trainer.accelerator.device)
    model = trainer.model_wrapped
    was_training = model.training
    model.eval()
    try:
        outputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                   "logits": model(**batch).logits.float()}
        if name == "dpo_mah":  # every head's log-probs of the probe texts
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            for head in range(len(trainer.objective_names)):
                head_ids = torch.full((len(PROBE_TEXTS),), head, device=labels.device)
                outputs[f"head_{head}_log_probs"] = model(**batch, labels=labels, head_ids=head_ids).log_probs
    finally:
        model.train(was_training)
    return {k: v.detach().cpu().contiguous() for k, v in outputs.items()}


def backend_of(trainer) -> dict:
    """What the trainer actually ran under (a launch config can be silently overridden, e.g. by use_cpu)."""
    accelerator = trainer.accelerator
    deepspeed_plugin, fsdp_plugin = accelerator.state.deepspeed_plugin, getattr(accelerator.state, "fsdp_plugin", None)
    return {"distributed_type": str(accelerator.distributed_type), "num_processes": accelerator.num_processes,
            "zero_stage": deepspeed_plugin.zero_stage if deepspeed_plugin else None,
            "fsdp_version": fsdp_plugin.fsdp_version if fsdp_plugin else None,
            "wrapped": type(trainer.model_wrapped).__name__}


def roll_back_to_checkpoint_1(output_dir: Path) -> None:
    for path in output_dir.iterdir():
        if path.name != "checkpoint-1":
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def let_accelerate_run_fsdp_on_cpu() -> None:
    """Test-only: accelerate (1.15) builds FSDP only on a GPU-class backend, while torch's FSDP2 itself runs on CPU
    over gloo. To exercise the recipes' FSDP2 paths (DTensor-sharded parameters, meta-device loading, full state
    dict gathered on save) on a CPU-only CI, present gloo-on-CPU to accelerate as such a backend."""
    from accelerate.state import PartialState as State
    from accelerate.utils import DistributedType

    def prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
        return "gloo", DistributedType.MULTI_GPU

    def set_device(self):
        if self.device is None:
            self.device = torch.device("cpu")

    State._prepare_backend, State.set_device = prepare_backend, set_device


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output_root", type=Path)
    parser.add_argument("--only", default=",".join(RECIPES), help="comma-separated recipes to run")
    parser.add_argument("--resume", default="", help="comma-separated recipes whose resume is checked too")
    parser.add_argument("--fsdp_on_cpu", action="store_true", help="see let_accelerate_run_fsdp_on_cpu")
    args = parser.parse_args()
    if args.fsdp_on_cpu:
        let_accelerate_run_fsdp_on_cpu()
    state = PartialState()
    resume = {r for r in args.resume.split(",") if r}
    for name in [r for r in args.only.split(",") if r]:
        output_dir = args.output_root / name
        started = time.perf_counter()
        trainer = run(name, output_dir)
        outputs = in_memory_outputs(name, trainer)
        if state.is_main_process:
            save_file(outputs, str(output_dir / "in_memory_outputs.safetensors"))
        if name in resume:
            kept = outputs
            state.wait_for_everyone()
            if state.is_main_process:
                roll_back_to_checkpoint_1(output_dir)
                saved_at = (output_dir / "checkpoint-1" / "trainer_state.json").stat().st_mtime_ns
            state.wait_for_everyone()
            trainer = run(name, output_dir)
            outputs = in_memory_outputs(name, trainer)
            if state.is_main_process:
                assert (output_dir / "checkpoint-1" / "trainer_state.json").stat().st_mtime_ns == saved_at, \
                    f"{name}: checkpoint-1 was rewritten: the rerun started over instead of resuming"
                history = json.loads((output_dir / "checkpoint-2" / "trainer_state.json").read_text())
                assert history["global_step"] == 2
                save_file(outputs, str(output_dir / "in_memory_outputs.safetensors"))
                (output_dir / "resumed.json").write_text(json.dumps({
                    "resumed_from": "checkpoint-1",
                    "max_abs_logit_change_vs_uninterrupted": (outputs["logits"] - kept["logits"]).abs().max().item(),
                }))
        if state.is_main_process:
            (output_dir / "backend.json").write_text(json.dumps(backend_of(trainer)))
            print(f"MATRIX CELL {name}: {time.perf_counter() - started:.1f} s", flush=True)
        state.wait_for_everyone()
        del trainer
    if state.is_main_process:
        print("MATRIX WORKER DONE", flush=True)


if __name__ == "__main__":
    sys.exit(main())
