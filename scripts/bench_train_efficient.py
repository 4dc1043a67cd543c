"""The real GHN-QAT training step: speed, a profile, and an old commit against this tree.

The step is ``Trainer.train_step`` with the README's GHN-QAT recipe (from the shipped
``ghn-fmnist``; bits 32:1,8:1,4:2,2:1, seeded bit rows, collapse guard, per-network
gradient clip 5, activation ranges from 128 other training images, meta-batch 8 of
64 Fashion-MNIST images, AdamW) on the architectures of ``--graphs`` (an ``efficient``
ArchGraphDataset; built with ``--num-archs`` architectures when missing). After
``--warmup`` steps, ``--runs`` steps are timed one by one (the same architectures and
images in every process, since the run is seeded).

- default: median step time and images/s;
- ``--profile``: ``torch.profiler`` over the timed steps: time per step by phase (the
  trainer's ``record_function`` scopes) and the ops with the most self CPU time (use
  ``--net-threads 1``: the profiler sees the calling thread's ops only);
- ``--ranks N``: the recipe under ``torchrun`` with N processes, each with 8/N of the
  meta-batch (DDP; on one GPU the ranks share it, the host work of launching small
  kernels spread over N cores);
- ``--compare REV``: a git worktree of ``REV`` and this tree run the same timed steps
  in alternating subprocesses for ``--rounds`` rounds (noise of a shared machine hits
  both alike); medians and the speed-up.

    python scripts/bench_train.py --workload efficient [--profile] [--compare REV]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
#: The README's GHN-QAT recipe (``--bits 32:1,8:1,4:2,2:1`` arm of the A/B trials).
RECIPE = ("--bits 32:1,8:1,4:2,2:1 --seed-bits --collapse-guard --net-grad-clip 5 "
          "--range-images 128 --lr 3e-4 --warmup 30 --grad-clip 2 --seed 3 --meta-batch 8 "
          "--batch-size 64 --steps 100000 --log-every 100000 --ckpt-every 100000")


def add_efficient_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the ``efficient`` workload."""
    group = parser.add_argument_group("--workload efficient")
    group.add_argument("--graphs", default="graphs/efficient-fmnist-10k",
                       help="ArchGraphDataset root (built when missing)")
    group.add_argument("--num-archs", type=int, default=10000)
    group.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    group.add_argument("--profile", action="store_true", help="print a profile by phase and op")
    group.add_argument("--compare", default=None, metavar="REV",
                       help="also time git revision REV, alternating, in subprocesses")
    group.add_argument("--rounds", type=int, default=3, help="--compare: rounds per tree")
    group.add_argument("--net-threads", type=int, default=None,
                       help="the trainer's net_threads (default: its own); profile with 1, "
                            "since the profiler records the calling thread's ops only")
    group.add_argument("--ranks", type=int, default=None,
                       help="time the recipe under torchrun with this many processes (DDP; "
                            "they share one GPU), each with 8/ranks architectures per step")
    group.add_argument("--rank-meta-batch", type=int, default=None,
                       help="--ranks: architectures per rank and step (default 8/ranks, the "
                            "recipe's meta-batch 8 in all; more is a larger meta-batch)")
    group.add_argument("--amp", action="store_true",
                       help="the step under bfloat16 autocast (the trainer's --amp)")
    group.add_argument("--json", action="store_true", help=argparse.SUPPRESS)


def _recipe_flags(args: argparse.Namespace, out: Path) -> list[str]:
    """The training flags of the recipe on ``args.graphs``, writing to ``out``."""
    from ghn_pyg.data import find_fashion_mnist
    from ghn_pyg.nn.ghn import PRETRAINED_DIR

    try:
        find_fashion_mnist()
        data = "fashion-mnist"
    except FileNotFoundError:
        data = "synthetic"
    flags = shlex.split(RECIPE) + [
        "--graphs", args.graphs, "--num-archs", str(args.num_archs), "--data", data,
        "--init-ckpt", str(PRETRAINED_DIR / "ghn-fmnist.pt"), "--device", args.device,
        "--out", str(out)]
    if args.net_threads is not None:
        flags += ["--net-threads", str(args.net_threads)]
    if args.amp:
        flags.append("--amp")
    return flags


def _trainer(args: argparse.Namespace, out: Path):
    """A Trainer of the recipe on ``args.graphs``."""
    from ghn_pyg.train.config import add_config_arguments, config_from_args
    from ghn_pyg.train.trainer import Trainer

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return Trainer(config_from_args(parser.parse_args(_recipe_flags(args, out))))


def time_ranks(args: argparse.Namespace, per_rank: int) -> list[float]:
    """Seconds of each timed step of the recipe under ``torchrun`` with ``args.ranks``
    processes (DDP; on one GPU they share it over gloo), each with ``per_rank``
    architectures per step; read from rank 0's ``metrics.csv``."""
    import csv

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(args.ranks), "-m", "ghn_pyg.train",
                   *_recipe_flags(args, out), "--meta-batch", str(per_rank),
                   "--steps", str(args.warmup + args.runs), "--log-every", "1"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"torchrun with {args.ranks} ranks failed:\n{done.stderr[-3000:]}")
        with open(out / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    return [float(row["seconds"]) for row in rows[args.warmup:]]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(args: argparse.Namespace) -> list[float]:
    """Seconds of each timed step."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(args, Path(tmp) / "run")
        for _ in range(args.warmup):
            trainer.train_step()
        seconds = []
        for _ in range(args.runs):
            _sync(args.device)
            start = time.perf_counter()
            trainer.train_step()
            _sync(args.device)
            seconds.append(time.perf_counter() - start)
    return seconds


def profile_steps(args: argparse.Namespace) -> str:
    """Markdown: time per step by phase, and the top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    from ghn_pyg.report import markdown_table

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if args.device.startswith("cuda") else [])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(args, Path(tmp) / "run")
        for _ in range(args.warmup):
            trainer.train_step()
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            for _ in range(args.runs):
                trainer.train_step()
            _sync(args.device)
        wall = (time.perf_counter() - start) / args.runs
    events = prof.key_averages()
    phases = sorted((e for e in events if e.key.startswith("step: ")),
                    key=lambda e: -e.cpu_time_total)
    rows = [[e.key[6:], f"{e.cpu_time_total / 1000 / args.runs:.0f}",
             f"{100 * e.cpu_time_total / 1e6 / args.runs / wall:.0f}"] for e in phases]
    table = markdown_table(["phase", "ms per step", "% of step"], rows)
    ops = sorted((e for e in events if not e.key.startswith("step: ")),
                 key=lambda e: -e.self_cpu_time_total)[:15]
    op_rows = [[e.key, f"{e.self_cpu_time_total / 1000 / args.runs:.1f}",
                f"{100 * e.self_cpu_time_total / 1e6 / args.runs / wall:.0f}",
                f"{e.count // args.runs}"] for e in ops]
    op_table = markdown_table(["op", "self ms per step", "% of step", "calls per step"], op_rows)
    text = (f"step {wall:.3f} s (profiled, {args.runs} steps)\n\n{table}\n\n"
            f"Ops with the most self CPU time:\n\n{op_table}")
    if args.device.startswith("cuda"):
        text += "\n\n" + _device_time_table(events, args.runs, wall)
    return text


def _device_time_table(events, runs: int, wall: float) -> str:
    """Markdown: the GPU's busy time per step and the kernels with the most device time
    (a GPU busy for a small share of the step is waiting for the host: launch-bound)."""
    from torch.autograd import DeviceType

    from ghn_pyg.report import markdown_table

    def device_us(kernel) -> float:  # named cuda_time_total before torch 2.4
        return getattr(kernel, "device_time_total", None) or getattr(kernel, "cuda_time_total", 0.0)

    # the trainer's phases appear on the GPU's timeline too (as annotations): not kernels
    kernels = [e for e in events if e.device_type == DeviceType.CUDA
               and not e.key.startswith("step: ")]
    busy = sum(device_us(e) for e in kernels) / 1e6 / runs
    launches = sum(e.count for e in kernels) // runs
    top = sorted(kernels, key=lambda e: -device_us(e))[:12]
    rows = [[e.key[:70], f"{device_us(e) / 1000 / runs:.2f}",
             f"{100 * device_us(e) / 1e6 / runs / wall:.0f}", f"{e.count // runs}"] for e in top]
    return (f"GPU busy {1000 * busy:.0f} ms of the {1000 * wall:.0f} ms step "
            f"({100 * busy / wall:.0f}%; {launches} kernels per step)\n\n"
            + markdown_table(["kernel", "device ms per step", "% of step", "launches per step"],
                             rows))


def _ensure_graphs(args: argparse.Namespace) -> None:
    """Build the architecture dataset when ``args.graphs`` has none."""
    if Path(args.graphs).exists():
        return
    from ghn_pyg.data import ArchGraphDataset

    print(f"building {args.num_archs} efficient architectures in {args.graphs}", flush=True)
    ArchGraphDataset(args.graphs, "efficient", "train", args.num_archs, 0, (1, 28, 28), 10)


def _subprocess_times(tree: Path, args: argparse.Namespace) -> tuple[list[float], str]:
    """Run the timed steps with the ``ghn_pyg`` of ``tree``; returns times and the
    package's path (to show which tree ran)."""
    command = [sys.executable, str(Path(__file__).resolve().with_name("bench_train.py")),
               "--workload", "efficient", "--json", "--runs", str(args.runs),
               "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--graphs", str(Path(args.graphs).resolve()), "--num-archs", str(args.num_archs),
               "--device", args.device, "--malloc", args.malloc]
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the run in {tree} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], result["package"]


def compare(args: argparse.Namespace) -> str:
    """Markdown: the old revision against this tree, alternating."""
    from ghn_pyg.report import markdown_table

    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old_tree),
                        args.compare], check=True, capture_output=True)
        try:
            times: dict[str, list[float]] = {"old": [], "new": []}
            packages = {}
            for round_index in range(args.rounds):
                for label, tree in (("old", old_tree), ("new", REPO)):
                    seconds, packages[label] = _subprocess_times(tree, args)
                    times[label] += seconds
                    print(f"round {round_index + 1} {label}: median "
                          f"{statistics.median(seconds):.3f} s/step", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(old_tree)], check=False, capture_output=True)
    images = 8 * 64
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    rows = [[label, f"{statistics.median(t):.3f}", f"{images / statistics.median(t):.0f}"]
            for label, t in (("old " + args.compare, times["old"]), ("this tree", times["new"]))]
    table = markdown_table(["code", "median s per step", "images/s"], rows)
    return (f"{table}\n\nspeed-up {old / new:.2f}x ({args.rounds} rounds of {args.runs} steps "
            f"per tree, alternating; packages {packages['old']} and {packages['new']})")


def bench_efficient(args: argparse.Namespace) -> None:
    """Entry point of ``--workload efficient``."""
    _ensure_graphs(args)
    if args.json:
        import ghn_pyg

        print(json.dumps({"seconds": time_steps(args), "package": str(Path(ghn_pyg.__file__).parent)}))
        return
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else \
        f"CPU, {args.threads} threads"
    print(f"GHN-QAT step (efficient space, meta-batch 8 x 64 images of 1x28x28) on {where}")
    if args.ranks is not None:
        if args.ranks < 1 or (args.rank_meta_batch is None and 8 % args.ranks):
            raise SystemExit(f"--ranks must divide the meta-batch 8, got {args.ranks}")
        per_rank = args.rank_meta_batch or 8 // args.ranks
        median = statistics.median(time_ranks(args, per_rank))
        print(f"{args.ranks} ranks x {per_rank} architectures: median {median:.3f} s per step "
              f"over {args.runs} steps, {args.ranks * per_rank * 64 / median:.0f} images/s")
    elif args.compare:
        print(compare(args))
    elif args.profile:
        print(profile_steps(args))
    else:
        seconds = time_steps(args)
        median = statistics.median(seconds)
        print(f"median {median:.3f} s per step over {args.runs} steps, {8 * 64 / median:.0f} "
              f"images/s")
