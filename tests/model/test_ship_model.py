"""scripts/ship_model.py: the model card says which graphs the shipped file is served and what it saw
in training."""

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


def test_card_names_what_the_model_saw(ship_model) -> None:
    card = {
        "host_kinds_seen": ["Mo-S layer"],
        "hosts": ["MoS2_500"],
        "elements_seen": [16, 42],
        "defect_markers_seen": [0, 2],
    }
    text = ship_model.seen_text(card)
    assert text.startswith("hosts Mo-S layer; elements S, Mo; sites pristine, vacancy.")
    # a card of a checkpoint that recorded no host kinds names its host folders
    assert ship_model.seen_text(card | {"host_kinds_seen": None}).startswith("hosts MoS2_500;")


def test_host_kinds_of_old_checkpoints_come_from_the_unit_cells(ship_model, tiny_dataset) -> None:
    assert ship_model.host_kinds_of({"hosts": ["MoS2_500"]}, str(tiny_dataset)) == {"Mo-S layer"}
    recorded = {"hosts": ["MoS2_500"], "host_kinds": ["Mo-S bulk"]}
    assert ship_model.host_kinds_of(recorded, str(tiny_dataset)) == {"Mo-S bulk"}
    with pytest.raises(SystemExit, match="no host folder WSe2_500"):
        ship_model.host_kinds_of({"hosts": ["MoS2_500", "WSe2_500"]}, str(tiny_dataset))


def test_member_1_serves_the_low_density_hosts(ship_model) -> None:
    assert ship_model.low_density_hosts(["MoS2", "WSe2"]) == [[16, 42], [34, 74]]
    assert ship_model.low_density_hosts(["any"]) is None
    for bad in ("Xx2", "mos2"):
        with pytest.raises(SystemExit, match=f"--low-density-hosts {bad}: "):
            ship_model.low_density_hosts(["MoS2", bad])
    clause = ship_model.hosts_clause([[16, 42], [34, 74]])
    assert clause.endswith("vacant sites) is Mo-S or Se-W ")
    assert ship_model.hosts_clause(None) == ""


def test_card_names_the_long_range_exchange_of_the_members_that_have_it(ship_model) -> None:
    from definet.nn import DefiNetConfig

    plain = DefiNetConfig(num_layers=6, feature_norm=True)
    grown = DefiNetConfig(num_layers=8, feature_norm=True, reciprocal_cutoff=0.65)
    text = ship_model.architecture_text([[plain], [plain, grown]])
    assert text.count("long-range exchange through the reciprocal lattice to 0.65 1/A") == 1
    assert "8 layers, 20 radial functions to 6.0 A, normalised features, long-range" in text
