"""The reader alone, scored on SQuAD with each question's gold paragraph (`rag eval squad`).

Kept apart from the runner so it needs only the reader: a GPU machine without the retrieval stack
(FAISS, BM25) scores readers with exactly this code (eval/training/distill.py)."""

from __future__ import annotations

from collections.abc import Callable

from ..reader import Reader, against_no_answer
from .datasets import EvalItem
from .metrics import best_threshold, exact_match, f1_score

Tick = Callable[[], None]


def read_gold(reader: Reader, items: list[EvalItem], tick: Tick | None = None) -> list[dict]:
    """The reader alone, given each question's gold paragraph: best span and its score against no answer."""
    rows = []
    for item in items:
        spans = reader.read(item.question, [item.context])
        best = spans[0] if spans else None
        text = item.context[best.start:best.end] if best else ""
        # Scored as the engine scores an answer: against the reader's "no answer" (abstains below a threshold).
        score = against_no_answer(best.score, best.no_answer) if best else 0.0
        rows.append({"id": item.id, "prediction": text, "score": score,
                     "answerable": item.answerable, "em": exact_match(text, item.answers) if item.answerable else 0.0,
                     "f1": f1_score(text, item.answers) if item.answerable else 0.0})
        if tick:
            tick()
    return rows


def gold_scores(rows: list[dict], threshold: float | None = None) -> dict:
    """EM/F1 ×100 of reader-only rows; with a threshold, SQuAD 2.0 scoring (abstain below it)."""
    n = len(rows)
    if threshold is None:
        return {"exact_match": 100 * sum(r["em"] for r in rows) / n, "f1": 100 * sum(r["f1"] for r in rows) / n,
                "n": n}
    ems, f1s, ans_f1, noans = [], [], [], []
    for r in rows:
        abstain = r["score"] < threshold
        em, f1 = (1.0, 1.0) if not r["answerable"] and abstain else (0.0, 0.0)
        if r["answerable"] and not abstain:
            em, f1 = r["em"], r["f1"]
        ems.append(em)
        f1s.append(f1)
        (ans_f1 if r["answerable"] else noans).append(f1)
    return {"exact_match": 100 * sum(ems) / n, "f1": 100 * sum(f1s) / n, "n": n, "threshold": threshold,
            "answerable_f1": 100 * sum(ans_f1) / len(ans_f1) if ans_f1 else None,
            "noans_accuracy": 100 * sum(noans) / len(noans) if noans else None}


def tune_threshold(rows: list[dict]) -> float:
    threshold, _ = best_threshold([r["score"] for r in rows], [r["answerable"] for r in rows],
                                  [r["f1"] for r in rows])
    return threshold


def reader_totals(rows: dict[str, list[dict]], threshold: float | None = None) -> dict:
    """The headline of `rag eval squad` from read_gold rows of "v1" (SQuAD 1.1), "tune" (SQuAD 2.0
    train titles, for the threshold) and "v2" (SQuAD 2.0 scored with abstention)."""
    if threshold is None:
        threshold = tune_threshold(rows["tune"])
    v1, v2, v2_no_abstain = gold_scores(rows["v1"]), gold_scores(rows["v2"], threshold), gold_scores(rows["v2"], 0.0)
    return {"exact_match": v1["exact_match"], "f1": v1["f1"], "n": v1["n"], "v2_f1": v2["f1"],
            "v2_exact_match": v2["exact_match"], "v2_noans_accuracy": v2["noans_accuracy"],
            "v2_answerable_f1": v2["answerable_f1"],
            "v2_answerable_f1_without_abstention": v2_no_abstain["answerable_f1"], "v2_n": v2["n"],
            "threshold": threshold}
