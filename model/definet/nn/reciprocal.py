"""Long-range exchange through the supercell's reciprocal lattice (Ewald-style messages).

Many interacting defects set up a strain field that spans the whole supercell. Local messages
reach it only through many layers; here every node also reads and writes the structure factors
of its structure's features at the longest wavelengths the periodic cell allows: the reciprocal
lattice vectors ``k`` with ``0 < |k| <= cutoff``. For each such ``k`` the sums
``S_k = mean_i s_i exp(-i k.x_i)`` (scalar channels) and ``V_k = mean_i a_i exp(-i k.x_i)``
(vector channels) are filtered by learned functions of ``|k|`` and sent back as
``Re(S_k exp(i k.x_j))``, ``Re(V_k exp(i k.x_j))``, ``k^ Re(i S_k exp(i k.x_j))`` (a field along
``k`` from the density of a scalar, as elasticity gives for point defects) and
``Re(i k^.V_k exp(i k.x_j))`` (its divergence, back to the scalars).

Rotating the structure rotates its cell and so each ``k``; translating it changes each
``S_k`` by a phase that the way back undoes; ``k`` and ``-k`` give the same terms, so half the
lattice is enough; and the modes are chosen by ``|k|``, so another basis of the same lattice
gives the same modes. The block is therefore equivariant like the rest of the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.utils import to_dense_batch


def reciprocal_modes(cell: Tensor, cutoff: float) -> tuple[Tensor, Tensor]:
    """Reciprocal lattice vectors ``k`` (G, M, 3) of each cell (G, 3, 3; rows are lattice
    vectors) in one half of the lattice, and a smooth weight (G, M) that is 0 for ``k = 0`` and
    for ``|k| > cutoff`` (1/A). ``M`` covers the largest cell; smaller cells pad with weight 0."""
    lengths = cell.norm(dim=-1).amax(dim=0)  # (3,): the longest of each lattice vector
    reach = torch.floor(lengths * cutoff / (2 * math.pi)).long().tolist()
    axes = [torch.arange(-n, n + 1, device=cell.device) for n in reach]
    n = torch.cartesian_prod(*axes).reshape(-1, 3)
    # one of each pair n, -n: the first non-zero component positive (n = 0 dropped)
    first = torch.where(n[:, 0] != 0, n[:, 0], torch.where(n[:, 1] != 0, n[:, 1], n[:, 2]))
    n = n[first > 0].to(cell.dtype)
    recip = 2 * math.pi * torch.linalg.inv(cell).transpose(-1, -2)  # rows b_i, a_i.b_j = 2pi d_ij
    k = torch.einsum("mi,gij->gmj", n, recip)
    size = k.norm(dim=-1)
    weight = torch.where(size <= cutoff, 0.5 * (1 + torch.cos(math.pi * size / cutoff)), 0.0)
    return k, weight


class ReciprocalBasis(nn.Module):
    """Gaussians of ``|k|`` on ``[0, cutoff]`` (the inputs of the learned filters)."""

    def __init__(self, cutoff: float, num_basis: int = 8) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, cutoff, num_basis))
        self.width = cutoff / max(num_basis - 1, 1)

    def forward(self, size: Tensor) -> Tensor:
        return torch.exp(-(((size.unsqueeze(-1) - self.centres) / self.width) ** 2))


class ReciprocalExchange(nn.Module):
    """One layer's long-range update ``(dh, dv)`` of ``hidden`` scalar and vector channels,
    through ``channels`` channels per mode. Its outputs start at zero, so adding it to a
    trained model leaves the predictions unchanged until training moves it."""

    def __init__(self, hidden: int, channels: int, num_basis: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.source_s = nn.Linear(hidden, channels)
        self.source_v = nn.Linear(hidden, channels, bias=False)
        self.filter = nn.Linear(num_basis, 4 * channels)
        self.out_s = nn.Linear(channels, hidden, bias=False)
        self.out_v = nn.Linear(channels, hidden, bias=False)
        self.gate = nn.Linear(hidden, hidden)

    def reset_output(self) -> None:
        nn.init.zeros_(self.out_s.weight)
        nn.init.zeros_(self.out_v.weight)

    def forward(
        self,
        h: Tensor,
        v: Tensor,
        waves: ReciprocalWaves,
        batch: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """``(dh, dv)`` of every node, from the structure factors of its own structure."""
        cos, sin, mask = waves.cos, waves.sin, waves.mask  # (G, n, M), (G, n)
        c = self.channels
        s, _ = to_dense_batch(
            self.source_s(h), batch, batch_size=cos.shape[0], max_num_nodes=cos.shape[1]
        )
        a, _ = to_dense_batch(
            self.source_v(v).flatten(1), batch, batch_size=cos.shape[0], max_num_nodes=cos.shape[1]
        )  # (G, n, 3C): component-major
        cos_t, sin_t = (
            (cos * waves.inv_count).transpose(1, 2),
            (sin * waves.inv_count).transpose(1, 2),
        )
        # structure factors S = mean s exp(-i k.x), V likewise: (G, M, C) and (G, M, 3, C)
        s_re, s_im = cos_t @ s, -(sin_t @ s)
        v_re = (cos_t @ a).unflatten(-1, (3, c))
        v_im = -(sin_t @ a).unflatten(-1, (3, c))
        filters = self.filter(waves.basis) * waves.weight.unsqueeze(-1)  # 0 beyond the cutoff
        w_ss, w_vv, w_sv, w_vs = torch.split(filters, c, dim=-1)
        khat = waves.khat.unsqueeze(-1)  # (G, M, 3, 1)
        d_re, d_im = (v_re * khat).sum(2), (v_im * khat).sum(2)  # k^.V
        # back through exp(i k.x): Re(z e^{ip}) = re cos - im sin, Re(i z e^{ip}) = -(re sin + im cos)
        dh = cos @ (w_ss * s_re - w_vs * d_im) - sin @ (w_ss * s_im + w_vs * d_re)
        vec_cos = w_vv.unsqueeze(2) * v_re - (w_sv * s_im).unsqueeze(2) * khat
        vec_sin = w_vv.unsqueeze(2) * v_im + (w_sv * s_re).unsqueeze(2) * khat
        dv = cos @ vec_cos.flatten(2) - sin @ vec_sin.flatten(2)  # (G, n, 3C)
        dh, dv = dh[mask], dv[mask].unflatten(-1, (3, c))
        dv = self.out_v(dv)  # (N, 3, hidden)
        return self.out_s(dh), dv * torch.sigmoid(self.gate(h)).unsqueeze(1)


@dataclass
class ReciprocalWaves:
    """What every layer's exchange needs of the modes, per structure: ``cos``/``sin`` (G, n, M)
    of each node's phase ``k.x`` (n: the largest structure's node count, zero-padded),
    ``mask`` (G, n) of the real entries, ``inv_count`` (G, 1, 1) for means, unit ``khat``
    (G, M, 3), the filter inputs ``basis`` (G, M, B) and the mode weights ``weight`` (G, M),
    which multiply the filters (0 for a mode beyond the cutoff of that structure's cell)."""

    cos: Tensor
    sin: Tensor
    mask: Tensor
    inv_count: Tensor
    khat: Tensor
    basis: Tensor
    weight: Tensor


def node_phases(
    pos: Tensor, cell: Tensor, batch: Tensor, cutoff: float, basis: ReciprocalBasis
) -> ReciprocalWaves:
    """The modes of each structure's cell and every node's phases (:class:`ReciprocalWaves`);
    modes beyond the cutoff in every cell of the batch are left out."""
    k, weight = reciprocal_modes(cell.to(pos.dtype), cutoff)
    used = (weight > 0).any(dim=0)
    k, weight = k[:, used], weight[:, used]
    size = k.norm(dim=-1)
    x, mask = to_dense_batch(pos, batch, batch_size=cell.shape[0])
    phase = x @ k.transpose(1, 2)  # (G, n, M)
    real = mask.unsqueeze(-1).to(pos.dtype)
    count = mask.sum(dim=1).clamp_min(1).to(pos.dtype).view(-1, 1, 1)
    return ReciprocalWaves(
        cos=torch.cos(phase) * real,
        sin=torch.sin(phase) * real,
        mask=mask,
        inv_count=1.0 / count,
        khat=k / size.clamp_min(1e-9).unsqueeze(-1),
        basis=basis(size),
        weight=weight,
    )
