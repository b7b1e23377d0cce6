"""Cache builds under a distributed launch (alignment/cache.py): a build runs outside DeepSpeed's ZeRO-3 model init
(whose collectives the ranks waiting on the cache lock never join), and the rank that builds writes the model even
when it is not rank 0 (transformers writes models only on rank 0)."""

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import run_process

ROOT = Path(__file__).resolve().parent.parent


def test_a_build_runs_outside_zero3_model_init_and_puts_it_back(tmp_path):
    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled

    from alignment.cache import build_once

    registered = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_batch_size": 1})  # as a ZeRO-3 launch
    assert is_deepspeed_zero3_enabled()
    seen = []

    def build(staging: Path):
        seen.append(is_deepspeed_zero3_enabled())
        (staging / "config.json").write_text("{}")

    build_once(tmp_path / "built", build)
    assert seen == [False] and is_deepspeed_zero3_enabled()
    del registered


RANK = """
import os, sys, tempfile
import torch.distributed as dist
from transformers import AutoModelForCausalLM, Qwen2Config
from alignment.cache import save_model_from_any_process
rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
dist.init_process_group("gloo", rank=rank, world_size=2)
config = Qwen2Config(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                     intermediate_size=32)
if rank == 1:
    save_model_from_any_process(AutoModelForCausalLM.from_config(config), out)
dist.barrier()
dist.destroy_process_group()
"""


def test_the_model_a_build_saves_on_rank_1_is_written(tmp_path):
    python_path = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path}
    port = str(29700 + os.getpid() % 200)
    rank_0 = subprocess.Popen([sys.executable, "-c", RANK, "0", port, str(tmp_path)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = run_process([sys.executable, "-c", RANK, "1", port, str(tmp_path)], 120, env=env, cwd=ROOT)
    rank_0.wait(timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
