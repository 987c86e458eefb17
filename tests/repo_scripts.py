"""Import the repository's scripts (``benchmarks/``, ``scripts/``) as modules: they are files
to run, not packages, so tests load them by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str, with_siblings: bool = False) -> ModuleType:
    """Import ``relative`` (e.g. ``scripts/ship_model.py``) as a module; ``with_siblings`` puts
    its folder on ``sys.path`` first, for scripts that import the scripts beside them."""
    path = REPO / relative
    if with_siblings and str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` as a module."""
    return load_script(f"benchmarks/{name}.py")
