"""The Liao chapter's protocol: notebook knobs, lr selection, early stopping, the before/after comparison."""

import matplotlib.pyplot as plt
import pytest

from fabook import claims as cl
from fabook import notebook
from fabook.experiments import liao2016


@pytest.mark.parametrize(
    "value, error, match",
    [
        ("digits", TypeError, r"datasets must be a non-empty list of names \(e.g. \['digits'\]\)"),
        ([], TypeError, "non-empty list"),
        (["digits", 3], TypeError, r"must hold names \(str\); got \[3\]"),
        (["digits", "nope"], ValueError, r"unknown dataset\(s\) \['nope'\]; accepted: .*iris"),
    ],
)
def test_datasets_knob_checks_its_type_before_any_work(value, error, match):
    with pytest.raises(error, match=match):
        notebook.collect(liao2016.Params, {"scale": "smoke", "datasets": value}, set())


def test_tracked_and_curve_sets_come_from_the_run():
    assert liao2016.Params(scale="smoke").tracked == "fashion-mnist-small"
    iris = liao2016.Params(scale="smoke", datasets=["iris"])
    assert iris.tracked == "iris" and iris.curve_sets == ("iris",)
    mixed = liao2016.Params(scale="cpu", datasets=["wine", "digits", "iris", "mnist1d"])
    assert mixed.tracked == "wine" and mixed.curve_sets == ("digits", "wine", "iris")


def test_protocol_cells():
    params = liao2016.Params(scale="smoke", datasets=["iris", "wine"])
    s = params.settings
    per_set = len(liao2016.RULES) * len(liao2016.RECIPES) + len(s["levels"])
    grid = liao2016.LR_GRIDS["smoke"]
    assert len(grid["sgd"]) == len(grid["bm"])
    selection = liao2016.selection_spec(params)["conditions"]
    assert len(selection) == 2 * per_set * len(grid["sgd"])
    assert all(c["val_fraction"] == liao2016.VAL_FRACTION and c["patience"] >= 5 for c in selection)
    assert {c["lr"] for c in selection if c["optimizer"] == "bm"} == set(grid["bm"])
    assert {c["lr"] for c in selection if c["rule"] == "bp"} == {*grid["sgd"], *grid["bm"]}  # BP: same grids
    before = liao2016.before_spec(params)["conditions"]
    assert len(before) == 2 * per_set and all(c.get("val_fraction", 0) == 0 for c in before)
    assert {c["lr"] for c in before} == {liao2016.OPTIMIZER[False]["lr"], liao2016.OPTIMIZER[True]["lr"]}
    cpu = liao2016.Params(scale="cpu")
    assert (
        liao2016.SETTINGS["cpu"]["steps"] >= 3 * liao2016.BEFORE["cpu"]["steps"]
    )  # several times the budget
    assert liao2016.n_fit("iris", cpu.settings) == 112 - 23


def test_the_documented_iris_override_runs_to_the_end(tmp_path, monkeypatch):
    monkeypatch.setenv("FABOOK_RUNS", str(tmp_path))
    params = liao2016.Params(scale="smoke", datasets=["iris"], jobs=1)
    study = liao2016.run(params)
    per_set = len(liao2016.RULES) * len(liao2016.RECIPES) + len(params.settings["levels"])
    assert len(study.summary) == len(study.chosen) == len(study.before) == per_set
    assert len(study.selection) == per_set * len(liao2016.LR_GRIDS["smoke"]["sgd"])
    assert study.summary.best_epoch.notna().all() and study.before.best_epoch.isna().all()
    assert set(study.summary.key) <= set(study.selection.key)  # the chosen seed-0 cells are reused
    for frame in (study.summary, study.before):
        assert list(liao2016.claims(frame, params.scale).verdict) != []
    assert set(liao2016.claims(study.summary, "smoke").verdict) <= {cl.HOLDS, cl.FAILS, cl.INCONCLUSIVE}
    lrs = liao2016.lr_table(study.chosen, "smoke")
    assert lrs.index.tolist() == ["iris"] and "bp BN" in lrs and "sc p=0.5 BN+BM" in lrs
    counts = liao2016.lr_counts(study.chosen, "smoke")
    assert counts["times chosen"].sum() == per_set
    assert set(counts.lr) <= {f"{v:g}" for grid in liao2016.LR_GRIDS["smoke"].values() for v in grid}
    change = liao2016.before_after(study, "smoke")
    assert len(change) == 20 and change["after %"].notna().all()
    history = study.history
    assert {"val_acc", "weight_angle"} <= set(history.metric) and history.step.max() > 0
    fig = liao2016.curves_figure(history, params.curve_sets, liao2016.BEFORE["smoke"]["steps"])
    assert fig.axes[0].get_xlabel() == "SGD steps" and fig.axes[0].get_title() == "iris"
    plt.close("all")
    again = liao2016.run(params)  # resumes: every cell is loaded
    assert again.summary.test_acc.tolist() == study.summary.test_acc.tolist()


def test_claims_report_counts_with_intervals():
    assert cl.count_text(12, 16, "sets") == "12/16 sets (75 %, 95 % CI 51–90 %)"
    low, high = cl.share_interval(0, 5)
    assert low == 0 and 0.4 < high < 0.5
    assert cl.count_text(0, 0, "sets") == "0/0 sets"
