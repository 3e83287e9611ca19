"""The Moskovitz et al. 2018 chapter's logic on synthetic results: conditions, claims, tables, figures."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fabook import claims as cl
from fabook.experiments import moskovitz2018 as mk
from fabook.train import Config, validate

STAB, UNSTAB = ", ".join(mk.STABILIZED), ", ".join(mk.UNSTABILIZED)


def _accuracy(row: pd.Series, paper_right: bool) -> float:
    """Built-in results: with ``paper_right`` the paper's four claims, otherwise their opposite."""
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


def _fake(paper_right: bool, seeds: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    cells = [{**c, "seed": s} for c in mk.conditions(mk.Params(scale="cpu")) for s in range(seeds)]
    frame = pd.DataFrame(cells)
    frame["key"] = [f"k{i}" for i in range(len(frame))]
    frame = mk._label(frame)
    frame["test_pct"] = [_accuracy(r, paper_right) + rng.normal(0, 0.2) for _, r in frame.iterrows()]
    frame["test_acc"] = frame.test_pct / 100
    rows = []
    for _, r in frame[frame.metrics_every == 1].iterrows():
        for i in range(r.depth):
            layer = "head" if i == r.depth - 1 else f"conv{i}"
            far = r.rule == "fa" if paper_right else r.rule != "fa"
            angle = (80.0 if far else 30.0) if r.rule != "bp" else 0.0
            for metric, value in (("grad_angle", angle), ("weight_angle", angle + 5)):
                value += rng.normal(0, 1)
                rows.append(dict(key=r.key, epoch=3, metric=metric, layer=layer, value=value, model=r.model,
                                 depth=r.depth, seed=r.seed, method=r.method))  # fmt: skip
    return frame, pd.DataFrame(rows)


def test_conditions_cover_the_depth_sweep_and_the_ablation_once_each():
    cells = mk.conditions(mk.Params(scale="cpu"))
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
    # every sign-rule cell says its scale explicitly; the measured cells are the deepest of the sweep
    assert all("scale" in c["rule_options"] for c in cells if c["rule"] in mk.SIGN_RULES)
    assert all(c["rule_options"] == {"init": "weight"} for c in cells if c["rule"] == "fa")
    assert {c["depth"] for c in cells if c["metrics_every"]} == {8}
    # the deepest cell builds; on the shipped sample of the same shape, so that no full data set is needed
    validate(Config(**{**cells[-1], "dataset": mk.SMOKE_DATASET}), build=True)


def test_claims_hold_when_built_in_and_fail_when_reversed():
    good = mk.claims(*_fake(True), "cpu")
    assert list(good.verdict) == [cl.HOLDS] * 4, good.measured.tolist()
    assert (good.scale == "cpu").all()
    bad = mk.claims(*_fake(False), "cpu")
    assert list(bad.verdict) == [cl.FAILS] * 4, bad.measured.tolist()
    one_seed = mk.claims(*_fake(True, seeds=1), "smoke")
    assert set(one_seed.verdict) == {cl.INCONCLUSIVE}


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
    assert {"W–B fa (°)", "update–BP usf (stabilized) (°)"} <= set(angles.columns)
    for fig in (
        mk.depth_figure(summary, "cpu"),
        mk.ablation_figure(summary, "cpu"),
        mk.angle_figure(history, "cpu"),
    ):
        assert fig.axes
        plt.close(fig)
    assert mk.imagenet_table(pd.DataFrame()).empty


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
    assert cells[2]["rule_options"] == {"scale": "fan_in"}
