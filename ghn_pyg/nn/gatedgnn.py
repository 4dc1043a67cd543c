r"""GatedGNN with GHN-2 semantics, updated one level at a time over a whole batch."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .schedule import DENSE_LIMIT, SweepSchedule, build_schedule
from .sweep import level_sweep

__all__ = ["GatedGNN", "MessageMLP"]


class MessageMLP(nn.Module):
    r"""The two-layer message MLP of GHN-2: :math:`W_2\,\mathrm{ReLU}(W_1 h + b_1) + b_2`,
    followed by a ReLU with ``last_relu`` (as in GHN-2's reference code).

    Args:
        hid: input and output features; the hidden layer has ``hid // 2``.
        last_relu: end with a ReLU.
    """

    def __init__(self, hid: int, last_relu: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hid, max(hid // 2, 1))
        self.fc2 = nn.Linear(max(hid // 2, 1), hid)
        self.last_relu = last_relu

    def reset_parameters(self) -> None:
        """Re-initialise both layers."""
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, h: Tensor) -> Tensor:
        """[n, hid] -> [n, hid]."""
        out = self.fc2(F.relu(self.fc1(h)))
        return F.relu(out) if self.last_relu else out


class GatedGNN(nn.Module):
    r"""Gated graph network of GHN-2 with virtual edges.

    For :math:`t = 1..T` and each direction (forward over ``dist_index``, then backward
    over it reversed), nodes are visited in topological order of that direction and
    updated as

    .. math::
        m_v = \sum_{u:\, d(u,v) = 1} \mathrm{MLP}(h_u)
              + \sum_{u:\, 1 \le d(u,v) \le s} \frac{\mathrm{MLP}_{ve}(h_u)}{d(u,v)},
        \qquad h_v \leftarrow \mathrm{GRUCell}(m_v, h_v),

    using the already updated :math:`h_u` of the sweep. All nodes of a level, across
    all graphs of the batch, are updated together, so a sweep takes as many steps as
    the deepest graph has levels. The schedule (:mod:`ghn_pyg.nn.schedule`) is built
    once per batch; the loop has no host synchronisation.

    Since :math:`m_v` only enters the GRU through :math:`W_{ih} m_v`, each updated node
    stores :math:`W_{ih}\,\mathrm{MLP}(h_u)` and :math:`W_{ih}\,\mathrm{MLP}_{ve}(h_u)`
    (the MLPs' last layers folded into :math:`W_{ih}`), and a level's input gates are
    one product of its coefficient rows with that store. Each sweep is one
    :func:`~ghn_pyg.nn.sweep.level_sweep`, a custom autograd function with a
    hand-written backward. With ``message_relu`` the MLPs end with a ReLU, as in GHN-2's
    reference code; their last layers then do not fold and each node stores the
    messages' input gates after that ReLU.

    Args:
        hid: node features.
        T: number of forward + backward rounds.
        s_max: default cutoff of virtual edges (a forward call may use a smaller one).
        dense_limit: batches with up to this many nodes use dense coefficients.
        message_relu: end both message MLPs with a ReLU.

    Shapes:
        input: node features [N, hid] and a PyG ``Batch`` of ArchGraphs.
        output: [N, hid].
    """

    def __init__(self, hid: int, T: int = 1, s_max: int = 50,
                 dense_limit: int = DENSE_LIMIT, message_relu: bool = False) -> None:
        super().__init__()
        if T < 1 or s_max < 1:
            raise ValueError(f"T and s_max must be >= 1, got T={T}, s_max={s_max}")
        self.hid, self.T, self.s_max, self.dense_limit = hid, T, s_max, dense_limit
        self.message_relu = message_relu
        self.mlp = MessageMLP(hid, last_relu=message_relu)
        self.mlp_ve = MessageMLP(hid, last_relu=message_relu)
        self.gru = nn.GRUCell(hid, hid)

    def reset_parameters(self) -> None:
        """Re-initialise the message MLPs and the GRU."""
        self.mlp.reset_parameters()
        self.mlp_ve.reset_parameters()
        self.gru.reset_parameters()

    def schedules(self, graph: Any, s_max: int | None = None,
                  dtype: torch.dtype = torch.float32) -> tuple[SweepSchedule, SweepSchedule]:
        """The forward and backward sweep schedules of a batch (reusable across calls)."""
        s = self._cutoff(s_max)
        common = dict(s_max=s, dense_limit=self.dense_limit, dtype=dtype)
        return (build_schedule(graph.level_fw, graph.dist_index, graph.dist, **common),
                build_schedule(graph.level_bw, graph.dist_index, graph.dist, reverse=True,
                               **common))

    def _cutoff(self, s_max: int | None) -> int:
        if s_max is None:
            return self.s_max
        if not 1 <= s_max <= self.s_max:
            raise ValueError(f"run-time s_max must be in 1..{self.s_max}, got {s_max}")
        return s_max

    def forward(self, x: Tensor, graph: Any, s_max: int | None = None,
                schedules: tuple[SweepSchedule, SweepSchedule] | None = None) -> Tensor:
        """Propagate node features.

        Args:
            x: [N, hid] node features.
            graph: a ``Batch`` (or one ArchGraph) with ``level_fw``, ``level_bw``,
                ``dist_index`` and ``dist``.
            s_max: run-time virtual-edge cutoff, at most the module's ``s_max``.
            schedules: precomputed :meth:`schedules` (otherwise built here).

        Returns:
            [N, hid] updated features.
        """
        if schedules is None:
            # the dtype the sweep computes in (float32 under autocast), so it never converts
            dtype = torch.promote_types(x.dtype, self.gru.weight_hh.dtype)
            schedules = self.schedules(graph, s_max, dtype=dtype)
        message_weights = (self._unfolded_message_weights() if self.message_relu
                           else self._folded_message_weights())
        for _ in range(self.T):
            for schedule in schedules:
                x = self._sweep(x, schedule, *message_weights)
        return x

    def _folded_message_weights(self) -> tuple[Tensor, Tensor]:
        """Block weights mapping the MLPs' hidden layers straight to GRU input gates.

        Returns:
            ``weight`` [2 * hid // 2, 2 * 3 * hid] (block diagonal) and ``bias``
            [2 * 3 * hid]; row block k (0: MLP, 1: MLP_ve) feeds column block k.
        """
        w_ih = self.gru.weight_ih  # [3h, h]
        blocks = [w_ih @ mlp.fc2.weight for mlp in (self.mlp, self.mlp_ve)]  # [3h, h/2] each
        weight = torch.block_diag(*[b.t() for b in blocks])
        bias = torch.cat([w_ih @ mlp.fc2.bias for mlp in (self.mlp, self.mlp_ve)])
        return weight, bias

    def _unfolded_message_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Block weights of the MLPs' second layers and of :math:`W_{ih}`, kept apart
        because a ReLU sits between them.

        Returns:
            ``gates_weight`` [2 * hid, 2 * 3 * hid] (block-diagonal :math:`W_{ih}^\top`),
            ``gates_bias`` (zeros [2 * 3 * hid]; the GRU's bias is in the sweep's
            pre-gates), ``second_weight`` [2 * hid // 2, 2 * hid] and ``second_bias``
            [2 * hid]; block k (0: MLP, 1: MLP_ve) feeds block k.
        """
        w_ih_t = self.gru.weight_ih.t()
        gates_weight = torch.block_diag(w_ih_t, w_ih_t)
        second_weight = torch.block_diag(*[mlp.fc2.weight.t() for mlp in (self.mlp, self.mlp_ve)])
        second_bias = torch.cat([self.mlp.fc2.bias, self.mlp_ve.fc2.bias])
        return gates_weight, gates_weight.new_zeros(gates_weight.shape[1]), second_weight, \
            second_bias

    def _sweep(self, x: Tensor, schedule: SweepSchedule, gates_weight: Tensor,
               gates_bias: Tensor, second_weight: Tensor | None = None,
               second_bias: Tensor | None = None) -> Tensor:
        hid = self.hid
        gru = self.gru
        h_in = x[schedule.perm]
        # the GRU's hidden-side gates only see the sweep's input: one matmul for all levels
        hidden_gates = F.linear(h_in, gru.weight_hh, gru.bias_hh)
        pre_gates = torch.cat([hidden_gates[:, :2 * hid] + gru.bias_ih[:2 * hid],
                               gru.bias_ih[2 * hid:].expand(x.shape[0], hid)], dim=1)
        first_weight = torch.cat([self.mlp.fc1.weight, self.mlp_ve.fc1.weight])
        first_bias = torch.cat([self.mlp.fc1.bias, self.mlp_ve.fc1.bias])
        out = level_sweep(pre_gates, hidden_gates[:, 2 * hid:], h_in, first_weight, first_bias,
                          gates_weight, gates_bias, schedule, second_weight, second_bias)
        return out[schedule.inv_perm]
