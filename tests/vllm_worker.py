"""One vLLM scenario per process (tests/test_vllm.py runs this file): a vLLM engine starts its own distributed state,
so each scenario gets a fresh process. Prints one JSON line of measurements, prefixed with RESULT.

    python tests/vllm_worker.py SCENARIO TINY_POLICY_PATH OUTPUT_DIR
"""

import contextlib
import json
import sys

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

NAMES = ["conciseness", "sentiment"]
PROMPTS = [{"prompt": [{"role": "user", "content": f"Tell me about topic {i}."}]} for i in range(8)]


def token_logps(model, prompt_ids, completion_ids, weights=None):
    """Per-token log-probabilities of `completion_ids` after `prompt_ids` under `model` (fp32, no grad), with the
    preference adapter at `weights` when given."""
    from alignment.models.preference_adapter import preference_weights

    full = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad(), preference_weights(model, weights) if weights is not None else contextlib.nullcontext():
        logits = model(full).logits[0, len(prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(completion_ids)[:, None])[:, 0]


def prompt_token_ids(tokenizer, messages) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def vllm_logps(output):
    """The sampled tokens and their log-probabilities from one vLLM RequestOutput."""
    sample = output.outputs[0]
    return list(sample.token_ids), torch.tensor([next(iter(lp.values())).logprob for lp in sample.logprobs])


def train(path, output_dir, conditioning, learning_rate):
    """2 GRPO steps with TRL's colocated vLLM; returns the trainer and how many engine generate calls it made."""
    from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    common = dict(output_dir=output_dir, objectives=NAMES, max_steps=2, learning_rate=learning_rate,
                  lr_scheduler_type="constant", use_cpu=True, bf16=False, gradient_checkpointing=False,
                  save_strategy="no", report_to="none", seed=0, disable_tqdm=True, num_generations=4,
                  per_device_train_batch_size=8, max_completion_length=12, beta=0.0, use_vllm=True,
                  vllm_mode="colocate", logging_steps=1)
    if conditioning == "none":
        args = MultiObjectiveGRPOConfig(weights_mode="fixed", preference_weights="conciseness=0.5,sentiment=0.5",
                                        **common)
    elif conditioning == "prompt":
        args = MultiObjectiveGRPOConfig(weights_mode="dirichlet", conditioning="prompt", **common)
    else:  # "adapter", or "adapter_base": the base's own weights trained too (pushed to the engine at each sync)
        base = dict(base_learning_rate=2e-3) if conditioning == "adapter_base" else {}
        args = MultiObjectiveGRPOConfig(weights_mode="dirichlet", conditioning="adapter", dirichlet_alpha="1.0",
                                        preference_adapter_rank=4, preference_grid=0.25, **base, **common)
    torch.manual_seed(0)
    trainer = MultiObjectiveGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args,
                                        train_dataset=Dataset.from_list(PROMPTS),
                                        processing_class=AutoTokenizer.from_pretrained(path))
    engine = trainer.vllm_generation.llm
    engine = getattr(engine, "_llm", engine)  # the engine itself under the grid's per-row proxy
    calls, generate = [], engine.generate

    def counting(*args, **kwargs):
        outputs = generate(*args, **kwargs)
        calls.append([list(o.outputs[0].token_ids) for o in outputs])
        return outputs

    engine.generate = counting
    hf_calls = []
    trainer.model.generate = lambda *a, **k: hf_calls.append(1)  # vLLM must do all the generating
    trainer.train()
    return trainer, {"engine_calls": len(calls), "hf_calls": len(hf_calls),
                     "rows_per_call": [len(c) for c in calls], "steps": trainer.state.global_step,
                     "trained_weights": [row.get("weights/conciseness") for row in trainer.state.log_history
                                         if "weights/conciseness" in row]}


def synced(path, output_dir, conditioning):
    """Train 2 steps on vLLM, push the trained weights (TRL's sync, or the grid's), sample from the engine and score
    its tokens with the trained and with the initial policy."""
    from vllm import SamplingParams

    from alignment.models.preference_adapter import preference_weights

    adapter = conditioning.startswith("adapter")
    learning_rate = 5e-3 if conditioning == "adapter_base" else 5e-2 if adapter else 5e-3
    trainer, result = train(path, output_dir, conditioning, learning_rate)
    tokenizer = trainer.processing_class
    prompt_ids = prompt_token_ids(tokenizer, PROMPTS[0]["prompt"])
    generation = trainer.vllm_generation
    generation.sync_weights()
    sampling = SamplingParams(max_tokens=10, temperature=1.0, logprobs=0, seed=0, ignore_eos=True)
    model = trainer.model.eval()
    initial = AutoModelForCausalLM.from_pretrained(path).eval()
    rows = [torch.tensor([1.0, 0.0]), torch.tensor([0.25, 0.75])] if adapter else [None]
    differences = {"trained": [], "trained_mean": [], "initial": [], "stale_base": []}
    if not adapter:
        outputs = generation.llm.generate([{"prompt_token_ids": prompt_ids}], sampling, use_tqdm=False)
    else:
        with preference_weights(model, torch.stack(rows)):  # one row per grid point, in one batch
            outputs = generation.llm.generate([{"prompt_token_ids": prompt_ids}] * 2, sampling, use_tqdm=False)
    for output, weights in zip(outputs, rows):
        tokens, engine = vllm_logps(output)
        trained = (engine - token_logps(model, prompt_ids, tokens, weights)).abs()
        differences["trained"].append(trained.max().item())
        differences["trained_mean"].append(trained.mean().item())
        differences["initial"].append((engine - token_logps(initial, prompt_ids, tokens)).abs().max().item())
    if conditioning == "adapter_base":  # the trained adapter on the initial base: what an unsynced engine would serve
        base = model.get_base_model()
        names = {k.replace(".base_layer.", "."): k for k in base.state_dict() if "lora_" not in k}
        base.load_state_dict({names[k]: v for k, v in initial.state_dict().items()}, strict=False)
        for output, weights in zip(outputs, rows):
            tokens, engine = vllm_logps(output)
            stale = token_logps(model, prompt_ids, tokens, weights)
            differences["stale_base"].append((engine - stale).abs().max().item())
    return {**result, **differences}


def random_adapter(path):
    """The tiny policy with a preference adapter whose factors are random (the tests are about serving it)."""
    from alignment.models.preference_adapter import add_preference_adapter

    torch.manual_seed(0)
    model = add_preference_adapter(AutoModelForCausalLM.from_pretrained(path), NAMES, rank=4).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.3)
            if "lora_preference_scale" in name:
                parameter.fill_(0.3)
    return model


def generate_cli(path, output_dir):
    """scripts/generate.py on a steerable checkpoint, greedy, with --engine vllm and with --engine hf, at opposite
    weights; and on the same adapter baked at one of them."""
    import contextlib
    import io
    from pathlib import Path

    from alignment.hub.publishing import build_folder, plan_publication
    from alignment.hub.record import build_record, save_record
    from alignment.models.preference_adapter import save_steerable_checkpoint
    from scripts.generate import main

    checkpoint = Path(output_dir) / "steerable"
    save_steerable_checkpoint(random_adapter(path), checkpoint, AutoTokenizer.from_pretrained(path))
    save_record(checkpoint, build_record(
        trainer="grpo", base_model=str(path), steering="adapter",
        objectives=[{"name": n, "source": f"builtin:{n}", "threshold": None} for n in NAMES],
        weight_distribution={"type": "dirichlet", "alpha": {n: 1.0 for n in NAMES}}))
    baked = build_folder(plan_publication(checkpoint), Path(output_dir) / "baked",
                         bake_weights="conciseness=0.9,sentiment=0.1")

    def run(*argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["--prompt", "Tell me about bread.", "--prompt", "Hi there", "--greedy", "--max_new_tokens", "10",
                  *argv])
        return [json.loads(line)["completion"] for line in out.getvalue().splitlines() if line.startswith("{")]

    replies = {}
    for weights in ("conciseness=0.9,sentiment=0.1", "conciseness=0.1,sentiment=0.9"):
        for engine in ("hf", "vllm"):
            replies[f"{engine} {weights}"] = run("--model", str(checkpoint), "--weights", weights, "--engine", engine)
    replies["vllm baked"] = run("--model", str(baked), "--weights", "conciseness=0.9,sentiment=0.1",
                                "--engine", "vllm")
    try:
        run("--model", str(baked), "--weights", "conciseness=0.1,sentiment=0.9", "--engine", "vllm")
        replies["baked at other weights"] = "served"
    except SystemExit as error:
        replies["baked at other weights"] = str(error)
    return replies


def grid_logits(path, output_dir):
    """A preference adapter with random factors served as grid LoRAs by an fp32 engine: two grid points and the base
    (its zero LoRA) in one batch, each row's log-probabilities against the training model's at that row's weights."""
    from vllm import LLM, SamplingParams

    from alignment.models.vllm_engine import GridLoRAs, adapter_rank, lora_engine_kwargs, use_cpu_defaults

    model = random_adapter(path)
    use_cpu_defaults()
    llm = LLM(model=path, dtype="float32", seed=0, max_model_len=256,
              **lora_engine_kwargs(adapter_rank(model), max_loras=3))
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt_ids = prompt_token_ids(tokenizer, PROMPTS[1]["prompt"])
    loras = GridLoRAs(model, 0.1)
    # base rows between adapter rows: the order vLLM's CPU backend got wrong for rows without an adapter
    rows = [torch.tensor([0.9, 0.1]), None, torch.tensor([0.2, 0.8]), None]
    sampling = SamplingParams(max_tokens=8, temperature=1.0, logprobs=0, seed=0, ignore_eos=True)
    outputs = llm.generate([{"prompt_token_ids": prompt_ids}] * len(rows), sampling,
                           lora_request=loras.requests(llm, rows), use_tqdm=False)
    differences, apart = [], []
    for output, weights in zip(outputs, rows):
        tokens, engine = vllm_logps(output)
        if weights is None:
            with model.disable_adapter():
                reference = token_logps(model, prompt_ids, tokens)
            other = token_logps(model, prompt_ids, tokens, torch.tensor([0.9, 0.1]))
        else:
            reference = token_logps(model, prompt_ids, tokens, weights)
            with model.disable_adapter():
                other = token_logps(model, prompt_ids, tokens)
        differences.append((engine - reference).abs().max().item())
        apart.append((engine - other).abs().max().item())
    return {"differences": differences, "apart_from_other": apart, "loras": sorted(llm.llm_engine.list_loras())}


if __name__ == "__main__":
    scenario, path, output_dir = sys.argv[1:4]
    if scenario == "grid_logits":
        result = grid_logits(path, output_dir)
    elif scenario == "generate_cli":
        result = generate_cli(path, output_dir)
    else:
        result = synced(path, output_dir, conditioning=scenario)
    print("RESULT " + json.dumps(result), flush=True)
