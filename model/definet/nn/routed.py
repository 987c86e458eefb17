"""Several DefiNets behind one forward: each structure goes to the member for its defect density.

The shipped model pairs a joint DefiNet (trained on both densities of the DefiNet set) with an
ensemble of DefiNets trained on the high-density hosts only. A structure goes to the first
member ``k`` whose bound its fraction of defect sites (markers other than pristine, vacancy
nodes included) is within (``max_defect_fraction[k]``) and, where ``member_hosts[k]`` names
hosts, whose host is one of them (the chemical system of its pristine and vacant sites, as
sets of atomic numbers); the last member takes everything else. Routing is per structure inside
a batch, so a mixed batch gives the same coordinates as running every structure on its own
member.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from definet.data.markers import PRISTINE, host_sites
from definet.nn.definet import DefiNet
from definet.nn.ensemble import EnsembleDefiNet


class DensityRoutedDefiNet(nn.Module):
    """Routes each structure of a batch to one of several :class:`DefiNet` members.

    Parameters
    ----------
    members
        DefiNets (or ensembles of them), from the lowest to the highest defect density they serve.
    max_defect_fraction
        Upper bound (inclusive) of the defect fraction of each member but the last, ascending.
    member_hosts
        For each member but the last: None (any host), or the hosts it serves, each a list of
        atomic numbers (``[[16, 42], [34, 74]]``: MoS2 and WSe2, whatever their substitutions).
    """

    def __init__(
        self,
        members: Sequence[DefiNet | EnsembleDefiNet],
        max_defect_fraction: Sequence[float],
        member_hosts: Sequence[Sequence[Sequence[int]] | None] | None = None,
    ) -> None:
        super().__init__()
        if len(members) < 2 or len(max_defect_fraction) != len(members) - 1:
            raise ValueError(
                f"{len(members)} members need {len(members) - 1} defect-fraction bounds, "
                f"got {len(max_defect_fraction)}"
            )
        if list(max_defect_fraction) != sorted(max_defect_fraction):
            raise ValueError(f"defect-fraction bounds must ascend: {list(max_defect_fraction)}")
        member_hosts = list(member_hosts or [None] * (len(members) - 1))
        if len(member_hosts) != len(members) - 1:
            raise ValueError(
                f"{len(members)} members need {len(members) - 1} host lists (None: any host), "
                f"got {len(member_hosts)}"
            )
        for hosts in member_hosts:
            if hosts is not None and (not hosts or not all(hosts)):
                raise ValueError(
                    f"member hosts {hosts}: give each host's atomic numbers, or None for any host"
                )
        self.members = nn.ModuleList(members)
        self.register_buffer(
            "max_defect_fraction", torch.tensor(list(max_defect_fraction), dtype=torch.float64)
        )
        self.member_hosts = [
            None if hosts is None else [sorted({int(z) for z in host}) for host in hosts]
            for hosts in member_hosts
        ]
        self.config = members[0].config  # embedding limits (max_z, num_markers) are shared

    def _host_is_one_of(
        self, hosts: list[list[int]], z: Tensor, marker: Tensor, batch: Tensor, num_graphs: int
    ) -> Tensor:
        """Whether each structure's host (elements of its pristine and vacant sites) is one of
        ``hosts``, shape (num_graphs,)."""
        size = max(int(z.max()), *(max(h) for h in hosts)) + 1
        site = host_sites(marker)
        present = torch.zeros(num_graphs, size, dtype=torch.bool, device=z.device)
        present[batch[site], z[site]] = True
        wanted = torch.zeros(len(hosts), size, dtype=torch.bool, device=z.device)
        for k, host in enumerate(hosts):
            wanted[k, host] = True
        return (present[:, None, :] == wanted[None, :, :]).all(-1).any(-1)

    def route(self, z: Tensor, marker: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """Index of the member serving each structure, shape (num_graphs,)."""
        defect = (marker != PRISTINE).to(torch.float64)
        fraction = scatter(defect, batch, dim=0, dim_size=num_graphs, reduce="mean")
        route = torch.full((num_graphs,), len(self.members) - 1, device=z.device)
        for k in reversed(range(len(self.members) - 1)):  # the first eligible member wins
            eligible = fraction <= self.max_defect_fraction[k].to(fraction.device)
            if self.member_hosts[k] is not None:
                eligible &= self._host_is_one_of(self.member_hosts[k], z, marker, batch, num_graphs)
            route = torch.where(eligible, k, route)
        return route

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
        """Relaxed coordinates (N, 3); the arguments are those of :meth:`DefiNet.forward`."""
        if batch is None:
            batch = torch.zeros_like(z)
        num_graphs = num_graphs or int(batch.max()) + 1
        node_member = self.route(z, marker, batch, num_graphs)[batch]
        out = pos.to(next(self.parameters()).dtype).clone()
        for k, member in enumerate(self.members):
            nodes = node_member == k
            if not bool(nodes.any()):
                continue
            # edges never cross structures, so an edge is kept when its target is
            edges = nodes[edge_index[1]]
            new_index = torch.cumsum(nodes, 0) - 1
            graphs, sub_batch = torch.unique(batch[nodes], return_inverse=True)
            out[nodes] = member(
                z[nodes],
                marker[nodes],
                pos[nodes],
                new_index[edge_index[:, edges]],
                edge_shift[edges],
                sub_batch,
                len(graphs),
                None if cell is None else cell.reshape(-1, 3, 3)[graphs],
            )
        return out
