"""The nine pretraining scenarios of the study and the "untrained" reference, declared once.

A scenario = a base pretraining corpus (notebook 02) followed by zero or more continuation steps
(notebook 03), each a corpus and a number of epochs, starting from the previous checkpoint with a
fresh optimiser and the unchanged SSL objective. "untrained" is the same network at its initial
weights (notebook 02 with 0 epochs): fine-tuned and probed like every other encoder, it answers
"did pretraining help?" with the same cells and intervals. A corpus card's path
(``params/datasets/*.yaml``, :mod:`ecgnb.data.cards`) is a scenario too: pretraining on it.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Step:
    """One continuation: SSL training continued on ``corpus`` for ``n_epochs``."""

    name: str  # "continued" (other physiological domains) or "extended" (target fragments)
    corpus: str
    n_epochs: int


CONTINUED1 = Step("continued1", "no-ECG", 1)
CONTINUED30 = Step("continued30", "no-ECG", 30)
EXTENDED = Step("extended", "target", 60)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    corpus: str  # base pretraining corpus (ecgnb.data.corpora)
    steps: tuple[Step, ...] = ()
    trained: bool = True  # False: no SSL at all, the encoder at its initial weights (a reference)

    @property
    def parent(self) -> "Scenario | None":
        """The scenario whose final checkpoint this one continues (None for a base scenario)."""
        if not self.steps:
            return None
        return _by_recipe(self.corpus, self.steps[:-1])

    @property
    def last_step(self) -> Step | None:
        return self.steps[-1] if self.steps else None


UNTRAINED = "untrained"
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(UNTRAINED, "ECG", trained=False),  # built (not trained) beside the ECG corpus
    Scenario("ECG", "ECG"),
    Scenario("All", "All"),
    Scenario("ECG+target", "ECG+target"),
    Scenario("All+target", "All+target"),
    Scenario("All extended", "All", (EXTENDED,)),
    Scenario("ECG continued1", "ECG", (CONTINUED1,)),
    Scenario("ECG continued30", "ECG", (CONTINUED30,)),
    Scenario("ECG extended", "ECG", (EXTENDED,)),
    Scenario("continued1 + extended", "ECG", (CONTINUED1, EXTENDED)),
)}
BASE_SCENARIOS = tuple(name for name, s in SCENARIOS.items() if not s.steps and s.trained)


def get(name: str) -> Scenario:
    """The scenario ``name``: one of :data:`SCENARIOS`, or pretraining on the corpus card at the
    path ``name`` (``*.yaml``)."""
    if name in SCENARIOS:
        return SCENARIOS[name]
    if str(name).endswith((".yaml", ".yml")):
        return Scenario(name, name)
    raise KeyError(f"unknown scenario '{name}'; known: {list(SCENARIOS)} or a corpus card "
                   "(params/datasets/*.yaml)")


def _by_recipe(corpus: str, steps: tuple[Step, ...]) -> Scenario:
    for scenario in SCENARIOS.values():
        if scenario.corpus == corpus and scenario.steps == steps and scenario.trained:
            return scenario
    raise KeyError(f"no scenario with corpus {corpus} and steps {steps}")


def slug(name: str) -> str:
    """File-name form of a scenario name: ``ECG continued1`` -> ``ecg-continued1``; a corpus
    card's path -> its file stem (``params/datasets/my-corpus.yaml`` -> ``my-corpus``)."""
    if str(name).endswith((".yaml", ".yml")):
        name = str(name).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return name.lower().replace(" + ", "-").replace("+", "-").replace(" ", "-")
