"""``ArchGraphDataset``: sampled architectures of a space, traced and stored in shards."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch_geometric.data import Dataset
from tqdm.auto import tqdm

from ..errors import DatasetError
from ..fileio import atomic_path, user_path
from ..graph.archgraph import ArchGraph
from ..graph.tracer import trace
from ..spaces.base import OOD_SPLITS, SPLITS, Space, get_space, spec_hash
from ..spaces.torchvision_zoo import TorchvisionSpace
from .storage import Shard, encode_graph, pack_shard

__all__ = ["ArchGraphDataset", "sample_specs", "split_seed", "SPLIT_BUCKETS", "split_arch_name",
           "split_models"]

_META = "meta.json"
_VERSION = 1
#: In-distribution splits own disjoint ranges of ``spec_hash % 100``: no architecture
#: can be in two of them.
SPLIT_BUCKETS: dict[str, range] = {"train": range(0, 90), "val": range(90, 95),
                                   "test": range(95, 100)}
_SPLIT_OFFSET = {s: i for i, s in enumerate(SPLITS + OOD_SPLITS)}


def split_seed(seed: int, split: str) -> int:
    """The sampling seed of ``split``: distinct for every split of a base seed."""
    return seed * 1009 + _SPLIT_OFFSET[split]


def split_arch_name(index: int, split: str = "test", space: str = "efficient") -> str:
    """The name results give architecture ``index`` of a split (``"efficient-test-03"``)."""
    return f"{space}-{split}-{index:02d}"


def split_models(count: int, in_channels: int = 1, num_classes: int = 10, seed: int = 0,
                 split: str = "test", space: str = "efficient") -> list[tuple[str, nn.Module]]:
    """The first ``count`` architectures of a split of ``space`` (seed ``seed``), built.

    Returns:
        ``(name, module)`` pairs named by :func:`split_arch_name`.
    """
    base = get_space(space)
    return [(split_arch_name(i, split, space), base.build(spec, in_channels, num_classes))
            for i, spec in enumerate(sample_specs(base, split, count, seed))]


def sample_specs(space: Space, split: str, size: int, seed: int,
                 image_size: int | None = None) -> list[dict[str, Any]]:
    """The specs of a split: seeded, de-duplicated, in-distribution splits disjoint.

    Args:
        space: the base space (``space.for_split(split)`` is sampled).
        split: train / val / test, or an out-of-distribution split of the space.
        size: number of architectures (the torchvision split has a fixed list).
        seed: base seed.
        image_size: input side, to drop torchvision models that cannot take it.

    Raises:
        ValueError: unknown split for this space.
        RuntimeError: the space cannot yield ``size`` distinct architectures.
    """
    if split == "torchvision":
        return TorchvisionSpace().specs(image_size)
    sampler = space.for_split(split)
    rng = random.Random(split_seed(seed, split))
    buckets = SPLIT_BUCKETS.get(split)
    seen: set[int] = set()
    specs: list[dict[str, Any]] = []
    attempts = 0
    while len(specs) < size:
        attempts += 1
        if attempts > 50 * size + 1000:
            raise RuntimeError(f"space {space.name!r} gave only {len(specs)} distinct "
                               f"{split} architectures in {attempts} draws; ask for fewer")
        spec = sampler.sample(rng)
        h = spec_hash(spec)
        if h in seen or (buckets is not None and h % 100 not in buckets):
            continue
        seen.add(h)
        specs.append(spec)
    return specs


def _trace_chunk(args: tuple) -> list[dict[str, Any]]:
    """Worker: build and trace a chunk of specs (module level, so processes can run it)."""
    space_name, space_kwargs, specs, in_shape, num_classes = args
    torch.set_num_threads(1)
    space = get_space(space_name, **space_kwargs)
    out = []
    for spec in specs:
        model = _build_any(space, spec, in_shape[0], num_classes)
        graph = trace(model, (1, *in_shape), s_max=1, arch=json.dumps(spec, sort_keys=True),
                      name=_arch_name(spec))
        out.append(encode_graph(graph, spec))
    return out


def _build_any(space: Space, spec: dict[str, Any], in_channels: int, num_classes: int) -> nn.Module:
    if spec.get("space") != space.name:
        space = get_space(spec["space"])
    return space.build(spec, in_channels, num_classes)


def _arch_name(spec: dict[str, Any]) -> str:
    return spec.get("name") or f"{spec['space']}-{spec_hash(spec):016x}"


class ArchGraphDataset(Dataset):
    r"""A PyG dataset of architecture graphs sampled from a space.

    Stored under ``root/split/`` as shards of ``shard_size`` graphs (a few KB per graph)
    and a ``meta.json`` written last: a build that is killed never loads as complete,
    and opening it again resumes from the shards already written. Reading a graph loads
    its shard (a small LRU cache of shards), so memory does not grow with the dataset.

    Args:
        root: dataset folder.
        space: a space name (``"efficient"``, ``"cells"``, ``"blocks"``, ...).
        split: ``train``/``val``/``test`` (disjoint, de-duplicated) or an
            out-of-distribution split: ``wide``, ``deep``, ``nobn``, ``torchvision``.
        size: number of architectures (the torchvision split has a fixed list).
        seed: base seed; every split derives its own.
        in_shape: input (C, H, W) the networks are built and traced for.
        num_classes: classifier size.
        s_max: virtual-edge cutoff of the graphs returned.
        shard_size: graphs per shard file.
        workers: processes that build and trace (0: in this process).
        progress: show a progress bar while building.
        space_kwargs: arguments of the space's constructor.
        transform: PyG transform applied to every graph read.

    Raises:
        DatasetError: the folder holds a dataset built with other settings, or a
            corrupted file (the message says which and how to rebuild).
    """

    def __init__(self, root: str | os.PathLike, space: str = "efficient", split: str = "train",
                 size: int = 1000, seed: int = 0, in_shape: Sequence[int] = (1, 28, 28),
                 num_classes: int = 10, s_max: int = 50, shard_size: int = 1000,
                 workers: int = 0, progress: bool = True, space_kwargs: dict | None = None,
                 transform: Any = None) -> None:
        self.space_name, self.split, self.seed = space, split, seed
        self.in_shape = tuple(int(s) for s in in_shape)
        if len(self.in_shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W), got {in_shape}")
        checked = [("shard_size", shard_size), ("s_max", s_max), ("num_classes", num_classes)]
        if split != "torchvision":  # a fixed list: its size is not asked for
            checked.append(("size", size))
        for name, value in checked:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self._num_classes, self.s_max, self.shard_size = num_classes, s_max, shard_size
        self.workers, self.progress = workers, progress
        self.space_kwargs = dict(space_kwargs or {})
        self.space = get_space(space, **self.space_kwargs)
        if split not in self.space.splits() and split != "torchvision":
            raise ValueError(f"space {space!r} has no split {split!r}; it supports "
                             f"{', '.join(self.space.splits())} and torchvision")
        self.size = size
        self._config = dict(version=_VERSION, space=space, space_kwargs=self.space_kwargs,
                            split=split, size=size, seed=seed, in_shape=list(self.in_shape),
                            num_classes=num_classes, shard_size=shard_size)
        self._root = root = user_path(root)
        super().__init__(str(root), transform=transform, log=False)
        self.meta = self._read_meta()
        self._load_shard = lru_cache(maxsize=4)(self._read_shard)
        self._modules = lru_cache(maxsize=64)(self._build_module)

    @classmethod
    def open(cls, root: str | os.PathLike, split: str = "train", s_max: int = 50,
             progress: bool = False) -> "ArchGraphDataset":
        """An existing dataset split with the settings it was built with (its
        ``meta.json``), e.g. another space to mix into training.

        Raises:
            DatasetError: ``root`` holds no such split; says how to build it.
        """
        path = user_path(root) / split / _META
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DatasetError(
                f"no architecture dataset at {path.parent} ({err}); build it first, e.g. "
                f"`ghn-pyg make-dataset --root {root} --space cells --split {split} --size "
                "2000`") from err
        return cls(root, space=meta["space"], split=split, size=meta["size"], seed=meta["seed"],
                   in_shape=meta["in_shape"], num_classes=meta["num_classes"], s_max=s_max,
                   shard_size=meta["shard_size"], progress=progress,
                   space_kwargs=meta.get("space_kwargs"))

    @property
    def num_classes(self) -> int:
        """Classifier size of the networks (PyG's ``num_classes``)."""
        return self._num_classes

    # ------------------------------------------------------------ PyG plumbing
    @property
    def processed_dir(self) -> str:
        return str(self._root / self.split)

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        return [_META]

    def download(self) -> None:
        """Nothing to download: graphs are sampled and traced locally."""

    def len(self) -> int:
        return int(self.meta["num_graphs"])

    def get(self, idx: int) -> ArchGraph:
        shard, j = self._locate(idx)
        return shard.graph(j, self.s_max, self.in_shape)

    # ------------------------------------------------------------ public helpers
    def spec(self, idx: int) -> dict[str, Any]:
        """The architecture spec of graph ``idx``."""
        shard, j = self._locate(idx)
        return shard.spec(j)

    def build_module(self, idx: int, device: torch.device | str | None = None) -> nn.Module:
        """The network of graph ``idx``.

        Args:
            idx: the graph's index (negative counts from the end).
            device: build a new module whose parameters and buffers are created (and
                initialised) on ``device`` directly, e.g. a GPU, with no copy from host
                memory; by default the module comes from an LRU cache of 64 CPU modules,
                shared between calls (do not modify its parameters in place).

        Raises:
            IndexError: ``idx`` out of range.
        """
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"graph {idx} out of range for {n} graphs")
        if device is not None:
            with torch.device(device):
                return self._build_module(idx % n)
        return self._modules(idx % n)

    def _build_module(self, idx: int) -> nn.Module:
        return _build_any(self.space, self.spec(idx), self.in_shape[0], self._num_classes)

    def bytes_per_graph(self) -> float:
        """Disk bytes per graph, shards and metadata included."""
        folder = Path(self.processed_dir)
        total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        return total / max(len(self), 1)

    # ------------------------------------------------------------ storage
    def _locate(self, idx: int) -> tuple[Shard, int]:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"graph {idx} out of range for {n} graphs")
        idx %= n
        return self._load_shard(idx // self.shard_size), idx % self.shard_size

    def _shard_path(self, k: int) -> Path:
        return Path(self.processed_dir) / f"shard_{k:05d}.pt"

    def _read_shard(self, k: int) -> Shard:
        path = self._shard_path(k)
        try:
            return Shard(torch.load(path, weights_only=True))
        except Exception as err:
            raise DatasetError(
                f"{path} is corrupted or unreadable ({type(err).__name__}: {err}); delete it and "
                "open the dataset again (or rerun ghn-pyg make-dataset) to rebuild that shard") from err

    def _read_meta(self) -> dict[str, Any]:
        path = Path(self.processed_dir) / _META
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DatasetError(f"{path} is unreadable ({err}); delete it to rebuild") from err
        theirs = {k: meta.get(k) for k in self._config}
        if theirs != self._config:
            diff = ", ".join(f"{k}: on disk {theirs[k]!r}, asked {v!r}"
                             for k, v in self._config.items() if theirs[k] != v)
            raise DatasetError(f"{path.parent} holds a dataset built with other settings ({diff}); "
                               "use another root, or delete that folder to rebuild")
        return meta

    def process(self) -> None:
        """Sample, build, trace and store the split (resuming from existing shards)."""
        folder = Path(self.processed_dir)
        folder.mkdir(parents=True, exist_ok=True)
        specs = sample_specs(self.space, self.split, self.size, self.seed, self.in_shape[1])
        hashes = [spec_hash(s) for s in specs]
        chunks = [(k, specs[i:i + self.shard_size], hashes[i:i + self.shard_size])
                  for k, i in enumerate(range(0, len(specs), self.shard_size))]
        todo = [c for c in chunks if not self._shard_is_complete(c[0], c[2])]
        bar = tqdm(total=len(specs), initial=len(specs) - sum(len(c[1]) for c in todo),
                   desc=f"{self.space_name}/{self.split} graphs", unit="graph",
                   disable=not self.progress)
        pool = multiprocessing.get_context("spawn").Pool(self.workers) \
            if self.workers > 0 and todo else None
        try:
            for k, shard_specs, shard_hashes in todo:
                encoded = self._trace_specs(shard_specs, bar, pool)
                with atomic_path(self._shard_path(k)) as tmp:
                    torch.save(pack_shard(encoded, shard_hashes), tmp)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
        meta = {**self._config, "num_graphs": len(specs), "num_shards": len(chunks)}
        with atomic_path(folder / _META) as tmp:
            tmp.write_text(json.dumps(meta, indent=1))

    def _shard_is_complete(self, k: int, hashes: list[int]) -> bool:
        path = self._shard_path(k)
        if not path.is_file():
            return False
        try:
            stored = torch.load(path, weights_only=True)["hashes"].tolist()
        except Exception:
            return False  # a damaged shard is rebuilt
        return stored == hashes

    def _trace_specs(self, specs: list[dict[str, Any]], bar: tqdm,
                     pool: Any = None) -> list[dict[str, Any]]:
        step = 25
        tasks = [(self.space_name, self.space_kwargs, specs[i:i + step], self.in_shape,
                  self._num_classes) for i in range(0, len(specs), step)]
        out: list[dict[str, Any]] = []
        for part in (pool.imap(_trace_chunk, tasks) if pool is not None else map(_trace_chunk, tasks)):
            out.extend(part)
            bar.update(len(part))
        return out
