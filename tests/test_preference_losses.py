"""Each preference loss against values worked out by hand from its formula on small tensors."""

import math

import pytest
import torch

from alignment import (
    cardinal_dpo_loss,
    dpo_loss,
    labels_from_ranks,
    labels_from_reward_vector,
    lipo_lambda_loss,
    mah_dpo_loss,
    mdpo_loss,
    mipo_loss,
    modpo_loss,
)
from alignment.trainers.preference_losses import (
    ipo_loss,
    modpo_objective_margin,
    per_objective_dpo_losses,
    scalarized_dpo_loss,
)
from tests.helpers import neg_log_sigmoid


def test_dpo_loss_matches_minus_log_sigmoid_of_scaled_logratio_gap():
    chosen, rejected = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 1.0])
    losses = dpo_loss(chosen, rejected, beta=0.5)
    expected = [neg_log_sigmoid(0.5 * (2 - 1)), neg_log_sigmoid(0.5 * (-1 - 1))]
    assert torch.allclose(losses, torch.tensor(expected), atol=1e-6)


def test_cardinal_weight_mode_scales_each_pair_by_its_score_gap_and_ties_vanish():
    chosen, rejected = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 3.0])
    gap = torch.tensor([4.0, 0.0, 0.5])
    losses = cardinal_dpo_loss(chosen, rejected, gap, beta=1.0, mode="weight", scale=0.5)
    expected = [2.0 * neg_log_sigmoid(1.0), 0.0, 0.25 * neg_log_sigmoid(-2.0)]
    assert torch.allclose(losses, torch.tensor(expected), atol=1e-6)


def test_cardinal_offset_mode_demands_a_margin_that_grows_with_the_gap():
    chosen, rejected = torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0])
    gap = torch.tensor([1.0, 6.0])
    losses = cardinal_dpo_loss(chosen, rejected, gap, beta=0.1, mode="offset", scale=0.2)
    expected = [neg_log_sigmoid(0.1 * 1 - 0.2 * 1), neg_log_sigmoid(0.1 * 1 - 0.2 * 6)]
    assert torch.allclose(losses, torch.tensor(expected), atol=1e-6)
    assert losses[1] > losses[0]


def test_cardinal_rejects_negative_gap_and_unknown_mode():
    one = torch.ones(1)
    with pytest.raises(ValueError, match="negative"):
        cardinal_dpo_loss(one, one, -one, beta=0.1)
    with pytest.raises(ValueError, match="unknown mode"):
        cardinal_dpo_loss(one, one, one, beta=0.1, mode="scale")


def test_modpo_divides_by_trained_weight_and_subtracts_weighted_margin_gap():
    chosen, rejected = torch.tensor([3.0]), torch.tensor([1.0])
    chosen_margins, rejected_margins = torch.tensor([[0.5, 2.0]]), torch.tensor([[1.5, 1.0]])
    weights = torch.tensor([0.5, 0.3, 0.2])
    losses = modpo_loss(chosen, rejected, chosen_margins, rejected_margins, weights, beta=0.1)
    margin_gap = 0.3 * (0.5 - 1.5) + 0.2 * (2.0 - 1.0)  # -0.1
    expected = neg_log_sigmoid((0.1 * (3 - 1) - margin_gap) / 0.5)
    assert losses.item() == pytest.approx(expected, abs=1e-6)
    # the logit is the trained objective's implied reward gap, logged as its held-out margin
    margin = modpo_objective_margin(chosen, rejected, chosen_margins, rejected_margins, weights, beta=0.1)
    assert margin.item() == pytest.approx((0.2 + 0.1) / 0.5, abs=1e-6)


def test_modpo_with_all_weight_on_trained_objective_is_dpo():
    chosen, rejected = torch.tensor([0.3, -2.0]), torch.tensor([0.1, 0.4])
    margins = torch.tensor([[5.0], [-3.0]])
    losses = modpo_loss(chosen, rejected, margins, torch.zeros(2, 1), torch.tensor([1.0, 0.0]), beta=0.2)
    assert torch.allclose(losses, dpo_loss(chosen, rejected, beta=0.2))


def test_modpo_rejects_zero_trained_weight_and_wrong_weight_count():
    one = torch.ones(1)
    with pytest.raises(ValueError, match="w_0"):
        modpo_loss(one, one, torch.ones(1, 1), torch.ones(1, 1), torch.tensor([0.0, 1.0]), beta=0.1)
    with pytest.raises(ValueError, match="one weight per objective"):
        modpo_loss(one, one, torch.ones(1, 1), torch.ones(1, 1), torch.tensor([1.0]), beta=0.1)


def test_mah_dpo_averages_per_head_means_over_heads_present():
    chosen = torch.tensor([1.0, 2.0, 3.0])
    rejected = torch.zeros(3)
    head_ids = torch.tensor([0, 0, 2])
    loss, per_head = mah_dpo_loss(chosen, rejected, head_ids, beta=1.0)
    head0 = (neg_log_sigmoid(1.0) + neg_log_sigmoid(2.0)) / 2
    head2 = neg_log_sigmoid(3.0)
    assert set(per_head) == {0, 2}
    assert loss.item() == pytest.approx((head0 + head2) / 2, abs=1e-6)


def test_ipo_regresses_the_logratio_margin_onto_half_inverse_beta():
    chosen, rejected = torch.tensor([2.0, 0.5, 4.0]), torch.tensor([1.0, 1.5, 1.0])
    losses = ipo_loss(chosen, rejected, beta=0.25)  # target 1 / (2 * 0.25) = 2
    assert torch.allclose(losses, torch.tensor([(1.0 - 2) ** 2, (-1.0 - 2) ** 2, (3.0 - 2) ** 2]), atol=1e-6)
    # unlike DPO, a margin past the target is pulled back: zero loss at the target, the same loss 1 either side
    assert ipo_loss(torch.tensor([2.0]), torch.tensor([0.0]), beta=0.25).item() == 0.0
    # mIPO on groups of one is IPO
    assert torch.allclose(mipo_loss(chosen[:, None], rejected[:, None], beta=0.25), losses)


def test_mdpo_compares_group_means():
    chosen = torch.tensor([[1.0, 3.0]])
    rejected = torch.tensor([[0.0, -2.0]])
    loss = mdpo_loss(chosen, rejected, beta=0.5)
    assert loss.item() == pytest.approx(neg_log_sigmoid(0.5 * (2.0 - (-1.0))), abs=1e-6)


def test_mdpo_mask_leaves_padding_out_of_the_mean():
    chosen = torch.tensor([[1.0, 100.0]])
    rejected = torch.tensor([[0.0, -2.0]])
    loss = mdpo_loss(chosen, rejected, beta=1.0, chosen_mask=torch.tensor([[1, 0]]))
    assert loss.item() == pytest.approx(neg_log_sigmoid(1.0 - (-1.0)), abs=1e-6)


def test_mipo_regresses_group_mean_gap_onto_half_inverse_beta():
    chosen = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    rejected = torch.tensor([[0.0, -2.0], [1.0, 1.0]])
    loss = mipo_loss(chosen, rejected, beta=0.25)
    expected = [(3.0 - 2.0) ** 2, (-1.0 - 2.0) ** 2]
    assert torch.allclose(loss, torch.tensor(expected))


def _hand_lipo_pairs():
    """The 3-list of the LiPO tests: ranks under scores (2, 0, 1) are (1, 3, 2); gains 2^psi - 1 are
    (1, 0, sqrt2 - 1); 1/D = 1/log2(1 + rank) (LiPO's Algorithm 1 and RAX)."""
    gain = [1.0, 0.0, math.sqrt(2.0) - 1.0]
    inv_d = [1 / math.log2(2), 1 / math.log2(4), 1 / math.log2(3)]
    scores = [2.0, 0.0, 1.0]
    return [abs(gain[i] - gain[j]) * abs(inv_d[i] - inv_d[j]) * math.log(1 + math.exp(-(scores[i] - scores[j])))
            for i, j in [(0, 1), (0, 2), (2, 1)]]  # the pairs with psi_i > psi_j


def test_lipo_lambda_matches_hand_computed_lambda_weights():
    logratios = torch.tensor([[2.0, 0.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0, 0.5]])
    pairs = _hand_lipo_pairs()
    summed = lipo_lambda_loss(logratios, labels, beta=1.0, reduction="sum")
    assert summed.item() == pytest.approx(sum(pairs), abs=1e-6)
    # RAX (the call of LiPO's Algorithm 1): lambda weights times the list size 3, mean over the 3 valid pairs
    rax = lipo_lambda_loss(logratios, labels, beta=1.0)
    assert rax.item() == pytest.approx(3 * sum(pairs) / 3, abs=1e-6)
    # two lists in a batch: the mean runs over the 6 pairs of both, not per list
    batch = lipo_lambda_loss(torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.5]] * 2), 1.0)
    tied = [abs(g_i - g_j) * abs(d_i - d_j) * math.log(2) for (g_i, d_i), (g_j, d_j) in
            [((1, 1 / math.log2(2)), (0, 1 / math.log2(3))), ((1, 1), (math.sqrt(2) - 1, 1 / math.log2(4))),
             ((math.sqrt(2) - 1, 1 / math.log2(4)), (0, 1 / math.log2(3)))]]  # ties rank in index order: 1, 2, 3
    assert batch.item() == pytest.approx(3 * (sum(pairs) + sum(tied)) / 6, abs=1e-5)
    with pytest.raises(ValueError, match="unknown reduction"):
        lipo_lambda_loss(logratios, labels, beta=1.0, reduction="mean")


def test_lipo_lambda_mask_drops_padded_responses_and_gradients_flow_to_scores():
    logratios = torch.tensor([[2.0, 0.0, 1.0, 50.0]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 0.5, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    for reduction in ("rax", "sum"):
        masked = lipo_lambda_loss(logratios, labels, beta=1.0, mask=mask, reduction=reduction)
        unpadded = lipo_lambda_loss(logratios[:, :3].detach(), labels[:, :3], beta=1.0, reduction=reduction)
        assert masked.item() == pytest.approx(unpadded.item(), abs=1e-6)
    masked.sum().backward()
    assert logratios.grad[0, 3] == 0 and logratios.grad[0, 0] < 0


def test_list_labels_from_weighted_reward_vectors_and_ranks():
    reward_vector = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    helpful_first = labels_from_reward_vector(reward_vector, torch.tensor([0.8, 0.2]))
    # scalarized: 0.8, 0.2, 0.5 -> min-max scaled
    assert torch.allclose(helpful_first, torch.tensor([1.0, 0.0, 0.5]), atol=1e-6)
    assert torch.allclose(labels_from_ranks(torch.tensor([2, 1, 3])), torch.tensor([0.5, 1.0, 0.0]))


# Per-objective DPO: two pairs, beta = 1, logratio gaps Delta = (1 - 0, 0 - 1) = (+1, -1).
# Pair 0: chosen better on objective 0 (label +1), rejected better on objective 1 (-1):
#   L_00 = -log sig(+1 * 1) = log(1 + e^-1) = 0.3132617, L_01 = -log sig(-1 * 1) = log(1 + e^1) = 1.3132617.
# Pair 1: Delta = -1, label +1 on objective 0, no label (0) on objective 1: L_10 = log(1 + e^1), L_11 missing.
PER_OBJECTIVE_LABELS = torch.tensor([[1, -1], [1, 0]])
LOG_1P_EXP_M1, LOG_1P_EXP_1 = 0.3132617, 1.3132617


def per_objective_example():
    return per_objective_dpo_losses(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), PER_OBJECTIVE_LABELS, beta=1.0)


def test_per_objective_dpo_gives_one_loss_per_labelled_objective_with_the_labels_sign():
    losses = per_objective_example()
    assert torch.allclose(losses[0], torch.tensor([LOG_1P_EXP_M1, LOG_1P_EXP_1]), atol=1e-6)
    assert abs(losses[1, 0].item() - LOG_1P_EXP_1) < 1e-6 and math.isnan(losses[1, 1].item())


def test_per_objective_linear_is_the_weighted_sum_over_labelled_objectives():
    weights = torch.tensor([[0.25, 0.75], [0.5, 0.5]])  # one lambda per pair
    got = scalarized_dpo_loss(per_objective_example(), weights, "linear")
    # pair 0: 0.25 * 0.3132617 + 0.75 * 1.3132617 = 1.0632617; pair 1: 0.5 * 1.3132617 (objective 1 has no label)
    assert torch.allclose(got, torch.tensor([1.0632617, 0.6566309]), atol=1e-6)


def test_per_objective_tchebycheff_is_the_largest_weighted_loss_and_only_it_gets_a_gradient():
    chosen = torch.tensor([1.0, 0.0], requires_grad=True)
    losses = per_objective_dpo_losses(chosen, torch.tensor([0.0, 1.0]), PER_OBJECTIVE_LABELS, beta=1.0)
    got = scalarized_dpo_loss(losses, torch.tensor([0.25, 0.75]), "tchebycheff")  # one lambda for both pairs
    # pair 0: max(0.25 * 0.3132617, 0.75 * 1.3132617) = 0.9849463; pair 1: 0.25 * 1.3132617 = 0.3283154
    assert torch.allclose(got, torch.tensor([0.9849463, 0.3283154]), atol=1e-6)
    got[0].backward()
    # d/dchosen_0 of 0.75 * -log sig(-(c - r)) = 0.75 * sig(c - r) = 0.75 * sig(1): objective 1 alone carries it
    assert abs(chosen.grad[0].item() - 0.75 / (1 + math.exp(-1))) < 1e-6
    # with the weight moved to objective 0 the other objective becomes the bottleneck
    flipped = scalarized_dpo_loss(per_objective_example(), torch.tensor([0.95, 0.05]), "tchebycheff")
    assert abs(flipped[0].item() - 0.95 * LOG_1P_EXP_M1) < 1e-6


def test_per_objective_refuses_scalarizations_that_do_not_apply_to_losses():
    with pytest.raises(ValueError, match="scalarization 'worst_case' does not apply to losses"):
        scalarized_dpo_loss(per_objective_example(), torch.tensor([0.5, 0.5]), "worst_case")


def test_modpo_with_one_weight_vector_per_pair():
    """Prompt-aware weights: each pair uses its own row of [N, K] weights (hand-computed), the same as running the
    pairs one by one with their own [K] vector."""
    chosen, rejected = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 2.0])
    chosen_margins, rejected_margins = torch.tensor([[0.5], [1.0]]), torch.tensor([[1.5], [-1.0]])
    weights = torch.tensor([[0.8, 0.2], [0.25, 0.75]])
    margins = modpo_objective_margin(chosen, rejected, chosen_margins, rejected_margins, weights, beta=0.1)
    expected = [(0.1 * 2 - 0.2 * (0.5 - 1.5)) / 0.8, (0.1 * -1 - 0.75 * (1.0 + 1.0)) / 0.25]  # 0.5, -6.4
    assert margins.tolist() == pytest.approx(expected, abs=1e-6)
    for n in range(2):
        alone = modpo_loss(chosen[n:n + 1], rejected[n:n + 1], chosen_margins[n:n + 1], rejected_margins[n:n + 1],
                           weights[n], beta=0.1)
        assert alone.item() == pytest.approx(neg_log_sigmoid(expected[n]), abs=1e-6)
    with pytest.raises(ValueError, match=r"one row per pair"):
        modpo_loss(chosen, rejected, chosen_margins, rejected_margins, weights[:1], beta=0.1)
    with pytest.raises(ValueError, match="w_0"):
        modpo_loss(chosen, rejected, chosen_margins, rejected_margins, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), beta=0.1)
