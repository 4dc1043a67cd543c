"""The ``ghn-pyg`` command line."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Sequence

__all__ = ["main", "build_parser"]


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape {text!r} must look like 1,3,32,32") from None
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"input shape {text!r} must be positive, with a batch dim")
    return dims


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ghn-pyg`` with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="ghn-pyg", description="Graph HyperNetworks for quantization-robust CNN parameters.")
    sub = parser.add_subparsers(dest="command", required=True)

    graph = sub.add_parser("graph", help="trace a model and draw its architecture graph",
                           description="Trace MODEL into an ArchGraph and draw it.")
    graph.add_argument("model", help="torchvision:NAME or package.module:factory")
    graph.add_argument("--out", required=True,
                       help="output file: .dot (Graphviz text), .png, .svg or .pdf")
    graph.add_argument("--input-shape", type=_shape, default=None,
                       help="input shape with batch dim, e.g. 1,3,32,32 (default: 32x32 RGB, "
                            "or the model's minimum)")
    graph.add_argument("--w-bits", type=int, default=32, help="weight bits of conv/linear layers")
    graph.add_argument("--a-bits", type=int, default=32, help="input activation bits")
    graph.add_argument("--first-last-8bit", action="store_true",
                       help="keep the first and last layers at 8 bits")
    graph.add_argument("--num-classes", type=int, default=None, help="classifier size")

    zoo = sub.add_parser("zoo", help="trace the torchvision CNN zoo and print a table of graphs")
    zoo.add_argument("--size", type=int, default=32, help="input height and width (default 32)")
    zoo.add_argument("--s-max", type=int, default=50, help="virtual edge cutoff (default 50)")
    zoo.add_argument("--models", nargs="+", default=None, metavar="NAME",
                     help="trace only these torchvision models (default: the whole zoo)")
    data = sub.add_parser(
        "make-dataset", help="sample, trace and store an architecture-graph dataset",
        description="Build (or resume) an ArchGraphDataset split. With --recipe, settings come "
                    "from a JSON recipe (see graphs/) and every split it lists is built unless "
                    "--split is given; command-line options override the recipe.")
    data.add_argument("--recipe", help="JSON recipe file, e.g. graphs/efficient-fmnist.json")
    data.add_argument("--space", help="architecture space (default efficient)")
    data.add_argument("--split", help="train, val, test, wide, deep, nobn or torchvision")
    data.add_argument("--size", type=int, help="number of architectures")
    data.add_argument("--root", help="dataset folder")
    data.add_argument("--seed", type=int, help="base seed (default 0)")
    data.add_argument("--in-shape", type=_shape, help="input C,H,W (default 1,28,28)")
    data.add_argument("--num-classes", type=int, help="classifier size (default 10)")
    data.add_argument("--shard-size", type=int, help="graphs per shard file (default 1000)")
    data.add_argument("--workers", type=int, default=0, help="build processes (default 0: inline)")

    from .train.config import add_config_arguments

    train = sub.add_parser(
        "train", help="train a GHN (float) or finetune it with quantization (GHN-QAT)",
        description="Train a GHN. Settings: defaults < --config FILE (JSON/YAML) < flags. "
                    "Float pretraining unless --bits is given (e.g. --bits 8,4,2 for GHN-QAT, "
                    "usually with --init-ckpt of a float run). Under torchrun it trains with DDP.")
    train.add_argument("--config", help="JSON or YAML file of settings")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly")
    add_config_arguments(train)

    evaluate = sub.add_parser(
        "eval", help="accuracy of GHN-predicted vs random parameters per bit-width",
        description="Evaluate every architecture of a split on the test images: the GHNs' "
                    "predictions and random initializations, at each bit-width, BN on batch "
                    "statistics. Writes results.csv, summary.md and accuracy_vs_bits.png.")
    evaluate.add_argument("--ckpt", action="append", required=True, metavar="[NAME=]PATH",
                          help="GHN or training checkpoint; repeat for several (e.g. GHN=a.pt "
                               "GHN-QAT=b.pt)")
    evaluate.add_argument("--graphs", help="architecture dataset root (default: the checkpoint's)")
    evaluate.add_argument("--space", help="architecture space (default: the checkpoint's)")
    evaluate.add_argument("--split", default="test", help="architecture split (default test)")
    evaluate.add_argument("--size", type=int, default=500, help="split size (default 500)")
    evaluate.add_argument("--graph-seed", type=int, default=None, help="architecture seed")
    evaluate.add_argument("--in-shape", type=_shape, default=None, help="C,H,W")
    evaluate.add_argument("--num-classes", type=int, default=None)
    evaluate.add_argument("--data", default=None, help="image dataset (default: the checkpoint's)")
    evaluate.add_argument("--data-root", default=None)
    evaluate.add_argument("--bits", default="32,8,4,2", help="bit-widths (default 32,8,4,2)")
    evaluate.add_argument("--baselines", default="default,he,xavier",
                          help="random initializers to compare with (ghn_pyg.inits names)")
    evaluate.add_argument("--sgd-epochs", type=int, default=0,
                          help="also train each network with SGD for N epochs (reference)")
    evaluate.add_argument("--max-train-images", type=int, default=None,
                          help="training images for --sgd-epochs (default all)")
    evaluate.add_argument("--max-archs", type=int, default=None)
    evaluate.add_argument("--max-images", type=int, default=None)
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--out", default="results/eval", help="output folder")

    demo = sub.add_parser(
        "demo", help="the main job: shipped GHN and GHN-QAT vs random init on Fashion-MNIST",
        description="Predict parameters with the shipped float GHN and GHN-QAT for unseen test "
                    "architectures of the efficient space and for resnet18, mobilenet_v2 and "
                    "efficientnet_b0 (1x28x28, 10 classes); evaluate on Fashion-MNIST test images "
                    "at 32, 8, 4 and 2 bits against He-initialised networks.")
    demo.add_argument("--archs", type=int, default=50, help="unseen efficient architectures")
    demo.add_argument("--max-images", type=int, default=2000, help="test images per evaluation")
    demo.add_argument("--data-root", default=None, help="Fashion-MNIST folder")
    demo.add_argument("--torchvision", nargs="*", default=None, metavar="NAME",
                      help="torchvision models to add (default resnet18 mobilenet_v2 "
                           "efficientnet_b0)")
    demo.add_argument("--out", default="results/demo", help="output folder")

    predict = sub.add_parser("predict", help="predict the parameters of one network",
                             description="Predict all parameters of a network with a GHN.")
    predict.add_argument("--ckpt", required=True, help="GHN or training checkpoint")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="torchvision:NAME or package.module:factory")
    source.add_argument("--spec", help="JSON file of an architecture-space spec")
    predict.add_argument("--bits", type=int, default=32, help="bits of every conv/linear layer")
    predict.add_argument("--first-last-8bit", action="store_true")
    predict.add_argument("--input-shape", type=_shape, default=None,
                         help="1,C,H,W (default: the checkpoint's training input)")
    predict.add_argument("--num-classes", type=int, default=None)
    predict.add_argument("--out", required=True, help="output .pt file of {name: tensor}")
    return parser


def _dataset_jobs(args: argparse.Namespace) -> list[dict]:
    """The (split, settings) jobs of make-dataset from the recipe and the options."""
    import json
    from pathlib import Path

    recipe: dict = {}
    if args.recipe:
        try:
            recipe = json.loads(Path(args.recipe).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read recipe {args.recipe}: {err}") from None
    base = {"space": recipe.get("space", "efficient"), "root": recipe.get("root"),
            "seed": recipe.get("seed", 0), "in_shape": tuple(recipe.get("in_shape", (1, 28, 28))),
            "num_classes": recipe.get("num_classes", 10),
            "shard_size": recipe.get("shard_size", 1000)}
    for key in ("space", "root", "seed", "num_classes", "shard_size"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    if args.in_shape is not None:
        base["in_shape"] = args.in_shape
    if base["root"] is None:
        raise ValueError("give --root (or a recipe with a root)")
    splits = dict(recipe.get("splits", {}))
    if args.split:
        size = args.size if args.size is not None else splits.get(args.split)
        if size is None:
            raise ValueError(f"give --size for split {args.split!r}")
        splits = {args.split: size}
    if not splits:
        raise ValueError("give --split and --size, or a recipe with splits")
    return [{**base, "split": split, "size": size} for split, size in splits.items()]


def _cmd_graph(args: argparse.Namespace) -> int:
    from .graph.draw import draw
    from .graph.tracer import trace
    from .quant.spec import QuantSpec
    from .spaces import resolve_model, zoo_input_shape

    model = resolve_model(args.model, num_classes=args.num_classes)
    name = args.model.partition(":")[2]
    shape = args.input_shape or zoo_input_shape(name)
    spec = QuantSpec(w_bits=args.w_bits, a_bits=args.a_bits,
                     first_last_8bit=args.first_last_8bit)
    graph = trace(model, shape, spec=spec, name=name, arch=args.model)
    path = draw(graph, args.out)
    print(f"{name}: {graph.num_nodes} nodes, {graph.edge_index.shape[1]} edges, "
          f"{int(graph.level_fw.max()) + 1} levels -> {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import Trainer, load_config
    from .train.config import config_from_args
    from .train.distributed import teardown

    config = config_from_args(args, load_config(args.config) if args.config else None)
    try:
        trainer = Trainer(config, resume=args.resume)
        metrics = trainer.train()
    finally:
        teardown()
    if trainer.rank == 0:
        print("finished: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in metrics.items()))
    return 0


def _checkpoint_settings(path: str) -> dict:
    """The training settings stored in a training checkpoint ({} for a plain GHN file)."""
    from .nn.ghn import CheckpointError
    from .train import load_train_checkpoint

    try:
        return load_train_checkpoint(path)["config"]
    except CheckpointError:
        return {}


def _cmd_eval(args: argparse.Namespace) -> int:
    import warnings as _warnings

    from .data import ArchGraphDataset, load_images
    from .nn import GHN
    from .train.evaluate import markdown_summary, write_results

    ghns, trained = {}, {}
    for i, item in enumerate(args.ckpt):
        name, sep, path = item.partition("=")
        if not sep:
            name, path = ("GHN" if len(args.ckpt) == 1 else f"GHN{i + 1}"), item
        ghns[name] = GHN.load(path)
        trained[name] = _checkpoint_settings(path)
    first = next(iter(trained.values()))
    bits = [int(b) for b in args.bits.split(",")]
    for name, settings in trained.items():
        seen = set(settings.get("bits") or []) | {32}
        if settings and not set(bits) <= seen:
            _warnings.warn(f"{name} was trained with bits {sorted(seen)}; evaluating "
                           f"{sorted(set(bits) - seen)} is out of its training distribution")
    in_shape = tuple(args.in_shape or first.get("in_shape", (1, 28, 28)))
    space = args.space or first.get("space", "efficient")
    if first and space != first.get("space"):
        _warnings.warn(f"evaluating on space {space!r}; the GHN was trained on {first.get('space')!r}")
    archs = ArchGraphDataset(args.graphs or first.get("graphs", "graphs/efficient-fmnist"),
                             space, args.split, args.size,
                             args.graph_seed if args.graph_seed is not None else first.get("graph_seed", 0),
                             in_shape, args.num_classes or first.get("num_classes", 10))
    images = load_images(args.data or first.get("data", "fashion-mnist"), "test",
                         args.data_root or first.get("data_root"), synthetic_shape=in_shape)
    if tuple(images.shape) != in_shape:
        raise ValueError(f"test images are {images.shape}, architectures take {in_shape}")
    from .train.evaluate import evaluate_split

    train_images = None
    if args.sgd_epochs > 0:
        from torch.utils.data import Subset

        train_images = load_images(args.data or first.get("data", "fashion-mnist"), "train",
                                   args.data_root or first.get("data_root"),
                                   synthetic_shape=in_shape)
        if args.max_train_images is not None:
            train_images = Subset(train_images, range(min(args.max_train_images, len(train_images))))
    rows = evaluate_split(archs, images, ghns, bits, args.baselines.split(","), args.max_archs,
                          args.max_images, args.batch_size, args.seed, args.device,
                          sgd_epochs=args.sgd_epochs, train_images=train_images)
    title = f"{space}/{args.split}: {len({r.arch for r in rows})} architectures, top-1 (%)"
    paths = write_results(rows, args.out, title)
    print(title)
    print(markdown_summary(rows))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from .fileio import atomic_path
    from .nn import GHN
    from .quant import QuantSpec
    from .spaces import adapt_input_channels, get_space, resolve_model

    settings = _checkpoint_settings(args.ckpt)
    ghn = GHN.load(args.ckpt)
    in_shape = tuple(settings.get("in_shape", (3, 32, 32)))
    shape = args.input_shape or (1, *in_shape)
    classes = args.num_classes or settings.get("num_classes", 10)
    if args.spec:
        try:
            spec = json.loads(Path(args.spec).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read spec {args.spec}: {err}") from None
        model = get_space(spec.get("space", "")).build(spec, shape[1], classes)
    else:
        model = resolve_model(args.model, num_classes=classes)
        if args.model.startswith("torchvision:") and args.input_shape is None:
            model = adapt_input_channels(model, shape[1])
    spec_bits = QuantSpec.uniform(args.bits, first_last_8bit=args.first_last_8bit)
    params = ghn.predict(model, shape, spec_bits)
    with atomic_path(args.out) as tmp:
        torch.save(params, tmp)
    total = sum(p.numel() for p in params.values())
    print(f"predicted {len(params)} tensors ({total} parameters) at {args.bits} bits -> {args.out}")
    return 0


DEMO_TORCHVISION = ("resnet18", "mobilenet_v2", "efficientnet_b0")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .data import load_images, sample_specs
    from .nn import GHN
    from .spaces import TorchvisionSpace, get_space
    from .train.evaluate import ModuleArchs, evaluate_split, markdown_summary, write_results

    ghns = {"GHN (float)": GHN.from_pretrained("ghn-fmnist"),
            "GHN-QAT": GHN.from_pretrained("ghn-qat-fmnist")}
    images = load_images("fashion-mnist", "test", args.data_root)
    space, zoo = get_space("efficient"), TorchvisionSpace()
    specs = sample_specs(space, "test", args.archs, seed=0)
    models = [(f"efficient-test-{i:02d}", space.build(spec, 1, 10)) for i, spec in enumerate(specs)]
    names = DEMO_TORCHVISION if args.torchvision is None else tuple(args.torchvision)
    models += [(name, zoo.build({"space": "torchvision", "name": name}, 1, 10)) for name in names]
    archs = ModuleArchs(models, (1, 28, 28))
    rows = evaluate_split(archs, images, ghns, (32, 8, 4, 2), ("he",), max_images=args.max_images)
    unseen = [r for r in rows if r.arch.startswith("efficient-test")]
    title = (f"{args.archs} unseen efficient test architectures, Fashion-MNIST "
             f"({args.max_images} test images), top-1 % (mean ± standard error)")
    paths = write_results(unseen, args.out, title)
    print(title)
    print(markdown_summary(unseen))
    for name in names:
        print(f"\n{name} (1x28x28, 10 classes), top-1 %")
        print(markdown_summary([r for r in rows if r.arch == name]))
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from .data import ArchGraphDataset

    for job in _dataset_jobs(args):
        start = time.perf_counter()
        data = ArchGraphDataset(workers=args.workers, **job)
        seconds = time.perf_counter() - start
        print(f"{job['space']}/{job['split']}: {len(data)} graphs in {data.processed_dir} "
              f"({data.bytes_per_graph() / 1024:.1f} KB per graph, {seconds:.1f} s)")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .graph.ops import QUANTIZABLE_OPS
    from .graph.tracer import trace
    from .report import markdown_table
    from .spaces import ZOO, build_torchvision, zoo_input_shape

    rows = []
    for name in tqdm(args.models or ZOO, desc="tracing the torchvision zoo", unit="model"):
        model = build_torchvision(name)
        shape = zoo_input_shape(name, args.size)
        start = time.perf_counter()
        graph = trace(model, shape, s_max=args.s_max, name=name, arch=f"torchvision:{name}")
        ms = (time.perf_counter() - start) * 1e3
        mapped = sum(len(p) for p in graph.param_names)
        layers = sum(op in QUANTIZABLE_OPS for op in graph.op_names())
        rows.append((name, f"{shape[2]}x{shape[3]}", graph.num_nodes, graph.edge_index.shape[1],
                     int(graph.level_fw.max()) + 1, graph.dist.numel(), layers,
                     f"{mapped}/{len(list(model.parameters()))}", f"{ms:.0f}"))
    header = ("model", "input", "nodes", "edges", "levels", "virtual", "conv+fc",
              "params mapped", "trace ms")
    print(markdown_table(header, rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ghn-pyg``; returns the exit status."""
    args = build_parser().parse_args(argv)
    # torch_geometric's import calls the deprecated torch.jit.script; not the user's concern.
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated",
                            category=FutureWarning)
    from .errors import DatasetError, GraphBuildError

    handlers = {"graph": _cmd_graph, "zoo": _cmd_zoo, "make-dataset": _cmd_make_dataset,
                "train": _cmd_train, "eval": _cmd_eval, "predict": _cmd_predict, "demo": _cmd_demo}
    try:
        return handlers[args.command](args)
    except (GraphBuildError, DatasetError, ValueError, ImportError, FileNotFoundError,
            RuntimeError) as err:
        print(f"ghn-pyg {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
