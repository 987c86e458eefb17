"""Report: Markdown and readable PNG plots from documents or a store."""

from __future__ import annotations

import matplotlib.image as mpimg
import pytest

from definet_flows.report import write_report
from definet_flows.stores import default_store, upsert_validation_docs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = [
    "steps_histogram.png",
    "steps_vs_n_sites.png",
    "steps_vs_n_defects.png",
    "energy_parity.png",
]


@pytest.fixture(scope="module")
def docs(make_docs):
    return make_docs(30, seed=4)


def check_report(path, docs):
    assert path.name == "report.md" and path.stat().st_size > 0
    text = path.read_text()
    for plot in PLOTS:
        png = path.parent / plot
        assert png.read_bytes()[:8] == PNG_MAGIC
        height, width, _ = mpimg.imread(png).shape
        assert height > 300 and width > 300
        assert f"]({plot})" in text
    for host in {d.host for d in docs}:
        assert f"| {host} |" in text
    assert f"from {len(docs)} ValidationDocs" in text


def test_report_from_docs(tmp_path, docs):
    check_report(write_report(docs, tmp_path / "report"), docs)


def test_report_from_store(tmp_path, docs):
    store = default_store(tmp_path / "db")
    store.connect()
    upsert_validation_docs(store, docs)
    store.close()
    check_report(write_report(store, tmp_path / "report"), docs)


def test_report_needs_documents(tmp_path):
    with pytest.raises(ValueError, match="No ValidationDocs"):
        write_report([], tmp_path)


def test_headline_figures_never_pool_two_checkpoints(tmp_path, make_docs):
    first = make_docs(6, seed=1)
    second = [
        d.model_copy(update={"checkpoint_sha256": "b" * 64, "key": f"{d.key}-b"})
        for d in make_docs(6, seed=2)
    ]
    text = write_report(first + second, tmp_path / "report").read_text()
    for checkpoint in {first[0].checkpoint_sha256, "b" * 64}:
        assert f"checkpoint {checkpoint[:12]}** (6 defects)" in text
    assert text.count("them out): ") == 2
    assert "of 12" not in text  # no figure counts both checkpoints' documents together
    alone = write_report(first, tmp_path / "alone").read_text()
    assert "** (" not in alone and alone.count("them out): ") == 1
