"""Every recipe under every launch backend on 2 CPU processes, as a user launches them (the project's own
accelerate_configs, `--num_processes 2 --mixed_precision no`).

One `accelerate launch` per backend runs every recipe in turn (tests/recipe_matrix_worker.py: 2 steps each, a
checkpoint per step, one shared tiny model), so the matrix costs 4 process starts, not 17. Each cell asserts:
- the run really ran under the backend (a config can be silently overridden: `use_cpu` turned FSDP into DDP);
- the final checkpoint and the intermediate checkpoint-1 are whole: plain safetensors that `from_pretrained` loads
  with no missing or unexpected keys (ZeRO-3 shards gathered on save);
- the checkpoint loaded in plain transformers gives the in-memory model's outputs (logits; every head of the
  multi-head policy; every head of the reward model);
- in the cells named in RESUME, a rerun after a kill right after checkpoint-1 resumes it (checkpoint-1 is not
  rewritten) and finishes at step 2.
The DDP column also runs MGDA (its per-objective gradients all-reduced; test_mgda.py checks the math): the weights it
logged at each step must be those this test process computes alone from the same global batch (both processes'
recorded batches) at the same parameters.

FSDP2 on CPU: torch's FSDP2 runs over gloo, but accelerate 1.15 builds FSDP only on a GPU-class backend (a user's CPU
FSDP launch is refused, test_fsdp_launch_that_accelerate_would_not_run_as_fsdp_is_refused); on a machine without
GPUs the FSDP column runs with the worker's test-only `--fsdp_on_cpu`, which presents gloo-on-CPU to accelerate as
such a backend, so the recipes' FSDP2 code paths (sharded DTensor parameters, meta-device loading on every process
but the first, full state dict gathered on save, sharded resume) run for real.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.helpers import run_process

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
# backend: (config, recipes, recipes whose resume is checked, distributed type, ZeRO stage, FSDP version)
RECIPES = "rm,grpo,dpo_modpo,dpo_mah"  # rm first: its checkpoint scores MODPO's margin objective
BACKENDS = {
    "ddp": ("cpu_2proc.yaml", RECIPES + ",grpo_mgda", "rm", "MULTI_CPU", None, None),
    "zero2": ("zero2.yaml", RECIPES, "dpo_mah", "DEEPSPEED", 2, None),
    "zero3": ("zero3.yaml", RECIPES, "dpo_modpo", "DEEPSPEED", 3, None),
    "fsdp2": ("fsdp.yaml", RECIPES, "grpo", "FSDP", None, 2),
}
FRESH_CACHE = ("ddp", "zero3")  # backends launched with an empty user cache


# MGDA under DDP averages each objective's gradient over the 2 processes before its min-norm solve, so its weights are
# those of one process on the global batch, up to float32 summation order (measured at both steps: identical weights,
# the combined gradient's norm within 7e-8 relative). Solving on process 0's half alone (no all-reduce) moves them by
# 0.084 and 0.154; an all-reduce that sums instead of averaging leaves the weights and doubles the norm.
MGDA_WEIGHTS_TOLERANCE = 1e-4


def launch(config: str, *args, timeout=900, env=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"accelerate_configs/{config}",
               "--num_processes", "2", "--mixed_precision", "no", *args]
    return run_process(command, timeout, cwd=ROOT, env=env or ENV)


def load_whole(auto_class, path: Path):
    """from_pretrained from safetensors, failing on any missing or unexpected weight (a partial ZeRO-3 save)."""
    model, info = auto_class.from_pretrained(path, use_safetensors=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], (path, info)
    return model.eval()


@torch.no_grad()
def check_checkpoint_matches_memory(name: str, output_dir: Path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from alignment.models.multi_head import load_multi_head_model

    memory = load_file(output_dir / "in_memory_outputs.safetensors")
    batch = {"input_ids": memory["input_ids"], "attention_mask": memory["attention_mask"]}
    auto_class = AutoModelForSequenceClassification if name == "rm" else AutoModelForCausalLM
    for checkpoint in (output_dir / "checkpoint-1", output_dir):
        load_whole(auto_class, checkpoint)
    loaded = load_whole(auto_class, output_dir)
    torch.testing.assert_close(loaded(**batch).logits.float(), memory["logits"], atol=1e-5, rtol=1e-5)
    if name == "rm":
        assert list(loaded.config.id2label.values()) == ["helpful", "harmless"]
    if name == "dpo_mah":  # every head, restored from lm_heads.safetensors
        heads = load_multi_head_model(output_dir).eval()
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        for head in range(2):
            head_ids = torch.full((len(labels),), head)
            log_probs = heads(**batch, labels=labels, head_ids=head_ids).log_probs
            torch.testing.assert_close(log_probs, memory[f"head_{head}_log_probs"], atol=1e-5, rtol=1e-5)
        # the heads were trained apart: a checkpoint that saved one head twice would pass the loop above alone
        assert not torch.allclose(memory["head_0_log_probs"], memory["head_1_log_probs"])


def recorded_batch(path: Path) -> dict:
    """A batch as `recording_mgda_batches` wrote it: its tensors, and its entries that were None."""
    with safe_open(str(path), "pt") as handle:
        unset = json.loads(handle.metadata()["unset"])
        return {**dict.fromkeys(unset), **{key: handle.get_tensor(key) for key in handle.keys()}}


def mgda_gradients(trainer, batches: list[dict]) -> torch.Tensor:
    """[K, D] each objective's gradient of TRL's GRPO loss on the union of `batches` (one process: no all-reduce).
    The loss (dapo) is a sum over tokens divided by the global token count, so summing the batches' losses, each
    kept with its own padding, is the loss of the whole global batch."""
    parameters = [p for p in trainer.model.parameters() if p.requires_grad]
    gradients = []
    for k in range(len(trainer.objective_names)):
        loss = sum(trainer._compute_loss(trainer.model, {**batch, "advantages": batch["objective_advantages"][:, k]})
                   for batch in batches)
        gradients.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in
                                    zip(parameters, torch.autograd.grad(loss, parameters, allow_unused=True))]))
    return torch.stack(gradients)


def one_process_mgda_weights(output_dir: Path, scratch: Path) -> dict[int, dict]:
    """Per step of the 2-process MGDA run in `output_dir`: the weights it logged, and the weights this one process
    computes from the same global batch (the batches both processes recorded, `recording_mgda_batches`) at the same
    parameters (the initial policy, then checkpoint-1), with the same trainer settings; also the weights that
    process 0's half of the batch alone gives (what MGDA would solve without its all-reduce). With the norms of the
    combined direction, logged and recomputed."""
    from alignment.data import resolve_data
    from alignment.data.prompts import load_prompt_dataset
    from alignment.models.policy import load_policy
    from alignment.pareto import mgda_combination
    from alignment.trainers.mgda_grpo import MGDAGRPOTrainer
    from tests.helpers import load_recipe
    from tests.recipe_matrix_worker import MGDA_BATCHES, recipe_argv

    script_args, args, model_args = load_recipe("grpo").parse_args(
        [*recipe_argv("grpo_mgda", scratch)[1], "--per_device_train_batch_size", "8"])  # the global batch, 1 process
    model, tokenizer = load_policy(model_args, args.trust_remote_code)
    prompts = load_prompt_dataset(resolve_data(script_args.data_source().train), script_args.prompt_field)
    trainer = MGDAGRPOTrainer(model=model, args=args, processing_class=tokenizer,
                              train_dataset=prompts.select(range(8)))
    assert args.loss_type == "dapo", args.loss_type  # what mgda_gradients' sum of the batches' losses relies on
    trainer.current_gradient_accumulation_steps = 1  # what Trainer.train sets: one micro-batch per step
    trainer.model.train()
    names = trainer.objective_names
    history = json.loads((output_dir / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    logged = {entry["step"]: entry for entry in history if f"mgda/weight/{names[0]}" in entry}
    assert sorted(logged) == [1, 2], logged
    result = {}
    for step in (1, 2):
        if step > 1:  # the parameters this step started from: the previous step's checkpoint
            trainer.model.load_state_dict(load_whole(type(model), output_dir / f"checkpoint-{step - 1}").state_dict())
            trainer.model.train()
        batches = [recorded_batch(output_dir / MGDA_BATCHES / f"step{step}_rank{r}.safetensors") for r in range(2)]
        alpha, direction = mgda_combination(mgda_gradients(trainer, batches))
        result[step] = {"logged": [logged[step][f"mgda/weight/{name}"] for name in names],
                        "logged_norm": logged[step]["mgda/combined_grad_norm"],
                        "one_process": alpha.tolist(), "one_process_norm": direction.norm().item(),
                        "process_0_alone": mgda_combination(mgda_gradients(trainer, batches[:1]))[0].tolist()}
    return result


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_recipe_trains_saves_whole_checkpoints_and_resumes(backend, tmp_path):
    config, recipes, resume, distributed_type, zero_stage, fsdp_version = BACKENDS[backend]
    on_cpu = ["--fsdp_on_cpu"] if fsdp_version and not torch.cuda.is_available() else []
    # Under DDP and ZeRO-3 the packaged tiny policy is not cached yet: one rank builds it while the other waits on
    # the cache's lock (under ZeRO-3 a build inside zero.Init used to hang both ranks forever).
    env = {**ENV, "MOALIGN_CACHE": str(tmp_path / "fresh-cache")} if backend in FRESH_CACHE else ENV
    result = launch(config, "tests/recipe_matrix_worker.py", str(tmp_path), "--only", recipes, "--resume", resume,
                    *on_cpu, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for name in recipes.split(","):
        output_dir = tmp_path / name
        ran_under = json.loads((output_dir / "backend.json").read_text())
        assert ran_under["distributed_type"] == f"DistributedType.{distributed_type}", (name, ran_under)
        assert ran_under["num_processes"] == 2 and ran_under["zero_stage"] == zero_stage, (name, ran_under)
        assert ran_under["fsdp_version"] == fsdp_version, (name, ran_under)
        assert not list(output_dir.glob("*.bin")) and not list(output_dir.rglob("*.pkl"))  # weights: safetensors
        # inside checkpoints, only the resume state accelerate writes under FSDP (read back with weights_only=True)
        assert {p.name for p in output_dir.glob("checkpoint-*/*.bin")} <= {"pytorch_model_fsdp.bin", "optimizer.bin"}
        check_checkpoint_matches_memory(name, output_dir)
        assert (output_dir / "resumed.json").exists() == (name in resume.split(","))
        if name in resume.split(","):  # checkpoint-1 restored weights, optimizer, data position and RNG exactly
            resumed = json.loads((output_dir / "resumed.json").read_text())
            assert resumed["max_abs_logit_change_vs_uninterrupted"] <= 1e-5, (name, resumed)
    if backend == "ddp":  # MGDA's min-norm weights, solved on the all-reduced gradients, were logged every step
        for step, mgda in one_process_mgda_weights(tmp_path / "grpo_mgda", tmp_path / "one_process").items():
            assert mgda["logged"] == pytest.approx(mgda["one_process"], abs=MGDA_WEIGHTS_TOLERANCE), (step, mgda)
            assert mgda["logged_norm"] == pytest.approx(mgda["one_process_norm"], rel=1e-4), (step, mgda)
            # the check can fail: one process's half of the batch alone gives other weights
            assert max(abs(a - b) for a, b in zip(mgda["process_0_alone"], mgda["one_process"])) > \
                10 * MGDA_WEIGHTS_TOLERANCE, ("the MGDA cell's data no longer tells the global batch from a half", mgda)


def test_fsdp_launch_that_accelerate_would_not_run_as_fsdp_is_refused(monkeypatch):
    """accelerate runs FSDP only on GPU-class backends; on CPU an FSDP launch used to train silently as DDP (use_cpu)
    or as independent single-process runs writing one folder. The recipes' parser stops it, saying why."""
    from accelerate import PartialState

    from alignment.cli import check_fsdp_launch

    assert PartialState().distributed_type.value in ("NO", "MULTI_CPU")  # a plain pytest process
    check_fsdp_launch()  # not an FSDP launch: nothing to say
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ValueError, match="accelerate runs FSDP only on GPUs"):
        check_fsdp_launch()


def test_a_hung_launch_fails_with_the_stacks_of_its_processes():
    with pytest.raises(AssertionError, match=r"(?s)still running after 2 s.*in wait_forever"):
        run_process([sys.executable, "-c", "import time\ndef wait_forever():\n    time.sleep(60)\nwait_forever()"], 2)
