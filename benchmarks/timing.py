"""Timing helpers shared by the benchmarks (run as `python benchmarks/<name>.py`, which puts this folder on the
path)."""

import time

import torch
from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Seconds of each optimizer step, appended to `times`: wall clock, or with `clock=time.process_time` the CPU
    time of this process (all its threads), which other jobs on a shared machine do not inflate."""

    def __init__(self, clock=time.perf_counter):
        self.times, self._start, self.clock = [], None, clock

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(self.clock() - self._start)


def timed(fn, device: str, clock=time.perf_counter) -> float:
    """Seconds `fn()` takes on `clock` (wall by default; `time.process_time` for this process's CPU time), with CUDA
    synchronized on both sides so queued kernels are counted."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = clock()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return clock() - start
