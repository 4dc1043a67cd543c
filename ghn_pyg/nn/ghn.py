"""``GHN``: the Graph HyperNetwork, from ArchGraph batches to parameter dicts."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from ..fileio import atomic_path, user_path
from ..formats import GHN_FORMAT, GHN_VERSION, CheckpointError, ghn_payload
from ..graph.ops import ACTIVATIONS, PRIMITIVES, Vocabulary
from ..graph.tracer import trace
from .decoder import ParameterDecoder
from .encoder import NodeEncoder
from .registry import resolve_gnn

__all__ = ["GHN", "CheckpointError", "PRETRAINED_DIR"]

#: Folder of the checkpoints shipped with the package.
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


class GHN(nn.Module):
    r"""Graph HyperNetwork: predicts all parameters of CNNs from their ArchGraphs.

    .. math::
        x = \mathrm{Enc}(G), \quad x \leftarrow \mathrm{GNN}(x, G), \quad
        x \leftarrow \mathrm{LayerNorm}(x), \quad \{W\} = \mathrm{Dec}(x, G)

    Args:
        hid: node embedding size.
        gnn: ``"gatedgnn"`` (GHN-2, default), ``"ggnn"``, ``"gatv2"``,
            ``"transformer"``, ``"gine"`` or ``"package.module:Class"`` (see
            :func:`~ghn_pyg.nn.registry.register_gnn` for the interface).
        T: GNN rounds (forward + backward sweeps for GatedGNN).
        s_max: longest virtual edge the GNN uses.
        max_shape: the weight decoder's (out, in, kh, kw); larger shapes are tiled.
        layernorm: LayerNorm on node embeddings before decoding.
        weight_norm: GHN-2's normalisation of predicted parameters (fan-in scaling of
            weights, ``2 sigmoid(norm_slope p)`` for norm weights,
            ``bias_range tanh(bias_slope p)`` for biases; see
            :class:`~ghn_pyg.nn.decoder.ParameterDecoder`).
        num_ops, num_acts: vocabulary sizes (default: the current vocabularies).
        message_relu: GatedGNN only: its message MLPs end with a ReLU, as in GHN-2's
            reference code.
        bias_range, bias_slope, norm_slope: the output ranges above (GHN-2's reference
            code: 1, 0.2 and 0.5).

    Call ``ghn(batch)`` with a PyG ``Batch`` (or one ArchGraph) to get one
    ``{name: tensor}`` dict per graph, keyed like ``model.named_parameters()``.
    """

    def __init__(self, hid: int = 32, gnn: str = "gatedgnn", T: int = 1, s_max: int = 50,
                 max_shape: Sequence[int] = (64, 64, 11, 11), layernorm: bool = True,
                 weight_norm: bool = True, num_ops: int | None = None,
                 num_acts: int | None = None, message_relu: bool = False,
                 bias_range: float = 0.1, bias_slope: float = 1.0,
                 norm_slope: float = 1.0) -> None:
        super().__init__()
        for name, value in (("hid", hid), ("T", T), ("s_max", s_max)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GHN {name} must be a positive integer, got {value!r}")
        self.config: dict[str, Any] = dict(
            hid=hid, gnn=gnn, T=T, s_max=s_max, max_shape=list(max_shape), layernorm=layernorm,
            weight_norm=weight_norm, num_ops=num_ops or len(PRIMITIVES),
            num_acts=num_acts or len(ACTIVATIONS), message_relu=message_relu,
            bias_range=bias_range, bias_slope=bias_slope, norm_slope=norm_slope)
        if message_relu and gnn != "gatedgnn":
            raise ValueError(f"message_relu is an option of the gatedgnn GNN, not of {gnn!r}")
        #: the op and activation names this GHN was built with (saved with it)
        self.vocab = Vocabulary.current(self.config["num_ops"], self.config["num_acts"])
        self.encoder = NodeEncoder(hid, self.config["num_ops"], self.config["num_acts"])
        extra = {"message_relu": True} if message_relu else {}
        self.gnn = resolve_gnn(gnn)(hid, T=T, s_max=s_max, **extra)
        self.norm = nn.LayerNorm(hid) if layernorm else nn.Identity()
        self.decoder = ParameterDecoder(hid, max_shape, normalize=weight_norm,
                                        bias_range=bias_range, bias_slope=bias_slope,
                                        norm_slope=norm_slope)

    def reset_parameters(self) -> None:
        """Re-initialise every part."""
        for part in (self.encoder, self.gnn, self.norm, self.decoder):
            if hasattr(part, "reset_parameters"):
                part.reset_parameters()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The constructor's default settings (a saved config lacking a key that was added
        later was built with its default, which reproduces it)."""
        return {name: p.default for name, p in inspect.signature(cls).parameters.items()
                if p.default is not inspect.Parameter.empty}

    @property
    def trained_bits(self) -> tuple[int, ...] | None:
        """The bit-widths this GHN was trained with (``None``: not recorded).

        Other bit-widths in a graph snap to the nearest of these before encoding, so a
        float GHN (``(32,)``) predicts float parameters whatever bits a graph asks for.
        """
        return self.encoder.trained_bits

    def set_trained_bits(self, bits: Sequence[int] | None) -> "GHN":
        """Record the bit-widths this GHN was trained with (saved with it); returns self."""
        self.encoder.set_trained_bits(bits)
        return self

    def seed_untrained_bits(self) -> tuple[int, ...]:
        """Give the bit-widths this GHN was never trained with embedding rows copied
        from the nearest trained one (see :meth:`NodeEncoder.seed_untrained_bits`), so
        it predicts exactly as before while those rows become trainable on their own;
        returns the bit-widths seeded."""
        return self.encoder.seed_untrained_bits()

    @property
    def device(self) -> torch.device:
        """The device of the GHN's parameters."""
        return next(self.parameters()).device

    # ------------------------------------------------------------ prediction
    def forward(self, batch: Batch | Data | Sequence[Data], s_max: int | None = None,
                into: Sequence[dict[str, Tensor]] | None = None) -> list[dict[str, Tensor]]:
        """Predict every parameter of every graph.

        Args:
            batch: a ``Batch`` of ArchGraphs, one ArchGraph, or a list of them.
            s_max: run-time virtual-edge cutoff (at most the GHN's ``s_max``).
            into: per graph, ``{name: tensor}`` to write the predictions into instead
                of new tensors (e.g. a model's detached parameters: no allocation, no
                copy); only under ``torch.no_grad()``.

        Returns:
            One dict per graph, ``{parameter name: tensor of its shape}``, in the
            graph's node order.

        Raises:
            ValueError: an empty batch, a graph without parameters, ops unknown to
                this GHN, or ``into`` missing a parameter or of another shape.
            RuntimeError: ``into`` while autograd is recording.
        """
        if isinstance(batch, Data) and not isinstance(batch, Batch):
            batch = [batch]
        if isinstance(batch, (list, tuple)):
            if not batch:
                raise ValueError("the batch is empty: give at least one ArchGraph")
            batch = Batch.from_data_list(list(batch))
        if not isinstance(batch, Batch):
            raise TypeError(f"expected a PyG Batch, an ArchGraph or a list of them, got "
                            f"{type(batch).__name__}")
        if batch.num_graphs == 0 or batch.num_nodes == 0:
            raise ValueError("the batch is empty: give at least one ArchGraph")
        device = self.device
        if batch.op.device.type == "cpu":  # checked before any transfer: no device sync
            self.vocab.check_ids(batch.op, batch.act)
        if batch.op.device != device:
            batch = batch.to(device)
        x = self.encoder(batch)
        x = self.gnn(x, batch, s_max=s_max)
        return self.decoder(self.norm(x), batch, into=into)

    @torch.no_grad()
    def predict(self, model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32),
                spec: Any = None, load: bool = False) -> dict[str, Tensor]:
        """Trace ``model`` and predict all its parameters.

        Args:
            model: the CNN.
            input_shape: an input shape it accepts.
            spec: a :class:`~ghn_pyg.quant.QuantSpec` (the bits the GHN conditions on).
            load: write the predictions straight into ``model``'s parameters (no
                intermediate tensors).

        Returns:
            ``{name: tensor}`` for every parameter of ``model`` (detached; with
            ``load`` these are the model's parameters themselves).

        Raises:
            GraphBuildError: the model cannot be traced.
        """
        graph = trace(model, input_shape, spec, s_max=self.config["s_max"])
        if load:
            into = [{name: param.detach() for name, param in model.named_parameters()}]
            return self(graph, into=into)[0]
        return self(graph)[0]

    # ------------------------------------------------------------ checkpoints
    def payload(self) -> dict[str, Any]:
        """Config, vocabularies and weights as a dict (what :meth:`save` writes)."""
        return {"format": GHN_FORMAT, "version": GHN_VERSION, "config": dict(self.config),
                "trained_bits": list(self.trained_bits) if self.trained_bits else None,
                "vocab": self.vocab.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write config, vocabularies and weights to ``path`` atomically."""
        path = user_path(path)
        with atomic_path(path) as tmp:
            torch.save(self.payload(), tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "GHN":
        """Rebuild a GHN from a file of :meth:`save` or a training checkpoint.

        Raises:
            CheckpointError: unreadable or corrupted file, another format, or weights
                that do not match the stored config.
        """
        return cls.from_payload(ghn_payload(path, map_location), path).to(map_location)

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: str | os.PathLike = "<payload>") -> "GHN":
        """Rebuild a GHN from :meth:`payload`'s dict (``source`` names it in errors)."""
        _check_payload(payload, source)
        ghn = cls(**payload["config"])
        ghn.load_checked_state_dict(payload["state_dict"], source)
        return ghn.set_trained_bits(payload.get("trained_bits"))

    def load_weights(self, path: str | os.PathLike) -> "GHN":
        """Load a checkpoint's weights (and its trained bits) into this GHN, whose config
        must match.

        Raises:
            CheckpointError: the file is unreadable, or its config differs (names the
                differing fields).
        """
        payload = ghn_payload(path, self.device)
        _check_payload(payload, path)
        theirs = {**GHN.defaults(), **payload["config"]}
        diff = {k: (theirs.get(k), v) for k, v in self.config.items() if theirs.get(k) != v}
        if diff:
            details = ", ".join(f"{k}: checkpoint {a!r} vs this GHN {b!r}" for k, (a, b) in diff.items())
            raise CheckpointError(f"{path}: checkpoint of another GHN config ({details}); "
                                  "use GHN.load(path) to build a matching GHN")
        self.load_checked_state_dict(payload["state_dict"], path)
        return self.set_trained_bits(payload.get("trained_bits"))

    @classmethod
    def load_any(cls, name_or_path: str | os.PathLike,
                 map_location: str | torch.device = "cpu") -> "GHN":
        """:meth:`load` a file, or :meth:`from_pretrained` a shipped name (e.g.
        ``"ghn-qat-fmnist"``) when no such file exists.

        Raises:
            CheckpointError: neither a readable checkpoint file nor a shipped name.
        """
        if user_path(name_or_path).is_file() or not (
                PRETRAINED_DIR / f"{os.fspath(name_or_path).removesuffix('.pt')}.pt").is_file():
            return cls.load(name_or_path, map_location)
        return cls.from_pretrained(os.fspath(name_or_path), map_location)

    @classmethod
    def from_pretrained(cls, name: str, map_location: str | torch.device = "cpu") -> "GHN":
        """Load a checkpoint shipped in ``ghn_pyg/checkpoints/`` (e.g. ``"ghn-qat-fmnist"``).

        Raises:
            ValueError: no shipped checkpoint of that name (lists the available ones).
        """
        path = PRETRAINED_DIR / f"{name.removesuffix('.pt')}.pt"
        if not path.is_file():
            available = sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))
            raise ValueError(f"no pretrained GHN {name!r}; shipped: "
                             f"{', '.join(available) if available else 'none yet'}")
        return cls.load(path, map_location)

    def load_checked_state_dict(self, state: dict[str, Tensor],
                                source: str | os.PathLike = "<state_dict>") -> None:
        """``load_state_dict`` after checking names and shapes.

        Raises:
            CheckpointError: missing, unexpected or mis-shaped entries, all named, with
                ``source`` (the file they came from).
        """
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or misshaped:
            raise CheckpointError(
                f"{source}: weights do not match the config: missing {missing}, unexpected "
                f"{unexpected}, mis-shaped {misshaped}")
        self.load_state_dict(state)


def _check_payload(payload: Any, source: str | os.PathLike) -> None:
    if not isinstance(payload, dict) or payload.get("format") != GHN_FORMAT:
        raise CheckpointError(f"{source}: not a ghn_pyg GHN checkpoint (no '{GHN_FORMAT}' "
                              "format tag)")
    for key in ("config", "state_dict", "vocab"):
        if key not in payload:
            raise CheckpointError(f"{source}: incomplete GHN checkpoint, '{key}' is missing")
    saved = Vocabulary.from_dict(payload["vocab"])
    if not saved.is_prefix_of(Vocabulary.current()):
        raise CheckpointError(f"{source}: the checkpoint's vocabulary {saved.to_dict()} differs "
                              f"from this installation's {Vocabulary.current().to_dict()}")
