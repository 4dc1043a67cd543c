"""Measure the shipped GHNs' reference accuracies for the regression test.

For each checkpoint in ``ghn_pyg/checkpoints/``: the mean top-1 of its predictions for
5 fixed unseen test architectures of the efficient space (seed 0) on the first 1000
Fashion-MNIST test images (BN on batch statistics, batches of 250), at 32 and 4 bits.
Writes ``ghn_pyg/checkpoints/regression.json``, which ``tests/test_pretrained.py``
checks against (minus a margin); with ``--compare`` it writes nothing and prints the
stored value beside each new one (e.g. after a change that moves float rounding).

    python scripts/regression_reference.py [--compare]
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Sequence

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg.data import load_images  # noqa: E402
from ghn_pyg.fileio import atomic_path  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.nn.ghn import PRETRAINED_DIR  # noqa: E402
from ghn_pyg.train.evaluate import regression_accuracy  # noqa: E402

CHECKPOINTS = ("ghn-fmnist", "ghn-qat-fmnist")
BITS = (32, 4)


def main(argv: Sequence[str] | None = None) -> dict:
    """Measure (and, without ``--compare``, store) the reference accuracies; returns them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="store_true",
                        help="print stored and new values side by side; write nothing")
    args = parser.parse_args(argv)
    path = PRETRAINED_DIR / "regression.json"
    stored = json.loads(path.read_text())["accuracy"] if args.compare else {}
    images = load_images("fashion-mnist", "test")
    reference = {"archs": 5, "seed": 0, "images": 1000, "batch_size": 250, "margin": 0.02,
                 "accuracy": {}}
    for name in CHECKPOINTS:
        ghn = GHN.from_pretrained(name)
        reference["accuracy"][name] = {str(b): round(regression_accuracy(ghn, images, b), 4)
                                       for b in BITS}
        for bits, value in reference["accuracy"][name].items():
            before = stored.get(name, {}).get(bits)
            was = f" (stored {100 * before:.1f})" if before is not None else ""
            print(f"{name} W{bits}: {100 * value:.1f}{was}")
    if not args.compare:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(reference, indent=1) + "\n")
    return reference


if __name__ == "__main__":
    main()
