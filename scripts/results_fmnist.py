"""The README's results table: shipped GHN and GHN-QAT vs He init vs SGD, per split.

For each split (the unseen ``test`` architectures of the ``efficient`` space, the
out-of-distribution ``wide``, ``deep`` and ``nobn`` splits, and the torchvision zoo
adapted to 1x28x28, lighter models first): the first ``--archs`` test architectures (``--ood-archs`` of the
other splits, ``--torchvision-archs`` zoo models; seed 0), top-1 on the first
``--images`` Fashion-MNIST test images (``--ood-images`` for the other splits) at
FP32, W8A8, W4A4 and W2A2, BN on batch statistics (GHN-2's protocol), mean ± standard
error over architectures. On the test
split the first ``--sgd-archs`` architectures are also trained with SGD for
``--sgd-epochs`` on the first ``--sgd-train-images`` training images (the 5,000
validation images are held out) and quantized post-training, giving the predicted /
trained accuracy ratio.
Each split's rows go to ``OUT/SPLIT/`` (CSV, markdown, plot); a finished split is
read back instead of run again; ``OUT/table.md`` collects them.

    python scripts/results_fmnist.py --out results/fmnist
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from torch.utils.data import Subset  # noqa: E402

from ghn_pyg.data import load_images, sample_specs  # noqa: E402
from ghn_pyg.fileio import atomic_path  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.spaces import TorchvisionSpace, get_space  # noqa: E402
from ghn_pyg.train.evaluate import (EvalRow, ModuleArchs, bits_label, evaluate_split,  # noqa: E402
                                    summarize, write_results)

BITS = (32, 8, 4, 2)
#: The torchvision networks evaluated, lighter ones first (all of them take 1x28x28).
TORCHVISION = ("resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
               "squeezenet1_0", "regnet_x_400mf", "shufflenet_v2_x1_0", "mnasnet1_0",
               "resnet50", "densenet121")


def split_models(split: str, count: int) -> list:
    """``(name, module)`` of the first ``count`` architectures of ``split`` at 1x28x28."""
    if split == "torchvision":
        zoo = TorchvisionSpace()
        return [(name, zoo.build({"space": "torchvision", "name": name}, 1, 10))
                for name in TORCHVISION[:count]]
    space = get_space("efficient")
    return [(f"{split}-{i:02d}", space.build(s, 1, 10))
            for i, s in enumerate(sample_specs(space, split, count, 0))]


def read_rows(path: Path) -> list[EvalRow]:
    """Rows of a ``results.csv`` written by :func:`write_results`."""
    return [EvalRow(r["arch"], r["method"], int(r["bits"]), float(r["accuracy"]))
            for r in csv.DictReader(path.open())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", default="test,wide,deep,nobn,torchvision")
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--ood-archs", type=int, default=5)
    parser.add_argument("--torchvision-archs", type=int, default=6,
                        help="the first N of TORCHVISION")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--ood-images", type=int, default=500)
    parser.add_argument("--sgd-archs", type=int, default=20)
    parser.add_argument("--sgd-epochs", type=int, default=1)
    parser.add_argument("--sgd-train-images", type=int, default=10000,
                        help="the first N training images for SGD (0: all 55,000)")
    parser.add_argument("--out", default="results/fmnist")
    args = parser.parse_args()
    ghns = {"GHN (float)": GHN.from_pretrained("ghn-fmnist"),
            "GHN-QAT": GHN.from_pretrained("ghn-qat-fmnist")}
    test_images = load_images("fashion-mnist", "test")
    train_images = load_images("fashion-mnist", "train")
    if args.sgd_train_images:
        train_images = Subset(train_images, range(min(args.sgd_train_images, len(train_images))))
    out = Path(args.out)
    table, ratio_lines = [], []
    for split in args.splits.split(","):
        folder = out / split
        if (folder / "results.csv").is_file():
            rows = read_rows(folder / "results.csv")
        else:
            started = time.perf_counter()
            count = {"test": args.archs, "torchvision": args.torchvision_archs}.get(
                split, args.ood_archs)
            images = args.images if split == "test" else args.ood_images
            archs = ModuleArchs(split_models(split, count), (1, 28, 28))
            rows = evaluate_split(archs, test_images, ghns, BITS, ("he",), max_images=images)
            if split == "test" and args.sgd_epochs > 0:
                sgd = ModuleArchs(split_models(split, args.sgd_archs), (1, 28, 28))
                rows += [r for r in evaluate_split(sgd, test_images, {}, BITS, (),
                                                   max_images=args.images,
                                                   sgd_epochs=args.sgd_epochs,
                                                   train_images=train_images)]
            write_results(rows, folder, f"{split}: {len({r.arch for r in rows})} architectures, "
                                        f"{images} test images")
            print(f"{split}: {(time.perf_counter() - started) / 60:.1f} min")
        summary = summarize(rows)
        archs_in = {m: n for (m, _), (_, _, n) in summary.items()}
        for method in dict.fromkeys(r.method for r in rows):
            table.append([split, f"{method} ({archs_in[method]})"] +
                         [f"{100 * summary[method, b][0]:.1f} ± {100 * summary[method, b][1]:.1f}"
                          for b in BITS])
        sgd_name = f"SGD {args.sgd_epochs} ep"
        if (sgd_name, 32) in summary:
            names = {r.arch for r in rows if r.method == sgd_name}
            for method in ghns:
                pred = statistics.fmean(r.accuracy for r in rows if r.method == method
                                        and r.bits == 32 and r.arch in names)
                ratio_lines.append(f"{method} / {sgd_name} at FP32 on the same {len(names)} "
                                   f"architectures: {pred / summary[sgd_name, 32][0]:.2f}")
    text = markdown_table(["split", "method (archs)"] + [bits_label(b) for b in BITS], table)
    text += "\n\n" + "\n".join(ratio_lines) + "\n"
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
