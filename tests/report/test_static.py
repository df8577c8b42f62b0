"""The README's figures: PNG images written from a results table, without a browser."""
from ecgnb import cli
from ecgnb.report import grid_report, static
from ecgnb.report.collect import synthetic_results, write_csv


def test_figures_are_png_images_of_the_synthetic_results(tmp_path):
    frame = synthetic_results(n_seeds=3, fractions=(1.0, 0.2))
    written = static.write_figures(frame, tmp_path / "docs")
    assert [p.name for p in written] == list(static.FIGURES)
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_one_fraction_has_no_label_efficiency_curve(tmp_path):
    written = static.write_figures(synthetic_results(n_seeds=2), tmp_path)
    assert [p.name for p in written] == ["pretrained_vs_untrained.png", "study_table.png"]


def test_report_command_writes_the_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path / "outputs"))
    built = {}

    def build_report(target, use_notebook=True):  # the tables are tested in test_build.py
        out = tmp_path / "outputs" / target / "report"
        write_csv(synthetic_results(n_seeds=2, fractions=(1.0, 0.1)), out.parent / "results.csv")
        built[target] = use_notebook
        return out

    monkeypatch.setattr(grid_report, "build_report", build_report)
    assert cli.main(["report", "demo", "--no-notebook", "--figures", str(tmp_path / "docs")]) == 0
    assert built == {"demo": False}
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == sorted(static.FIGURES)


def test_chance_is_one_over_the_task_s_classes():
    frame = synthetic_results(n_seeds=2)
    assert static.n_classes(frame) == static.N_CLASSES  # a table that does not say: the Fragment DB's
    fig = static.pretrained_vs_untrained(frame.assign(n_classes=5))
    chance = [line.get_ydata()[0] for ax in fig.axes for line in ax.get_lines()
              if line.get_linestyle() == ":"]
    assert chance and all(abs(y - 20.0) < 1e-9 for y in chance)
