"""Writing results: a JSON file, a markdown report and PNG plots under eval/results/."""

from __future__ import annotations

import gzip
import json
import os
import platform
import time
from pathlib import Path


def machine() -> str:
    import torch

    # Speeds differ by CPU generation: bf16 is fast only with AVX-512 BF16.
    isa = "AVX-512 BF16" if torch.cpu._is_avx512_bf16_supported() else (
        "AVX-512" if torch.cpu._is_avx512_supported() else "AVX2" if torch.cpu._is_avx2_supported() else "")
    return (f"{platform.machine()} {platform.processor() or ''} with {os.cpu_count()} CPU cores ({isa}), "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)").replace("  ", " ").replace(" ()", "")


def stem(set_name: str) -> str:
    return f"{set_name}-{time.strftime('%Y-%m-%d')}"


def write_json(out_dir: Path, name: str, payload: dict) -> Path:
    """The run's summary as NAME.json, and its per-question records (the payload's `records*` and
    `*_predictions` lists)
    as NAME.predictions.json.gz beside it: the summary is what gets committed; the predictions
    (2 MB a squad-open run) stay out of git (.gitignore), for looking into one run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records = {k: v for k, v in payload.items() if k.startswith("records") or k.endswith("_predictions")}
    summary = {k: v for k, v in payload.items() if k not in records}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(summary, indent=1, ensure_ascii=False, default=float) + "\n", encoding="utf-8")
    if records:
        with gzip.open(predictions_path(out_dir, name), "wt", encoding="utf-8") as f:
            json.dump(records, f, ensure_ascii=False, default=float)
    return path


def predictions_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}.predictions.json.gz"


def read_predictions(out_dir: Path, name: str) -> dict:
    with gzip.open(predictions_path(out_dir, name), "rt", encoding="utf-8") as f:
        return json.load(f)


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"
    return str(value)


def table(rows: dict) -> str:
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in rows.items()]
    return "\n".join(lines)


def write_markdown(out_dir: Path, name: str, title: str, command: str, sections: dict[str, str]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", "", f"Command: `{command}`", "", f"Machine: {machine()}",
             f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}", ""]
    for heading, body in sections.items():
        parts += [f"## {heading}", "", body, ""]
    path = out_dir / f"{name}.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def plot_reliability(path: Path, scores: list[float], correct: list[float], title: str) -> Path:
    """Confidence vs accuracy in ten equal-width bins (a reliability diagram), with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    s, c = np.asarray(scores, float), np.asarray(correct, float)
    edges = np.linspace(0, 1, 11)
    centers, acc, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (s >= lo) & ((s < hi) | (hi == 1.0))
        if mask.any():
            centers.append((lo + hi) / 2)
            acc.append(c[mask].mean())
            counts.append(int(mask.sum()))
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(centers, acc, width=0.09, alpha=0.75, label="accuracy (EM) in bin")
    for x, y, n in zip(centers, acc, counts):
        ax.text(x, y + 0.02, str(n), ha="center", fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="confidence", ylabel="exact match", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(path: Path, seconds: list[float], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ms = np.asarray(seconds) * 1000
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.hist(ms, bins=30, color="#4c72b0")
    for q, style in ((50, "-"), (95, "--")):
        v = float(np.percentile(ms, q))
        ax.axvline(v, color="black", linestyle=style, label=f"p{q} = {v:.1f} ms")
    ax.set(xlabel="ask() latency, warm (ms)", ylabel="questions", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
