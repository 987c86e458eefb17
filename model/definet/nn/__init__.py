"""DefiNet network layers."""

from definet.nn.definet import DefiNet, DefiNetConfig, load_pretrained
from definet.nn.ensemble import EnsembleDefiNet
from definet.nn.routed import DensityRoutedDefiNet

__all__ = ["DefiNet", "DefiNetConfig", "DensityRoutedDefiNet", "EnsembleDefiNet", "load_pretrained"]
