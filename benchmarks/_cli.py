"""What the benchmark scripts' command lines share: bad input ends in one line, not a
traceback (``python benchmarks/<name>.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn


def run(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s status; a missing or unreadable dataset, checkpoint or file
    exits 1 with ``error: <what and where>``."""
    from definet.checkpoint import CheckpointError
    from definet.data.dataset import DatasetError

    try:
        sys.exit(main())
    except (DatasetError, CheckpointError, FileNotFoundError) as exc:
        sys.exit(f"error: {exc}")
