"""DefiNet: a defect-aware equivariant network that moves atoms to their relaxed positions.

Every node carries scalar features ``h`` (N, F) and vector features ``v`` (N, 3, F), and with
``tensor_channels`` symmetric traceless rank-2 features ``t`` (N, 3, 3, C). Each layer

1. recomputes edge vectors from the current coordinates (edges and periodic images fixed),
2. passes messages gated by the defect markers of both ends (scalar and vector channels),
3. updates the node with an equivariant vector nonlinearity (scalar-gated vectors),
4. exchanges information with a global scalar+vector node of its structure,
5. moves the atoms by a vector read out of ``v`` plus relative-position messages.

Vacancy nodes take part in message passing but never move. The cell stays fixed.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn.models.dimenet import BesselBasisLayer
from torch_geometric.utils import scatter

from definet.data.markers import VACANCY
from definet.nn.reciprocal import ReciprocalBasis, ReciprocalExchange, node_phases


@dataclass
class DefiNetConfig:
    """Hyper-parameters of :class:`DefiNet` (stored in every checkpoint)."""

    hidden: int = 64
    num_layers: int = 4
    num_rbf: int = 20
    cutoff: float = 6.0
    max_z: int = 100
    num_markers: int = 4
    #: Start each structure's global node from a learned embedding of the parity of its electron
    #: count (sum of atomic numbers of the real atoms; core shells are even, so this is the
    #: parity of the valence electrons too). An odd count forces a spin-polarised ground state.
    electron_parity: bool = False
    #: Guard (A): an atom predicted to move further than this from its start is left at its
    #: start, with an :class:`OutOfDistributionWarning`. Features can blow up on inputs unlike
    #: the training data and throw single atoms tens of angstrom; DFT never moves an atom that
    #: far in a relaxation. ``None``: no guard (training).
    max_displacement: float | None = None
    #: Normalise each layer's output features (LayerNorm on the scalars, an RMS norm over
    #: channels on the vectors), so they cannot grow with depth. Off in the shipped model.
    feature_norm: bool = False
    #: Channels of symmetric traceless rank-2 (l = 2) node features; 0: none. Messages carry
    #: the neighbours' tensors and the edge directions' quadrupoles ``u u^T - I/3``, and feed
    #: back ``t . u`` to the vectors and ``u . t . u`` to the scalars. 0 in the shipped model.
    tensor_channels: int = 0
    #: Training-time dropout of each layer's feature updates (whole channels: a vector channel
    #: is dropped in all three components, so rotations still commute). 0 in the shipped model;
    #: prediction (eval mode) never drops anything.
    dropout: float = 0.0
    #: Long-range exchange through the reciprocal lattice of the supercell
    #: (:mod:`definet.nn.reciprocal`): every layer also reads and writes the structure factors
    #: of its features at the wavevectors ``0 < |k| <=`` this (1/A). 0: off (the shipped model).
    #: A model with it needs each structure's cell.
    reciprocal_cutoff: float = 0.0
    #: Channels per wavevector of the long-range exchange.
    reciprocal_channels: int = 16

    def __post_init__(self) -> None:
        channels = self.tensor_channels
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 0:
            raise ValueError(
                f"model.tensor_channels: expected a whole number >= 0 (0: none), got {channels!r}"
            )
        rate = self.dropout
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
            raise ValueError(f"model.dropout: expected a number in [0, 1), got {rate!r}")
        k = self.reciprocal_cutoff
        if isinstance(k, bool) or not isinstance(k, int | float) or k < 0:
            raise ValueError(
                f"model.reciprocal_cutoff: expected a number >= 0 (1/A; 0: off), got {k!r}"
            )

    def as_dict(self) -> dict:
        return asdict(self)


class OutOfDistributionWarning(UserWarning):
    """An input unlike the training data: unseen elements, or atoms the guard put back."""


def _mlp(n_in: int, n_out: int, hidden: int | None = None) -> nn.Sequential:
    hidden = hidden or n_in
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class VectorLinear(nn.Module):
    """Channel mixing of vector features (no bias, so it commutes with rotations)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)

    def forward(self, v: Tensor) -> Tensor:
        return self.linear(v)


class MarkerGatedFilter(nn.Module):
    """Per-edge filters of ``width`` channels: the source node's features times a radial basis
    times a gate of the markers of both ends."""

    def __init__(self, hidden: int, num_rbf: int, width: int) -> None:
        super().__init__()
        self.node = _mlp(hidden, width)
        self.radial = nn.Linear(num_rbf, width)
        self.gate = nn.Linear(2 * hidden, width)

    def pair_gate(self, marker_table: Tensor, pair: Tensor) -> Tensor:
        """Gate of each edge from the markers of its two ends.

        The gate depends on the marker pair only, so it is computed once per pair type
        (``marker_table`` holds the marker embeddings) and gathered by ``pair``.
        """
        k = marker_table.shape[0]
        both = torch.cat([marker_table.repeat_interleave(k, 0), marker_table.repeat(k, 1)], dim=-1)
        return torch.sigmoid(self.gate(both)).index_select(0, pair)

    def edge_filter(
        self, h: Tensor, rbf: Tensor, marker_table: Tensor, pair: Tensor, src: Tensor
    ) -> Tensor:
        """(E, width) filters of every edge."""
        gate = self.pair_gate(marker_table, pair)
        return self.node(h).index_select(0, src) * self.radial(rbf) * gate


class DefectMessage(MarkerGatedFilter):
    """Marker-gated scalar and vector messages over a radial basis, plus coordinate messages."""

    def __init__(self, hidden: int, num_rbf: int) -> None:
        super().__init__(hidden, num_rbf, 3 * hidden)
        self.hidden = hidden
        self.coord = _mlp(hidden, 1)

    def forward(
        self,
        h: Tensor,
        v: Tensor,
        m: Tensor,
        rbf: Tensor,
        unit: Tensor,
        rel: Tensor,
        edge_index: Tensor,
        pair: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        src, dst = edge_index
        ds, dvv, dvs = torch.split(self.edge_filter(h, rbf, m, pair, src), self.hidden, dim=-1)
        dv = dvv.unsqueeze(1) * v.index_select(0, src) + dvs.unsqueeze(1) * unit.unsqueeze(-1)
        n = h.shape[0]
        dh = scatter(ds, dst, dim=0, dim_size=n, reduce="mean")
        dv = scatter(dv, dst, dim=0, dim_size=n, reduce="mean")
        dx = scatter(rel * self.coord(ds), dst, dim=0, dim_size=n, reduce="mean")
        return dh, dv, dx


def _traceless_outer(a: Tensor, b: Tensor) -> Tensor:
    """Symmetric traceless part of ``a b^T`` for (..., 3, F) vectors: (..., 3, 3, F)."""
    outer = a.unsqueeze(-2) * b.unsqueeze(-3)
    sym = 0.5 * (outer + outer.transpose(-3, -2))
    trace = (a * b).sum(dim=-2, keepdim=True).unsqueeze(-2) / 3.0
    eye = torch.eye(3, dtype=a.dtype, device=a.device).unsqueeze(-1)
    return sym - trace * eye


class TensorMessage(MarkerGatedFilter):
    """Rank-2 messages on ``channels`` channels: neighbours' tensors and edge quadrupoles into
    ``t``, ``t_j . u`` into the vectors and ``u . t_j . u`` into the scalars, filtered like
    :class:`DefectMessage`."""

    def __init__(self, hidden: int, channels: int, num_rbf: int) -> None:
        super().__init__(hidden, num_rbf, 4 * channels)
        self.channels = channels
        self.to_h = nn.Linear(channels, hidden, bias=False)
        self.to_v = VectorLinear(channels, hidden)

    def forward(
        self,
        h: Tensor,
        t: Tensor,
        m: Tensor,
        rbf: Tensor,
        unit: Tensor,
        edge_index: Tensor,
        pair: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        src, dst = edge_index
        filters = self.edge_filter(h, rbf, m, pair, src)
        a_tt, a_tu, a_vt, a_st = torch.split(filters, self.channels, dim=-1)
        t_src = t.index_select(0, src)  # (E, 3, 3, C)
        u = unit.unsqueeze(-1)  # (E, 3, 1)
        t_u = (t_src * u.unsqueeze(1)).sum(dim=2)  # (E, 3, C): t_j . u
        dt = a_tt[:, None, None] * t_src + a_tu[:, None, None] * _traceless_outer(u, u)
        n = h.shape[0]
        dh = scatter(a_st * (t_u * u).sum(dim=1), dst, dim=0, dim_size=n, reduce="mean")
        dv = scatter(a_vt.unsqueeze(1) * t_u, dst, dim=0, dim_size=n, reduce="mean")
        dt = scatter(dt, dst, dim=0, dim_size=n, reduce="mean")
        return self.to_h(dh), self.to_v(dv), dt


class TensorUpdate(nn.Module):
    """Couples the rank-2 features to the others: their norms feed the scalars, ``t . v`` the
    vectors and the vectors' traceless squares the tensors, all gated by the scalars."""

    def __init__(self, hidden: int, channels: int) -> None:
        super().__init__()
        self.hidden, self.channels = hidden, channels
        self.ten = VectorLinear(channels, channels)
        self.vec = VectorLinear(hidden, channels)
        self.mix = _mlp(hidden + channels, hidden + 3 * channels)
        self.to_v = VectorLinear(channels, hidden)

    def forward(self, h: Tensor, v: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ut, uv = self.ten(t), self.vec(v)
        norm = torch.sqrt((ut**2).sum(dim=(1, 2)) + 1e-8)
        c = self.channels
        a_ss, a_tt, a_vt, a_tv = torch.split(
            self.mix(torch.cat([h, norm], dim=-1)), [self.hidden, c, c, c], dim=-1
        )
        dv = self.to_v(a_vt.unsqueeze(1) * (ut * uv.unsqueeze(1)).sum(dim=2))
        dt = a_tt[:, None, None] * ut + a_tv[:, None, None] * _traceless_outer(uv, uv)
        return a_ss, dv, dt


class EquivariantUpdate(nn.Module):
    """PaiNN-style update: vector norms feed the scalars, scalars gate the vectors."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.vec_u = VectorLinear(hidden, hidden)
        self.vec_v = VectorLinear(hidden, hidden)
        self.mix = _mlp(2 * hidden, 3 * hidden)

    def forward(self, h: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        uv, vv = self.vec_u(v), self.vec_v(v)
        norm = torch.sqrt((vv**2).sum(dim=1) + 1e-8)
        a_vv, a_sv, a_ss = torch.split(self.mix(torch.cat([h, norm], dim=-1)), self.hidden, dim=-1)
        dv = a_vv.unsqueeze(1) * uv
        dh = a_ss + a_sv * (uv * vv).sum(dim=1)
        return dh, dv


class VectorNorm(nn.Module):
    """Equivariant RMS norm of vector (N, 3, F) or rank-2 (N, 3, 3, F) features: divides by the
    root mean square of the channel norms (a rotation invariant), then scales each channel by a
    learned weight."""

    def __init__(self, hidden: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, v: Tensor) -> Tensor:
        spatial = tuple(range(1, v.dim() - 1))
        rms = torch.sqrt((v**2).sum(dim=spatial).mean(dim=-1, keepdim=True) + self.eps)
        return v / rms.view(-1, *[1] * len(spatial), 1) * self.weight


class ChannelDropout(nn.Module):
    """Dropout of whole channels of scalar (N, F) or vector/rank-2 (N, 3, [3,] F) features: one
    mask per node and channel, shared by the spatial components, so it stays equivariant
    (torch's ``dropout1d`` with the components as the length of each channel)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0:
            return x
        if x.dim() == 2:
            return F.dropout(x, self.rate)
        channels = x.flatten(1, -2).transpose(1, 2)  # (N, F, 3 or 9)
        return F.dropout1d(channels, self.rate).transpose(1, 2).reshape(x.shape)


class GlobalNode(nn.Module):
    """A scalar+vector node per structure that reads from and writes to all its nodes."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.read_s = _mlp(2 * hidden, hidden)
        self.read_v = VectorLinear(2 * hidden, hidden)
        self.write_s = nn.Linear(hidden, hidden)
        self.write_v = VectorLinear(hidden, hidden)
        self.write_gate = nn.Linear(hidden, hidden)

    def forward(
        self, h: Tensor, v: Tensor, gs: Tensor, gv: Tensor, batch: Tensor, num_graphs: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mean_s = scatter(h, batch, dim=0, dim_size=num_graphs, reduce="mean")
        mean_v = scatter(v, batch, dim=0, dim_size=num_graphs, reduce="mean")
        gs = gs + self.read_s(torch.cat([gs, mean_s], dim=-1))
        gv = gv + self.read_v(torch.cat([gv, mean_v], dim=-1))
        h = h + self.write_s(gs).index_select(0, batch)
        v = v + self.write_v(gv).index_select(0, batch) * torch.sigmoid(
            self.write_gate(h)
        ).unsqueeze(1)
        return h, v, gs, gv


class DefiNetLayer(nn.Module):
    """One layer: messages, update, global exchange, coordinate step."""

    def __init__(
        self,
        hidden: int,
        num_rbf: int,
        feature_norm: bool = False,
        tensor_channels: int = 0,
        dropout: float = 0.0,
        reciprocal_channels: int = 0,
    ) -> None:
        super().__init__()
        self.drop = ChannelDropout(dropout)
        self.marker_inject = nn.Linear(hidden, hidden)
        self.out_norm_h = nn.LayerNorm(hidden) if feature_norm else nn.Identity()
        self.out_norm_v = VectorNorm(hidden) if feature_norm else nn.Identity()
        self.message = DefectMessage(hidden, num_rbf)
        self.update = EquivariantUpdate(hidden)
        self.global_node = GlobalNode(hidden)
        self.norm = nn.LayerNorm(hidden)
        self.to_step = VectorLinear(hidden, 1)
        c = tensor_channels
        self.tensor_message = TensorMessage(hidden, c, num_rbf) if c else None
        self.tensor_update = TensorUpdate(hidden, c) if c else None
        self.out_norm_t = VectorNorm(c) if c and feature_norm else nn.Identity()
        r = reciprocal_channels
        self.reciprocal = ReciprocalExchange(hidden, r) if r else None

    def forward(
        self, h, v, t, m, table, rbf, unit, rel, edge_index, pair, gs, gv, batch, num_graphs, waves
    ):
        h = h + self.marker_inject(m)
        hn = self.norm(h)
        dh, dv, dx = self.message(hn, v, table, rbf, unit, rel, edge_index, pair)
        if self.tensor_message is not None:
            th, tv, dt = self.tensor_message(hn, t, table, rbf, unit, edge_index, pair)
            dh, dv, t = dh + th, dv + tv, t + dt
        h, v = h + self.drop(dh), v + self.drop(dv)
        dh, dv = self.update(h, v)
        if self.tensor_update is not None:
            th, tv, dt = self.tensor_update(h, v, t)
            dh, dv, t = dh + th, dv + tv, t + dt
            t = self.out_norm_t(t)
        h, v = h + self.drop(dh), v + self.drop(dv)
        h, v, gs, gv = self.global_node(h, v, gs, gv, batch, num_graphs)
        if self.reciprocal is not None:
            dh, dv = self.reciprocal(h, v, waves, batch)
            h, v = h + self.drop(dh), v + self.drop(dv)
        step = dx + self.to_step(v).squeeze(-1)
        return self.out_norm_h(h), self.out_norm_v(v), t, gs, gv, step


class DefiNet(nn.Module):
    """Predicts relaxed Cartesian coordinates of every node of a defect-marked periodic graph.

    Parameters
    ----------
    config
        Width, depth, radial basis and cutoff; see :class:`DefiNetConfig`.
    """

    def __init__(self, config: DefiNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DefiNetConfig()
        f = config.hidden
        self.embed_z = nn.Embedding(config.max_z + 1, f)
        self.embed_marker = nn.Embedding(config.num_markers, f)
        self.rbf = BesselBasisLayer(config.num_rbf, cutoff=config.cutoff)
        self.embed_parity = nn.Embedding(2, f) if config.electron_parity else None
        long_range = config.reciprocal_cutoff > 0
        self.reciprocal_basis = ReciprocalBasis(config.reciprocal_cutoff) if long_range else None
        self.layers = nn.ModuleList(
            DefiNetLayer(
                f,
                config.num_rbf,
                config.feature_norm,
                config.tensor_channels,
                config.dropout,
                config.reciprocal_channels if long_range else 0,
            )
            for _ in range(config.num_layers)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.embed_z.reset_parameters()
        self.embed_marker.reset_parameters()
        self.rbf.reset_parameters()
        if self.embed_parity is not None:  # starts as "parity unknown"
            nn.init.zeros_(self.embed_parity.weight)
        for layer in self.layers:  # start close to "do nothing"
            nn.init.zeros_(layer.to_step.linear.weight)
            nn.init.zeros_(layer.message.coord[-1].weight)
            if layer.reciprocal is not None:
                layer.reciprocal.reset_output()

    def forward(
        self,
        z: Tensor,
        marker: Tensor,
        pos: Tensor,
        edge_index: Tensor,
        edge_shift: Tensor,
        batch: Tensor | None = None,
        num_graphs: int | None = None,
        cell: Tensor | None = None,
    ) -> Tensor:
        """Relaxed coordinates (N, 3) from unrelaxed ones.

        ``edge_index`` is ``[source j, target i]``; ``edge_shift`` (E, 3) is the Cartesian offset
        of the source's periodic image, so ``r_ij = pos[j] + edge_shift - pos[i]``. ``cell``
        (G, 3, 3), the lattice vectors of each structure as rows, is needed only with
        ``reciprocal_cutoff``.
        """
        layers = self.layer_positions(
            z, marker, pos, edge_index, edge_shift, batch, num_graphs, cell
        )
        return self._guard(layers[-1], pos.to(layers[-1].dtype))

    def layer_positions(
        self,
        z: Tensor,
        marker: Tensor,
        pos: Tensor,
        edge_index: Tensor,
        edge_shift: Tensor,
        batch: Tensor | None = None,
        num_graphs: int | None = None,
        cell: Tensor | None = None,
    ) -> list[Tensor]:
        """Coordinates after each layer (the last is :meth:`forward`'s, before its guard)."""
        if z.max() > self.config.max_z or marker.max() >= self.config.num_markers:
            raise ValueError(
                f"atomic number {int(z.max())} or marker {int(marker.max())} outside the embedding"
            )
        if batch is None:
            batch = torch.zeros_like(z)
        num_graphs = num_graphs or int(batch.max()) + 1
        dtype = self.embed_z.weight.dtype
        x = pos.to(dtype)
        shift = edge_shift.to(dtype)
        real = marker != VACANCY
        movable = real.to(dtype).unsqueeze(-1)
        m = self.embed_marker(marker)
        h = self.embed_z(z) + m
        f = self.config.hidden
        v = h.new_zeros(h.shape[0], 3, f)
        c = self.config.tensor_channels
        t = h.new_zeros(h.shape[0], 3, 3, c) if c else None
        gs = h.new_zeros(num_graphs, f)
        if self.embed_parity is not None:
            electrons = scatter(z * real, batch, dim=0, dim_size=num_graphs)
            gs = gs + self.embed_parity(electrons % 2)
        gv = h.new_zeros(num_graphs, 3, f)
        src, dst = edge_index
        table = self.embed_marker.weight
        pair = marker[dst] * self.config.num_markers + marker[src]
        waves = None
        if self.reciprocal_basis is not None:
            if cell is None:
                raise ValueError(
                    "this model exchanges information through the reciprocal lattice "
                    "(reciprocal_cutoff > 0) and needs each structure's cell"
                )
            cutoff = self.config.reciprocal_cutoff
            waves = node_phases(x, cell.reshape(-1, 3, 3), batch, cutoff, self.reciprocal_basis)
        positions = []
        for layer in self.layers:
            rel = x.index_select(0, src) + shift - x.index_select(0, dst)
            dist = rel.norm(dim=-1).clamp_min(1e-6)
            unit = rel / dist.unsqueeze(-1)
            rbf = self.rbf(dist)
            h, v, t, gs, gv, step = layer(
                h,
                v,
                t,
                m,
                table,
                rbf,
                unit,
                rel,
                edge_index,
                pair,
                gs,
                gv,
                batch,
                num_graphs,
                waves,
            )
            x = x + step * movable
            positions.append(x)
        return positions

    def _guard(self, x: Tensor, start: Tensor) -> Tensor:
        """``x`` with atoms beyond ``config.max_displacement`` from ``start`` put back there."""
        limit = self.config.max_displacement
        if limit is None:
            return x
        move = (x - start).norm(dim=-1)
        far = move > limit
        if bool(far.any()):
            warnings.warn(
                f"DefiNet predicted {int(far.sum())} atom(s) to move more than {limit} A "
                f"(largest {float(move.max()):.1f} A); they are left at their start positions. "
                "The input is unlike the training data.",
                OutOfDistributionWarning,
                stacklevel=2,
            )
        return torch.where(far.unsqueeze(-1), start, x)


def load_pretrained(model: DefiNet, pretrained: DefiNet, source: str = "init_from") -> int:
    """Copy ``pretrained``'s weights into ``model``; returns the number of layers added on top.

    ``model`` (freshly built) may be deeper than ``pretrained`` (same width, radial basis and
    cutoff): its extra layers keep their initialisation, whose coordinate steps start at zero,
    so the grown model predicts exactly what ``pretrained`` did until training moves it.
    Likewise ``model`` may add ``electron_parity``, whose embedding starts at zero, and the
    long-range exchange (``reciprocal_cutoff``), whose outputs start at zero.
    """
    ours, theirs = model.config, pretrained.config
    fixed = (
        "hidden",
        "num_rbf",
        "cutoff",
        "max_z",
        "num_markers",
        "feature_norm",
        "tensor_channels",
    )
    changed = [
        f"{k}: {getattr(theirs, k)} -> {getattr(ours, k)}"
        for k in fixed
        if getattr(ours, k) != getattr(theirs, k)
    ]
    if theirs.electron_parity and not ours.electron_parity:
        changed.append("electron_parity: True -> False")
    adds_long_range = ours.reciprocal_cutoff > 0 and theirs.reciprocal_cutoff == 0
    if theirs.reciprocal_cutoff > 0:  # a trained long-range exchange must be kept as it is
        changed += [
            f"{k}: {getattr(theirs, k)} -> {getattr(ours, k)}"
            for k in ("reciprocal_cutoff", "reciprocal_channels")
            if getattr(ours, k) != getattr(theirs, k)
        ]
    if ours.num_layers < theirs.num_layers:
        changed.append(f"num_layers: {theirs.num_layers} -> {ours.num_layers} (fewer)")
    if changed:
        raise ValueError(
            f"{source}: the model section does not fit the pretrained model ({'; '.join(changed)}); "
            "only num_layers may grow and electron_parity or the long-range exchange be added"
        )
    missing, unexpected = model.load_state_dict(pretrained.state_dict(), strict=False)
    grown = {f"layers.{i}." for i in range(theirs.num_layers, ours.num_layers)}
    if ours.electron_parity and not theirs.electron_parity:
        grown.add("embed_parity.")
    if adds_long_range:
        grown.add("reciprocal_basis.")
        grown.update(f"layers.{i}.reciprocal." for i in range(ours.num_layers))
    assert not unexpected and all(any(k.startswith(g) for g in grown) for k in missing)
    return ours.num_layers - theirs.num_layers
