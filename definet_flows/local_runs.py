"""What local runs of flows share (``definet validate``, ``definet generate``): the folder
jobs write into, the log of failed jobs' tracebacks, and tidying up after them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["FAILURE_LOG", "failure_log", "job_work_dir", "remove_empty_job_dirs"]

#: File in the work folder that collects the tracebacks of failed jobs.
FAILURE_LOG = "failures.log"


def job_work_dir(store: str | Path, work_dir: str | Path | None = None) -> Path:
    """The folder local job runs write into (made if missing): ``work_dir``, else ``jobs``
    beside an embedded store, or ``definet_jobs`` here when ``store`` is a config file."""
    if work_dir is None:
        is_config = Path(store).expanduser().is_file()
        work_dir = "definet_jobs" if is_config else Path(store) / "jobs"
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir


def remove_empty_job_dirs(work_dir: Path) -> None:
    """Drop the empty folders run_locally made for jobs that write no files."""
    for path in work_dir.glob("job_*"):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


class _FailedJobs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "failed with exception" in record.getMessage()


@contextmanager
def failure_log(work_dir: str | Path) -> Iterator[Path]:
    """Append the traceback of every job that fails meanwhile (jobflow's ``run_locally``
    reports them at INFO level only) to ``<work_dir>/failures.log``; yields its path. The file
    is opened at the first failure only (no empty log; worker processes append side by side)."""
    path = Path(work_dir) / FAILURE_LOG
    handler = logging.FileHandler(path, delay=True)
    handler.addFilter(_FailedJobs())
    jobflow_logger = logging.getLogger("jobflow")
    # a logging.config.dictConfig elsewhere in the process (jobflow-remote's) may have disabled
    # the logger that reports failed jobs
    reporter = logging.getLogger("jobflow.managers.local")
    level, disabled = jobflow_logger.level, reporter.disabled
    jobflow_logger.addHandler(handler)
    jobflow_logger.setLevel(logging.INFO)
    reporter.disabled = False
    try:
        yield path
    finally:
        jobflow_logger.removeHandler(handler)
        jobflow_logger.setLevel(level)
        reporter.disabled = disabled
        handler.close()
