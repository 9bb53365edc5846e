"""How often answers are right at each confidence: the evidence for the bands the web chat names
("high", "medium", "low" in ui/render.py), measured on the tuning split so the held-out one stays unseen.

    .venv/bin/rag eval squad-open --split tune --out eval/logs/tune
    .venv/bin/python eval/confidence_bands.py eval/logs/tune squad-open-tune-DATE [--edges 0.3,0.7]

Reads the per-question records `rag eval` keeps beside its summary; writes
eval/results/confidence-bands-DATE.md with exact match and F1 of the answered questions per band
and per tenth of the score.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.evaluation.report import read_predictions, write_markdown  # noqa: E402


def table(records: list[dict], edges: list[float]) -> str:
    rows = ["| confidence | answers | exact match | F1 |", "|---|---|---|---|"]
    for lo, hi in zip(edges, edges[1:]):
        band = [r for r in records if lo <= r["score"] < hi]
        if band:
            em = 100 * sum(r["exact_match"] for r in band) / len(band)
            f1 = 100 * sum(r["f1"] for r in band) / len(band)
            rows.append(f"| {lo:.2f}–{min(hi, 1):.2f} | {len(band)} | {em:.1f} | {f1:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the --out folder of `rag eval squad-open`")
    parser.add_argument("name", help="the summary's name, e.g. squad-open-tune-2026-12-03")
    parser.add_argument("--edges", default="0.3,0.7", help="where the bands meet (default 0.3,0.7)")
    args = parser.parse_args()
    answered = [r for r in read_predictions(args.folder, args.name)["records_v1"] if not r["abstained"]]
    edges = [0.0, *(float(e) for e in args.edges.split(",")), 1.01]
    path = write_markdown(ROOT / "eval" / "results", f"confidence-bands-{time.strftime('%Y-%m-%d')}",
                          "How often answers are right at each confidence",
                          " ".join(["python", "eval/confidence_bands.py", *sys.argv[1:]]), {
        "Bands (as the web chat names them)": f"SQuAD 1.1 squad-open, split tune (dev articles 28–37), answered "
                                              f"questions only ({len(answered)}), from `{args.name}`.\n\n"
                                              + table(answered, edges),
        "Per tenth of the score": table(answered, [i / 10 for i in range(10)] + [1.01]),
    })
    print(path)


if __name__ == "__main__":
    main()
