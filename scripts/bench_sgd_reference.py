"""Time one SGD step of the results' reference networks and project the cost of training them.

For each of the first ``--archs`` test architectures of ``scripts/results_fmnist.py``
(the ``efficient`` space, seed 0, 1x28x28, 10 classes): PyTorch's default
initialisation, then SGD steps with ``SGDRecipe``'s batch size and optimiser settings
on random images (the cost does not depend on the pixels); the median seconds per step
over ``--runs`` steps after one warm-up step, and the minutes that
``SGDRecipe.max_epochs`` epochs of ``--train-images // batch`` steps would take. The
projection is an upper bound: a reference stops early once its validation accuracy
stalls.

    python scripts/bench_sgd_reference.py [--archs 19] [--runs 5] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg.inits import default_init  # noqa: E402
from ghn_pyg.report import markdown_table, median_ms  # noqa: E402
from ghn_pyg.train.reference import SGDRecipe  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_fmnist import split_models  # noqa: E402


def positive(text: str) -> int:
    """An integer of at least 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def seconds_per_step(module: torch.nn.Module, recipe: SGDRecipe, runs: int,
                     device: torch.device) -> float:
    """Median seconds of one SGD step (forward, backward, update) of ``module`` on a batch
    of ``recipe.batch_size`` random 1x28x28 images, after one warm-up step."""
    model = default_init(module, seed=recipe.seed).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    x = torch.randn(recipe.batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (recipe.batch_size,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return median_ms(step, runs) / 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=positive, default=19, help="test architectures")
    parser.add_argument("--runs", type=positive, default=5, help="timed steps per network")
    parser.add_argument("--threads", type=positive, default=1, help="torch CPU threads")
    parser.add_argument("--train-images", type=positive, default=55000,
                        help="training images per epoch (Fashion-MNIST's 60,000 less 5,000 "
                             "for validation)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    recipe = SGDRecipe()
    steps = max(args.train_images // recipe.batch_size, 1)

    rows, total_minutes = [], 0.0
    for name, module in split_models("test", {"test": args.archs}):
        seconds = seconds_per_step(module, recipe, args.runs, device)
        minutes = seconds * steps * recipe.max_epochs / 60
        total_minutes += minutes
        params = sum(p.numel() for p in module.parameters())
        rows.append([name, f"{params:,}", f"{seconds:.3f}", f"{minutes:.1f}"])
    print(f"SGD reference steps on {device} ({args.threads} threads), batch "
          f"{recipe.batch_size}, medians of {args.runs}; projection: {recipe.max_epochs} "
          f"epochs of {steps} steps")
    print(markdown_table(["arch", "params", "s / step", "min (max epochs)"], rows))
    print(f"\ntotal: {total_minutes / 60:.1f} h for {len(rows)} networks (at most)")


if __name__ == "__main__":
    main()
