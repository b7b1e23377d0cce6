import math

import pytest
import torch

from alignment import PreferenceWeightsError, format_preference_weights, parse_preference_weights
from alignment.objectives.weights import parse_dirichlet_alpha, sample_dirichlet_weights

NAMES = ["helpful", "harmless"]


@pytest.mark.parametrize("given", ["helpful=0.7,harmless=0.3", "0.7, 0.3", {"helpful": 7, "harmless": 3}, [0.7, 0.3],
                                   torch.tensor([7.0, 3.0])])
def test_every_accepted_form_gives_the_same_normalized_weights(given):
    assert torch.allclose(parse_preference_weights(given, NAMES), torch.tensor([0.7, 0.3]))


def test_objectives_missing_from_a_mapping_get_zero_weight():
    assert parse_preference_weights("harmless=2", NAMES).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("given, message", [
    ("helpful=0.7,funny=0.3", "unknown objective(s) ['funny']"),
    ("helpful=-0.1,harmless=1", "weight for 'helpful' is -0.1"),
    ("helpful=nan,harmless=1", "must be finite"),
    ("helpful=inf,harmless=1", "must be finite"),
    ("helpful=0,harmless=0", "all weights are zero"),
    ([0.5, 0.3, 0.2], "got 3 weights for 2 objectives"),
    ("helpful=abc", "'abc', which is not a number"),
    ("helpful=0.5,0.5", "mixes 'name=value' and bare values"),
    ("helpful=0.5,helpful=0.5", "given twice"),
    ("", "empty string"),
    (3, "expected a string, mapping or list"),
])
def test_bad_weights_get_an_error_naming_the_problem(given, message):
    with pytest.raises(PreferenceWeightsError, match=None) as error:
        parse_preference_weights(given, NAMES)
    assert message in str(error.value)


def test_format_round_trips_through_parse():
    weights = parse_preference_weights("helpful=0.25,harmless=0.75", NAMES)
    text = format_preference_weights(weights, NAMES)
    assert text == "helpful=0.25,harmless=0.75"
    assert torch.allclose(parse_preference_weights(text, NAMES), weights)


def test_dirichlet_samples_are_on_the_simplex_and_depend_only_on_seed_and_key():
    alpha = parse_dirichlet_alpha(1.0, NAMES)
    first = sample_dirichlet_weights(alpha, ["a", "b", "a"], seed=3)
    assert first.shape == (3, 2)
    assert torch.allclose(first.sum(dim=1), torch.ones(3))
    assert (first >= 0).all()
    assert torch.equal(first[0], first[2])  # same key, same weights: one group shares its weights across ranks
    assert not torch.equal(first[0], first[1])
    assert torch.equal(first, sample_dirichlet_weights(alpha, ["a", "b", "a"], seed=3))
    assert not torch.equal(first, sample_dirichlet_weights(alpha, ["a", "b", "a"], seed=4))


def test_dirichlet_mean_matches_alpha():
    alpha = parse_dirichlet_alpha("helpful=3,harmless=1", NAMES)
    samples = sample_dirichlet_weights(alpha, [str(i) for i in range(4000)], seed=0)
    assert math.isclose(samples[:, 0].mean().item(), 0.75, abs_tol=0.02)


def test_dirichlet_alpha_must_be_positive():
    with pytest.raises(PreferenceWeightsError, match="> 0"):
        parse_dirichlet_alpha(0.0, NAMES)
