"""``TrainConfig``: every setting of a GHN training run, loadable from JSON or YAML."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..data.images import IMAGE_DATASETS
from ..fileio import user_path
from ..graph.bits import VALID_BITS

__all__ = ["TrainConfig", "load_config", "add_config_arguments", "config_from_args",
           "given_settings", "resume_config", "init_ghn_settings", "GHN_SETTINGS", "RESUMABLE",
           "LEGACY_SETTINGS", "HELP"]

#: What a run saved before these settings existed was trained with.
LEGACY_SETTINGS: dict[str, Any] = {"bit_weights": [], "seed_bits": False,
                                   "collapse_guard": False, "net_grad_clip": 0.0,
                                   "range_images": 0, "train_bn": "batch",
                                   "act_noise": 0.0}

#: Settings a resumed run may change; every other one must match the checkpoint's.
#: ``meta_batch`` only with the number of processes, so that the networks per step
#: (``meta_batch`` x processes) stay the same (checked by the trainer).
RESUMABLE: tuple[str, ...] = ("steps", "lr", "log_every", "ckpt_every", "max_nan", "device",
                              "workers", "out", "graphs", "data_root", "init_ckpt",
                              "net_threads", "runner_cache", "mix_graphs", "eval_every",
                              "eval_archs", "eval_images", "eval_bits", "time_limit",
                              "meta_batch")


@dataclass
class TrainConfig:
    """Settings of ``ghn-pyg train`` (each is also a ``--flag``).

    Architecture data: ``graphs`` (root of an ArchGraphDataset), ``space``, ``split``,
    ``num_archs`` (its size), ``graph_seed``; ``mix_graphs`` (more existing datasets,
    e.g. of other spaces, trained on too) and ``mix_weights`` (sampling weight of each
    dataset; default their sizes). Images: ``data`` (fashion-mnist, cifar10,
    synthetic), ``data_root``, ``batch_size``, ``augment``, ``val_seed`` (the seed of the
    split of the training images into training and validation images: fixed across runs
    and phases, independent of ``seed``, so a run never validates on images its
    ``init_ckpt`` trained on). GHN: ``hid``, ``gnn``, ``T``,
    ``s_max``, ``max_shape``, ``message_relu``, ``bias_range``, ``bias_slope``,
    ``norm_slope`` (see :class:`~ghn_pyg.nn.GHN`; from the command line they default to
    ``init_ckpt``'s, :func:`init_ghn_settings`). Optimisation: ``meta_batch`` networks per step,
    ``steps``, ``lr``, ``weight_decay``, ``optimizer`` (adam, adamw), ``schedule``
    (cosine, step), ``warmup`` steps, ``grad_clip``, ``net_grad_clip`` (per network, on
    the gradient of its predicted parameters; 0 disables). Quantization: ``bits`` drawn
    per network and step (empty for float pretraining; 32 draws a float network),
    ``bit_weights`` (their sampling weights, empty for uniform), ``mixed`` (per layer
    instead), ``first_last_8bit``, ``collapse_guard`` (no gradient through batch-norm
    channels that quantization collapsed to a constant), ``range_images`` (activation
    ranges calibrated each step on that many other training images; 0: each batch's
    own range), ``train_bn`` (``"batch"``: networks normalise with each training batch's
    statistics; ``"calibrated"``: each step, as the calibrated evaluation protocol deploys
    them in its default ``float-first`` order, BN statistics are estimated on the
    ``range_images`` images with float activations, the ranges are calibrated and frozen,
    BN is estimated again under them, and the training batch is normalised with those
    statistics; ``"calibrated-quantized-bn"``: the same in the ``quantized-bn`` order, which
    ``"calibrated"`` meant before 2026-12-05),
    ``act_noise`` (weight of a penalty on the quantization-noise share of quantized
    networks' activations, :meth:`~ghn_pyg.quant.QuantizedModel.activation_noise`, added
    to each such network's loss; 0: off);
    ``init_ckpt`` starts from a
    float GHN, whose untrained bit embeddings start as copies of its nearest trained
    one with ``seed_bits``. Run: ``out`` folder,
    ``ckpt_every`` steps, ``seed``, ``device`` (auto, cpu, cuda), ``amp`` (bfloat16 autocast),
    ``max_nan`` consecutive non-finite losses before aborting, ``log_every``;
    ``workers`` builds the architecture dataset in that many processes if it is missing;
    ``net_threads`` runs the networks of a meta-batch concurrently in that many threads,
    each op on one thread (0: as many as torch's intra-op threads on the CPU, 1 on an
    accelerator; 1: one after another, each op on all intra-op threads);
    ``runner_cache`` keeps the traced runners of the first that many architectures drawn
    for the whole run (without their own parameters, which the GHN's replace), so those
    are not traced again when drawn again. Learning curve: every ``eval_every``
    steps (0: never) and at the end, the accuracy of the GHN's predictions for the first
    ``eval_archs`` validation architectures of each training space, on ``eval_images``
    validation images, at ``eval_bits``, goes to ``metrics.csv`` (``val_*`` columns) and
    ``learning_curve.png``. ``time_limit`` (minutes, 0: none) stops the run, with a
    checkpoint, after the first step that ends past it (``--resume`` continues).
    """

    graphs: str = "graphs/efficient-fmnist"
    space: str = "efficient"
    split: str = "train"
    num_archs: int = 100000
    graph_seed: int = 0
    mix_graphs: tuple[str, ...] = ()
    mix_weights: tuple[float, ...] = ()
    in_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    data: str = "fashion-mnist"
    data_root: str | None = None
    batch_size: int = 64
    augment: bool = False
    val_seed: int = 0
    hid: int = 32
    gnn: str = "gatedgnn"
    T: int = 1
    s_max: int = 50
    max_shape: tuple[int, int, int, int] = (64, 64, 11, 11)
    message_relu: bool = False
    bias_range: float = 0.1
    bias_slope: float = 1.0
    norm_slope: float = 1.0
    meta_batch: int = 8
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-5
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup: int = 50
    grad_clip: float = 5.0
    bits: tuple[int, ...] = ()
    bit_weights: tuple[float, ...] = ()
    mixed: bool = False
    first_last_8bit: bool = False
    init_ckpt: str | None = None
    seed_bits: bool = True
    collapse_guard: bool = True
    net_grad_clip: float = 5.0
    range_images: int = 0
    train_bn: str = "batch"
    act_noise: float = 0.0
    out: str = "runs/ghn"
    ckpt_every: int = 200
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    max_nan: int = 5
    log_every: int = 10
    workers: int = 0
    net_threads: int = 0
    runner_cache: int = 10000
    eval_every: int = 0
    eval_archs: int = 8
    eval_images: int = 500
    eval_bits: tuple[int, ...] = (32, 4)
    time_limit: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _checked(f.name, str(f.type), getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        """Check settings before any long work starts.

        Raises:
            ValueError: naming the setting and the allowed values.
        """
        if self.data not in IMAGE_DATASETS:
            raise ValueError(f"data: unknown image dataset {self.data!r}; use one of "
                             f"{', '.join(IMAGE_DATASETS)}")
        bad = [b for b in self.bits if b not in VALID_BITS]
        if bad:
            raise ValueError(f"bits: {bad} not allowed; use 2..8, 16 or 32 (empty for float "
                             "training)")
        bad = [b for b in self.eval_bits if b not in VALID_BITS]
        if bad or not self.eval_bits:
            raise ValueError(f"eval_bits: {list(self.eval_bits)} must be bit-widths of 2..8, 16 "
                             "or 32, at least one")
        if len(set(self.bits)) != len(self.bits):
            raise ValueError(f"bits: {list(self.bits)} repeats a bit-width; give each once "
                             "(use bit_weights to draw one more often)")
        if self.bit_weights and (len(self.bit_weights) != len(self.bits)
                                 or min(self.bit_weights) < 0 or sum(self.bit_weights) <= 0):
            raise ValueError(f"bit_weights: {list(self.bit_weights)} must be one non-negative "
                             f"weight per bit-width of {list(self.bits)}, not all zero")
        if self.mix_weights and (len(self.mix_weights) != 1 + len(self.mix_graphs)
                                 or min(self.mix_weights) < 0 or sum(self.mix_weights) <= 0):
            raise ValueError(f"mix_weights: {list(self.mix_weights)} must be one non-negative "
                             f"weight for graphs and one per mix_graphs root "
                             f"({1 + len(self.mix_graphs)} in all), not all zero")
        if self.net_grad_clip < 0 or self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 and net_grad_clip >= 0, got "
                             f"{self.grad_clip} and {self.net_grad_clip}")
        choices = {"optimizer": ("adam", "adamw"), "schedule": ("cosine", "step"),
                   "device": ("auto", "cpu", "cuda"),
                   "train_bn": ("batch", "calibrated", "calibrated-quantized-bn")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed and not (key == "device"
                                                           and str(self.device).startswith("cuda:")):
                raise ValueError(f"{key}: {getattr(self, key)!r} not one of {', '.join(allowed)}")
        positive = ("batch_size", "meta_batch", "steps", "ckpt_every", "hid", "T", "s_max",
                    "max_nan", "log_every", "num_archs", "eval_archs", "eval_images")
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("warmup", "workers", "range_images", "net_threads", "runner_cache",
                    "eval_every"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        for key in ("bias_range", "bias_slope", "norm_slope"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        if not self.act_noise >= 0:
            raise ValueError(f"act_noise must be >= 0 (0: off), got {self.act_noise}")
        if self.act_noise > 0 and not any(b < 32 for b in self.bits):
            raise ValueError("act_noise penalises quantized activations, but no bit-width "
                             f"below 32 is drawn (bits {list(self.bits)}): set --bits, e.g. "
                             "32:1,8:1,4:2,2:1")
        if self.train_bn != "batch" and self.range_images < 1:
            raise ValueError(f"train_bn {self.train_bn!r} estimates BN statistics and activation "
                             "ranges on range_images images each step: set range_images >= 1, "
                             "e.g. 128")
        if not self.time_limit >= 0:
            raise ValueError(f"time_limit must be >= 0 minutes (0: none), got {self.time_limit}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {self.lr} and "
                             f"{self.weight_decay}")
        if len(self.in_shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W), got {self.in_shape}")

    @property
    def quantized(self) -> bool:
        """Whether this is GHN-QAT (quantized bits drawn per step) rather than float training."""
        return any(b < 32 for b in self.bits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> "TrainConfig":
        """Settings saved with a run; keys it predates take :data:`LEGACY_SETTINGS`, and
        ``val_seed`` its ``seed`` (the images were split with the run's seed before)."""
        return cls.from_dict({**LEGACY_SETTINGS, "val_seed": data.get("seed", 0), **data})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a dict, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)


def _checked(name: str, kind: str, value: Any) -> Any:
    """``value`` as the type ``kind`` (a dataclass annotation) says, or a ValueError
    naming the setting: integers must be integers (``2.7`` or ``"2"`` are refused, a
    numpy integer is fine), booleans booleans (``"false"`` is refused), sequences lists."""
    optional = kind.endswith("| None")
    if value is None and optional:
        return None
    base = kind.removesuffix("| None").strip()
    if base.startswith("tuple["):
        item = base[len("tuple["):].split(",")[0].rstrip("]").strip()
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ValueError(f"{name}: expected a list of {item} values, got {value!r}")
        return tuple(_checked(f"{name}[{i}]", item, v) for i, v in enumerate(value))
    if base == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name}: expected true or false, got {value!r}")
        return bool(value)
    if base == "int":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if base == "float":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if base == "str" and not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value


def load_config(path: str | Path) -> dict[str, Any]:
    """Read settings from a ``.json`` or ``.yaml``/``.yml`` file.

    Raises:
        ValueError: unreadable file, YAML without PyYAML installed, or not a mapping.
    """
    path = user_path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"cannot read config {path}: {err}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: YAML configs need PyYAML (pip install pyyaml), or use JSON") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of settings")
    return data


#: ``--help`` text of every setting.
HELP: dict[str, str] = {
    "graphs": "root folder of the architecture-graph dataset (built if missing)",
    "mix_graphs": "more architecture datasets to train on (roots built with ghn-pyg "
                  "make-dataset, e.g. of other spaces; their train split)",
    "mix_weights": "sampling weight of graphs, then of each mix_graphs root (default: "
                   "their sizes, every architecture equally likely)",
    "space": "architecture space of the dataset", "split": "architecture split to train on",
    "num_archs": "number of training architectures", "graph_seed": "seed of the architectures",
    "in_shape": "input C,H,W of the networks", "num_classes": "classifier size",
    "data": f"image dataset: {', '.join(IMAGE_DATASETS)}", "data_root": "image data folder",
    "batch_size": "images per step (shared by all networks of the step)",
    "augment": "random crop and flip of training images",
    "val_seed": "seed of the split of the training images into training and validation "
    "images (keep it across runs: an --init-ckpt run must not validate on images its start "
    "trained on)",
    "hid": "GHN node embedding size", "gnn": "GNN layer (gatedgnn, ggnn, gatv2, transformer, "
    "gine or package.module:Class)", "T": "GNN rounds", "s_max": "virtual edge cutoff",
    "max_shape": "weight decoder's out,in,kh,kw",
    "message_relu": "GatedGNN message MLPs end with a ReLU (GHN-2's reference code)",
    "bias_range": "largest predicted bias: bias = bias_range * tanh(bias_slope * p) "
    "(0.1 here, 1 in GHN-2's reference code)",
    "bias_slope": "see bias_range (1 here, 0.2 in GHN-2's reference code)",
    "norm_slope": "norm weights = 2 sigmoid(norm_slope * p) (1 here, 0.5 in GHN-2's "
    "reference code)", "meta_batch": "networks per step (per rank)",
    "steps": "training steps", "lr": "peak learning rate", "weight_decay": "weight decay",
    "optimizer": "adam or adamw", "schedule": "cosine or step (x0.1 at 1/3 and 2/3)",
    "warmup": "linear warm-up steps", "grad_clip": "gradient norm clip",
    "bits": "GHN-QAT: bit-widths drawn per network and step, e.g. 8,4,2 or with sampling "
    "weights 32:1,8:1,4:2,2:1 (32 is float; empty: float training)",
    "bit_weights": "sampling weights of --bits, e.g. 1,1,2,1 (empty: uniform)",
    "seed_bits": "start the bit embeddings init_ckpt never trained as copies of its nearest "
    "trained one, so step 0 predicts what init_ckpt predicts",
    "collapse_guard": "no gradient through batch-norm channels that quantization collapsed "
    "to a constant (they multiply it by up to 1/sqrt(eps))",
    "range_images": "GHN-QAT: calibrate activation ranges each step on this many other "
    "training images (min/max, like the calibrated evaluation) instead of each batch's own "
    "range (0)",
    "train_bn": "batch: normalise each training batch with its own statistics; calibrated: "
    "each step, deploy the networks on the --range-images images as the calibrated "
    "evaluation does (float-first order: BN statistics, ranges calibrated and frozen, BN "
    "again) and normalise with those statistics; calibrated-quantized-bn: the same in the "
    "quantized-bn order (what calibrated meant before 2026-12-05)",
    "act_noise": "GHN-QAT: add this weight times the mean share of quantization noise in the "
    "power of each quantized layer's input channels to each quantized network's loss "
    "(0: off)",
    "net_grad_clip": "clip each network's gradient w.r.t. its predicted parameters to this "
    "norm before it reaches the GHN, so no single network dominates a step (default 5; 0: "
    "off)",
    "mixed": "draw bits per layer instead of per network",
    "first_last_8bit": "keep first and last layers at 8 bits",
    "init_ckpt": "start from this GHN (a GHN file or training checkpoint, e.g. a float one for "
                 "GHN-QAT); --hid, --gnn and the other GHN settings default to its",
    "out": "run folder: last.pt, metrics.csv, config.json",
    "ckpt_every": "checkpoint every N steps", "seed": "seed of architectures, images and bits",
    "device": "auto, cpu or cuda",
    "amp": "bfloat16 autocast on the training device (for CUDA; slower on most CPUs)",
    "max_nan": "abort after this many consecutive non-finite losses",
    "log_every": "write metrics every N steps",
    "workers": "processes that build the architecture dataset if missing",
    "net_threads": "run the networks of a meta-batch concurrently in this many threads, each "
                   "op single-threaded (0: torch's intra-op thread count on the CPU, 1 on a GPU; "
                   "1: one after another)",
    "eval_every": "learning curve: evaluate on validation architectures and images every N "
                  "steps and at the end (0: never)",
    "eval_archs": "learning curve: validation architectures per training space",
    "eval_images": "learning curve: validation images counted",
    "eval_bits": "learning curve: bit-widths (32 is float)",
    "time_limit": "stop after the first step that ends past this many minutes, with a "
                  "checkpoint (0: no limit; --resume continues)",
    "runner_cache": "the first N architectures drawn keep their traced runners for the "
                    "run (0: none; about 0.7 MB each for efficient networks, per process)",
}


def _str_tuple(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _float_tuple(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _bits_with_weights(text: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``"8,4,2"`` or ``"32:1,8:1,4:2,2:1"`` -> (bits, weights; empty weights if none given)."""
    if text.strip() in ("", "none", "float"):
        return (), ()
    items = [t.strip() for t in text.split(",")]
    if not any(":" in t for t in items):
        try:
            return tuple(int(t) for t in items), ()
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of bit-widths, e.g. 8,4,2") from None
    try:
        pairs = [t.split(":") for t in items]
        if any(len(p) != 2 for p in pairs):
            raise ValueError
        return tuple(int(b) for b, _ in pairs), tuple(float(w) for _, w in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give every bit-width a weight, e.g. 32:1,8:1,4:2,2:1") from None


def _int_tuple(text: str) -> tuple[int, ...]:
    text = text.strip()
    if text in ("", "none", "float"):
        return ()
    try:
        return tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`TrainConfig` field (default None: keep the config's)."""
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        help_text = HELP.get(f.name, "")
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif f.name == "bits":
            parser.add_argument(flag, type=_bits_with_weights, default=None,
                                metavar="B,B,... or B:W,B:W,...", help=help_text)
        elif kind.startswith("tuple[str"):
            parser.add_argument(flag, type=_str_tuple, default=None, metavar="A,B,...",
                                help=help_text)
        elif kind.startswith("tuple[float"):
            parser.add_argument(flag, type=_float_tuple, default=None, metavar="A,B,...",
                                help=help_text)
        elif kind.startswith("tuple"):
            parser.add_argument(flag, type=_int_tuple, default=None, metavar="A,B,...",
                                help=help_text)
        elif kind == "int":
            parser.add_argument(flag, type=int, default=None, help=help_text)
        elif kind == "float":
            parser.add_argument(flag, type=float, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=str, default=None, help=help_text)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings whose flags were given (``--bits B:W,...`` sets ``bit_weights`` too)."""
    settings: dict[str, Any] = {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "bits":
            value, settings["bit_weights"] = value  # --bit-weights, later, may override
        settings[f.name] = value
    return settings


#: The settings that shape the GHN (its constructor's arguments).
GHN_SETTINGS: tuple[str, ...] = ("hid", "gnn", "T", "s_max", "max_shape", "message_relu",
                                 "bias_range", "bias_slope", "norm_slope")


def init_ghn_settings(checkpoint: str | Path) -> dict[str, Any]:
    """The :data:`GHN_SETTINGS` of the GHN in ``checkpoint`` (a GHN file or a training
    checkpoint), so that a run started from it builds a GHN it loads into.

    Raises:
        CheckpointError: the file is missing, unreadable or holds no GHN.
    """
    from ..formats import ghn_payload
    from ..nn.ghn import GHN

    config = {**GHN.defaults(), **ghn_payload(checkpoint)["config"]}
    return {name: config[name] for name in GHN_SETTINGS}


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the GHN settings of ``init_ckpt`` when there is one (a run started
    from a checkpoint builds a GHN like it unless told otherwise), then ``base`` (a
    config file), then the flags that were given.

    Raises:
        CheckpointError: ``init_ckpt`` is not a readable checkpoint with a GHN.
    """
    settings = {**(base or {}), **given_settings(args)}
    start = settings.get("init_ckpt")
    return TrainConfig.from_dict({**(init_ghn_settings(start) if start else {}), **settings})


def resume_config(saved: dict[str, Any], changes: dict[str, Any], source: str = "the run") -> TrainConfig:
    """The settings of a resumed run: the checkpoint's ``saved`` ones, with ``changes``
    (a config file's and the given flags') applied where :data:`RESUMABLE` allows.
    ``time_limit`` belongs to one sitting, not to the run: it is 0 unless given again.

    Raises:
        ValueError: ``changes`` alter a setting that must stay as it was (names each,
            with the checkpoint's and the given value), or are invalid.
    """
    before = TrainConfig.from_saved(saved).to_dict()
    after = TrainConfig.from_saved({**saved, "time_limit": 0.0, **changes}).to_dict()
    fixed = [f"{k}: checkpoint {before[k]!r}, given {after[k]!r}" for k in after
             if k not in RESUMABLE and after[k] != before[k]]
    if fixed:
        raise ValueError(f"cannot change settings when resuming {source} ({'; '.join(fixed)}); "
                         f"only {', '.join(RESUMABLE)} may change, or start a new run")
    return TrainConfig.from_dict(after)
