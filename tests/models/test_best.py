"""The best-state keeper: a deep copy at the best score, min and max, ties, non-finite scores."""
import math

import pytest
import torch
from torch import nn

from ecgnb.models.best import BestState, loss_callback


def test_the_kept_state_is_a_deep_copy():
    model = nn.Linear(3, 2)
    best = BestState("min")
    best.update(1, 0.5, model)
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)  # the live model moves on
    assert not best.update(2, 0.7, model)
    assert all(torch.equal(best.state[k], kept[k]) for k in kept)
    best.restore(model)
    assert all(torch.equal(model.state_dict()[k], kept[k]) for k in kept)


@pytest.mark.parametrize("mode, scores, epoch", [("min", [3.0, 1.0, 2.0, 1.0], 2),
                                                 ("max", [0.1, 0.5, 0.4, 0.5], 2)])
def test_min_and_max_keep_the_best_and_ties_keep_the_earlier_epoch(mode, scores, epoch):
    model, best = nn.Linear(2, 1), BestState(mode)
    kept = [best.update(e, s, model) for e, s in enumerate(scores, start=1)]
    assert kept == [True, True, False, False]
    assert best.epoch == epoch and best.score == scores[epoch - 1] and best.epochs_since == 2


def test_tuple_scores_rank_element_by_element():
    model, best = nn.Linear(2, 1), BestState("min")
    for epoch, score in enumerate([(-0.5, 2.0), (-0.7, 3.0), (-0.7, 1.0), (-0.7, 1.0)], start=1):
        best.update(epoch, score, model)
    assert best.epoch == 3 and best.score == (-0.7, 1.0)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_non_finite_scores_rank_last_but_the_first_update_is_kept(mode):
    model, best = nn.Linear(2, 1), BestState(mode)
    assert best.update(1, math.nan, model) and not best.is_finite
    assert not best.update(2, math.inf if mode == "min" else -math.inf, model)
    assert best.update(3, 1.0, model) and best.is_finite
    assert not best.update(4, math.nan, model) and best.epoch == 3


def test_bad_mode_and_restore_before_update_are_refused():
    with pytest.raises(ValueError, match="mode"):
        BestState("lower")
    with pytest.raises(RuntimeError, match="no state"):
        BestState().restore(nn.Linear(2, 1))


def test_loss_callback_numbers_epochs_from_the_first_of_this_fit():
    model, best = nn.Linear(2, 1), BestState("min")
    update = loss_callback(best, n_before=4)
    for epoch, loss in [(5, 2.0), (6, 1.0), (7, 1.5)]:
        update(model, {"epoch": epoch, "val_loss": loss})
    assert best.epoch == 2 and best.score == 1.0


def test_state_dict_round_trip_resumes_the_selection():
    net = torch.nn.Linear(2, 1)
    best = BestState("min")
    best.update(1, 0.5, net)
    best.update(2, 0.7, net)
    again = BestState("min")
    loss_callback(again).load_state_dict(loss_callback(best).state_dict())
    assert (again.epoch, again.score, again.epochs_since) == (1, 0.5, 1)
    assert again.update(3, 0.6, net) is False and again.epochs_since == 2
    with pytest.raises(ValueError, match="cannot resume"):
        BestState("max").load_state_dict(best.state_dict())
