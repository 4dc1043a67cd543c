"""Image datasets: Fashion-MNIST, CIFAR-10 and a synthetic set, with seeded val splits.

Where files are looked for: under an explicit ``root`` only (data missing there is an
error naming it, never a fallback elsewhere); without one, under ``$GHN_PYG_DATA``,
then Debian's ``/usr/share/datasets/fashion-mnist`` (Fashion-MNIST). torchvision's
download runs only when ``download=True``; nothing touches the network otherwise.
``~`` and environment variables in paths are expanded.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..fileio import user_path

__all__ = ["ImageSet", "load_images", "image_tensors", "tensor_batches", "first_items",
           "image_loaders", "synthetic_images", "find_fashion_mnist", "IMAGE_DATASETS", "DEBIAN_FASHION_MNIST"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_DATASETS: tuple[str, ...] = ("fashion-mnist", "cifar10", "synthetic")
#: Per-channel mean and std of the training images.
_STATS = {"fashion-mnist": ((0.2860,), (0.3530,)),
          "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
          "synthetic": ((0.5,), (0.25,))}
_FMNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class ImageSet(Dataset):
    """Images held as a uint8 tensor [N, C, H, W], normalised on access.

    Args:
        images: [N, C, H, W] uint8.
        labels: [N] long.
        mean, std: per-channel normalisation (in [0, 1] units).
        augment: random crop (padding 2) and horizontal flip on every access.
    """

    def __init__(self, images: Tensor, labels: Tensor, mean: Sequence[float],
                 std: Sequence[float], augment: bool = False) -> None:
        if images.dim() != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"images must be [N, C, H, W] matching {labels.shape[0]} labels, "
                             f"got {tuple(images.shape)}")
        self.images, self.labels, self.augment = images, labels.long(), augment
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        """Number of classes (the largest label + 1)."""
        return int(self.labels.max()) + 1

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.images[i].float().div_(255)
        if self.augment:
            x = _random_crop_flip(x)
        return (x - self.mean) / self.std, self.labels[i]


def image_tensors(images: Dataset, indices: Sequence[int] | Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
    """Normalised images and labels of a dataset as two tensors, without augmentation.

    Fast for an :class:`ImageSet` (or a ``Subset`` of one): one vectorised conversion
    instead of one ``__getitem__`` per image.

    Args:
        images: ``(image, label)`` items.
        indices: which items, in this order (default: all).

    Returns:
        ``([n, C, H, W] float32, [n] long)``.
    """
    wanted = torch.arange(len(images)) if indices is None else torch.as_tensor(indices)
    base, index = images, wanted
    while isinstance(base, torch.utils.data.Subset):
        index = torch.as_tensor(base.indices)[index]
        base = base.dataset
    if isinstance(base, ImageSet):
        x = base.images[index].float().div_(255)
        return (x - base.mean) / base.std, base.labels[index]
    items = [images[int(i)] for i in wanted]
    return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


def first_items(data: Dataset, count: int | None) -> Dataset:
    """The first ``count`` items of ``data`` (all of them with None or more)."""
    return data if count is None else Subset(data, range(min(count, len(data))))


def tensor_batches(images: Dataset, batch_size: int, limit: int | None = None
                   ) -> list[tuple[Tensor, Tensor]]:
    """The first ``limit`` items of ``images`` (all by default) as ``(images, labels)``
    batches of ``batch_size``, in order, normalised and without augmentation."""
    count = len(images) if limit is None else min(limit, len(images))
    x, y = image_tensors(images, torch.arange(count))
    return list(zip(x.split(batch_size), y.split(batch_size)))


def _random_crop_flip(x: Tensor, pad: int = 2) -> Tensor:
    _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    top, left = torch.randint(0, 2 * pad + 1, (2,)).tolist()
    x = padded[:, top:top + h, left:left + w]
    return x.flip(-1) if torch.rand(()) < 0.5 else x


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    offset = 4 + 4 * dims
    array = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: {array.size} values for shape {shape}")
    return array.reshape(shape)


def _candidates(root: str | os.PathLike | None, subdirs: Sequence[str]) -> list[Path]:
    """Folders to look in: only under an explicit ``root`` (never a silent fallback),
    else under ``$GHN_PYG_DATA``; ``~`` and variables expanded."""
    if root is not None:
        bases = [user_path(root)]
    else:
        bases = [user_path(os.environ["GHN_PYG_DATA"])] if os.environ.get("GHN_PYG_DATA") else []
    return [base / sub for base in bases for sub in subdirs]


def find_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """The folder holding Fashion-MNIST's idx files (``.gz`` or not).

    Raises:
        FileNotFoundError: none of the lookup paths has them; says which were tried and
            how to install the data.
    """
    tried = _candidates(root, ("", "fashion-mnist", "FashionMNIST/raw"))
    if root is None:
        tried.append(DEBIAN_FASHION_MNIST)
    for folder in tried:
        if any((folder / f"{_FMNIST_FILES['test'][0]}{ext}").is_file() for ext in (".gz", "")):
            return folder
    if root is not None:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in the data root {root} (looked in "
            f"{', '.join(map(str, tried))}); point the root at the folder with the idx files, "
            "or leave it out to use $GHN_PYG_DATA or the system copy")
    raise FileNotFoundError(
        "Fashion-MNIST not found; tried: " + ", ".join(map(str, tried)) + ". Install it with "
        "`sudo apt-get install dataset-fashion-mnist`, set GHN_PYG_DATA to a folder with the idx "
        "files, or pass download=True (torchvision downloads it).")


def _fashion_mnist_arrays(split: str, root: str | os.PathLike | None,
                          download: bool) -> tuple[np.ndarray, np.ndarray]:
    try:
        folder = find_fashion_mnist(root)
    except FileNotFoundError:
        if not download:
            raise
        import torchvision

        target = user_path(root or os.environ.get("GHN_PYG_DATA") or "data")
        torchvision.datasets.FashionMNIST(str(target), train=split == "train", download=True)
        folder = target / "FashionMNIST" / "raw"
    arrays = []
    for name in _FMNIST_FILES[split]:
        path = next((folder / f"{name}{ext}" for ext in (".gz", "")
                     if (folder / f"{name}{ext}").is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{folder} has no {name}[.gz]")
        arrays.append(_read_idx(path))
    return arrays[0][:, None], arrays[1]


_CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: dicts, lists, bytes, strings, numbers
    and numpy arrays. Any other global (``os.system``, ...) is refused before it runs."""

    _ALLOWED = frozenset({("numpy", "ndarray"), ("numpy", "dtype"),
                          ("numpy.core.multiarray", "_reconstruct"),
                          ("numpy._core.multiarray", "_reconstruct"),
                          ("numpy.core.multiarray", "scalar"),
                          ("numpy._core.multiarray", "scalar")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR-10 "
                                         "batch never holds; refusing to load it")
        return super().find_class(module, name)


def _read_cifar_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10's python-pickle batches (the ``cifar-10-batches-py`` format) with a
    restricted unpickler (:class:`_CifarUnpickler`), so a planted file cannot run code."""
    images, labels = [], []
    for name in _CIFAR_FILES[split]:
        path = folder / name
        try:
            with open(path, "rb") as f:
                batch = _CifarUnpickler(f, encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            targets = np.asarray(batch[b"labels"], dtype=np.int64)
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError,
                TypeError) as err:
            raise ValueError(f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: "
                             f"{err}); re-download it") from err
        images.append(data)
        labels.append(targets)
    return np.concatenate(images), np.concatenate(labels)


def _cifar10_arrays(split: str, root: str | os.PathLike | None,
                    download: bool) -> tuple[np.ndarray, np.ndarray]:
    tried = _candidates(root, ("", "cifar10"))
    for folder in tried:
        if (folder / "cifar-10-batches-py").is_dir():
            return _read_cifar_batches(folder / "cifar-10-batches-py", split)
    if download:
        import torchvision

        folder = user_path(root or os.environ.get("GHN_PYG_DATA") or "data")
        torchvision.datasets.CIFAR10(str(folder), train=split == "train", download=True)
        return _read_cifar_batches(folder / "cifar-10-batches-py", split)
    raise FileNotFoundError(
        "CIFAR-10 not found (a cifar-10-batches-py folder); tried: "
        + (", ".join(map(str, tried)) or "no root given and GHN_PYG_DATA unset")
        + ". Pass root=, set GHN_PYG_DATA, or pass download=True where the network allows "
        "(torchvision downloads it).")


def synthetic_images(num_samples: int = 2048, shape: Sequence[int] = (1, 28, 28),
                     num_classes: int = 10, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A learnable synthetic set: a fixed random pattern per class plus noise.

    The class patterns depend only on ``shape`` and ``num_classes``, so sets drawn with
    different seeds (the train and test splits) share them; ``seed`` draws the labels
    and the noise.

    Returns:
        ``(images [N, C, H, W] uint8, labels [N] long)``.
    """
    patterns = torch.rand(num_classes, *shape, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(seed + 1)
    labels = torch.randint(0, num_classes, (num_samples,), generator=gen)
    noise = torch.rand(num_samples, *shape, generator=gen)
    images = (0.6 * patterns[labels] + 0.4 * noise) * 255
    return images.round().to(torch.uint8), labels


def load_images(name: str, split: str = "train", root: str | os.PathLike | None = None,
                val_size: int | None = None, seed: int = 0, augment: bool = False,
                download: bool = False, synthetic_shape: Sequence[int] = (1, 28, 28),
                synthetic_size: int = 4096) -> ImageSet:
    """One split of an image dataset.

    Args:
        name: ``"fashion-mnist"``, ``"cifar10"`` or ``"synthetic"``.
        split: ``"train"`` (training images minus the validation ones), ``"val"``
            (``val_size`` training images chosen with ``seed``) or ``"test"``.
        root: the folder holding the data (see the module docstring for the lookup
            order without one).
        val_size: images held out of the training set for validation (default: a
            tenth of them, at most 5000).
        seed: seed of the train/val split.
        augment: random crop and flip (use for training only).
        download: let torchvision download missing data.
        synthetic_shape, synthetic_size: the synthetic set's (C, H, W) and size.

    Raises:
        ValueError: unknown dataset or split.
        FileNotFoundError: the data is missing (the message says where it looked).
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; use one of {', '.join(IMAGE_DATASETS)}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; use train, val or test")
    source = "test" if split == "test" else "train"
    if name == "synthetic":
        images, labels = synthetic_images(synthetic_size, synthetic_shape,
                                          seed=1 if source == "test" else 0)
    else:
        reader = _fashion_mnist_arrays if name == "fashion-mnist" else _cifar10_arrays
        arrays = reader(source, root, download)
        images, labels = torch.from_numpy(arrays[0].copy()), torch.from_numpy(arrays[1].copy())
    if source == "train":
        if val_size is None:
            val_size = min(5000, len(labels) // 10)
        if not 0 <= val_size < len(labels):
            raise ValueError(f"val_size must be in [0, {len(labels)}), got {val_size}")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        keep = order[:val_size] if split == "val" else order[val_size:]
        images, labels = images[keep], labels[keep]
    mean, std = _STATS[name]
    return ImageSet(images, labels.long(), mean, std, augment=augment and split == "train")


def image_loaders(name: str, batch_size: int = 64, root: str | os.PathLike | None = None,
                  val_size: int | None = None, seed: int = 0, augment: bool = False,
                  num_workers: int = 0, download: bool = False,
                  **kwargs) -> dict[str, DataLoader]:
    """``{"train", "val", "test"}`` DataLoaders (train shuffled with ``seed``)."""
    loaders = {}
    for split in ("train", "val", "test"):
        data = load_images(name, split, root, val_size, seed, augment, download, **kwargs)
        gen = torch.Generator().manual_seed(seed) if split == "train" else None
        loaders[split] = DataLoader(data, batch_size=batch_size, shuffle=split == "train",
                                    generator=gen, num_workers=num_workers,
                                    drop_last=split == "train")
    return loaders
