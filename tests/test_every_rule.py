"""The "Every rule side by side" chapter: its settings and specs per scale, the regime table, the claims on
synthetic results (that should hold, not hold, or stay undecided), the BioTorch-setting run's specs and
reader, and its tables and figure."""

import itertools
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import fabook.results
from fabook import claims as cl
from fabook import record, rules, sweep
from fabook.experiments import every_rule as er
from fabook.sweep import expand


def test_every_rule_variant_is_a_fabook_rule_and_back():
    assert {r for r, _ in er.VARIANTS.values()} == set(rules.RULES)
    for label, (rule, options) in er.VARIANTS.items():
        rules.get_rule(rule, **options)
        assert er.variant_of(rule, options) == label
    with pytest.raises(ValueError, match=r"rule 'sc' with options \{'p': 0.3\} is not one of"):
        er.variant_of("sc", {"p": 0.3})


def test_params_reject_bad_values_naming_the_accepted_ones():
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        er.Params(scale="huge")
    with pytest.raises(
        ValueError, match=r"nets=\['vgg'\]: unknown \['vgg'\]; accepted: mlp, lenet, resnet20, mlp1d"
    ):
        er.Params(nets=["vgg"])
    with pytest.raises(ValueError, match="seeds=0 must be a positive integer"):
        er.Params(seeds=0)
    with pytest.raises(TypeError, match="nets='mlp' must be"):
        er.Params(nets="mlp")
    assert er.Params(scale="smoke", nets=["lenet"], seeds=2).settings["nets"] == ("lenet",)


def test_smoke_spec_sizes_and_the_recipe_at_each_scale():
    smoke = er.Params(scale="smoke")
    conditions = er.conditions(smoke)
    assert len(conditions) == len(er.VARIANTS) * len(er.NETS)
    assert all(c["max_train"] <= 300 and c["epochs"] <= 2 for c in conditions)
    selection = expand(er.selection_spec(smoke))
    assert len(selection) == len(conditions) * len(er.LR_GRIDS["smoke"]) == sum(er.plan(smoke).values())
    assert {c.seed for c in selection} == {0} and all(c.val_fraction == er.VAL_FRACTION for c in selection)
    for c in selection:
        assert (c.optimizer, c.momentum, c.weight_decay, c.batch_size) == ("sgd", 0.9, 1e-3, 64)
        assert c.metrics_every == c.epochs  # the angles at the end of training
    assert er.SETTINGS["cpu"]["seeds"] >= 3 and er.SETTINGS["paper"]["seeds"] >= 3
    lenet = er.cell("lenet", "BP", "paper")
    assert (lenet["epochs"], lenet["schedule"], lenet["max_train"]) == (100, "step:50,75", None)
    assert er.cell("mlp", "sc p=0.5", "cpu")["rule_options"] == {"p": 0.5}


def test_the_mnist1d_net_is_an_mlp_on_the_whole_second_data_set():
    c = er.cell("mlp1d", "KP", "cpu")
    assert (c["model"], c["dataset"], c["max_train"], c["max_test"]) == ("mlp", "mnist1d", None, None)
    assert er.cell("mlp", "KP", "cpu")["dataset"] == "fashion-mnist"
    assert er.net_of("mlp", "mnist1d") == "mlp1d" and er.net_of("mlp", "fashion-mnist") == "mlp"
    assert er.net_of("lenet", "fashion-mnist-small") == "lenet"
    keys = {er._key(c) for c in er.conditions(er.Params(scale="cpu"))}
    assert len(keys) == len(er.VARIANTS) * len(er.NETS)  # the two MLPs choose their lrs apart


def test_final_spec_reuses_the_selection_seed_and_takes_each_chosen_lr():
    params = er.Params(scale="smoke", nets=["mlp"], seeds=2)
    selection = expand(er.selection_spec(params))
    chosen = pd.DataFrame(
        [dict(model="mlp", dataset="fashion-mnist-small", rule=rule, lr=0.1,
              options=", ".join(f"{k}={v}" for k, v in sorted(o.items())))
         for rule, o in er.VARIANTS.values()]
    )  # fmt: skip
    chosen.loc[chosen.rule == "fa", "lr"] = 0.01
    final = expand(er.final_spec(params, chosen))
    assert len(final) == 2 * len(er.VARIANTS)
    assert {c.lr for c in final if c.rule == "fa"} == {0.01}
    seed0 = {c.key() for c in final if c.seed == 0}
    assert seed0 <= {c.key() for c in selection}


def test_regime_table_shows_steps_lr_sum_and_decay_at_every_scale():
    table = er.regime_table(er.Params(scale="smoke")).set_index("quantity")
    assert list(table.columns) == ["paper", "cpu", "smoke", "cpu / paper"]
    assert table.loc["LeNet: optimizer steps", "paper"] == 100 * 844  # 54,000 images at batch 64
    assert table.loc["BioTorch LeNet run: optimizer steps", "paper"] == 100 * 938  # all 60,000
    assert table.loc["BioTorch LeNet run: optimizer steps", "cpu"] is None
    assert table.loc["LeNet: optimizer steps", "cpu / paper"] < 0.05
    a = table.loc["LeNet: decay exponent A at lr₀ = 0.01"]
    assert a["paper"] > 1 > a["cpu"] > a["smoke"] > 0
    assert table.loc["seeds per (net, rule)", "smoke"] == 1


def _summary(sign_gap: float, random_gap: float, seeds: int = 3, nets=("mlp", "lenet")) -> pd.DataFrame:
    """Accuracy 90 for BP, 90 + sign_gap for the sign rules, 90 − random_gap for FA and DFA (noise 0.1)."""
    rng = np.random.default_rng(0)
    rows = []
    for net, seed, variant in itertools.product(nets, range(seeds), er.VARIANTS):
        acc = 90 + (
            sign_gap if variant in er.SIGN_RULES else -random_gap if variant in er.RANDOM_FEEDBACK else 0
        )
        acc += rng.normal(0, 0.1)
        model, dataset = er.NET_DATA.get(net, (net, "fashion-mnist"))
        rows.append(dict(net=net, model=model, dataset=dataset, seed=seed, variant=variant,
                         rule=er.VARIANTS[variant][0], test_pct=acc, error_pct=100 - acc, angle_wb=30.0,
                         angle_update=40.0 + seed))  # fmt: skip
    return pd.DataFrame(rows)


def test_claims_hold_when_built_in_and_fail_when_reversed():
    good = er.claims(_summary(sign_gap=-0.3, random_gap=4.0), "cpu")
    assert list(good.verdict) == [cl.HOLDS] * 3 and (good.scale == "cpu").all()
    assert "rank correlation with BioTorch" in good.measured[2]
    bad = er.claims(_summary(sign_gap=-3.0, random_gap=-1.0), "cpu")
    assert list(bad.verdict) == [cl.FAILS] * 3
    straddling = er.claims(_summary(sign_gap=-1.0, random_gap=2.0), "cpu")
    assert list(straddling.verdict) == [cl.INCONCLUSIVE, cl.INCONCLUSIVE, cl.HOLDS]  # 89 vs 88: in order
    one_seed = er.claims(_summary(sign_gap=0.0, random_gap=5.0, seeds=1), "smoke")
    assert list(one_seed.verdict) == [cl.INCONCLUSIVE] * 3
    assert "too few to estimate the error" in one_seed.measured[0]


def test_one_failing_net_makes_a_claim_fail():
    summary = _summary(sign_gap=0.0, random_gap=4.0)
    summary.loc[(summary.net == "lenet") & (summary.variant == "frSF"), "test_pct"] -= (
        3  # 87: behind BP, ahead of FA
    )
    verdicts = er.claims(summary, "cpu").verdict
    assert list(verdicts) == [cl.FAILS, cl.HOLDS, cl.HOLDS]


def test_comparison_table_and_figure_from_a_summary(tmp_path):
    summary = _summary(sign_gap=0.0, random_gap=4.0)
    chosen = pd.DataFrame(
        [dict(model=net, dataset="fashion-mnist", rule=rule, lr=0.03,
              options=", ".join(f"{k}={v}" for k, v in sorted(o.items())))
         for net in ("mlp", "lenet") for rule, o in er.VARIANTS.values()]
    )  # fmt: skip
    study = er.Study(summary, chosen, er.Reproduction(pd.DataFrame(), None, 0, 18))
    costs = pd.DataFrame([dict(net="mlp", rule="pfa", ratio=11.0)])
    table = er.comparison_table(study, "cpu", costs)
    assert len(table) == 2 * len(er.VARIANTS)
    row = table[(table.net == "MLP") & (table.rule == "PFA")].iloc[0]
    assert (row["step time ÷ torch"], row["lr"], row["seeds"]) == ("11.00", "0.03", 3)
    assert table[table.net == "LeNet"]["step time ÷ torch"].eq("").all()
    assert row["angle update–BP (°)"] == "41 ± 1"
    without = er.comparison_table(study, "cpu", er.step_costs(tmp_path / "none.json"))
    assert "step time ÷ torch" not in without.columns
    fig = er.figure(summary)
    assert [ax.get_title() for ax in fig.axes] == ["MLP", "LeNet"]


def test_step_costs_read_the_benchmark_file(tmp_path):
    path = tmp_path / "costs.json"
    rows = [
        dict(study="main", model="mlp", rule="kp", ratio=1.1),
        dict(study="main", model="mlp", rule="torch", ratio=1.0),
        dict(study="scaling", model="mlp", rule="kp", ratio=9.0),
    ]
    path.write_text(json.dumps({"rows": rows}))
    costs = er.step_costs(path)
    assert costs.to_dict("records") == [dict(net="mlp", rule="kp", ratio=1.1)]


def test_biotorch_specs_are_their_setting():
    selection = expand(er.biotorch_selection_spec())
    assert len(selection) == len(er.BIOTORCH_RULES) * len(er.BIOTORCH_LRS)
    assert all(c.val_fraction == er.VAL_FRACTION and c.epochs == er.BIOTORCH_SELECT_EPOCHS for c in selection)
    chosen = pd.DataFrame(dict(rule=list(er.BIOTORCH_RULES), lr=[0.1, 0.001, 0.001, 0.01, 0.01, 0.01]))
    final = expand(er.biotorch_final_spec(chosen, seeds=2))
    assert len(final) == 12
    for c in final:
        assert (c.model, c.dataset, c.epochs, c.schedule, c.batch_size) == ("lenet", "fashion-mnist", 100,
                                                                              "step:50,75", 64)  # fmt: skip
        assert (c.momentum, c.weight_decay, c.val_fraction, c.max_train) == (0.9, 1e-3, 0.0, None)
    assert {c.lr for c in final if c.rule == "bp"} == {0.1}
    with pytest.raises(ValueError, match="seeds=0 must be a positive integer"):
        er.biotorch_final_spec(chosen, seeds=0)


def test_the_reproduction_says_when_it_has_not_been_made(tmp_path, monkeypatch):
    monkeypatch.setenv("FABOOK_RECORDED", str(tmp_path / "recorded"))  # no recording either
    rep = er.biotorch_results(tmp_path / "none")
    assert not rep.made and (rep.done, rep.total) == (0, 18)
    assert er.biotorch_table(rep).empty
    claims = er.biotorch_claims(rep)
    assert len(claims) == 4 and (claims.verdict == cl.INCONCLUSIVE).all()
    assert claims.measured.str.contains("not run yet: 0 of 18").all()


def _reproduction(offset: float) -> er.Reproduction:
    """Our best-epoch errors = BioTorch's + offset (sd about 0.1), last-epoch 0.2 worse, 3 seeds."""
    rows = []
    for rule, seed in itertools.product(er.BIOTORCH_RULES, range(3)):
        best = er.BIOTORCH_ERROR[rule] + offset + 0.1 * (seed - 1)
        rows.append(dict(rule=rule, seed=seed, best_error_pct=best, error_pct=best + 0.2,
                         test_pct=100 - best - 0.2))  # fmt: skip
    chosen = pd.DataFrame(dict(rule=list(er.BIOTORCH_RULES), lr=0.01))
    return er.Reproduction(pd.DataFrame(rows), chosen, 18, 18)


def test_the_reproduction_beside_biotorch_and_its_claims():
    close = _reproduction(0.05)
    table = er.biotorch_table(close)
    assert len(table) == 6 and (table["within 2 sd of our seeds"] == "yes").all()
    assert table["BioTorch − ours (pts)"].tolist() == pytest.approx([-0.05] * 6)
    claims = er.biotorch_claims(close)
    assert claims.verdict.tolist() == [cl.HOLDS] * 4
    one_seed = er.Reproduction(close.final[close.final.seed == 0], close.chosen, 6, 18)
    assert not one_seed.made and er.biotorch_table(one_seed).empty
    far = er.biotorch_claims(_reproduction(1.0))
    assert far.verdict.iloc[3] == cl.FAILS and "0 of 6 rules within" in far.measured.iloc[3]


def test_the_background_command_trains_resumably_and_the_chapter_reads_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FABOOK_RUNS", str(tmp_path))
    tiny = dict(dataset="fashion-mnist-small", epochs=1, schedule=None, max_train=64, max_test=50)
    monkeypatch.setattr(er, "BIOTORCH", {**er.BIOTORCH, **tiny})
    monkeypatch.setattr(er, "BIOTORCH_SELECT_EPOCHS", 1)
    monkeypatch.setattr(er, "BIOTORCH_METRICS_EVERY", 0)
    er.main(["--seeds", "2", "--jobs", "1"])
    assert "BioTorch error (%)" in capsys.readouterr().out
    rep = er.biotorch_results(seeds=2)
    assert rep.made and (rep.done, rep.total) == (12, 12)
    assert set(rep.chosen.lr) <= set(er.BIOTORCH_LRS)
    table = er.biotorch_table(rep)
    assert table.seeds.tolist() == [2] * 6 and table["BioTorch error (%)"].tolist() == list(
        er.BIOTORCH_ERROR.values()
    )
    assert len(er.biotorch_claims(rep)) == 4
    er.main(["--seeds", "2", "--jobs", "1"])  # everything is there: nothing trains again
    assert len(list(tmp_path.rglob("*.json"))) == 6 * len(er.BIOTORCH_LRS) + 12
    with sweep.watch() as usage:  # the chapter's own recording does not take the reproduction's cells
        er.biotorch_results(seeds=2)
    assert not usage.results
    monkeypatch.setenv("FABOOK_RECORDED", str(tmp_path / "recorded"))
    er.main(["--seeds", "2", "--record"])
    path = tmp_path / "recorded" / "every_rule" / "paper.json.gz"
    header = record.read_header(path)
    assert (header["scale"], header["cells"], header["histories"]) == ("paper", 30, 12)
    shutil.rmtree(er.biotorch_out_dir())  # a fresh clone: the recording stands in for the runs
    fresh = er.biotorch_results(seeds=2)
    assert fresh.made and fresh.earlier is None
    monkeypatch.setattr(fabook.results, "numerics_version", lambda: "0123456789ab")  # the code changes
    earlier = er.biotorch_results(
        seeds=2
    )  # nothing of this code's: the recording, labelled as earlier code's
    assert earlier.made and earlier.earlier["numerics"] == header["provenance"]["numerics"] != "0123456789ab"
    assert earlier.final.best_error_pct.tolist() == fresh.final.best_error_pct.tolist()
    table = er.biotorch_table(earlier)
    assert (table.scale == f"paper (BioTorch's setting; recorded by earlier code, numerics "
            f"{header['provenance']['numerics']})").all()  # fmt: skip
    assert (er.biotorch_claims(earlier).scale == table.scale.iloc[0]).all()
