"""The Moskovitz et al. 2018 chapter's logic on synthetic results (conditions, claims, tables, figures), its
regime table from the configs, and the error-size premise of claim 5 on freshly initialized networks."""

import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from fabook import claims as cl
from fabook import regime, train
from fabook.experiments import moskovitz2018 as mk
from fabook.metrics import gradient_alignment
from fabook.train import Config, validate

STAB, UNSTAB = ", ".join(mk.STABILIZED), ", ".join(mk.UNSTABILIZED)
EPOCHS = 3


def _accuracy(row: pd.Series, paper_right: bool) -> float:
    """Built-in results: with ``paper_right`` the paper's claims, otherwise their opposite."""
    deep = row.depth / 8  # 1/4 .. 1
    if row.rule == "bp":
        return 90.0
    if row.rule == "fa":
        return 88.0 - (20 * deep if paper_right else 0.0)
    if row.recipe == STAB:
        return 89.5 if paper_right else 70.0
    if row.recipe == UNSTAB:
        return 85.0 - (60 * deep if paper_right else 0.0)
    return 60.0


def _layer_values(r: pd.Series, paper_right: bool, i: int, depth: int) -> dict[str, float]:
    """Per-layer metrics of a cell: angles (FA far from BP when ``paper_right``), the error against BP's
    (the unstabilized rules' explodes by 10× per layer below the top when ``paper_right``), ‖B‖/‖W‖ and the
    weight norm (before the epoch's factor)."""
    far = r.rule == "fa" if paper_right else r.rule != "fa"
    angle = (80.0 if far else 30.0) if r.rule != "bp" else 0.0
    above = depth - 1 - i
    wild = (r.recipe == UNSTAB) == paper_right and r.rule in mk.SIGN_RULES
    return dict(grad_angle=angle, weight_angle=angle + 5, error_ratio=10.0**above if wild else 1.2,
                norm_ratio=1.0, weight_norm=2.0)  # fmt: skip


def _fake(paper_right: bool, seeds: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    cells = [{**c, "seed": s} for c in mk.conditions(mk.Params(scale="cpu")) for s in range(seeds)]
    frame = pd.DataFrame(cells)
    frame["key"] = [f"k{i}" for i in range(len(frame))]
    frame = mk._label(frame)
    frame["test_pct"] = [_accuracy(r, paper_right) + rng.normal(0, 0.2) for _, r in frame.iterrows()]
    frame["test_acc"] = frame.test_pct / 100
    frame["diverged"] = frame.recipe == UNSTAB
    rows = []
    for _, r in frame.iterrows():
        ids = dict(key=r.key, model=r.model, depth=r.depth, seed=r.seed, method=r.method)
        last = 0 if r.diverged else EPOCHS
        for epoch in range(1, last + 1):
            rows.append(dict(**ids, epoch=epoch, metric="lr", layer="", value=0.05 / epoch))
            rows.append(dict(**ids, epoch=epoch, metric="val_acc", layer="", value=0.8 + 0.01 * epoch))
        if not r.metrics_every:
            continue
        for epoch in range(last + 1):
            for i in range(r.depth):
                layer = "head" if i == r.depth - 1 else f"conv{i}"
                for metric, value in _layer_values(r, paper_right, i, r.depth).items():
                    grows = metric == "weight_norm" and not r.constrain_norm
                    value = value * (1 + epoch) if grows else value + rng.normal(0, 0.01) * (metric != "lr")
                    rows.append(dict(**ids, epoch=epoch, metric=metric, layer=layer, value=value))
    return frame, pd.DataFrame(rows)


def test_conditions_cover_the_depth_sweep_and_the_ablation_once_each():
    params = mk.Params(scale="cpu")
    cells = mk.conditions(params)
    frame = mk._label(pd.DataFrame(cells))
    keys = [Config(**c).key() for c in cells]
    assert len(keys) == len(set(keys))
    sweep = mk._depth_cells(frame)
    assert set(sweep.depth) == {2, 5, 8} and max(sweep.depth) >= 8
    assert set(sweep.arch) == {"plain", "residual"}
    assert set(sweep.depth[sweep.arch == "residual"]) == {5, 8}  # depth 2 has no residual unit
    assert set(sweep.method) == {"bp", "fa", "usf (stabilized)", "frsf (stabilized)", "usf (unstabilized)",
                                 "frsf (unstabilized)"}  # fmt: skip
    ablation = mk._ablation_cells(frame)
    assert len(ablation) == 2 * 4 * 2 and set(ablation.depth) == {8}
    # the sign rules' stabilized feedback is sized like W; every cell says its size explicitly
    assert all("scale" in c["rule_options"] for c in cells if c["rule"] in mk.SIGN_RULES)
    stabilized = frame[frame.recipe == STAB]
    assert {o["scale"] for o in stabilized.rule_options} == {"weight"}
    assert all(c["rule_options"] == {"init": "weight"} for c in cells if c["rule"] == "fa")
    # every cell of the deepest plain network records the per-layer metrics, no other does
    measured = {(c["model"], c["depth"]) for c in cells if c["metrics_every"]}
    assert measured == {("deepcnn", 8)} and all(c["metrics_every"] for c in cells if c["depth"] == 8
                                                and c["model"] == "deepcnn")  # fmt: skip
    assert {c["schedule"] for c in cells} == {"cosine"} and {c["val_fraction"] for c in cells} == {1 / 11}
    # the deepest cell builds; on the shipped sample of the same shape, so that no full data set is needed
    validate(Config(**{**cells[-1], "dataset": mk.SMOKE_DATASET}), build=True)


def test_the_claims_cells_get_every_seed_and_the_ablation_only_ones_fewer():
    params = mk.Params(scale="cpu")
    sweep, ablation = mk._cells(params)
    cells = mk.spec(params)["conditions"]
    s = params.settings
    assert len(cells) == len(sweep) * s["seeds"] + len(ablation) * s["ablation_seeds"]
    assert s["seeds"] == 3 > s["ablation_seeds"]
    assert mk.Params(scale="cpu", seeds=1).settings["ablation_seeds"] == 1


def test_claims_hold_when_built_in_and_fail_when_reversed():
    good = mk.claims(*_fake(True), "cpu")
    assert len(good) == 5 and list(good.verdict) == [cl.HOLDS] * 5, good.measured.tolist()
    assert (good.scale == "cpu").all()
    bad = mk.claims(*_fake(False), "cpu")
    assert list(bad.verdict) == [cl.FAILS] * 5, bad.measured.tolist()
    one_seed = mk.claims(*_fake(True, seeds=1), "smoke")
    assert set(one_seed.verdict) == {cl.INCONCLUSIVE}


def test_claim_4_is_paired_by_seed_and_inconclusive_across_its_margin():
    fa = pd.Series([50.0, 60.0, 70.0])
    # the same spread in both rules, shifted by 25°: paired the difference is exact
    measured, verdict = mk._paired(fa, fa - 25.0, mk.ANGLE_MARGIN, "°")
    assert verdict == cl.HOLDS and "paired, 3 seeds" in measured
    assert mk._paired(fa, fa - 15.0, mk.ANGLE_MARGIN, "°")[1] == cl.FAILS
    noisy = pd.Series([40.0, 0.0, 20.0])  # differences 10, 60, 50: mean 40 ± 29
    assert mk._paired(fa, noisy, mk.ANGLE_MARGIN, "°")[1] == cl.INCONCLUSIVE


def test_weight_growth_and_the_effective_learning_rate_are_computed_from_the_norms():
    summary, history = _fake(True)
    growth = mk.weight_growth(history)
    free = growth[growth.method == "usf (BN only)"]
    held = growth[growth.method == "usf (stabilized)"]
    assert free.growth.to_numpy() == pytest.approx((1 + EPOCHS) * np.ones(len(free)))
    assert held.growth.to_numpy() == pytest.approx(np.ones(len(held)), abs=0.05)
    # lr 0.05/e from norms 2·e at the start of epoch e (e = 1, 2, 3), against norm 2 held
    expected = sum(1 / e / e**2 for e in (1, 2, 3)) / sum(1 / e for e in (1, 2, 3))
    assert free.effective_lr.to_numpy() == pytest.approx(expected * np.ones(len(free)))
    table = mk.growth_table(summary, history, "cpu")
    assert table.set_index("method").loc["usf (BN only)", "norm held"] == "no"
    assert table.set_index("method").loc["usf (stabilized)", "norm held"] == "yes"
    assert table.set_index("method").loc["usf (BN only)", "head: ‖W_T‖/‖W_0‖"].startswith(f"{1 + EPOCHS:.2f}")
    assert growth.top.sum() == growth.groupby("key").ngroups  # one head per cell
    sentence = mk.constraint_effect(summary, history)
    assert f"a median {1 + EPOCHS:.2f}× their initial" in sentence and "mechanism is there" in sentence
    assert re.search(r"usf \+29\.\d points \(3 seeds\)", sentence)  # 89.5 − 60, over the seeds both have


def test_tables_and_figures_from_a_fake_run(tmp_path):
    summary, history = _fake(True)
    depth = mk.depth_table(summary, "cpu")
    assert len(depth) == 3 + 2 and (depth.scale == "cpu").all()  # residual from depth 5
    assert depth.loc[0, "bp"].startswith("90.0 ± 0.")
    assert depth["usf (unstabilized)"].eq("—").sum() == 2  # plain networks only
    ablation = mk.ablation_table(summary, "cpu")
    assert list(ablation.stabilizers) == list(mk.STABILIZERS) and ablation.shape[1] == 2 + 4 + 2
    angles = mk.angle_table(history, "cpu")
    assert len(angles) == 8 and angles.layer.iloc[-1] == "head" and angles.layer.iloc[0] == "conv0"
    assert {"W–B (°) fa", "update–BP (°) usf (stabilized)"} <= set(angles.columns)
    ratios = mk.norm_ratio_table(history, "cpu")
    assert "‖B‖/‖W‖ init usf (unstabilized)" in ratios and "‖B‖/‖W‖ trained usf (unstabilized)" not in ratios
    errors = mk.error_table(history, "cpu")
    assert errors["init usf (unstabilized)"].iloc[0] == pytest.approx(1e7, rel=0.01)
    plateau = mk.plateau(history, summary)
    assert plateau["mean"] == pytest.approx(1.0) and "depth" in plateau["where"]
    for fig in (
        mk.depth_figure(summary, "cpu"),
        mk.plateau_figure(history, summary, "cpu"),
        mk.ablation_figure(summary, "cpu"),
        mk.angle_figure(history, "cpu"),
        mk.obstacle_figure(history, "cpu"),
    ):
        assert fig.axes
        plt.close(fig)
    assert mk.imagenet_table(pd.DataFrame()).empty


def test_regime_table_is_computed_from_each_scales_configs():
    table = mk.regime_table().set_index("quantity")
    cpu = mk._deepest_config("cpu", **mk._sign_cell("usf", *mk.STABILIZED))
    assert table.loc["training images", "cpu"] == regime.train_size(cpu) == 10_000
    assert table.loc["optimizer steps", "cpu"] == 6 * math.ceil(10_000 / 128)
    assert table.loc["training images", "paper"] == 55_000 and table.loc["epochs", "cpu / paper"] == 6 / 20
    usf = "∏ ‖B‖/‖W‖ above the input layer, uSF, B sized like W"
    assert table.loc[usf, ["paper", "cpu", "smoke"]].tolist() == pytest.approx([1.0, 1.0, 1.0], rel=1e-4)
    former = "∏ ‖B‖/‖W‖ above the input layer, uSF, |B| = 1/√fan_in (former recipe)"
    assert table.loc[former, "paper"] < table.loc[former, "cpu"] < 0.5  # 0.71 per conv, compounding
    assert table.loc["∏ ‖B‖/‖W‖ above the input layer, uSF, |B| = 1", "cpu"] > 1e3


@pytest.mark.parametrize("recipe, exploded", [(mk.STABILIZED, False), (mk.UNSTABILIZED, True)])
def test_the_error_reaching_the_input_layer_at_init_explodes_only_without_the_stabilizers(recipe, exploded):
    # claim 5's premise on a fresh network (random inputs): the size of B compounds over the layers above
    config = mk._deepest_config("cpu", **mk._sign_cell("usf", *recipe))
    train.seed_everything(0)
    model = train.build_model(config)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    decades = np.abs(np.log10(gradient_alignment(model, x, y).error_ratio.to_numpy()))
    assert decades[-1] == pytest.approx(0.0)  # the head gets the true error
    if exploded:
        assert decades[0] > mk.ERROR_DECADES
    else:
        assert decades.max() < mk.ERROR_DECADES


def test_params_are_checked_and_imagenet_is_asked_for_at_paper_scale(tmp_path):
    with pytest.raises(ValueError, match="accepted scales"):
        mk.Params(scale="huge")
    with pytest.raises(ValueError, match="seeds=0"):
        mk.Params(seeds=0)
    with pytest.raises(TypeError, match="imagenet_root"):
        mk.Params(imagenet_root=3)
    assert mk.Params(scale="smoke").settings["jobs"] == 1 and mk.Params(epochs=5).settings["epochs"] == 5
    assert mk.imagenet_conditions(mk.Params(scale="cpu")) == []
    with pytest.raises(FileNotFoundError, match="imagenet_root"):
        mk.imagenet_conditions(mk.Params(scale="paper", imagenet_root=str(tmp_path)))
    (tmp_path / "train" / "n01").mkdir(parents=True)
    (tmp_path / "val" / "n01").mkdir(parents=True)
    cells = mk.imagenet_conditions(mk.Params(scale="paper", imagenet_root=str(tmp_path)))
    assert [c["rule"] for c in cells] == ["bp", "fa", "usf"] and cells[2]["constrain_norm"]
    assert cells[2]["rule_options"] == {"scale": "weight"}
