import importlib

import pytest
import torch

# Small models run fastest single-threaded, and tests then don't fight over the 2 cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _checkpoint_every_epoch(monkeypatch):
    """Tests interrupt cells at a given epoch: a checkpoint after every one (the default waits seconds)."""
    monkeypatch.setattr(importlib.import_module("fabook.train"), "CHECKPOINT_SECONDS", 0.0)


@pytest.fixture(autouse=True)
def _no_recorded_results(monkeypatch):
    """Sweeps in tests train (or load) their own cells: the clone's recorded results stay out of them."""
    monkeypatch.setenv("FABOOK_RECORDED", "off")
