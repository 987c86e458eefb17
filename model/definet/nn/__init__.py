"""DefiNet network layers."""

from definet.nn.definet import DefiNet, DefiNetConfig
from definet.nn.routed import DensityRoutedDefiNet

__all__ = ["DefiNet", "DefiNetConfig", "DensityRoutedDefiNet"]
