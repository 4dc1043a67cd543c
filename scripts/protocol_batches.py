"""How many training batches the calibrated protocol needs: accuracy of the shipped GHNs'
predictions on validation architectures and validation images (never the test split)
for several (BN batches, calibration batches) pairs, with the time each took.

    python scripts/protocol_batches.py            # 6 val architectures, 2,000 val images
"""

from __future__ import annotations

import argparse
import time
import warnings

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from ghn_pyg.data import load_images, sample_specs  # noqa: E402
from ghn_pyg.nn import GHN  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.spaces import get_space  # noqa: E402
from ghn_pyg.train.evaluate import ModuleArchs, evaluate_split  # noqa: E402
from ghn_pyg.train.tables import summarize  # noqa: E402
from ghn_pyg.train.protocol import EvalProtocol  # noqa: E402

BITS = (32, 4, 2)


def main(argv: list[str] | None = None) -> str:
    """Print and return the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", type=int, default=6)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--pairs", default="40/8,20/8,10/4,5/2", help="BN/calibration batches")
    args = parser.parse_args(argv)
    space = get_space("efficient")
    models = [(f"val-{i:02d}", space.build(s, 1, 10))
              for i, s in enumerate(sample_specs(space, "val", args.archs, 0))]
    archs = ModuleArchs(models, (1, 28, 28))
    val, train = load_images("fashion-mnist", "val"), load_images("fashion-mnist", "train")
    ghns = {"GHN": GHN.from_pretrained("ghn-fmnist"), "QAT": GHN.from_pretrained("ghn-qat-fmnist")}
    table = []
    for pair in args.pairs.split(","):
        bn, calib = (int(v) for v in pair.split("/"))
        started = time.perf_counter()
        rows = evaluate_split(archs, val, ghns, BITS, (), max_images=args.images,
                              train_images=train, progress=False,
                              protocol=EvalProtocol(bn_batches=bn, calib_batches=calib))
        summary = summarize(rows)
        table.append([f"{bn} / {calib}"] + [
            f"{100 * summary['GHN', b][0]:.1f} / {100 * summary['QAT', b][0]:.1f}" for b in BITS]
            + [f"{time.perf_counter() - started:.0f}"])
    text = markdown_table(["BN batches / calibration batches", "FP32 GHN / QAT",
                           "W4A4 GHN / QAT", "W2A2 GHN / QAT", "seconds"], table)
    print(text)
    return text


if __name__ == "__main__":
    main()
