"""The Liao chapter's protocol: notebook knobs, lr selection, early stopping, the before/after comparison."""

import zlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fabook import claims as cl
from fabook import notebook
from fabook.experiments import liao2016
from fabook.train import format_options


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
    plan = liao2016.plan(params).set_index("sweep").cells
    assert plan["lr selection"] == len(selection) and plan["before"] == len(before)
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
    assert liao2016.small_sets(params) == ("iris",)  # 38 test samples: frSF and BP get small_seeds
    assert sorted(zip(study.extra.rule, study.extra.recipe, study.extra.seed, strict=True)) == [
        ("bp", "BN", 1),
        ("frsf", "BN+BM", 1),
    ]
    assert len(study.plain_at_bn) == 4 and set(study.plain_at_bn.recipe) == {"plain"}
    assert len(study.selection) == per_set * len(liao2016.LR_GRIDS["smoke"]["sgd"])
    assert study.summary.best_epoch.notna().all() and study.before.best_epoch.isna().all()
    assert set(study.summary.key) <= set(study.selection.key)  # the chosen seed-0 cells are reused
    table = liao2016.claims(study.summary, "smoke", plain_at_bn=study.plain_at_bn, extra=study.extra)
    assert len(table) == 5 and set(table.verdict) <= {cl.HOLDS, cl.FAILS, cl.INCONCLUSIVE}
    assert len(liao2016.verdict_change(study, "smoke")) == 5
    by_set = liao2016.claims_by_set(study.summary, "smoke", plain_at_bn=study.plain_at_bn, extra=study.extra)
    assert by_set.dataset.tolist() == ["iris"] and "2 vs 2 seeds" in by_set["claim 3: frSF − BP"][0]
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


def test_interval_verdicts():
    assert cl.by_interval(0.6, 0.9, 0.5) == cl.HOLDS
    assert cl.by_interval(0.1, 0.49, 0.5) == cl.FAILS
    assert cl.by_interval(0.4, 0.9, 0.5) == cl.INCONCLUSIVE
    assert cl.equivalent([80.0, 80.2, 80.1], [80.5, 80.4, 80.6], 2.0)[1] == cl.HOLDS
    assert cl.equivalent([70.0, 70.2, 70.1], [80.5, 80.4, 80.6], 2.0)[1] == cl.FAILS
    assert cl.equivalent([70.0, 90.0, 80.0], [80.5, 80.4, 80.6], 2.0)[1] == cl.INCONCLUSIVE
    measured, verdict = cl.equivalent([80.0], [80.0, 81.0], 2.0)
    assert verdict == cl.INCONCLUSIVE and "too few" in measured


def test_bootstrap_pooled_centres_on_the_mean_and_widens_with_noise():
    tight = [[[1.0, 1.1, 0.9], [0.0, 0.1, -0.1]], [[2.0, 2.1, 1.9], [1.0, 1.1, 0.9]]]
    est, low, high = cl.bootstrap_pooled(tight, lambda i, m: m[0] - m[1])
    assert est == pytest.approx(1.0) and 0.8 < low <= est <= high < 1.2
    noisy = [[[1.0, 5.0, -3.0], [0.0, 0.1, -0.1]], [[2.0, 6.0, -2.0], [1.0, 1.1, 0.9]]]
    _, low2, high2 = cl.bootstrap_pooled(noisy, lambda i, m: m[0] - m[1])
    assert low2 < low and high2 > high
    assert cl.bootstrap_pooled(noisy, lambda i, m: m[0] - m[1]) == cl.bootstrap_pooled(
        noisy, lambda i, m: m[0] - m[1]
    )  # seeded
    with pytest.raises(ValueError, match="at least one unit"):
        cl.bootstrap_pooled([], lambda i, m: m[0])
    with pytest.raises(ValueError, match=r"unit\(s\) \[1\]"):
        cl.bootstrap_pooled([[[1.0]], [[]]], lambda i, m: m[0])


SETS = ("iris", "wine", "digits", "gunpoint", "arrowhead", "osuleaf", "breast-cancer", "mnist1d")


def _study(acc, plain_at_bn=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic summary (3 seeds) from ``acc(set index, rule, recipe, p, seed)``, and the plain cells
    of the second protocol (``plain_at_bn(...)`` in place of ``acc`` for them; default: the same)."""
    rows, plain = [], []
    for i, name in enumerate(SETS):
        for seed in range(3):
            for rule in liao2016.RULES:
                for recipe in liao2016.RECIPES.values():
                    row = dict(dataset=name, rule=rule, recipe=recipe, seed=seed,
                               concordance=1.0 if rule == "frsf" else np.nan,
                               test_pct=acc(i, rule, recipe, 1.0, seed))  # fmt: skip
                    rows.append(row)
                    if recipe == "plain" and rule != "fa":
                        again = (plain_at_bn or acc)(i, rule, recipe, 1.0, seed)
                        plain.append({**row, "test_pct": again})
            for p in (0.0, 0.25, 0.5, 0.75):
                rows.append(dict(dataset=name, rule="sc", recipe=liao2016.MAIN, seed=seed, concordance=p,
                                 test_pct=acc(i, "sc", liao2016.MAIN, p, seed)))  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(plain)


def _paper_like(i, rule, recipe, p, seed):
    base = 85 + i + 0.2 * seed
    if recipe == "plain" and rule != "bp":
        return 40.0 + 0.3 * seed  # asymmetric feedback without BN/BM: little above chance
    return base - 20 * (1 - p)


def _contrary(i, rule, recipe, p, seed):
    base = 85 + i + 0.2 * seed
    return base - 10 * (rule == "usf") - 5 * (rule == "frsf") + 10 * (1 - p) + 0.5 * (recipe == "plain")


def test_claims_give_the_papers_answer_on_paper_like_results():
    summary, plain = _study(_paper_like)
    table = liao2016.claims(summary, "smoke", plain_at_bn=plain)
    assert list(table.verdict) == [cl.HOLDS] * 5, table.measured.tolist()
    assert "equivalent on 8/8 decided sets" in table.measured[0]
    assert "mean frSF − BP +0.00 pts" in table.measured[2]


def test_claims_fail_on_contrary_results():
    summary, plain = _study(_contrary)
    table = liao2016.claims(summary, "smoke", plain_at_bn=plain)
    assert list(table.verdict) == [cl.FAILS] * 5, table.measured.tolist()


def test_claim4_is_judged_under_each_lr_protocol():
    """The plain recipe learns at its own lr, and collapses at its BN recipe's: only protocol B holds."""
    summary, plain = _study(_contrary, plain_at_bn=lambda i, rule, recipe, p, seed: 35.0 + seed)
    table = liao2016.claims(summary, "smoke", plain_at_bn=plain)
    assert list(table.verdict[3:]) == [cl.FAILS, cl.HOLDS]
    by_set = liao2016.claims_by_set(summary, "smoke", plain_at_bn=plain)
    assert (by_set["claim 4 (own lr)"] < 0.05).all() and (by_set["claim 4 (plain at BN's lr)"] > 0.5).all()


def test_noisy_results_read_inconclusive():
    def noisy(i, rule, recipe, p, seed):
        return 60 + np.random.default_rng(zlib.crc32(f"{i} {rule} {recipe} {p} {seed}".encode())).normal(0, 3)

    summary, plain = _study(noisy)
    table = liao2016.claims(summary, "smoke", plain_at_bn=plain)
    assert table.verdict[0] == cl.INCONCLUSIVE and "undecided on" in table.measured[0]
    assert table.verdict[2] == cl.INCONCLUSIVE


def test_extra_and_plain_at_bn_cells_take_the_chosen_lrs():
    params = liao2016.Params(scale="smoke", datasets=["iris", "fashion-mnist-small"])
    conds = liao2016.conditions(params)
    chosen = pd.DataFrame(
        [dict(dataset=c["dataset"], rule=c["rule"], options=format_options(c.get("rule_options", {})),
              batch_norm=c["batch_norm"], optimizer=c["optimizer"], lr=0.05 if c["batch_norm"] else 0.01)
         for c in conds]
    )  # fmt: skip
    extra = liao2016.extra_spec(params, chosen)["conditions"]
    assert {(c["dataset"], c["rule"]) for c in extra} == {("iris", "frsf"), ("iris", "bp")}
    assert {c["seed"] for c in extra} == set(range(1, liao2016.SETTINGS["smoke"]["small_seeds"]))
    assert {c["lr"] for c in extra} == {0.05}
    plain = liao2016.plain_at_bn_spec(params, chosen)["conditions"]
    assert len(plain) == 2 * 4 and {c["lr"] for c in plain} == {0.05}  # the BN recipe's lr
    assert not any(c["batch_norm"] or c["optimizer"] == "bm" for c in plain)


def test_regime_table_has_every_scale():
    table = liao2016.regime_table()
    assert {"paper", "cpu", "smoke", "cpu / paper"} <= set(table.columns)
    cells = table.set_index("quantity").loc["cells trained (at most)"]
    assert cells["cpu"] == liao2016.plan(liao2016.Params(scale="cpu")).cells.sum() > cells["smoke"]
