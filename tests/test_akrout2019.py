"""The Akrout et al. 2019 chapter's logic: claims on synthetic runs, the regime gate, tables, the KP angle
model, parameters, the ImageNet path."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from fabook import claims as cl
from fabook import regime
from fabook.experiments import akrout2019 as ak
from fabook.sweep import run_sweep
from fabook.train import Config
from tests.test_train import write_jpeg_folder

LAYERS = {"resnet18": ak.METRIC_LAYERS["resnet18"], "resnet50": (), "mlp": ak.METRIC_LAYERS["mlp"]}
DECAY = 1e-2


def _fake(paper_holds: bool, seeds: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A fake chapter run: with ``paper_holds`` the five claims are built in, otherwise their opposite."""
    rng = np.random.default_rng(0)
    good = {"bp": 90, "wm": 89.5, "kp": 89.5, "usf": 80, "fa": 60}
    bad = {"bp": 90, "wm": 60, "kp": 60, "usf": 85, "fa": 88}
    rows, hist, exponents = [], [], {}
    cells = [(n, r, DECAY) for n in ak.NETS for r in ak.RULES] + [("resnet18", "kp", 0.0)]
    cells += [("resnet18", "bp", ak.TORCHVISION_DECAY)]
    cells += [("mlp", r, 0.0) for r in ak.MLP_RULES[:-1]] + [("mlp", "kp", 0.01), ("mlp", "kp", 0.0)]
    for (model, rule, decay), seed in itertools.product(cells, range(seeds)):
        key = f"{model}-{rule}-{decay}-{seed}"
        exponents[key] = 2.5 if decay else 0.0
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
                hist.append({**base, "metric": "weight_norm", "layer": layer, "value": 2.0 + 0.5 * epoch})
                if rule == "kp":
                    shrink = 0.99**epoch if decay else (1.0 if paper_holds else 0.9**epoch)
                    hist.append({**base, "metric": "distance", "layer": layer, "value": 5.0 * shrink})
    frames = pd.DataFrame(rows), pd.DataFrame(hist)
    return tuple(ak._annotate(f, exponents, DECAY) for f in frames)


def test_claims_hold_when_built_in_and_fail_when_reversed():
    summary, history = _fake(True)
    good = ak.claims(summary, history, "cpu")
    assert list(good.verdict) == [cl.HOLDS] * 5 and (good.scale == "cpu").all()
    assert "ResNet-50 KP − FA" in good.measured[0] and "implementation" in good.claim[4]
    bad = ak.claims(*_fake(False), "cpu")
    assert list(bad.verdict) == [cl.FAILS] * 5


def test_a_net_the_scale_cannot_decide_counts_towards_no_verdict():
    summary, history = _fake(False)
    gaps = {"seeds": {"resnet50": "1 seed (< 2)"}, "alignment": {"resnet50": "KP's A = 0.6 (< 2)"}}
    only18 = ak.claims(summary, history, "cpu", gaps)
    assert list(only18.verdict) == [cl.FAILS] * 5
    assert "ResNet-50 not counted at this scale: 1 seed (< 2); KP's A = 0.6 (< 2)" in only18.measured[0]
    assert "ResNet-50 not counted at this scale: 1 seed (< 2)" in only18.measured[2]
    assert "KP's A" not in only18.measured[2] and "ResNet-50 KP − FA" not in only18.measured[0]
    unaligned = {"seeds": {}, "alignment": dict.fromkeys(ak.NETS, "KP's A = 0.01 (< 2)")}
    neither = ak.claims(summary, history, "smoke", unaligned)
    assert list(neither.verdict) == [cl.INCONCLUSIVE, cl.INCONCLUSIVE, cl.FAILS, cl.INCONCLUSIVE, cl.FAILS]
    assert "not decided at this scale: KP's A = 0.01 (< 2)" in neither.measured[3]


def test_one_seed_leaves_the_comparisons_undecided():
    verdicts = ak.claims(*_fake(True, seeds=1), "smoke").verdict
    assert list(verdicts[:3]) == [cl.INCONCLUSIVE] * 3


def test_undecided_nets_follow_seeds_and_the_alignment_exponent():
    assert ak.undecided(ak.Params(scale="paper")) == {"seeds": {}, "alignment": {}}
    cpu = ak.undecided(ak.Params(scale="cpu"))
    assert cpu == {
        "seeds": {"resnet50": "1 seed (< 2)"},
        "alignment": {"resnet50": "KP's A = 0.4 (< 2: W − B × 0.67)"},
    }
    assert ak.undecided(ak.Params(scale="cpu", seeds=3))["seeds"] == {}
    smoke = ak.undecided(ak.Params(scale="smoke"))
    assert set(smoke["seeds"]) == set(smoke["alignment"]) == set(ak.NETS)
    assert ak.gaps_text(cpu) == "ResNet-50: 1 seed (< 2); ResNet-50: KP's A = 0.4 (< 2: W − B × 0.67)"
    assert ak.gaps_text(ak.undecided(ak.Params(scale="paper"))) == "none"


def test_regime_rows_are_the_configs_numbers():
    rows = ak.regime_rows()
    r18 = "ResNet-18: KP's A = λ Σ η / (1 − μ)"
    # torchvision: 5,005 steps an epoch, lr 0.1/0.01/0.001 for 30 epochs each, λ 1e-4, μ 0.9
    assert rows[r18]["paper"] == pytest.approx(1e-4 * 5005 * 30 * 0.111 / 0.1)
    # cpu: 40 steps an epoch, lr 0.05 for 12 epochs then 0.005 for 3, λ 1e-2
    assert rows[r18]["cpu"] == pytest.approx(1e-2 * 40 * (12 * 0.05 + 3 * 0.005) / 0.1)
    assert rows[r18]["cpu"] >= ak.ALIGNED_EXPONENT > rows[r18]["smoke"]
    assert rows["ResNet-18: W − B factor exp(−A)"]["cpu"] == pytest.approx(math.exp(-rows[r18]["cpu"]))
    assert rows["ResNet-18: optimizer steps"] == {"paper": 450450, "cpu": 600, "smoke": 8}
    assert rows["MLP: KP's A"]["cpu"] >= rows[r18]["paper"]  # the MLP's KP at the paper's A
    assert rows["WM: mirror steps, ResNet-18 (warm-up + one per step)"]["cpu"] == 100 + 600
    table = ak.regime_table()
    assert list(table.columns) == ["quantity", "paper", "cpu", "smoke", "cpu / paper"]
    assert table.set_index("quantity").loc["classes", "cpu / paper"] == pytest.approx(0.01)


def test_kp_angle_model():
    assert ak.kp_end_angle(0.0, 0.0) == pytest.approx(90.0)
    assert ak.kp_end_angle(0.0, 1.0) == pytest.approx(60.0)  # cos θ = 1/2
    small = ak.kp_end_angle(5.0, 1.0)
    assert small == pytest.approx(math.degrees(math.sqrt(2) * math.exp(-5.0)), rel=1e-3)
    assert ak.kp_end_angle(3.0, 0.5) < ak.kp_end_angle(2.0, 0.5) < ak.kp_end_angle(2.0, 0.2)
    with pytest.raises(ValueError, match="exponent=-1.0 and learned=0.5 must both be ≥ 0"):
        ak.kp_end_angle(-1.0, 0.5)
    assert ak.learned_size(1.0, math.exp(-1.0)) == 0.0 and ak.learned_size(0.0, 0.5) == 0.0
    assert ak.learned_size(2.0, 1.0) == pytest.approx(math.sqrt(1 - math.exp(-4.0)))


def test_kp_angle_model_on_vectors():
    """The model's orthogonal picture, built from random vectors, gives the angle it predicts."""
    rng = np.random.default_rng(1)
    w0, b0, g = rng.normal(size=(3, 200_000))
    for exponent, learned in ((0.5, 0.3), (2.5, 0.6)):
        w = np.exp(-exponent) * w0 + learned * g
        b = np.exp(-exponent) * b0 + learned * g
        angle = math.degrees(math.acos(w @ b / np.linalg.norm(w) / np.linalg.norm(b)))
        growth = np.linalg.norm(w) / np.linalg.norm(w0)
        predicted = ak.kp_end_angle(exponent, ak.learned_size(exponent, growth))
        assert predicted == pytest.approx(angle, abs=1.0)


def test_model_check_from_a_run():
    _, history = _fake(True)
    check = ak.model_check(history)
    assert set(check.label) == {"KP", ak.NO_DECAY} and set(check.net) == {"ResNet-18", "MLP"}
    row = check[(check.label == "KP") & (check.net == "MLP")].iloc[0]
    assert row.growth == pytest.approx(3.5 / 2.0) and row.measured == pytest.approx(12.0)
    assert row.predicted == pytest.approx(ak.kp_end_angle(2.5, ak.learned_size(2.5, 1.75)))
    table = ak.model_table(check, "cpu")
    assert list(table.cell[:2]) == ["KP", ak.NO_DECAY] and (table.scale == "cpu").all()
    assert set(table[f"explained (≤ {ak.MODEL_TOLERANCE:g}°)"]) <= {"yes", "no"}
    fig = ak.model_figure(check, "cpu")
    assert fig.axes[0].get_xlim() == (-2, 92)


def test_tables_from_a_run():
    summary, history = _fake(True)
    table = ak.resnet_table(summary, "cpu")
    assert list(table.index) == ["BP", "FA", "sign symmetry", "WM", "KP", ak.TORCHVISION_BP]
    assert list(table.columns[:2]) == ["ResNet-18 top1-err %", "ResNet-18 top5-err %"]
    assert table.loc["BP", "ResNet-18 top1-err %"].startswith("10.") and (table["ResNet-18 seeds"] == 3).all()
    assert table.loc["FA", "ResNet-50 top5-err %"].startswith(("31.", "32."))
    assert table.loc[ak.TORCHVISION_BP, "ResNet-50 top1-err %"] == "—"
    assert table.loc["FA", ak.BIOTORCH] == 85.25 and table.loc["WM", ak.BIOTORCH] == "—"
    assert ak.decay_cost(summary) == pytest.approx(0.0, abs=0.5)  # the fake BP rows differ by noise only
    assert math.isnan(ak.decay_cost(summary[summary.label != ak.TORCHVISION_BP]))
    mlp = ak.mlp_table(summary, "cpu")
    assert list(mlp.index) == ["BP", "FA", "WM", "KP", ak.NO_DECAY]
    assert mlp.loc["KP", ak.THEIRS] == ak.THEIR_MNIST["kp"] and mlp.loc[ak.NO_DECAY, ak.THEIRS] == "—"
    assert mlp.loc["KP", "KP's A"] == 2.5 and mlp.loc["BP", "KP's A"] == "—"
    distance = ak.distance_table(history, "cpu")
    assert set(distance.net) == {"ResNet-18", "MLP"} and (distance["‖W − B‖ end/start, max"] <= 1.0).all()
    assert distance["exp(−A)"].max() == pytest.approx(1.0)
    for model, metric in (("resnet18", "weight_angle"), ("resnet18", "grad_angle"), ("mlp", "weight_angle")):
        fig = ak.alignment_figure(history, metric, model, "cpu")
        assert len(fig.axes) == len(LAYERS[model]) and fig.axes[0].get_xlabel() == "epoch"
        labels = {t.get_text() for t in fig.legends[0].get_texts()} if fig.legends else set()
        assert ak.TORCHVISION_BP not in labels


def test_conditions_per_scale_and_explicit_rule_options():
    cells = ak.spec(ak.Params(scale="smoke"))["conditions"]
    nets = [c for c in cells if c["model"] in ak.NETS]
    assert len(nets) == 2 * len(ak.RULES) + 2 and len(cells) == len(nets) + len(ak.MLP_RULES) + 1
    usf = [c for c in cells if c["rule"] == "usf"]
    assert usf and all(c["rule_options"] == {"scale": "weight"} and c["keep_bp"] == ("last",) for c in usf)
    assert all(c.get("keep_bp", ()) == () for c in cells if c["rule"] != "usf")
    assert {c["dataset"] for c in nets} == {ak.SMOKE_DATASET}
    assert all(c["augment"] == "crop-flip" and c["schedule"] == "step:1" for c in nets)
    kp = [(c["model"], c["weight_decay"], c["epochs"]) for c in cells if c["rule"] == "kp"]
    assert kp == [("resnet18", DECAY, 2), ("resnet50", DECAY, 1), ("resnet18", 0.0, 1), ("mlp", 0.01, 4),
                  ("mlp", 0.0, 2)]  # fmt: skip
    assert [c["weight_decay"] for c in nets if c["rule"] == "bp"] == [DECAY, DECAY, ak.TORCHVISION_DECAY]
    mlp = [c for c in cells if c["model"] == "mlp"]
    assert {c["rule"]: c["lr"] for c in mlp} == ak.MLP_LR and {c["activation"] for c in mlp} == {"sigmoid"}
    assert {c["lr"] for c in nets} == {0.1 * 64 / 256}  # smoke: batch 64
    assert ak.resnet_lr(256) == 0.1 and ak.resnet_lr(128) == 0.05
    cpu = ak.resnet_conditions(ak.Params(scale="cpu"))
    seeds = pd.DataFrame(cpu).groupby(["model", "rule", "weight_decay"]).seed.nunique()
    assert seeds["resnet18", "kp", DECAY] == 2 and seeds["resnet50", "wm", DECAY] == 1
    assert seeds["resnet18", "kp", 0.0] == 1 and seeds["resnet18", "bp", ak.TORCHVISION_DECAY] == 2
    paper = ak.resnet_conditions(ak.Params(scale="paper"))
    assert {c["weight_decay"] for c in paper if c["rule"] != "kp" or c["weight_decay"]} == {1e-4}
    assert ak.SETTINGS["paper"]["base_width"] is None and all(Config(**c) for c in paper)


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
    assert regime.train_size(Config(**two[0])) > 0


def test_a_rule_keeps_its_colour_in_a_panel_that_lacks_it():
    """Sign symmetry has no head line (its head is BP): the head panel must not lend its colour to WM."""
    _, history = _fake(True)
    history = history[~((history.rule == "usf") & (history.layer == "fc"))]
    fig = ak.alignment_figure(history, "weight_angle", "resnet18", "cpu")
    legend = fig.legends[0]
    colour = {
        t.get_text(): h.get_color() for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
    }
    head = next(ax for ax in fig.axes if ax.get_title() == "layer fc")
    colours = {line.get_color() for line in head.get_lines() if len(line.get_xdata())}
    assert colour["sign symmetry"] not in colours and colour["WM"] in colours
