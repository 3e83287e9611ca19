import json
import re

import pytest
import torch
from torch.utils.data import Dataset

import fabook.train as train_module
from fabook import data, results
from fabook.results import ResultFileError
from fabook.train import Config, Result, load_result, result_path, train

TINY = dict(dataset="digits", epochs=2, max_train=200, max_test=100, batch_size=50, metrics_every=0)


def tiny(**changes) -> Config:
    return Config(**{**TINY, **changes})


def no_load(*args, **kwargs):
    raise RuntimeError("data loaded")


def numbers(result: Result) -> list[dict]:
    """The history without the wall times (which differ between runs)."""
    return [{k: v for k, v in h.items() if k != "time"} for h in result.history]


# Config -----------------------------------------------------------------------------------------------------


def test_key_is_stable_canonical_and_readable():
    a = tiny(rule="sc", rule_options={"scale": 1.0, "p": 0.5})
    b = tiny(rule="sc", rule_options={"p": 0.5, "scale": 1.0})
    assert a == b and a.key() == b.key() and hash(a) == hash(b)
    assert list(a.rule_options) == ["p", "scale"]
    assert re.fullmatch(r"digits-mlp-sc-s0-[0-9a-f]{12}", a.key())
    assert a.replace(seed=1).key() != a.key()
    assert tiny(lr=1).key() == tiny(lr=1.0).key()
    assert Config.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert tiny(keep_bp=["last"]).keep_bp == ("last",)


def test_config_rejects_wrong_types_and_unknown_fields():
    with pytest.raises(TypeError, match="epochs"):
        tiny(epochs="3")
    with pytest.raises(TypeError, match="lr"):
        tiny(lr=True)
    with pytest.raises(ValueError, match="batch_size"):
        tiny(batch_size=0)
    with pytest.raises(ValueError, match="'epoch'.*accepted: dataset"):
        Config.from_dict({"dataset": "digits", "epoch": 3})


@pytest.mark.parametrize(
    "changes, error, match",
    [
        (dict(dataset="nope"), ValueError, r"dataset 'nope'.*accepted: .*digits"),
        (dict(model="transformer"), ValueError, r"model 'transformer'.*accepted: mlp"),
        (dict(rule="hebb"), ValueError, r"rule 'hebb'.*accepted: bp"),
        (dict(optimizer="rmsprop"), ValueError, r"optimizer 'rmsprop'.*accepted: sgd, adam, bm"),
        (dict(schedule="linear"), ValueError, r"schedule 'linear'.*cosine"),
        (dict(schedule="step:5,3"), ValueError, r"schedule 'step:5,3'"),
        (dict(schedule="step:2;gamma=-1"), ValueError, r"schedule 'step:2;gamma=-1'"),
        (dict(weight_decay_schedule="1:x"), ValueError, r"weight_decay_schedule '1:x'.*accepted: None"),
        (dict(weight_decay_schedule="2:1e-4,1:0"), ValueError, r"weight_decay_schedule '2:1e-4,1:0'"),
        (dict(weight_decay_schedule="0:1e-4"), ValueError, r"epochs > 0"),
        (dict(rule="sc", rule_options={"q": 1}), TypeError, r"'q'"),
        (dict(device="tpu:0"), ValueError, r"device 'tpu:0'.*accepted: cpu"),
        (dict(dataset="iris", model="cnn"), ValueError, r"cnn cannot take input_shape \(4,\)"),
        (dict(keep_bp=("fc9",)), ValueError, r"fc9"),
        (dict(dataset="cifar10"), FileNotFoundError, r"cifar10.*get it with: .*download=True"),
    ],
)
def test_validation_before_training(tmp_path, monkeypatch, changes, error, match):
    monkeypatch.setattr(data, "load", no_load)
    with pytest.raises(error, match=match):
        train(tiny(**changes), out_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


# training ---------------------------------------------------------------------------------------------------


def test_same_config_gives_same_numbers():
    cfg = tiny(rule="brsf", epochs=2)
    first, second = train(cfg, progress=False), train(cfg, progress=False)
    assert numbers(first) == numbers(second)
    assert first.test_acc == second.test_acc and first.path is None
    assert numbers(train(cfg.replace(seed=1), progress=False)) != numbers(first)


def test_history_metrics_result_file_and_provenance(tmp_path):
    cfg = tiny(rule="fa", epochs=3, metrics_every=2)
    result = train(cfg, out_dir=tmp_path, progress=False)
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    assert [h["epoch"] for h in result.history if "layers" in h] == [0, 2, 3]
    layers = result.history[-1]["layers"]
    assert len(layers) == 3  # two hidden layers and the head
    assert set(next(iter(layers.values()))) == {
        "rule",
        "weight_angle",
        "sign_concordance",
        "norm_ratio",
        "distance",
        "weight_norm",
        "grad_angle",
        "error_ratio",
    }
    assert result.test_acc == result.history[-1]["test_acc"] > 0.1
    assert result.epochs_run == 3 and not result.diverged
    path = result_path(cfg, tmp_path)
    assert result.path == path and path.exists() and not path.with_name(f"{cfg.key()}.ckpt.pt").exists()
    stored = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert stored["format"] == results.FORMAT and stored["key"] == cfg.key()
    prov = stored["provenance"]
    assert prov["n_train"] == 200 and prov["n_test"] == 100 and prov["seed"] == 0
    assert {"fabook", "torch", "python", "git_commit", "hostname", "device", "start", "end"} <= set(prov)
    assert prov["device_name"].startswith(f"cpu ({results.cpu_model()}, ")  # the CPU model, not only x86_64
    assert load_result(path, cfg) == result


def test_measuring_alignment_does_not_change_training():
    cfg = tiny(rule="wm", rule_options={"warmup": 2}, epochs=2)
    plain = train(cfg, progress=False)
    measured = train(cfg.replace(metrics_every=1), progress=False)
    assert [h["train_loss"] for h in plain.history] == [
        h["train_loss"] for h in measured.history if h["epoch"]
    ]
    assert plain.test_acc == measured.test_acc


@pytest.mark.parametrize(
    "changes",
    [
        dict(rule="brsf", schedule="step:2", metrics_every=1),
        dict(rule="kp", optimizer="bm", lr=1e-3, schedule="cosine", batch_norm=True, weight_decay=1e-3),
        dict(rule="wm", rule_options={"warmup": 3}, optimizer="adam", lr=1e-3),
        dict(rule="pfa", rule_options={"k": 2}, weight_decay=0.3, weight_decay_schedule="1:1e-3,3:0"),
        dict(rule="kp", augment="crop-flip"),
    ],
)
def test_resume_after_interrupt_gives_the_same_numbers(tmp_path, monkeypatch, changes):
    cfg = tiny(epochs=4, **changes)
    whole = train(cfg, out_dir=tmp_path / "whole", progress=False)

    save = results.save_checkpoint

    def save_then_stop(path, state):
        save(path, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(results, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path / "cut", progress=False)
    ckpt = tmp_path / "cut" / f"{cfg.key()}.ckpt.pt"
    assert ckpt.exists() and not result_path(cfg, tmp_path / "cut").exists()
    monkeypatch.setattr(results, "save_checkpoint", save)

    resumed = train(cfg, out_dir=tmp_path / "cut", progress=False)
    assert numbers(resumed) == numbers(whole)
    assert resumed.test_acc == whole.test_acc
    assert resumed.provenance["resumed_at_epochs"] == [2]
    assert not ckpt.exists()


def test_finished_cell_is_loaded_not_rerun(tmp_path, monkeypatch):
    cfg = tiny()
    first = train(cfg, out_dir=tmp_path, progress=False)
    mtime = first.path.stat().st_mtime_ns
    monkeypatch.setattr(data, "load", no_load)
    again = train(cfg, out_dir=tmp_path, progress=False)
    assert again == first and first.path.stat().st_mtime_ns == mtime
    with pytest.raises(RuntimeError, match="data loaded"):  # a changed config is another cell
        train(cfg.replace(lr=0.02), out_dir=tmp_path, progress=False)


def test_corrupt_or_foreign_result_file_is_reported_and_kept(tmp_path):
    cfg = tiny(epochs=1)
    path = result_path(cfg, tmp_path)
    path.write_text("{not json")
    with pytest.raises(ResultFileError, match=re.escape(str(path)) + ".*not valid JSON"):
        train(cfg, out_dir=tmp_path, progress=False)
    assert path.read_text() == "{not json"

    other = train(cfg.replace(seed=5), out_dir=tmp_path, progress=False)
    foreign = other.path.read_text()
    path.write_text(foreign)
    with pytest.raises(ResultFileError, match=re.escape(str(path)) + ".*different config"):
        train(cfg, out_dir=tmp_path, progress=False)
    assert path.read_text() == foreign

    path.write_text('{"hello": 1}')
    with pytest.raises(ResultFileError, match="not a fabook result"):
        train(cfg, out_dir=tmp_path, progress=False)


def test_batch_manhattan_trains():
    result = train(tiny(rule="usf", optimizer="bm", lr=1e-3, epochs=3), progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert not result.diverged and losses[-1] < losses[0]


def test_divergence_is_a_result_not_an_error(tmp_path):
    result = train(tiny(lr=1e6, epochs=5, metrics_every=1), out_dir=tmp_path, progress=False)
    assert result.diverged and result.epochs_run < 5
    assert result.history[-1]["train_loss"] is None and 0 <= result.test_acc <= 1
    assert load_result(result.path).diverged


def test_schedules_set_the_learning_rate():
    step = train(tiny(epochs=3, schedule="step:1,2", lr=0.1), progress=False)
    assert [h["lr"] for h in step.history] == pytest.approx([0.1, 0.01, 0.001])
    cosine = train(tiny(epochs=2, schedule="cosine", lr=0.1), progress=False)
    assert [h["lr"] for h in cosine.history] == pytest.approx([0.1, 0.05])
    halved = train(tiny(epochs=3, schedule="step:1,2;gamma=0.5", lr=0.1), progress=False)
    assert [h["lr"] for h in halved.history] == pytest.approx([0.1, 0.05, 0.025])


def test_weight_decay_schedule_cuts_the_decay_once_and_the_cut_is_what_trains():
    cfg = tiny(epochs=3, weight_decay=0.5, weight_decay_schedule="1:1e-4", rule="pfa", rule_options={"k": 2})
    assert [train_module.weight_decay_at(cfg, e) for e in (1, 2, 3)] == [0.5, 1e-4, 1e-4]
    cut = train(cfg, progress=False)
    assert [h["weight_decay"] for h in cut.history] == [0.5, 1e-4, 1e-4]
    assert "weight_decay" not in train(tiny(epochs=1), progress=False).history[-1]
    # the schedule changes training: the same run with the large decay throughout ends elsewhere
    kept = train(cfg.replace(weight_decay_schedule="5:0.5"), progress=False)
    assert numbers(kept)[0] == numbers(cut)[0] and numbers(kept)[-1] != numbers(cut)[-1]
    two = tiny(weight_decay_schedule="1:0.1,2:0")
    assert [train_module.weight_decay_at(two, e) for e in (1, 2, 3)] == [0.0, 0.1, 0.0]


class Plain(Dataset):
    """A map-style dataset that is not a TensorDataset (takes the DataLoader path)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]


def through_dataloader(monkeypatch) -> None:
    """Make every data set load as a plain Dataset, so the engine takes its DataLoader path."""
    load = data.load

    def wrapped(*args, **kwargs):
        split = load(*args, **kwargs)
        split.train, split.test = Plain(split.train), Plain(split.test)
        return split

    monkeypatch.setattr(data, "load", wrapped)


def test_dataloader_path_matches_tensor_fast_path(monkeypatch):
    cfg = tiny(max_train=201, metrics_every=1)  # 201 = 4 * 50 + 1: the lone last sample is dropped
    fast = train(cfg, progress=False)
    through_dataloader(monkeypatch)
    slow = train(cfg, progress=False)
    assert numbers(slow) == numbers(fast)


def test_train_accepts_a_dict_and_rejects_a_bad_one():
    assert isinstance(train({**TINY, "epochs": 0}, progress=False), Result)
    with pytest.raises(ValueError, match="'rules'"):
        train({**TINY, "rules": "fa"}, progress=False)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    cfg = tiny()
    tmp_path.mkdir(exist_ok=True)
    results.save_checkpoint(tmp_path / f"{cfg.key()}.ckpt.pt", {"key": "something-else"})
    with pytest.raises(ResultFileError, match="another config"):
        train(cfg, out_dir=tmp_path, progress=False)


def test_epoch_generator_depends_on_seed_and_epoch_only():
    a = torch.randperm(10, generator=train_module.epoch_generator(0, 1))
    assert torch.equal(a, torch.randperm(10, generator=train_module.epoch_generator(0, 1)))
    assert not torch.equal(a, torch.randperm(10, generator=train_module.epoch_generator(0, 2)))


# top-5, augmentation, ImageFolder ---------------------------------------------------------------------------


class FixedLogits(torch.nn.Module):
    """Logits given per sample index (stored as the input's first feature)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[x[:, 0].long()]


def test_evaluate_counts_top1_and_top5():
    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4, 0], [0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6]])
    x, y = torch.arange(3.0)[:, None], torch.tensor([0, 1, 6])  # top-1 right; outside the top 5; both
    loss, top1, top5 = train_module.evaluate(FixedLogits(logits), iter([(x, y)]), top5=True)
    assert (top1, top5) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    y = torch.tensor([4, 2, 5])  # 5th largest; 5th largest; 2nd largest
    _, top1, top5 = train_module.evaluate(FixedLogits(logits), iter([(x, y)]), top5=True)
    assert (top1, top5) == (0.0, 1.0)
    assert len(train_module.evaluate(FixedLogits(logits[:, :3]), iter([(x, y % 3)]))) == 2
    assert train_module.evaluate(FixedLogits(logits[:, :3]), iter([(x, y % 3)]), top5=True)[2] == 1.0


def test_results_carry_top5():
    result = train(tiny(epochs=1), progress=False)
    assert result.test_top5 == result.history[-1]["test_top5"] >= result.test_acc
    assert result.summary()["test_top5"] == result.test_top5


def test_augment_batch_crops_and_flips_from_its_generator_only():
    x = torch.arange(2 * 3 * 6 * 5, dtype=torch.float32).view(2, 3, 6, 5) + 1
    state = torch.get_rng_state()
    a = train_module.augment_batch(x, "crop-flip", torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, train_module.augment_batch(x, "crop-flip", torch.Generator().manual_seed(1)))
    assert a.shape == x.shape and not torch.equal(a, x)
    flips = [train_module.augment_batch(x, "flip", torch.Generator().manual_seed(s)) for s in range(8)]
    assert all(torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(-1)) for f in flips for i in range(2))
    assert any(not torch.equal(f, x) for f in flips)
    p = train_module.CROP_PADDING
    for seed in range(8):
        c = train_module.augment_batch(x, "crop", torch.Generator().manual_seed(seed))
        for i in range(2):  # a window of the zero-padded image: some shift (dy, dx) in [-p, p]^2 matches
            padded = torch.nn.functional.pad(x[i], (p, p, p, p))
            assert any(
                torch.equal(c[i], padded[:, dy : dy + 6, dx : dx + 5])
                for dy in range(2 * p + 1)
                for dx in range(2 * p + 1)
            )


def test_augmentation_is_validated_seeded_and_same_on_both_paths(monkeypatch):
    with pytest.raises(ValueError, match="unknown augment 'rotate'; accepted: crop-flip, crop, flip"):
        train_module.validate(tiny(augment="rotate"))
    cfg = tiny(augment="crop-flip", epochs=1)
    plain, augmented = train(tiny(epochs=1), progress=False), train(cfg, progress=False)
    assert numbers(augmented) == numbers(train(cfg, progress=False)) != numbers(plain)
    through_dataloader(monkeypatch)
    assert numbers(train(cfg, progress=False)) == numbers(augmented)


def write_jpeg_folder(root, classes: int = 11, per_class: int = 2) -> None:
    """An ImageFolder of small random JPEGs: ``root/{train,val}/c00..c10/*.JPEG``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"c{c:02d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", format="JPEG")


def test_imagefolder_trains_with_the_imagenet_transforms_and_top5(tmp_path):
    write_jpeg_folder(tmp_path / "folder")
    cfg = Config(dataset="imagenet", data_root=str(tmp_path / "folder"), model="resnet18", base_width=4,
                 epochs=1, batch_size=8, lr=0.01, metrics_every=0)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="imagenet"):
        train_module.validate(cfg.replace(data_root=str(tmp_path / "nothing")))
    result = train(cfg, out_dir=tmp_path / "runs", progress=False)
    assert result.provenance["n_train"] == 22 and result.provenance["n_test"] == 22
    assert 0 <= result.test_acc <= result.test_top5 <= 1 and result.test_top5 < 1  # 11 classes: top-5 < all
    split = data.load("imagenet", root=tmp_path / "folder")
    assert split.info.num_classes == 11 and split.train[0][0].shape == (3, 224, 224)
    assert data.num_classes("imagenet", tmp_path / "folder") == 11  # the folder's, not ILSVRC's 1000
    assert data.num_classes("imagenet", tmp_path / "nothing") == 1000 and data.num_classes("digits") == 10
    head = train_module.build_model(cfg).fc
    assert head.out_features == 11
