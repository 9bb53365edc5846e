"""The official SQuAD metrics (EM, F1 over gold answers), abstention scoring and latency summaries."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..normalize import normalize_answer


def exact_match(prediction: str, golds: list[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def f1_score(prediction: str, golds: list[str]) -> float:
    """Best token-overlap F1 against the gold answers."""
    return max((_f1(prediction, g) for g in golds), default=0.0)


def _f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def score_answer(prediction: str, abstained: bool, golds: list[str], answerable: bool) -> tuple[float, float]:
    """(EM, F1) under SQuAD 2.0 rules: an unanswerable question is right only when the system abstains,
    and an abstention on an answerable question scores zero."""
    if not answerable:
        return (1.0, 1.0) if abstained else (0.0, 0.0)
    if abstained:
        return 0.0, 0.0
    return exact_match(prediction, golds), f1_score(prediction, golds)


def abstention_scores(abstained: list[bool], answerable: list[bool]) -> dict[str, float | None]:
    """Precision and recall of abstaining, treating 'unanswerable' as the positive class."""
    true_pos = sum(a and not ok for a, ok in zip(abstained, answerable))
    predicted = sum(abstained)
    actual = sum(not ok for ok in answerable)
    return {
        "abstain_precision": true_pos / predicted if predicted else None,
        "abstain_recall": true_pos / actual if actual else None,
        "abstained": predicted,
        "unanswerable": actual,
    }


def latency_summary(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"latency_p50_ms": None, "latency_p95_ms": None, "latency_max_ms": None}
    ms = np.asarray(seconds) * 1000
    return {"latency_p50_ms": float(np.percentile(ms, 50)), "latency_p95_ms": float(np.percentile(ms, 95)),
            "latency_max_ms": float(ms.max())}


def recall_at(ranks: list[int | None], k: int) -> float:
    """Share of questions whose gold passage is ranked within the first k (ranks start at 1)."""
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def mean_reciprocal_rank(ranks: list[int | None]) -> float:
    return sum(1.0 / r for r in ranks if r) / len(ranks) if ranks else 0.0


def best_threshold(scores: list[float], answerable: list[bool], f1_if_answered: list[float]) -> tuple[float, float]:
    """The abstention threshold maximising mean SQuAD-2.0 F1 (answer when score >= threshold).

    Returns (threshold, F1 ×100 at it). Candidate thresholds are the observed scores (and 0).
    """
    order = np.argsort(scores)
    s = np.asarray(scores, dtype=float)[order]
    ans = np.asarray(answerable, dtype=bool)[order]
    f1 = np.asarray(f1_if_answered, dtype=float)[order]
    n = len(s)
    # With threshold s[i], items 0..i-1 abstain and i..n-1 answer.
    gain_answer = np.where(ans, f1, 0.0)  # score when answered
    gain_abstain = np.where(ans, 0.0, 1.0)  # score when abstaining
    abstain_prefix = np.concatenate([[0.0], np.cumsum(gain_abstain)])
    answer_suffix = np.concatenate([np.cumsum(gain_answer[::-1])[::-1], [0.0]])
    totals = abstain_prefix + answer_suffix  # index i: first i abstain
    best = int(np.argmax(totals))
    threshold = 0.0 if best == 0 else (float(s[best - 1] + s[best]) / 2 if best < n else float(s[-1]) + 1e-6)
    return threshold, float(totals[best] / n * 100)
