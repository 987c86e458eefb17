"""DefiNet network layers."""

from definet.nn.capped import NeighbourCapped
from definet.nn.definet import DefiNet, DefiNetConfig, load_pretrained
from definet.nn.ensemble import EnsembleDefiNet
from definet.nn.routed import DensityRoutedDefiNet

__all__ = [
    "DefiNet",
    "DefiNetConfig",
    "DensityRoutedDefiNet",
    "EnsembleDefiNet",
    "NeighbourCapped",
    "load_pretrained",
]
