"""``Trainer``: float GHN pretraining and GHN-QAT finetuning, on one process or with DDP."""

from __future__ import annotations

import csv
import gc
import json
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from ..data.archgraph_dataset import ArchGraphDataset
from ..data.images import load_images
from ..data.mixture import ArchMixture
from ..fileio import atomic_path, user_path
from ..graph.archgraph import ArchGraph
from ..graph.bits import FLOAT_BITS
from ..formats import TRAIN_FORMAT, TRAIN_VERSION, CheckpointError, read_checkpoint
from ..nn.ghn import GHN
from ..quant.runner import QuantizedModel, quantize
from . import distributed
from .config import GHN_SETTINGS, TrainConfig
from .curve import LearningCurve, plot_curve
from .parallel import NetworkPool, resolve_net_threads
from .protocol import EvalProtocol
from .sampling import ArchSampler, ImageBatcher, MixtureSampler, draw_bits, network_bits

__all__ = ["Trainer", "NonFiniteLossError", "RunExistsError", "TRAIN_FORMAT",
           "load_train_checkpoint", "RUN_FILES"]

#: The files of a run folder (``tensorboard`` is a folder).
RUN_FILES: tuple[str, ...] = ("last.pt", "metrics.csv", "config.json", "tensorboard")


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps had a NaN or infinite loss."""


class RunExistsError(FileExistsError):
    """A new run was asked for in a folder that already holds one."""


def load_train_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint written by :class:`Trainer`.

    Raises:
        CheckpointError: missing, corrupted or not a training checkpoint.
    """
    return read_checkpoint(path, (TRAIN_FORMAT,))


class Trainer:
    """Trains a GHN on an architecture-graph dataset and an image dataset.

    One step: ``meta_batch`` architectures and one shared image batch; the GHN predicts
    all their parameters in one batched forward; each network runs fake-quantized at
    the bits of its graph (float when ``config.bits`` is empty, else bits drawn per
    network, or per layer with ``mixed``); the mean cross-entropy backpropagates into
    the GHN; gradients are clipped and the optimizer steps.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the GHN is wrapped in DDP (NCCL with a GPU
    per rank; gloo on the CPU and for ranks sharing GPUs); ranks draw disjoint
    architectures and image batches; only rank 0 writes checkpoints and logs.

    Args:
        config: the settings.
        resume: continue from ``config.out/last.pt`` exactly where it stopped (the
            settings that shape the run must match the checkpoint's; ``steps``, ``lr``
            and the logging ones may change, and the learning-rate schedule follows;
            ``meta_batch`` may change with the number of processes when their product,
            the networks per step, stays: e.g. 8 x 1 to 1 x 8 ranks sharing a GPU).
        overwrite: start a new run in a folder that holds one; its files are moved to
            ``out/replaced-TIME/``, not deleted.

    Raises:
        RunExistsError: ``out`` holds a run and neither ``resume`` nor ``overwrite``.
        ValueError: inconsistent settings (image size vs architecture input, ...).
        CheckpointError: an unusable ``init_ckpt`` or resume checkpoint, or resuming
            with other settings (checked before any dataset is built).
    """

    def __init__(self, config: TrainConfig, resume: bool = False, overwrite: bool = False) -> None:
        self.config = cfg = config
        self.rank, self.world = distributed.setup(cfg.device)
        torch.manual_seed(cfg.seed)  # the same GHN initialisation on every rank
        self.device = distributed.device_for(cfg.device, self.rank)
        self.out = user_path(cfg.out)
        saved = self._read_resume_state() if resume else None
        if not resume:
            self._claim_run_folder(overwrite)
        self.images = load_images(cfg.data, "train", cfg.data_root, seed=cfg.val_seed,
                                  augment=cfg.augment, synthetic_shape=cfg.in_shape)
        if tuple(self.images.shape) != tuple(cfg.in_shape):
            raise ValueError(f"{cfg.data} images are {self.images.shape} but the architectures "
                             f"are built for in_shape {tuple(cfg.in_shape)}; use a matching "
                             "architecture dataset (in_shape) or image dataset")
        if self.images.num_classes > cfg.num_classes:
            raise ValueError(f"{cfg.data} has {self.images.num_classes} classes but the "
                             f"architectures have {cfg.num_classes} outputs")
        self.archs = self._open_archs()
        self.ghn = GHN(**{name: getattr(cfg, name) for name in GHN_SETTINGS}).to(self.device)
        if cfg.init_ckpt:
            self._check_init_ckpt(cfg.init_ckpt)
            self.ghn.load_weights(cfg.init_ckpt)
            if self.ghn.trained_bits is None:  # a legacy checkpoint: float-trained
                self.ghn.set_trained_bits((FLOAT_BITS,))
            if cfg.seed_bits and set(self._trained_bits()) - set(self.ghn.trained_bits):
                self.ghn.seed_untrained_bits()  # rows this run starts training
        self.ghn.set_trained_bits(self._trained_bits())
        self.model = distributed.wrap(self.ghn, self.device, self.world)
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.arch_sampler = self._make_arch_sampler()
        self.image_batcher = ImageBatcher(self.images, cfg.batch_size, cfg.seed, self.rank,
                                          self.world)
        self.range_batcher = ImageBatcher(self.images, cfg.range_images, cfg.seed + 7, self.rank,
                                          self.world) if cfg.range_images else None
        # train_bn "calibrated*": the calibrated protocol's deployment, on one batch
        self._deployment = EvalProtocol(
            "calibrated", bn_batches=1, calib_batches=1, batch_size=cfg.range_images,
            calib_order="quantized-bn" if cfg.train_bn == "calibrated-quantized-bn"
            else "float-first") if cfg.train_bn != "batch" else None
        self.step = 0
        self.nan_skips = 0
        self._consecutive_nan = 0
        self._closed = False
        self._runners: dict[int, QuantizedModel] = {}
        #: Runs the per-network work of a step (``net_threads`` concurrent networks).
        self.networks = NetworkPool(resolve_net_threads(cfg.net_threads, self.device))
        #: The learning curve, evaluated by rank 0 (None without ``eval_every``).
        self.curve = self._make_curve() if cfg.eval_every and self.rank == 0 else None
        torch.manual_seed(cfg.seed + 1 + self.rank)  # augmentation differs across ranks
        if saved is not None:
            self._resume(saved)

    # ------------------------------------------------------------ setup
    def _open_archs(self) -> ArchGraphDataset | ArchMixture:
        """The training architectures: ``graphs`` (built if missing, by rank 0), mixed
        with the ``mix_graphs`` datasets when there are any."""
        cfg = self.config
        kwargs = dict(space=cfg.space, split=cfg.split, size=cfg.num_archs, seed=cfg.graph_seed,
                      in_shape=cfg.in_shape, num_classes=cfg.num_classes, s_max=cfg.s_max,
                      workers=cfg.workers)
        if self.rank == 0:
            data = ArchGraphDataset(cfg.graphs, progress=True, **kwargs)
        distributed.barrier(self.world)
        if self.rank != 0:
            data = ArchGraphDataset(cfg.graphs, progress=False, **kwargs)
        if not cfg.mix_graphs:
            return data
        return ArchMixture([data, *(ArchGraphDataset.open(root, s_max=cfg.s_max)
                                    for root in cfg.mix_graphs)], cfg.mix_weights)

    def _make_curve(self) -> LearningCurve:
        """The learning curve on the validation architectures of every training space and
        the image dataset's validation split (disjoint from the training images)."""
        cfg = self.config
        spaces = [cfg.space] + ([d.space_name for d in self.archs.datasets[1:]]
                                if isinstance(self.archs, ArchMixture) else [])
        val = load_images(cfg.data, "val", cfg.data_root, seed=cfg.val_seed,
                          synthetic_shape=cfg.in_shape)
        train = self.images if not cfg.augment else load_images(
            cfg.data, "train", cfg.data_root, seed=cfg.val_seed, synthetic_shape=cfg.in_shape)
        return LearningCurve(spaces, cfg.eval_archs, cfg.in_shape, cfg.num_classes, val, train,
                             cfg.eval_bits, cfg.eval_images, self.device)

    def _make_arch_sampler(self) -> ArchSampler | MixtureSampler:
        """Epochs over one dataset, or weighted draws from a mixture's datasets."""
        cfg = self.config
        if isinstance(self.archs, ArchMixture):
            return MixtureSampler(self.archs.sizes, self.archs.weights, cfg.meta_batch,
                                  cfg.seed, self.rank, self.world)
        return ArchSampler(len(self.archs), cfg.meta_batch, cfg.seed, self.rank, self.world)

    def _trained_bits(self) -> list[int]:
        """Bits this run shows the GHN, plus those its ``init_ckpt`` was trained with
        (a legacy checkpoint without the record counts as float-trained)."""
        cfg = self.config
        bits = set(cfg.bits) or {32}
        if cfg.first_last_8bit and cfg.bits:
            bits.add(8)
        if cfg.init_ckpt:
            bits |= set(self.ghn.trained_bits or (FLOAT_BITS,))
        return sorted(bits)

    def _check_init_ckpt(self, path: str) -> None:
        """A training checkpoint to start from must share the space and input shape, and
        should share the validation images (a warning otherwise: this run would validate
        on images the checkpoint trained on)."""
        try:
            saved = load_train_checkpoint(path)["config"]
        except CheckpointError:
            return  # a plain GHN file: load_weights checks its config
        theirs, ours = TrainConfig.from_saved(saved).to_dict(), self.config.to_dict()
        diff = [f"{k}: checkpoint {theirs[k]!r}, now {ours[k]!r}"
                for k in ("space", "in_shape", "num_classes") if theirs[k] != ours[k]]
        if diff:
            raise CheckpointError(f"{path}: trained on another architecture space or input "
                                  f"({'; '.join(diff)})")
        if theirs["data"] == ours["data"] and theirs["val_seed"] != ours["val_seed"]:
            warnings.warn(f"{path} was trained with val_seed {theirs['val_seed']}, this run "
                          f"uses {ours['val_seed']}: its validation images are partly images "
                          f"the checkpoint trained on; pass --val-seed {theirs['val_seed']}",
                          stacklevel=2)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return cls(self.ghn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return 0.1 ** int(progress * 3)  # step: x0.1 at 1/3 and 2/3 of training

    # ------------------------------------------------------------ one step
    def _runner(self, idx: int, graph: ArchGraph) -> QuantizedModel:
        """The runner of architecture ``idx``, built around its known ``graph``, its own
        parameters released (the GHN's predictions replace them).

        The first ``runner_cache`` architectures drawn keep theirs for the whole run;
        later ones are built for their step only. Steps draw architectures in epochs of
        permutations (or weighted draws from a mixture), so an architecture comes back
        only after most others have: a least-recently-used cache smaller than the set
        evicts nearly every runner before it is used again (31% hits for 8,000 kept of
        the campaign's 13,000 architectures), where keeping a fixed set hits in
        proportion to its size (67%).
        """
        runner = self._runners.get(idx)
        if runner is not None:
            return runner
        # a module of its own, made on the training device: no host copy (on a GPU, no
        # sync per tensor), and its parameters can be released
        module = self.archs.build_module(idx, device=self.device)
        runner = quantize(module, None, (1, *self.config.in_shape), bn="batch", graph=graph)
        runner.set_collapse_guard(self.config.collapse_guard).release_parameters()
        runner.set_noise_recording(self.config.act_noise > 0)
        if len(self._runners) < self.config.runner_cache:
            self._runners[idx] = runner
        return runner

    def train_step(self) -> dict[str, Any]:
        """Run step ``self.step`` and advance; returns its metrics.

        Raises:
            RuntimeError: after :meth:`close` (without DDP, ranks would drift apart).
        """
        if self._closed:
            raise RuntimeError("this Trainer is closed (Trainer.close); make a new one, "
                               "e.g. with resume=True, to train on")
        cfg = self.config
        start = time.perf_counter()
        with record_function("step: data"):
            indices = self.arch_sampler.indices(self.step)
            rng = random.Random(cfg.seed * 1_000_003 + self.step * 997 + self.rank)
            graphs = [draw_bits(self.archs[i], cfg.bits, rng, cfg.mixed, cfg.first_last_8bit,
                                cfg.bit_weights) for i in indices]
            images, labels = (t.to(self.device) for t in self.image_batcher.batch(self.step))
        with record_function("step: runners"):
            runners = [self._runner(i, g).set_bits(g) for i, g in zip(indices, graphs)]
        # bfloat16 needs no loss scaling; the GatedGNN sweep itself stays in float32
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp), \
                record_function("step: GHN forward"):
            predicted = self.model(Batch.from_data_list(graphs).to(self.device))
        calibration = (self.range_batcher.batch(self.step)[0].to(self.device)
                       if self.range_batcher is not None else None)
        outputs = self.networks.map(lambda k: self._network_forward(
            runners[k], predicted[k], images, labels, calibration), len(runners))
        logits = [out[0] for out in outputs]
        net_losses = [out[1] for out in outputs]
        cross_entropies = torch.stack([out[2] for out in outputs])
        noise = [out[3] for out in outputs if out[3] is not None]
        loss = torch.stack(net_losses).mean()
        self.optimizer.zero_grad(set_to_none=True)
        finite = distributed.all_finite(loss, self.world)
        net_norms = [float("nan")] * len(graphs)
        if finite:
            with record_function("step: backward"):
                net_norms = self._backward(predicted, net_losses)
            with record_function("step: optimizer"):
                grad_norm = float(nn.utils.clip_grad_norm_(self.ghn.parameters(), cfg.grad_clip))
                self.optimizer.step()
                self.scheduler.step()
            self._consecutive_nan = 0
        else:
            grad_norm = float("nan")
            self.nan_skips += 1
            self._consecutive_nan += 1
            if self._consecutive_nan >= cfg.max_nan:
                names = [g.name for g in graphs]
                raise NonFiniteLossError(
                    f"{self._consecutive_nan} consecutive steps had a non-finite loss (last at "
                    f"step {self.step}, architectures {names}); lower the learning rate or check "
                    "the data")
        self.step += 1
        with torch.no_grad():
            accuracy = torch.stack([(out.argmax(1) == labels).float().mean() for out in logits])
        seconds = time.perf_counter() - start
        metrics = {"step": self.step, "loss": cross_entropies.mean().item(),
                   "accuracy": accuracy.mean().item(),
                   "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                   "nan_skips": self.nan_skips, "seconds": seconds,
                   "images_per_s": len(indices) * cfg.batch_size / seconds}
        if cfg.act_noise > 0:
            metrics["act_noise"] = (torch.stack(noise).mean().item() if noise
                                    else float("nan"))
        metrics.update(_per_bits(graphs, cross_entropies.tolist(), net_norms, cfg.bits))
        return metrics

    def _network_forward(self, runner: QuantizedModel, params: dict[str, torch.Tensor],
                         images: torch.Tensor, labels: torch.Tensor,
                         calibration: torch.Tensor | None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One network's logits, loss, cross-entropy (detached) and activation-noise
        share (detached; None without ``act_noise`` or quantized activations) with its
        predicted ``params``; the loss is the cross-entropy plus ``act_noise`` times the
        share.

        With ``calibration`` images (``range_images``), a quantized network's activation
        ranges are first fixed from them (min/max, as the ``calibrated`` evaluation
        protocol does) instead of each training batch's own range. With ``train_bn``
        ``"calibrated"`` (or ``"calibrated-quantized-bn"``) every network is first set up
        as that protocol deploys it in that calibration order (:meth:`EvalProtocol.apply`:
        BN statistics estimated on them and the ranges frozen) and normalises the training
        batch with those statistics.
        """
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp):
            if calibration is not None and self._deployment is not None:
                with record_function("step: BN and range calibration"):
                    self._deployment.apply(runner, params, [calibration])
            elif calibration is not None and network_bits(runner.graph) < 32:
                with record_function("step: range calibration"):
                    # calibrate() runs without autograd; tensors that require grad skip
                    # its check for NaN in loaded parameters (a kernel per tensor and a
                    # host sync; a non-finite prediction shows in the loss)
                    runner.calibrate([calibration], 1, params=params)
            with record_function("step: networks forward"):
                logits = runner(images, params)
                cross_entropy = F.cross_entropy(logits.float(), labels)
        noise = runner.activation_noise() if self.config.act_noise > 0 else None
        if noise is None:
            return logits, cross_entropy, cross_entropy.detach(), None
        return (logits, cross_entropy + self.config.act_noise * noise, cross_entropy.detach(),
                noise.detach())

    def _backward(self, predicted: list[dict[str, torch.Tensor]],
                  losses: list[torch.Tensor]) -> list[float]:
        r"""Backpropagate the mean loss into the GHN, one network's share at a time.

        Network :math:`i`'s gradient w.r.t. its predicted parameters, :math:`g_i`, is
        computed first (backward through the CNNs only, concurrently as
        :attr:`networks` runs them); with ``net_grad_clip`` :math:`c` it is rescaled to
        :math:`g_i \min(1, c / \lVert g_i \rVert)`, so no single network (e.g. a 2-bit
        one with an exploding gradient) dominates the step; the GHN's backward then runs
        once for all networks. Without clipping this equals ``losses.mean().backward()``.

        Returns:
            :math:`\lVert g_i \rVert` of every network (before clipping).
        """
        n = len(predicted)
        shares = self.networks.map(lambda k: self._network_gradient(predicted[k], losses[k], n),
                                   n)
        tensors = [t for outputs, _, _ in shares for t in outputs]
        grads = [g for _, net_grads, _ in shares for g in net_grads]
        torch.autograd.backward(tensors, grads)
        return torch.stack([norm for _, _, norm in shares]).tolist()

    def _network_gradient(self, params: dict[str, torch.Tensor], net_loss: torch.Tensor,
                          n: int) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """``(predicted tensors, their gradients (clipped), norm before clipping)`` of one
        network's share ``net_loss / n`` of the loss."""
        outputs = list(params.values())
        with record_function("step: network backward"):
            net_grads = torch.autograd.grad(net_loss / n, outputs, retain_graph=True,
                                            allow_unused=True)
        net_grads = [torch.zeros_like(t) if g is None else g for t, g in zip(outputs, net_grads)]
        norm = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g.float()) for g in net_grads])) * n
        clip = self.config.net_grad_clip
        if clip > 0:  # a tensor factor: no host synchronisation per network
            scale = (clip / norm.clamp_min(1e-12)).clamp(max=1.0)
            net_grads = [g * scale.to(g.dtype) for g in net_grads]
        return outputs, net_grads, norm

    # ------------------------------------------------------------ the run
    def train(self, until: int | None = None) -> dict[str, Any]:
        """Train until ``config.steps``; checkpoint every ``ckpt_every`` steps and at the end.

        With ``config.time_limit``, the run also stops (and checkpoints) after the first
        step that ends past that many minutes from here; every rank stops at the same step.

        Args:
            until: stop (and checkpoint) after this step instead, e.g. to split a run.

        Returns:
            The last step's metrics, plus ``replicas_in_sync`` under DDP and
            ``stopped_by_time_limit`` (True when the limit ended the run early).
        """
        cfg = self.config
        deadline = time.monotonic() + 60 * cfg.time_limit if cfg.time_limit > 0 else None
        timed_out = False
        main = self.rank == 0
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.out / "config.json") as tmp:
                tmp.write_text(json.dumps(cfg.to_dict(), indent=1))
        logger = _MetricsLog(self.out / "metrics.csv", enabled=main, resume_step=self.step)
        last = min(cfg.steps, until) if until is not None else cfg.steps
        bar = tqdm(total=cfg.steps, initial=self.step, desc="GHN-QAT" if cfg.quantized else "GHN",
                   unit="step", disable=not main)
        metrics: dict[str, Any] = {}
        try:
            while self.step < last:
                metrics = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['accuracy']:.3f}",
                                img_s=f"{metrics['images_per_s']:.0f}")
                timed_out = deadline is not None and distributed.any_rank(
                    time.monotonic() >= deadline, self.world, self.device)
                evaluated = self._curve_point(metrics, last)
                if self.step % cfg.log_every == 0 or self.step == last or evaluated or timed_out:
                    logger.write(metrics)
                if evaluated:
                    plot_curve(self.out / "metrics.csv", self.out / "learning_curve.png")
                if self.step % cfg.ckpt_every == 0 or self.step == last or timed_out:
                    self.save_checkpoint()
                if timed_out:
                    break
        finally:
            bar.close()
            logger.close()
        if self.world > 1:
            metrics["replicas_in_sync"] = distributed.replicas_in_sync(self.ghn, self.world)
        if timed_out and self.step < last:
            metrics["stopped_by_time_limit"] = True
            if main:
                print(f"time limit of {cfg.time_limit:g} min reached: stopped at step "
                      f"{self.step} of {cfg.steps} with a checkpoint in {self.out}; continue "
                      "with --resume")
        return metrics

    def close(self) -> None:
        """Release what ties this trainer to other processes and threads: the network
        threads and the DDP wrapper (whose reducer holds the process group). Call it when
        every rank has finished, before the process group is destroyed, so that the gloo
        connections close while the interpreter is fully alive, not in its finalisation
        (where a late destructor can abort the process). The GHN stays usable; training
        steps are refused from then on, and the cached runners are dropped (their memory
        returns at the next garbage collection)."""
        self.networks.close()
        wrapped, self.model = self.model is not self.ghn, self.ghn
        self._runners.clear()
        self._closed = True
        if wrapped:  # the trainer's reference cycles may still hold the DDP wrapper
            gc.collect()

    # ------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue exactly: config, GHN, optimizer, scheduler,
        RNG states and the step."""
        rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"format": TRAIN_FORMAT, "version": TRAIN_VERSION, "config": self.config.to_dict(),
                "ghn": self.ghn.payload(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rng, "step": self.step,
                "nan_skips": self.nan_skips, "world": self.world}

    def _curve_point(self, metrics: dict[str, Any], last: int) -> bool:
        """Add the learning curve's columns to ``metrics`` (empty between points);
        returns whether this step is a point (every ``eval_every`` steps and the last)."""
        if self.curve is None:
            return False
        metrics.update(dict.fromkeys(self.curve.columns))
        if self.step % self.config.eval_every and self.step != last:
            return False
        metrics.update(self.curve.evaluate(self.ghn))
        tqdm.write(f"step {self.step}: " + ", ".join(
            f"{k} {v:.1f}%" for k, v in metrics.items() if k in self.curve.columns))
        return True

    def save_checkpoint(self) -> Path | None:
        """Write ``out/last.pt`` atomically (rank 0 only); returns its path."""
        if self.rank != 0:
            return None
        state = self.checkpoint()
        path = self.out / "last.pt"
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return path

    def _claim_run_folder(self, overwrite: bool) -> None:
        """Refuse a new run where one exists, or (``overwrite``) move its files aside."""
        existing = [name for name in RUN_FILES if (self.out / name).exists()]
        if not existing:
            return
        if not overwrite:
            raise RunExistsError(
                f"{self.out} already holds a run ({', '.join(existing)}); pass --resume to "
                "continue it, --overwrite to replace it (its files are moved aside), or "
                "another --out")
        distributed.barrier(self.world)  # every rank has looked before rank 0 moves
        if self.rank == 0:
            aside = self.out / time.strftime("replaced-%Y%m%d-%H%M%S")
            aside.mkdir(parents=True, exist_ok=True)
            for name in existing:
                (self.out / name).rename(aside / name)
        distributed.barrier(self.world)

    def _read_resume_state(self) -> dict[str, Any]:
        """Read ``out/last.pt`` and check its settings against this run's."""
        path = self.out / "last.pt"
        state = load_train_checkpoint(path)
        theirs = TrainConfig.from_saved(state["config"]).to_dict()
        ours = self.config.to_dict()
        fixed = ("space", "split", "num_archs", "graph_seed", "in_shape", "num_classes",
                 "data", "hid", "gnn", "T", "s_max", "max_shape", "message_relu", "bias_range",
                 "bias_slope", "norm_slope", "batch_size",
                 "seed", "bits", "bit_weights", "mixed", "first_last_8bit", "optimizer",
                 "schedule", "collapse_guard", "net_grad_clip", "range_images", "mix_weights",
                 "train_bn")
        diff = [f"{k}: checkpoint {theirs[k]!r}, now {ours[k]!r}" for k in fixed if theirs[k] != ours[k]]
        # The networks of a step may be split over other processes: the same slots of the
        # architecture draw (see train.sampling), meta_batch per process.
        saved_world = int(state.get("world", 1))
        per_step = theirs["meta_batch"] * saved_world
        if ours["meta_batch"] * self.world != per_step:
            hint = (f"; with {self.world} processes use --meta-batch {per_step // self.world}"
                    if per_step % self.world == 0 else "")
            diff.append(f"networks per step (meta_batch x processes): checkpoint "
                        f"{theirs['meta_batch']} x {saved_world}, now {ours['meta_batch']} x "
                        f"{self.world}{hint}")
        if diff:
            raise CheckpointError(f"{path}: cannot resume with other settings ({'; '.join(diff)})")
        return state

    def _resume(self, state: dict[str, Any]) -> None:
        """Restore everything from a checkpoint read by :meth:`_read_resume_state`; a new
        ``lr`` or ``steps`` reshapes the learning-rate schedule from this step on."""
        self.ghn.load_checked_state_dict(state["ghn"]["state_dict"], self.out / "last.pt")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        random.setstate(_as_python_state(state["rng"]["python"]))
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step, self.nan_skips = int(state["step"]), int(state["nan_skips"])
        self.scheduler.base_lrs = [self.config.lr] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.config.lr
            group["lr"] = self.config.lr * self._lr_factor(self.step)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def _per_bits(graphs: list, losses: list[float], net_norms: list[float],
              bits: tuple[int, ...]) -> dict[str, float]:
    """Mean loss and parameter-gradient norm of the step's networks per bit-width
    (``loss_8bit``, ``param_grad_8bit``, ...; NaN for bit-widths not drawn this step)."""
    out: dict[str, float] = {}
    labels = [network_bits(g) for g in graphs]
    for b in bits or (FLOAT_BITS,):
        chosen = [i for i, label in enumerate(labels) if label == b]
        for name, values in (("loss", losses), ("param_grad", net_norms)):
            picked = [values[i] for i in chosen]
            out[f"{name}_{b}bit"] = sum(picked) / len(picked) if picked else float("nan")
    return out


def _as_python_state(state: Any) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss


class _MetricsLog:
    """CSV metrics (and TensorBoard when installed), written by rank 0 only."""

    def __init__(self, path: Path, enabled: bool, resume_step: int) -> None:
        self.enabled, self.path, self.resume_step = enabled, path, resume_step
        self._file = self._writer = self._tb = None
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._append = resume_step > 0 and path.is_file()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(path.parent / "tensorboard"))
        except ImportError:
            self._tb = None

    def write(self, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._writer is None:
            fieldnames = list(metrics)
            if self._append:
                fieldnames = self._keep_logged_steps(fieldnames)
            self._file = open(self.path, "a" if self._append else "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=fieldnames)
            if not self._append:
                self._writer.writeheader()
        self._writer.writerow({k: metrics.get(k) for k in self._writer.fieldnames})
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, metrics["step"])

    def _keep_logged_steps(self, fieldnames: list[str]) -> list[str]:
        """Rewrite the log with only the steps up to the resumed one (a run killed after
        logging steps past its last checkpoint logs them again), under the old columns
        plus any new ones; returns the columns."""
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            old = list(reader.fieldnames or [])
            rows = [r for r in reader if r.get("step", "").isdigit()
                    and int(r["step"]) <= self.resume_step]
        columns = old + [name for name in fieldnames if name not in old]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return columns

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
