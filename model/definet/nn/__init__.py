"""DefiNet network layers."""

from definet.nn.definet import DefiNet, DefiNetConfig

__all__ = ["DefiNet", "DefiNetConfig"]
