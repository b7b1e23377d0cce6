"""The DPO family's loss components: the registry is the one place that knows the losses by name."""

import re
from pathlib import Path

import pytest

from alignment.trainers.dpo_losses import LOSSES, PreferenceLoss
from alignment.trainers.dpo_losses.base import FORMAT_COLUMNS
from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig

ROOT = Path(__file__).resolve().parents[1]
# `loss == "modpo"`, `args.loss in (...)`, `loss_name != 'mah'`: a comparison of a loss name
LOSS_NAME_COMPARISON = re.compile(r"""loss(_name)? *(==|!=|in|not in) *[("']|args\.loss (==|!=|in)""")
REGISTRY_AND_CONFIG = ("alignment/trainers/dpo_losses/", "alignment/trainers/dpo_config.py")


def test_no_code_outside_the_registry_compares_loss_names():
    files = [*sorted((ROOT / "alignment").rglob("*.py")), ROOT / "recipes" / "dpo.py"]
    found = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(REGISTRY_AND_CONFIG):
            continue
        found += [f"{relative}:{number}: {line.strip()}" for number, line in enumerate(path.read_text().splitlines(), 1)
                  if LOSS_NAME_COMPARISON.search(line)]
    assert found == []


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_registered_loss_resolves_from_the_config_and_describes_itself(name, tmp_path):
    objectives = ["helpful", "harmless"] if name in ("mah", "per_objective") else ["helpful"]
    args = MultiObjectiveDPOConfig(output_dir=str(tmp_path), loss=name, objectives=objectives, use_cpu=True,
                                   report_to="none")
    component = args.loss_component
    assert isinstance(component, PreferenceLoss) and type(component) is LOSSES[name]
    assert component.data_format in FORMAT_COLUMNS
    assert set(component.needed_columns(set())) >= set(FORMAT_COLUMNS[component.data_format])
    assert component.takes_prompt_weights <= component.uses_weights  # prompt-aware weights are weights it uses
    assert component.weights_per_pair <= component.uses_weights
    assert [o.name for o in component.record_objectives("preference_pairs")][:1] == objectives[:1]
