"""Checkpoints and what travels with them: resumable checkpointing, the objectives record (`objectives.json`), the
model card, and publishing (baking a preference into a plain checkpoint, pushing to the hub)."""
