"""No field a TRL user passes is silently ignored (alignment/trainers/trl_fields.py): every field TRL's GRPOConfig,
DPOConfig and ModelConfig define is accounted for; each refused one stops a config that sets it, naming itself; the
fields whose code path is ours are checked where they act (here: model_init_kwargs, quantization, resume; the
aggregation and scale_rewards against TRL's own advantages in test_peer_equivalence.py)."""

import dataclasses
import warnings

import pytest
import torch
from transformers import TrainingArguments
from trl import DPOConfig, GRPOConfig, ModelConfig

from alignment.trainers.dpo_config import MultiObjectiveDPOConfig
from alignment.trainers.grpo_config import MultiObjectiveGRPOConfig
from alignment.trainers.trl_fields import (
    DPO_FIELDS,
    GRPO_FIELDS,
    HONOURED,
    MODEL_FIELDS,
    NOT_APPLICABLE,
    OURS,
    REFUSED,
)

TRAINING_ARGUMENTS = {f.name for f in dataclasses.fields(TrainingArguments)}


def trl_fields(config_class) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class)} - TRAINING_ARGUMENTS


@pytest.mark.parametrize("config_class, table", [(GRPOConfig, GRPO_FIELDS), (DPOConfig, DPO_FIELDS),
                                                 (ModelConfig, MODEL_FIELDS)])
def test_every_field_trl_defines_is_accounted_for(config_class, table):
    assert trl_fields(config_class) == set(table), "a TRL field is missing from (or stale in) trl_fields.py"
    for name, (status, reason) in table.items():
        assert status in (HONOURED, OURS, REFUSED, NOT_APPLICABLE) and len(reason) > 10, name


COMMON = dict(output_dir="/tmp/trl-fields", use_cpu=True, bf16=False, report_to="none")
ADAPTER = dict(conditioning="adapter", weights_mode="dirichlet")
# For each refused field: a value that TRL accepts, and the setting in which it is refused.
REFUSED_GRPO = {
    "reward_weights": ([0.7, 0.3], {}),
    "use_transformers_continuous_batching": (True, ADAPTER),
    "use_transformers_paged": (True, ADAPTER),
}
REFUSED_DPO = {
    "loss_type": (["ipo"], {}), "loss_weights": ([1.0], {}), "ld_alpha": (0.5, {}),
    "f_divergence_type": ("js_divergence", {}), "f_alpha_divergence_coef": (0.3, {}), "label_smoothing": (0.1, {}),
    "use_weighting": (True, {}), "discopop_tau": (0.1, {}),
}


def test_the_refusal_cases_are_the_tables_refused_fields():
    assert set(REFUSED_GRPO) == {n for n, (status, _) in GRPO_FIELDS.items() if status == REFUSED}
    assert set(REFUSED_DPO) == {n for n, (status, _) in DPO_FIELDS.items() if status == REFUSED}


@pytest.mark.parametrize("config_class, name, value, setting",
                         [(MultiObjectiveGRPOConfig, n, v, s) for n, (v, s) in REFUSED_GRPO.items()]
                         + [(MultiObjectiveDPOConfig, n, v, s) for n, (v, s) in REFUSED_DPO.items()])
def test_a_refused_field_stops_the_config_and_names_itself(config_class, name, value, setting):
    config_class(**COMMON, **setting)  # the setting alone is fine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # use_transformers_paged is TRL's deprecated alias
        with pytest.raises(ValueError, match=name.replace("use_transformers_paged", "use_transformers_")):
            config_class(**COMMON, **setting, **{name: value})


def test_quantization_is_refused_with_the_reason_where_it_cannot_run():
    from alignment.models.policy import check_quantization

    check_quantization(ModelConfig(), "grpo")  # not asked: nothing to say
    cases = [(dict(load_in_4bit=True), "grpo", True, "preference adapter"),
             (dict(load_in_4bit=True), "grpo", False, "use_peft"),
             (dict(load_in_8bit=True), "reward model", False, "policy trainers")]
    if not torch.cuda.is_available():
        cases.append((dict(load_in_4bit=True, use_peft=True), "grpo", False, "CUDA GPU"))
    for fields, trainer, adapter, message in cases:
        with pytest.raises(ValueError, match=message):
            check_quantization(ModelConfig(**fields), trainer, adapter)


def test_model_init_kwargs_reach_from_pretrained(tiny_policy_path):
    """TRL passes model_init_kwargs to from_pretrained when the model is named; the recipes load it themselves."""
    from alignment.models.policy import load_policy

    plain, _ = load_policy(tiny_policy_path)
    assert plain.dtype == torch.float32
    half, _ = load_policy(tiny_policy_path, model_init_kwargs={"dtype": "bfloat16"})
    assert half.dtype == torch.bfloat16


def test_pama_and_the_lagrangian_warn_about_an_aggregation_they_do_not_use_and_the_record_leaves_it_out():
    with pytest.warns(UserWarning, match="no effect with scalarization 'pama'"):
        MultiObjectiveGRPOConfig(**COMMON, scalarization="pama", multi_objective_aggregation="normalize_then_sum")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MultiObjectiveGRPOConfig(**COMMON, scalarization="pama")  # TRL's default: nothing to say


def test_prompt_aware_weights_with_both_channels_are_refused_before_any_model_loads(tmp_path):
    from tests.test_orchestrator import planted_checkpoint

    planted_checkpoint(tmp_path / "orchestrator", "mean")
    with pytest.raises(ValueError, match="'prompt_aware' with conditioning 'both'"):
        MultiObjectiveGRPOConfig(**COMMON, objectives=["b=python:tests.test_orchestrator:reward_b",
                                                       "a=python:tests.test_orchestrator:reward_a"],
                                 weights_mode="prompt_aware", orchestrator_name_or_path=str(tmp_path / "orchestrator"),
                                 conditioning="both")


def test_dirichlet_weights_the_policy_never_sees_are_refused():
    with pytest.raises(ValueError, match="conditioning 'none'"):
        MultiObjectiveGRPOConfig(**COMMON, weights_mode="dirichlet", conditioning="none")
    # the default conditioning for sampled weights shows them to the policy
    assert MultiObjectiveGRPOConfig(**COMMON, weights_mode="dirichlet").conditioning == "prompt"


def test_resume_from_checkpoint_has_trls_meaning(tmp_path):
    """A path resumes that checkpoint, true the last one (there must be one), false starts over; unset resumes the
    last one if there is one (rerunning an interrupted command), so starting over in a used folder takes `false`."""
    from types import SimpleNamespace

    from alignment.hub.checkpointing import checkpoint_to_resume

    def args(value):
        return SimpleNamespace(resume_from_checkpoint=value, output_dir=str(tmp_path / "run"))

    assert checkpoint_to_resume(args(None)) is None  # nothing there: a fresh start
    with pytest.raises(ValueError, match="no checkpoint-"):
        checkpoint_to_resume(args("true"))
    for step in (2, 4):
        (tmp_path / "run" / f"checkpoint-{step}").mkdir(parents=True)
        (tmp_path / "run" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    last = str(tmp_path / "run" / "checkpoint-4")
    assert checkpoint_to_resume(args(None)) == last and checkpoint_to_resume(args("true")) == last
    assert checkpoint_to_resume(args("false")) is None
    assert checkpoint_to_resume(args(str(tmp_path / "run" / "checkpoint-2"))) == str(tmp_path / "run" / "checkpoint-2")
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        checkpoint_to_resume(args(str(tmp_path / "elsewhere")))
