"""One training run (a *cell*): a :class:`Config` in, a :class:`Result` out.

A cell is identified by its config (:meth:`Config.key`). Given an ``out_dir``, :func:`train` writes the result
to ``out_dir/<key>.json`` and a checkpoint after every epoch to ``out_dir/<key>.ckpt.pt``; calling it again
with the same config returns the stored result, or resumes from the checkpoint and ends with the same
numbers as an uninterrupted run (on the CPU). Every model goes through :func:`fabook.convert`, ``"bp"`` too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

import fabook
from fabook import data, distributed, models, norm_constraint, results
from fabook.results import FORMAT, ResultFileError

OPTIMIZERS = ("sgd", "adam", "bm")
SCHEDULES = (
    "None", "'step:E1,E2,...' (lr /10 at those epochs)", "'step:E1,E2,...;gamma=G' (lr x G)", "'cosine'"
)  # fmt: skip
WEIGHT_DECAY_SCHEDULES = ("None", "'E1:WD1,E2:WD2,...' (weight decay WD1 from epoch E1 + 1 on, ...)")
AUGMENTS = ("crop-flip", "crop", "flip")
CROP_PADDING = 4
"""Pixels of zero padding around a training image before its random crop back to the original size."""
METRIC_BATCH = 256
"""Samples in the fixed train batch on which gradient alignment is measured."""
EVAL_BATCH = 1024
CHECKPOINT_SECONDS = 5.0
"""A checkpoint is written after an epoch once this many seconds have passed since the last one (a write costs
~20 ms: after every epoch it would dominate cells of many short epochs). Resuming from any epoch gives the
same numbers."""


@dataclass(frozen=True)
class Config:
    """Everything that defines a cell. JSON-able; ``rule_options`` is stored sorted by name.

    ``schedule``: None, ``"step:E1,E2,..."`` (lr divided by 10 after epochs E1, E2, ...; with
    ``";gamma=G"`` multiplied by G instead) or ``"cosine"`` (cosine annealing to 0 over ``epochs``).
    ``weight_decay_schedule``: None or ``"E1:WD1,E2:WD2,..."`` — ``weight_decay`` until epoch E1, then WD1
    (PFA's recipe: a large early decay cut once, ``weight_decay=0.03, weight_decay_schedule="1:9e-5"``).
    ``optimizer="adam"`` ignores ``momentum``. ``metrics_every``:
    epochs between alignment measurements (0: never). ``num_workers``: DataLoader workers for data sets
    that are not held in memory. ``threads``: torch's CPU threads for the cell (the number of threads
    changes the order of float sums, so it is part of the cell: one key, one set of numbers). ``augment``:
    None or one of :data:`AUGMENTS`, applied to every training batch (see :func:`augment_batch`; an
    ImageFolder set's own transforms already augment). ``base_width``: the stem channels of
    resnet18/resnet50. ``data_root``: the data folder (default :func:`fabook.data.default_root`; for
    ImageNet a folder holding ``train/`` and ``val/``).

    Early stopping: ``val_fraction`` > 0 carves that share of the training set (stratified, drawn with
    ``seed``) into a validation split that is measured every epoch instead of the test set; the weights with
    the lowest validation loss are restored at the end and the test set is measured once, on them.
    ``patience``: stop after that many epochs without a lower validation loss (None: run all ``epochs``).
    """

    dataset: str
    model: str = "mlp"
    rule: str = "bp"
    rule_options: dict[str, Any] = field(default_factory=dict)
    batch_norm: bool = False
    width: int | float | None = None
    depth: int | None = None
    activation: str = "relu"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str | None = None
    weight_decay_schedule: str | None = None
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    max_train: int | None = None
    max_test: int | None = None
    constrain_norm: bool = False
    keep_bp: tuple[str, ...] = ()
    metrics_every: int = 1
    num_workers: int = 0
    val_fraction: float = 0.0
    patience: int | None = None
    threads: int = 1
    augment: str | None = None
    base_width: int | None = None
    data_root: str | None = None

    def __post_init__(self) -> None:
        for name in ("dataset", "model", "rule", "activation", "optimizer", "device"):
            _check_type(name, getattr(self, name), str)
        for name in ("schedule", "weight_decay_schedule", "augment", "data_root"):
            _check_type(name, getattr(self, name), str, optional=True)
        _check_type("width", self.width, (int, float), optional=True)
        for name in ("batch_norm", "constrain_norm"):
            _check_type(name, getattr(self, name), bool)
        for name in ("lr", "momentum", "weight_decay"):
            _check_type(name, getattr(self, name), (int, float))
            object.__setattr__(self, name, float(getattr(self, name)))
        for name, (ok, text) in _RANGES.items():
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and ok(value)):
                raise ValueError(f"{name} must be a finite number {text}; got {value!r}")
        for name, low in _INT_FIELDS.items():
            value = getattr(self, name)
            if value is not None or name not in _OPTIONAL:
                _check_type(name, value, int)
                if value < low:
                    raise ValueError(f"{name} must be >= {low}; got {value!r}")
        _check_type("val_fraction", self.val_fraction, (int, float))
        object.__setattr__(self, "val_fraction", float(self.val_fraction))
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1); got {self.val_fraction!r}")
        if self.patience is not None and not self.val_fraction:
            raise ValueError(f"patience={self.patience!r} needs a validation split: set val_fraction > 0")
        options = self.rule_options
        if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
            raise TypeError(f"rule_options must be a dict with str keys; got {options!r}")
        for k, v in options.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"rule option {k} must be a finite number; got {v!r}")
        object.__setattr__(self, "rule_options", results.jsonable({k: options[k] for k in sorted(options)}))
        keep_bp = (self.keep_bp,) if isinstance(self.keep_bp, str) else tuple(self.keep_bp)
        for name in keep_bp:
            _check_type("keep_bp entry", name, str)
        object.__setattr__(self, "keep_bp", keep_bp)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values."""
        return results.jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Config:
        """The inverse of :meth:`to_dict`; ValueError naming unknown fields."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(
                f"unknown config field(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(names)}"
            )
        return cls(**d)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed."""
        return self.from_dict({**self.to_dict(), **changes})

    def key(self, numerics: str | None = None) -> str:
        """Stable identity: ``<dataset>-<model>-<rule>-s<seed>-<12 hex of sha1(canonical JSON)>``, the JSON
        holding the fields and the code's :func:`fabook.results.numerics_version` (default: this code's)."""
        stamped = {**self.to_dict(), "numerics": numerics or results.numerics_version()}
        text = json.dumps(stamped, sort_keys=True, separators=(",", ":"), allow_nan=False)
        digest = hashlib.sha1(text.encode()).hexdigest()[:12]
        prefix = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.dataset}-{self.model}-{self.rule}-s{self.seed}")
        return f"{prefix}-{digest}"

    def __hash__(self) -> int:
        return hash(self.key())


_INT_FIELDS = {"epochs": 0, "batch_size": 1, "seed": 0, "metrics_every": 0, "num_workers": 0, "threads": 1}
_INT_FIELDS |= {"depth": 0, "max_train": 1, "max_test": 1, "base_width": 1, "patience": 1}
_OPTIONAL = ("depth", "max_train", "max_test", "base_width", "patience")
_RANGES = {
    "lr": (lambda v: v >= 0, ">= 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "width": (lambda v: v > 0, "> 0"),
}
"""Numeric fields: the range each must lie in (and every one finite)."""


def _check_type(name: str, value: Any, types: type | tuple[type, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, types) and (types is bool or not isinstance(value, bool)):
        return
    names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
    raise TypeError(f"{name} must be {names}{' or None' if optional else ''}; got {value!r}")


@dataclass
class Result:
    """What a cell produced.

    ``history``: one dict per epoch with ``epoch, lr, train_loss, train_acc, test_loss, test_acc, test_top5,
    time`` (``test_top5``: a true label among the 5 largest logits) and,
    when measured, ``layers``: ``{layer: {rule, weight_angle, sign_concordance, norm_ratio, grad_angle}}``
    (epoch 0: before training, test numbers and layers only). ``wall_time``: seconds spent in the epochs,
    summed over resumed sessions. Non-finite numbers are None. With a validation split the epochs record
    ``val_loss, val_acc`` instead of test numbers; ``best_epoch``, ``val_loss`` and ``val_acc`` are those of
    the restored weights, and ``test_acc`` is their one measurement on the test set (``best_test_acc`` None).
    """

    config: Config
    history: list[dict[str, Any]]
    test_acc: float | None
    best_test_acc: float | None
    train_loss: float | None
    diverged: bool
    epochs_run: int
    wall_time: float
    provenance: dict[str, Any]
    best_epoch: int | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    test_top5: float | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """The key of the config under the code that produced the result (files from before code versions
        were recorded count as ``"unversioned"``)."""
        return self.config.key(self.provenance.get("numerics", "unversioned"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the result file."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}
        return results.jsonable({"format": FORMAT, "key": self.key, **d, "config": self.config.to_dict()})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Path | None = None) -> Result:
        names = {f.name for f in dataclasses.fields(cls)} - {"path"}
        fields = {k: v for k, v in d.items() if k in names}
        return cls(**{**fields, "config": Config.from_dict(d["config"])}, path=path)

    def summary(self) -> dict[str, Any]:
        """One flat row: the config fields, a readable ``options`` / ``label``, the final numbers, ``key``."""
        cfg = self.config
        options = format_options(cfg.rule_options)
        return {
            **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)},
            "options": options,
            "label": f"{cfg.rule} ({options})" if options else cfg.rule,
            "test_acc": self.test_acc,
            "best_test_acc": self.best_test_acc,
            "test_top5": self.test_top5,
            "train_loss": self.train_loss,
            "diverged": self.diverged,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "val_loss": self.val_loss,
            "val_acc": self.val_acc,
            "wall_time": self.wall_time,
            "key": self.key,
        }


def format_options(options: Mapping[str, Any]) -> str:
    """``{"p": 0.5, "scale": 1}`` -> ``"p=0.5, scale=1"``."""
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()))


def result_path(config: Config, out_dir: str | Path) -> Path:
    """Where ``config``'s result file lives under ``out_dir``."""
    return Path(out_dir) / f"{config.key()}.json"


def lock_path(config: Config, out_dir: str | Path) -> Path:
    """The lock file that one process holds while it trains ``config`` under ``out_dir``."""
    return Path(out_dir) / f".{config.key()}.lock"


def load_result(path: str | Path, config: Config | None = None) -> Result:
    """A stored result; ResultFileError naming the file when it is not one (or not ``config``'s)."""
    path = Path(path)
    d = results.read_json(path)
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ResultFileError(f"{path} is not a fabook result (no 'format': {FORMAT!r}); move or delete it")
    try:
        result = Result.from_dict(d, path)
    except (KeyError, TypeError, ValueError) as e:
        raise ResultFileError(f"{path} is a damaged fabook result ({e}); move or delete it") from e
    if config is not None and result.config != config:
        raise ResultFileError(
            f"{path} holds the result of a different config (key {result.key}, expected {config.key()}); "
            "move or delete it"
        )
    return result


# validation ------------------------------------------------------------------------------------------------


def parse_schedule(schedule: str | None) -> tuple[str, list[int]] | None:
    """``None`` | ``("step", milestones)`` | ``("cosine", [])``; ValueError for anything else."""
    if schedule is None:
        return None
    if schedule == "cosine":
        return ("cosine", [])
    match = re.fullmatch(r"step:(\d+(?:,\d+)*)(;gamma=[0-9.eE+-]+)?", schedule.replace(" ", ""))
    if match:
        milestones = [int(m) for m in match.group(1).split(",")]
        if milestones == sorted(set(milestones)) and milestones[0] > 0 and _step_gamma(schedule) > 0:
            return ("step", milestones)
    raise ValueError(
        f"unknown schedule {schedule!r}; accepted: {', '.join(SCHEDULES)} (increasing epochs > 0, G > 0)"
    )


def _step_gamma(schedule: str) -> float:
    """The factor of a ``"step:...;gamma=G"`` schedule (0.1 without one; -1 when G is not a number)."""
    _, _, text = schedule.replace(" ", "").partition(";gamma=")
    try:
        return float(text) if text else 0.1
    except ValueError:
        return -1.0


def parse_weight_decay_schedule(schedule: str | None) -> list[tuple[int, float]]:
    """``[(E1, WD1), ...]`` from ``"E1:WD1,E2:WD2,..."`` (epochs increasing, > 0; decays >= 0)."""
    if schedule is None:
        return []
    try:
        steps = [(int(e), float(wd)) for e, wd in (item.split(":") for item in schedule.split(","))]
    except ValueError:
        steps = []
    epochs = [e for e, _ in steps]
    if steps and epochs == sorted(set(epochs)) and epochs[0] > 0 and all(wd >= 0 for _, wd in steps):
        return steps
    raise ValueError(
        f"unknown weight_decay_schedule {schedule!r}; accepted: {', '.join(WEIGHT_DECAY_SCHEDULES)} "
        "(increasing epochs > 0, decays >= 0)"
    )


def weight_decay_at(config: Config, epoch: int) -> float:
    """The weight decay that training epoch ``epoch`` (1-based) uses under the config's schedule."""
    value = config.weight_decay
    for after, wd in parse_weight_decay_schedule(config.weight_decay_schedule):
        if epoch > after:
            value = wd
    return value


def parse_device(name: str) -> torch.device:
    """``torch.device(name)``, checked to exist here."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}; accepted: cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here; use device='cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available here; use device='cpu'")
    return device


def _check_name(what: str, value: str, accepted: Any) -> None:
    if value not in accepted:
        raise ValueError(f"unknown {what} {value!r}; accepted: {', '.join(accepted)}")


def validate(config: Config, *, build: bool = True) -> torch.device:
    """Check ``config`` before any training: names, options, device, data at hand and (``build``) that the
    model can be built and converted. Raises ValueError/TypeError (FileNotFoundError for missing data)."""
    _check_name("dataset", config.dataset, data.CATALOGUE)
    _check_name("model", config.model, models.MODELS)
    _check_name("rule", config.rule, fabook.RULES)
    _check_name("optimizer", config.optimizer, OPTIMIZERS)
    if config.augment is not None:
        _check_name("augment", config.augment, AUGMENTS)
    fabook.get_rule(config.rule, **config.rule_options)
    parse_schedule(config.schedule)
    parse_weight_decay_schedule(config.weight_decay_schedule)
    device = parse_device(config.device)
    lack = data.missing(config.dataset, config.data_root)
    if lack is not None:
        fetch = data.CATALOGUE[config.dataset].fetch
        raise FileNotFoundError(
            f"dataset {config.dataset!r} is not available here (missing {lack}); get it with: {fetch}"
        )
    if build:
        with torch.random.fork_rng(devices=[]):
            build_model(config)
    return device


def build_model(config: Config) -> nn.Module:
    """The config's architecture for its data set (as many outputs as the set has classes: an ImageNet
    folder may hold fewer than 1000), converted to its rule (on the CPU)."""
    info = data.CATALOGUE[config.dataset]
    classes = data.num_classes(config.dataset, config.data_root)
    model = models.build(
        config.model, info.input_shape, classes, width=config.width, depth=config.depth,
        batch_norm=config.batch_norm, activation=config.activation, base_width=config.base_width,
    )  # fmt: skip
    return fabook.convert(
        model,
        config.rule,
        keep_bp=config.keep_bp,
        constrain_norm=config.constrain_norm,
        **config.rule_options,
    )


def make_optimizer(config: Config, params: Any) -> torch.optim.Optimizer:
    """The config's optimizer over ``params``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "bm":
        return fabook.optim.BatchManhattan(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")


def make_scheduler(
    config: Config, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The config's learning-rate schedule, stepped once per epoch."""
    parsed = parse_schedule(config.schedule)
    if parsed is None:
        return None
    kind, milestones = parsed
    if kind == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=_step_gamma(config.schedule))
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))


# randomness ------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """The generator that shuffles epoch ``epoch`` of a run with ``seed`` (independent of what ran before);
    ``stream`` 1 is that epoch's augmentation."""
    entropy = [seed, epoch] if stream == 0 else [seed, epoch, stream]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Images ``(N, C, H, W)`` randomly augmented, each sample on its own: ``crop`` zero-pads by
    :data:`CROP_PADDING` and crops back to H x W at a random offset; ``flip`` mirrors left-right with
    probability 1/2. The draws come from ``generator`` (on the CPU) only."""
    n, _, h, w = x.shape
    if "crop" in kind:
        p = CROP_PADDING
        dy, dx = torch.randint(0, 2 * p + 1, (2, n), generator=generator).to(x.device)[:, :, None, None, None]
        rows = (dy + torch.arange(h, device=x.device)[:, None]).expand(n, x.shape[1], h, w + 2 * p)
        cols = (dx + torch.arange(w, device=x.device)).expand(n, x.shape[1], h, w)
        x = F.pad(x, (p, p, p, p)).gather(2, rows).gather(3, cols)
    if "flip" in kind:
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def augmented(batches: Iterator, kind: str | None, generator: torch.Generator) -> Iterator:
    """``batches`` with inputs passed through :func:`augment_batch` (unchanged when ``kind`` is None)."""
    for xb, yb in batches:
        yield (xb if kind is None else augment_batch(xb, kind, generator)), yb


def _rng_state(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "random": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["random"]
    random.setstate((version, tuple(internal), gauss))


# batches ---------------------------------------------------------------------------------------------------


class _Data:
    """A train or test set, held as device tensors when it is a TensorDataset (the fast path)."""

    def __init__(self, dataset: Dataset, device: torch.device, num_workers: int):
        self.dataset, self.device, self.num_workers = dataset, device, num_workers
        self.tensors = None
        if isinstance(dataset, TensorDataset):
            x, y = dataset.tensors
            self.tensors = (x.to(device), y.to(device))
        self.n = len(dataset)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches in the generator's random order (in order without one). A last batch of one sample is
        dropped when shuffling: BatchNorm cannot train on it. Uses no global randomness."""
        shuffle = generator is not None
        order = torch.randperm(self.n, generator=generator) if shuffle else torch.arange(self.n)
        order = distributed.shard(order) if shuffle else order  # this rank's part under torchrun
        if shuffle and len(order) % batch_size == 1 and len(order) > 1:
            order = order[:-1]
        if self.tensors is not None:
            x, y = self.tensors
            for idx in order.to(self.device).split(batch_size):
                yield x[idx], y[idx]
            return
        loader = DataLoader(
            self.dataset, batch_size, sampler=order.tolist(), num_workers=self.num_workers,
            generator=generator or torch.Generator().manual_seed(0),  # seeds the workers, not the global RNG
            pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed random batch of ``min(n, size)`` samples chosen by ``seed`` (no global randomness used)."""
        with torch.random.fork_rng(devices=[]):
            idx = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))[:n]
            if self.tensors is not None:
                idx = idx.to(self.device)
                return self.tensors[0][idx], self.tensors[1][idx]
            xs, ys = zip(*(self.dataset[int(i)] for i in idx), strict=True)
            return torch.stack(xs).to(self.device), torch.as_tensor(ys).to(self.device)


def validation_split(train_set: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """``(fit, val)``: ``fraction`` of ``train_set`` (rounded up, stratified by label, drawn with ``seed`` on
    its own stream) held out for validation; ``(train_set, None)`` when ``fraction`` is 0."""
    if not fraction:
        return train_set, None
    labels = np.asarray([int(y) for _, y in train_set]) if not isinstance(train_set, TensorDataset) else None
    labels = train_set.tensors[1].numpy() if labels is None else labels
    n_val = math.ceil(fraction * len(labels))
    if not 0 < n_val < len(labels):
        raise ValueError(f"val_fraction={fraction} leaves no training or validation samples of {len(labels)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A1]))
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[data.prepare.stratified_indices(labels, n_val, rng)] = True
    fit_idx, val_idx = np.flatnonzero(~is_val).tolist(), np.flatnonzero(is_val).tolist()
    if isinstance(train_set, TensorDataset):
        x, y = train_set.tensors
        return TensorDataset(x[fit_idx], y[fit_idx]), TensorDataset(x[val_idx], y[val_idx])
    return torch.utils.data.Subset(train_set, fit_idx), torch.utils.data.Subset(train_set, val_idx)


class _EarlyStopping:
    """Tracks the epoch of lowest validation loss and a copy of its weights; says when to stop."""

    def __init__(self, patience: int | None):
        self.patience, self.best = patience, None

    def update(self, epoch: int, val_loss: float, val_acc: float, model: nn.Module) -> bool:
        """Record epoch ``epoch``; True when ``patience`` epochs have passed without a lower loss."""
        if math.isfinite(val_loss) and (self.best is None or val_loss < self.best["loss"]):
            weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.best = dict(epoch=epoch, loss=val_loss, acc=val_acc, weights=weights)
        best_epoch = self.best["epoch"] if self.best else 0
        return self.patience is not None and epoch - best_epoch >= self.patience

    def restore(self, model: nn.Module) -> dict[str, Any]:
        """Load the best weights into ``model``; their epoch and validation numbers."""
        if self.best is None:
            return dict(epoch=None, val_loss=None, val_acc=None)
        model.load_state_dict(self.best["weights"])
        return dict(epoch=self.best["epoch"], val_loss=self.best["loss"], val_acc=self.best["acc"])

    def state_dict(self) -> dict[str, Any] | None:
        return self.best

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.best = state


# one epoch -------------------------------------------------------------------------------------------------


def _train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator
) -> tuple[float, float]:
    """One pass of training; the running mean loss and accuracy (summed on the device: no sync per batch)."""
    model.train()
    device = next(model.parameters()).device
    loss_sum, correct, n = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device), 0
    for xb, yb in batches:
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum.add_(loss.detach(), alpha=len(yb))
        correct.add_((out.detach().argmax(1) == yb).sum())
        n += len(yb)
    return (loss_sum.item() / n, correct.item() / n) if n else (math.nan, math.nan)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterator, *, top5: bool = False) -> tuple[float, ...]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) over ``batches``; with ``top5`` also the
    top-5 accuracy (the label among the 5 largest logits; all of them when there are fewer than 5)."""
    model.eval()
    loss_sum = torch.zeros(())
    correct = correct5 = n = 0
    for xb, yb in batches:
        out = model(xb)
        loss_sum += F.cross_entropy(out.float(), yb, reduction="sum").cpu()
        correct += int((out.argmax(1) == yb).sum())
        if top5:
            best = out.topk(min(5, out.shape[1]), dim=1).indices
            correct5 += int((best == yb[:, None]).any(1).sum())
        n += len(yb)
    numbers = (loss_sum.item() / n, correct / n, correct5 / n) if n else (math.nan,) * 3
    return numbers if top5 else numbers[:2]


def alignment(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Per rule layer: ``weight_angle`` (deg), ``sign_concordance``, ``norm_ratio``, ``distance``
    (``‖W − B‖``), ``weight_norm`` (``‖W‖``), ``grad_angle`` (deg, the rule's weight gradient vs backprop's on
    the batch, in training mode) and ``error_ratio`` (the error reaching the layer's output, rule's norm over
    BP's; :func:`fabook.metrics.gradient_alignment`). Leaves the model and the global random state as they
    were."""
    was_training = model.training
    model.train()  # the gradients training makes (gradient_alignment works on a copy of the model)
    with torch.random.fork_rng(devices=_cuda_devices(model)):
        weights = fabook.metrics.weight_alignment(model)
        grads = fabook.metrics.gradient_alignment(model, inputs, targets)
    model.train(was_training)
    out: dict[str, dict[str, Any]] = {}
    for row in weights.to_dict("records"):
        out[row["layer"]] = {
            "rule": row["rule"],
            "weight_angle": row["angle_deg"],
            "sign_concordance": row["sign_concordance"],
            "norm_ratio": row["norm_ratio"],
            "distance": row["distance"],
            "weight_norm": row["weight_norm"],
        }
    for row in grads.to_dict("records"):
        entry = out.setdefault(row["layer"], {"rule": row["rule"]})
        entry["grad_angle"], entry["error_ratio"] = row["angle_deg"], row["error_ratio"]
    return results.jsonable(out)


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


# the run ---------------------------------------------------------------------------------------------------


def train(
    config: Config | Mapping[str, Any], *, out_dir: str | Path | None = None, progress: bool = True
) -> Result:
    """Run one cell and return its :class:`Result`.

    With ``out_dir``: a finished cell is loaded, not rerun; an interrupted one resumes from its checkpoint;
    the result is written to ``out_dir/<key>.json`` (atomically) and the checkpoint removed. The folder is
    checked writable before any work (:class:`~fabook.results.OutputError` otherwise), and a lock on the cell
    makes another process that asks for it meanwhile wait and then load this result. A non-finite
    training loss ends the cell early with ``diverged=True``. Training numbers are the running means over the
    epoch's batches; test numbers are measured after it. Randomness: global generators seeded from
    ``config.seed``; each epoch's order from :func:`epoch_generator`; measuring alignment consumes none.
    """
    cfg = config if isinstance(config, Config) else Config.from_dict(config)
    if out_dir is None:
        with _threads(cfg.threads):
            return _train(cfg, None, progress)
    if result_path(cfg, out_dir).exists():  # finished: loaded, also from a read-only folder
        return load_result(result_path(cfg, out_dir), cfg)
    results.check_folder(out_dir)  # before any work: a folder that cannot take the result fails now
    # another process on this cell: wait for it, then load its result (under torchrun rank 0 locks for all
    # ranks: a lock per rank would keep the others out of the collective rank 0 waits in)
    lock = results.cell_lock(lock_path(cfg, out_dir)) if distributed.is_main() else nullcontext()
    with lock, _threads(cfg.threads):
        return _train(cfg, out_dir, progress)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(cfg: Config, out_dir: str | Path | None, progress: bool) -> Result:
    json_path = ckpt_path = None
    if out_dir is not None:
        json_path = result_path(cfg, out_dir)
        ckpt_path = json_path.with_name(f"{cfg.key()}.ckpt.pt")
        if json_path.exists():
            return load_result(json_path, cfg)
    device = distributed.setup(validate(cfg, build=False), cfg.batch_size)

    seed_everything(cfg.seed)
    model = build_model(cfg).to(device)
    split = data.load(
        cfg.dataset, root=cfg.data_root, seed=cfg.seed, max_train=cfg.max_train, max_test=cfg.max_test
    )
    fit, val = validation_split(split.train, cfg.val_fraction, cfg.seed)
    train_set = _Data(fit, device, cfg.num_workers)
    test_set = _Data(split.test, device, cfg.num_workers)
    watch, watched = (_Data(val, device, cfg.num_workers), "val") if val is not None else (test_set, "test")
    stopper = _EarlyStopping(cfg.patience) if val is not None else None
    optimizer = make_optimizer(cfg, model.parameters())
    if cfg.constrain_norm:
        norm_constraint.hold_norms(optimizer, model)
    scheduler = make_scheduler(cfg, optimizer)
    probe = train_set.sample(METRIC_BATCH, cfg.seed) if cfg.metrics_every else None
    eval_batch = max(cfg.batch_size, EVAL_BATCH if test_set.tensors is not None else 256)

    history: list[dict[str, Any]] = []
    start, elapsed, resumed, epoch, diverged = results.now(), 0.0, [], 0, False
    if ckpt_path is not None and ckpt_path.exists():
        state = results.load_checkpoint(ckpt_path)
        if state.get("key") != cfg.key():
            raise ResultFileError(
                f"{ckpt_path} is a checkpoint of another config ({state.get('key')!r}); delete it"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], device)
        history, epoch, start, elapsed = state["history"], state["epoch"], state["start"], state["wall_time"]
        resumed = [*state["resumed"], epoch]
        if stopper is not None:
            stopper.load_state_dict(state["early_stopping"])
    elif cfg.metrics_every:
        loss0, acc0, top5_0 = evaluate(model, watch.batches(eval_batch), top5=True)
        history.append(
            {"epoch": 0, f"{watched}_loss": loss0, f"{watched}_acc": acc0, f"{watched}_top5": top5_0}
            | {"layers": alignment(model, *probe)}
        )

    net = distributed.wrap(model)  # DistributedDataParallel under torchrun
    bar = tqdm(
        range(epoch + 1, cfg.epochs + 1), initial=epoch, total=cfg.epochs, unit="epoch", leave=False,
        desc=cfg.key(), disable=not (progress and distributed.is_main()),
    )  # fmt: skip
    saved = time.perf_counter()
    for epoch in bar:
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        if cfg.weight_decay_schedule is not None:
            for group in optimizer.param_groups:
                group["weight_decay"] = weight_decay_at(cfg, epoch)
        batches = train_set.batches(distributed.local_batch(cfg.batch_size), epoch_generator(cfg.seed, epoch))
        batches = augmented(batches, cfg.augment, epoch_generator(cfg.seed, epoch, stream=1))
        train_loss, train_acc = distributed.average(device, *_train_epoch(net, optimizer, batches))
        test_loss, test_acc, top5 = evaluate(model, watch.batches(eval_batch), top5=True)
        if scheduler is not None:
            scheduler.step()
        record = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": train_acc,
            f"{watched}_loss": test_loss,
            f"{watched}_acc": test_acc,
            f"{watched}_top5": top5,
            "time": time.perf_counter() - t0,
        }
        if cfg.weight_decay_schedule is not None:
            record["weight_decay"] = weight_decay_at(cfg, epoch)
        diverged = not math.isfinite(train_loss)
        if cfg.metrics_every and not diverged and (epoch % cfg.metrics_every == 0 or epoch == cfg.epochs):
            record["layers"] = alignment(model, *probe)
        history.append(results.jsonable(record))
        elapsed += time.perf_counter() - t0
        bar.set_postfix(loss=f"{train_loss:.3g}", test_acc=f"{test_acc:.3f}")
        if diverged or (stopper is not None and stopper.update(epoch, test_loss, test_acc, model)):
            break
        due = time.perf_counter() - saved >= CHECKPOINT_SECONDS
        if ckpt_path is not None and epoch < cfg.epochs and due and distributed.is_main():
            saved = time.perf_counter()
            state = dict(key=cfg.key(), epoch=epoch, history=history, start=start, wall_time=elapsed)
            state |= dict(early_stopping=stopper and stopper.state_dict())
            state |= dict(model=model.state_dict(), optimizer=optimizer.state_dict(), rng=_rng_state(device))
            results.save_checkpoint(
                ckpt_path, state | dict(scheduler=scheduler and scheduler.state_dict(), resumed=resumed)
            )
    bar.close()
    final = None
    if stopper is not None:
        final = stopper.restore(model)  # the best validation epoch's weights, then the test set's one use
        numbers = evaluate(model, test_set.batches(eval_batch), top5=True)
        final |= dict(zip(("loss", "acc", "top5"), numbers, strict=True))

    provenance = dict(seed=cfg.seed, n_train=train_set.n, n_test=test_set.n, threads=torch.get_num_threads())
    provenance |= dict(start=start, end=results.now(), resumed_at_epochs=resumed)
    provenance |= distributed.provenance(cfg.batch_size)
    provenance = {**results.provenance(device), **provenance}
    result = _result(cfg, history, diverged, elapsed, provenance, json_path, final)
    if json_path is not None and distributed.is_main():
        results.write_json(json_path, result.to_dict())
        ckpt_path.unlink(missing_ok=True)
    return result


def _result(
    cfg: Config,
    history: list[dict],
    diverged: bool,
    wall_time: float,
    provenance: dict,
    path,
    final: dict[str, Any] | None = None,
) -> Result:
    """The Result exactly as a reload of its file gives it (NaN -> None). ``final``: early stopping's
    restored epoch with its validation and (one) test numbers."""
    trained = [h for h in history if h["epoch"] > 0]
    accs = [h["test_acc"] for h in trained if h.get("test_acc") is not None]
    result = Result(
        config=cfg,
        history=history,
        test_acc=(trained or history or [{"test_acc": None}])[-1].get("test_acc"),
        test_top5=(trained or history or [{}])[-1].get("test_top5"),
        best_test_acc=max(accs) if accs else None,
        train_loss=trained[-1]["train_loss"] if trained else None,
        diverged=diverged,
        epochs_run=len(trained),
        wall_time=wall_time,
        provenance=provenance,
    )
    if final is not None:
        result.test_acc, result.test_top5, result.best_epoch = final["acc"], final["top5"], final["epoch"]
        result.val_loss, result.val_acc = final["val_loss"], final["val_acc"]
    return Result.from_dict(result.to_dict(), path)
