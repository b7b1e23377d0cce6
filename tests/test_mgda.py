"""MGDA's min-norm weights (alignment.pareto.min_norm_weights) against hand-computed cases, and the MGDA trainer."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from alignment import min_norm_weights


def gram(*gradients):
    g = np.array(gradients, dtype=float)
    return g @ g.T


def test_two_objective_closed_form_matches_the_hand_computation():
    # g1 = (1, 0), g2 = (0, 2): alpha = ((g2 - g1) . g2) / ||g1 - g2||^2 = 4 / 5
    assert min_norm_weights(gram([1, 0], [0, 2])) == pytest.approx([0.8, 0.2])


def test_two_objective_closed_form_clips_to_the_simplex():
    # g2 = 2 g1: the shorter one alone is the min-norm point, alpha = clip((4 - 2) / 1, 0, 1) = 1
    assert min_norm_weights(gram([1, 0], [2, 0])) == pytest.approx([1.0, 0.0])


def test_opposed_gradients_cancel_to_zero():
    alpha = min_norm_weights(gram([1, 0], [-1, 0]))
    assert alpha == pytest.approx([0.5, 0.5])


def test_identical_gradients_give_uniform_weights():
    assert min_norm_weights(gram([1, 2], [1, 2])) == pytest.approx([0.5, 0.5])
    assert min_norm_weights(gram([1, 2], [1, 2], [1, 2])) == pytest.approx([1 / 3] * 3)


def test_frank_wolfe_finds_the_min_norm_point_with_a_redundant_objective():
    # (1, 0), (0, 1), (1, 1): the min-norm point (0.5, 0.5) needs no weight on the third
    assert min_norm_weights(gram([1, 0], [0, 1], [1, 1])) == pytest.approx([0.5, 0.5, 0.0], abs=1e-6)
    # orthonormal gradients: the centroid
    assert min_norm_weights(np.eye(3)) == pytest.approx([1 / 3] * 3, abs=1e-6)


def test_frank_wolfe_agrees_with_a_generic_qp_solver_on_random_gradients():
    rng = np.random.default_rng(0)
    for _ in range(5):
        g = rng.normal(size=(4, 6))
        alpha = min_norm_weights(g @ g.T)
        assert alpha.min() >= 0 and alpha.sum() == pytest.approx(1.0)
        reference = minimize(lambda a: a @ g @ g.T @ a, np.full(4, 0.25), bounds=[(0, 1)] * 4,
                             constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1}], tol=1e-12)
        assert alpha @ g @ g.T @ alpha <= reference.fun + 1e-6


def test_bad_gram_matrices_are_rejected():
    with pytest.raises(ValueError, match="square"):
        min_norm_weights(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        min_norm_weights(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="symmetric"):
        min_norm_weights(np.array([[1.0, 2.0], [0.0, 1.0]]))


@pytest.mark.slow
def test_mgda_trainer_steps_along_the_min_norm_combination_and_logs_its_weights(tiny_policy_path, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment.data.prompts import load_prompt_dataset
    from alignment.trainers.grpo import MultiObjectiveGRPOConfig
    from alignment.trainers.mgda_grpo import MGDAGRPOTrainer
    from tests.test_grpo_trainer import PROMPTS

    args = MultiObjectiveGRPOConfig(
        output_dir=str(tmp_path), objectives=["conciseness", "sentiment"], num_generations=8,
        per_device_train_batch_size=16, max_completion_length=16, max_steps=2, learning_rate=1e-3,
        use_cpu=True, gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none",
        seed=0, disable_tqdm=True, bf16=False,
        max_grad_norm=1e9,  # no clipping: the logged norm is the raw combined gradient
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = MGDAGRPOTrainer(model=model, args=args, processing_class=AutoTokenizer.from_pretrained(tiny_policy_path),
                              train_dataset=load_prompt_dataset(PROMPTS, limit=64))
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "mgda/weight/conciseness" in entry]
    assert len(steps) == 2
    for entry in steps:
        weights = [entry["mgda/weight/conciseness"], entry["mgda/weight/sentiment"]]
        assert min(weights) >= 0 and sum(weights) == pytest.approx(1.0, abs=1e-5)
        # the gradient the optimizer saw is exactly the min-norm combination
        assert entry["grad_norm"] == pytest.approx(entry["mgda/combined_grad_norm"], rel=1e-4)
        assert "rewards/conciseness/mean" in entry
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    trainer.save_model(str(tmp_path / "final"))
    assert '"pareto_method": "mgda"' in (tmp_path / "final" / "objectives.json").read_text()
    card = (tmp_path / "final" / "README.md").read_text()  # the card says what was optimized, not fixed weights
    assert "Update: MGDA (`pareto_method: mgda`)" in card and "weights were not used" in card
    assert "Fixed preference weights" not in card


# Per-objective gradients of a linear model on 3 squared-error objectives; rows 0::2 on one process, 1::2 on the
# other (equal halves, so the mean of the two halves' mean-loss gradients is the full batch's).
_MGDA_RANK = """
import sys, torch, torch.distributed as dist
from safetensors.torch import save_file
from alignment.pareto import mgda_combination
rank, out = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", rank=rank, world_size=2)
torch.manual_seed(1)
x, y, w = torch.randn(16, 5), torch.randn(16, 3), torch.randn(5)
x, y = x[rank::2], y[rank::2]
gradients = torch.stack([torch.autograd.grad(((x @ w.requires_grad_() - y[:, k]) ** 2).mean(), w)[0] for k in range(3)])
alpha, direction = mgda_combination(gradients)
save_file({"alpha": alpha, "direction": direction, "local": gradients}, f"{out}/rank{rank}.safetensors")
dist.destroy_process_group()
"""


@pytest.mark.distributed
def test_two_process_mgda_solves_the_full_batch_problem(tmp_path):
    """Under DDP each objective's gradient is averaged over the processes before the min-norm solve: two processes
    get the weights and direction of one process on the concatenated batch, and agree with each other."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from alignment.pareto import mgda_combination

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29500 + os.getpid() % 1000),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ranks = [subprocess.Popen([sys.executable, "-c", _MGDA_RANK, str(r), str(tmp_path)], env=env, cwd=root,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    for process in ranks:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    results = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]

    torch.manual_seed(1)  # a case with an interior solution that neither half alone finds
    x, y, w = torch.randn(16, 5), torch.randn(16, 3), torch.randn(5)
    full = torch.stack([torch.autograd.grad(((x @ w.requires_grad_() - y[:, k]) ** 2).mean(), w)[0] for k in range(3)])
    alpha, direction = mgda_combination(full)  # one process, the whole batch
    assert 0.05 < alpha.max() < 0.95
    for result in results:
        torch.testing.assert_close(result["alpha"], alpha, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(result["direction"], direction, atol=1e-5, rtol=1e-5)
    # the test can fail: each half alone gives other weights than the full batch
    for result in results:
        local_alpha, _ = mgda_combination(result["local"])
        assert (local_alpha - alpha).abs().max() > 0.05
