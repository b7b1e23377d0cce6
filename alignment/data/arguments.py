"""TRL's dataset fields for the recipes (`dataset_name`, `dataset_config`, `dataset_train_split`,
`dataset_test_split`) and the data a run trains and evaluates on.

`DatasetArguments` has the names, defaults and meaning of those fields in TRL's `trl.scripts.utils.ScriptArguments`,
and `dataset_name` is read the way TRL's scripts read it: `datasets.load_dataset(dataset_name, name=dataset_config)`,
then its train and test splits. TRL's class itself is not subclassed: it also brings `dataset_streaming` (the
recipes validate every row before training, so they never stream) and `ignore_bias_buffers`, which the recipes would
have to refuse, and its help strings refer to a `datasets` mixture field these recipes do not have.

Each recipe keeps its own field for the packaged names, local files and query-string hub specs of
`alignment.data.sources` (`local_data_field`); `data_source` refuses a run that names data both ways.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from alignment.cache import default_cache_dir
from alignment.data.sources import DataSourceError, data_display_name, write_dataset_jsonl

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """What a run reads: `train` and optional `test` data names for the loaders (`alignment.data.resolve_data`), and
    `name`, how records and cards name a dataset given by `dataset_name` (None: the loader names it)."""

    train: str
    test: str | None = None
    name: str | None = None


@dataclass
class DatasetArguments:
    """TRL's dataset fields: a hub dataset (or a local folder) read with `datasets.load_dataset`."""

    local_data_field: ClassVar[str]  # the recipe's own data field (a packaged name, a local file or a hub spec)
    local_eval_field: ClassVar[str | None] = None  # the recipe's own held-out data field, if it has one
    default_dataset: ClassVar[str]  # what the recipe trains on when no data is named

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "TRL's field: a hub dataset id (e.g. 'trl-lib/ultrafeedback-prompt') or a local folder, read "
                          "with datasets.load_dataset(dataset_name, name=dataset_config). Instead of the recipe's own "
                          "data field, not beside it."},
    )
    dataset_config: str | None = field(
        default=None,
        metadata={"help": "TRL's field: the configuration of dataset_name (the `name` argument of "
                          "datasets.load_dataset)."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "TRL's field: the split of dataset_name to "
                                                                        "train on."})
    dataset_test_split: str = field(
        default="test",
        metadata={"help": "TRL's field: the split of dataset_name whose first rows are held out for evaluation. A "
                          "dataset without this split (the default 'test') holds out the last rows of the training "
                          "split instead; another split name that is missing is an error."},
    )

    def data_source(self) -> DataSource:
        """The data this run reads: from `dataset_name` (its train and test splits, as JSON-lines copies in the user
        cache), else from the recipe's own fields (`default_dataset` when none is set). Naming data both ways, or
        setting `dataset_config` or a split without `dataset_name`, is refused."""
        local = getattr(self, self.local_data_field)
        local_eval = getattr(self, self.local_eval_field) if self.local_eval_field else None
        if self.dataset_name is None:
            unused = [f.name for f in dataclasses.fields(DatasetArguments)
                      if f.name != "dataset_name" and getattr(self, f.name) != f.default]
            if unused:
                raise DataSourceError(f"{', '.join(unused)} set, but dataset_name is not: they choose what to read "
                                      "from dataset_name")
            return DataSource(local or self.default_dataset, local_eval)
        if local is not None:
            raise DataSourceError(f"both {self.local_data_field} ({local!r}) and dataset_name ({self.dataset_name!r}) "
                                  f"are set: give one (a command-line flag replaces the other field when it comes "
                                  "from the YAML config)")
        train, test = load_hub_splits(self.dataset_name, self.dataset_config, self.dataset_train_split,
                                      None if local_eval else self.dataset_test_split)
        return DataSource(str(train), local_eval or (test and str(test)), data_display_name(self.dataset_name))


def load_hub_splits(dataset_name: str, dataset_config: str | None = None, train_split: str = "train",
                    test_split: str | None = "test") -> tuple[Path, Path | None]:
    """JSON-lines files of the train split and the test split (None where not asked for, or where the default 'test'
    is missing) of `datasets.load_dataset(dataset_name, name=dataset_config)`.

    Each file is written once to the user cache under the split's fingerprint, so the loaders read it like a packaged
    file, with row numbers in their messages; a dataset that changes (a local folder edited) gets a new file.
    """
    import datasets  # lazy: it takes most of a second to import

    described = dataset_name + (f" (config {dataset_config!r})" if dataset_config else "")
    try:
        splits = datasets.load_dataset(dataset_name, name=dataset_config)
    except Exception as error:  # no hub, unknown id or config: say which dataset failed
        raise DataSourceError(f"dataset_name {described} could not be loaded: {type(error).__name__}: {error}") \
            from error
    for split, field_name in ((train_split, "dataset_train_split"), (test_split, "dataset_test_split")):
        if split is not None and split not in splits and (split, field_name) != ("test", "dataset_test_split"):
            raise DataSourceError(f"dataset_name {described} has no split {split!r} (it has {list(splits)}); set "
                                  f"{field_name}")
    if test_split is not None and test_split not in splits:
        logger.info(f"{described} has no {test_split!r} split: the held-out rows are the last rows of {train_split!r}")
    folder = default_cache_dir() / "datasets"
    slug = re.sub(r"[^\w.-]+", "--", dataset_name.strip("./~")) + (f"--{dataset_config}" if dataset_config else "")

    def cached(split: str) -> Path:
        target = folder / f"{slug}-{split}-{splits[split]._fingerprint}.jsonl"
        return target if target.is_file() else write_dataset_jsonl(splits[split], target)

    return cached(train_split), cached(test_split) if test_split in splits else None
