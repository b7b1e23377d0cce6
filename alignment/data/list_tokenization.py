"""Tokenization of lists (and groups, which become lists) of K responses per prompt, as TRL tokenizes a pair.

Same chat template, same prompt / completion split as TRL's DPOTrainer: a completion starts where the tokenized
prompt and the tokenized prompt + completion diverge. `alignment.data.collators._ListCollator` pads the result.
"""

from __future__ import annotations

from datasets import Dataset
from trl.data_utils import _tokenize, common_prefix_length, is_conversational

from alignment.data.preferences.formats import PROMPT_WEIGHTS_COLUMN

# What a tokenized list row holds; the trainer keeps these columns when it drops unused ones.
TOKENIZED_LIST_COLUMNS = ("prompt_ids", "completion_ids", "list_labels", PROMPT_WEIGHTS_COLUMN)


def tokenize_lists(dataset: Dataset, processing_class, eos_token: str, max_length: int | None, truncation_mode: str,
                   num_proc: int | None, dataset_name: str,
                   keep: tuple[str, ...] = (PROMPT_WEIGHTS_COLUMN,)) -> Dataset:
    """Rows {prompt, completions: [K], labels: [K] (, preference_weights, a list weight)} -> {prompt_ids,
    completion_ids: [K], list_labels: [K] (and the columns of `keep` the rows carry, as they are)}. A dataset that is
    already tokenized is returned as it is.

    Plain-text completions get `eos_token` appended (as TRL does); with `truncation_mode` 'keep_start', rows whose
    prompt alone fills `max_length` are left out (no completion token would remain).
    """
    if "prompt_ids" in dataset.column_names:
        return dataset

    def tokenize_list(row):
        if is_conversational(row):
            prompt_ids = _tokenize(processing_class, row["prompt"], add_generation_prompt=True)["input_ids"]
            full = [_tokenize(processing_class, row["prompt"] + c)["input_ids"] for c in row["completions"]]
        else:
            prompt_ids = _tokenize(processing_class, row["prompt"])["input_ids"]
            full = [_tokenize(processing_class, row["prompt"] + (c if c.endswith(eos_token) else c + eos_token))
                    ["input_ids"] for c in row["completions"]]
        prompt_len = min(common_prefix_length(prompt_ids, ids) for ids in full)
        kept = {name: row[name] for name in keep if name in row}
        return {"prompt_ids": prompt_ids[:prompt_len], "completion_ids": [ids[prompt_len:] for ids in full],
                "list_labels": [float(v) for v in row["labels"]], **kept}

    dataset = dataset.map(tokenize_list, remove_columns=dataset.column_names, num_proc=num_proc,
                          desc=f"Tokenizing {dataset_name} lists")
    if max_length is not None and truncation_mode == "keep_start":
        dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < max_length)
    return dataset
