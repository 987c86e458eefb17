"""Progress bars: redrawn on a terminal, a line a minute in a log file, off when disabled."""

from __future__ import annotations

import io

import pytest

from definet import progress
from definet.progress import LOG_INTERVAL, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "interval"), [(io.StringIO, LOG_INTERVAL), (Terminal, 0.1)])
def test_interval_follows_the_stream(monkeypatch, stream, interval) -> None:
    err = stream()
    monkeypatch.setattr(progress.sys, "stderr", err)
    with progress_bar(total=3, file=err) as bar:
        assert bar.mininterval == interval
        bar.update(3)
    assert "3/3" in err.getvalue()


def test_disabled_bar_writes_nothing(monkeypatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", err)
    assert list(progress_bar(range(4), enabled=False, file=err)) == [0, 1, 2, 3]
    assert err.getvalue() == ""
