"""Hybrid retrieval: dense (FAISS) and BM25 rankings fused by reciprocal rank."""

from __future__ import annotations

from .embeddings import Embedder
from .index import CorpusIndex
from .schema import Passage, Ranking


def fuse(rankings: list[Ranking], rrf_k: int = 60) -> Ranking:
    """Reciprocal-rank fusion: each ranking adds 1 / (rrf_k + rank) to its items (rank from 1)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking.ids, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (rrf_k + rank)
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return Ranking(ids=[i for i, _ in ordered], scores=[s for _, s in ordered])


class Retriever:
    def __init__(self, embedder: Embedder, candidates: int = 20, rrf_k: int = 60):
        self.embedder = embedder
        self.candidates = candidates
        self.rrf_k = rrf_k

    def retrieve(self, index: CorpusIndex, question: str, top_k: int) -> list[Passage]:
        query = self.embedder.encode_query(question)
        fused = fuse([index.search_dense(query, self.candidates), index.search_bm25(question, self.candidates)],
                     self.rrf_k)
        ids, scores = fused.ids[:top_k], fused.scores[:top_k]
        passages = []
        for chunk_id, score, similarity in zip(ids, scores, index.similarities(query, ids)):
            chunk = index.chunks[chunk_id]
            passages.append(Passage(chunk_id=chunk_id, doc=index.documents[chunk.doc_id].name, start=chunk.start,
                                    end=chunk.end, text=chunk.text, score=score, similarity=similarity))
        return passages
