"""A cell under torchrun: 2 gloo ranks on the CPU against one process (fabook.distributed)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import fabook
from fabook import results
from fabook.train import Config, result_path, train

ROOT = Path(__file__).resolve().parents[1]
RULES = list(fabook.RULES)  # the deterministic ones, and WM and brSF, which draw noise every step

# Trains each rule through the engine's own pieces (build_model, _Data's sharded batches, _train_epoch,
# DistributedDataParallel) in float64 and saves each rank's weights. Run with and without torchrun.
STEPS = """
import sys, torch
from torch.utils.data import TensorDataset
from fabook import data, distributed
from fabook.train import Config, _Data, _train_epoch, build_model, epoch_generator, make_optimizer
from fabook.train import seed_everything
torch.set_default_dtype(torch.float64)
out, rules = sys.argv[1], sys.argv[2].split(",")
for rule in rules:
    cfg = Config(dataset="digits", rule=rule, batch_size=32, max_train=200, weight_decay=1e-3,
                 rule_options={"warmup": 2} if rule == "wm" else {})
    device = distributed.setup(torch.device("cpu"), cfg.batch_size)
    seed_everything(cfg.seed)
    model = build_model(cfg)
    x, y = data.load(cfg.dataset, seed=0, max_train=cfg.max_train).train.tensors
    train_set = _Data(TensorDataset(x.double(), y), device, 0)
    optimizer = make_optimizer(cfg, model.parameters())
    net = distributed.wrap(model)
    for epoch in (1, 2):
        batches = train_set.batches(distributed.local_batch(32), epoch_generator(0, epoch))
        _train_epoch(net, optimizer, batches)
    torch.save(model.state_dict(), f"{out}/{rule}-w{distributed.world_size()}-r{distributed.rank()}.pt")
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str, nproc: int = 2) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_ranks_with_half_batches_end_with_the_weights_of_one_process(tmp_path):
    script = tmp_path / "steps.py"
    script.write_text(textwrap.dedent(STEPS))
    rules = ",".join(RULES)
    one = subprocess.run([sys.executable, str(script), str(tmp_path), rules], env=_env(), capture_output=True)
    assert one.returncode == 0, one.stderr.decode()[-3000:]
    _torchrun(str(script), str(tmp_path), rules)
    for rule in RULES:
        single = torch.load(tmp_path / f"{rule}-w1-r0.pt")
        ranks = [torch.load(tmp_path / f"{rule}-w2-r{r}.pt") for r in (0, 1)]
        assert single.keys() == ranks[0].keys() == ranks[1].keys(), rule
        for name, w in single.items():
            assert w.dtype in (torch.float64, torch.bool, torch.int64), (rule, name)
            for r in (0, 1):  # the ranks agree with each other and with one process on the full batch
                torch.testing.assert_close(ranks[r][name], w, rtol=1e-10, atol=1e-12, msg=f"{rule} {name}")


def _tiny(**changes) -> Config:
    base = dict(dataset="digits", epochs=3, batch_size=32, max_train=200, max_test=100, lr=0.05)
    return Config(**{**base, **changes})


def _numbers(result) -> list:
    return [(h.get("train_loss"), h["test_loss"], h["test_acc"]) for h in result.history]


def test_fabook_run_under_torchrun_resumes_and_writes_once(tmp_path, monkeypatch):
    rule = "wm"  # per-step noise; KP's and PFA's learned feedback: the float64 test above
    cfg = _tiny(rule=rule, rule_options={"warmup": 2}, weight_decay=1e-3)
    whole = train(cfg, out_dir=tmp_path / "one", progress=False)

    save = results.save_checkpoint

    def save_then_stop(path, state):  # one process trains epoch 1 and is interrupted
        save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path / "two", progress=False)
    ckpt = tmp_path / "two" / f"{cfg.key()}.ckpt.pt"
    assert ckpt.exists()

    options = [f"--option={k}={v}" for k, v in cfg.rule_options.items()]
    _torchrun(
        "-m", "fabook", "run", "--dataset=digits", f"--rule={rule}", *options, "--epochs=3",
        "--batch-size=32", "--max-train=200", "--max-test=100", "--lr=0.05", "--weight-decay=1e-3",
        "--no-progress", f"--out={tmp_path / 'two'}",
    )  # fmt: skip
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == [result_path(cfg, tmp_path).name]  # one result, the checkpoint gone
    stored = json.loads(result_path(cfg, tmp_path / "two").read_text())
    assert stored["provenance"]["world_size"] == 2 and stored["provenance"]["rank_batch_size"] == 16
    assert stored["provenance"]["resumed_at_epochs"] == [1]
    assert whole.provenance["world_size"] == 1
    two = train(cfg, out_dir=tmp_path / "two", progress=False)  # loaded, not rerun
    assert len(two.history) == len(whole.history) == 4
    for a, b in zip(_numbers(two), _numbers(whole), strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


def test_batch_must_split_over_the_ranks(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="batch_size=32 .* multiple of the world size 3"):
        train(_tiny(rule="fa"), progress=False)
