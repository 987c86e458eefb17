"""Local runs: where jobs write, and the log of the jobs that failed."""

from __future__ import annotations

import logging

from jobflow import job, run_locally

from definet_flows.local_runs import failure_log, job_work_dir, remove_empty_job_dirs


@job
def crash(message: str) -> None:
    raise RuntimeError(message)


@job
def fine() -> int:
    return 1


def test_failed_jobs_leave_their_traceback_even_with_a_disabled_reporter(tmp_path):
    reporter = logging.getLogger("jobflow.managers.local")
    reporter.disabled = True  # as a dictConfig elsewhere in the process (jobflow-remote) leaves it
    try:
        with failure_log(tmp_path) as path:
            run_locally(crash("boom at step 7"), root_dir=tmp_path, log=False)
        text = path.read_text()
        assert "failed with exception" in text and "RuntimeError: boom at step 7" in text
        assert reporter.disabled  # restored as it was
    finally:
        reporter.disabled = False
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    with failure_log(quiet) as path:
        run_locally(fine(), root_dir=quiet, log=False)
    assert not path.exists()  # nothing failed: no empty log left behind


def test_work_dir_beside_an_embedded_store_or_here_for_a_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert job_work_dir(tmp_path / "store") == tmp_path / "store" / "jobs"
    config = tmp_path / "store.yaml"
    config.write_text("results_store: {type: MemoryStore, collection_name: c}\n")
    assert job_work_dir(config).resolve() == (tmp_path / "definet_jobs").resolve()
    assert job_work_dir(config, tmp_path / "mine") == tmp_path / "mine"
    (tmp_path / "mine" / "job_1").mkdir()
    (tmp_path / "mine" / "job_2").mkdir()
    (tmp_path / "mine" / "job_2" / "out.txt").write_text("kept")
    remove_empty_job_dirs(tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["job_2"]
