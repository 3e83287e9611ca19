"""The Akrout et al. 2019 chapter's logic: claims on synthetic runs, tables, parameters, the ImageNet path."""

import itertools

import numpy as np
import pandas as pd
import pytest

from fabook import claims as cl
from fabook.experiments import akrout2019 as ak
from fabook.sweep import run_sweep
from tests.test_train import write_jpeg_folder

LAYERS = {"resnet18": ak.METRIC_LAYERS["resnet18"], "resnet50": (), "mlp": ak.METRIC_LAYERS["mlp"]}


def _fake(paper_holds: bool, seeds: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A fake chapter run: with ``paper_holds`` the five claims are built in, otherwise their opposite."""
    rng = np.random.default_rng(0)
    good = {"bp": 90, "wm": 89.5, "kp": 89.5, "usf": 80, "fa": 60}
    bad = {"bp": 90, "wm": 60, "kp": 60, "usf": 85, "fa": 88}
    rows, hist = [], []
    cells = [(n, r, 1e-4) for n in ak.NETS for r in ak.RULES] + [("resnet18", "kp", 0.0)]
    cells += [("mlp", r, 0.0) for r in ak.MLP_RULES] + [("mlp", "kp", 0.01)]
    for (model, rule, decay), seed in itertools.product(cells, range(seeds)):
        key = f"{model}-{rule}-{decay}-{seed}"
        acc = (good if paper_holds else bad)[rule] + rng.normal(0, 0.2)
        top5 = min(1.0, acc / 100 + 0.08)
        rows.append(dict(key=key, model=model, rule=rule, weight_decay=decay, seed=seed, dataset="d",
                         epochs=3, lr=0.1, test_acc=acc / 100, test_top5=top5))  # fmt: skip
        for epoch in range(4):
            base = dict(key=key, model=model, rule=rule, weight_decay=decay, seed=seed, epoch=epoch)
            hist.append({**base, "metric": "test_acc", "layer": "", "value": acc / 100 - 0.1 * (3 - epoch)})
            for layer in LAYERS[model]:
                aligned = {"wm": 10.0, "kp": 12.0, "fa": 88.0, "usf": 40.0, "bp": 0.0}[rule]
                angle = 90 + (aligned - 90) * epoch / 3 if paper_holds else 90 - 2 * epoch
                hist.append({**base, "metric": "weight_angle", "layer": layer, "value": angle})
                hist.append({**base, "metric": "grad_angle", "layer": layer, "value": angle / 2})
                if rule == "kp":
                    shrink = 0.99**epoch if decay else (1.0 if paper_holds else 0.9**epoch)
                    hist.append({**base, "metric": "distance", "layer": layer, "value": 5.0 * shrink})
    return ak._annotate(pd.DataFrame(rows)), ak._annotate(pd.DataFrame(hist))


def test_claims_hold_when_built_in_and_fail_when_reversed():
    summary, history = _fake(True)
    good = ak.claims(summary, history, "cpu")
    assert list(good.verdict) == [cl.HOLDS] * 5 and (good.scale == "cpu").all()
    assert "ResNet-50 KP − FA" in good.measured[0]
    bad = ak.claims(*_fake(False), "cpu")
    assert list(bad.verdict) == [cl.FAILS] * 5


def test_one_seed_leaves_the_comparisons_undecided():
    verdicts = ak.claims(*_fake(True, seeds=1), "smoke").verdict
    assert list(verdicts[:3]) == [cl.INCONCLUSIVE] * 3


def test_tables_from_a_run():
    summary, history = _fake(True)
    table = ak.resnet_table(summary, "cpu")
    assert list(table.index) == ["BP", "FA", "sign symmetry", "WM", "KP"]
    assert list(table.columns[:4]) == [
        f"{n} {w}-err %" for n in ("ResNet-18", "ResNet-50") for w in ("top1", "top5")
    ]
    assert table.loc["BP", "ResNet-18 top1-err %"].startswith("10.") and (table.seeds == 3).all()
    assert table.loc["FA", "ResNet-50 top5-err %"].startswith(("31.", "32."))
    early = ak.early_table(history, 1, "cpu")
    assert early.shape == (5, 3) and early.loc["BP"].iloc[0].startswith("30.")
    mlp = ak.mlp_table(summary, "cpu")
    assert list(mlp.index) == ["BP", "FA", "WM", "KP", "KP, no decay"]
    assert mlp.loc["KP", ak.THEIRS] == ak.THEIR_MNIST["kp"] and mlp.loc["KP, no decay", ak.THEIRS] == "—"
    distance = ak.distance_table(history, "cpu")
    assert set(distance.net) == {"ResNet-18", "MLP"} and (distance.iloc[:, 2] <= 1.0).all()
    for model, metric in (("resnet18", "weight_angle"), ("resnet18", "grad_angle"), ("mlp", "weight_angle")):
        fig = ak.alignment_figure(history, metric, model, "cpu")
        assert len(fig.axes) == len(LAYERS[model]) and fig.axes[0].get_xlabel() == "epoch"


def test_conditions_per_scale_and_explicit_rule_options():
    cells = ak.spec(ak.Params(scale="smoke"))["conditions"]
    assert len(cells) == 2 * len(ak.RULES) + 1 + len(ak.MLP_RULES) + 1
    usf = [c for c in cells if c["rule"] == "usf"]
    assert usf and all(c["rule_options"] == {"scale": "fan_in"} and c["model"] in ak.NETS for c in usf)
    assert {c["dataset"] for c in cells if c["model"] in ak.NETS} == {ak.SMOKE_DATASET}
    assert all(
        c["augment"] == "crop-flip" and c["schedule"] == "step:2" for c in cells if c["model"] in ak.NETS
    )
    assert [c["weight_decay"] for c in cells if c["rule"] == "kp"] == [1e-4, 1e-4, 0.0, ak.MLP_KP_DECAY, 0.0]
    mlp = [c for c in cells if c["model"] == "mlp"]
    assert {c["rule"]: c["lr"] for c in mlp} == ak.MLP_LR and {c["activation"] for c in mlp} == {"sigmoid"}
    assert (
        0.985 < ak.kp_shrink(ak.Params(scale="cpu")) < 0.995 and ak.kp_shrink(ak.Params(scale="paper")) < 1e-6
    )
    assert {c["lr"] for c in cells if c["model"] in ak.NETS} == {0.1 * 64 / 256}  # smoke: batch 64
    assert ak.resnet_lr(256) == 0.1 and ak.resnet_lr(128) == 0.05
    s = ak.SETTINGS["cpu"]
    assert s["seeds"] >= 2 and ak.SETTINGS["paper"]["base_width"] is None


def test_params_are_checked_and_paper_scale_needs_imagenet():
    with pytest.raises(ValueError, match="unknown scale 'huge'; accepted scales: smoke, cpu, paper"):
        ak.Params(scale="huge")
    with pytest.raises(ValueError, match="seeds=0 must be a positive integer"):
        ak.Params(seeds=0)
    with pytest.raises(FileNotFoundError, match="set imagenet_root in the parameters cell"):
        ak.spec(ak.Params(scale="paper"))


def test_the_imagenet_path_runs_at_smoke_scale(tmp_path, monkeypatch):
    monkeypatch.setenv("FABOOK_RUNS", str(tmp_path / "runs"))
    write_jpeg_folder(tmp_path / "imagenet")
    params = ak.Params(scale="smoke", imagenet_root=str(tmp_path / "imagenet"))
    with pytest.raises(FileNotFoundError, match="imagenet: missing"):
        ak.spec(ak.Params(scale="smoke", imagenet_root=str(tmp_path / "elsewhere")))
    spec = ak.spec(params)
    nets = [c for c in spec["conditions"] if c["model"] in ak.NETS]
    assert {c["dataset"] for c in nets} == {"imagenet"} and {c["augment"] for c in nets} == {None}
    two = [c | {"epochs": 1} for c in nets if c["model"] == "resnet18" and c["rule"] in ("bp", "kp")][:2]
    summary = run_sweep({**spec, "conditions": two}, params.out_dir, progress=False)
    assert (summary.test_top5 >= summary.test_acc).all() and (summary.test_top5 < 1).all()
