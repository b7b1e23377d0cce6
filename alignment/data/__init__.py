"""Data the suite reads: built-in names for the packaged real data, local files, and hub datasets."""

from alignment.data.sources import PACKAGED_DATA, DataSourceError, anchor_data_spec, data_display_name, resolve_data

__all__ = ["PACKAGED_DATA", "DataSourceError", "anchor_data_spec", "data_display_name", "resolve_data"]
