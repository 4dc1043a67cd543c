"""A converged SGD reference: networks trained from default init until validation stops
improving, quantized post-training, with their accuracies cached per architecture.

The reference does not depend on any GHN, so its accuracies are cached (one CSV per
architecture) and reused across GHN versions; a cached row is used only when the
architecture, the training recipe and the evaluation settings all match, and an
architecture trained with another recipe or changed since is trained again.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data.images import image_tensors
from ..fileio import atomic_path
from ..inits import default_init, seeded
from .evaluate import EvalSetup, trained_accuracy

__all__ = ["SGDRecipe", "TrainRecord", "train_to_convergence", "SGDReference", "arch_key"]


@dataclass(frozen=True)
class SGDRecipe:
    """How the reference networks are trained.

    SGD with momentum and weight decay on a cosine schedule over ``max_epochs``, from
    PyTorch's default initialisation (seeded); after each epoch the validation
    accuracy is measured (BN on running statistics), and training stops once it has
    not improved for ``patience`` epochs. The best epoch's weights are kept.

    Args:
        max_epochs: the longest run (and the cosine schedule's length).
        patience: epochs without a new best validation accuracy before stopping.
        batch_size, lr, momentum, weight_decay: the usual.
        seed: seed of the initialisation and the shuffling.

    Raises:
        ValueError: a non-positive count or learning rate.
    """

    max_epochs: int = 20
    patience: int = 4
    batch_size: int = 256
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SGDRecipe.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"SGDRecipe.lr must be > 0, got {self.lr}")

    def key(self) -> str:
        """A string naming every setting (cache rows trained otherwise are stale)."""
        return "-".join(f"{k}={v}" for k, v in asdict(self).items())


@dataclass
class TrainRecord:
    """What one reference training did.

    Attributes:
        epochs: epochs run.
        best_epoch: the epoch whose weights were kept (1-based).
        best_val: its validation accuracy (a fraction).
        val_curve: validation accuracy after each epoch.
    """

    epochs: int
    best_epoch: int
    best_val: float
    val_curve: list[float] = field(default_factory=list)


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(int((model(xb).argmax(1) == yb).sum())
                  for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
    return correct / max(len(y), 1)


def train_to_convergence(module: nn.Module, train_images: Dataset, val_images: Dataset,
                         recipe: SGDRecipe = SGDRecipe(), device: str | torch.device = "cpu",
                         progress: bool = False) -> tuple[nn.Module, TrainRecord]:
    """Train a copy of ``module`` from default init until validation stops improving.

    Args:
        module: the network (not modified).
        train_images: ``(image, label)`` training items (held in memory on ``device``).
        val_images: validation items (never the test split).
        recipe: the training settings.
        device: where to train.
        progress: show a progress bar over epochs.

    Returns:
        ``(model, record)``: the copy with its best epoch's weights, in eval mode.
    """
    with seeded(recipe.seed):  # initialisation and dropout; the caller's RNG is kept
        return _train_to_convergence(module, train_images, val_images, recipe,
                                     torch.device(device), progress)


def _train_to_convergence(module: nn.Module, train_images: Dataset, val_images: Dataset,
                          recipe: SGDRecipe, device: torch.device,
                          progress: bool) -> tuple[nn.Module, TrainRecord]:
    model = default_init(copy.deepcopy(module).to(device))
    x, y = (t.to(device) for t in image_tensors(train_images))
    xv, yv = (t.to(device) for t in image_tensors(val_images))
    steps = max(len(y) // recipe.batch_size, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.max_epochs * steps)
    generator = torch.Generator().manual_seed(recipe.seed)
    record = TrainRecord(0, 0, -1.0)
    best_state = None
    bar = tqdm(range(recipe.max_epochs), desc="SGD reference", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(y), generator=generator).to(device)
        for k in range(steps):
            idx = order[k * recipe.batch_size:(k + 1) * recipe.batch_size]
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
            schedule.step()
        val = _accuracy(model, xv, yv)
        record.val_curve.append(val)
        record.epochs = epoch + 1
        bar.set_postfix(val=f"{100 * val:.1f}")
        if val > record.best_val:
            record.best_val, record.best_epoch = val, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        elif epoch + 1 - record.best_epoch >= recipe.patience:
            break
    model.load_state_dict(best_state)
    return model.eval(), record


def arch_key(module: nn.Module) -> str:
    """A short hash of a network's submodule types, parameter and buffer shapes (its cache
    identity; unlike ``repr(module)`` it does not change with the torch version)."""
    parts = [f"{name}:{type(sub).__name__}" for name, sub in module.named_modules()]
    parts += [f"{name}:{tuple(t.shape)}" for name, t in module.state_dict().items()]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


_FIELDS = ("arch", "arch_key", "recipe", "evaluation", "bits", "accuracy", "epochs",
           "best_epoch", "best_val")


class SGDReference:
    """Converged SGD-trained networks and their post-training-quantized accuracies.

    ``cache/ARCH.csv`` holds one row per evaluation setting and bit-width; trained
    weights are kept in ``models`` (if given) so new evaluation settings do not train
    again.

    Args:
        cache: the folder of per-architecture CSVs.
        train_images, val_images: the training and validation splits.
        recipe: the training settings.
        device: where to train and evaluate.
        models: a folder for trained state dicts (None: not kept).
        progress: show progress bars.
    """

    def __init__(self, cache: str | Path, train_images: Dataset, val_images: Dataset,
                 recipe: SGDRecipe = SGDRecipe(), device: str | torch.device = "cpu",
                 models: str | Path | None = None, progress: bool = False) -> None:
        self.cache = Path(cache)
        self.train_images, self.val_images = train_images, val_images
        self.recipe, self.device, self.progress = recipe, torch.device(device), progress
        self.models = Path(models) if models is not None else None
        self.trainings = 0  # networks trained by this object (the rest came from the cache)

    def _file(self, name: str) -> Path:
        if not re.fullmatch(r"[\w.\-]+", name):
            raise ValueError(f"architecture name {name!r} cannot name a cache file: use "
                             "letters, digits, '.', '_' and '-'")
        return self.cache / f"{name}.csv"

    def _read(self, name: str) -> list[dict[str, str]]:
        path = self._file(name)
        if not path.is_file():
            return []
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def _rows(self, name: str, key: str) -> list[dict[str, str]]:
        """The cached rows of architecture ``name`` (``arch_key`` ``key``) and this recipe."""
        recipe = self.recipe.key()
        return [r for r in self._read(name) if r["arch_key"] == key and r["recipe"] == recipe]

    def cached_accuracy(self, name: str, module: nn.Module, evaluation: str
                        ) -> dict[int, float]:
        """``{bits: top-1 fraction}`` cached for ``name`` under ``evaluation`` (a
        ``setup.key()``) with this recipe; empty when none is (never trained or
        evaluated, or dropped after a retraining gave another network)."""
        return {int(r["bits"]): float(r["accuracy"]) for r in self._rows(name, arch_key(module))
                if r["evaluation"] == evaluation}

    def accuracy(self, name: str, module: nn.Module, in_shape: Sequence[int], bits: Sequence[int],
                 setup: EvalSetup) -> tuple[dict[int, float], dict[str, str]]:
        """The reference accuracy of architecture ``name`` at each of ``bits``.

        Read from the cache when the architecture, the recipe and the evaluation
        (``setup.key()``) match; otherwise the network is trained (or its kept
        weights loaded) and evaluated, and its cache file rewritten without stale rows.

        Args:
            name: the architecture's name (its cache file's name).
            module: the network.
            in_shape: its input (C, H, W).
            bits: bit-widths.
            setup: the evaluation setup.

        Returns:
            ``({bits: top-1 fraction}, {"epochs", "best_epoch", "best_val"})``.
        """
        key, evaluation = arch_key(module), setup.key()
        rows = self._rows(name, key)
        hits = {int(r["bits"]): r for r in rows if r["evaluation"] == evaluation}
        if all(b in hits for b in bits):
            first = hits[bits[0]]
            return ({b: float(hits[b]["accuracy"]) for b in bits},
                    {k: first[k] for k in ("epochs", "best_epoch", "best_val")})
        model, record = self._trained(name, key, module)
        accuracy = trained_accuracy(model, in_shape, bits, setup)
        info = {"epochs": str(record["epochs"]), "best_epoch": str(record["best_epoch"]),
                "best_val": f"{record['best_val']:.5f}"}
        rows = self._same_training(name, rows, info)
        keep = [r for r in rows if not (r["evaluation"] == evaluation and int(r["bits"]) in bits)]
        keep += [{"arch": name, "arch_key": key, "recipe": self.recipe.key(),
                  "evaluation": evaluation,
                  "bits": str(b), "accuracy": f"{a:.5f}", **info} for b, a in accuracy.items()]
        with atomic_path(self._file(name)) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, _FIELDS)
            writer.writeheader()
            writer.writerows(keep)
        return accuracy, info

    @staticmethod
    def _same_training(name: str, rows: list[dict[str, str]], info: dict[str, str]
                       ) -> list[dict[str, str]]:
        """The cached ``rows`` that came from the training described by ``info``.

        Without kept weights a network is trained again for a new evaluation; when that
        run does not reproduce the one the cached rows came from (another device's
        kernels can steer SGD elsewhere), their rows are dropped with a warning, so one
        cache file never mixes two networks; the dropped evaluations are redone when
        next asked for."""
        stale = [r for r in rows if any(r[k] != v for k, v in info.items())]
        if stale:
            earlier = {k: stale[0][k] for k in info}
            evaluations = sorted({r["evaluation"] for r in stale})
            warnings.warn(f"SGD reference {name!r}: this training ({info}) differs from the "
                          f"one its cached rows came from ({earlier}), e.g. trained on another "
                          f"device; dropping their rows of {evaluations} so every row comes "
                          "from one network (keep the trained weights with models=... to "
                          "avoid retraining)", stacklevel=3)
        return [r for r in rows if r not in stale]

    def records(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """``{name: {"epochs", "best_epoch", "best_val"}}`` of the cached architectures
        among ``names`` trained with this recipe."""
        out = {}
        for name in names:
            rows = [r for r in self._read(name) if r["recipe"] == self.recipe.key()]
            if rows:
                out[name] = {k: rows[0][k] for k in ("epochs", "best_epoch", "best_val")}
        return out

    def _trained(self, name: str, key: str, module: nn.Module) -> tuple[nn.Module, dict]:
        """The trained network: kept weights if they match, else a new training run."""
        path = None
        if self.models is not None:
            digest = hashlib.blake2b(self.recipe.key().encode(), digest_size=6).hexdigest()
            path = self.models / f"{name}-{key}-{digest}.pt"
            if path.is_file():
                saved = torch.load(path, map_location=self.device, weights_only=True)
                model = copy.deepcopy(module).to(self.device)
                model.load_state_dict(saved["state"])
                return model.eval(), saved["record"]
        model, record = train_to_convergence(module, self.train_images, self.val_images,
                                             self.recipe, self.device, self.progress)
        self.trainings += 1
        summary = {"epochs": record.epochs, "best_epoch": record.best_epoch,
                   "best_val": record.best_val}
        if path is not None:
            with atomic_path(path) as tmp:
                torch.save({"state": model.state_dict(), "record": summary}, tmp)
        return model, summary
