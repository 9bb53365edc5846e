"""Hybrid retrieval: dense (FAISS) and BM25 candidates, ranked by a weighted sum of both scores."""

from __future__ import annotations

from .embeddings import Embedder
from .index import CorpusIndex, top_ranking
from .milvus_store import MilvusIndex
from .schema import Passage, Ranking


def combine(ids: list[int], cosines: list[float], bm25: list[float], dense_weight: float) -> Ranking:
    """Convex combination: dense_weight * cosine + (1 - dense_weight) * BM25 / the best BM25 among `ids`.

    Cosines already share one scale across questions; BM25 grows with the question's length, so it is
    divided by its maximum (0 when no word matches). Unlike rank fusion this keeps how far apart two
    candidates are: a chunk that BM25 scores three times higher than the next is not just one rank ahead.
    """
    top = max(bm25, default=0.0)
    scores = {i: dense_weight * c + (1.0 - dense_weight) * (b / top if top > 0 else 0.0)
              for i, c, b in zip(ids, cosines, bm25)}
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return Ranking(ids=[i for i, _ in ordered], scores=[s for _, s in ordered])


def fuse(rankings: list[Ranking], rrf_k: int = 60) -> Ranking:
    """Reciprocal-rank fusion: each ranking adds 1 / (rrf_k + rank) to its items (rank from 1)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking.ids, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (rrf_k + rank)
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return Ranking(ids=[i for i, _ in ordered], scores=[s for _, s in ordered])


class Retriever:
    """Ranks the union of the dense and the BM25 top `candidates` chunks.

    fusion "convex" (the default) scores each candidate by `combine`; "rrf" by reciprocal rank.
    """

    def __init__(self, embedder: Embedder, candidates: int = 20, fusion: str = "convex", dense_weight: float = 0.7,
                 rrf_k: int = 60):
        self.embedder = embedder
        self.candidates = candidates
        self.fusion = fusion
        self.dense_weight = dense_weight
        self.rrf_k = rrf_k

    def retrieve(self, index: CorpusIndex | MilvusIndex, question: str, top_k: int) -> list[Passage]:
        query = self.embedder.encode_query(question)
        if isinstance(index, MilvusIndex):  # the store searches where the data is, with its own ranker
            return index.retrieve(question, query, top_k, self.candidates, self.fusion, self.dense_weight, self.rrf_k)
        bm25 = index.bm25_scores(question)  # every chunk's, computed once
        dense, lexical = index.search_dense(query, self.candidates), top_ranking(bm25, self.candidates)
        ids = list(dict.fromkeys(dense.ids + lexical.ids))
        cosine = dict(zip(ids, index.similarities(query, ids)))
        if self.fusion == "rrf":
            ranked = fuse([dense, lexical], self.rrf_k)
        else:
            ranked = combine(ids, [cosine[i] for i in ids], bm25[ids].tolist(), self.dense_weight)
        passages = []
        for chunk_id, score in zip(ranked.ids[:top_k], ranked.scores[:top_k]):
            chunk = index.chunks[chunk_id]
            passages.append(Passage(chunk_id=chunk_id, doc=index.documents[chunk.doc_id].name, start=chunk.start,
                                    end=chunk.end, text=chunk.text, score=score, similarity=cosine[chunk_id]))
        return passages
