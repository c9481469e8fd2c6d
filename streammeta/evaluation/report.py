"""Outputs of ``streammeta evaluate``: the table, forecasts and per-series CSVs, report.md
and plots.

Plots use matplotlib's Agg backend (files only, no display):

* ``forecasts*.png`` — a few entities: recent history, the truth, the engine's
  point forecast with its outer quantile band, and seasonal naive;
* ``error_over_time*.png`` — each method's error over time (rolling, ett; mean
  over entities per step, smoothed over a week) and by lead time;
* ``cold_start*.png`` (rolling) — error by the number of forecasts an entity has
  made since its warm-up, the cold-start slice shaded.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from streammeta.evaluation.protocols import Task
    from streammeta.evaluation.runs import Evaluation, MethodRun

COLUMNS = (("smape", "sMAPE"), ("mase", "MASE"), ("owa", "OWA"), ("mse", "MSE"),
           ("mae", "MAE"), ("pinball", "pinball"), ("coverage", "cover"))
RANKS = (("rank_mase", "rank MASE"), ("rank_smape", "rank sMAPE"), ("rank_mse", "rank MSE"))
NOT_BOLD = ("coverage",)  # best is nearest the nominal level, not the lowest
STYLE: dict[str, dict[str, Any]] = {
    "streammeta": {"color": "#1f4e9c", "lw": 2.2},
    "no-adaptation": {"color": "#6a8fd0", "lw": 1.2, "ls": "--"},
    "no-outer-loop": {"color": "#8e5ad0", "lw": 1.2, "ls": "--"},
    "no-memory": {"color": "#5ab0d0", "lw": 1.2, "ls": "--"},
    "no-guard": {"color": "#3a7a8c", "lw": 1.2, "ls": ":"},
    "naive": {"color": "#9a9a9a", "lw": 1.2},
    "seasonal-naive": {"color": "#e08a1e", "lw": 1.4},
    "naive2": {"color": "#4c9a4c", "lw": 1.2},
    "holt-winters": {"color": "#c0392b", "lw": 1.2},
    "snarimax": {"color": "#7b4b2a", "lw": 1.2},
}


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table of result rows; the best value of each metric per slice and
    horizon in bold; each method's rank among those scored there (1 = best);
    an empty pinball cell: the method has no quantiles."""
    present = [(k, title) for k, title in COLUMNS if any(k in r for r in results)]
    ranked = [(k, title) for k, title in RANKS if any(k in r for r in results)]
    best: dict[tuple[str, int, str], float] = {}
    for r in results:
        for k, _ in present:
            if k in r and np.isfinite(r[k]) and k not in NOT_BOLD:
                key = (r["slice"], r["horizon"], k)
                best[key] = min(best.get(key, np.inf), r[k])
    head = ["method", "slice", "H"] + [t for _, t in present] + [t for _, t in ranked] + [
        "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["method"], r["slice"], str(r["horizon"])]
        for k, _ in present:
            v = r.get(k)
            text = "" if v is None else f"{v:.3f}"
            if v is not None and best.get((r["slice"], r["horizon"], k)) == v:
                text = f"**{text}**"
            cells.append(text)
        cells += [f"{r[k]}/{r['ranked']}" if k in r else "" for k, _ in ranked]
        cells.append(f"{r['seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rank_line(results: list[dict[str, Any]], method: str = "streammeta") -> str:
    """streammeta's ranks, one clause per slice and horizon."""
    parts = []
    for r in results:
        if r["method"] == method:
            ranks = [f"{title.split()[1]} {r[k]}/{r['ranked']}" for k, title in RANKS if k in r]
            parts.append(f"{r['slice']} H={r['horizon']}: {', '.join(ranks)}")
    return f"{method} rank: " + "; ".join(parts) if parts else f"{method}: not run"


def suffixed(path: Path, task: Task, tasks: int) -> Path:
    """One file per task when there are several (ett: one per horizon)."""
    return path if tasks == 1 else path.with_name(f"{path.stem}_h{task.horizon}{path.suffix}")


def write_forecasts(path: Path, task: Task, point: np.ndarray) -> None:
    """final-origin: M4 submission shape ``id,F1..FH``; else ``id,origin_ts,F1..FH``
    for every scored origin."""
    path.parent.mkdir(parents=True, exist_ok=True)
    H = task.horizon
    final = task.protocol == "final-origin"
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["id"] + ([] if final else ["origin_ts"]) + [f"F{h}" for h in range(1, H + 1)])
        names = task.entities
        origin_ts = np.array([task.stream[k].ts[p] for k, p in zip(task.ent, task.pos,
                                                                    strict=True)])
        for row in range(len(task.ent)):
            values = [f"{v:.7g}" for v in point[row].tolist()]
            lead = [names[task.ent[row]]] + ([] if final else [str(origin_ts[row])])
            out.writerow(lead + values)


PER_SERIES = ("smape", "mase", "pinball", "coverage")


def write_per_series(path: Path, evaluation: Evaluation) -> None:
    """``method,entity,forecasts,smape,mase,pinball,coverage``: each method's mean over
    each entity's scored forecasts (what the aggregates average over entities), to
    find the series that carry a figure; an empty cell: not defined there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    task = evaluation.task
    names = task.entities
    counts = np.bincount(task.ent, minlength=len(names))
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["method", "entity", "forecasts", *PER_SERIES])
        for run in evaluation.runs:
            means = [_entity_means(getattr(run.errors, k), task.ent, len(names))
                     for k in PER_SERIES]
            for k in np.flatnonzero(counts):
                cells = ["" if np.isnan(m[k]) else f"{m[k]:.6g}" for m in means]
                out.writerow([run.name, names[k], int(counts[k]), *cells])


def _entity_means(values: np.ndarray, entity: np.ndarray, entities: int) -> np.ndarray:
    """(E,) each entity's mean of ``values`` (N,), NaNs skipped; NaN where none."""
    ok = ~np.isnan(values)
    sums = np.bincount(entity[ok], weights=values[ok], minlength=entities)
    counts = np.bincount(entity[ok], minlength=entities)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def command_line(args: argparse.Namespace) -> str:
    """The evaluate command that reproduces a run (from its parsed arguments)."""
    parts = ["streammeta evaluate"]
    for name, value in sorted(vars(args).items()):
        if name in ("func", "command", "quiet") or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list | tuple):
            parts.append(f"{flag} {' '.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def write_report(directory: Path, evaluations: list[Evaluation], payload: dict[str, Any],
                 command: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"# streammeta evaluate: {payload['protocol']} on {Path(payload['data']).name}",
             "", f"`{command}`", "", table(payload["results"]), ""]
    lines += [f"- {note}" for note in payload["notes"]]
    lines.append("")
    several = len(evaluations) > 1
    for e in evaluations:
        tag = f"_h{e.task.horizon}" if several else ""
        if several:
            lines += [f"## H = {e.task.horizon}", ""]
        for stem, plot in (("error_over_time", plot_errors), ("cold_start", plot_cold_start),
                           ("forecasts", plot_forecasts)):
            name = f"{stem}{tag}.png"
            if plot(e, directory / name):
                lines += [f"![{stem}]({name})", ""]
    (directory / "report.md").write_text("\n".join(lines))


# -- plots ----------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _primary(task: Task) -> tuple[str, str]:
    return ("mse", "MSE (standardised)") if task.protocol == "ett" else ("mase", "MASE")


def origin_steps(task: Task) -> np.ndarray:
    """Each origin's time in steps since the stream's first observation, with the
    arrival shifts of :func:`datasets.interleave`."""
    first = np.array([s.ts[0] for s in task.stream])
    ts = np.concatenate([s.ts for s in task.stream])
    starts = np.concatenate([[0], np.cumsum([len(s) for s in task.stream])[:-1]])
    origin_ts = ts[starts[task.ent] + task.pos]
    if task.arrival_gap:  # entity k starts k·gap steps after the first
        t0 = int(first.min())
        shift = t0 + np.arange(len(first)) * task.arrival_gap * task.step_ms - first
        origin_ts = origin_ts + shift[task.ent]
    return (origin_ts - origin_ts.min()) // task.step_ms


def _binned(values: np.ndarray, bins: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` per bin, smoothed by a moving window of ``width`` bins."""
    ok = np.isfinite(values)
    n = int(bins.max()) + 1
    sums = np.bincount(bins[ok], weights=values[ok], minlength=n)
    counts = np.bincount(bins[ok], minlength=n).astype(np.float64)
    kernel = np.ones(max(1, width))
    s, c = np.convolve(sums, kernel, "same"), np.convolve(counts, kernel, "same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arange(n), np.where(c > 0, s / c, np.nan)


def _ylim(ax: Any, curves: dict[str, np.ndarray]) -> None:
    """Room for the informative curves: the naive forecast's (often far worse) may
    leave the frame; a curve with bursts (ETTh2's anomalous weeks) goes on a log
    scale so that the calm stretches stay readable."""
    kept = [c[np.isfinite(c) & (c > 0)] for name, c in curves.items() if name != "naive"]
    finite = np.concatenate(kept) if kept else np.zeros(0)
    if not len(finite):
        return
    top = float(np.percentile(finite, 99.5))
    if top > 20 * float(np.median(finite)):
        ax.set_yscale("log")
        ax.set_ylim(0.5 * float(np.percentile(finite, 0.5)), 1.5 * float(finite.max()))
    else:
        ax.set_ylim(0, 1.1 * float(np.percentile(finite, 98)))


def plot_errors(e: Evaluation, path: Path) -> bool:
    plt = _pyplot()
    task = e.task
    key, label = _primary(task)
    over_time = task.protocol != "final-origin"
    fig, axes = plt.subplots(1, 2 if over_time else 1, figsize=(14 if over_time else 8.5, 4.6),
                             squeeze=False)
    ax_h = axes[0, -1]
    by_h = "mse_by_h" if key == "mse" else "smape_by_h"
    for run in e.runs:
        ax_h.plot(np.arange(1, task.horizon + 1), getattr(run.errors, by_h), label=run.name,
                  marker="o" if task.horizon == 1 else None, **STYLE.get(run.name, {}))
    _ylim(ax_h, {run.name: getattr(run.errors, by_h) for run in e.runs})
    ax_h.set_xlabel("lead time (steps ahead)")
    ax_h.set_ylabel("MSE (standardised)" if key == "mse" else "sMAPE (%)")
    ax_h.set_title("error by lead time")
    ax_h.grid(alpha=0.3)
    if over_time:
        ax = axes[0, 0]
        steps = origin_steps(task)
        week = max(1, int(7 * 24 * 3_600_000 // task.step_ms))
        curves = {}
        for run in e.runs:
            x, y = _binned(getattr(run.errors, key), steps, week)
            curves[run.name] = y
            ax.plot(x * task.step_ms / 86_400_000, y, label=run.name, **STYLE.get(run.name, {}))
        _ylim(ax, curves)
        ax.set_xlabel("days since the first scored forecast")
        ax.set_ylabel(f"{label}, mean over entities")
        ax.set_title("error over time (one-week moving average)")
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{task.label}: {len(task.stream)} entities, {len(task.ent)} forecasts scored")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_cold_start(e: Evaluation, path: Path) -> bool:
    task = e.task
    if "cold_start" not in task.slices:
        return False
    plt = _pyplot()
    age = task.pos - task.pos.min()  # forecasts since the warm-up
    keep = age < 336
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    curves = {}
    for run in e.runs:
        x, y = _binned(run.errors.mase[keep], age[keep], 12)
        curves[run.name] = y
        ax.plot(x, y, label=run.name, **STYLE.get(run.name, {}))
    _ylim(ax, curves)
    ax.axvspan(0, 47, color="#f3e7c9", alpha=0.6, lw=0, label="cold-start slice")
    ax.set_xlabel("forecasts since the entity's warm-up")
    ax.set_ylabel("MASE, mean over entities\n(12-forecast moving average)")
    ax.set_title(f"{task.label}: how fast a new entity's forecasts improve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _engine_run(e: Evaluation) -> MethodRun | None:
    runs = [r for r in e.runs if r.plot_quantiles is not None]
    return next((r for r in runs if r.name == "streammeta"), runs[0] if runs else None)


def plot_forecasts(e: Evaluation, path: Path) -> bool:
    task, rows = e.task, e.plot_rows
    model = _engine_run(e)
    if model is None or len(rows) == 0:
        return False
    assert model.plot_quantiles is not None
    plt = _pyplot()
    snaive = next((r for r in e.runs if r.name == "seasonal-naive"), None)
    H = task.horizon
    context = max(2 * H, 3 * task.season)
    cols = min(3, len(rows))
    nrows = int(np.ceil(len(rows) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.4 * nrows), squeeze=False)
    for i, row in enumerate(rows.tolist()):
        ax = axes[i // cols, i % cols]
        k, t = int(task.ent[row]), int(task.pos[row])
        past = task.stream[k].values[max(0, t + 1 - context): t + 1]
        ax.plot(np.arange(-len(past) + 1, 1), past, color="black", lw=1, label="history")
        ahead = np.arange(1, H + 1)
        ax.plot(ahead, task.truth[row], color="black", lw=1, ls=":", label="truth")
        q = model.plot_quantiles[i]
        ax.fill_between(ahead, q[0], q[-1], color=STYLE["streammeta"]["color"], alpha=0.18,
                        lw=0, label="streammeta 10–90%")
        ax.plot(ahead, model.plot_point[i], label=model.name, **STYLE.get(model.name, {}))
        if snaive is not None:
            ax.plot(ahead, snaive.plot_point[i], label="seasonal naive",
                    **STYLE["seasonal-naive"])
        err = getattr(model.errors, _primary(task)[0])[row]
        ax.set_title(f"{task.entities[k]} at t={t} ({_primary(task)[0].upper()} {err:.2f})",
                     fontsize=10)
        ax.axvline(0.5, color="#bbbbbb", lw=0.8)
        ax.grid(alpha=0.3)
    for j in range(len(rows), nrows * cols):
        axes[j // cols, j % cols].axis("off")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{task.label}: forecasts from the last scored origin (steps from the origin)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
