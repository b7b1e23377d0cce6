"""The orchestrator's one error class, shared by its modules."""

from alignment.data.validation import DataError


class OrchestratorError(DataError):
    """An orchestrator checkpoint, setting or data row that cannot be used; the message says which and why."""
