"""The one training loop: epochs, checkpoints, best state, early stopping, history, callbacks.

Every fit of the workbook runs in a :class:`TrainingLoop`, as every model of minGPT runs in its
``Trainer``: a backbone's self-supervised fit (:meth:`ecgnb.models.base.Encoder.fit`) and a
classifier's fit (:func:`ecgnb.evaluation.train.fit_classifier`) bring only their epoch, a
function ``run_epoch(epoch, position, after_batch) -> record`` that trains one epoch and returns
its history record. The loop owns the rest:

- **Epochs** numbered from 1 within the fit, with a progress bar.
- **History**: each record is appended to the fit's ``history`` list (changed in place).
- **Best state**: with a :class:`~ecgnb.models.best.BestState`, the model's state is kept at the
  best ``score(record)`` (lower is better) and restored by the caller at the end.
- **Early stopping**: after ``patience`` epochs without a better score (0: never).
- **Callbacks**: ``callback(record)`` after each epoch (a stateful one's owner goes in
  ``parts``, so that it is checkpointed with the fit).
- **Checkpoints** (:mod:`ecgnb.models.checkpoint`): at an epoch end when the checkpointer says so
  and, for a fit whose epoch accepts a ``position``, within an epoch every ``every_s`` seconds.
  A checkpoint holds the ``parts`` (anything with ``state_dict``/``load_state_dict``: modules,
  optimisers, schedulers, the gradient scaler, the best state), the history, every random state
  and the epoch position; a fit started again with its own checkpoint resumes from it and ends
  as an uninterrupted fit would.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from tqdm.auto import tqdm

from ecgnb.models.best import BestState
from ecgnb.models.checkpoint import Checkpointer, rng_state, set_rng_state

RunEpoch = Callable[[int, "dict | None", "Callable[[dict], None] | None"], dict]


class TrainingLoop:
    """One fit's loop (see the module docstring). ``parts``: name -> object with ``state_dict`` and
    ``load_state_dict``; ``generators``: the ``torch.Generator`` s the fit draws from besides the
    global ones; ``show``: the record keys the progress bar shows."""

    def __init__(self, n_epochs: int, parts: dict[str, Any], history: list, generators=(),
                 checkpoint: Checkpointer | None = None, best: BestState | None = None,
                 score: Callable[[dict], Any] | None = None, model=None, patience: int = 0,
                 callbacks=(), desc: str = "fit", show=(), verbose: bool = True):
        self.n_epochs, self.history, self.generators = n_epochs, history, list(generators)
        self.checkpoint, self.best, self.score, self.model = checkpoint, best, score, model
        self.patience, self.callbacks, self.show = patience, list(callbacks), tuple(show)
        self.desc, self.verbose = desc, verbose
        self.parts = dict(parts)
        if best is not None:
            self.parts["best"] = best

    def run(self, run_epoch: RunEpoch, mid_epoch: bool = False) -> "TrainingLoop":
        """Run the epochs left (all of them, or those after the checkpoint's)."""
        n_done, position = self.resume()
        bar = tqdm(range(n_done + 1, self.n_epochs + 1), desc=self.desc, leave=False,
                   disable=not self.verbose, initial=n_done, total=self.n_epochs)
        for epoch in bar:
            if self.is_stopped:
                break  # a fit resumed after its last epoch
            record = run_epoch(epoch, position, self._batch_hook(epoch) if mid_epoch else None)
            position = None
            self._end_epoch(epoch, record)
            bar.set_postfix({key: _short(record[key]) for key in self.show if key in record},
                            **({"best": self.best.epoch} if self.best is not None else {}))
            if self.is_stopped:
                break
        return self

    @property
    def is_stopped(self) -> bool:
        """Whether ``patience`` epochs have passed without a better score."""
        return bool(self.patience and self.best is not None
                    and self.best.epochs_since >= self.patience)

    def _end_epoch(self, epoch: int, record: dict) -> None:
        self.history.append(record)
        if self.best is not None:
            self.best.update(epoch, self.score(record), self.model)
        for callback in self.callbacks:
            callback(record)
        if self.checkpoint is not None and self.checkpoint.due(end_of_epoch=True):
            self.checkpoint.save(self.state(epoch, None))

    def _batch_hook(self, epoch: int):
        checkpoint = self.checkpoint
        if checkpoint is None or checkpoint.every_s == 0:
            return None

        def after_batch(position: dict) -> None:
            if checkpoint.due(end_of_epoch=False):
                checkpoint.save(self.state(epoch - 1, position))
        return after_batch

    # ----------------------------------------------------------------- checkpoints
    def state(self, n_epochs_done: int, position: dict | None) -> dict:
        """Everything the fit has changed after ``n_epochs_done`` epochs (and ``position`` into
        the next one)."""
        return {"epochs_done": n_epochs_done, "position": position,
                "parts": {name: part.state_dict() for name, part in self.parts.items()},
                "history": self.history, "rng": rng_state(self.generators)}

    def resume(self) -> tuple[int, dict | None]:
        """Load the checkpoint when it is this fit's: ``(epochs done, position in the next)``."""
        saved = None if self.checkpoint is None else self.checkpoint.load()
        if saved is None:
            return 0, None
        for name, part in self.parts.items():
            part.load_state_dict(saved["parts"][name])
        self.history[:] = saved["history"]
        set_rng_state(saved["rng"], self.generators)
        position = saved["position"]
        self.checkpoint.resumed_from = {
            "epoch": saved["epochs_done"] + 1,  # the epoch it resumes in
            "batch": None if position is None else int(position["next"]), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        return saved["epochs_done"], position


class Parts:
    """A list of stateful objects (a fit's optimisers, its schedulers) as one part."""

    def __init__(self, items):
        self.items = list(items)

    def state_dict(self) -> list:
        return [item.state_dict() for item in self.items]

    def load_state_dict(self, states: list) -> None:
        if len(states) != len(self.items):
            raise ValueError(f"checkpoint holds {len(states)} states, the fit {len(self.items)}")
        for item, state in zip(self.items, states):
            item.load_state_dict(state)


def _short(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
