"""Ship a trained checkpoint in the package, with its model card.

    python scripts/ship_model.py runs/definet-joint/best.pt [--config workflows/train/definet-joint.yaml]
    python scripts/ship_model.py runs/three-steps/finetune/best.pt --name definet-chgnet \
        --config workflows/train/definet-chgnet-finetune.yaml --ids-from runs/three-steps/dataset

Copies the EMA weights to ``model/definet/weights/definet-default.pt`` and writes the model card
``definet-default.json`` / ``definet-default.md`` beside it: data and split, hyper-parameters,
parameter count, training wall time and hardware, validation metrics per host, licence.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import yaml

from definet.checkpoint import file_sha256, load_model, model_payload, read_checkpoint, save_atomic
from definet.predict import DEFAULT_CHECKPOINT

DATA_CITATION = (
    "DefiNet dataset, Ziduo Yang and Lei Shen, Zenodo record 14027373, licence CC BY 4.0; "
    "Yang et al., npj Comput. Mater. 2025, doi:10.1038/s41524-025-01728-w"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--config", default="workflows/train/definet-joint.yaml")
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
    model, graph, meta = load_model(args.checkpoint)
    payload = model_payload(model, graph, metadata=meta)
    path = save_atomic(payload, DEFAULT_CHECKPOINT.with_name(f"{args.name}.pt"))
    config = yaml.safe_load(Path(args.config).read_text())
    last = Path(args.checkpoint).with_name("last.pt")
    hours = (read_checkpoint(last)["elapsed"] if last.exists() else meta["train_seconds"]) / 3600
    card = {
        "name": args.name,
        "checkpoint_sha256": file_sha256(path),
        "data": args.data,
        "split": args.split,
        "training_config": config,
        "train_command": f"definet train --config {args.config}",
        "n_parameters": meta["n_parameters"],
        "n_train": meta["n_train"],
        "n_val": meta["n_val"],
        "hosts": meta["hosts"],
        "elements_seen": meta["elements"],
        "steps": meta["steps"],
        "epochs": meta["epochs"],
        "training_wall_hours": round(hours, 2),
        "hardware": args.hardware,
        "validation": meta["validation"],
    }
    if args.ids_from:
        card["training_ids"] = sorted(
            line.strip()
            for split in ("train", "val")
            for csv_path in Path(args.ids_from).glob(f"*/{split}.csv")
            for line in csv_path.read_text().splitlines()[1:]
            if line.strip()
        )
    card_json = path.with_suffix(".json")
    card_json.write_text(json.dumps(card, indent=2))
    rows = "\n".join(
        f"| {h} | {r['n']} | {r['mae']:.4f} | {r['dummy_mae']:.4f} | {r['ratio']:.3f} | "
        f"{r['local_mae_3A']:.4f} |"
        for h, r in meta["validation"]["hosts"].items()
    )
    o = meta["validation"]["overall"]
    md = f"""# DefiNet model `{args.name}.pt`

- **Data**: {args.data}.
- **Split**: {card["split"]}.
- **Architecture**: DefiNet, hidden {model.config.hidden}, {model.config.num_layers} layers,
  {model.config.num_rbf} radial functions, graph cutoff {graph.cutoff} A with at most
  {graph.max_neighbors} neighbours; {meta["n_parameters"]:,} parameters.
- **Training**: `{card["train_command"]}`; {meta["n_train"]} training structures,
  {meta["steps"]} steps ({meta["epochs"]} full epochs), {hours:.2f} h of training on {args.hardware}.
  Hyper-parameters: `{json.dumps({k: v for k, v in config.items() if k not in ("model", "graph")})}`.
- **Checkpoint sha256**: `{card["checkpoint_sha256"]}`

## Validation (val split; coordinate MAE in angstrom, vacancy nodes excluded)

| host | n | MAE | do-nothing MAE | ratio | local MAE 3 A |
|---|---|---|---|---|---|
{rows}
| **overall** | {o["n"]} | {o["mae"]:.4f} | {o["dummy_mae"]:.4f} | {o["ratio"]:.3f} | {o["local_mae_3A"]:.4f} |

Mean of the per-host ratios: {o["mean_host_ratio"]:.3f}.
"""
    path.with_suffix(".md").write_text(md)
    print(f"shipped {path} ({path.stat().st_size / 1e6:.1f} MB), card {card_json}")


if __name__ == "__main__":
    main()
