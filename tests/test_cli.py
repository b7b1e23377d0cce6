"""Recipe runtime settings: a CPU run uses the machine's cores, shared among its processes."""

import os
from types import SimpleNamespace

import torch

from alignment.cli import use_cpu_cores


def test_a_cpu_run_uses_every_core_split_among_local_processes(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("MOALIGN_CPU_THREADS", raising=False)
    torch.set_num_threads(1)  # what accelerate launch leaves a CPU-only script (OMP_NUM_THREADS=1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    use_cpu_cores(SimpleNamespace(use_cpu=True))
    assert torch.get_num_threads() == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))
    use_cpu_cores(SimpleNamespace(use_cpu=True))
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("MOALIGN_CPU_THREADS", "3")
    use_cpu_cores(SimpleNamespace(use_cpu=True))
    assert torch.get_num_threads() == 3
    torch.set_num_threads(2)
    use_cpu_cores(SimpleNamespace(use_cpu=False))  # a GPU run leaves the CPU threads alone
    assert torch.get_num_threads() == 2
