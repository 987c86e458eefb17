"""DefiNet network layers."""

from definet.nn.definet import DefiNet, DefiNetConfig, load_pretrained
from definet.nn.routed import DensityRoutedDefiNet

__all__ = ["DefiNet", "DefiNetConfig", "DensityRoutedDefiNet", "load_pretrained"]
