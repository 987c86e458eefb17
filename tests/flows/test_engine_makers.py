"""custodian pieces of the engines, checked on a real CP2K output made by the pipeline."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from definet_flows.engine_makers import Cp2kCompletedValidator

# CP2K 2023.1 GEO_OPT of a 3x3 h-BN v_B+C_N defect (benchmarks/cp2k_hbn.py): the SCF at the
# start geometry stopped at its iteration cap, every later SCF converged, the optimisation
# completed. Its first SCF must not fail the run (it did before, and the defect was lost).
REAL_OUTPUT = Path(__file__).parent / "data" / "cp2k-geo-opt-first-scf-unconverged.out.gz"


def _write(directory: Path, text: str) -> None:
    (directory / "cp2k.out").write_text(text)


@pytest.fixture
def real_text() -> str:
    return gzip.decompress(REAL_OUTPUT.read_bytes()).decode()


def test_completed_run_with_an_early_unconverged_scf_is_valid(real_text, tmp_path) -> None:
    assert real_text.count("SCF run NOT converged") == 1
    assert real_text.index("SCF run NOT converged") < real_text.index("SCF run converged")
    _write(tmp_path, real_text)
    assert Cp2kCompletedValidator().check(str(tmp_path)) is False


def test_unconverged_last_scf_is_invalid(real_text, tmp_path) -> None:
    last = real_text.rindex("SCF run converged in")
    end = real_text.index("***", last)
    _write(tmp_path, real_text[:last] + "SCF run NOT converged " + real_text[end:])
    assert Cp2kCompletedValidator().check(str(tmp_path)) is True


def test_unfinished_run_is_invalid(real_text, tmp_path) -> None:
    _write(tmp_path, real_text[: real_text.index("GEOMETRY OPTIMIZATION COMPLETED")])
    assert Cp2kCompletedValidator().check(str(tmp_path)) is True
