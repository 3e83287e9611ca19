"""One short training run per rule: a small MLP on scikit-learn's digits beats chance clearly."""

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import fabook
from fabook.optim import BatchManhattan

SIGN_RULES = {"usf", "brsf", "frsf", "sc"}


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    to = lambda a, dt: torch.tensor(a, dtype=dt)  # noqa: E731
    return (
        to((xtr - mean) / std, torch.float32),
        to(ytr, torch.long),
        to((xte - mean) / std, torch.float32),
        to(yte, torch.long),
    )


@pytest.mark.parametrize("rule", fabook.RULES)
def test_short_training_run_beats_chance(rule, digits):
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    model = fabook.convert(net, rule)
    if rule in SIGN_RULES:  # Liao et al.: |B| = 1 needs Batch Manhattan (or batch norm)
        opt = BatchManhattan(model.parameters(), lr=0.001, momentum=0.9)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, len(xtr), (32,), generator=gen)
        loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    # Batch Manhattan's sign steps make the sign rules' runs chaotic at this size: over seeds 0-4 they end
    # at 0.71-0.92 (BM is blind to the feedback's scale, so float rounding alone moves a run by up to 0.09)
    bar = 0.6 if rule in SIGN_RULES else 0.8
    assert acc > bar, f"{rule}: test accuracy {acc:.3f} (chance 0.1)"
