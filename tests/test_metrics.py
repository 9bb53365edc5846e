"""The evaluation metrics against cases worked out by hand."""

import pytest

from rag.evaluation.metrics import (abstention_scores, best_threshold, exact_match, f1_score, latency_summary,
                                    mean_reciprocal_rank, recall_at, score_answer)
from rag.normalize import normalize_answer


def test_normalisation_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theory") == "theory"  # 'the' only as a word


def test_exact_match_is_best_over_golds():
    assert exact_match("denver broncos", ["Carolina Panthers", "The Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0


def test_f1_hand_computed():
    # pred: "denver broncos team" (3 tokens), gold: "denver broncos" (2): overlap 2 → P=2/3, R=1 → F1=0.8
    assert f1_score("Denver Broncos team", ["Denver Broncos"]) == pytest.approx(0.8)
    # best over several golds: vs "broncos" → P=1/3, R=1 → 0.5; vs "the denver broncos team" → 1.0
    assert f1_score("Denver Broncos team", ["broncos", "the Denver Broncos team"]) == pytest.approx(1.0)
    assert f1_score("Miami", ["Denver"]) == 0.0
    # repeated tokens count once per occurrence: pred "a b b", gold "b" → common 1, P=1/3, R=1 → 0.5
    assert f1_score("x y y", ["y"]) == pytest.approx(0.5)


def test_abstention_scoring_follows_squad2():
    assert score_answer("", True, [], answerable=False) == (1.0, 1.0)
    assert score_answer("Paris", False, [], answerable=False) == (0.0, 0.0)
    assert score_answer("", True, ["Paris"], answerable=True) == (0.0, 0.0)
    assert score_answer("Paris", False, ["Paris"], answerable=True) == (1.0, 1.0)
    s = abstention_scores([True, True, False, False], [False, True, False, True])
    assert s["abstain_precision"] == 0.5 and s["abstain_recall"] == 0.5


def test_ranking_metrics():
    ranks = [1, 3, None, 2]
    assert recall_at(ranks, 1) == 0.25
    assert recall_at(ranks, 3) == 0.75
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)


def test_latency_percentiles():
    s = latency_summary([0.010, 0.020, 0.030])
    assert s["latency_p50_ms"] == pytest.approx(20.0) and s["latency_max_ms"] == pytest.approx(30.0)


def test_best_threshold_against_brute_force():
    import random

    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(1, 30)
        scores = [rng.random() for _ in range(n)]
        answerable = [rng.random() < 0.5 for _ in range(n)]
        f1 = [rng.random() if a else 0.0 for a in answerable]

        def total(t):
            return sum((f if s >= t else 0.0) if a else (1.0 if s < t else 0.0)
                       for s, a, f in zip(scores, answerable, f1)) / n * 100

        brute = max(total(t) for t in [0.0, *scores, max(scores) + 1])
        t, best = best_threshold(scores, answerable, f1)
        assert best == pytest.approx(brute)
        assert total(t) == pytest.approx(brute)
