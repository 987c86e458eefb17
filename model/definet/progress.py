"""Progress bars that stay readable in log files.

On a terminal (or in a notebook) a bar redraws as usual; written to a file, as under ``nohup``
or a batch scheduler, it prints a line a minute instead of a carriage-return redraw every
tenth of a second (which made a training log megabytes of bar).
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm
from tqdm.notebook import tqdm as notebook_tqdm

#: Seconds between two lines of a bar written to a file.
LOG_INTERVAL = 60.0


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, off unless ``enabled``, a line a minute in a log file."""
    redraws = issubclass(tqdm, notebook_tqdm) or sys.stderr.isatty()
    if not redraws:
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        kwargs.setdefault("maxinterval", LOG_INTERVAL)  # tqdm's monitor would print sooner
    return tqdm(iterable, disable=not enabled, **kwargs)
