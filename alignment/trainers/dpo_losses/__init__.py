"""The DPO family's losses as components: `LOSSES` maps each `loss` name of `MultiObjectiveDPOConfig` to its class.

A component (`PreferenceLoss`) owns everything about its loss: its data format and the batch columns it reads,
whether it uses the preference weights (fixed, per prompt, per pair), its config checks, how it completes and
reshapes rows, any model it needs, the loss itself with its metrics, and what it adds to a checkpoint's record.
The config, the recipe (`recipes/dpo.py`) and the trainer (`alignment.trainers.mo_dpo`) ask the component and
never compare loss names. The maths is in the pure functions of `alignment.trainers.preference_losses`.

To add a loss: a subclass (of `pairs.PairLoss` for a loss on pairs, `lists.GroupLoss` on groups, `base.ListwiseLoss`
on lists) and one line in `LOSSES`.
"""

from __future__ import annotations

from alignment.trainers.dpo_losses import lists, pairs
from alignment.trainers.dpo_losses.base import PER_OBJECTIVE, PreferenceLoss

# In this order in messages that list the losses
LOSSES: dict[str, type[PreferenceLoss]] = {
    "modpo": pairs.ModpoLoss,
    "cardinal": pairs.CardinalLoss,
    "mdpo": lists.MdpoLoss,
    "mipo": lists.MipoLoss,
    "lipo": lists.LipoLoss,
    "mah": pairs.MultiHeadLoss,
    "per_objective": pairs.PerObjectiveLoss,
    "ipo": pairs.IpoLoss,
}


def losses_where(attribute: str) -> tuple[str, ...]:
    """The names of the registered losses whose component has `attribute` true (e.g. 'uses_weights')."""
    return tuple(name for name, component in LOSSES.items() if getattr(component, attribute))


__all__ = ["LOSSES", "PER_OBJECTIVE", "PreferenceLoss", "losses_where"]
