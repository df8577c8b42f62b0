"""A quick linear probe of an encoder on the target task (a diagnostic of stages 02 and 03)."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgnb.data import Windows
from ecgnb.models.base import Encoder


def probe(encoder: Encoder, fragments: Windows, splits: dict[str, np.ndarray],
          seed: int = 0) -> dict[str, float]:
    """Quick logistic-regression probe: fit on the target training split, score on validation
    (a diagnostic: the test split is left for notebook 04)."""
    train, val = (fragments.subset(splits[k]) for k in ("train", "val"))
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(max_iter=2000, C=0.5, random_state=seed))
    model.fit(encoder.encode(train.x), train.y)
    pred = model.predict(encoder.encode(val.x))
    return {"val_balanced_accuracy": float(balanced_accuracy_score(val.y, pred)),
            "val_macro_f1": float(f1_score(val.y, pred, labels=np.arange(len(fragments.classes)),
                                           average="macro", zero_division=0))}
