"""Ship a trained checkpoint in the package, with its model card.

    python scripts/ship_model.py checkpoints/definet-joint/best.pt \
        --high-density checkpoints/definet-high-density-fnorm{-balanced,-balanced-seed1,8-balanced,8}/best.pt \
        --high-density-config workflows/train/definet-high-density-fnorm{-balanced,-balanced-seed1,8-balanced,8}.yaml
    python scripts/ship_model.py runs/three-steps/finetune/best.pt --name definet-chgnet \
        --config workflows/train/definet-chgnet-finetune.yaml --ids-from runs/three-steps/dataset

Copies the EMA weights to ``model/definet/weights/<name>.pt`` and writes the model card
``<name>.json`` / ``<name>.md`` beside it: data and split, hyper-parameters, parameter count,
training wall time and hardware, validation metrics per host, licence. With
``--high-density`` the shipped file routes each structure by its defect fraction (see
:class:`definet.nn.DensityRoutedDefiNet`): up to ``--max-low-density-fraction`` to the first
checkpoint, above it to the high-density one; the card's validation is then measured on the
val split of ``--data-root`` with the routed model. Several ``--high-density`` checkpoints (each
with its ``--high-density-config``) are shipped as one :class:`definet.nn.EnsembleDefiNet`,
the mean of their predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Element

from definet.checkpoint import (
    ensemble_from_files,
    file_sha256,
    load_model,
    model_payload,
    read_checkpoint,
    routed_payload,
    save_atomic,
)
from definet.data.graphs import GraphSettings
from definet.data.markers import DATASET_MARKERS, MARKER_NAMES
from definet.nn.definet import DefiNetConfig
from definet.predict import DEFAULT_CHECKPOINT
from definet.scope import shared_record
from definet.train_config import read_config_settings

ROOT = Path(__file__).resolve().parents[1]
DATA_CITATION = (
    "DefiNet dataset, Ziduo Yang and Lei Shen, Zenodo record 14027373, licence CC BY 4.0; "
    "Yang et al., npj Comput. Mater. 2025, doi:10.1038/s41524-025-01728-w"
)
#: Largest defect fraction of the low-density set: 3 vacancies + 3 substitutions of 192 sites.
LOW_DENSITY_MAX_FRACTION = 6 / 192
#: Displacement guard (A) of the shipped members: above the largest DFT move of any atom in the
#: high-density training set (4.14 A), so no relaxation the model learned from is cut.
MAX_DISPLACEMENT = 5.0


def low_density_hosts(formulas: list[str]) -> list[list[int]] | None:
    """The hosts member 1 serves, as atomic numbers (``["MoS2"]`` -> ``[[16, 42]]``); None for
    ``["any"]``."""
    if [f.lower() for f in formulas] == ["any"]:
        return None
    hosts = []
    for formula in formulas:
        try:
            elements = Composition(formula).elements
        except ValueError as err:
            sys.exit(f"error: --low-density-hosts {formula}: {err}")
        if not elements or not all(isinstance(e, Element) for e in elements):
            sys.exit(f"error: --low-density-hosts {formula}: not a formula of elements")
        hosts.append(sorted(e.Z for e in elements))
    return hosts


def hosts_clause(hosts: list[list[int]] | None) -> str:
    """The model card's words on which hosts member 1 serves at low density."""
    if hosts is None:
        return ""
    names = " or ".join("-".join(sorted(Element.from_Z(z).symbol for z in h)) for h in hosts)
    return f"and whose host (the elements of its pristine and vacant sites) is {names} "


def member_card(checkpoint: str, config_path: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Training facts of one trained checkpoint (``best.pt`` beside its ``last.pt``), from its
    metadata (as :func:`load_model` returns it) and its training config."""
    last = Path(checkpoint).with_name("last.pt")
    seconds = read_checkpoint(last)["elapsed"] if last.exists() else meta["train_seconds"]
    return {
        "checkpoint": checkpoint,
        "training_config": read_config_settings(Path(config_path)),
        "train_command": f"definet train --config {config_path}",
        "n_parameters": meta["n_parameters"],
        "n_train": meta["n_train"],
        "n_val": meta["n_val"],
        "hosts": meta["hosts"],
        "elements_seen": meta["elements"],
        "steps": meta["steps"],
        "epochs": meta["epochs"],
        "training_wall_hours": round(seconds / 3600, 2),
        "validation": meta["validation"],
    }


def host_kinds_of(meta: dict[str, Any], data_root: str) -> set[str]:
    """The host kinds a checkpoint was trained on: from its metadata, or (checkpoints from
    before they were recorded) from the unit cells of its hosts under ``data_root``."""
    from definet.data.dataset import find_host_folders, read_structure
    from definet.data.hosts import structure_host_kind

    if "host_kinds" in meta:
        return set(meta["host_kinds"])
    folders = {f.name: f for f in find_host_folders(data_root, "train")}
    missing = sorted(set(meta["hosts"]) - set(folders))
    if missing:
        sys.exit(f"error: --data-root {data_root}: no host folder {', '.join(missing)}")
    kinds = {structure_host_kind(read_structure(folders[h].unit_cell)) for h in meta["hosts"]}
    return kinds - {None}


def routed_validation(path: Path, data_root: str) -> dict:
    """Validation figures of a shipped (routed) checkpoint on the val split."""
    from definet.data.dataset import load_split
    from definet.inference import evaluate_graphs

    model, graph, _ = load_model(path)
    return evaluate_graphs(model, load_split(data_root, "val", settings=graph, progress=False))


def validation_table(validation: dict) -> str:
    rows = [
        f"| {h} | {r['n']} | {r['mae']:.4f} | {r['dummy_mae']:.4f} | {r['ratio']:.3f} | "
        f"{r['local_mae_3A']:.4f} |"
        for h, r in validation["hosts"].items()
    ]
    o = validation["overall"]
    return "\n".join(
        [
            "| host | n | MAE | do-nothing MAE | ratio | local MAE 3 A |",
            "|---|---|---|---|---|---|",
            *rows,
            f"| **overall** | {o['n']} | {o['mae']:.4f} | {o['dummy_mae']:.4f} | "
            f"{o['ratio']:.3f} | {o['local_mae_3A']:.4f} |",
            "",
            f"Mean of the per-host ratios: {o['mean_host_ratio']:.3f}.",
        ]
    )


def _one_architecture(c: DefiNetConfig) -> str:
    return (
        f"hidden {c.hidden}, {c.num_layers} layers, {c.num_rbf} radial functions to {c.cutoff} A"
        + (", normalised features" if c.feature_norm else "")
        + (
            f", long-range exchange through the reciprocal lattice to {c.reciprocal_cutoff} 1/A"
            if c.reciprocal_cutoff
            else ""
        )
    )


def architecture_text(members: list[list[DefiNetConfig]]) -> str:
    """Width, depth, radial basis and feature normalisation of each member (a list of one config,
    or of an ensemble's configs), once when shared."""
    texts = [
        _one_architecture(configs[0])
        if len(configs) == 1
        else f"the mean of {len(configs)} DefiNets ("
        + "; ".join(_one_architecture(c) for c in configs)
        + ")"
        for configs in members
    ]
    if len(set(texts)) == 1:
        return texts[0]
    return "; ".join(f"member {k}: {t}" for k, t in enumerate(texts, 1))


def graph_text(served: GraphSettings, trained_on: list[GraphSettings]) -> str:
    """The graphs the file is served, and how members trained on other ones take theirs."""
    text = f"graph cutoff {served.cutoff} A with at most {served.max_neighbors} neighbours" + (
        " (whole shells)" if served.whole_shells else ""
    )
    if served.defect_cutoff:
        text += f", and every defect site joined to every node within {served.defect_cutoff} A"
    capped = sum(own != served for own in trained_on)
    if capped:
        text += (
            f"; {capped} of the {len(trained_on)} DefiNets were trained on the plain cap and take, "
            "of each atom's edges within their cutoff, the nearest up to it"
        )
    return text


def guard_text(limit: float | None) -> str:
    """The model card's line on the displacement guard."""
    if limit is None:
        return "none (every predicted move is kept)."
    return (
        f"an atom predicted to move more than {limit} A from its start is left there, with an "
        "OutOfDistributionWarning (`max_displacement` in each member's config)."
    )


def seen_text(card: dict[str, Any]) -> str:
    """The model card's line on what the model saw in training, beyond which it warns."""
    hosts = ", ".join(card["host_kinds_seen"] or card["hosts"])
    elements = ", ".join(Element.from_Z(z).symbol for z in card["elements_seen"])
    markers = ", ".join(MARKER_NAMES[m] for m in card["defect_markers_seen"])
    return (
        f"hosts {hosts}; elements {elements}; sites {markers}. A structure with any other host, "
        "element or kind of defect site is still predicted, with an OutOfDistributionWarning "
        "naming it."
    )


def training_lines(member: dict, hardware: str) -> str:
    hyper = {k: v for k, v in member["training_config"].items() if k not in ("model", "graph")}
    return (
        f"`{member['train_command']}`; {member['n_train']} training structures, "
        f"{member['steps']} steps ({member['epochs']} full epochs), "
        f"{member['training_wall_hours']:.2f} h of training on {hardware}.\n"
        f"  Hyper-parameters: `{json.dumps(hyper)}`."
    )


def member_2_lines(member: dict, note: str, hardware: str) -> str:
    """The model card's lines on the high-density member: one DefiNet, or an ensemble."""
    if "ensemble" not in member:
        return f"- **Member 2** (`{member['checkpoint']}`, {note}): " + training_lines(
            member, hardware
        )
    lines = [
        f"- **Member 2**: the mean of the predictions of {len(member['ensemble'])} DefiNets, "
        f"each {note}:"
    ]
    lines += [
        f"  - `{m['checkpoint']}`: " + training_lines(m, hardware).replace("\n  ", "\n    ")
        for m in member["ensemble"]
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    # relative: the card records it as the training command
    parser.add_argument("--config", default="workflows/train/definet-joint.yaml")
    parser.add_argument(
        "--high-density",
        nargs="+",
        help="checkpoint(s) serving high defect densities; several are averaged (an ensemble)",
    )
    parser.add_argument(
        "--high-density-config",
        nargs="+",
        default=[
            f"workflows/train/definet-high-density-fnorm{run}.yaml"
            for run in ("-balanced", "-balanced-seed1", "8-balanced", "8")
        ],
        help="the training config of each --high-density checkpoint, in the same order",
    )
    parser.add_argument(
        "--high-density-note",
        default="trained from scratch on the six high-density hosts",
        help="how the high-density checkpoint was made (for the model card)",
    )
    parser.add_argument(
        "--max-displacement",
        type=float,
        default=MAX_DISPLACEMENT,
        help="guard (A): atoms predicted to move further stay at their start; <= 0: none",
    )
    parser.add_argument("--max-low-density-fraction", type=float, default=LOW_DENSITY_MAX_FRACTION)
    parser.add_argument(
        "--low-density-hosts",
        nargs="+",
        default=["any"],
        help="member 1 serves low defect densities of these hosts (formulas) only, e.g. the "
        "low-density set's MoS2 WSe2; default any (of every host: with MoS2 WSe2 the val mean "
        "is 0.004 better but GaSe only 96-122x faster than CHGNet, README)",
    )
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared/data/definet-dataset"))
    parser.add_argument("--hardware", default=f"{os.cpu_count()}-core CPU ({platform.machine()})")
    parser.add_argument("--name", default="definet-default", help="weights file stem")
    parser.add_argument("--data", default=DATA_CITATION, help="what it was trained on")
    parser.add_argument(
        "--split",
        default="official train.csv for training, val.csv for validation, all 8 host folders "
        "of both densities; the test split is withheld",
    )
    parser.add_argument(
        "--ids-from", help="dataset root: record its train+val ids (never validate on them)"
    )
    args = parser.parse_args()
    if args.high_density and len(args.high_density) != len(args.high_density_config):
        parser.error(
            f"{len(args.high_density)} --high-density checkpoint(s) need as many "
            f"--high-density-config files, got {len(args.high_density_config)}"
        )
    if args.max_displacement <= 0:
        args.max_displacement = None

    model, graph, meta = load_model(args.checkpoint)
    members = [member_card(args.checkpoint, args.config, meta)]
    model.config.max_displacement = args.max_displacement
    payload = model_payload(model, graph, metadata=meta)
    architectures = [[model.config]]
    trained_on = [graph]
    if args.high_density:
        if len(args.high_density) == 1:
            high, high_graph, high_meta = load_model(args.high_density[0])
            high_payload = model_payload(high, high_graph, metadata=high_meta)
            high_members = [high_payload]
        else:
            high_payload = ensemble_from_files(args.high_density)
            high_members = high_payload["members"]
        for member in high_members:
            member["model_config"]["max_displacement"] = args.max_displacement
        high_cards = [
            member_card(checkpoint, config, member["metadata"])
            for checkpoint, config, member in zip(
                args.high_density, args.high_density_config, high_members, strict=True
            )
        ]
        architectures.append([DefiNetConfig(**m["model_config"]) for m in high_members])
        trained_on += [GraphSettings(**m["graph_settings"]) for m in high_members]
        hosts = set(meta["hosts"]).union(*(card["hosts"] for card in high_cards))
        # a structure may go to any member (routing looks at its density, not at what the
        # members saw): the file vouches for what every member saw
        recorded = shared_record(
            [
                m | {"host_kinds": sorted(host_kinds_of(m, args.data_root))}
                for m in [meta, *(member["metadata"] for member in high_members)]
            ]
        )
        if len(high_cards) == 1:
            members.append(high_cards[0])
        else:
            members.append(
                {
                    "ensemble": high_cards,
                    "n_parameters": sum(c["n_parameters"] for c in high_cards),
                }
            )
        meta = {
            "hosts": sorted(hosts),
            "elements": recorded["elements"],
            "host_kinds": recorded["host_kinds"],
            "markers": recorded["markers"],
            "members": [args.checkpoint, *args.high_density],
        }
        payload = routed_payload(
            [payload, high_payload],
            [args.max_low_density_fraction],
            metadata=meta,
            member_hosts=[low_density_hosts(args.low_density_hosts)],
        )
    path = DEFAULT_CHECKPOINT.with_name(f"{args.name}.pt")
    # staged beside it and validated first: a failure leaves the shipped file and its card as
    # they were
    staged = save_atomic(payload, path.with_name(f"{args.name}.new.pt"))
    try:
        validation = (
            routed_validation(staged, args.data_root) if args.high_density else meta["validation"]
        )
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    if args.high_density:
        payload["metadata"]["validation"] = validation
        save_atomic(payload, staged)

    card = {
        "name": args.name,
        "checkpoint_sha256": file_sha256(staged),
        "data": args.data,
        "split": args.split,
        "hardware": args.hardware,
        "n_parameters": sum(m["n_parameters"] for m in members),
        "hosts": meta["hosts"],
        "elements_seen": meta["elements"],
        "host_kinds_seen": meta.get("host_kinds"),
        "defect_markers_seen": meta.get("markers", list(DATASET_MARKERS)),
        "max_displacement": args.max_displacement,
        "validation": validation,
    }
    if len(members) == 1:
        card |= {k: v for k, v in members[0].items() if k not in ("checkpoint", "validation")}
    else:
        card["routing"] = {
            "rule": "fraction of defect sites (vacancy nodes included) <= max_defect_fraction "
            "and host (elements of the pristine and vacant sites) one of hosts (null: any host) "
            "-> members[0], else members[1]",
            "max_defect_fraction": args.max_low_density_fraction,
            "hosts": payload["member_hosts"][0],
        }
        card["members"] = members
    if args.ids_from:
        card["training_ids"] = sorted(
            line.strip()
            for split in ("train", "val")
            for csv_path in Path(args.ids_from).glob(f"*/{split}.csv")
            for line in csv_path.read_text().splitlines()[1:]
            if line.strip()
        )
        if not card["training_ids"]:
            staged.unlink(missing_ok=True)
            sys.exit(f"error: --ids-from {args.ids_from}: no <host>/train.csv or val.csv ids")
    staged.replace(path)
    card_json = path.with_suffix(".json")
    card_json.write_text(json.dumps(card, indent=2))

    if len(members) == 1:
        training = f"- **Training**: {training_lines(members[0], args.hardware)}"
    else:
        f = args.max_low_density_fraction
        training = (
            f"- **Routing**: one file, two members. A structure whose fraction of defect sites "
            f"(vacancy nodes included) is at most {f:.4f} (the low-density set's largest, "
            f"{round(f * 192)} of 192) {hosts_clause(payload['member_hosts'][0])}goes to "
            f"member 1, anything {'denser' if payload['member_hosts'][0] is None else 'else'} "
            "to member 2.\n"
            f"- **Member 1** (`{members[0]['checkpoint']}`, both densities, all hosts): "
            f"{training_lines(members[0], args.hardware)}\n"
            + member_2_lines(members[1], args.high_density_note, args.hardware)
        )
    md = f"""# DefiNet model `{args.name}.pt`

- **Data**: {args.data}.
- **Split**: {args.split}.
- **Architecture**: DefiNet, {architecture_text(architectures)},
  {graph_text(GraphSettings(**payload["graph_settings"]), trained_on)};
  {card["n_parameters"]:,} parameters in all.
{training}
- **Guard**: {guard_text(args.max_displacement)}
- **Seen in training**: {seen_text(card)}
- **Checkpoint sha256**: `{card["checkpoint_sha256"]}`

## Validation (val split; coordinate MAE in angstrom, vacancy nodes excluded)

{validation_table(validation)}
"""
    path.with_suffix(".md").write_text(md)
    print(f"shipped {path} ({path.stat().st_size / 1e6:.1f} MB), card {card_json}")


if __name__ == "__main__":
    main()
