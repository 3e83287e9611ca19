"""The Li & Benna 2024 chapter's logic on synthetic results: recipe, cells, claims, tables, figures."""

import itertools

import numpy as np
import pandas as pd
import pytest

from fabook import claims as cl
from fabook.experiments import li2024 as li
from fabook.train import Config, validate

LAYERS = {"mlp": ["fc1", "fc2", "head"], "resnet20": ["conv1", "layer1.0.conv1", "layer2.0.conv1", "fc"]}


def _fake_runs(paper_like: bool, seeds: int = 3) -> li.Runs:
    """Results with the paper's five claims built in (``paper_like``), or their opposites."""
    rng = np.random.default_rng(0)
    if paper_like:
        acc = {"mlp": dict(bp=90, fa=88, dfa=87, usf=89, pfa=90, **{"pfa-o": 90}),
               "resnet20": dict(bp=90, fa=70, dfa=40, usf=88, pfa=89.5, **{"pfa-o": 90})}  # fmt: skip
        angle = dict(bp=0, fa=80, dfa=np.nan, usf=40, pfa=10, **{"pfa-o": 12})
    else:
        acc = {"mlp": dict(bp=90, fa=80, dfa=80, usf=89, pfa=80, **{"pfa-o": 80}),
               "resnet20": dict(bp=90, fa=89, dfa=90, usf=60, pfa=85, **{"pfa-o": 84})}  # fmt: skip
        angle = dict(bp=0, fa=10, dfa=np.nan, usf=40, pfa=80, **{"pfa-o": 80})
    rows, hist = [], []
    for arch, rule, seed in itertools.product(li.MODELS, li.RULES, range(seeds)):
        key = f"{arch}-{rule}-{seed}"
        rows.append(dict(key=key, arch=arch, model=arch, rule=rule, seed=seed, wall_time=1.0,
                         test_pct=acc[arch][rule] + rng.normal(0, 0.2)))  # fmt: skip
        for epoch, layer in itertools.product((0, 1, 2), LAYERS[arch]):
            a = 90 if epoch == 0 and rule != "bp" else angle[rule]
            for metric, value in (("weight_angle", a), ("grad_angle", a * 0.8)):
                hist.append(dict(key=key, epoch=epoch, metric=metric, layer=layer, model=arch, rule=rule,
                                 label=rule, value=value + rng.normal(0, 0.5)))  # fmt: skip
    sparse, sparse_hist = [], []
    for (k, d), seed in itertools.product([(10, d) for d in li.DENSITIES] + [(1, 1.0), (2, 1.0), (5, 1.0)],
                                          range(seeds)):  # fmt: skip
        key = f"sparse-{k}-{d}-{seed}"
        drop = (0 if d >= 0.1 else 1.0) if paper_like else 30 * (1 - d)
        sparse.append(dict(key=key, arch="mlp", model="mlp", rule="pfa", seed=seed, k=k, density=d,
                           wall_time=1.0, test_pct=90 - drop + rng.normal(0, 0.2)))  # fmt: skip
        for layer in LAYERS["mlp"]:
            sparse_hist.append(dict(key=key, epoch=2, metric="weight_angle", layer=layer, model="mlp",
                                    rule="pfa", value=10 + 20 / k))  # fmt: skip
    return li.Runs(pd.DataFrame(rows), pd.DataFrame(hist), pd.DataFrame(sparse), pd.DataFrame(sparse_hist))


def test_claims_hold_when_built_in_and_fail_when_reversed():
    good = li.claims(_fake_runs(True), "cpu")
    assert list(good.verdict) == [cl.HOLDS] * 5, good.measured.tolist()
    assert (good.scale == "cpu").all() and len(good) == 5
    bad = li.claims(_fake_runs(False), "cpu")
    assert list(bad.verdict) == [cl.FAILS] * 5, bad.measured.tolist()


def test_one_seed_leaves_the_seed_based_claims_inconclusive():
    claims = li.claims(_fake_runs(True, seeds=1), "smoke")
    assert list(claims.verdict[:4]) == [cl.INCONCLUSIVE] * 4


def test_gaps_and_rank_correlation():
    runs = _fake_runs(True)
    gaps = li.gaps(runs.comparison)
    assert len(gaps) == 2 * 5 and not (gaps.rule == "bp").any()
    fa = gaps[(gaps.arch == "resnet20") & (gaps.rule == "fa")].iloc[0]
    assert fa.gap == pytest.approx(-20, abs=0.5) and fa.paper_gap == pytest.approx(64.5 - 91.44)
    assert li.rank_correlation(gaps) == pytest.approx(1.0)
    table = li.gap_table(runs.comparison, "cpu")
    assert list(table.rule) == ["FA", "DFA", "sign symmetry", "PFA", "PFA-o"] and (table.scale == "cpu").all()


def test_paper_numbers_appear_only_at_paper_scale():
    summary = _fake_runs(True).comparison
    cpu = li.comparison_table(summary, "cpu")
    assert not any("paper" in c for c in cpu.columns) and len(cpu) == 6 and (cpu.seeds == 3).all()
    assert cpu["MLP %"].str.fullmatch(r"\d+\.\d\d ± \d\.\d\d").all()
    paper = li.comparison_table(summary, "paper")
    quoted = paper["paper, CIFAR-10 ResNet-20 % (approx.)"]
    assert quoted.tolist() == [li.PAPER["resnet20"][r] for r in li.RULES]


def test_tables_and_figures_from_results():
    runs = _fake_runs(True)
    align = li.alignment_table(runs.comparison, runs.history, "cpu")
    assert len(align) == 12 and align[align.rule == "DFA"]["angle W–B (°)"].eq("").all()
    frame = li.angles(runs.comparison, runs.history)
    pfa = frame[(frame.rule == "pfa") & (frame.arch == "mlp")]
    assert pfa.angle_wb.between(8, 12).all()  # the last epoch, over the layers whose feedback is used
    sparse = li.sparse_table(runs.sparse, runs.sparse_history, "cpu")
    assert len(sparse) == len(li.DENSITIES) + len(li.EXPANSIONS)
    figures = [li.gap_figure(runs.comparison, "cpu")]
    figures.append(li.sparse_figure(runs.sparse, runs.sparse_history, "cpu"))
    figures += [li.alignment_over_training(runs.history, a, m, "cpu") for a in li.MODELS
                for m in ("weight_angle", "grad_angle")]  # fmt: skip
    for fig in figures:
        assert all(ax.get_xlabel() for ax in fig.axes if ax.get_label() != "<colorbar>")


def test_recipe_follows_the_official_configs():
    assert li.milestones((0.4, 0.6, 0.8), 250) == "step:100,150,200"
    assert li.milestones((0.5, 0.75), 40) == "step:20,30"
    assert li.milestones((0.5,), 1) is None
    part = dict(width=512, max_train=None, epochs=40)
    pfa = li.cell("mlp", "pfa", li.RULE_OPTIONS["pfa"], part, "mnist", None)
    assert pfa["weight_decay"] == 0.03 and pfa["weight_decay_schedule"] == "1:9e-05"
    assert pfa["schedule"] == "step:20,30;gamma=0.5" and pfa["lr"] == 0.01 and pfa["batch_size"] == 64
    res = dict(width=1, max_train=None, epochs=250)
    dfa = li.cell("resnet20", "dfa", {}, res, "cifar10", None)
    assert dfa["lr"] == 0.001 and dfa["weight_decay"] == 1e-4 and "weight_decay_schedule" not in dfa
    pfa_o = li.cell("resnet20", "pfa-o", li.RULE_OPTIONS["pfa-o"], res, "cifar10", None)
    assert pfa_o["weight_decay"] == 0.005 and pfa_o["weight_decay_schedule"] == "1:0.0001"
    assert pfa_o["schedule"] == "step:100,150,200" and pfa_o["lr"] == 0.1
    assert li.RULE_OPTIONS["usf"] == {"scale": "fan_in"} and li.RULE_OPTIONS["pfa"]["k"] == 10
    # a smaller training set: the early decay grows so that its first epoch shrinks W and R as much
    small = li.cell("resnet20", "pfa", li.RULE_OPTIONS["pfa"], dict(width=1, max_train=4000, epochs=4),
                    "fashion-mnist", None)  # fmt: skip
    assert small["weight_decay"] == pytest.approx(0.005 * 50000 / 4000) and small["schedule"] == "step:2,3"
    full = li.cell("mlp", "pfa", li.RULE_OPTIONS["pfa"], dict(width=512, max_train=None, epochs=2),
                   "fashion-mnist", None)  # fmt: skip
    assert full["weight_decay"] == 0.03 and full["schedule"] == "step:1;gamma=0.5"


def test_smoke_cells_are_valid_and_sparse_sweep_shares_cells():
    params = li.Params(scale="smoke")
    comparison = li.comparison_spec(params)["conditions"]
    assert len(comparison) == len(li.MODELS) * len(li.RULES)
    sparse = li.sparse_spec(params)["conditions"]
    configs = {Config.from_dict(c) for c in sparse}
    assert len(configs) == len(li.DENSITIES) + len(li.EXPANSIONS) - 1  # k = 10 at density 1 is one cell
    for c in comparison[:: len(li.RULES) - 1]:
        validate(Config.from_dict(c))
    assert {c["dataset"] for c in comparison + sparse} == {li.SMOKE_DATASET}
    paper = li.SETTINGS["paper"]
    assert paper["sparse"] == paper["mlp"] and paper["seeds"] >= 3 and li.SETTINGS["cpu"]["seeds"] >= 3


def test_params_are_checked():
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        li.Params(scale="huge")
    with pytest.raises(ValueError, match="seeds=0 must be a positive integer"):
        li.Params(seeds=0)
    with pytest.raises(ValueError, match="download='yes' must be True or False"):
        li.Params(download="yes")
    assert li.Params(scale="smoke", epochs=3).settings["resnet20"]["epochs"] == 3


def test_paper_scale_names_the_missing_data(monkeypatch, tmp_path):
    monkeypatch.setenv("FABOOK_DATA", str(tmp_path))
    message = r"(?s)set download = True.*cifar10: missing .*mnist: missing"
    with pytest.raises(FileNotFoundError, match=message):
        li.comparison_spec(li.Params(scale="paper"))


def test_download_knob_fetches_the_paper_sets_first(monkeypatch):
    fetched = []
    monkeypatch.setattr(li.data, "load", lambda name, download: fetched.append((name, download)))
    monkeypatch.setattr(li.data, "missing", lambda name: None)
    cells = li.comparison_spec(li.Params(scale="paper", download=True))["conditions"]
    assert fetched == [("cifar10", True), ("mnist", True)] and len(cells) == 2 * 6 * 5
