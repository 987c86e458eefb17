"""scripts/ship_model.py: the model card says which graphs the shipped file is served."""

from __future__ import annotations

import pytest

from definet.data.graphs import GraphSettings
from tests.repo_scripts import load_script


@pytest.fixture(scope="module")
def ship_model():
    return load_script("scripts/ship_model.py")


def test_card_names_defect_edges_and_the_members_trained_without(ship_model) -> None:
    plain = GraphSettings(5.0, 16)
    served = GraphSettings(5.0, 16, defect_cutoff=9.0)
    text = ship_model.graph_text(served, [served, plain, plain])
    assert "every defect site joined to every node within 9.0 A" in text
    assert text.count("2 of the 3 DefiNets were trained on the plain cap") == 1


def test_card_of_plain_graphs_mentions_neither(ship_model) -> None:
    plain = GraphSettings(5.0, 16)
    text = ship_model.graph_text(plain, [plain, plain])
    assert text == "graph cutoff 5.0 A with at most 16 neighbours"
