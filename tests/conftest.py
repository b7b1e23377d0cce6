"""Shared fixtures: the offline tiny policy (built once per machine, cached) and quiet, deterministic runs."""

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")


@pytest.fixture(scope="session")
def tiny_policy_path():
    """Path of the cached tiny chat policy (plain transformers checkpoint, ~0.6M parameters)."""
    from alignment.models.tiny_policy import build_tiny_policy

    return build_tiny_policy()


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Some tests pin torch to one thread to be quick on a shared machine; never let that leak into the next test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Torch on one thread: on a shared 2-core machine two threads are several times slower for a model this small."""
    torch.set_num_threads(1)  # restore_torch_threads puts the previous count back


@pytest.fixture(scope="module")
def one_thread_per_module():
    """`one_thread` for a whole module, its module-scoped fixtures (fine-tuning runs) included; restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_lora(tiny_policy_path):
    """make(seed): a LoRA adapter of the tiny policy with random low-rank updates (tests of exact combination and
    merging need adapters that change the model, not trained ones)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def make(seed: int):
        torch.manual_seed(seed)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_policy_path),
                               LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_alpha=8))
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.2)
        return model

    return make
