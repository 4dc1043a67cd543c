"""Image datasets: Fashion-MNIST (real files), a CIFAR-10 fixture, synthetic data."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from ghn_pyg.data import find_fashion_mnist, image_loaders, load_images
from ghn_pyg.data import images as images_module


def fmnist_available() -> bool:
    try:
        find_fashion_mnist()
        return True
    except FileNotFoundError:
        return False


needs_fmnist = pytest.mark.skipif(not fmnist_available(),
                                  reason="Fashion-MNIST is not installed "
                                         "(apt-get install dataset-fashion-mnist)")


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fmnist(folder, n=50):
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n), ("t10k", n // 2)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)


@needs_fmnist
def test_fashion_mnist_splits_are_seeded_and_disjoint():
    train = load_images("fashion-mnist", "train")
    val = load_images("fashion-mnist", "val")
    test = load_images("fashion-mnist", "test")
    assert (len(train), len(val), len(test)) == (55000, 5000, 10000)
    assert train.shape == (1, 28, 28) and train.num_classes == 10
    key = lambda s: {hash(s.images[i].numpy().tobytes()) for i in range(len(s))}  # noqa: E731
    assert not key(val) & key(load_images("fashion-mnist", "train", val_size=5000))
    assert torch.equal(val.images, load_images("fashion-mnist", "val").images)
    assert not torch.equal(val.images, load_images("fashion-mnist", "val", seed=1).images)
    x = torch.stack([train[i][0] for i in range(2000)])
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1


def test_lookup_order_explicit_root_then_env(tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    for folder, n in ((explicit, 40), (env, 60)):
        folder.mkdir()
        fake_fmnist(folder, n)
    monkeypatch.setenv("GHN_PYG_DATA", str(env))
    assert len(load_images("fashion-mnist", "test")) == 30
    assert len(load_images("fashion-mnist", "test", root=explicit)) == 20
    assert len(load_images("fashion-mnist", "train", root=explicit, val_size=4)) == 36


def test_an_explicit_root_is_the_only_place_looked_in(tmp_path, monkeypatch):
    home, system = tmp_path / "home", tmp_path / "system"
    (home / "fmnist").mkdir(parents=True)
    system.mkdir()
    fake_fmnist(home / "fmnist", 40)
    fake_fmnist(system, 60)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MY_DATA", str(home))
    monkeypatch.setenv("GHN_PYG_DATA", str(system))
    monkeypatch.setattr(images_module, "DEBIAN_FASHION_MNIST", system)
    assert len(load_images("fashion-mnist", "test", root="~/fmnist")) == 20
    assert len(load_images("fashion-mnist", "test", root="$MY_DATA/fmnist")) == 20
    with pytest.raises(FileNotFoundError, match=r"not found in the data root .*empty"):
        load_images("fashion-mnist", "test", root=tmp_path / "empty")  # not the system copy
    assert len(load_images("fashion-mnist", "test")) == 30


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("GHN_PYG_DATA", raising=False)
    monkeypatch.setattr(images_module, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    with pytest.raises(FileNotFoundError) as info:
        load_images("fashion-mnist", "test")
    message = str(info.value)
    assert str(tmp_path / "none") in message and "apt-get install dataset-fashion-mnist" in message
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found.*download=True"):
        load_images("cifar10", "test", root=tmp_path)
    with pytest.raises(ValueError, match="unknown image dataset 'mnist'"):
        load_images("mnist")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_images("synthetic", "dev")


def test_truncated_idx_file_is_an_error(tmp_path):
    fake_fmnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(ValueError, match="truncated"):
        load_images("fashion-mnist", "test", root=tmp_path)


def test_cifar10_fixture_in_its_on_disk_format(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, count in [(f"data_batch_{i}", 6) for i in range(1, 6)] + [("test_batch", 4)]:
        batch = {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 b"labels": list(range(count))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    test = load_images("cifar10", "test", root=tmp_path)
    assert len(test) == 4 and test.shape == (3, 32, 32)
    assert torch.equal(test.images[1].flatten(), torch.from_numpy(
        pickle.load(open(folder / "test_batch", "rb"))[b"data"][1]))
    train = load_images("cifar10", "train", root=tmp_path, val_size=5)
    assert len(train) == 25
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="data_batch_3 is not a readable CIFAR-10 batch"):
        load_images("cifar10", "train", root=tmp_path)


class _Planted:
    """Unpickling this runs a shell command (what a malicious batch file would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar10_batches_never_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Planted(marker), b"labels": [0]}, f)
    with pytest.raises(ValueError, match=r"test_batch is not a readable CIFAR-10 batch.*"
                                         r"references posix.system|nt.system"):
        load_images("cifar10", "test", root=tmp_path)
    assert not marker.exists()
    with open(folder / "test_batch", "wb") as f:  # a dict of other types is refused too
        pickle.dump({b"data": {1, 2}, b"labels": [0]}, f)
    with pytest.raises(ValueError, match="test_batch is not a readable CIFAR-10 batch"):
        load_images("cifar10", "test", root=tmp_path)


def test_synthetic_loaders_and_augmentation():
    loaders = image_loaders("synthetic", batch_size=32, augment=True)
    x, y = next(iter(loaders["train"]))
    assert x.shape == (32, 1, 28, 28) and y.shape == (32,)
    again = next(iter(image_loaders("synthetic", batch_size=32)["train"]))[1]
    assert torch.equal(y, again)  # shuffling is seeded
    plain = load_images("synthetic", "train")
    augmented = load_images("synthetic", "train", augment=True)
    torch.manual_seed(0)
    assert any(not torch.equal(plain[i][0], augmented[i][0]) for i in range(10))
    assert not load_images("synthetic", "test", augment=True).augment


def test_synthetic_train_and_test_share_their_class_patterns():
    train, test = load_images("synthetic", "train"), load_images("synthetic", "test")
    assert not torch.equal(train.images[:100], test.images[:100])  # other draws

    def class_means(data):
        return torch.stack([data.images[data.labels == c].float().mean(0) for c in range(10)])

    a, b = class_means(train), class_means(test)
    nearest = torch.cdist(a.flatten(1), b.flatten(1)).argmin(1)
    assert torch.equal(nearest, torch.arange(10))  # a test image of class c looks like train's c
