"""fabook: learning rules without weight symmetry as PyTorch layers, and a book reproducing their papers."""

from fabook import metrics, norm_constraint, optim
from fabook.convert import convert
from fabook.layers import Conv2d, Linear, exact_backprop, rule_layers
from fabook.rules import RULES, Rule, get_rule

__version__ = "0.1.0"

__all__ = [
    "RULES",
    "Conv2d",
    "Linear",
    "Rule",
    "convert",
    "exact_backprop",
    "get_rule",
    "metrics",
    "norm_constraint",
    "optim",
    "rule_layers",
]
