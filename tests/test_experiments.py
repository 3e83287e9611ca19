"""The notebooks' logic on synthetic results: claims verdicts, tables, parameter checking."""

import itertools

import numpy as np
import pandas as pd
import pytest

from fabook import claims as cl
from fabook import notebook
from fabook.experiments import intro, liao2016


def test_at_least_decides_on_two_standard_errors():
    assert cl.at_least([90, 91, 92], [80, 81, 82], 5.0)[1] == cl.HOLDS
    assert cl.at_least([80, 81, 82], [90, 91, 92], -3.0)[1] == cl.FAILS
    assert cl.at_least([85, 90, 95], [88, 89, 90], 0.0)[1] == cl.INCONCLUSIVE
    measured, verdict = cl.at_least([1.0], [0.0], 0.0)
    assert verdict == cl.INCONCLUSIVE and "too few" in measured
    assert cl.by_share(0.8, holds_at=0.8, fails_below=0.5) == cl.HOLDS
    assert cl.by_share(0.6, holds_at=0.8, fails_below=0.5) == cl.INCONCLUSIVE
    assert cl.by_share(0.4, holds_at=0.8, fails_below=0.5) == cl.FAILS


def _liao_summary(sign_works: bool, seeds: int = 3) -> pd.DataFrame:
    """A fake study: with ``sign_works`` the paper's four claims are built in, otherwise their opposite."""
    rng = np.random.default_rng(0)
    rows = []
    for ds, seed in itertools.product(["iris", "wine", "digits", "gunpoint", "arrowhead"], range(seeds)):
        for recipe in liao2016.RECIPES.values():
            for rule in liao2016.RULES:
                good = rule == "bp" or recipe != "plain"
                acc = 90 if good else 40
                if not sign_works and rule in ("usf", "brsf", "frsf"):
                    acc = {"usf": 90, "brsf": 70, "frsf": 50}[rule]
                rows.append(dict(dataset=ds, seed=seed, rule=rule, recipe=recipe, rule_options={},
                                 concordance=1.0 if rule == "frsf" else np.nan,
                                 test_pct=acc + rng.normal(0, 0.2)))  # fmt: skip
        for p in (0.0, 0.25, 0.5, 0.75):
            acc = 60 + 30 * p if sign_works else 90 - 30 * p
            rows.append(dict(dataset=ds, seed=seed, rule="sc", recipe="BN+BM", rule_options={"p": p},
                             concordance=p, test_pct=acc + rng.normal(0, 0.2)))  # fmt: skip
    return pd.DataFrame(rows)


def test_liao_claims_hold_when_built_in_and_fail_when_reversed():
    summary = _liao_summary(True)
    good = liao2016.claims(summary, "cpu", plain_at_bn=summary)
    assert list(good.verdict) == [cl.HOLDS] * 5
    assert (good.scale == "cpu").all()
    summary = _liao_summary(False)
    bad = liao2016.claims(summary, "cpu", plain_at_bn=summary)
    assert list(bad.verdict) == [cl.FAILS] * 5


def test_liao_figures_and_tables_from_a_summary():
    summary = _liao_summary(True)
    table = liao2016.accuracy_table(summary, "cpu")
    assert table.shape == (5, 1 + 5 * 4) and table["bp BN"].between(89, 91).all()
    text = liao2016.accuracy_table(summary, "cpu", sd=True)
    assert text.shape == table.shape and text["fa plain"].str.fullmatch(r"(39|40)\.\d ± 0\.\d").all()
    gaps = liao2016.headroom_gaps(summary, summary)
    assert gaps[gaps.rule == "fa"].gap.between(49, 51).all()
    for fig in (liao2016.heatmap(summary, "cpu"), liao2016.concordance_figure(summary),
                liao2016.ablation_figure(summary)):  # fmt: skip
        assert fig.axes and fig.axes[0].get_xlabel()


def test_liao_params_and_epochs():
    with pytest.raises(ValueError, match="unknown scale 'huge'; accepted scales: smoke, cpu, paper"):
        liao2016.Params(scale="huge")
    with pytest.raises(ValueError, match="unknown dataset"):
        liao2016.Params(datasets=["nope"])
    s = liao2016.SETTINGS["cpu"]
    assert liao2016.epochs_for(112, s) == s["max_epochs"] or liao2016.epochs_for(112, s) > 100
    assert liao2016.epochs_for(60000, s) == s["min_epochs"]
    assert len(liao2016.SETTINGS["cpu"]["datasets"]) >= 15
    conditions = liao2016.conditions(liao2016.Params(scale="smoke"))
    per_set = len(liao2016.RULES) * len(liao2016.RECIPES) + len(liao2016.SETTINGS["smoke"]["levels"])
    assert len(conditions) == 4 * per_set


def test_paper_scale_names_the_missing_data():
    with pytest.raises(FileNotFoundError, match=r"(?s)set download = True.*cifar10: missing .*download=True"):
        liao2016.conditions(liao2016.Params(scale="paper"))


def test_notebook_collect_rejects_unknown_knobs_and_scales():
    before = {"In", "Out"}
    assert notebook.collect(intro.Params, {"In": 1, "scale": "smoke", "seeds": 2}, before).seeds == 2
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['sedes'\]; this notebook accepts"):
        notebook.collect(intro.Params, {"scale": "smoke", "sedes": 2}, before)
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        notebook.collect(intro.Params, {"scale": "huge"}, before)
    with pytest.raises(ValueError, match=r"rules \['xx'\] are not compared here"):
        intro.Params(rules=("bp", "xx"))


def test_save_figure_writes_png_and_pdf(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("FABOOK_FIGURES", str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    paths = notebook.save_figure(fig, "nb", "curve")
    assert [p.name for p in paths] == ["curve.png", "curve.pdf"]
    assert all(p.stat().st_size > 0 and p.parent == tmp_path / "nb" for p in paths)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [({"scale": "huge"}, "unknown scale 'huge'; accepted scales: smoke, cpu, paper"),
     ({"scale": "smoke", "sedes": 3}, r"unknown parameter(s) ['sedes']; this notebook accepts")],
)  # fmt: skip
def test_a_bad_papermill_parameter_stops_the_notebook_before_any_training(
    tmp_path, monkeypatch, parameters, message
):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("FABOOK_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(
            "notebooks/intro_feedback_alignment.ipynb", out, parameters=parameters, kernel_name="python3",
            progress_bar=False, cwd=tmp_path,
        )  # fmt: skip
    assert message in str(failure.value)
    assert not (tmp_path / "runs").exists()
