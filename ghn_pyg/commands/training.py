"""Commands about GHNs: ``train``, ``eval``, ``predict``, ``demo``."""

from __future__ import annotations

import argparse

from ..train.config import add_config_arguments
from .arguments import (DEMO_BN_BATCHES, DEMO_CALIB_BATCHES, add_protocol_arguments,
                        input_shape, protocol_from_args)

__all__ = ["add_parsers", "cmd_train", "cmd_eval", "cmd_predict", "cmd_demo", "DEMO_TORCHVISION"]

DEMO_TORCHVISION = ("resnet18", "mobilenet_v2")


def cmd_train(args: argparse.Namespace) -> int:
    from ..fileio import user_path
    from ..train import Trainer, load_config, load_train_checkpoint
    from ..train.config import TrainConfig, config_from_args, given_settings, resume_config
    from ..train.distributed import barrier, teardown

    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it; "
                         "give one of them")
    base = load_config(args.config) if args.config else {}
    if args.resume:  # the run's own settings, changed only where a resumed run may change
        changes = {**base, **given_settings(args)}
        out = user_path(changes.get("out", TrainConfig.out))
        saved = load_train_checkpoint(out / "last.pt")["config"]
        config = resume_config(saved, changes, str(out / "last.pt"))
    else:
        config = config_from_args(args, base)
    try:
        trainer = Trainer(config, resume=args.resume, overwrite=args.overwrite)
        metrics = trainer.train()
        # Every rank finishes before any leaves: a rank tearing its gloo connections down
        # while a peer still uses them aborts the peer at exit. Then the DDP wrapper goes,
        # so that the process group really closes here and not at interpreter exit.
        barrier(trainer.world)
        trainer.close()
    finally:
        teardown()
    if trainer.rank == 0:
        print("finished: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in metrics.items()))
    return 0


def _checkpoint_settings(path: str) -> dict:
    """The training settings stored in a training checkpoint ({} for a plain GHN file)."""
    from ..formats import CheckpointError
    from ..train import load_train_checkpoint

    try:
        return load_train_checkpoint(path)["config"]
    except CheckpointError:
        return {}


#: ``eval`` flags that fall back on the first checkpoint's training setting, then a default.
_EVAL_FALLBACKS: dict[str, tuple[str, object]] = {
    "in_shape": ("in_shape", (1, 28, 28)), "space": ("space", "efficient"),
    "graphs": ("graphs", "graphs/efficient-fmnist"), "graph_seed": ("graph_seed", 0),
    "num_classes": ("num_classes", 10), "data": ("data", "fashion-mnist"),
    "data_root": ("data_root", None)}


def _load_ghns(checkpoints: list[str]) -> tuple[dict, dict]:
    """``{name: GHN}`` and ``{name: training settings}`` of ``--ckpt [NAME=]PATH`` items."""
    from ..nn import GHN

    ghns, trained = {}, {}
    for i, item in enumerate(checkpoints):
        name, sep, path = item.partition("=")
        if not sep:
            name, path = ("GHN" if len(checkpoints) == 1 else f"GHN{i + 1}"), item
        ghns[name] = GHN.load_any(path)
        trained[name] = _checkpoint_settings(path)
    return ghns, trained


def _with_training_defaults(args: argparse.Namespace, trained: dict) -> argparse.Namespace:
    """A copy of ``args`` whose unset :data:`_EVAL_FALLBACKS` flags take ``trained``'s
    settings, else the defaults."""
    out = argparse.Namespace(**vars(args))
    for flag, (key, default) in _EVAL_FALLBACKS.items():
        if getattr(args, flag) is None:
            setattr(out, flag, trained.get(key, default))
    out.in_shape = tuple(out.in_shape)
    return out


def _warn_about_settings(ghns: dict, bits: list[int], space: str, trained: dict) -> None:
    """Warn when bits or the space differ from what the GHNs were trained with."""
    import warnings

    for name, ghn in ghns.items():
        unseen = sorted(set(bits) - set(ghn.trained_bits or bits))
        if unseen:
            warnings.warn(f"{name} was trained with bits {list(ghn.trained_bits)}; evaluating "
                          f"{unseen}: it predicts as for the nearest trained bit-width, and "
                          "those parameters are quantized")
    if trained and space != trained.get("space"):
        warnings.warn(f"evaluating on space {space!r}; the GHN was trained on "
                      f"{trained.get('space')!r}")


def cmd_eval(args: argparse.Namespace) -> int:
    from ..data import ArchGraphDataset, first_items, load_images
    from ..machine import compute_signature
    from ..train.evaluate import evaluate_split
    from ..train.tables import markdown_summary, write_results

    ghns, trained = _load_ghns(args.ckpt)
    first = next(iter(trained.values()))
    opts = _with_training_defaults(args, first)
    bits = [int(b) for b in args.bits.split(",")]
    _warn_about_settings(ghns, bits, opts.space, first)
    archs = ArchGraphDataset(opts.graphs, opts.space, args.split, args.size, opts.graph_seed,
                             opts.in_shape, opts.num_classes)
    images = load_images(opts.data, "test", opts.data_root, synthetic_shape=opts.in_shape)
    if tuple(images.shape) != opts.in_shape:
        raise ValueError(f"test images are {images.shape}, architectures take {opts.in_shape}")
    protocol = protocol_from_args(args)
    train_images = None
    if args.sgd_epochs > 0 or protocol.needs_training_images:
        train_images = first_items(load_images(opts.data, "train", opts.data_root,
                                               synthetic_shape=opts.in_shape),
                                   args.max_train_images)
    rows = evaluate_split(archs, images, ghns, bits, args.baselines.split(","), args.max_archs,
                          args.max_images, args.batch_size, args.seed, args.device,
                          sgd_epochs=args.sgd_epochs, train_images=train_images,
                          protocol=protocol, per_channel=not args.per_tensor,
                          first_last_8bit=args.first_last_8bit)
    title = (f"{opts.space}/{args.split}: {len({r.arch for r in rows})} architectures, top-1 "
             f"(%); {protocol.describe()}; computed on {compute_signature(args.device)}")
    paths = write_results(rows, args.out, title)
    print(title)
    print(markdown_summary(rows))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from ..fileio import atomic_path
    from ..nn import GHN
    from ..quant import QuantSpec
    from .networks import network_from_args

    settings = _checkpoint_settings(args.ckpt)
    ghn = GHN.load_any(args.ckpt)
    in_shape = tuple(settings.get("in_shape", (3, 32, 32)))
    shape = args.input_shape or (1, *in_shape)
    classes = args.num_classes or settings.get("num_classes", 10)
    model = network_from_args(args.model, args.spec, shape, classes,
                              adapt=args.input_shape is None)
    spec_bits = QuantSpec.uniform(args.bits, first_last_8bit=args.first_last_8bit)
    params = ghn.predict(model, shape, spec_bits)
    with atomic_path(args.out) as tmp:
        torch.save(params, tmp)
    total = sum(p.numel() for p in params.values())
    print(f"predicted {len(params)} tensors ({total} parameters) at {args.bits} bits -> {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..data import load_images, split_models
    from ..machine import compute_signature
    from ..nn import GHN
    from ..spaces import TorchvisionSpace
    from ..graph.bits import EVAL_BITS
    from ..train.evaluate import ModuleArchs, evaluate_split
    from ..train.tables import markdown_summary, write_results

    ghns = {"GHN (float)": GHN.from_pretrained("ghn-fmnist"),
            "GHN-QAT": GHN.from_pretrained("ghn-qat-fmnist")}
    images = load_images("fashion-mnist", "test", args.data_root)
    zoo = TorchvisionSpace()
    models = split_models(args.archs, 1, 10)
    names = DEMO_TORCHVISION if args.torchvision is None else tuple(args.torchvision)
    models += [(name, zoo.build({"space": "torchvision", "name": name}, 1, 10)) for name in names]
    archs = ModuleArchs(models, (1, 28, 28))
    protocol = protocol_from_args(args)
    train_images = load_images("fashion-mnist", "train", args.data_root)
    rows = evaluate_split(archs, images, ghns, EVAL_BITS, ("he",), max_images=args.max_images,
                          train_images=train_images, protocol=protocol,
                          per_channel=not args.per_tensor, first_last_8bit=args.first_last_8bit)
    unseen = [r for r in rows if r.arch.startswith("efficient-test")]
    title = (f"{args.archs} unseen efficient test architectures, Fashion-MNIST "
             f"(the first {min(args.max_images, len(images))} of {len(images)} test images), "
             f"top-1 % (mean ± standard error); {protocol.describe()}; computed on "
             f"{compute_signature('cpu')}")
    paths = write_results(unseen, args.out, title,
                          plot_title=f"{args.archs} unseen efficient test architectures, "
                                     f"protocol {protocol.name}")
    print(title)
    print(markdown_summary(unseen))
    for name in names:
        print(f"\n{name} (1x28x28, 10 classes), top-1 %")
        print(markdown_summary([r for r in rows if r.arch == name]))
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``train``, ``eval``, ``demo`` and ``predict`` (each with its handler)."""
    train = sub.add_parser(
        "train", help="train a GHN (float) or finetune it with quantization (GHN-QAT)",
        description="Train a GHN. Settings: defaults < --config FILE (JSON/YAML) < flags. "
                    "Float pretraining unless --bits is given (e.g. --bits 8,4,2 for GHN-QAT, "
                    "usually with --init-ckpt of a float run). Under torchrun it trains with DDP.")
    train.add_argument("--config", help="JSON or YAML file of settings")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUT/last.pt exactly, with its saved settings (only "
                            "steps, lr, logging, checkpoint cadence, device and paths may be "
                            "given anew)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run in OUT (its files are moved to OUT/replaced-TIME/)")
    add_config_arguments(train)
    train.set_defaults(handler=cmd_train)

    evaluate = sub.add_parser(
        "eval", help="accuracy of GHN-predicted vs random parameters per bit-width",
        description="Evaluate every architecture of a split on the test images: the GHNs' "
                    "predictions and random initializations, at each bit-width, under an "
                    "evaluation protocol (default calibrated: BN statistics and activation ranges "
                    "fixed on training images; ghn2: per-test-batch statistics and ranges). "
                    "Writes results.csv, summary.md and accuracy_vs_bits.png.")
    evaluate.add_argument("--ckpt", action="append", required=True, metavar="[NAME=]PATH",
                          help="GHN or training checkpoint, or a shipped name (ghn-fmnist, "
                               "ghn-qat-fmnist); repeat for several (e.g. GHN=a.pt GHN-QAT=b.pt)")
    evaluate.add_argument("--graphs", help="architecture dataset root (default: the checkpoint's)")
    evaluate.add_argument("--space", help="architecture space (default: the checkpoint's)")
    evaluate.add_argument("--split", default="test", help="architecture split (default test)")
    evaluate.add_argument("--size", type=int, default=500, help="split size (default 500)")
    evaluate.add_argument("--graph-seed", type=int, default=None, help="architecture seed")
    evaluate.add_argument("--in-shape", type=input_shape, default=None, help="C,H,W")
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
    add_protocol_arguments(evaluate)
    evaluate.add_argument("--max-archs", type=int, default=None)
    evaluate.add_argument("--max-images", type=int, default=None)
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--out", default="results/eval", help="output folder")
    evaluate.set_defaults(handler=cmd_eval)

    demo = sub.add_parser(
        "demo", help="the main job: shipped GHN and GHN-QAT vs random init on Fashion-MNIST",
        description="Predict parameters with the shipped float GHN and GHN-QAT for unseen test "
                    "architectures of the efficient space and for resnet18 and mobilenet_v2 "
                    "(1x28x28, 10 classes); evaluate on Fashion-MNIST test images at 32, 8, 4 "
                    "and 2 bits against He-initialised networks under the calibrated protocol "
                    "(fewer calibration batches than the results tables).")
    demo.add_argument("--archs", type=int, default=10, help="unseen efficient architectures")
    demo.add_argument("--max-images", type=int, default=1000,
                      help="test images per evaluation (the results tables use all 10,000)")
    add_protocol_arguments(demo, bn_batches=DEMO_BN_BATCHES, calib_batches=DEMO_CALIB_BATCHES)
    demo.add_argument("--data-root", default=None, help="Fashion-MNIST folder")
    demo.add_argument("--torchvision", nargs="*", default=None, metavar="NAME",
                      help="torchvision models to add (default resnet18 mobilenet_v2)")
    demo.add_argument("--out", default="results/demo", help="output folder")
    demo.set_defaults(handler=cmd_demo)

    predict = sub.add_parser("predict", help="predict the parameters of one network",
                             description="Predict all parameters of a network with a GHN.")
    predict.add_argument("--ckpt", required=True,
                         help="GHN or training checkpoint, or a shipped name (ghn-qat-fmnist)")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="torchvision:NAME or package.module:factory")
    source.add_argument("--spec", help="JSON file of an architecture-space spec")
    predict.add_argument("--bits", type=int, default=32, help="bits of every conv/linear layer")
    predict.add_argument("--first-last-8bit", action="store_true")
    predict.add_argument("--input-shape", type=input_shape, default=None,
                         help="1,C,H,W (default: the checkpoint's training input)")
    predict.add_argument("--num-classes", type=int, default=None)
    predict.add_argument("--out", required=True, help="output .pt file of {name: tensor}")
    predict.set_defaults(handler=cmd_predict)
