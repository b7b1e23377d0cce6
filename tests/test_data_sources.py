"""One way to name data: packaged names, local files (YAML-relative in recipes), hub ids; nothing outside the repo."""

import gzip
import json
from pathlib import Path

import pytest
from datasets import Dataset

from alignment import build_record
from alignment.data import PACKAGED_DATA, DataSourceError, anchor_data_spec, data_display_name, resolve_data
from alignment.data.jsonl import iter_jsonl
from tests.test_bad_input import load_recipe

ROOT = Path(__file__).resolve().parent.parent
# Row counts of the packaged files (alignment/data/files/README.md): a truncated or swapped file fails here.
PACKAGED_ROWS = {"hh-helpful": 1649, "hh-helpful-dev": 235, "hh-harmless": 1619, "hh-harmless-dev": 231,
                 "hh-prompts": 1361, "ultrafeedback": 900, "ultrafeedback-dev": 100, "qa-feedback": 400,
                 "self-instruct": 165}


def test_every_packaged_name_resolves_inside_the_package_to_its_real_rows():
    assert set(PACKAGED_DATA) == set(PACKAGED_ROWS)
    for name, rows in PACKAGED_ROWS.items():
        path = resolve_data(name)
        assert path.is_relative_to(ROOT / "alignment" / "data" / "files")
        assert sum(1 for _ in iter_jsonl(path)) == rows, name
    first = next(iter_jsonl(resolve_data("hh-prompts")))[1]
    assert first["prompt"].strip() and first["source"].startswith("hh-rlhf/")


def test_local_files_resolve_against_the_given_folder_and_gzip_reads_like_plain(tmp_path):
    (tmp_path / "sub").mkdir()
    rows = [{"prompt": "a"}, {"prompt": "b"}]
    (tmp_path / "sub" / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(tmp_path / "sub" / "p.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    assert resolve_data("sub/p.jsonl", base_dir=tmp_path) == tmp_path / "sub" / "p.jsonl"
    assert [r for _, r in iter_jsonl(resolve_data("sub/p.jsonl.gz", base_dir=tmp_path))] == rows
    with pytest.raises(DataSourceError, match="missing.jsonl not found"):
        resolve_data("missing.jsonl", base_dir=tmp_path)
    with pytest.raises(DataSourceError, match="unknown data 'hh_helpful'.*hh-helpful"):
        resolve_data("hh_helpful")


def test_a_hub_id_is_loaded_with_its_keywords_once_and_cached_as_jsonl(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(dataset_id, **kwargs):  # stands in for the hub, which this machine cannot reach
        calls.append((dataset_id, kwargs))
        return Dataset.from_list([{"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                                   "rejected": "\n\nHuman: hi\n\nAssistant: no"}])

    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path))
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec = "Anthropic/hh-rlhf?data_dir=helpful-base&split=test"
    path = resolve_data(spec)
    assert calls == [("Anthropic/hh-rlhf", {"data_dir": "helpful-base", "split": "test"})]
    assert path.is_relative_to(tmp_path) and ([r["rejected"] for _, r in iter_jsonl(path)]
                                              == ["\n\nHuman: hi\n\nAssistant: no"])
    assert resolve_data(spec) == path and len(calls) == 1  # read from the cache the second time
    assert resolve_data("Anthropic/hh-rlhf?data_dir=harmless-base") != path  # other keywords, other file

    def offline(dataset_id, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataSourceError, match="hub dataset 'org/other' could not be loaded: ConnectionError"):
        resolve_data("org/other")
    assert not list((tmp_path / "datasets").glob("org--other*"))  # nothing half-written


def test_specs_are_anchored_to_the_yaml_folder_keeping_prefixes_and_slices():
    assert anchor_data_spec("helpful=pairs/h.jsonl[:640]", "/cfg") == "helpful=/cfg/pairs/h.jsonl[:640]"
    assert anchor_data_spec("qa_feedback:../q.jsonl[340:]", "/cfg/sub") == "qa_feedback:/cfg/q.jsonl[340:]"
    for unchanged in ("hh-helpful[:10]", "helpful=hh-helpful", "qa_feedback:qa-feedback[340:]", "/abs/x.jsonl",
                      "Anthropic/hh-rlhf?data_dir=helpful-base"):
        assert anchor_data_spec(unchanged, "/cfg") == unchanged
    assert [data_display_name(s) for s in ("/home/me/x/p.jsonl", "helpful=hh-helpful[:3]", "org/set")] == \
        ["p.jsonl", "hh-helpful", "org/set"]


def test_recipe_paths_in_yaml_are_relative_to_the_yaml_and_on_the_command_line_to_the_cwd(tmp_path, monkeypatch):
    grpo = load_recipe("grpo")
    config = tmp_path / "configs" / "run.yaml"
    config.parent.mkdir()
    config.write_text("dataset_path: data/prompts.jsonl\noutput_dir: out\nuse_cpu: true\nbf16: false\n")
    monkeypatch.chdir(ROOT)  # another folder than the YAML's
    script_args = grpo.parse_args(["--config", str(config)])[0]
    assert script_args.dataset_path == str(tmp_path / "configs" / "data" / "prompts.jsonl")
    script_args = grpo.parse_args(["--config", str(config), "--dataset_path", "mine.jsonl"])[0]
    assert script_args.dataset_path == "mine.jsonl"

    reward_model = load_recipe("reward_model")
    config.write_text("pairwise_train_files:\n  - helpful=pairs.jsonl[:8]\n  - harmless=hh-harmless[:8]\n"
                      "output_dir: out\n")
    data_args = reward_model.parse_args(["--config", str(config)])[0]
    assert data_args.pairwise_train_files == [f"helpful={tmp_path / 'configs' / 'pairs.jsonl'}[:8]",
                                              "harmless=hh-harmless[:8]"]


def test_records_name_models_and_data_portably(tmp_path, tiny_policy_path):
    record = build_record(trainer="grpo", base_model=str(tiny_policy_path), objectives=[{"name": "a", "source": "x"}],
                          datasets=[str(tmp_path / "my_prompts.jsonl"), "hh-prompts", "org/set"])
    assert record["base_model"] == "moalign/tiny-policy"
    assert record["datasets"] == ["my_prompts.jsonl", "hh-prompts", "org/set"]
    user_model = tmp_path / "my-model"
    user_model.mkdir()
    assert build_record(trainer="grpo", base_model=str(user_model), objectives=[])["base_model"] == "my-model"
    assert (build_record(trainer="grpo", base_model="Qwen/Qwen2.5-0.5B", objectives=[])["base_model"]
            == "Qwen/Qwen2.5-0.5B")



def test_the_instruction_prompts_load_as_chat_prompts_with_their_inputs():
    """`self-instruct` (the steering check on another distribution): the instruction, then the input of its first
    instance after a blank line, as one user message."""
    from alignment.data.prompts import load_prompt_dataset

    prompts = load_prompt_dataset(resolve_data("self-instruct"))
    assert len(prompts) == 165
    texts = [row["prompt"][-1]["content"] for row in prompts]
    assert texts[0].startswith("Is there anything I can eat for a breakfast")
    assert any("\n\n" in text for text in texts) and all(len(text) <= 600 for text in texts)
