"""fabook.data: every offline set for real; the paper sets on files the tests write themselves."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from fabook import data
from fabook.data import cache, idx, offline, prepare, small

OFFLINE = [name for name, info in data.CATALOGUE.items() if info.offline]
FULL_FASHION = data.available("fashion-mnist")  # the Debian package (CI) or $FABOOK_DATA
NEEDS_FULL_FASHION = pytest.mark.skipif(
    not FULL_FASHION, reason="full Fashion-MNIST is not here (CI installs dataset-fashion-mnist)"
)
PAPER = [name for name, info in data.CATALOGUE.items() if not info.offline]
PADDED = {"japanese-vowels", "pickup-gesture-wiimote-z"}  # unequal lengths, zero-padded after standardizing


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fabook-data")


@pytest.fixture(scope="module")
def loaded(root: Path):
    """``loaded(name)``: the default load of ``name`` under ``root``, made once per module."""
    splits: dict[str, data.Split] = {}

    def get(name: str) -> data.Split:
        if name not in splits:
            splits[name] = data.load(name, root=root)
        return splits[name]

    return get


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [0, *range(2, x.dim())]
    return x.double().mean(dims), x.double().std(dims)


# --- the catalogue -----------------------------------------------------------------------------------------


def test_catalogue_entries():
    assert len(OFFLINE) >= 15
    assert set(PAPER) == {"mnist", "cifar10", "cifar100", "svhn", "stl10", "imagenet"}
    for name, info in data.CATALOGUE.items():
        assert info.name == name
        assert info.kind in {"image", "tabular", "series", "speech"}
        assert info.num_classes >= 2 and info.n_train > 0 and info.n_test > 0
        assert info.source and info.description and info.fetch
        assert len(info.input_shape) == {"image": 3, "tabular": 1, "series": 2, "speech": 2}[info.kind]


def test_unknown_name_lists_accepted():
    for call in (data.load, data.available, data.get_info):
        with pytest.raises(
            ValueError, match=r"'nope'.*accepted: fashion-mnist, fashion-mnist-small, mnist-5k"
        ):
            call("nope")


def test_catalogue_table(root: Path):
    table = data.catalogue_table(root / "empty")
    columns = ["name", "kind", "shape", "classes", "n_train", "n_test", "offline", "available", "fetch"]
    assert list(table.columns) == columns
    assert list(table["name"]) == list(data.CATALOGUE)
    packaged = table["offline"] & (table["name"] != "fashion-mnist")  # fashion-mnist: a Debian package
    assert table.loc[packaged, "available"].all()
    assert table.set_index("name").loc["fashion-mnist", "available"] == FULL_FASHION
    paper = table[~table["offline"]]
    assert not paper["available"].any() and (paper["fetch"] != "").all()
    assert (table.loc[table["available"], "fetch"] == "").all()
    assert table.set_index("name").loc["basic-motions", "shape"] == "6x100"


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("FABOOK_DATA", str(tmp_path / "here"))
    assert data.default_root() == tmp_path / "here"
    monkeypatch.delenv("FABOOK_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_root() == tmp_path / "xdg" / "fabook"


# --- every offline set, for real ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=NEEDS_FULL_FASHION) if n == "fashion-mnist" else n for n in OFFLINE]
)
def test_offline_set_loads(name: str, loaded, root: Path):
    assert data.available(name, root)
    split = loaded(name)
    info = data.CATALOGUE[name]
    assert split.info == info
    for part, n in ((split.train, info.n_train), (split.test, info.n_test)):
        assert isinstance(part, TensorDataset)
        x, y = part.tensors
        assert x.shape == (n, *info.input_shape) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
        assert torch.isfinite(x).all()
        assert torch.equal(y.unique(), torch.arange(info.num_classes))  # labels 0..C-1, all in both splits
    x_item, y_item = split.train[0]
    assert x_item.shape == info.input_shape and y_item.dtype == torch.int64 and y_item.dim() == 0
    mean, std = channel_stats(split.train.tensors[0])
    assert mean.abs().max() < 1e-4
    if name not in PADDED:  # padding sits at the mean (0) and shrinks the spread
        assert (std - 1).abs().max() < 1e-2


def test_padded_series(loaded):
    x = loaded("japanese-vowels").train.tensors[0]
    assert (x[:, :, -1] == 0).all(dim=1).sum() > 100  # most utterances are shorter than 29 frames
    assert x.shape[1:] == (12, 29)


def test_own_split_is_seeded_and_stratified(root: Path, loaded):
    a, b = loaded("digits"), data.load("digits", root=root)
    assert all(torch.equal(s, t) for s, t in zip(a.test.tensors, b.test.tensors, strict=True))
    other = data.load("digits", root=root, seed=1)
    assert not torch.equal(a.test.tensors[1], other.test.tensors[1])
    counts = torch.bincount(a.train.tensors[1]) + torch.bincount(a.test.tensors[1])
    assert (torch.bincount(a.test.tensors[1]) - 0.25 * counts).abs().max() <= 1


def test_standardization_uses_train_only(root: Path, loaded):
    full = loaded("iris")
    fewer_test = data.load("iris", root=root, max_test=5)
    assert torch.equal(full.train.tensors[0], fewer_test.train.tensors[0])  # the test set plays no part
    rows = {tuple(r.tolist()) for r in full.test.tensors[0]}
    assert all(tuple(r.tolist()) in rows for r in fewer_test.test.tensors[0])
    fewer_train = data.load("iris", root=root, max_train=30)
    assert not torch.allclose(fewer_train.test.tensors[0], full.test.tensors[0])  # train stats changed


def test_standardize_statistics():
    gen = torch.Generator().manual_seed(0)
    train = 5 + 2 * torch.randn(1000, 3, 10, generator=gen)
    test = 7 + 2 * torch.randn(500, 3, 10, generator=gen)
    train[:, :, 8:] = float("nan")  # padding
    prepare.standardize(train, test)
    assert (train[:, :, 8:] == 0).all()
    mean, std = channel_stats(train[:, :, :8])
    assert mean.abs().max() < 1e-5 and (std - 1).abs().max() < 1e-2
    assert (channel_stats(test)[0] - 1).abs().max() < 0.05  # (7 - 5) / 2: shifted by train statistics


def test_caps_are_seeded_stratified_and_nested(root: Path, loaded):
    loaded("mnist-5k")  # cached under root by now
    split = data.load("mnist-5k", root=root, max_train=500, max_test=200, seed=3)
    assert split.info.n_train == 3750  # full sizes, before the caps
    assert len(split.train) == 500 and len(split.test) == 200
    assert torch.bincount(split.train.tensors[1]).tolist() == [50] * 10
    assert torch.bincount(split.test.tensors[1]).tolist() == [20] * 10
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    small, large = (prepare.stratified_indices(labels, n, np.random.default_rng(7)) for n in (10, 50))
    assert np.bincount(labels[small]).tolist() == [4, 3, 2, 1]
    assert set(small) <= set(large)
    assert np.array_equal(small, prepare.stratified_indices(labels, 10, np.random.default_rng(7)))


@pytest.mark.parametrize("cap", [0, -1, 1.5, True, "10"])
def test_bad_cap(cap, root: Path):
    with pytest.raises(ValueError, match="max_train"):
        data.load("iris", root=root, max_train=cap)


def test_aeon_labels_sort_numerically():
    assert sorted(["10", "2", "1", "b", "a"], key=offline._label_order) == ["1", "2", "10", "a", "b"]


def test_mnist1d_cache_and_global_rng(loaded, root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert (root / "mnist1d.pt").is_file()  # made by the first load
    again = data.load("mnist1d", root=root)
    assert torch.equal(again.train.tensors[0], loaded("mnist1d").train.tensors[0])
    import mnist1d.data

    def fake_make_dataset(args):  # reseeds the global generator, as the real one does
        np.random.seed(0)
        x = np.random.rand(10, 40)
        return {"x": x, "y": np.arange(10), "x_test": x, "y_test": np.arange(10)}

    monkeypatch.setattr(mnist1d.data, "make_dataset", fake_make_dataset)
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    offline.LOADERS["mnist1d"](tmp_path, False)
    assert np.random.rand() == expected


def test_cache_is_atomic_and_heals(tmp_path: Path):
    path = tmp_path / "sub" / "t.pt"
    path.parent.mkdir()
    path.write_bytes(b"not a torch file")
    made = cache.cached(path, lambda: {"a": torch.arange(3)})
    assert torch.equal(made["a"], torch.arange(3))
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["t.pt"]  # no temporary files left


# --- paper sets on data the tests write ---------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist_folder(folder: Path, n_train: int = 40, n_test: int = 20) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28)),
        np.arange(n_train) % 10,
        rng.integers(0, 256, (n_test, 28, 28)),
        np.arange(n_test) % 10,
    )
    folder.mkdir(parents=True)
    for stem, array in zip(idx.MNIST_FILES, arrays, strict=True):
        write_idx(folder / f"{stem}.gz", array)
    return arrays


def expected_images(x_train: np.ndarray, x_test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """What load() must give for uint8 (N, C, H, W) inputs: [0, 1], then train per-channel z-scores."""
    train, test = (torch.tensor(x, dtype=torch.float64) / 255 for x in (x_train, x_test))
    mean = train.mean((0, 2, 3), keepdim=True)
    std = (train - mean).square().mean((0, 2, 3), keepdim=True).sqrt()
    return ((train - mean) / std).float(), ((test - mean) / std).float()


def check_images(split: data.Split, arrays: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_test, y_test = arrays
    want_train, want_test = expected_images(x_train, x_test)
    assert torch.allclose(split.train.tensors[0], want_train, atol=1e-4)
    assert torch.allclose(split.test.tensors[0], want_test, atol=1e-4)
    assert split.train.tensors[1].tolist() == list(y_train)
    assert split.test.tensors[1].tolist() == list(y_test)
    assert split.info.n_train == len(y_train) and split.info.n_test == len(y_test)


def test_read_idx(tmp_path: Path):
    array = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    path = tmp_path / "ints-idx3"
    path.write_bytes(struct.pack(">HBB3I", 0, 0x0C, 3, 2, 3, 4) + array.tobytes())
    assert np.array_equal(idx.read_idx(path), array)
    path.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        idx.read_idx(path)


def test_mnist_from_torchvision_root(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"data\.load\('mnist', download=True\)") as err:
        data.load("mnist", root=tmp_path)
    assert "MNIST/raw" in str(err.value) and "pass download=True" in str(err.value)
    arrays = write_mnist_folder(tmp_path / "MNIST" / "raw")
    assert data.available("mnist", tmp_path)
    split = data.load("mnist", root=tmp_path, download=False)
    check_images(split, tuple(a[:, None] if a.ndim == 3 else a for a in arrays))


def test_fashion_mnist_prefers_torchvision_root(tmp_path: Path):
    write_mnist_folder(tmp_path / "FashionMNIST" / "raw", n_train=30, n_test=10)
    split = data.load("fashion-mnist", root=tmp_path)
    assert (
        len(split.train) == 30 and len(split.test) == 10 and split.train.tensors[0].shape[1:] == (1, 28, 28)
    )


def test_fashion_mnist_then_debian_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_mnist_folder(tmp_path / "debian" / "fashion-mnist", n_train=20, n_test=10)
    monkeypatch.setenv(offline.DEBIAN_ENV, str(tmp_path / "debian"))
    assert data.available("fashion-mnist", tmp_path / "root")
    assert len(data.load("fashion-mnist", root=tmp_path / "root").train) == 20
    write_mnist_folder(tmp_path / "own" / "FashionMNIST" / "raw", n_train=30, n_test=10)
    assert len(data.load("fashion-mnist", root=tmp_path / "own").train) == 30  # the data root comes first


def test_fashion_mnist_downloads_when_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import torchvision.datasets

    monkeypatch.setenv(offline.DEBIAN_ENV, str(tmp_path / "no-debian"))
    calls = []

    def fake_download(root, train, download):  # what torchvision leaves behind: the MNIST-layout files
        calls.append((Path(root), train, download))
        if train:
            write_mnist_folder(Path(root) / "FashionMNIST" / "raw", n_train=20, n_test=10)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_download)
    split = data.load("fashion-mnist", root=tmp_path)  # no download=True: Colab needs no extra step
    assert calls == [(tmp_path, True, True), (tmp_path, False, True)]
    assert len(split.train) == 20 and len(split.test) == 10


def test_fashion_mnist_offline_error_names_every_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import torchvision.datasets

    monkeypatch.setenv(offline.DEBIAN_ENV, str(tmp_path / "no-debian"))

    def no_internet(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", no_internet)
    with pytest.raises(FileNotFoundError) as err:
        data.load("fashion-mnist", root=tmp_path)
    message = str(err.value)
    ways = ("FABOOK_DATA", "apt-get update && sudo apt-get install dataset-fashion-mnist", "torchvision")
    ways += ("Name or service not known", "fashion-mnist-small", str(tmp_path / "FashionMNIST" / "raw"))
    for way in ways:
        assert way in message


def test_fashion_mnist_small_is_shipped_and_stratified():
    split = data.load("fashion-mnist-small", root=Path("/nonexistent"))  # needs no data root at all
    assert torch.bincount(split.train.tensors[1]).tolist() == [200] * 10
    assert torch.bincount(split.test.tensors[1]).tolist() == [100] * 10
    size = sum(p.stat().st_size for p in small.SMALL_DIR.glob("*.gz"))
    assert size < 1.5e6, f"fashion-mnist-small grew to {size} bytes"


@NEEDS_FULL_FASHION
def test_fashion_mnist_small_remakes_from_the_full_set(tmp_path: Path):
    full = next(f for f in offline._fashion_folders(data.default_root()) if not idx.missing_mnist_files(f))
    small.write_small(full, tmp_path)
    for stem in idx.MNIST_FILES:
        assert (tmp_path / f"{stem}.gz").read_bytes() == (small.SMALL_DIR / f"{stem}.gz").read_bytes(), stem


def write_cifar(root: Path, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    folder, label_key = (
        (root / "cifar-10-batches-py", "labels")
        if classes == 10
        else (root / "cifar-100-python", "fine_labels")
    )
    folder.mkdir()
    x_train, x_test = (
        rng.integers(0, 256, (25, 3, 32, 32), np.uint8),
        rng.integers(0, 256, (6, 3, 32, 32), np.uint8),
    )
    y_train, y_test = np.arange(25) % classes, np.arange(6) % classes
    if classes == 10:
        batches = [(f"data_batch_{i + 1}", slice(5 * i, 5 * i + 5)) for i in range(5)]
        meta = ("batches.meta", {"label_names": [str(c) for c in range(10)]})
        test_file = "test_batch"
    else:
        batches, test_file = [("train", slice(None))], "test"
        meta = ("meta", {"fine_label_names": [str(c) for c in range(100)]})
    files = [(name, x_train[s], y_train[s]) for name, s in batches] + [(test_file, x_test, y_test)]
    for name, x, y in files:
        (folder / name).write_bytes(pickle.dumps({"data": x.reshape(len(x), -1), label_key: y.tolist()}))
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1]))
    return x_train, y_train, x_test, y_test


def write_svhn(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    import scipy.io

    (root / "svhn").mkdir()
    arrays = []
    for split, n in (("train", 20), ("test", 8)):
        x, digit = rng.integers(0, 256, (n, 3, 32, 32), np.uint8), np.arange(n) % 10
        label = np.where(digit == 0, 10, digit)  # SVHN stores the digit 0 as label 10
        scipy.io.savemat(
            root / "svhn" / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": label[:, None]}
        )
        arrays += [x, digit]
    return tuple(arrays)


def write_stl10(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    folder = root / "stl10_binary"
    folder.mkdir()
    arrays = []
    for split, n in (("train", 12), ("test", 6)):
        x, y = rng.integers(0, 256, (n, 3, 96, 96), np.uint8), np.arange(n) % 10
        x.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # STL-10 stores images column-major
        (y + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")  # and labels 1..10
        arrays += [x, y]
    (folder / "unlabeled_X.bin").touch()
    return tuple(arrays)


WRITERS = {
    "cifar10": lambda root, rng: write_cifar(root, 10, rng),
    "cifar100": lambda root, rng: write_cifar(root, 100, rng),
    "svhn": write_svhn,
    "stl10": write_stl10,
}


@pytest.mark.parametrize("name", WRITERS)
def test_torchvision_sets(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert not data.available(name, tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"data\.load\('{name}', download=True\)"):
        data.load(name, root=tmp_path)
    module = {"cifar10": "cifar", "cifar100": "cifar", "svhn": "svhn", "stl10": "stl10"}[name]
    import torchvision.datasets

    # the files are ours, so torchvision's MD5 checks of the real archives cannot pass
    monkeypatch.setattr(getattr(torchvision.datasets, module), "check_integrity", lambda *a, **k: True)
    arrays = WRITERS[name](tmp_path, np.random.default_rng(1))
    assert data.available(name, tmp_path)
    split = data.load(name, root=tmp_path)
    assert split.train.tensors[0].shape[1:] == data.CATALOGUE[name].input_shape
    check_images(split, arrays)


def write_image_folder(folder: Path, per_class: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (folder / split / c).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / c / f"{i}.png")


def test_imagenet_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="image-net.org"):
        data.load("imagenet", root=tmp_path)
    write_image_folder(tmp_path / "imagenet", per_class=3)
    split = data.load("imagenet", root=tmp_path)
    assert split.info.num_classes == 2 and split.info.n_train == 6 and split.info.n_test == 6
    for part in (split.train, split.test):
        x, y = part[0]
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and y.dim() == 0
    direct = data.load("imagenet", root=tmp_path / "imagenet", max_train=2, max_test=4, seed=5)
    assert len(direct.train) == 2 and len(direct.test) == 4
    assert sorted(int(direct.train[i][1]) for i in range(2)) == [0, 1]


def test_repeated_loads_are_equal_and_independent():
    first = data.load("iris", seed=3)
    first.train.tensors[0].add_(100.0)  # a caller scribbling on its copy
    again, fresh = data.load("iris", seed=3), data.load("iris", seed=3)
    torch.testing.assert_close(again.train.tensors[0], fresh.train.tensors[0], rtol=0, atol=0)
    assert again.train.tensors[0].abs().max() < 50
