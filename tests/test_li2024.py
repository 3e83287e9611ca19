"""The Li & Benna 2024 chapter's logic on synthetic results: recipe, regime, cells, claims, tables and
figures."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

import fabook
from fabook import claims as cl
from fabook import regime
from fabook.experiments import li2024 as li
from fabook.train import Config, build_model, validate

LAYERS = {"mlp": ["fc1", "fc2", "head"], "resnet20": ["conv1", "layer1.0.conv1", "layer2.0.conv1", "fc"]}


def _symmetry(paper_like: bool, seeds: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    end = (
        dict(angle_br=15, angle_r=89, angle_gram=10)
        if paper_like
        else dict(angle_br=60, angle_r=40, angle_gram=50)
    )
    rows = [
        dict(
            rule=rule,
            seed=seed,
            epoch=epoch,
            layer=layer,
            **{k: (90 if epoch == 0 else v) + rng.normal(0, 0.5) for k, v in end.items()},
        )  # fmt: skip
        for rule, seed, epoch, layer in itertools.product(
            li.PFA_RULES, range(seeds), (0, 1, 2), LAYERS["mlp"]
        )
    ]
    return pd.DataFrame(rows)


def _fake_runs(paper_like: bool, seeds: int = 3) -> li.Runs:
    """Results with the paper's six claims built in (``paper_like``), or their opposites."""
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
            for metric, value in (("weight_angle", a), ("grad_angle", a * 0.8), ("norm_ratio", 1.0)):
                hist.append(dict(key=key, epoch=epoch, metric=metric, layer=layer, model=arch, rule=rule,
                                 label=rule, value=value + rng.normal(0, 0.05)))  # fmt: skip
    cells = [("pfa", li.sparse_options("pfa", d)) for d in li.DENSITIES]
    cells += [("pfa", li.pfa_options(k, 1.0)) for k in (1, 2, 5)]
    cells += [(r, li.sparse_options(r, d)) for r in li.SPARSE_OTHERS for d in li.OTHER_DENSITIES]
    sparse, sparse_hist = [], []
    for (rule, options), seed in itertools.product(cells, range(seeds)):
        k, d = options.get("k", 1), options.get("b_density", options.get("density", 1.0))
        key = f"sparse-{rule}-{k}-{d}-{seed}"
        drop = (0 if d >= 0.1 else 1.0) if paper_like else 30 * (1 - d)
        drop += 5 * (1 - d) if rule in li.SPARSE_OTHERS else 0  # the others lose more at low density
        sparse.append(dict(key=key, arch="mlp", model="mlp", rule=rule, rule_options=options, seed=seed,
                           wall_time=1.0, test_pct=90 - drop + rng.normal(0, 0.2)))  # fmt: skip
        if rule == "dfa":  # no per-layer feedback matrix
            continue
        for layer, metric in itertools.product(LAYERS["mlp"], ("weight_angle", "norm_ratio")):
            angle = 10 + 20 / k if rule == "pfa" else 60.0
            sparse_hist.append(dict(key=key, epoch=2, metric=metric, layer=layer, model="mlp", rule=rule,
                                    value=angle if metric == "weight_angle" else 0.9))  # fmt: skip
    return li.Runs(pd.DataFrame(rows), pd.DataFrame(hist), li.feedback_columns(pd.DataFrame(sparse)),
                   pd.DataFrame(sparse_hist), _symmetry(paper_like, seeds))  # fmt: skip


def test_claims_hold_when_built_in_and_fail_when_reversed():
    params = li.Params(scale="cpu")
    good = li.claims(_fake_runs(True), params)
    assert list(good.verdict) == [cl.HOLDS] * 6, good.measured.tolist()
    assert (good.scale == "cpu").all() and len(good) == 6
    assert (
        good["decided most by (this scale vs paper)"].iloc[0] == "ResNet-20 optimizer steps: 1,000 vs 88,000"
    )
    bad = li.claims(_fake_runs(False), params)
    assert list(bad.verdict) == [cl.FAILS] * 6, bad.measured.tolist()


def test_one_seed_leaves_every_claim_inconclusive():
    claims = li.claims(_fake_runs(True, seeds=1), li.Params(scale="smoke"))
    assert list(claims.verdict) == [cl.INCONCLUSIVE] * 6


def test_beyond_decides_a_mean_against_a_bound():
    assert li.beyond([80, 81, 82], 75, above=True)[1] == cl.HOLDS
    assert li.beyond([80, 81, 82], 75, above=False)[1] == cl.FAILS
    assert li.beyond([70, 80, 90], 78, above=True)[1] == cl.INCONCLUSIVE
    assert li.beyond([20, 21], 30, above=False) == ("20.5 ± 1.0° (2 seeds)", cl.HOLDS)
    assert li.beyond([20], 30, above=False)[1] == cl.INCONCLUSIVE


def test_gaps_and_tables():
    runs = _fake_runs(True)
    gaps = li.gaps(runs.comparison)
    assert len(gaps) == 2 * 5 and not (gaps.rule == "bp").any()
    fa = gaps[(gaps.arch == "resnet20") & (gaps.rule == "fa")].iloc[0]
    assert fa.gap == pytest.approx(-20, abs=0.5) and fa.paper_gap == pytest.approx(64.5 - 91.44)
    table = li.gap_table(runs.comparison, "cpu")
    assert list(table.rule) == ["FA", "DFA", "sign symmetry", "PFA", "PFA-o"] and (table.scale == "cpu").all()
    sym = li.symmetry_table(runs.symmetry, "cpu")
    assert list(sym.epoch) == [0, 2, 0, 2] and sym["angle W–R blocks (°)"].iloc[1].startswith("89.")


def test_paper_numbers_appear_only_at_paper_scale():
    summary = _fake_runs(True).comparison
    cpu = li.comparison_table(summary, "cpu")
    assert not any("paper" in c for c in cpu.columns) and len(cpu) == 6 and (cpu["MLP seeds"] == 3).all()
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
    assert pfa.angle_wb.between(9, 11).all()  # the last epoch, over the layers whose feedback is used
    sparse = li.sparse_table(runs.sparse, runs.sparse_history, "cpu")
    others = len(li.SPARSE_OTHERS) * len(li.OTHER_DENSITIES)
    assert len(sparse) == len(li.DENSITIES) + len(li.EXPANSIONS) + others
    dfa = sparse[sparse.rule == "DFA"].set_index("value")
    assert list(dfa.index) == ["0.05", "1"] and dfa["angle W–feedback (°)"].eq("").all()
    assert float(dfa.loc["0.05", "change from density 1 (pts)"]) == pytest.approx(-5.75, abs=0.3)
    fa = sparse[sparse.rule == "FA"]
    assert fa["angle W–feedback (°)"].str.startswith("60.00").all() and (fa.seeds == 3).all()
    pfa = sparse[sparse.rule == "PFA (k = 10)"]
    assert list(pfa.value) == [f"{d:g}" for d in li.DENSITIES] and pfa.sweep.eq("feedback density").all()
    static = li.static_alignment(n=32, draws=1)
    figures = [li.gap_figure(runs.comparison, "cpu"), li.symmetry_figure(runs.symmetry, "cpu")]
    figures.append(li.sparse_figure(runs.sparse, runs.sparse_history, runs.comparison, "cpu"))
    figures.append(li.static_figure(static, runs.sparse, runs.sparse_history, "cpu"))
    figures += [li.alignment_over_training(runs.history, a, m, "cpu") for a in li.MODELS
                for m in ("weight_angle", "grad_angle", "norm_ratio")]  # fmt: skip
    for fig in figures:
        assert all(ax.get_xlabel() for ax in fig.axes if ax.get_label() != "<colorbar>")


def test_training_minutes_count_a_shared_cell_once():
    runs = _fake_runs(True)
    shared = runs.comparison.iloc[:1].assign(k=np.nan, density=1.0)
    runs.sparse = pd.concat([runs.sparse, shared])
    assert li.training_minutes(runs) * 60 == pytest.approx(len(runs.comparison) + len(runs.sparse) - 1)


def test_density_change_per_rule():
    change = li.density_change(_fake_runs(True).sparse)
    assert list(change.index) == ["pfa", *li.SPARSE_OTHERS]
    assert change["pfa"] == pytest.approx(-1, abs=0.3) and change["fa"] == pytest.approx(-5.75, abs=0.3)


def test_sparse_options_mask_the_feedback_and_keep_the_dense_cell():
    assert li.sparse_options("usf", 0.05) == {"scale": "weight", "density": 0.05}
    assert li.sparse_options("dfa", 0.05) == {"density": 0.05} and li.sparse_options("dfa", 1.0) == {}
    assert li.sparse_options("fa", 1.0) == li.RULE_OPTIONS["fa"]
    assert li.sparse_options("pfa", 0.1) == li.pfa_options(10, 0.1)
    with pytest.raises(ValueError, match=r"rule='pfa-o' has no sparse cells; expected 'pfa' or one of"):
        li.sparse_options("pfa-o", 0.1)
    part = dict(li.SETTINGS["smoke"]["mlp"], width=256)
    for rule in li.SPARSE_OTHERS:  # the cell's model masks its feedback at that density
        fields = li.cell("mlp", rule, li.sparse_options(rule, 0.05), part, li.SMOKE_DATASET, 100)
        layers = list(fabook.layers.rule_layers(build_model(Config.from_dict({**fields, "seed": 0}))))
        assert [layer.rule.density for _, layer in layers] == [0.05] * 3, rule
        if rule != "dfa":  # DFA draws D at its first backward pass
            kept = float((layers[1][1].backward_weight() != 0).float().mean())
            assert kept == pytest.approx(0.05, abs=0.01), rule


def test_static_alignment_follows_the_random_matrix_prediction():
    static = li.static_alignment(n=128, draws=1)
    assert list(static.k) == list(li.STATIC_EXPANSIONS)
    assert (static.angle - static.predicted).abs().max() < 3 and static.predicted.iloc[0] == pytest.approx(45)
    eig = li.spectrum(10, n=128)
    assert eig.mean() == pytest.approx(1, abs=0.05) and (eig**2).mean() == pytest.approx(1.1, abs=0.05)


def test_symmetry_angles_at_r_equal_bt_w():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        fabook.Linear(64, 256, rule="pfa", k=10), fabook.Linear(256, 256, rule="pfa-o")
    )
    for layer in model:
        with torch.no_grad():
            layer.feedback_r.copy_(layer.feedback_b.T @ layer.weight)
    first, second = li._symmetry_angles(model)
    assert first["angle_br"] == pytest.approx(17.5, abs=2) and first["angle_r"] == pytest.approx(90, abs=5)
    assert first["angle_gram"] < first["angle_br"] + 5  # RᵀR = WᵀBBᵀW: R holds W's Gram matrix
    assert second["angle_r"] == pytest.approx(90, abs=8) and second["angle_br"] < 1e-3  # PFA-o: B Bᵀ = I


def test_symmetry_run_trains_the_pfa_cell():
    part = dict(li.SETTINGS["smoke"]["mlp"], epochs=2, max_train=2000)
    fields = li.cell("mlp", "pfa-o", li.RULE_OPTIONS["pfa-o"], part, li.SMOKE_DATASET, 200)
    sym = li.symmetry_run({**fields, "seed": 0, "weight_decay": 0.3})  # a milder heavy decay than the cell's
    assert sorted(sym.epoch.unique()) == [0, 1, 2] and set(sym.layer) == {"fc1", "fc2", "head"}
    start, end = (sym[sym.epoch == e].set_index("layer") for e in (0, 2))
    assert end.angle_br.mean() < start.angle_br.mean() - 20  # B·R is drawn to W by the decay
    assert (end.angle_r > 80).all()


def test_recipe_follows_the_official_configs():
    assert li.milestones((0.4, 0.6, 0.8), 250) == "step:100,150,200"
    assert li.milestones((0.5, 0.75), 40) == "step:20,30"
    assert li.milestones((0.5,), 1) is None
    paper = li.SETTINGS["paper"]
    pfa = li.cell("mlp", "pfa", li.RULE_OPTIONS["pfa"], paper["mlp"], "mnist", None)
    assert pfa["weight_decay"] == 0.03 and pfa["weight_decay_schedule"] == "1:9e-05"
    assert pfa["schedule"] == "step:20,30;gamma=0.5" and pfa["lr"] == 0.01 and pfa["batch_size"] == 64
    assert pfa["rule_options"]["b_density"] == pfa["rule_options"]["r_density"] == 1.0
    dfa = li.cell("resnet20", "dfa", {}, paper["resnet20"], "cifar10", None)
    assert dfa["lr"] == 0.001 and dfa["weight_decay"] == 1e-4 and "weight_decay_schedule" not in dfa
    pfa_o = li.cell("resnet20", "pfa-o", li.RULE_OPTIONS["pfa-o"], paper["resnet20"], "cifar10", None)
    assert pfa_o["weight_decay"] == 0.005 and pfa_o["weight_decay_schedule"] == "1:0.0001"
    assert pfa_o["schedule"] == "step:100,150,200" and pfa_o["lr"] == 0.1 and pfa_o["augment"] == "crop-flip"
    assert regime.train_size(Config.from_dict(pfa_o)) == 45000  # 5,000 held out, as the official run
    assert li.RULE_OPTIONS["usf"] == {"scale": "weight"} and li.pfa_options(10, 0.1)["r_density"] == 0.1


@pytest.mark.parametrize("arch", li.MODELS)
@pytest.mark.parametrize("rule", ["pfa", "bp", "dfa"])
def test_a_reduced_cell_keeps_the_heavy_decay_shrink(arch, rule):
    options = li.RULE_OPTIONS.get(rule, {})
    official = li.cell(arch, rule, options, li.SETTINGS["paper"][arch], li.PAPER_DATASETS[arch], None)
    cpu = li.cell(arch, rule, options, li.SETTINGS["cpu"][arch], "fashion-mnist", None)
    if rule == "pfa":
        assert li.exponents(cpu)[0] == pytest.approx(li.exponents(official)[0], rel=0.01)
        assert cpu["weight_decay"] > official["weight_decay"]
        assert cpu["weight_decay_schedule"] == official["weight_decay_schedule"]  # the later decay: official
    else:
        assert cpu["weight_decay"] == official["weight_decay"] == 1e-4
    recipe = li.RECIPES[arch]
    lr = recipe["dfa_lr"] if rule == "dfa" else recipe["lr"]
    assert cpu["lr"] == pytest.approx(lr * cpu["batch_size"] / recipe["batch_size"])


def test_regime_table_shows_the_official_proportions_at_cpu():
    for arch, steps in (("mlp", 940), ("resnet20", 1000)):
        table = li.regime_table(li.Params(scale="cpu"), arch).set_index(f"{li.MODEL_LABELS[arch]}: quantity")
        assert list(table.columns) == ["paper", "cpu", "smoke", "cpu / paper"]
        assert table.loc["optimizer steps", "cpu"] == steps
        assert table.loc["heavy-decay share of the run (%)", "cpu"] <= 10
        assert table.loc["heavy-decay shrink of W and R, exp(−A₁)", "cpu / paper"] == pytest.approx(
            1, abs=0.01
        )
    longer = li.regime_table(li.Params(scale="cpu", epochs=20), "mlp").set_index("MLP: quantity")
    assert longer.loc["epochs", "cpu"] == 20 and longer.loc["heavy-decay share of the run (%)", "cpu"] == 5


def test_smoke_cells_are_valid_and_sparse_sweep_shares_cells():
    params = li.Params(scale="smoke")
    comparison = li.comparison_spec(params)["conditions"]
    assert len(comparison) == len(li.MODELS) * len(li.RULES)
    sparse = li.sparse_spec(params)["conditions"]
    configs = {Config.from_dict(c) for c in sparse}
    others = len(li.SPARSE_OTHERS) * len(li.OTHER_DENSITIES)
    assert len(configs) == len(li.DENSITIES) + len(li.EXPANSIONS) - 1 + others  # k = 10, density 1: one cell
    shared = configs & {Config.from_dict(c) for c in comparison}  # the comparison's dense MLP cells
    assert sorted(c.rule for c in shared) == sorted(["pfa", *li.SPARSE_OTHERS])
    assert all(c.rule_options.get("density", 1) == 1 for c in shared)
    for c in comparison + sparse:
        validate(Config.from_dict(c))
    assert {c["dataset"] for c in comparison + sparse} == {li.SMOKE_DATASET}
    cpu = li.SETTINGS["cpu"]
    assert cpu["mlp"]["seeds"] == 5 and cpu["resnet20"]["seeds"] >= 3


def test_params_are_checked():
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        li.Params(scale="huge")
    with pytest.raises(ValueError, match="seeds=0 must be a positive integer"):
        li.Params(seeds=0)
    with pytest.raises(ValueError, match="download='yes' must be True or False"):
        li.Params(download="yes")
    settings = li.Params(scale="smoke", epochs=3, seeds=2).settings
    assert settings["resnet20"]["epochs"] == 3 and settings["mlp"]["seeds"] == 2


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
    assert math.isclose(cells[-1]["val_fraction"], 0.1) and cells[0]["val_fraction"] == 0.0
