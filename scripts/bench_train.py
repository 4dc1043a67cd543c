"""Benchmark one GHN training step against the networks' own work.

m = 8 torchvision networks (resnet18, mobilenet_v2, squeezenet1_0, regnet_x_400mf,
shufflenet_v2_x1_0, resnet50, densenet121, mobilenet_v3_small; 1000 classes), one batch
of 64 random 32x32 images. Reported, as medians of ``--runs`` runs after warm-up:

* ``step``: GHN forward for all 8 graphs in one batch, each network run with its
  predicted parameters (float, BN on batch statistics), mean cross-entropy, backward
  into the GHN, optimizer step;
* ``networks alone``: the same 8 forward + backward passes with fixed parameters
  (gradients into fresh tensors, as in the step);
* ``GHN overhead``: the share of the step outside the networks' own passes, measured
  per round (a step and a networks-alone pass back to back) and reported as the median
  of the rounds, so that a slow spell of a shared machine affects both sides alike.

``--malloc reuse`` (the default, what ``ghn-pyg`` does) keeps freed memory in the
process (:func:`ghn_pyg.runtime.reuse_freed_memory`); ``--malloc system`` leaves
glibc's defaults.

    python scripts/bench_train.py [--device cpu|cuda] [--runs 7] [--threads 2]
        [--malloc reuse|system]

``--workload efficient`` measures the real GHN-QAT training step instead
(``bench_train_efficient.py``: the shipped recipe on the ``efficient`` space,
Fashion-MNIST, a profile by phase and op, and an old commit against the tree in one
run with ``--compare REV``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from torch_geometric.data import Batch  # noqa: E402

from ghn_pyg import GHN  # noqa: E402
from ghn_pyg.quant import quantize  # noqa: E402
from ghn_pyg.report import markdown_table  # noqa: E402
from ghn_pyg.runtime import reuse_freed_memory  # noqa: E402
from ghn_pyg.spaces import build_torchvision  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_efficient import add_efficient_arguments, bench_efficient  # noqa: E402

MODELS = ("resnet18", "mobilenet_v2", "squeezenet1_0", "regnet_x_400mf", "shufflenet_v2_x1_0",
          "resnet50", "densenet121", "mobilenet_v3_small")


def bench_zoo(args: argparse.Namespace) -> None:
    """The torchvision-zoo step against the networks alone (module docstring)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    runners = [quantize(build_torchvision(n).to(device), None, (1, 3, 32, 32), bn="batch")
               for n in MODELS]
    batch = Batch.from_data_list([r.graph for r in runners]).to(device)
    ghn = GHN(hid=32).to(device)
    optimizer = torch.optim.AdamW(ghn.parameters(), lr=1e-4)
    images = torch.randn(64, 3, 32, 32, device=device)
    labels = torch.randint(0, 1000, (64,), device=device)
    fixed = [{k: v.detach().clone().requires_grad_() for k, v in r.module.named_parameters()
              if k in r.param_shapes} for r in runners]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        predicted = ghn(batch)
        loss = torch.stack([F.cross_entropy(r(images, p), labels)
                            for r, p in zip(runners, predicted)]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ghn.parameters(), 5.0)
        optimizer.step()

    def networks_alone() -> None:
        for runner, params in zip(runners, fixed):
            # fresh gradients, like the step's (accumulating into old ones costs a pass more)
            for param in params.values():
                param.grad = None
            F.cross_entropy(runner(images, params), labels).backward()

    times: dict[str, list[float]] = {"step": [], "networks alone": []}
    overheads = []
    for i in range(args.runs + 1):
        for name, fn in (("step", step), ("networks alone", networks_alone)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if i > 0:  # the first round is warm-up
                times[name].append(time.perf_counter() - start)
        if i > 0:
            overheads.append(1 - times["networks alone"][-1] / times["step"][-1])
            print(f"round {i}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()) +
                  f", overhead {100 * overheads[-1]:.0f}%", flush=True)
    step_s, nets_s = (statistics.median(times[k]) for k in ("step", "networks alone"))
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {args.threads} threads"
    print(f"\n8 torchvision networks, 1000 classes, batch 64 of 32x32, on {card}, malloc "
          f"{args.malloc}; medians of {args.runs} rounds")
    print(markdown_table(("step s", "networks alone s", "GHN overhead (median of rounds)"),
                         [(f"{step_s:.3f}", f"{nets_s:.3f}",
                           f"{100 * statistics.median(overheads):.0f}%")]))

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("zoo", "efficient"), default="zoo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=7,
                        help="zoo: timed rounds; efficient: timed steps per process")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--malloc", choices=("reuse", "system"), default="reuse")
    add_efficient_arguments(parser)
    args = parser.parse_args()
    if args.malloc == "reuse" and not reuse_freed_memory():
        print("note: could not change malloc's settings (not glibc); measuring the defaults")
    torch.set_num_threads(args.threads)
    if args.workload == "zoo":
        bench_zoo(args)
    else:
        bench_efficient(args)


if __name__ == "__main__":
    main()
