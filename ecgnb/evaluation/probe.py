"""A quick linear probe of an encoder on the target task (a diagnostic of stages 02 and 03), and
the embeddings of multi-lead windows it reads (:func:`embed`)."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgnb.data import Windows
from ecgnb.evaluation.multilabel import multilabel_metrics
from ecgnb.models.base import Encoder
from ecgnb.models.leads import encode_leads


def probe(encoder: Encoder, fragments: Windows, splits: dict[str, np.ndarray],
          seed: int = 0) -> dict[str, float]:
    """Quick logistic-regression probe: fit on the target training split, score on validation
    (a diagnostic: the test split is left for notebook 04). Records of C > 1 leads: each lead
    encoded on its own, the embeddings concatenated; a multi-label task: one probe per class,
    scored by validation macro-AUROC."""
    train, val = (fragments.subset(splits[k]) for k in ("train", "val"))
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(max_iter=2000, C=0.5, random_state=seed))
    if fragments.is_multilabel:
        model = OneVsRestClassifier(model)
        model.fit(embed(encoder, train.x), train.indicator())
        scores = multilabel_metrics(val.indicator(), model.predict_proba(embed(encoder, val.x)),
                                    fragments.classes, threshold=0.5)
        return {"val_macro_auroc": scores["macro_auroc"]}
    model.fit(embed(encoder, train.x), train.y)
    pred = model.predict(embed(encoder, val.x))
    return {"val_balanced_accuracy": float(balanced_accuracy_score(val.y, pred)),
            "val_macro_f1": float(f1_score(val.y, pred, labels=np.arange(len(fragments.classes)),
                                           average="macro", zero_division=0))}


def embed(encoder: Encoder, x: np.ndarray) -> np.ndarray:
    """Embeddings of windows ``[N, C, T]``: the encoder's, of each lead on its own and
    concatenated when C > 1 (``[N, C*D]``)."""
    return encode_leads(encoder, x, "concat")
