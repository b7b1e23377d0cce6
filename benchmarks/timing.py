"""Timing helpers shared by the benchmarks (run as `python benchmarks/<name>.py`, which puts this folder on the path)."""

import time

import torch
from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall-clock seconds of each optimizer step, appended to `times`."""

    def __init__(self):
        self.times, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def timed(fn, device: str) -> float:
    """Seconds `fn()` takes, with CUDA synchronized on both sides so queued kernels are counted."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start
