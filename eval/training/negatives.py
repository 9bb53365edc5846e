"""Hard negatives: for a training question, the paragraph of its article that BM25 ranks first among
those holding no gold answer, the kind of passage retrieval hands the reader and that it must learn
to say no to.

One BM25 search per question is most of the time it takes to build the training examples (276 s of
the defaults' 123k examples on a 2-core AVX2 EPYC, 2026-12-04), so `find_negatives` runs many at once
in worker processes.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np

# (question, the article's paragraphs, the question's own paragraph, its gold answers)
Query = tuple[str, tuple[str, ...], int, frozenset[str]]

# Every answer found in this process: a teacher's targets and several readers are built from the
# same examples in one process (eval/training/distill.py).
_found: dict[Query, str | None] = {}


def hard_negative(question: str, contexts: tuple[str, ...], own: int, golds: frozenset[str]) -> str | None:
    """The paragraph of the same article most like the question (BM25) that holds no gold answer.
    Ties go to the earlier paragraph and a question sharing no word with any other paragraph gets
    none, so the choice does not depend on how a NumPy version orders equal scores (the teacher's
    targets, made on another machine, must find the same examples)."""
    query = (question, contexts, own, golds)
    if query not in _found:
        _found[query] = _search(question, contexts, own, golds)
    return _found[query]


def article_queries(articles: list[dict], drawn=lambda: True) -> list[Query]:
    """The query of each question of the SQuAD articles for which `drawn()`, called once per question
    in order, is true."""
    return [(qa["question"], tuple(p["context"] for p in article["paragraphs"]), own,
             frozenset(a["text"] for a in qa["answers"]))
            for article in articles for own, para in enumerate(article["paragraphs"])
            for qa in para["qas"] if drawn()]


def find_negatives(queries: list[Query], workers: int) -> None:
    """`hard_negative` of every query, `workers` processes at once; the answers are kept for it."""
    todo = [q for q in dict.fromkeys(queries) if q not in _found]
    if workers <= 1 or len(todo) < 200:
        for query in todo:
            hard_negative(*query)
        return
    by_article: dict[tuple[str, ...], list[tuple[str, int, frozenset[str]]]] = {}
    for question, contexts, own, golds in todo:
        by_article.setdefault(contexts, []).append((question, own, golds))
    jobs = list(by_article.items())
    # fork: the workers touch neither the caller's GPU nor its thread pools, only bm25s and NumPy, and
    # spawn would run the caller's main module again in each of them.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for (contexts, items), answers in zip(jobs, pool.map(_article_negatives, jobs, chunksize=4)):
            for (question, own, golds), answer in zip(items, answers):
                _found[(question, contexts, own, golds)] = answer


def _article_negatives(job: tuple[tuple[str, ...], list[tuple[str, int, frozenset[str]]]]) -> list[str | None]:
    contexts, items = job
    return [_search(question, contexts, own, golds) for question, own, golds in items]


def _search(question: str, contexts: tuple[str, ...], own: int, golds: frozenset[str]) -> str | None:
    import bm25s

    others = [c for i, c in enumerate(contexts) if i != own and not any(g in c for g in golds)]
    if not others:
        return None
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(others, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([question], stopwords="en", show_progress=False)
    ids, scores = retriever.retrieve(tokens, k=len(others), show_progress=False)
    best = float(scores[0].max())
    if best <= 0:
        return None
    return others[min(int(i) for i, s in zip(ids[0], scores[0]) if np.isclose(s, best, rtol=1e-6, atol=0))]
