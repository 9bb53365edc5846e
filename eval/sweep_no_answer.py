"""Which abstention test tells unanswerable questions apart best: the answer's probability, or that
probability against the reader's own "no answer" in the same window ([CLS] as start and end)?

On the tuning split's SQuAD 2.0 questions (train articles 28-37, which the shipped reader never saw),
each criterion's threshold is chosen on a random half of the paragraphs and scored on the other half
(20 splits, both ways; medians), at the threshold of best SQuAD 2.0 F1 and at the project's rule (the
highest threshold costing at most 5 answerable F1). Reader alone (gold paragraph) and end to end
(`Engine.ask`, one document per paragraph, the shipped settings, threshold 0), with a paired bootstrap
over paragraphs of the end-to-end difference at the rule's thresholds.

    .venv/bin/python eval/sweep_no_answer.py [--limit N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.engine import Engine  # noqa: E402
from rag.config import Config  # noqa: E402
from rag.documents import make_document  # noqa: E402
from rag.evaluation.datasets import squad_split  # noqa: E402
from rag.evaluation.metrics import best_threshold, f1_score, score_answer  # noqa: E402
from rag.reader import against_no_answer  # noqa: E402
from rag.squad import default_data_dir  # noqa: E402
from sweep_engine import f1_at, threshold_within  # noqa: E402  (eval/, beside this script)

Criterion = Callable[[dict], float]
CRITERIA: dict[str, Criterion] = {
    "probability": lambda r: r["p"],
    "probability against no answer": lambda r: against_no_answer(r["p"], r["no_answer"]),
    "1 - no answer": lambda r: 1.0 - r["no_answer"] if r["p"] > 0 else 0.0,
}


def reader_rows(engine, items) -> list[dict]:
    rows = []
    for item in items:
        spans = engine.reader.read(item.question, [item.context])
        best = spans[0] if spans else None
        text = item.context[best.start:best.end] if best else ""
        rows.append({"paragraph": item.gold_doc, "answerable": item.answerable,
                     "f1": f1_score(text, item.answers) if item.answerable else 0.0,
                     "p": best.score if best else 0.0, "no_answer": best.no_answer if best else 1.0})
    return rows


def engine_rows(engine, items, corpus) -> list[dict]:
    """`Engine.ask` at threshold 0: the answer's confidence p (pooled over where it is found) and, from
    `Answer.against_no_answer` = p / (p + p_null), the "no answer" of its best occurrence's window."""
    rows = []
    for item in items:
        answer = engine.ask(item.question, index=corpus)
        _, f1 = score_answer(answer.text, answer.abstained, item.answers, item.answerable)
        p, share = answer.score, answer.against_no_answer
        rows.append({"paragraph": item.gold_doc, "answerable": item.answerable, "f1": f1, "p": p if share else 0.0,
                     "no_answer": p * (1 - share) / share if share else 1.0})
    return rows


def scored(rows: list[dict], criterion: Criterion) -> list[dict]:
    """The rows as eval/sweep_engine.py's rules read them, with `criterion` as the score tested."""
    return [{"score": criterion(r), "answerable": r["answerable"], "f1": r["f1"]} for r in rows]


def v2_f1(rows: list[dict], criterion: Criterion, threshold: float) -> float:
    """SQuAD 2.0 F1 (%) abstaining when `criterion` is under `threshold` (sweep_engine.py `f1_at`)."""
    return f1_at(scored(rows, criterion), threshold)


def within_cost(rows: list[dict], criterion: Criterion) -> float:
    """The project's rule (eval/sweep_engine.py `threshold_within`) applied to `criterion`."""
    return threshold_within(scored(rows, criterion))[0]


def compare(rows: list[dict], splits: int = 20) -> dict:
    rng = np.random.default_rng(0)
    paragraphs = sorted({r["paragraph"] for r in rows})
    halves = [set(rng.permutation(paragraphs)[: len(paragraphs) // 2].tolist()) for _ in range(splits)]
    out = {}
    for name, criterion in CRITERIA.items():
        at_best, at_rule, refused = [], [], []
        for half in halves:
            a = [r for r in rows if r["paragraph"] in half]
            b = [r for r in rows if r["paragraph"] not in half]
            for chosen_on, scored_on in ((a, b), (b, a)):
                t, _ = best_threshold([criterion(r) for r in chosen_on], [r["answerable"] for r in chosen_on],
                                      [r["f1"] for r in chosen_on])
                at_best.append(v2_f1(scored_on, criterion, t))
                t5 = within_cost(chosen_on, criterion)
                at_rule.append(v2_f1(scored_on, criterion, t5))
                refused.append(100 * statistics.mean(criterion(r) < t5 for r in scored_on if not r["answerable"]))
        out[name] = {"v2_f1_at_best": round(statistics.median(at_best), 1),
                     "v2_f1_at_best_10_90": [round(float(np.percentile(at_best, q)), 1) for q in (10, 90)],
                     "v2_f1_at_rule": round(statistics.median(at_rule), 1),
                     "unanswerable_refused_at_rule": round(statistics.median(refused), 1),
                     "rule_threshold_on_all": within_cost(rows, criterion)}
    return out


def paired(rows: list[dict], old: str, new: str, rounds: int = 1000) -> dict:
    """Bootstrap over paragraphs of SQuAD 2.0 F1 (new - old), each at its rule threshold chosen on all rows."""
    t_old, t_new = within_cost(rows, CRITERIA[old]), within_cost(rows, CRITERIA[new])
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["paragraph"], []).append(r)
    keys, rng, diffs = list(by), np.random.default_rng(1), []
    for _ in range(rounds):
        sample = [r for k in rng.choice(keys, len(keys)) for r in by[k]]
        diffs.append(v2_f1(sample, CRITERIA[new], t_new) - v2_f1(sample, CRITERIA[old], t_old))
    return {"mean": round(float(np.mean(diffs)), 2),
            "ci95": [round(float(np.percentile(diffs, q)), 2) for q in (2.5, 97.5)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=0, help="questions, every k-th (0: all)")
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "no-answer-sweep.json")
    p.add_argument("--reader", default=None, help="reader name or path (default: the configured one)")
    args = p.parse_args()
    _, v2 = squad_split(args.data, "tune")
    items = v2.items if args.limit <= 0 else v2.items[:: max(1, len(v2.items) // args.limit)][: args.limit]
    results = {"reader": args.reader, "questions": len(items), "unanswerable": sum(not i.answerable for i in items)}
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Config(index_dir=Path(tmp), reader_model=args.reader, abstain_threshold=0.0))
        t0 = time.time()
        results["reader_alone"] = compare(reader_rows(engine, items))
        corpus = engine.library.build_corpus([make_document(n, t) for n, t in v2.documents])
        rows = engine_rows(engine, items, corpus)
        results["end_to_end"] = compare(rows)
        results["end_to_end_paired_at_rule"] = paired(rows, "probability", "probability against no answer")
        results["seconds"] = round(time.time() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
