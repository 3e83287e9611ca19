"""fabook.regime: the quantities that decide a claim, against hand computations of the engine's rules."""

import math

import pytest

from fabook import regime
from fabook.train import Config


def cfg(**kw) -> Config:
    return Config(dataset="fashion-mnist-small", **kw)


def test_steps_follow_the_cap_the_validation_split_and_the_dropped_single_sample():
    c = cfg(max_train=1000, val_fraction=0.2, batch_size=64, epochs=3)
    assert regime.train_size(c) == 800
    assert regime.steps_per_epoch(c) == 13  # 12 full batches + one of 32
    assert regime.steps(c) == 39
    assert regime.steps_per_epoch(cfg(max_train=129, batch_size=64)) == 2  # 64 + 64, the single one dropped


def test_lr_sum_and_decay_exponent_under_a_step_schedule_with_momentum():
    c = cfg(
        max_train=640, batch_size=64, epochs=4, lr=0.1, momentum=0.9, weight_decay=1e-2, schedule="step:2"
    )
    assert regime.epoch_lrs(c) == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert regime.lr_sum(c) == pytest.approx(10 * 0.22)
    assert regime.decay_exponent(c) == pytest.approx(10 * 0.22 * 1e-2 / 0.1)
    assert regime.decay_exponent(c, first_epochs=1) == pytest.approx(10 * 0.1 * 1e-2 / 0.1)


def test_decay_exponent_follows_the_weight_decay_schedule_and_cosine():
    c = cfg(max_train=640, batch_size=64, epochs=4, lr=0.1, momentum=0.0, weight_decay=0.03,
            weight_decay_schedule="1:1e-4", schedule="cosine")  # fmt: skip
    lrs = [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert regime.epoch_lrs(c) == pytest.approx(lrs)
    expected = 10 * (lrs[0] * 0.03 + sum(lrs[1:]) * 1e-4)
    assert regime.decay_exponent(c) == pytest.approx(expected)
    assert regime.momentum_gain(c.replace(optimizer="adam", momentum=0.9)) == 1.0


def test_table_has_a_ratio_where_both_scales_are_numbers_and_refuses_unknown_scales():
    t = regime.table({"steps": {"paper": 1000, "cpu": 100, "smoke": 3}, "optimizer": {"paper": "sgd"}})
    assert list(t.columns) == ["quantity", "paper", "cpu", "smoke", "cpu / paper"]
    assert t.loc[0, "cpu / paper"] == pytest.approx(0.1)
    assert t.loc[0, "smoke"] == 3 and isinstance(t.loc[0, "smoke"], int)
    assert t.loc[1, "cpu / paper"] is None and t.loc[1, "cpu"] is None
    with pytest.raises(ValueError, match="'gpu'.*accepted: paper, cpu, smoke"):
        regime.table({"steps": {"gpu": 1}})
