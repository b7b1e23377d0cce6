"""Generation on vLLM against HF `generate`, plain and steerable, in one process on the same prompts and lengths.

- plain: the model alone; HF `generate` against a vLLM engine.
- steerable: a preference adapter (rank 4, two objectives, random factors so that it changes the model) with two
  different weight vectors among the rows; HF: the adapter's own path (each row's lambda set on the adapter); vLLM:
  the grid path (each row's grid point served as a LoRA, `alignment.models.vllm_engine.GridLoRAs`, as the trainer does).
  Exporting and loading the LoRAs of a step is timed apart (the trainer pays it once per optimizer step).

Every reply is exactly `--max_new_tokens` long (EOS ignored), sampled at temperature 1, in fp32 by default (on CPU,
bf16 is several times slower without native bf16). Medians of `--repeats` timed calls after one warm-up call each.

    python benchmarks/vllm_generation.py                          # SmolLM2-135M-Instruct on CPU, 16 x 40 tokens
    python benchmarks/vllm_generation.py --device cuda --dtype bfloat16 --num_prompts 64

Needs the `vllm` extra (`bash scripts/setup.sh vllm` on CPU). Last line: the three ratios.
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alignment.data import resolve_data  # noqa: E402
from alignment.data.prompts import load_prompt_dataset  # noqa: E402
from alignment.models.packaged import resolve_model_path  # noqa: E402
from alignment.models.preference_adapter import add_preference_adapter, preference_weights  # noqa: E402
from alignment.models.vllm_engine import (  # noqa: E402
    GridLoRAs,
    adapter_rank,
    keep_torch_threads,
    lora_engine_kwargs,
    require_vllm,
    use_cpu_defaults,
)

from timing import timed  # noqa: E402


def median_seconds(fn, device, repeats):
    fn()  # warm-up
    return statistics.median(timed(fn, device) for _ in range(repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="packaged name, hub id or path")
    parser.add_argument("--num_prompts", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the HF runs (CPU)")
    parser.add_argument("--preference_grid", type=float, default=0.1)
    options = parser.parse_args()
    print(f"vLLM {require_vllm()}", flush=True)
    from vllm import LLM, SamplingParams  # optional: after the check that names the extra to install

    torch.set_num_threads(options.threads)
    dtype = getattr(torch, options.dtype)
    path = resolve_model_path(options.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    rows = [r["prompt"] for r in load_prompt_dataset(resolve_data("hh-prompts"))][:options.num_prompts]
    texts = [tokenizer.apply_chat_template(p if isinstance(p, list) else [{"role": "user", "content": p}],
                                           tokenize=False, add_generation_prompt=True) for p in rows]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(options.device)
    token_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    # two weight vectors among the rows, as two prompts' Dirichlet draws on the grid would be
    weights = torch.tensor([[0.7, 0.3] if i % 2 else [0.2, 0.8] for i in range(len(rows))])
    n = options.max_new_tokens

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(options.device).eval()
    hf_kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=True, temperature=1.0,
                     pad_token_id=tokenizer.pad_token_id)

    def hf_generate():
        with torch.no_grad():
            model.generate(**batch, **hf_kwargs)

    seconds = {"hf plain": median_seconds(hf_generate, options.device, options.repeats)}
    print(f"hf plain        {seconds['hf plain']:.2f} s", flush=True)
    model = add_preference_adapter(model, ["a", "b"], rank=4).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)

    def hf_steerable():
        with torch.no_grad(), preference_weights(model, weights.to(options.device)):
            model.generate(**batch, **hf_kwargs)

    seconds["hf steerable"] = median_seconds(hf_steerable, options.device, options.repeats)
    print(f"hf steerable    {seconds['hf steerable']:.2f} s", flush=True)

    use_cpu_defaults()
    sampling = SamplingParams(max_tokens=n, temperature=1.0, ignore_eos=True, seed=0)
    prompts = [{"prompt_token_ids": ids} for ids in token_ids]
    engine = dict(model=path, dtype=options.dtype, seed=0, max_model_len=1024)
    with keep_torch_threads():
        llm = LLM(**engine)
    seconds["vllm plain"] = median_seconds(lambda: llm.generate(prompts, sampling, use_tqdm=False), options.device,
                                           options.repeats)
    print(f"vllm plain      {seconds['vllm plain']:.2f} s", flush=True)
    del llm
    with keep_torch_threads():
        llm = LLM(**engine, **lora_engine_kwargs(adapter_rank(model), max_loras=2))
    loras = GridLoRAs(model.cpu(), options.preference_grid)

    def export_and_load():
        loras.refresh()
        return loras.requests(llm, weights)

    seconds["lora export"] = median_seconds(export_and_load, "cpu", options.repeats)
    requests = export_and_load()
    seconds["vllm steerable"] = median_seconds(
        lambda: llm.generate(prompts, sampling, lora_request=requests, use_tqdm=False), options.device,
        options.repeats)
    print(f"vllm steerable  {seconds['vllm steerable']:.2f} s  (+ {seconds['lora export']:.2f} s per step to "
          "export and load its 2 LoRAs)", flush=True)
    loras.close()
    print(f"{options.model}, {len(rows)} replies x {n} tokens, {options.dtype}, {options.device}; medians of "
          f"{options.repeats}")
    print(f"vllm/hf plain: {seconds['vllm plain'] / seconds['hf plain']:.2f}, "
          f"vllm/hf steerable: {seconds['vllm steerable'] / seconds['hf steerable']:.2f}, "
          f"steerable/plain on vllm: {seconds['vllm steerable'] / seconds['vllm plain']:.2f}")


if __name__ == "__main__":
    main()
