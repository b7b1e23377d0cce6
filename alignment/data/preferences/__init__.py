"""Preference data for the DPO family: pairs labelled per objective, ranked lists, and chosen/rejected groups.

Three row formats, all conversational (TRL's prompt / completion message lists) or all plain text:
- pairs:  {"prompt", "chosen", "rejected", "objective"} (+ "score_gap" for cardinal margins,
          + "chosen_margins"/"rejected_margins" for MODPO, added by `add_margin_rewards`; or, for per-objective DPO,
          "objective_labels": [num_objectives] in {-1, 0, 1}, given or added by `label_pairs_per_objective`)
- lists:  {"prompt", "completions": [K], and one of "labels": [K] (higher is better), "ranks": [K] (1 = best) or
          "reward_vector": [K, num_objectives] (turned into labels under preference weights)}
- groups: {"prompt", "chosen": [k], "rejected": [k]}
Pairs may also come in TRL's standard preference formats, the prompt implicit in "chosen" and "rejected"
(`alignment.data.rows.explicit_prompt`), or in HH-RLHF's hub schema (`loaders.hh_pairs`).
Any row may also carry a pair weight ("pair_weight", the name configurable: a finite number >= 0 scaling its loss)
and its own "preference_weights" (validated and normalized over the run's objectives); a field one row carries,
every row must carry.

One module per job:
- `formats`: reading a file, validating rows of each format, and the `datasets.Dataset` the trainers read;
- `loaders`: the packaged real data (`alignment.data`): HH-RLHF helpful / harmless pairs (one objective each),
  UltraFeedback pairs with their GPT-4 score gap (a cardinal signal), and qa-feedback lists of 4 predictions ranked
  by 6 human pairwise labels;
- `labels`: list labels from ranks or reward vectors, groups from lists, MODPO margins, per-objective pair labels;
- `splits`: the recipe entry point `load_preference_splits` and the registry of built-in datasets, `DATASETS`.

Every validator raises `PreferenceDataError` naming the file, the row (1-based line) and the field, before any model
is touched.
"""

from alignment.data.preferences.formats import (
    FORMATS,
    LIST_COLUMNS,
    PAIR_COLUMNS,
    PreferenceDataError,
    read_jsonl,
    to_dataset,
    validate_rows,
)
from alignment.data.preferences.labels import (
    add_margin_rewards,
    attach_list_labels,
    label_pairs_per_objective,
    lists_to_groups,
)
from alignment.data.preferences.loaders import (
    HH_FILES,
    hh_dialogue_to_messages,
    hh_files,
    load_hh_pairs,
    load_objective_pairs,
    load_qa_feedback_lists,
    load_ultrafeedback_pairs,
)
from alignment.data.preferences.splits import (
    BUILTIN_DATASETS,
    DATASETS,
    SplitRequest,
    load_preference_splits,
)

__all__ = [
    "BUILTIN_DATASETS", "DATASETS", "FORMATS", "HH_FILES", "LIST_COLUMNS", "PAIR_COLUMNS", "PreferenceDataError",
    "SplitRequest", "add_margin_rewards", "attach_list_labels", "hh_dialogue_to_messages", "hh_files",
    "label_pairs_per_objective", "lists_to_groups", "load_hh_pairs", "load_objective_pairs", "load_preference_splits",
    "load_qa_feedback_lists", "load_ultrafeedback_pairs", "read_jsonl", "to_dataset", "validate_rows",
]
