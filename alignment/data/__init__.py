"""Data the suite reads: built-in names for the packaged real data, local files, and hub datasets; `DataError` is the
base class of every loader's data error (see `alignment.data.validation`)."""

from alignment.data.sources import PACKAGED_DATA, DataSourceError, anchor_data_spec, data_display_name, resolve_data
from alignment.data.validation import DataError

__all__ = ["PACKAGED_DATA", "DataError", "DataSourceError", "anchor_data_spec", "data_display_name", "resolve_data"]
