"""Policies: loading (hub ids, local folders, the packaged tiny and SmolLM2 models), multi-head language-model heads,
and preference adapters (weights as numbers inside the model)."""
