"""What a cell is: its :class:`Config` (checked on construction), its :class:`Result` and result files,
the parsing of its schedules, :func:`validate`, and the model, optimizer and schedule it builds."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import fabook
from fabook import data, models, results
from fabook.results import FORMAT, ResultFileError

OPTIMIZERS = ("sgd", "adam", "bm")
SCHEDULES = (
    "None", "'step:E1,E2,...' (lr /10 at those epochs)", "'step:E1,E2,...;gamma=G' (lr x G)", "'cosine'"
)  # fmt: skip
WEIGHT_DECAY_SCHEDULES = ("None", "'E1:WD1,E2:WD2,...' (weight decay WD1 from epoch E1 + 1 on, ...)")
AUGMENTS = ("crop-flip", "crop", "flip")


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
    None or one of :data:`AUGMENTS`, applied to every training batch (see
    :func:`~fabook.batches.augment_batch`; an ImageFolder set's own transforms already augment).
    ``base_width``: the stem channels of
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
