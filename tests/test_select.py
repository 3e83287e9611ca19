"""fabook.select: one lr grid per optimizer, chosen on validation numbers only."""

import numpy as np
import pandas as pd
import pytest

from fabook import select

GRIDS = {"sgd": [0.01, 0.1], "bm": [1e-4, 1e-3, 1e-2]}


def test_grid_cells_cover_each_condition_with_its_optimizers_grid():
    conditions = [{"dataset": "iris", "rule": "bp"}, {"dataset": "iris", "rule": "fa", "optimizer": "bm"}]
    cells = select.grid_cells(conditions, GRIDS, seeds=range(2))
    assert len(cells) == 2 * 2 + 3 * 2
    assert {c["lr"] for c in cells if c["rule"] == "fa"} == {1e-4, 1e-3, 1e-2}
    assert {(c["lr"], c["seed"]) for c in cells if c["rule"] == "bp"} == {
        (0.01, 0),
        (0.01, 1),
        (0.1, 0),
        (0.1, 1),
    }


@pytest.mark.parametrize(
    "grids, match",
    [
        ({"sgdd": [0.1]}, "unknown optimizer 'sgdd'"),
        ({"sgd": []}, "non-empty list"),
        ({"sgd": [0.1, -0.1]}, r"numbers in \(0, 1000\)"),
        ({"sgd": [float("nan")]}, r"numbers in \(0, 1000\)"),
        ({"sgd": "0.1"}, "non-empty list"),
    ],
)
def test_bad_grids_are_refused(grids, match):
    with pytest.raises(ValueError, match=match):
        select.grid_cells([{"dataset": "iris"}], grids, [0])


def test_a_condition_without_a_grid_is_refused():
    with pytest.raises(ValueError, match="no lr grid for optimizer 'adam'"):
        select.grid_cells([{"optimizer": "adam"}], GRIDS, [0])


def test_choose_reads_validation_numbers_only():
    rows = []
    for rule, lr, seed, val_acc, val_loss, test_acc in [
        ("bp", 0.01, 0, 0.80, 0.5, 0.99), ("bp", 0.01, 1, 0.90, 0.4, 0.99),  # mean 0.85
        ("bp", 0.1, 0, 0.86, 0.6, 0.10), ("bp", 0.1, 1, 0.86, 0.6, 0.10),  # mean 0.86: wins on validation
        ("fa", 0.01, 0, 0.70, 0.9, 0.5), ("fa", 0.1, 0, 0.70, 0.8, 0.5),  # tie: the lower loss wins
        ("fa", 1.0, 0, None, None, None),  # diverged
        ("kp", 0.01, 0, 0.5, 1.0, 0.5), ("kp", 0.1, 0, 0.5, 1.0, 0.5),  # full tie: the smaller lr
    ]:  # fmt: skip
        rows.append(dict(dataset="iris", rule=rule, lr=lr, seed=seed, val_acc=val_acc, val_loss=val_loss,
                         test_acc=test_acc))  # fmt: skip
    chosen = select.choose(pd.DataFrame(rows), ["dataset", "rule"]).set_index("rule")
    assert chosen.lr.to_dict() == {"bp": 0.1, "fa": 0.1, "kp": 0.01}
    assert chosen.loc["bp", "seeds"] == 2 and np.isclose(chosen.loc["bp", "val_acc"], 0.86)
    assert chosen.loc["fa", "tried"] == "0.01, 0.1, 1"


def test_choose_names_missing_columns():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['val_acc', 'val_loss'\]"):
        select.choose(pd.DataFrame({"dataset": ["iris"], "lr": [0.1]}), ["dataset"])
