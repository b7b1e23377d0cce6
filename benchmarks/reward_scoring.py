"""Scoring K aspects: one K-head reward model vs K single-head reward models (one per objective, as TRL users do).

Same backbone, same texts, same batch size; both sides score every text on every aspect. For K = 2..5 it prints
throughput (aspect scores per second) and peak memory of both, then their ratios; the last line holds the ratios.
Goal: throughput ratio >= 0.9 K (one forward pass instead of K), peak memory ratio near K (one backbone, not K).

    python benchmarks/reward_scoring.py                          # CPU: packaged all-MiniLM-L6-v2, 64 HH texts
    python benchmarks/reward_scoring.py --backbone Qwen/Qwen2.5-0.5B-Instruct --texts 256 --max_length 512  # GPU

Peak memory: on CUDA, `torch.cuda.max_memory_allocated` around each side in this process. On CPU there is no
allocator counter, so each side is measured in a fresh child process (this script with --measure_memory) as the
growth of its peak resident set size (VmHWM, reset after imports) over its baseline: in-process RSS
never shrinks back, so the two sides cannot share a process.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from alignment.data import resolve_data  # noqa: E402
from alignment.data.jsonl import iter_jsonl  # noqa: E402
from alignment.models.packaged import PACKAGED_MINILM  # noqa: E402
from reward_models.chat_format import parse_hh_dialogue, render_conversation  # noqa: E402
from reward_models.modeling import build_reward_model, load_reward_tokenizer  # noqa: E402
from reward_models.scoring import score_texts  # noqa: E402


def hh_texts(tokenizer, count: int, name: str) -> list[str]:
    rows = [row for _, row in iter_jsonl(resolve_data(name))][:count]
    return [render_conversation(tokenizer, parse_hh_dialogue(row["chosen"])) for row in rows]


def load_models(args, tokenizer, num_aspects: int, side: str, device) -> list:
    """side 'multi': one model with K heads; side 'single': K models with one head each."""
    torch.manual_seed(0)
    if side == "multi":
        shapes = [[f"aspect_{k}" for k in range(num_aspects)]]
    else:
        shapes = [[f"aspect_{k}"] for k in range(num_aspects)]
    dtype = torch.bfloat16 if device.type == "cuda" else None
    return [build_reward_model(args.backbone, heads, tokenizer, dtype=dtype).to(device).eval() for heads in shapes]


def score_all(models, tokenizer, texts, args) -> torch.Tensor:
    """[N, K] scores: one forward per batch per model."""
    return torch.cat([score_texts(m, tokenizer, texts, batch_size=args.batch_size, max_length=args.max_length)
                      for m in models], dim=1)


def throughputs(sides: dict[str, list], num_aspects: int, tokenizer, texts, args, device) -> dict[str, float]:
    """Aspect scores per second of each side, best of `--repeats` passes after a warm-up pass.

    The sides take turns within each repeat, so a burst of load from other processes hits both alike.
    """
    for models in sides.values():
        score_all(models, tokenizer, texts[: args.batch_size], args)
    best = {side: float("inf") for side in sides}
    for _ in range(args.repeats):
        for side, models in sides.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            score_all(models, tokenizer, texts, args)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[side] = min(best[side], time.perf_counter() - start)
    return {side: len(texts) * num_aspects / seconds for side, seconds in best.items()}


def rss_mb(field: str) -> float:
    """VmRSS (current) or VmHWM (peak) of this process, in MiB, from /proc/self/status."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def reset_peak_rss() -> None:
    """Make VmHWM restart from the current RSS (Linux >= 4.0), so import-time spikes do not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_memory_mb(args, tokenizer, texts, num_aspects: int, side: str, device) -> float:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        models = load_models(args, tokenizer, num_aspects, side, device)
        score_all(models, tokenizer, texts, args)
        peak = torch.cuda.max_memory_allocated() - baseline
        del models
        return peak / 2**20
    command = [sys.executable, __file__, "--measure_memory", side, "--num_aspects", str(num_aspects),
               "--backbone", args.backbone, "--data", args.data, "--texts", str(args.texts),
               "--batch_size", str(args.batch_size), "--max_length", str(args.max_length)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=PACKAGED_MINILM, help="Backbone of every reward model (name or path).")
    parser.add_argument("--data", default="hh-helpful-dev",
                        help="HH-RLHF pairs to score (a data name, alignment.data).")
    parser.add_argument("--texts", type=int, default=64, help="Number of HH-RLHF dev conversations scored.")
    parser.add_argument("--batch_size", type=int, default=32, help="Texts per forward pass.")
    parser.add_argument("--max_length", type=int, default=128, help="Tokens per text (left truncation).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes per side; the best counts.")
    parser.add_argument("--max_aspects", type=int, default=5, help="Largest K; K runs from 2 to this.")
    parser.add_argument("--measure_memory", choices=["multi", "single"], help=argparse.SUPPRESS)
    parser.add_argument("--num_aspects", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_reward_tokenizer(args.backbone)
    texts = hh_texts(tokenizer, args.texts, args.data)
    if args.measure_memory:  # child process of a CPU memory measurement: print the peak RSS growth in MiB
        reset_peak_rss()
        baseline = rss_mb("VmRSS")
        score_all(load_models(args, tokenizer, args.num_aspects, args.measure_memory, device), tokenizer, texts, args)
        print(rss_mb("VmHWM") - baseline)
        return

    print(f"backbone {args.backbone}, {len(texts)} texts, batch {args.batch_size}, max_length {args.max_length}, "
          f"{device}")
    ratios = []
    for num_aspects in range(2, args.max_aspects + 1):
        models = {side: load_models(args, tokenizer, num_aspects, side, device) for side in ("multi", "single")}
        sides = throughputs(models, num_aspects, tokenizer, texts, args, device)
        del models
        memory = {side: peak_memory_mb(args, tokenizer, texts, num_aspects, side, device)
                  for side in ("multi", "single")}
        throughput_ratio, memory_ratio = sides["multi"] / sides["single"], memory["single"] / memory["multi"]
        ratios.append((num_aspects, throughput_ratio, memory_ratio))
        print(f"K={num_aspects}: {num_aspects}-head {sides['multi']:8.1f} scores/s, {memory['multi']:7.1f} MiB peak | "
              f"{num_aspects} x 1-head {sides['single']:8.1f} scores/s, {memory['single']:7.1f} MiB peak | "
              f"throughput ratio {throughput_ratio:.2f} (goal >= {0.9 * num_aspects:.1f}), "
              f"memory ratio {memory_ratio:.2f}")
    print("ratio K-head / K single-head: " + "; ".join(
        f"K={k} throughput x{t:.2f} memory x{m:.2f}" for k, t, m in ratios))


if __name__ == "__main__":
    main()
