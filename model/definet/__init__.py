"""DefiNet: one-pass prediction of relaxed point-defect structures.

from definet import Predictor
relaxed = Predictor().predict(marked_structures)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["DefiNet", "DefiNetConfig", "Predictor", "__version__"]

if TYPE_CHECKING:
    from definet.nn import DefiNet, DefiNetConfig
    from definet.predict import Predictor


def __getattr__(name: str):
    if name in ("DefiNet", "DefiNetConfig"):
        from definet import nn

        return getattr(nn, name)
    if name == "Predictor":
        from definet.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'definet' has no attribute {name!r}")
