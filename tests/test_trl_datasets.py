"""TRL's dataset conventions: conversational prompts for GRPO (multi-turn included), TRL's four preference formats
and HH-RLHF's hub schema for DPO, and data named by TRL's dataset fields: a stand-in for `datasets.load_dataset`
that returns rows in the real hub schemas, and real local folders (JSONL, parquet) read by `load_dataset` itself."""

import json
import logging
import re

import datasets
import pytest
from datasets import Dataset, DatasetDict

from alignment.data import DataSourceError
from alignment.data.preferences import PreferenceDataError, load_preference_splits, to_dataset
from alignment.data.prompts import PromptDataError, load_prompt_dataset
from tests.helpers import RECIPES, load_recipe, write_jsonl

TINY_GRPO = RECIPES / "configs" / "grpo_tiny_cpu.yaml"


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "Answer in one sentence."}
# HH-RLHF's hub schema (Anthropic/hh-rlhf): whole dialogues, the last Assistant turn differs
HH_ROWS = [
    {"chosen": "\n\nHuman: Name a cat.\n\nAssistant: Whiskers.",
     "rejected": "\n\nHuman: Name a cat.\n\nAssistant: No."},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Well, thanks.",
     "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Go away."},
]
HH_PROMPTS = [[user("Name a cat.")], [user("Hi"), assistant("Hello!"), user("How are you?")]]
# TRL's four preference formats (TRL docs, "Dataset formats"), each of the same pair
EXPLICIT_PLAIN = {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}
EXPLICIT_CHAT = {"prompt": [user("What color is the sky?")], "chosen": [assistant("It is blue.")],
                 "rejected": [assistant("It is green.")]}
IMPLICIT_PLAIN = {"chosen": "The sky is blue.", "rejected": "The sky is green."}
IMPLICIT_CHAT = {"chosen": [user("What color is the sky?"), assistant("It is blue.")],
                 "rejected": [user("What color is the sky?"), assistant("It is green.")]}


# --------------------------------------------------------------------------------------------- GRPO prompts

def test_grpo_prompts_are_strings_or_conversations_multi_turn_included(tmp_path):
    conversation = [SYSTEM, user("Hi"), assistant("Hello! How can I help?"), user("Name a cat.")]
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "  plain text  "}, {"prompt": [user("Name a dog.")]},
                                                    {"prompt": conversation}])
    assert [row["prompt"] for row in load_prompt_dataset(path)] == [[user("plain text")], [user("Name a dog.")],
                                                                   conversation]
    # a system prompt is added where a prompt has none of its own
    prompts = [row["prompt"] for row in load_prompt_dataset(path, system_prompt="Be kind.")]
    assert prompts[0][0] == {"role": "system", "content": "Be kind."} and prompts[2] == conversation


@pytest.mark.parametrize("prompt, message", [
    ([], r"row 2, field 'prompt': expected a string or a non-empty list of \{'role', 'content'\} messages, got list"),
    (3, r"row 2, field 'prompt': expected a string or a non-empty list .* got int"),
    ([user("Hi"), assistant("Hello")], r"row 2, field 'prompt': the last message is a 'assistant' turn; a prompt ends "
                                       r"with the user turn"),
    ([SYSTEM, {"role": "user"}], r"row 2, field 'prompt': message 1 must be \{'role': str, 'content': str\}"),
    ([{"role": "user", "content": ["a", "b"]}], r"row 2, field 'prompt': message 0 must be"),
    ([{"role": "bot", "content": "Hi"}, user("x")], r"row 2, field 'prompt': message 0 has role 'bot'; expected one "
                                                    r"of \('system', 'user', 'assistant'\)"),
    ([user("Hi"), assistant("Hello"), user("  ")], r"row 2, field 'prompt': the last user message is empty"),
])
def test_bad_conversational_prompts_name_the_file_the_row_and_what_is_wrong(tmp_path, prompt, message):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": [user("fine")]}, {"prompt": prompt}])
    with pytest.raises(PromptDataError, match=r"prompts\.jsonl, " + message):
        load_prompt_dataset(path)


def test_preference_rows_give_the_prompt_their_replies_share(tmp_path, caplog):
    """HH-RLHF's transcripts (the dialogue before the last reply, multi-turn kept) and TRL's implicit prompt, in
    chat messages or plain text, as TRL's `extract_prompt` takes it."""
    path = write_jsonl(tmp_path / "pairs.jsonl", [*HH_ROWS, IMPLICIT_CHAT, IMPLICIT_PLAIN, EXPLICIT_CHAT])
    with caplog.at_level(logging.INFO):
        prompts = [row["prompt"] for row in load_prompt_dataset(path)]
    assert prompts == [*HH_PROMPTS, [user("What color is the sky?")], [user("The sky is")],
                       [user("What color is the sky?")]]
    assert "4 prompt(s) taken from preference rows" in caplog.text
    path = write_jsonl(tmp_path / "pairs.jsonl", [IMPLICIT_CHAT, {"chosen": "Yes.", "rejected": "No."}])
    with pytest.raises(PromptDataError, match=r"pairs\.jsonl, row 2: 'chosen' and 'rejected' share no beginning"):
        load_prompt_dataset(path)
    no_shared_turn = {"chosen": [user("Hi"), assistant("a")], "rejected": [assistant("b")]}
    path = write_jsonl(tmp_path / "pairs.jsonl", [no_shared_turn])
    with pytest.raises(PromptDataError, match=r"pairs\.jsonl, row 1: 'chosen' and 'rejected' share no beginning"):
        load_prompt_dataset(path)
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": 3, "rejected": "No."}])
    with pytest.raises(PromptDataError, match=r"row 1: no field 'prompt', and 'chosen' and 'rejected' are not both"):
        load_prompt_dataset(path)


# --------------------------------------------------------------------------------------------- DPO pairs

@pytest.mark.parametrize("row, explicit", [
    (EXPLICIT_PLAIN, EXPLICIT_PLAIN), (EXPLICIT_CHAT, EXPLICIT_CHAT), (IMPLICIT_PLAIN, EXPLICIT_PLAIN),
    (IMPLICIT_CHAT, EXPLICIT_CHAT),
    # UltraFeedback binarized's hub schema: a text prompt, and whole conversations as the replies
    ({"prompt": "What color is the sky?", **IMPLICIT_CHAT}, EXPLICIT_CHAT),
], ids=["explicit-plain", "explicit-chat", "implicit-plain", "implicit-chat", "text-prompt-chat-replies"])
def test_dpo_reads_trls_preference_formats_with_the_prompt_made_explicit(tmp_path, row, explicit):
    extra = {"objective": "helpful", "score_gap": 1.5}  # the project's own columns pass through
    path = write_jsonl(tmp_path / "pairs.jsonl", [{**row, **extra}] * 3)
    train, evaluation, names = load_preference_splits(path, "pairs", ["helpful"], num_eval_rows=1,
                                                      required=("objective", "score_gap"))
    assert len(train) == 2 and len(evaluation) == 1 and names == ["pairs.jsonl"]
    assert [{key: row[key] for key in ("prompt", "chosen", "rejected")} for row in train + evaluation] == [explicit] * 3
    assert to_dataset(train)[0]["objective"] == "helpful" and train[0]["score_gap"] == 1.5


def test_dpo_refuses_an_implicit_prompt_that_is_not_there(tmp_path):
    no_shared_turn = {"chosen": [assistant("a")], "rejected": [assistant("b")]}
    path = write_jsonl(tmp_path / "pairs.jsonl", [IMPLICIT_PLAIN, no_shared_turn])
    with pytest.raises(PreferenceDataError, match=r"pairs\.jsonl, row 2: 'chosen' and 'rejected' share no beginning"):
        load_preference_splits(path, "pairs", ["helpful"], num_eval_rows=0)


def test_dpo_reads_hh_rows_in_the_hub_schema_leaving_out_pairs_without_a_preference(tmp_path, caplog):
    identical = {"chosen": HH_ROWS[0]["chosen"], "rejected": HH_ROWS[0]["chosen"]}
    path = write_jsonl(tmp_path / "hh.jsonl", [*HH_ROWS, identical])
    with caplog.at_level(logging.INFO):
        train, _, _ = load_preference_splits(path, "pairs", ["helpful"], num_eval_rows=0)
    assert [row["prompt"] for row in train] == HH_PROMPTS
    assert [row["chosen"] for row in train] == [[assistant("Whiskers.")], [assistant("Well, thanks.")]]
    assert "left out 1 pairs" in caplog.text and "HH-RLHF dialogues" in caplog.text


# --------------------------------------------------------------------------------------------- TRL's dataset fields

ULTRAFEEDBACK_PROMPTS = [{"prompt": [user(f"Question {i}?")]} for i in range(12)]  # trl-lib/ultrafeedback-prompt
UF_PAIR = {"prompt": "What color is the sky?", "messages": [], "score_chosen": 8.0, "score_rejected": 3.0,
           **IMPLICIT_CHAT}  # HuggingFaceH4/ultrafeedback_binarized
HUB = {  # rows in the real hub schemas, by (dataset_name, dataset_config)
    ("Anthropic/hh-rlhf", None): {"train": HH_ROWS * 5, "test": HH_ROWS[:1]},
    ("trl-lib/ultrafeedback-prompt", None): {"train": ULTRAFEEDBACK_PROMPTS[:10], "test": ULTRAFEEDBACK_PROMPTS[10:]},
    ("trl-lib/ultrafeedback-prompt", "train-only"): {"train": ULTRAFEEDBACK_PROMPTS},
    ("HuggingFaceH4/ultrafeedback_binarized", None): {"train_prefs": [UF_PAIR] * 6, "test_prefs": [UF_PAIR] * 2},
}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """`datasets.load_dataset` standing in for the hub (`HUB`); returns the calls it got. The cache is a tmp folder."""
    calls = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, kwargs) if split is None else (path, name, {**kwargs, "split": split}))
        if (path, name) not in HUB:
            raise FileNotFoundError(f"Dataset '{path}' doesn't exist on the Hub or cannot be accessed.")
        splits = DatasetDict({split: Dataset.from_list(rows) for split, rows in HUB[path, name].items()})
        return splits if split is None else splits[split]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "cache"))
    return calls


def grpo_args(*argv, config=TINY_GRPO):
    return load_recipe("grpo").parse_args(["--config", str(config), "--output_dir", "/tmp/unused", *argv])[0]


def test_grpo_dataset_name_trains_on_the_train_split_and_holds_out_the_test_split(hub):
    grpo = load_recipe("grpo")
    train, held_out, name = grpo.prompt_splits(grpo_args("--dataset_name", "trl-lib/ultrafeedback-prompt"))
    assert hub == [("trl-lib/ultrafeedback-prompt", None, {})]  # TRL's call: load_dataset(dataset_name, name=config)
    assert [row["prompt"] for row in train] == [row["prompt"] for row in ULTRAFEEDBACK_PROMPTS[:10]]
    assert held_out == [row["prompt"] for row in ULTRAFEEDBACK_PROMPTS[10:]] and name == "trl-lib/ultrafeedback-prompt"
    # HH-RLHF through the dataset fields: its transcripts give the prompts, multi-turn included
    train, held_out, name = grpo.prompt_splits(grpo_args("--dataset_name", "Anthropic/hh-rlhf"))
    assert [row["prompt"] for row in train] == HH_PROMPTS * 5 and held_out == HH_PROMPTS[:1]
    assert name == "Anthropic/hh-rlhf"


def test_the_documented_hub_spec_for_grpo_gives_hh_prompts(hub):
    """The hub example of the docs (`--dataset_path "Anthropic/hh-rlhf?data_dir=helpful-base&split=train"`) once
    stopped with PromptDataError: HH rows have no `prompt` column."""
    docs = (RECIPES.parent / "docs" / "concepts" / "objectives.md").read_text()
    spec = re.search(r'--dataset_path "(Anthropic/hh-rlhf\?[^"]+)"', docs).group(1)
    train, held_out, name = load_recipe("grpo").prompt_splits(grpo_args("--dataset_path", spec,
                                                                        "--num_eval_prompts", "2"))
    assert hub == [("Anthropic/hh-rlhf", None, {"data_dir": "helpful-base", "split": "train"})]
    assert [row["prompt"] for row in train] + held_out == HH_PROMPTS * 5 and name == spec


def test_num_eval_prompts_0_trains_on_every_prompt_and_holds_out_none(hub):
    """It once stopped with IndexError: datasets refuses the empty range that starts at the last row."""
    train, held_out, _ = load_recipe("grpo").prompt_splits(grpo_args(
        "--dataset_name", "trl-lib/ultrafeedback-prompt", "--dataset_config", "train-only", "--num_eval_prompts", "0"))
    assert [row["prompt"] for row in train] == [row["prompt"] for row in ULTRAFEEDBACK_PROMPTS] and held_out == []


def test_a_dataset_without_the_default_test_split_holds_out_its_last_training_rows(hub, caplog):
    grpo = load_recipe("grpo")
    args = grpo_args("--dataset_name", "trl-lib/ultrafeedback-prompt", "--dataset_config", "train-only",
                     "--num_eval_prompts", "3")
    with caplog.at_level(logging.INFO):
        train, held_out, _ = grpo.prompt_splits(args)
    assert hub[-1] == ("trl-lib/ultrafeedback-prompt", "train-only", {})
    assert len(train) == 9 and held_out == [row["prompt"] for row in ULTRAFEEDBACK_PROMPTS[9:]]
    assert "has no 'test' split" in caplog.text
    with pytest.raises(DataSourceError, match=r"has no split 'validation' \(it has \['train'\]\); set "
                                              r"dataset_test_split"):
        grpo.prompt_splits(grpo_args("--dataset_name", "trl-lib/ultrafeedback-prompt", "--dataset_config",
                                     "train-only", "--dataset_test_split", "validation"))
    with pytest.raises(DataSourceError, match=r"has no split 'training'.*set dataset_train_split"):
        grpo.prompt_splits(grpo_args("--dataset_name", "Anthropic/hh-rlhf", "--dataset_train_split", "training"))
    with pytest.raises(DataSourceError, match=r"dataset_name org/missing could not be loaded: FileNotFoundError"):
        grpo.prompt_splits(grpo_args("--dataset_name", "org/missing"))


def test_data_named_both_ways_is_refused_unless_the_command_line_replaces_the_yaml(hub, tmp_path):
    with pytest.raises(DataSourceError, match=r"both dataset_path \('hh-prompts'\) and dataset_name "
                                              r"\('Anthropic/hh-rlhf'\) are set: give one"):
        grpo_args("--dataset_path", "hh-prompts", "--dataset_name", "Anthropic/hh-rlhf").data_source()
    with pytest.raises(DataSourceError, match=r"dataset_config, dataset_test_split set, but dataset_name is not"):
        grpo_args("--dataset_config", "x", "--dataset_test_split", "dev").data_source()
    assert grpo_args().data_source().train == "hh-prompts"  # neither: the packaged prompts

    # a command-line flag replaces the data the YAML names the other way (the default YAML names dataset_path)
    assert grpo_args("--dataset_name", "Anthropic/hh-rlhf", config=RECIPES / "configs" /
                     "grpo_smollm2_cpu.yaml").data_source().name == "Anthropic/hh-rlhf"
    config = tmp_path / "run.yaml"
    config.write_text("dataset_name: Anthropic/hh-rlhf\ndataset_config: x\nuse_cpu: true\nbf16: false\n")
    args = grpo_args("--dataset_path", "hh-prompts", config=config)
    assert (args.dataset_name, args.dataset_config, args.data_source().train) == (None, None, "hh-prompts")
    config.write_text("dataset_name: Anthropic/hh-rlhf\ndataset_path: hh-prompts\nuse_cpu: true\nbf16: false\n")
    with pytest.raises(DataSourceError, match="both dataset_path"):  # both in one place: refused
        grpo_args(config=config).data_source()


def test_dpo_dataset_name_reads_the_named_splits_as_train_and_held_out_pairs(hub):
    dpo = load_recipe("dpo")
    script_args = dpo.parse_args(["--dataset_name", "HuggingFaceH4/ultrafeedback_binarized", "--dataset_train_split",
                                  "train_prefs", "--dataset_test_split", "test_prefs", "--output_dir", "/tmp/x"])[0]
    source = script_args.data_source()
    assert script_args.dataset is None and source.name == "HuggingFaceH4/ultrafeedback_binarized"  # the YAML's `hh`
    train, evaluation, _ = load_preference_splits(source.train, "pairs", ["helpful"], num_eval_rows=64,
                                                  eval_dataset=source.test)
    assert len(train) == 6 and len(evaluation) == 2  # the test split, not rows carved from training
    assert {key: train[0][key] for key in ("prompt", "chosen", "rejected")} == EXPLICIT_CHAT
    script_args = dpo.parse_args(["--dataset_name", "Anthropic/hh-rlhf", "--eval_dataset", "hh-helpful-dev",
                                  "--output_dir", "/tmp/x"])[0]
    assert script_args.data_source().test == "hh-helpful-dev"  # a held-out file given is used instead


def test_local_folders_in_the_hub_formats_load_through_dataset_name(tmp_path, monkeypatch):
    """Parquet and JSONL folders, read by `datasets.load_dataset` itself (offline), as TRL's scripts read them."""
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    Dataset.from_list([IMPLICIT_CHAT] * 4).to_parquet(pairs / "train.parquet")
    Dataset.from_list([IMPLICIT_CHAT] * 2).to_parquet(pairs / "test.parquet")  # a folder has one schema
    dpo = load_recipe("dpo")
    source = dpo.parse_args(["--dataset_name", str(pairs), "--output_dir", "/tmp/x"])[0].data_source()
    train, evaluation, _ = load_preference_splits(source.train, "pairs", ["helpful"], eval_dataset=source.test)
    assert (len(train), len(evaluation), source.name) == (4, 2, "pairs")
    assert all({key: row[key] for key in EXPLICIT_CHAT} == EXPLICIT_CHAT for row in train + evaluation)

    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ULTRAFEEDBACK_PROMPTS))
    train, held_out, name = load_recipe("grpo").prompt_splits(grpo_args("--dataset_name", str(prompts),
                                                                         "--num_eval_prompts", "2"))
    assert (len(train), len(held_out), name) == (10, 2, "prompts")


# --------------------------------------------------------------------------------------------- GRPO end to end

def run_tiny_grpo(output_dir, model, *argv):
    grpo = load_recipe("grpo")
    return grpo.main(*grpo.parse_args([
        "--config", str(TINY_GRPO), "--output_dir", str(output_dir), "--model_name_or_path", str(model),
        "--max_steps", "1", "--num_generations", "2", "--per_device_train_batch_size", "4",
        "--max_completion_length", "6", "--num_eval_prompts", "2", "--eval_max_new_tokens", "6", "--num_samples", "2",
        "--save_strategy", "no", "--disable_tqdm", "true", "--logging_steps", "1", *argv]))


@pytest.mark.usefixtures("one_thread")
def test_grpo_trains_on_a_local_jsonl_of_conversational_prompts(tmp_path, tiny_policy_path):
    rows = [{"prompt": [SYSTEM, user(f"Hi {i}"), assistant("Hello!"), user("Name a cat.")]} for i in range(4)]
    rows += [{"prompt": [user(f"Name a dog, {i}.")]} for i in range(4)]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    trainer = run_tiny_grpo(tmp_path / "out", tiny_policy_path, "--dataset_path", path)
    assert trainer.state.global_step == 1 and len(trainer.train_dataset) == 6
    record = json.loads((tmp_path / "out" / "objectives.json").read_text())
    assert record["datasets"] == ["chat.jsonl"]


@pytest.mark.usefixtures("one_thread")
def test_grpo_trains_on_a_local_copy_of_hh_rows_through_the_dataset_fields(tmp_path, tiny_policy_path, monkeypatch):
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    copy = tmp_path / "hh-rlhf"  # the hub repository's layout: one JSONL file per split
    copy.mkdir()
    write_jsonl(copy / "train.jsonl", HH_ROWS * 4)
    write_jsonl(copy / "test.jsonl", HH_ROWS)
    trainer = run_tiny_grpo(tmp_path / "out", tiny_policy_path, "--dataset_name", str(copy))
    assert trainer.state.global_step == 1 and [row["prompt"] for row in trainer.train_dataset] == HH_PROMPTS * 4
    record = json.loads((tmp_path / "out" / "objectives.json").read_text())
    assert record["datasets"] == ["hh-rlhf"]
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [sample["prompt"] for sample in samples] == ["Name a cat.", "How are you?"]  # the test split's prompts
