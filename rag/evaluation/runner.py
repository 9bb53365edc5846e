"""Runs question sets through `Engine.ask` (the same path as `rag.ask`) and scores them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from ..engine import Engine
from ..index import CorpusIndex
from ..normalize import normalize_answer
from ..schema import Passage
from .datasets import EvalItem
from .gold import Tick
from .metrics import abstention_scores, latency_summary, mean_reciprocal_rank, recall_at, score_answer


@dataclass
class Record:
    id: str
    question: str
    answers: list[str]
    answerable: bool
    prediction: str
    score: float
    abstained: bool
    citations: list[dict]
    cited_gold: bool | None  # first cited sentence contains a gold answer (answerable questions)
    exact_match: float
    f1: float
    seconds: float
    gold_rank: int | None = None  # rank of the first retrieved passage that holds_gold (1 = first)
    against_no_answer: float = 0.0  # what the abstention threshold tests (Answer.against_no_answer)


def run_ask(engine: Engine, items: list[EvalItem], index: str | CorpusIndex | None = None,
            recall_depth: int = 10, tick: Tick | None = None) -> list[Record]:
    """Ask every question (after one warm-up) and score it; retrieval ranks are measured apart, untimed."""
    corpus = engine.index(index) if index is None or isinstance(index, str) else index
    engine.ask(items[0].question if items else "warm up", index=corpus)
    records = []
    for item in items:
        t0 = time.perf_counter()
        answer = engine.ask(item.question, index=corpus)
        seconds = time.perf_counter() - t0
        em, f1 = score_answer(answer.text, answer.abstained, item.answers, item.answerable)
        cited = rank = None
        if item.answerable:
            first = answer.citations[0].sentence if answer.citations else ""
            cited = any(normalize_answer(a) in normalize_answer(first) for a in item.answers) if first else False
            passages = engine.retriever.retrieve(corpus, answer.question, recall_depth)
            rank = next((i for i, p in enumerate(passages, start=1) if holds_gold(p, item)), None)
        records.append(Record(
            id=item.id, question=item.question, answers=item.answers, answerable=item.answerable,
            prediction=answer.text, score=answer.score, abstained=answer.abstained,
            citations=[asdict(c) for c in answer.citations], cited_gold=cited, exact_match=em, f1=f1,
            seconds=seconds, gold_rank=rank, against_no_answer=answer.against_no_answer,
        ))
        if tick:
            tick()
    return records


def holds_gold(passage: Passage, item: EvalItem) -> bool:
    """Whether a retrieved passage is the gold one: from the gold document when the set names it
    (SQuAD's paragraph) and, when the set says where the answers stand in it (a whole article),
    holding one of them; else holding a right answer as a whole phrase."""
    if item.gold_doc is not None:
        return passage.doc == item.gold_doc and (
            not item.gold_spans or any(passage.start <= a and b <= passage.end for a, b in item.gold_spans))
    text = f" {normalize_answer(passage.text)} "
    return any(f" {normalize_answer(a)} " in text for a in item.answers if normalize_answer(a))


def summarize(records: list[Record], top_k: int) -> dict:
    """Totals over a run: EM/F1 (×100), citation accuracy, abstention, recall@k, MRR, latency."""
    n = len(records)
    answerable = [r for r in records if r.answerable]
    totals: dict = {
        "n": n,
        "exact_match": 100 * sum(r.exact_match for r in records) / n if n else 0.0,
        "f1": 100 * sum(r.f1 for r in records) / n if n else 0.0,
        "answerable_f1": 100 * sum(r.f1 for r in answerable) / len(answerable) if answerable else None,
        "citation_accuracy": (100 * sum(bool(r.cited_gold) for r in answerable) / len(answerable)
                              if answerable else None),
        **abstention_scores([r.abstained for r in records], [r.answerable for r in records]),
        **latency_summary([r.seconds for r in records]),
    }
    unanswerable = [r for r in records if not r.answerable]
    totals["unanswerable_accuracy"] = (100 * sum(r.abstained for r in unanswerable) / len(unanswerable)
                                       if unanswerable else None)
    ranks = [r.gold_rank for r in answerable]
    if ranks:
        for k in (1, 5, 10):
            totals[f"recall@{k}"] = 100 * recall_at(ranks, k)
        totals["mrr"] = mean_reciprocal_rank(ranks)
        totals[f"reader_sees_gold@{top_k}"] = 100 * recall_at(ranks, top_k)
    return totals


def cold_start_seconds(question: str, index: str, index_dir: str) -> float:
    """A new Python process, from start to its first answer (models and index loaded from disk)."""
    code = "from rag import ask; ask(%r, index=%r)" % (question, index)
    env = dict(os.environ, RAG_INDEX_DIR=index_dir)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    return time.perf_counter() - t0
