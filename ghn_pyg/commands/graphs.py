"""Commands about graphs and datasets: ``graph``, ``zoo``, ``make-dataset``."""

from __future__ import annotations

import argparse
import time

from .arguments import input_shape

__all__ = ["add_parsers", "cmd_graph", "cmd_zoo", "cmd_make_dataset"]


def cmd_graph(args: argparse.Namespace) -> int:
    from ..graph.draw import draw
    from ..graph.tracer import trace
    from ..quant.spec import QuantSpec
    from ..spaces import resolve_model, zoo_input_shape

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


def cmd_zoo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..graph.tracer import trace
    from ..report import markdown_table
    from ..spaces import ZOO, build_torchvision, zoo_input_shape

    from ..errors import GraphBuildError

    rows, failed = [], []
    for name in tqdm(args.models or ZOO, desc="tracing the torchvision zoo", unit="model"):
        try:
            model = build_torchvision(name)
            shape = zoo_input_shape(name, args.size)
            start = time.perf_counter()
            graph = trace(model, shape, s_max=args.s_max, name=name, arch=f"torchvision:{name}")
        except (GraphBuildError, ValueError) as err:  # report it, go on with the others
            failed.append((name, f"{type(err).__name__}: {err}"))
            continue
        ms = (time.perf_counter() - start) * 1e3
        mapped = sum(len(p) for p in graph.param_names)
        layers = len(graph.quantizable_nodes())
        rows.append((name, f"{shape[2]}x{shape[3]}", graph.num_nodes, graph.edge_index.shape[1],
                     int(graph.level_fw.max()) + 1, graph.dist.numel(), layers,
                     f"{mapped}/{len(list(model.parameters()))}", f"{ms:.0f}"))
    header = ("model", "input", "nodes", "edges", "levels", "virtual", "conv+fc",
              "params mapped", "trace ms")
    print(markdown_table(header, rows))
    if failed:
        print(f"\n{len(failed)} model(s) could not be traced:\n"
              + markdown_table(("model", "error"), failed))
    return 1 if failed else 0


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
        known = {"description", "space", "root", "seed", "in_shape", "num_classes",
                 "shard_size", "splits"}
        unknown = sorted(set(recipe) - known) if isinstance(recipe, dict) else None
        if unknown is None or unknown:
            raise ValueError(f"recipe {args.recipe}: unknown keys {unknown}; a recipe holds "
                             f"{', '.join(sorted(known))}" if unknown else
                             f"recipe {args.recipe} must hold a JSON object")
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


def cmd_make_dataset(args: argparse.Namespace) -> int:
    from ..data import ArchGraphDataset

    for job in _dataset_jobs(args):
        start = time.perf_counter()
        data = ArchGraphDataset(workers=args.workers, **job)
        seconds = time.perf_counter() - start
        print(f"{job['space']}/{job['split']}: {len(data)} graphs in {data.processed_dir} "
              f"({data.bytes_per_graph() / 1024:.1f} KB per graph, {seconds:.1f} s)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``graph``, ``zoo`` and ``make-dataset`` (each with its handler)."""
    graph = sub.add_parser("graph", help="trace a model and draw its architecture graph",
                           description="Trace MODEL into an ArchGraph and draw it.")
    graph.add_argument("model", help="torchvision:NAME or package.module:factory")
    graph.add_argument("--out", required=True,
                       help="output file: .dot (Graphviz text), .png, .svg or .pdf")
    graph.add_argument("--input-shape", type=input_shape, default=None,
                       help="input shape with batch dim, e.g. 1,3,32,32 (default: 32x32 RGB, "
                            "or the model's minimum)")
    graph.add_argument("--w-bits", type=int, default=32, help="weight bits of conv/linear layers")
    graph.add_argument("--a-bits", type=int, default=32, help="input activation bits")
    graph.add_argument("--first-last-8bit", action="store_true",
                       help="keep the first and last layers at 8 bits")
    graph.add_argument("--num-classes", type=int, default=None, help="classifier size")
    graph.set_defaults(handler=cmd_graph)

    zoo = sub.add_parser("zoo", help="trace the torchvision CNN zoo and print a table of graphs")
    zoo.add_argument("--size", type=int, default=32, help="input height and width (default 32)")
    zoo.add_argument("--s-max", type=int, default=50, help="virtual edge cutoff (default 50)")
    zoo.add_argument("--models", nargs="+", default=None, metavar="NAME",
                     help="trace only these torchvision models (default: the whole zoo)")
    zoo.set_defaults(handler=cmd_zoo)

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
    data.add_argument("--in-shape", type=input_shape, help="input C,H,W (default 1,28,28)")
    data.add_argument("--num-classes", type=int, help="classifier size (default 10)")
    data.add_argument("--shard-size", type=int, help="graphs per shard file (default 1000)")
    data.add_argument("--workers", type=int, default=0, help="build processes (default 0: inline)")
    data.set_defaults(handler=cmd_make_dataset)
