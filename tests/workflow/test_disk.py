"""ecgnb.workflow.disk: a sweep's space is estimated from its own grid's parameters."""
import json

import pytest

from ecgnb import runs
from ecgnb.runs import PROJECT_ROOT
from ecgnb.workflow import disk, sweep
from ecgnb.workflow.grid import load_grid

GRIDS = PROJECT_ROOT / "params" / "grids"
MB, GB = 1e6, 1e9


@pytest.fixture(scope="module")
def paper():
    return load_grid(GRIDS / "paper.yaml")  # the data's variables may be unset: nothing is read


@pytest.fixture(scope="module")
def demo():
    return load_grid(GRIDS / "demo.yaml")


def finished(folder, stage: str, size: int) -> None:
    folder.mkdir(parents=True)
    (folder / runs.SUCCESS).write_text(json.dumps(
        {"stage": stage, "artefacts": {"encoder.pt": {"size": size}}}))


def kept(grid, prefix: str) -> list[float]:
    return [disk.run_footprint(grid, n).kept for n in grid.runs if n.startswith(prefix)]


def test_the_paper_grid_is_estimated_in_the_right_order_of_magnitude(paper, tmp_path):
    # By hand, at the study's sizes, 4 bytes a weight:
    # - TS2Vec: 0.64 M weights, twice in encoder.pt (the averaged copy) = 5.1 MB; with the
    #   notebook, the history and the PCA of a held-out subject (7,000 points) about 8 MB;
    # - a TS2Vec finetuning run: 20 cells (2 heads x 2 modes x 5 seeds), each the network and a
    #   head (MLP 0.41 M, FCN 0.59 M weights): 20 x 1.1 M x 4 B = 90 MB (docs/performance.md's
    #   rehearsal measured 87 MB); while it runs, each cell's checkpoint adds the model once more
    #   and Adam's two moments: about 3x that;
    # - the baselines: 5 seeds x (H-InceptionTime 5 x 0.41 M + MLP 0.61 M + FCN 0.27 M weights)
    #   x 4 B = 58 MB (the rehearsal: 57 MB);
    # - the grid: 27 finetuning runs of 50-90 MB, the baselines, 27 encoders of 2.4-5 MB and
    #   their plots, 3 embeddings runs: about 2 GB kept, plus one run's checkpoints.
    assert all(5 * MB < k < 16 * MB for k in kept(paper, "pretraining/ts2vec"))
    assert all(80 * MB < k < 180 * MB for k in kept(paper, "finetuning/ts2vec"))
    assert all(55 * MB < k < 120 * MB for k in kept(paper, "finetuning/supervised"))
    footprint = disk.run_footprint(paper, "finetuning/ts2vec-ecg-f1.0")
    assert 2 * footprint.kept < footprint.transient < 5 * footprint.kept
    needed = disk.space_needed(paper, list(paper.runs), tmp_path / "paper")
    assert 1.5 * GB < needed < 5 * GB


# The demo grid's run folders, bytes per grid section, as `ECGNB_OUTPUTS=/tmp/o ecgnb run
# params/grids/demo.yaml --jobs 1` left them (40 runs; Intel Xeon, 2 cores, torch 2.13.0+cpu),
# and the largest checkpoints/ folder seen while each section ran (sampled every 2 s).
DEMO_SIZES = {"pretraining": 2_278_782, "regularization": 978_175, "finetuning": 27_939_933,
              "baselines": 13_809_990, "embeddings": 20_047_367}
DEMO_CHECKPOINTS = {"regularization": 1_209_000, "finetuning": 2_229_000, "baselines": 11_701_000}


def test_the_demo_grid_is_estimated_within_a_factor_2_above_its_measured_sizes(demo, tmp_path):
    for section, measured in DEMO_SIZES.items():
        names = [n for n, r in demo.runs.items() if r.section == section]
        estimate = sum(disk.run_footprint(demo, n).kept for n in names)
        assert measured < estimate < 2 * measured, section
    for section, measured in DEMO_CHECKPOINTS.items():
        largest = max(disk.run_footprint(demo, n).transient
                      for n, r in demo.runs.items() if r.section == section)
        assert measured < largest < 2 * measured, section
    needed = disk.space_needed(demo, list(demo.runs), tmp_path / "demo")
    peak = sum(DEMO_SIZES.values()) + max(DEMO_CHECKPOINTS.values())
    assert peak < needed < 1.5 * peak


def test_another_grids_runs_do_not_change_this_grids_estimate(paper, tmp_path):
    names = list(paper.runs)
    alone = disk.space_needed(paper, names, tmp_path / "paper")
    for i, stage in enumerate(["pretraining", "finetuning", "embeddings"] * 3):
        finished(tmp_path / "demo" / stage / f"run-{i}", stage, 2_000_000)  # the demo's MBs
    finished(tmp_path / "other" / "finetuning" / "big", "finetuning", int(50 * GB))
    assert disk.space_needed(paper, names, tmp_path / "paper") == alone
    line, fits = disk.space_line(paper, names, tmp_path / "paper")
    assert f"the {len(names)} run(s) to do need about {disk.human_size(alone)}" in line
    assert "\n" not in line


def test_this_grids_finished_runs_are_a_floor_of_the_estimate(demo, tmp_path):
    names = [n for n in demo.runs if n.startswith("pretraining/")]
    alone = disk.space_needed(demo, names, tmp_path / "demo")
    finished(tmp_path / "demo" / "pretraining" / "ts2vec-ecg", "pretraining", int(1 * GB))
    assert disk.space_needed(demo, names, tmp_path / "demo") > len(names) * GB > alone


def test_parallel_runs_hold_their_checkpoints_at_once(paper, tmp_path):
    names = [n for n in paper.runs if n.startswith("finetuning/")]
    one, four = (disk.space_needed(paper, names, tmp_path, n) for n in (1, 4))
    transient = sorted((disk.run_footprint(paper, n).transient for n in names), reverse=True)
    assert four - one == pytest.approx(sum(transient[1:4]))


def test_a_sweep_that_does_not_fit_stops_before_its_first_run(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path))
    monkeypatch.setattr(disk, "free_space", lambda folder: 5 * MB)
    executed = []
    with pytest.raises(disk.NotEnoughSpace) as info:
        sweep.run_sweep(demo, progress=False, execute=lambda *args: executed.append(args))
    assert executed == [] and "\n" not in str(info.value)
    assert f"the {len(demo.runs)} run(s) to do need about" in str(info.value)
    assert "5 MB free" in str(info.value)
    monkeypatch.setattr(disk, "free_space", lambda folder: 1e12)
    disk.check_space(demo, list(demo.runs), tmp_path / "demo")  # fits: no error


def test_a_12_lead_multilabel_card_sizes_its_classifiers_on_12_leads(monkeypatch):
    # The benchmark grid's target: channels all (12 leads), multilabel superdiagnostic (5 classes).
    grid = load_grid(GRIDS / "ptbxl-benchmark.yaml")
    name = next(n for n in grid.runs if n.startswith("finetuning/ts2vec"))
    params = disk.run_params(grid.runs[name])
    assert disk.n_leads(params) == 12 and disk.n_classes(params) == (5, True)
    one_lead = {**params, "target": ""}
    assert disk.n_leads(one_lead) == 1
    from ecgnb.models.hinception import build_baseline
    from ecgnb.workflow.disk import cell_configs, classifier_bytes
    # The raw MLP's first layer reads C x T samples: 12 leads are 12x its input weights.
    mlp = next(c for c, _ in cell_configs({**params, "baselines": ["mlp"]}, True, None))
    n = disk.window_length(params)
    twelve, one = (classifier_bytes(mlp, None, n, leads, 5)[1] for leads in (12, 1))
    first = build_baseline("mlp", 5, n, 0, 1).state_dict()
    first_layer = next(v for k, v in first.items() if k.endswith("weight")).numel() * 4
    assert twelve - one == pytest.approx(11 * first_layer, rel=0.01)
    # A linear probe on concatenated per-lead embeddings: 12 x the head's input weights.
    root = disk.run_params(disk.root_run(grid, grid.runs[name]))
    encoder = disk.encoder_of(root, disk.window_length(root))
    linear = next(c for c, _ in cell_configs({**params, "heads": ["linear"], "modes": ["lp"]},
                                              False, encoder.name))
    assert linear.lead_pooling == "concat"
    dim = encoder.trainable_network().embedding_dim
    heads = [classifier_bytes(linear, encoder, n, leads, 5)[1] for leads in (12, 1)]
    assert heads == [(12 * dim + 1) * 5 * 4, (dim + 1) * 5 * 4]
    # Multi-label predictions hold a truth and a probability column per class.
    multilabel = disk.run_footprint(grid, name).kept
    monkeypatch.setattr(disk, "n_classes", lambda params: (5, False))
    single = disk.run_footprint(grid, name).kept
    n_cells = len(params["heads"]) * len(params["modes"]) * len(params["seeds"])
    rows = n_cells * disk.split_windows(params)
    assert multilabel - single == pytest.approx(rows * 5 * disk.VALUE_BYTES)
