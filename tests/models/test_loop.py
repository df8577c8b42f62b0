"""The one training loop: history, best state, early stopping, callbacks and a resumed fit."""
import pytest
import torch
from torch import nn

from ecgnb.models.best import BestState
from ecgnb.models.checkpoint import Checkpointer
from ecgnb.models.loop import Parts, TrainingLoop


def scripted_epochs(model: nn.Linear, losses: list[float]):
    """An epoch that sets the weight to the epoch number and reports a scripted loss."""
    def run_epoch(epoch, position, after_batch):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        return {"epoch": epoch, "loss": losses[epoch - 1]}
    return run_epoch


def test_the_loop_keeps_the_best_state_and_stops_after_patience():
    model, history, seen = nn.Linear(1, 1), [], []
    best = BestState("min")
    loop = TrainingLoop(10, {"model": model}, history, best=best, model=model, patience=2,
                        score=lambda r: r["loss"], callbacks=[seen.append], verbose=False)
    loop.run(scripted_epochs(model, [3.0, 1.0, 2.0, 2.0, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1]))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] == [r["epoch"] for r in seen]
    assert best.epoch == 2 and loop.is_stopped
    best.restore(model)
    assert model.weight.item() == 2.0


def test_a_fit_started_again_resumes_after_its_checkpoint(tmp_path):
    losses = [4.0, 3.0, 2.0, 1.0]

    def fit(n_epochs):
        model, history = nn.Linear(1, 1), []
        checkpoint = Checkpointer(tmp_path / "fit.pt", {"fit": "scripted"}, every_s=0)
        loop = TrainingLoop(n_epochs, {"model": model}, history, checkpoint=checkpoint,
                            verbose=False)
        loop.run(scripted_epochs(model, losses))
        return model, history, checkpoint

    fit(2)  # "killed" after epoch 2: its checkpoint holds 2 epochs
    model, history, checkpoint = fit(4)
    assert checkpoint.resumed_from["epoch"] == 3
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] and model.weight.item() == 4.0


def test_parts_refuse_a_checkpoint_of_another_length():
    parts = Parts([nn.Linear(1, 1)])
    with pytest.raises(ValueError, match="1 states, the fit 1|holds 2"):
        parts.load_state_dict([{}, {}])
