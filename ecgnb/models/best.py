"""The best state of a training run: checkpoint selection for pretraining, continuations and
downstream training alike.

:class:`BestState` keeps a deep copy of a model's ``state_dict()`` at the best score so far, with
its epoch and score. Which way is better is stated once, at construction (``"min"`` or ``"max"``).
A score is a number or a tuple of numbers (compared element by element: ``(-macro_f1, loss)``
ranks ties of F1 by the loss). A non-finite number ranks last. Ties keep the earlier epoch.
"""
from __future__ import annotations

import copy
import math

MODES = ("min", "max")


class BestState:
    """The best epoch so far (1-based, as the caller numbers it), its score, a deep copy of the
    state it was reached with, and how many updates since it (for early stopping).

    ``update(epoch, score, model)`` reads ``model.state_dict()`` only when ``score`` is better;
    ``restore(model)`` loads the kept state back. The first update is always kept (with a
    non-finite score too), so after one update there is a state to restore.
    """

    def __init__(self, mode: str = "min"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
        self.mode = mode
        self.score = None
        self.epoch: int | None = None
        self.state: dict | None = None
        self.epochs_since = 0

    def rank(self, score):
        """``score`` as compared: non-finite numbers ranked last."""
        if isinstance(score, tuple):
            return tuple(self.rank(s) for s in score)
        worst = math.inf if self.mode == "min" else -math.inf
        return float(score) if math.isfinite(score) else worst

    def is_better(self, score) -> bool:
        """Whether ``score`` beats the best so far (strictly: a tie is not better)."""
        if self.state is None:
            return True
        new, best = self.rank(score), self.rank(self.score)
        return new < best if self.mode == "min" else new > best

    def update(self, epoch: int, score, model) -> bool:
        """Keep ``model``'s state if ``score`` is better than the best so far; returns whether
        it was kept."""
        if not self.is_better(score):
            self.epochs_since += 1
            return False
        self.score, self.epoch, self.epochs_since = self.rank(score), epoch, 0
        self.state = copy.deepcopy(model.state_dict())
        return True

    @property
    def is_finite(self) -> bool:
        """Whether a state with a finite score is kept."""
        scores = self.score if isinstance(self.score, tuple) else (self.score,)
        return self.state is not None and all(math.isfinite(s) for s in scores)

    def state_dict(self) -> dict:
        """Everything kept, for a training checkpoint (:mod:`ecgnb.models.checkpoint`)."""
        return {"mode": self.mode, "score": self.score, "epoch": self.epoch, "state": self.state,
                "epochs_since": self.epochs_since}

    def load_state_dict(self, saved: dict) -> None:
        if saved["mode"] != self.mode:
            raise ValueError(f"a '{saved['mode']}' keeper cannot resume as '{self.mode}'")
        self.score, self.epoch, self.state = saved["score"], saved["epoch"], saved["state"]
        self.epochs_since = saved["epochs_since"]

    def restore(self, model):
        """Load the kept state into ``model``; returns ``model``."""
        if self.state is None:
            raise RuntimeError("no state kept yet: update() was never called")
        model.load_state_dict(self.state)
        return model


class LossCallback:
    """An ``Encoder.fit`` callback that updates ``best`` with each epoch's loss ``key``
    (``"val_loss"``: held out; ``"loss"``: training), the epochs numbered from the first of this
    ``fit`` (the encoder's history held ``n_before``). Its state is ``best``'s, so a checkpointed
    fit resumes its selection too."""

    def __init__(self, best: BestState, n_before: int = 0, key: str = "val_loss"):
        self.best, self.n_before, self.key = best, n_before, key

    def __call__(self, encoder, record: dict) -> None:
        self.best.update(record["epoch"] - self.n_before, record[self.key], encoder)

    def state_dict(self) -> dict:
        return self.best.state_dict()

    def load_state_dict(self, saved: dict) -> None:
        self.best.load_state_dict(saved)


def loss_callback(best: BestState, n_before: int = 0, key: str = "val_loss") -> LossCallback:
    """The :class:`LossCallback` of ``best`` on the loss ``key``."""
    return LossCallback(best, n_before, key)
