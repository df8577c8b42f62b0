"""Scenario corpora: channels per corpus, +target uses training fragments only, scenario recipes."""
import dataclasses

import numpy as np
import pytest

from ecgnb.data import corpora, scenarios
from ecgnb.data import DataError, split_grouped


@pytest.fixture(scope="module")
def target(fragment_small):
    return fragment_small, split_grouped(fragment_small, seed=0)


@pytest.mark.parametrize("name, domains", [
    ("ECG", {"ECG"}), ("All", {"ECG", "EMG", "EDA", "Temp", "Resp"}),
    ("no-ECG", {"EMG", "EDA", "Temp", "Resp"}), ("ECG+target", {"ECG", "target"}),
    ("All+target", {"ECG", "EMG", "EDA", "Temp", "Resp", "target"}), ("target", {"target"}),
])
def test_corpus_domains(embedded_small, target, name, domains):
    fragments, splits = target
    corpus = corpora.build_corpus(name, embedded_small["wesad"], fragments, splits)
    assert set(corpus.domains) == domains
    assert corpus.x.shape[1:] == (1, 720)
    assert (corpus.y[corpus.domains == "target"] == -1).all()  # target fragments are unlabelled


def test_no_target_validation_or_test_window_in_any_corpus(embedded_small, target):
    fragments, splits = target
    held_out = fragments.x[np.r_[splits["val"], splits["test"]], 0]
    train_records = set(fragments.groups[splits["train"]])
    for name in ("ECG+target", "All+target", "target"):
        corpus = corpora.build_corpus(name, embedded_small["wesad"], fragments, splits)
        tgt = corpus.subset(np.flatnonzero(corpus.domains == "target"))
        assert len(tgt) == len(splits["train"])
        assert set(tgt.groups) <= train_records
        # no window of the corpus equals any held-out fragment, sample for sample
        flat = {row.tobytes() for row in corpus.x[:, 0]}
        assert not any(row.tobytes() in flat for row in held_out)


def test_all_corpus_uses_the_study_fraction(embedded_small):
    full = corpora.build_corpus("All", embedded_small["wesad"], fraction=1.0)
    sub = corpora.build_corpus("All", embedded_small["wesad"])  # default 0.2 per subject
    assert abs(len(sub) / len(full) - 0.2) < 0.05


def test_perturbing_channels_subset(embedded_small):
    corpus = corpora.build_corpus("no-ECG", embedded_small["wesad"], channels=("EDA", "Resp"))
    assert set(corpus.domains) == {"EDA", "Resp"}


def test_corpus_errors(embedded_small, target):
    with pytest.raises(KeyError, match="unknown corpus"):
        corpora.build_corpus("ECG+noise", embedded_small["wesad"])
    with pytest.raises(DataError, match="needs the target fragments"):
        corpora.build_corpus("ECG+target", embedded_small["wesad"])


def test_holdout_subject_is_the_last_subject(wesad_ecg_small):
    train, held = corpora.holdout_subject(wesad_ecg_small)
    subjects = sorted(set(wesad_ecg_small.groups), key=lambda s: int(s[1:]))
    assert set(held.groups) == {subjects[-1]} and subjects[-1] not in set(train.groups)


def test_nine_scenarios_and_their_parents():
    assert list(scenarios.SCENARIOS) == [
        "untrained", "ECG", "All", "ECG+target", "All+target", "All extended", "ECG continued1",
        "ECG continued30", "ECG extended", "continued1 + extended"]
    get = scenarios.get
    assert get("ECG continued1").parent.name == "ECG"
    assert get("All extended").parent.name == "All"
    assert get("continued1 + extended").parent.name == "ECG continued1"
    assert get("ECG continued30").last_step.n_epochs == 30
    assert get("ECG extended").last_step.corpus == "target"
    assert scenarios.slug("continued1 + extended") == "continued1-extended"
    assert not get("untrained").trained and get("untrained").parent is None
    assert "untrained" not in scenarios.BASE_SCENARIOS
    with pytest.raises(KeyError, match="unknown scenario"):
        get("ECG continued2")


def test_one_root_alone_warns_and_the_warning_lands_in_the_run(embedded_small, tmp_path,
                                                                monkeypatch):
    from ecgnb import runs
    from ecgnb.config import DataWarning
    monkeypatch.setenv("ECGNB_DATA", str(embedded_small["fragment"].parents[1]))
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path))
    out = runs.start_stage(corpora.DataConfig(), "exploration")
    roots = corpora.data_roots(str(embedded_small["fragment"]), "", small=True)  # shown, recorded
    assert roots["wesad"] == embedded_small["wesad"]
    recorded = runs.read_json(out / runs.CONFIG)["warnings"]
    assert len(recorded) == 1 and "['wesad'] data are the embedded synthetic data" in recorded[0]
    with pytest.warns(DataWarning, match="embedded synthetic"):
        corpora.data_roots(str(embedded_small["fragment"]), "", small=True)


# ------------------------------------------------------------ the study's corpora and the target
def test_no_ecg_corpus_of_continued1_is_the_studys_20_percent_stratified(embedded_small):
    """Under the study recipe, continued1 perturbs on 20 % of each subject's windows, drawn per
    label, the same windows for every channel (the study: 83,876 = 20,969 x 4 channels)."""
    from ecgnb.regularization import RegularizationConfig
    cfg = RegularizationConfig(scenario="ECG continued1", recipe="study")
    full = corpora.build_corpus(cfg.step.corpus, embedded_small["wesad"], fraction=1.0)
    sub = corpora.build_corpus(cfg.step.corpus, embedded_small["wesad"],
                               fraction=cfg.corpus_fraction)
    assert set(sub.domains) == {"EMG", "EDA", "Temp", "Resp"}
    for subject in np.unique(full.groups):
        for label in np.unique(full.y):
            n_full = np.sum((full.groups == subject) & (full.y == label) & (full.domains == "EDA"))
            n_sub = np.sum((sub.groups == subject) & (sub.y == label) & (sub.domains == "EDA"))
            assert n_sub == max(1, round(0.2 * n_full)) if n_full else n_sub == 0
        per_channel = [sub.y[(sub.groups == subject) & (sub.domains == c)] for c in
                       ("EMG", "EDA", "Temp", "Resp")]
        assert all(np.array_equal(per_channel[0], other) for other in per_channel[1:])
    assert len(sub) % 4 == 0 and abs(len(sub) / len(full) - 0.2) < 0.02


def small_data(embedded_small, **kw) -> corpora.DataConfig:
    return corpora.DataConfig(fragment_root=str(embedded_small["fragment"]),
                              wesad_root=str(embedded_small["wesad"]), **kw)


def test_target_windows_reach_the_encoder_zscored_like_pretraining(embedded_small, fragment_small):
    fragments, _ = corpora.target_task(small_data(embedded_small))
    assert np.allclose(fragments.x.mean(-1), 0, atol=1e-4)
    assert np.allclose(fragments.x.std(-1), 1, atol=1e-3)
    raw, _ = corpora.target_task(small_data(embedded_small, normalization="none"))
    assert np.array_equal(raw.x, fragment_small.x)
    # the "+target" corpora carry the same normalised fragments as the downstream task
    train, _ = corpora.load_corpus("ECG+target", small_data(embedded_small))
    tgt = train.x[train.domains == corpora.TARGET_DOMAIN]
    assert np.allclose(tgt.std(-1), 1, atol=1e-3)
    with pytest.raises(ValueError, match="normalization"):
        corpora.DataConfig(normalization="minmax")


def test_mismatched_normalisation_and_leaked_split_are_refused(embedded_small):
    data = small_data(embedded_small)
    fragments, splits = corpora.target_task(data)
    train, val = corpora.load_corpus("ECG+target", data)
    exposure = corpora.target_exposure(data, train, val)
    assert exposure["normalization"] == "zscore"
    assert set(exposure["target_split"]["records"]) == set(fragments.groups[splits["train"]])
    lineage = [{"stage": "pretrain", "scenario": "ECG+target", **exposure}]
    corpora.check_encoder_data(lineage, data, fragments, splits)  # same split: fine
    with pytest.raises(DataError, match="normalisation 'zscore'"):
        corpora.check_encoder_data(lineage, small_data(embedded_small, normalization="none"))
    # another split whose validation holds records the encoder was pretrained on
    leaked = {"train": splits["val"], "val": splits["train"], "test": splits["test"]}
    with pytest.raises(DataError, match="saw target records .* in the 'val' split"):
        corpora.check_encoder_data(lineage, data, fragments, leaked)
    # an encoder that never saw the target can be evaluated on any split
    corpora.check_encoder_data([{"normalization": "zscore"}], data, fragments, leaked)
    # the records of another target (a card) are no leak into this one, the same card's are
    card = dataclasses.replace(data, target="params/datasets/embedded-fragment.yaml")
    corpora.check_encoder_data(lineage, card, fragments, leaked)
    carded = [{**lineage[0], **corpora.target_exposure(card, train, val)}]
    with pytest.raises(DataError, match="saw target records"):
        corpora.check_encoder_data(carded, card, fragments, leaked)


def test_every_scored_split_must_hold_every_class(target):
    fragments, splits = target
    corpora.check_classes(fragments, splits)
    no_vf = {**splits, "test": splits["test"][fragments.y[splits["test"]] != 0]}
    with pytest.raises(DataError, match="split 'test' has no window of class"):
        corpora.check_classes(fragments, no_vf)
