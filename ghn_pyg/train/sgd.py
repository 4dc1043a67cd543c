"""Plain SGD training: the loop of the float baselines, the studies and QAT."""

from __future__ import annotations

import copy
from typing import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..inits import default_init, seeded

__all__ = ["sgd_loop", "sgd_train"]


def sgd_loop(forward: Callable[[Tensor], Tensor], parameters: Iterable[nn.Parameter],
             images: Dataset, epochs: int, batch_size: int, lr: float, seed: int,
             device: torch.device, *, grad_clip: float | None = None,
             before_epoch: Callable[[], None] | None = None,
             after_epoch: Callable[[], None] | None = None,
             progress: str | None = None) -> None:
    r"""Minimise cross-entropy with SGD (momentum 0.9, weight decay 5e-4) and a cosine
    schedule over all steps, shuffling ``images`` with ``seed`` (full batches only).

    Other random draws (dropout) come from the caller's random state: wrap the call in
    :func:`~ghn_pyg.inits.seeded` to fix them.

    Args:
        forward: images [B, C, H, W] on ``device`` -> logits [B, classes].
        parameters: what the optimizer updates.
        images: ``(image, label)`` items.
        epochs, batch_size, lr: the usual.
        seed: seed of the shuffling.
        device: where batches go.
        grad_clip: clip the gradient norm to this before each step (None: no clip).
        before_epoch, after_epoch: called around every epoch (e.g. to set BN modes or
            record an accuracy).
        progress: a progress-bar title (None: no bar).
    """
    params = list(parameters)
    loader = DataLoader(images, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs * len(loader), 1))
    bar = tqdm(total=epochs * len(loader), desc=progress, disable=progress is None, leave=False)
    for _ in range(epochs):
        if before_epoch is not None:
            before_epoch()
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(forward(x.to(device)), y.to(device))
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            schedule.step()
            if progress is not None:
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if after_epoch is not None:
            after_epoch()
    bar.close()


def sgd_train(module: nn.Module, images: Dataset, epochs: int, batch_size: int = 128,
              lr: float = 0.05, seed: int = 0, device: str | torch.device = "cpu",
              reinit: bool = True) -> nn.Module:
    """A copy of ``module`` trained by :func:`sgd_loop`.

    Args:
        module: the network (not modified).
        images: ``(image, label)`` training items.
        epochs: passes over ``images``.
        batch_size, lr: the usual.
        seed: seed of the initialisation, the shuffling and dropout (the caller's
            random state is left alone).
        device: where to train.
        reinit: start from PyTorch's default initialisation instead of the module's
            current parameters.

    Returns:
        The trained copy, in eval mode (BN with running statistics).
    """
    device = torch.device(device)
    with seeded(seed):
        model = copy.deepcopy(module).to(device)
        if reinit:
            default_init(model)
        model.train()
        sgd_loop(model, model.parameters(), images, epochs, batch_size, lr, seed, device)
    return model.eval()
