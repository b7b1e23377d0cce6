"""Publishing: output dir -> hub-ready folder -> plain transformers reload; the card comes from the record;
no token leaks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment import PublishError, build_folder, build_record, plan_publication, save_record
from alignment.hub.model_card import render_model_card
from scripts.publish import main as publish_main

REPO = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_FAKEtokenFAKEtokenFAKEtoken1234"
EVALUATION = {"conciseness/before": -0.61, "conciseness/after": -0.12,
              "sentiment/before": 0.05, "sentiment/after": 0.21}


def record_for(base_model: str) -> dict:
    return build_record(
        trainer="grpo", base_model=base_model, steering="none", datasets=["Anthropic/hh-rlhf (helpful-base)"],
        objectives=[{"name": "conciseness", "source": "builtin:conciseness", "threshold": None},
                    {"name": "sentiment", "source": "builtin:sentiment", "threshold": 0.1}],
        weights={"conciseness": 0.7, "sentiment": 0.3}, aggregation="normalize_then_sum", scalarization="linear",
    )


@pytest.fixture
def output_dir(tiny_policy_path, tmp_path):
    """What a training run leaves: weights, tokenizer, record, card, training args, an optimizer pickle, a plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "run"
    AutoModelForCausalLM.from_pretrained(tiny_policy_path).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_policy_path).save_pretrained(path)
    save_record(path, record_for(str(tiny_policy_path)), evaluation=EVALUATION)
    (path / "training_args.json").write_text(json.dumps({"hub_token": "<HUB_TOKEN>", "learning_rate": 1e-5}))
    torch.save({"state": 1}, path / "optimizer.pt")
    figure, axis = plt.subplots(figsize=(2, 2))
    axis.scatter([0, 1], [1, 0])
    figure.savefig(path / "front.png")
    plt.close(figure)
    return path


def test_publish_then_reload_with_plain_transformers(output_dir, tmp_path, tiny_policy_path):
    target = tmp_path / "hub"
    assert publish_main(["--output_dir", str(output_dir), "--target_dir", str(target)]) == 0
    assert sorted(p.name for p in target.iterdir()) == sorted([
        "README.md", "chat_template.jinja", "config.json", "front.png", "generation_config.json", "model.safetensors",
        "objectives.json", "tokenizer.json", "tokenizer_config.json"])
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]  # nothing half-built left behind
    model = AutoModelForCausalLM.from_pretrained(target).eval()
    tokenizer = AutoTokenizer.from_pretrained(target)
    original = AutoModelForCausalLM.from_pretrained(tiny_policy_path).eval()
    inputs = tokenizer(["Hello there, how are you?"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, original(**inputs).logits, atol=0, rtol=0)


def test_model_card_is_rendered_from_the_record(output_dir, tmp_path, tiny_policy_path):
    target = build_folder(plan_publication(output_dir), tmp_path / "hub")
    card = (target / "README.md").read_text()
    record = json.loads((target / "objectives.json").read_text())
    assert card == render_model_card(record)  # never typed by hand
    front_matter = yaml.safe_load(card.split("---")[1])
    assert front_matter["base_model"] == "moalign/tiny-policy"  # the packaged name, never this machine's cache path
    assert front_matter["datasets"] == ["Anthropic/hh-rlhf (helpful-base)"]
    for expected in ("| conciseness | `builtin:conciseness` |  |", "| sentiment | `builtin:sentiment` | 0.1 |",
                     "## Data", "Fixed preference weights: conciseness=0.7, sentiment=0.3.",
                     "Advantages: aggregation `normalize_then_sum`", "| conciseness/after | -0.12 |",
                     "![Pareto front](front.png)"):
        assert expected in card, expected


def test_cards_of_runs_that_ignore_the_weights_say_what_they_optimized():
    objectives = [{"name": "helpful", "source": "rm:helpful"}, {"name": "harmless", "source": "rm:harmless"}]
    lagrangian = render_model_card(build_record(
        trainer="grpo", base_model="b", objectives=objectives, aggregation="sum_then_normalize",
        scalarization="lagrangian",
        extra={"lagrangian": {"main_objective": "helpful", "constraint_objective": "harmless",
                              "constraint_threshold": 0.5, "final_lambda": 3.21}, "weights_used": False}))
    assert ("Update: maximize `helpful` subject to mean `harmless` >= 0.5 (Lagrangian, final lambda = 3.21). "
            "The preference weights were not used.") in lagrangian
    mgda = render_model_card(build_record(
        trainer="grpo", base_model="b", objectives=objectives, weight_distribution={"type": "dirichlet"},
        extra={"pareto_method": "mgda", "weights_used": False}))
    assert "Update: MGDA (`pareto_method: mgda`)" in mgda and "(they condition the prompt only)" in mgda
    for card in (lagrangian, mgda):
        assert "Fixed preference weights" not in card


def test_dry_run_validates_and_writes_nothing(output_dir, tmp_path, capsys):
    target = tmp_path / "new" / "parent" / "hub"  # not even the parent folder may be created
    before = sorted(tmp_path.rglob("*"))
    assert publish_main(["--output_dir", str(output_dir), "--target_dir", str(target), "--dry_run"]) == 0
    assert "dry run OK" in capsys.readouterr().out
    assert sorted(tmp_path.rglob("*")) == before and not (tmp_path / "new").exists()


def test_dry_run_fails_where_the_real_run_fails_on_an_existing_target(output_dir, tmp_path):
    target = tmp_path / "hub"
    target.mkdir()
    for extra in ([], ["--dry_run"]):
        with pytest.raises(SystemExit, match="exists; choose another folder or pass overwrite"):
            publish_main(["--output_dir", str(output_dir), "--target_dir", str(target), *extra])
    assert publish_main(["--output_dir", str(output_dir), "--target_dir", str(target), "--dry_run", "--overwrite"]) == 0
    assert list(target.iterdir()) == []  # the dry run with overwrite replaced nothing


def test_fake_token_in_the_environment_reaches_no_output(output_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    target = tmp_path / "hub"
    publish_main(["--output_dir", str(output_dir), "--target_dir", str(target), "--dry_run", "--push",
                  "--repo_id", "me/x"])
    publish_main(["--output_dir", str(output_dir), "--target_dir", str(target)])
    out = capsys.readouterr()
    assert FAKE_TOKEN not in out.out + out.err
    assert not [p for p in target.rglob("*") if p.is_file() and FAKE_TOKEN.encode() in p.read_bytes()]


def test_a_file_holding_the_token_is_refused(output_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    record = json.loads((output_dir / "objectives.json").read_text())
    record["note"] = f"pushed with {FAKE_TOKEN}"
    (output_dir / "objectives.json").write_text(json.dumps(record))
    with pytest.raises(PublishError, match="contains the Hugging Face token"):
        build_folder(plan_publication(output_dir), tmp_path / "hub")
    assert not (tmp_path / "hub").exists()


@pytest.mark.parametrize("breakage, message", [
    ("no_record", "no objectives.json"),
    ("bad_json", "not valid JSON"),
    ("bad_record", "missing field 'steering'"),
    ("pickle_weights", "pickle formats"),
    ("no_tokenizer", "no tokenizer"),
])
def test_invalid_output_dirs_are_refused_with_the_reason(output_dir, tmp_path, breakage, message):
    if breakage == "no_record":
        (output_dir / "objectives.json").unlink()
    elif breakage == "bad_json":
        (output_dir / "objectives.json").write_text("{not json")
    elif breakage == "bad_record":
        record = json.loads((output_dir / "objectives.json").read_text())
        del record["steering"]
        (output_dir / "objectives.json").write_text(json.dumps(record))
    elif breakage == "pickle_weights":
        torch.save({}, output_dir / "pytorch_model.bin")
    elif breakage == "no_tokenizer":
        (output_dir / "tokenizer.json").unlink()
    with pytest.raises(SystemExit, match=message):
        publish_main(["--output_dir", str(output_dir), "--target_dir", str(tmp_path / "hub")])
    assert not (tmp_path / "hub").exists()


def test_lora_adapter_is_merged_and_reloads_without_peft(tiny_policy_path, tmp_path, random_lora):
    model = random_lora(0)
    adapter_dir = tmp_path / "lora-run"
    model.save_pretrained(adapter_dir)
    AutoTokenizer.from_pretrained(tiny_policy_path).save_pretrained(adapter_dir)
    save_record(adapter_dir, record_for(str(tiny_policy_path)))
    target = build_folder(plan_publication(adapter_dir), tmp_path / "hub", merge_lora=True)
    assert not (target / "adapter_config.json").exists() and (target / "model.safetensors").exists()
    merged = AutoModelForCausalLM.from_pretrained(target).eval()
    inputs = AutoTokenizer.from_pretrained(target)(["Is it possible to download a car?"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, model.eval()(**inputs).logits, atol=1e-4, rtol=0)
    assert "merged into the base weights" in (target / "README.md").read_text()


def test_push_without_a_token_is_refused(output_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "scripts/publish.py", "--output_dir", str(output_dir), "--target_dir",
                             str(tmp_path / "hub"), "--push", "--repo_id", "me/model"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "no Hugging Face token configured" in result.stderr


def test_push_uploads_the_built_folder_with_the_configured_token(output_dir, tmp_path, monkeypatch, capsys):
    """The hub is out of reach here: a stand-in HfApi records what --push asks of huggingface_hub."""
    import huggingface_hub

    calls = []

    class RecordingApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message):
            files = sorted(p.name for p in Path(folder_path).iterdir())
            calls.append(("upload_folder", repo_id, files))
            return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    target = tmp_path / "hub"
    assert publish_main(["--output_dir", str(output_dir), "--target_dir", str(target), "--push", "--repo_id", "me/x",
                         "--private"]) == 0
    assert calls[0] == ("token", FAKE_TOKEN) and calls[1] == ("create_repo", "me/x", True, True)
    assert calls[2][:2] == ("upload_folder", "me/x") and ({"README.md", "objectives.json", "model.safetensors"}
                                                         <= set(calls[2][2]))
    out = capsys.readouterr().out
    assert "uploaded: https://huggingface.co/me/x/commit/abc" in out and FAKE_TOKEN not in out
    assert not [p for p in target.rglob("*") if p.is_file() and FAKE_TOKEN.encode() in p.read_bytes()]
