"""Results tables: several evaluation jobs over architecture splits, cached per architecture.

A :class:`ResultJob` is one table block: a split, an evaluation protocol, a
weight-quantization setting and bit-widths. :func:`run_jobs` evaluates every
architecture of every job (GHNs, random initializers and, where asked, the converged
SGD reference) and caches each architecture's rows in ``cache/JOB/ARCH.csv``, every
method under its own key of everything its rows depend on (a GHN's weights, an
initializer's seed, the SGD recipe; the protocol, the setting, the test images), so a
rerun skips what is done and recomputes only stale methods: a new GHN is evaluated
without evaluating the baselines again. ``shard=(k, n)`` takes every n-th
architecture so n processes can share the work. :func:`write_tables` turns the rows
into CSV, markdown and plots. Every cached method records where it was computed
(:func:`~ghn_pyg.machine.compute_signature`; low-bit accuracies depend on the machine's
float kernels), and the tables list the machines of each block.
"""

from __future__ import annotations

import csv
import hashlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..fileio import atomic_path
from ..graph.bits import EVAL_BITS, FLOAT_BITS, bits_label
from ..machine import UNRECORDED, compute_signature
from ..nn.ghn import GHN
from ..plotting import pyplot, save_figure
from ..report import markdown_table
from .evaluate import (EvalRow, EvalSetup, ModuleArchs, evaluate_architecture, setting_label,
                       setup_key)
from .tables import format_accuracy, format_difference, summarize
from .protocol import EvalProtocol
from .reference import SGDReference

__all__ = ["ResultJob", "ResultRow", "CachedMethod", "run_jobs", "write_tables", "read_results",
           "paired_differences", "SGD_METHOD", "ghn_fingerprint", "method_keys", "read_cache",
           "read_method_cache", "write_cache"]

#: The method name of the converged SGD reference in result rows.
SGD_METHOD = "SGD (converged)"

#: ``split -> [(name, module)]`` of its architectures.
SplitModels = Callable[[str], Sequence[tuple[str, torch.nn.Module]]]


@dataclass(frozen=True)
class ResultJob:
    """One block of a results table.

    Args:
        split: the architecture split (as the ``models`` function of :func:`run_jobs`
            understands it).
        protocol: the evaluation protocol.
        bits: bit-widths.
        per_channel: per-output-channel weight scales.
        first_last_8bit: first and last layers at 8 bits below 8 bits.
        sgd: also evaluate the converged SGD reference.
        images: test images (None: all).
    """

    split: str
    protocol: EvalProtocol
    bits: tuple[int, ...] = EVAL_BITS
    per_channel: bool = True
    first_last_8bit: bool = False
    sgd: bool = False
    images: int | None = None

    @property
    def setting(self) -> str:
        """The weight-quantization setting's label."""
        return setting_label(self.per_channel, self.first_last_8bit)

    @property
    def name(self) -> str:
        """A folder name: protocol, setting and split."""
        return f"{self.protocol.name}-{self.setting}-{self.split}"


@dataclass
class ResultRow:
    """One accuracy of a results table (a fraction), and where it was computed
    (:func:`~ghn_pyg.machine.compute_signature`)."""

    protocol: str
    setting: str
    split: str
    arch: str
    method: str
    bits: int
    accuracy: float
    machine: str = UNRECORDED


class CachedMethod(NamedTuple):
    """One method's cached rows of one architecture.

    Attributes:
        key: the cache key of the rows (None when they disagree on it: stale).
        rows: the accuracies.
        machine: where they were computed (:data:`~ghn_pyg.machine.UNRECORDED` for
            caches written before machines were recorded).
    """

    key: str | None
    rows: list[EvalRow]
    machine: str


#: GHN settings that change predictions but not the weights' names or shapes (a
#: fingerprint names only those that differ from :meth:`GHN.defaults`, so keys stay stable).
_BEHAVIOUR_SETTINGS = ("T", "s_max", "weight_norm", "message_relu", "bias_range", "bias_slope",
                       "norm_slope")


def ghn_fingerprint(ghns: dict[str, GHN]) -> str:
    """A short hash of the GHNs' names, weights, trained bits and the settings of
    ``_BEHAVIOUR_SETTINGS`` they change (a cache key)."""
    digest = hashlib.blake2b(digest_size=8)
    defaults = GHN.defaults()
    for name, ghn in ghns.items():
        digest.update(f"{name}:{ghn.trained_bits}".encode())
        changed = sorted((k, ghn.config[k]) for k in _BEHAVIOUR_SETTINGS
                         if ghn.config[k] != defaults[k])
        if changed:
            digest.update(repr(changed).encode())
        for key, value in ghn.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_cache(path: Path, key: str) -> list[EvalRow] | None:
    """Rows cached in ``path`` under ``key`` (None when missing or of another key)."""
    by_method = read_method_cache(path)
    if not by_method or any(cached.key != key for cached in by_method.values()):
        return None
    return [row for cached in by_method.values() for row in cached.rows]


def read_method_cache(path: Path) -> dict[str, CachedMethod]:
    """Rows cached in ``path`` by method (empty when the file is missing).

    A method whose rows disagree on their key gets key None (its rows are stale); its
    machine is that of its first row, :data:`~ghn_pyg.machine.UNRECORDED` in files
    without a ``machine`` column.
    """
    if not path.is_file():
        return {}
    out: dict[str, CachedMethod] = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            machine = r.get("machine") or UNRECORDED
            key, rows, machine = out.get(r["method"], CachedMethod(r["key"], [], machine))
            rows.append(EvalRow(r["arch"], r["method"], int(r["bits"]), float(r["accuracy"])))
            out[r["method"]] = CachedMethod(key if key == r["key"] else None, rows, machine)
    return out


def write_cache(path: Path, key: str | Mapping[str, str], rows: Sequence[EvalRow],
                machine: str | Mapping[str, str]) -> None:
    """Cache ``rows`` in ``path`` (atomically).

    Args:
        path: the CSV file.
        key: the rows' cache key: one for all rows, or one per method (``method -> key``).
        rows: the accuracies.
        machine: where the rows were computed
            (:func:`~ghn_pyg.machine.compute_signature`): one for all rows, or one per
            method.
    """
    keys = key if isinstance(key, Mapping) else {r.method: key for r in rows}
    machines = machine if isinstance(machine, Mapping) else {r.method: machine for r in rows}
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "arch", "method", "bits", "accuracy", "machine"])
        writer.writerows([keys[r.method], r.arch, r.method, r.bits, f"{r.accuracy:.5f}",
                          machines[r.method]] for r in rows)


def method_keys(fingerprints: Mapping[str, str], baselines: Sequence[str], seed: int,
                bits: Sequence[int], setup: str, sgd: SGDReference | None = None
                ) -> dict[str, str]:
    """The cache key of each method's rows for one architecture.

    Args:
        fingerprints: ``GHN name -> ghn_fingerprint({name: ghn})``.
        baselines: initializer names, drawn with ``seed``.
        seed: the architecture's seed of the baselines.
        bits: bit-widths.
        setup: :func:`~ghn_pyg.train.evaluate.setup_key` of the evaluation.
        sgd: the converged SGD reference (its recipe is part of its key), if evaluated.

    Returns:
        ``method -> key``, GHNs first, then the baselines, then the SGD reference.
    """
    tail = f"{','.join(map(str, bits))}|{setup}"
    keys = {name: f"ghn={fp}|{tail}" for name, fp in fingerprints.items()}
    keys.update({name: f"init={name}|seed{seed}|{tail}" for name in baselines})
    if sgd is not None:
        keys[SGD_METHOD] = f"sgd={sgd.recipe.key()}|{tail}"
    return keys


def run_jobs(jobs: Sequence[ResultJob], models: SplitModels, in_shape: Sequence[int],
             ghns: dict[str, GHN], baselines: Sequence[str], test_images: Dataset,
             train_images: Dataset, cache: str | Path, sgd: SGDReference | None = None,
             device: str | torch.device = "cpu", seed: int = 0, batch_size: int = 1000,
             shard: tuple[int, int] = (0, 1), compute: bool = True,
             progress: bool = True) -> list[ResultRow] | None:
    """Evaluate every architecture of every job, reusing cached architectures.

    Args:
        jobs: the table blocks.
        models: ``split -> [(name, module)]``; names must be valid file names.
        in_shape: the networks' input (C, H, W).
        ghns: GHNs by method name.
        baselines: random initializers (:mod:`ghn_pyg.inits`); architecture i of a
            split draws with ``seed + i``.
        test_images, train_images: the test split (only counted under
            ``calibrated``) and the training split (calibration).
        cache: the folder of per-architecture CSVs.
        sgd: the converged SGD reference (needed by jobs with ``sgd=True``).
        device: where to run.
        seed: seed of the random baselines.
        batch_size: test images per forward pass.
        shard: ``(k, n)``: this process takes every n-th architecture (starting at the
            k-th) of the splits, with all its jobs; the rows are returned only when
            every (job, architecture) pair is cached.
        compute: evaluate what is not cached (False: only read the cache, e.g. to
            assemble the tables after sharded runs without starting long work).
        progress: show a progress bar.

    Returns:
        Every row, or None when some pairs are left to other shards.

    Raises:
        ValueError: a bad shard, or a job with ``sgd`` but no ``sgd`` reference.
    """
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard}")
    if any(job.sgd for job in jobs) and sgd is None:
        raise ValueError("a job asks for the SGD reference: pass sgd=SGDReference(...)")
    fingerprints = {name: ghn_fingerprint({name: ghn}) for name, ghn in ghns.items()}
    split_models = {job.split: models(job.split) for job in jobs}
    pairs = [(job, i) for job in jobs for i in range(len(split_models[job.split]))]
    # Shards own architectures, not pairs: every job of one architecture (and so its
    # SGD reference file) is handled by one process.
    archs = dict.fromkeys((job.split, i) for job, i in pairs)
    owner = {arch: j % n for j, arch in enumerate(archs)}
    setups: dict[tuple, EvalSetup] = {}
    machine = compute_signature(device) if compute else UNRECORDED
    for ghn in ghns.values():
        ghn.to(device).eval()
    started = time.perf_counter()
    num_images = {job: min(job.images or len(test_images), len(test_images)) for job in jobs}
    rows: list[ResultRow] = []
    complete = True
    for job, i in tqdm(pairs, desc="results", disable=not progress):
        name, module = split_models[job.split][i]
        path = Path(cache) / job.name / f"{name}.csv"
        evaluation = setup_key(job.protocol, job.per_channel, job.first_last_8bit, num_images[job])
        keys = method_keys(fingerprints, baselines, seed + i, job.bits, evaluation,
                           sgd if job.sgd else None)
        cached = read_method_cache(path)
        stale = [m for m, key in keys.items() if m not in cached or cached[m].key != key]
        if SGD_METHOD in keys and SGD_METHOD not in stale and not _same_reference(
                sgd, name, module, evaluation, cached[SGD_METHOD].rows):
            stale.append(SGD_METHOD)
        if stale and (owner[job.split, i] != k or not compute):
            complete = False
            continue
        if stale:
            setup_id = (job.protocol, job.per_channel, job.first_last_8bit, job.images)
            if setup_id not in setups:
                setups[setup_id] = EvalSetup.create(
                    test_images, train_images, job.protocol, job.images, batch_size, device,
                    job.per_channel, job.first_last_8bit)
            fresh = _evaluate_methods(stale, name, module, in_shape, ghns, baselines, job.bits,
                                      setups[setup_id], seed + i, sgd)
            cached.update({m: CachedMethod(keys[m], [r for r in fresh if r.method == m], machine)
                           for m in stale})
            kept = [r for m in cached for r in cached[m].rows]  # other methods' rows stay cached
            write_cache(path, {m: c.key for m, c in cached.items()}, kept,
                        {m: c.machine for m, c in cached.items()})
        rows += [ResultRow(job.protocol.name, job.setting, job.split, r.arch, r.method, r.bits,
                           r.accuracy, cached[m].machine) for m in keys for r in cached[m].rows]
    if progress:
        print(f"results: {(time.perf_counter() - started) / 60:.1f} min for "
              f"{len(pairs)} (job, architecture) pairs")
    return rows if complete else None


def _same_reference(sgd: SGDReference, name: str, module: torch.nn.Module, evaluation: str,
                    rows: Sequence[EvalRow]) -> bool:
    """Whether the reference's rows cached here still match the reference's own cache (it
    drops the rows of a network that a retraining did not reproduce, see
    :class:`~ghn_pyg.train.reference.SGDReference`), so a table never shows one network's
    accuracy under one protocol and another's under the next."""
    reference = sgd.cached_accuracy(name, module, evaluation)
    return all(r.bits in reference and abs(reference[r.bits] - r.accuracy) < 1e-5 for r in rows)


def _evaluate_methods(methods: Sequence[str], name: str, module: torch.nn.Module,
                      in_shape: Sequence[int], ghns: dict[str, GHN], baselines: Sequence[str],
                      bits: Sequence[int], setup: EvalSetup, seed: int,
                      sgd: SGDReference | None) -> list[EvalRow]:
    """The rows of ``methods`` (GHN names, baseline names, :data:`SGD_METHOD`) for one
    architecture."""
    chosen = {m: ghn for m, ghn in ghns.items() if m in methods}
    chosen_baselines = [b for b in baselines if b in methods]
    rows = []
    if chosen or chosen_baselines:
        graph = ModuleArchs([(name, module)], in_shape).graphs[0]
        rows += evaluate_architecture(graph, module, in_shape, chosen, bits, chosen_baselines,
                                      setup, seed)
    if SGD_METHOD in methods:
        accuracy, _ = sgd.accuracy(name, module, in_shape, bits, setup)
        rows += [EvalRow(name, SGD_METHOD, b, a) for b, a in accuracy.items()]
    return rows


def read_results(path: str | Path) -> list[ResultRow]:
    """The rows of a ``results.csv`` that :func:`write_tables` wrote.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file lacks one of the columns :func:`write_tables` writes.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"protocol", "setting", "split", "arch", "method", "bits",
                   "accuracy"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} is not a results.csv of write_tables: it has no "
                             f"column {', '.join(sorted(missing))}")
        return [ResultRow(r["protocol"], r["setting"], r["split"], r["arch"], r["method"],
                          int(r["bits"]), float(r["accuracy"]), r.get("machine") or UNRECORDED)
                for r in reader]


def paired_differences(rows: Sequence[ResultRow], pairs: Sequence[tuple[str, str]]) -> str:
    r"""Markdown: per (protocol, setting, split, pair, bit-width) the paired difference
    of ``method`` - ``baseline`` over the architectures both were evaluated on.

    With :math:`d_a = 100\,(\mathrm{acc}_{method}(a) - \mathrm{acc}_{baseline}(a))`
    points on each shared architecture :math:`a`, a row gives the mean ± standard error
    of :math:`d`, on how many architectures :math:`d_a > 0`, and its minimum, median
    and maximum. This is how two methods are compared on the same architectures: the
    spread between architectures, which dominates each method's own standard error,
    cancels. Pairs with no shared architecture in a split give no row.

    Args:
        rows: result rows (:func:`run_jobs`, :func:`read_results`).
        pairs: ``(method, baseline)`` names of ``rows``' methods.

    Returns:
        The table (header only when no pair shares an architecture).

    Raises:
        ValueError: a method of ``pairs`` has no row at all (names the methods there are).
    """
    methods = set(r.method for r in rows)
    unknown = [m for pair in pairs for m in pair if m not in methods]
    if unknown:
        raise ValueError(f"no result rows for method(s) {', '.join(map(repr, unknown))}; "
                         f"the rows have {', '.join(sorted(methods)) or 'no method'}")
    accuracy = {(r.protocol, r.setting, r.split, r.method, r.bits, r.arch): r.accuracy
                for r in rows}
    table = []
    for block in dict.fromkeys((r.protocol, r.setting, r.split) for r in rows):
        for method, baseline in pairs:
            for bits in sorted({r.bits for r in rows if (r.protocol, r.setting, r.split) == block},
                               reverse=True):
                deltas = [100 * (acc - accuracy[(*block, baseline, bits, arch)])
                          for (*key, m, b, arch), acc in accuracy.items()
                          if tuple(key) == block and m == method and b == bits
                          and (*block, baseline, bits, arch) in accuracy]
                if deltas:
                    table.append([f"`{block[0]}`, {block[1]}", block[2],
                                  f"{method} - {baseline}", bits_label(bits),
                                  format_difference(deltas), f"{min(deltas):+.1f}",
                                  f"{statistics.median(deltas):+.1f}", f"{max(deltas):+.1f}"])
    return markdown_table(["block", "split", "difference", "bits", "mean ± s.e. (ahead)",
                           "min", "median", "max"], table)


def write_tables(rows: Sequence[ResultRow], out: str | Path, figures: str | Path | None = None,
                 caption: str = "", pairs: Sequence[tuple[str, str]] = ()) -> dict[str, Path]:
    """Write ``results.csv``, ``tables.md`` and accuracy-vs-bits plots.

    The markdown has one table per (protocol, setting): split, method (number of
    architectures), then mean ± standard error per bit-width, and the predicted /
    trained accuracy ratio at FP32 where the SGD reference was evaluated; then the
    :func:`paired_differences` of ``pairs``, if any; then a table of where each block's
    rows were computed, with a warning when a split of a block mixes machines (its
    low-bit rows are then not comparable to the last decimal).

    Args:
        rows: :func:`run_jobs`'s rows.
        out: folder of ``results.csv`` and ``tables.md``.
        figures: folder of the plots (default ``out``).
        caption: text put under the title of ``tables.md`` (command, seed, machine).
        pairs: ``(method, baseline)`` pairs to compare per architecture.

    Returns:
        The paths written, by kind.
    """
    out = Path(out)
    figures = Path(figures) if figures is not None else out
    paths = {"csv": out / "results.csv", "markdown": out / "tables.md"}
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["protocol", "setting", "split", "arch", "method", "bits", "accuracy",
                         "machine"])
        writer.writerows([r.protocol, r.setting, r.split, r.arch, r.method, r.bits,
                          f"{r.accuracy:.5f}", r.machine] for r in rows)
    blocks = list(dict.fromkeys((r.protocol, r.setting) for r in rows))
    text = ["# Fashion-MNIST results", "", caption, ""] if caption else ["# Results", ""]
    for protocol, setting in blocks:
        block = [r for r in rows if (r.protocol, r.setting) == (protocol, setting)]
        text += [f"## protocol `{protocol}`, weights {setting}", "", _block_table(block), ""]
        text += _ratio_lines(block)
    if pairs:
        text += ["## Paired differences (points, per architecture)", "",
                 paired_differences(rows, pairs), ""]
    text += _machine_lines(rows)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text("\n".join(text).rstrip() + "\n")
    for protocol, setting in blocks:
        block = [r for r in rows if (r.protocol, r.setting) == (protocol, setting)]
        splits = list(dict.fromkeys(r.split for r in block))
        plot = _plot_splits(block, splits, figures / f"accuracy-vs-bits-{protocol}-{setting}.png",
                            f"protocol {protocol}, weights {setting}")
        if plot is not None:
            paths[f"plot {protocol} {setting}"] = plot
    return paths


def _block_table(rows: Sequence[ResultRow]) -> str:
    bits = sorted({r.bits for r in rows}, reverse=True)
    table = []
    for split in dict.fromkeys(r.split for r in rows):
        part = [EvalRow(r.arch, r.method, r.bits, r.accuracy) for r in rows if r.split == split]
        summary = summarize(part)
        for method in dict.fromkeys(r.method for r in part):
            count = max(summary[key][2] for key in summary if key[0] == method)
            table.append([split, f"{method} ({count})"] +
                         [format_accuracy(*summary[method, b]) if (method, b) in summary else "-"
                          for b in bits])
    return markdown_table(["split", "method (archs)"] + [bits_label(b) for b in bits], table)


def _ratio_lines(rows: Sequence[ResultRow]) -> list[str]:
    lines = []
    for split in dict.fromkeys(r.split for r in rows):
        fp32 = {(r.method, r.arch): r.accuracy for r in rows if r.split == split and r.bits == FLOAT_BITS}
        archs = [a for (m, a) in fp32 if m == SGD_METHOD]
        if not archs:
            continue
        reference = sum(fp32[SGD_METHOD, a] for a in archs) / len(archs)
        for method in dict.fromkeys(m for (m, _) in fp32):
            if method != SGD_METHOD and all((method, a) in fp32 for a in archs):
                mean = sum(fp32[method, a] for a in archs) / len(archs)
                lines.append(f"- {split}: {method} / {SGD_METHOD} at FP32 on the same "
                             f"{len(archs)} architectures: {mean / reference:.2f} "
                             f"({100 * mean:.1f} / {100 * reference:.1f})")
    return lines + ([""] if lines else [])


def _machine_lines(rows: Sequence[ResultRow]) -> list[str]:
    """A markdown section: per block and split, the machines and what each computed."""
    where: dict[tuple[str, str, str], dict[str, tuple[set, set]]] = {}
    for r in rows:
        machines = where.setdefault((r.protocol, r.setting, r.split), {})
        archs, methods = machines.setdefault(r.machine, (set(), set()))
        archs.add(r.arch)
        methods.add(r.method)
    order = list(dict.fromkeys(r.method for r in rows))
    table = [[f"`{protocol}`, {setting}", split, machine, str(len(archs)),
              ", ".join(m for m in order if m in methods)]
             for (protocol, setting, split), machines in where.items()
             for machine, (archs, methods) in machines.items()]
    mixed = [f"`{p}` {s} {split}" for (p, s, split), machines in where.items()
             if len(machines) > 1]
    lines = ["## Where the rows were computed", "",
             markdown_table(["block", "split", "machine", "archs", "methods"], table), ""]
    if mixed:
        lines += [f"Mixed machines in {'; '.join(mixed)}: accuracies at 4 bits and below "
                  "depend on the machine's float kernels, so rows of these splits are not "
                  "all comparable to the last point.", ""]
    return lines


def _plot_splits(rows: Sequence[ResultRow], splits: Sequence[str], path: Path,
                 title: str) -> Path | None:
    """Accuracy vs bits, one panel per split, one legend for the figure."""
    plt = pyplot()
    if plt is None:
        return None
    bits = sorted({r.bits for r in rows}, reverse=True)
    methods = list(dict.fromkeys(r.method for r in rows))
    # Wide enough for the one-row legend below the panels, even with a single split.
    fig, axes = plt.subplots(1, len(splits), figsize=(max(2.6 * len(splits) + 1.0, 7.0), 3.4),
                             sharey=True, squeeze=False)
    for ax, split in zip(axes[0], splits):
        summary = summarize([EvalRow(r.arch, r.method, r.bits, r.accuracy)
                             for r in rows if r.split == split])
        for j, method in enumerate(methods):
            points = [(x, summary[method, b]) for x, b in enumerate(bits) if (method, b) in summary]
            if points:
                ax.errorbar([x for x, _ in points], [100 * s[0] for _, s in points],
                            yerr=[100 * s[1] for _, s in points], marker="o", capsize=3,
                            color=f"C{j}", label=method)
        ax.set_xticks(range(len(bits)), [bits_label(b) for b in bits], fontsize=8)
        ax.set_title(split, fontsize=9)
        ax.set_xlabel("bit-width", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy (%)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.suptitle(title, fontsize=9)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    return save_figure(fig, path, rect=(0, 0.08, 1, 0.97))
