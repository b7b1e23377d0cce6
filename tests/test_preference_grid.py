"""The preference grid: weights snapped to the simplex grid, and the preference adapter at a grid point exported as an
ordinary LoRA that gives the adapter's outputs exactly (what vLLM serves; tests/test_vllm.py runs it on vLLM)."""

import itertools

import pytest
import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.models.preference_adapter import preference_weights
from alignment.models.preference_grid import grid_key, grid_size, grid_steps, save_lora_at, snap_to_grid
from tests.helpers import random_preference_adapter

NAMES = ["conciseness", "sentiment", "profanity_free"]


def all_grid_points(num_objectives, steps):
    return torch.tensor([c for c in itertools.product(range(steps + 1), repeat=num_objectives)
                         if sum(c) == steps], dtype=torch.float64) / steps


def test_grid_steps_and_size():
    assert grid_steps(0.1) == 10 and grid_steps(0.25) == 4 and grid_steps(1.0) == 1
    assert grid_size(2, 0.1) == 11 and grid_size(3, 0.1) == 66 == len(all_grid_points(3, 10))
    for bad in (0.3, 0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="preference_grid"):
            grid_steps(bad)


def test_snapping_gives_the_nearest_grid_point():
    weights = torch.distributions.Dirichlet(torch.ones(3)).sample((200,)).double()
    snapped = snap_to_grid(weights, 0.1)
    points = all_grid_points(3, 10)
    nearest = points[torch.cdist(weights, points, p=1).argmin(dim=1)]
    assert torch.allclose(snapped.sum(dim=1), torch.ones(200, dtype=torch.float64))
    # the same L1 distance as the nearest grid point (ties may pick another point at that distance)
    assert torch.allclose((snapped - weights).abs().sum(1), (nearest - weights).abs().sum(1), atol=1e-9)
    assert torch.equal(snap_to_grid(points, 0.1), points)  # grid points stay put
    assert snap_to_grid(torch.tensor([0.74, 0.26]), 0.25).tolist() == [0.75, 0.25]
    assert grid_key(torch.tensor([0.7, 0.3]), 0.1) == (7, 3)


@pytest.fixture
def adapted(tiny_policy_path, one_thread):
    return random_preference_adapter(tiny_policy_path, NAMES)


def test_the_lora_exported_at_a_grid_point_is_the_adapter_at_that_point(adapted, tiny_policy_path, tmp_path):
    tokens = torch.randint(10, 1000, (2, 9), generator=torch.Generator().manual_seed(1))
    point = torch.tensor([0.2, 0.5, 0.3])
    with torch.no_grad(), preference_weights(adapted, point):
        expected = adapted(tokens).logits
    with torch.no_grad(), adapted.disable_adapter():
        base = adapted(tokens).logits
    lora = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_policy_path),
                                     str(save_lora_at(adapted, point, tmp_path / "point"))).eval()
    zero = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_policy_path),
                                     str(save_lora_at(adapted, None, tmp_path / "zero"))).eval()
    with torch.no_grad():
        assert torch.allclose(lora(tokens).logits, expected, atol=1e-5)  # an ordinary peft LoRA, no custom layer
        assert torch.allclose(zero(tokens).logits, base, atol=1e-6)  # the base model as a LoRA
    assert (expected - base).abs().max() > 0.05  # the adapter changes the model: the match means something


def test_a_trainer_on_a_grid_trains_on_grid_points(tiny_policy_path, tmp_path):
    from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    args = MultiObjectiveGRPOConfig(output_dir=str(tmp_path), objectives=NAMES, weights_mode="dirichlet",
                                    conditioning="adapter", preference_grid=0.25, use_cpu=True, bf16=False,
                                    report_to="none", num_generations=2, per_device_train_batch_size=4)
    trainer = MultiObjectiveGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), args=args,
                                        train_dataset=Dataset.from_list([{"prompt": "hi"}]),
                                        processing_class=AutoTokenizer.from_pretrained(tiny_policy_path))
    weights = trainer.weights_for([f"prompt {i}" for i in range(50)])
    assert torch.equal(weights * 4, (weights * 4).round()) and torch.allclose(weights.sum(1), torch.ones(50))
    assert len({tuple(w) for w in weights.tolist()}) > 5  # still drawn per prompt
    assert trainer.objectives_record()["preference_grid"] == 0.25

