"""Markdown report with PNG plots of ValidationDocs (matplotlib, Agg backend)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from definet_flows.builders import PARTITION, SUMMARY_FIELDS, group_values, summarize

if TYPE_CHECKING:
    from maggma.core import Store

    from definet_flows.schemas import ValidationDoc

__all__ = ["load_docs", "write_report"]

START_COLORS = {"unrelaxed": "tab:gray", "predicted": "tab:blue"}
START_LABELS = {"unrelaxed": "from unrelaxed", "predicted": "from DefiNet prediction"}


def load_docs(docs_or_store: Store | Iterable[ValidationDoc | Mapping]) -> list[dict[str, Any]]:
    """Return ValidationDoc dicts (without structures) from a store or an iterable."""
    if hasattr(docs_or_store, "query") and hasattr(docs_or_store, "connect"):
        docs_or_store.connect()
        return list(docs_or_store.query(properties=[*SUMMARY_FIELDS, "defect_names", "error"]))
    return [d.model_dump() if hasattr(d, "model_dump") else dict(d) for d in docs_or_store]


def _completed(docs: Sequence[Mapping]) -> list[Mapping]:
    """Documents whose two relaxations both gave a result (failed ones have no figures)."""
    return [d for d in docs if d.get("status", "completed") != "failed"]


def _steps(docs: Sequence[Mapping], start: str) -> np.ndarray:
    return np.array([d[f"from_{start}"]["n_ionic_steps"] for d in docs], dtype=float)


def _plot_histogram(docs: Sequence[Mapping], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    both = np.concatenate([_steps(docs, s) for s in START_LABELS])
    bins = np.histogram_bin_edges(both, bins=min(40, max(5, int(np.sqrt(len(both)) * 2))))
    for start, label in START_LABELS.items():
        steps = _steps(docs, start)
        ax.hist(
            steps,
            bins=bins,
            alpha=0.55,
            color=START_COLORS[start],
            edgecolor="black",
            linewidth=0.4,
            label=f"{label} (median {np.median(steps):.0f})",
        )
    ax.set_xlabel("ionic steps to convergence")
    ax.set_ylabel("number of defect structures")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Ionic steps from the two starts")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _plot_steps_vs(docs: Sequence[Mapping], field: str, xlabel: str, path: Path) -> None:
    """Scatter of steps vs an integer field, with medians per value."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = np.array([d[field] for d in docs], dtype=float)
    values = np.unique(x)
    span = np.ptp(values)
    width = 0.015 * span if span else 0.1  # jitter and offset between the two starts
    rng = np.random.default_rng(0)
    for k, (start, label) in enumerate(START_LABELS.items()):
        y = _steps(docs, start)
        offset = (2 * k - 1) * width
        jitter = rng.uniform(-width, width, len(x))
        ax.scatter(x + offset + jitter, y, s=12, alpha=0.5, color=START_COLORS[start], label=label)
        medians = [np.median(y[x == v]) for v in values]
        ax.plot(values + offset, medians, "-o", color=START_COLORS[start], lw=1.8, ms=5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ionic steps to convergence")
    ax.set_title(f"Ionic steps vs {xlabel.split(' (')[0]} (lines: medians)")
    if len(values) <= 10 and (len(values) == 1 or np.diff(values).min() > 0.05 * span):
        ax.set_xticks(values)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.2)  # room for the legend
    ax.legend(loc="upper center", ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _plot_energy_parity(docs: Sequence[Mapping], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
    by_host: dict[str, list[Mapping]] = defaultdict(list)
    for d in docs:
        by_host[d["host"]].append(d)
    for host, group in sorted(by_host.items()):
        eu = [d["from_unrelaxed"]["energy_per_atom"] for d in group]
        ep = [d["from_predicted"]["energy_per_atom"] for d in group]
        ax.scatter(eu, ep, s=14, alpha=0.7, label=host)
    lims = [
        min(ax.get_xlim()[0], ax.get_ylim()[0]),
        max(ax.get_xlim()[1], ax.get_ylim()[1]),
    ]
    ax.plot(lims, lims, "k--", lw=0.8, label="y = x")
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_aspect("equal")
    ax.set_xlabel("E from unrelaxed start (eV/atom)")
    ax.set_ylabel("E from DefiNet start (eV/atom)")
    ax.set_title("Final energies")
    ax.legend(frameon=False, fontsize=8)
    de = 1e3 * np.array([d["energy_difference"] for d in docs])
    ax2.hist(de, bins=min(40, max(5, int(np.sqrt(len(de)) * 2))), color="tab:blue", alpha=0.7)
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set_xlabel("E(DefiNet start) - E(unrelaxed start) (meV per supercell)")
    ax2.set_ylabel("number of defect structures")
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax2.set_title("Energy difference (< 0: DefiNet start ends lower)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _table(docs: Sequence[Mapping], group_by: str) -> list[str]:
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for d in docs:
        for g in group_values(d, group_by):
            groups[(g, *(d[p] for p in PARTITION))].append(d)
    lines = [
        f"| {group_by} | engine | settings | checkpoint | n | median steps | p90 steps"
        " | share converged in <= 3 steps | mean dE (eV) | share same minimum |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (g, engine, settings, ckpt), members in sorted(groups.items()):
        s = summarize(members)
        su, sp = s["steps_unrelaxed"], s["steps_predicted"]
        lines.append(
            f"| {g} | {engine} | `{settings[:8]}` | `{ckpt[:12]}` | {s['count']} "
            f"| {_fmt(su.median)} / {_fmt(sp.median)} | {_fmt(su.p90)} / {_fmt(sp.p90)} "
            f"| {_fmt(s['share_within_3_unrelaxed'], 2)} / {_fmt(s['share_within_3_predicted'], 2)} "
            f"| {_fmt(s['mean_energy_difference'])} | {_fmt(s['share_same_minimum'], 2)} |"
        )
    return lines


def _headline(docs: list[dict[str, Any]]) -> list[str]:
    """The key figures, one block per engine, settings and checkpoint (never pooled: the same
    defect relaxed twice would count twice)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for d in docs:
        groups.setdefault(tuple(d[p] for p in PARTITION), []).append(d)
    lines: list[str] = []
    for (engine, settings, checkpoint), part in sorted(groups.items()):
        if len(groups) > 1:
            lines += [
                f"**{engine}, settings {settings[:12]}, checkpoint {checkpoint[:12]}** "
                f"({len(part)} defects)",
                "",
            ]
        figures = summarize(part)
        su, sp = figures["steps_unrelaxed"], figures["steps_predicted"]
        lines += [
            f"- median ionic steps: {_fmt(su.median)} from unrelaxed, {_fmt(sp.median)} from "
            "DefiNet",
            f"- converged within 3 steps: {_fmt(figures['share_within_3_unrelaxed'], 2)} from "
            f"unrelaxed, {_fmt(figures['share_within_3_predicted'], 2)} from DefiNet",
            f"- failed validations (a relaxation or the prediction gave no result; plots leave "
            f"them out): {figures['n_failed']} of {len(part)}",
            f"- defects with something the model never saw in training (an element, defect "
            f"kind or host; `out_of_distribution` in each document): "
            f"{figures['n_out_of_distribution']} of {len(part)}",
            f"- same minimum from both starts: {_fmt(figures['share_same_minimum'], 2)}; "
            f"mean dE {_fmt(figures['mean_energy_difference'])} eV",
            f"- mean coordinate MAE vs relaxed-from-unrelaxed: DefiNet "
            f"{_fmt(figures['mean_definet_mae'])} A, unrelaxed (do nothing) "
            f"{_fmt(figures['mean_baseline_mae'])} A",
            "",
        ]
    return lines


def write_report(
    docs_or_store: Store | Iterable[ValidationDoc | Mapping],
    out_dir: str | Path,
    title: str = "DefiNet validation report",
) -> Path:
    """Write ``report.md`` and its PNG plots to ``out_dir``; return the Markdown path.

    Parameters
    ----------
    docs_or_store
        ValidationDocs (or dicts) or a store holding them.
    out_dir
        Output directory (created).
    title
        Report title.

    Raises
    ------
    ValueError
        If there are no documents.
    """
    import matplotlib

    matplotlib.use("Agg")
    docs = load_docs(docs_or_store)
    if not docs:
        raise ValueError("No ValidationDocs to report on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {
        "steps_histogram.png": "Ionic steps from both starts",
        "steps_vs_n_sites.png": "Ionic steps vs system size",
        "steps_vs_n_defects.png": "Ionic steps vs number of defects",
        "energy_parity.png": "Final energies from both starts",
    }
    completed = _completed(docs)
    if completed:
        _plot_histogram(completed, out / "steps_histogram.png")
        _plot_steps_vs(
            completed,
            "n_sites",
            "atoms in the supercell (n_sites)",
            out / "steps_vs_n_sites.png",
        )
        _plot_steps_vs(
            completed, "n_defects", "point defects per supercell", out / "steps_vs_n_defects.png"
        )
        _plot_energy_parity(completed, out / "energy_parity.png")
    else:
        plots = {}

    lines = [
        f"# {title}",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {len(docs)} ValidationDocs; "
        f"engines: {', '.join(sorted({d['engine'] for d in docs}))}; "
        f"checkpoints: {', '.join(sorted({d['checkpoint_sha256'][:12] for d in docs}))}.",
        "",
        "Each defect is relaxed twice with the same engine and settings: from the unrelaxed "
        "structure and from the DefiNet prediction. Steps are the engine's ionic steps; "
        "dE = E(from DefiNet) - E(from unrelaxed).",
        "",
        *_headline(docs),
        "## Overall",
        "",
        "Pairs of figures are (from unrelaxed / from DefiNet).",
        "",
        *_table(docs, "all"),
        "",
        "## Per host",
        "",
        *_table(docs, "host"),
        "",
        "## Per defect type",
        "",
        "A supercell with several defect types counts in each of them.",
        "",
        *_table(docs, "defect_type"),
        "",
        "## Plots",
        "",
    ]
    for name, caption in plots.items():
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
